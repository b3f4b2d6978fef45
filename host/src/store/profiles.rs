//! Profiles read lately (`users::find_profile`: the user row, balance,
//! storage and subscription), so `GET /users/me` — the call a studio page
//! makes first and a client polls — the caller check of every route and
//! the storage check of every job cost no database read while what each
//! of them uses has not changed.
//!
//! A profile has three parts, each with its own revision per user
//! (`Db::profile_revisions`, keyed `<part>:<user>`): the account (user row
//! and subscriptions), the balance and the storage counter. Every store
//! function that writes one bumps its revision once the write committed
//! (`Tx::profile_changed`) — on every host, when Redis is configured. An
//! entry is filed under the three revisions taken before it was read, and
//! a reader trusts it while the parts it uses are unchanged: a job's
//! reservation moves the balance, not the caller's tier. Writes no host
//! saw (`pingvas admin` in a shell, a host without Redis beside others)
//! show within `MAX_AGE`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;

use super::users::{ProfileRow, find_profile};
use super::{Db, StoreResult};
use crate::revisions::{Revision, Revisions};

/// The longest an entry is trusted without a write having been heard of.
pub const MAX_AGE: Duration = Duration::from_secs(1);
/// Users whose profile is kept (~1 KB each).
const CAPACITY: usize = 20_000;

/// What a write changed of a user's profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The user row (name, tier, role, verification) and subscriptions.
    Account = 0,
    /// The credit account (balance and reserved).
    Balance = 1,
    /// The storage counter.
    Storage = 2,
}

const PARTS: [Part; 3] = [Part::Account, Part::Balance, Part::Storage];

impl Part {
    /// The revision key of this part of `user_id`'s profile.
    pub fn key(self, user_id: &str) -> String {
        let tag = match self {
            Part::Account => 'a',
            Part::Balance => 'b',
            Part::Storage => 's',
        };
        format!("{tag}:{user_id}")
    }
}

#[derive(Clone)]
struct Entry {
    revisions: [Revision; 3],
    read_at: Instant,
    row: Arc<ProfileRow>,
}

pub struct ProfileCache {
    rows: Cache<String, Entry>,
}

impl std::fmt::Debug for ProfileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProfileCache({} users)", self.rows.len())
    }
}

impl Default for ProfileCache {
    fn default() -> Self {
        Self {
            rows: Cache::new(CAPACITY),
        }
    }
}

/// The user's whole profile row. `None`: no such user.
pub async fn profile(db: &Db, user_id: &str) -> StoreResult<Option<Arc<ProfileRow>>> {
    read(db, user_id, &PARTS).await
}

/// The user's profile row, trusted for `parts` only (the rest may be a
/// little older). `None`: no such user.
pub async fn read(db: &Db, user_id: &str, parts: &[Part]) -> StoreResult<Option<Arc<ProfileRow>>> {
    // Taken before the read: a write committed after it makes the entry
    // a miss (`crate::revisions`).
    let now = current(db.profile_revisions(), user_id);
    if let Some(now) = now
        && let Some(e) = db.profile_cache().rows.get(user_id)
        && e.read_at.elapsed() < MAX_AGE
        && parts
            .iter()
            .all(|&p| e.revisions[p as usize] == now[p as usize])
    {
        return Ok(Some(e.row));
    }
    let read_at = Instant::now();
    let Some(row) = find_profile(db, user_id).await? else {
        return Ok(None);
    };
    let row = Arc::new(row);
    if let Some(revisions) = now {
        db.profile_cache().rows.insert(
            user_id.to_owned(),
            Entry {
                revisions,
                read_at,
                row: row.clone(),
            },
        );
    }
    Ok(Some(row))
}

/// The revisions of the three parts; `None` while none may be trusted.
fn current(revisions: &Revisions, user_id: &str) -> Option<[Revision; 3]> {
    Some([
        revisions.of(&Part::Account.key(user_id))?,
        revisions.of(&Part::Balance.key(user_id))?,
        revisions.of(&Part::Storage.key(user_id))?,
    ])
}
