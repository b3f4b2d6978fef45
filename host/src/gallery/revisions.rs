//! Which version of a user's gallery this process last wrote, so a
//! rendered list page can be reused until the gallery changes.
//!
//! Counters are striped by a hash of the user id: memory stays fixed
//! however many users write, and two users sharing a stripe only costs a
//! few extra misses. Every write to a user's images or board links bumps
//! the stripe *after* its transaction commits: a reader takes the revision
//! before it queries, so a page read before the commit is filed under the
//! old revision and never served after it.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const STRIPES: usize = 1 << 14;

#[derive(Clone)]
pub struct Revisions {
    stripes: Arc<[AtomicU64]>,
    hasher: std::collections::hash_map::RandomState,
}

impl std::fmt::Debug for Revisions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Revisions")
    }
}

impl Default for Revisions {
    fn default() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            hasher: Default::default(),
        }
    }
}

impl Revisions {
    fn stripe(&self, user_id: &str) -> &AtomicU64 {
        &self.stripes[self.hasher.hash_one(user_id) as usize % STRIPES]
    }

    /// The user's current revision.
    pub fn of(&self, user_id: &str) -> u64 {
        self.stripe(user_id).load(Ordering::Acquire)
    }

    /// Marks the user's gallery changed (call after the write committed).
    pub fn bump(&self, user_id: &str) {
        self.stripe(user_id).fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::Revisions;

    #[test]
    fn a_bump_changes_that_users_revision() {
        let r = Revisions::default();
        let before = r.of("alice");
        r.bump("alice");
        assert_ne!(r.of("alice"), before);
        let shared = r.clone();
        shared.bump("alice");
        assert_eq!(r.of("alice"), before + 2, "clones share the counters");
    }
}
