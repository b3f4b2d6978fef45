//! Per-user revisions, so a cache of something a user owns can be trusted
//! until it changes.
//!
//! A reader takes the user's revision *before* it queries and files what
//! it read under it; a writer bumps the revision *after* its transaction
//! commits. Whatever was read before a commit is filed under the old
//! revision and never served after it.
//!
//! Counters are striped by a hash of the user id: memory stays fixed
//! however many users write, and two users sharing a stripe only costs a
//! few extra misses.
//!
//! Across hosts (`redis`): a bump is also published, and every host bumps
//! what other hosts publish. A host that is not subscribed cannot hear
//! them, so meanwhile it answers no revision at all (nothing may be
//! cached), and each change of subscription starts a new epoch that no
//! earlier revision equals.

pub mod redis;

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

const STRIPES: usize = 1 << 14;

/// A user's revision at one instant; equal revisions mean no write of
/// that user committed in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revision {
    epoch: u64,
    count: u64,
}

#[derive(Clone)]
pub struct Revisions {
    inner: Arc<Inner>,
}

struct Inner {
    stripes: Box<[AtomicU64]>,
    hasher: std::collections::hash_map::RandomState,
    epoch: AtomicU64,
    /// False while shared across hosts but not subscribed.
    trusted: AtomicBool,
    /// Where bumps go to be published to other hosts, once shared.
    outbox: OnceLock<tokio::sync::mpsc::Sender<String>>,
    /// Stops the sharing's listener when the revisions are dropped.
    stop: OnceLock<tokio_util::sync::DropGuard>,
}

impl std::fmt::Debug for Revisions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Revisions")
    }
}

impl Default for Revisions {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
                hasher: Default::default(),
                epoch: AtomicU64::new(0),
                trusted: AtomicBool::new(true),
                outbox: OnceLock::new(),
                stop: OnceLock::new(),
            }),
        }
    }
}

impl Revisions {
    fn stripe(&self, user_id: &str) -> &AtomicU64 {
        let i = self.inner.hasher.hash_one(user_id) as usize % STRIPES;
        &self.inner.stripes[i]
    }

    /// The user's current revision; `None` while this host cannot know
    /// of other hosts' writes (cache nothing then).
    pub fn of(&self, user_id: &str) -> Option<Revision> {
        let epoch = self.inner.epoch.load(Ordering::SeqCst);
        if !self.inner.trusted.load(Ordering::SeqCst) {
            return None;
        }
        Some(Revision {
            epoch,
            count: self.stripe(user_id).load(Ordering::SeqCst),
        })
    }

    /// Marks the user's data changed, here and (when shared) on every
    /// other host. Call it after the write committed.
    pub fn bump(&self, user_id: &str) {
        self.bump_here(user_id);
        if let Some(outbox) = self.inner.outbox.get()
            && outbox.try_send(user_id.to_owned()).is_err()
        {
            // Full only while Redis does not take what is published (or
            // closed while the host shuts down): other hosts' caches trust
            // an entry a second at most.
            tracing::debug!("revisions: a bump was not queued for Redis");
        }
    }

    /// Marks every user's data changed, on this host only: for a write
    /// made around the store (an operator's SQL).
    pub fn bump_all(&self) {
        self.inner.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Marks the user's data changed on this host only (another host's
    /// write, heard from it).
    fn bump_here(&self, user_id: &str) {
        self.stripe(user_id).fetch_add(1, Ordering::SeqCst);
    }

    /// Every revision taken so far is stale; `trusted` says whether new
    /// ones may be used.
    fn new_epoch(&self, trusted: bool) {
        if trusted {
            self.inner.epoch.fetch_add(1, Ordering::SeqCst);
            self.inner.trusted.store(true, Ordering::SeqCst);
        } else {
            self.inner.trusted.store(false, Ordering::SeqCst);
            self.inner.epoch.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Revisions;

    #[test]
    fn a_bump_changes_that_users_revision() {
        let r = Revisions::default();
        let before = r.of("alice").unwrap();
        r.bump("alice");
        let after = r.of("alice").unwrap();
        assert_ne!(after, before);
        let shared = r.clone();
        shared.bump("alice");
        assert_ne!(r.of("alice").unwrap(), after, "clones share the counters");
    }

    #[test]
    fn no_revision_is_given_while_untrusted_and_none_taken_before_matches_after() {
        let r = Revisions::default();
        let before = r.of("alice").unwrap();
        r.new_epoch(false);
        assert_eq!(r.of("alice"), None);
        r.new_epoch(true);
        let after = r.of("alice").unwrap();
        assert_ne!(after, before, "a new epoch, though alice wrote nothing");
    }
}
