//! When a user's sessions last ended ("sign out everywhere": a password
//! reset, a claim of the account, identities dropped): access tokens
//! issued before that instant (microseconds, the `iat_us` claim) are
//! refused, so a stolen one stops at once rather than at its `exp`.
//!
//! Checked on every authenticated request without the database: the
//! cutoffs live in this host's memory. With `redis_url` they are shared:
//! ending sessions writes `<prefix>nbf:<user>` (kept for the access-token
//! lifetime, after which every earlier token has expired anyway) and
//! publishes it on `<prefix>nbf`; every host listens there, and caches
//! what it read from Redis only while it is subscribed, so a cached answer
//! is never older than the last message. While Redis cannot be reached a
//! host goes on with the cutoffs it knows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures::StreamExt;
use redis::Script;
use redis::aio::ConnectionManager;

/// Users remembered before stale entries are forgotten.
const MAX_KEYS: usize = 100_000;
/// How long a value read from Redis is trusted while subscribed (a
/// message lost in a reconnect window is caught within this).
const CACHE_TTL: Duration = Duration::from_secs(60);
/// How long one Redis call may take before this host goes on alone.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// KEYS[1]: the user's key. ARGV: cutoff (µs), key lifetime (ms), channel,
/// user id. Keeps the later cutoff, publishes `<user> <cutoff>`.
const RAISE: &str = r"
local cur = redis.call('GET', KEYS[1])
local at = ARGV[1]
if cur and tonumber(cur) >= tonumber(at) then at = cur end
redis.call('SET', KEYS[1], at, 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4] .. ' ' .. at)
return at
";

#[derive(Default)]
struct Entry {
    /// Tokens issued before this (µs since the epoch) are refused; 0: none.
    cutoff: i64,
    /// When Redis was last read for this user, under which subscription.
    read: Option<(Instant, u64)>,
}

struct Known {
    users: Mutex<HashMap<String, Entry>>,
    /// The current subscription to the channel (a generation); 0 while
    /// there is none.
    subscription: AtomicU64,
    /// The access-token lifetime (µs): how long a cutoff matters.
    keep_for: i64,
}

impl Known {
    fn new(access_ttl_secs: u64) -> Self {
        Self {
            users: Mutex::default(),
            subscription: AtomicU64::new(0),
            keep_for: i64::try_from(access_ttl_secs)
                .unwrap_or(i64::MAX / 2_000_000)
                .saturating_mul(1_000_000),
        }
    }

    fn raise(&self, user_id: &str, cutoff: i64, read: Option<(Instant, u64)>) {
        let mut users = self.users.lock().expect("cutoffs");
        if users.len() > MAX_KEYS {
            // Entries read from Redis and cutoffs past every token's life.
            let stale = now_us() - self.keep_for;
            users.retain(|_, e| e.cutoff > stale);
        }
        let e = users.entry(user_id.to_owned()).or_default();
        e.cutoff = e.cutoff.max(cutoff);
        if read.is_some() {
            e.read = read;
        }
    }

    /// The cutoff of `user_id`, and whether it may stand without asking
    /// Redis (under subscription `sub`).
    fn get(&self, user_id: &str, sub: u64) -> (i64, bool) {
        let users = self.users.lock().expect("cutoffs");
        match users.get(user_id) {
            Some(e) => {
                let fresh = sub != 0
                    && e.read
                        .is_some_and(|(at, s)| s == sub && at.elapsed() < CACHE_TTL);
                (e.cutoff, fresh)
            }
            None => (0, false),
        }
    }
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

struct Shared {
    conn: ConnectionManager,
    prefix: String,
    raise: Script,
    misses: AtomicU64,
}

impl Shared {
    fn key(&self, user_id: &str) -> String {
        format!("{}nbf:{user_id}", self.prefix)
    }

    fn missed(&self, e: &anyhow::Error) {
        let n = self.misses.fetch_add(1, Ordering::Relaxed);
        if n.is_multiple_of(1000) {
            tracing::warn!(error = %e, misses = n + 1, "session cutoffs: Redis unreachable; this host's own stand in");
        }
    }
}

/// The per-user "not before" times of access tokens.
pub struct SessionCutoffs {
    known: Arc<Known>,
    shared: Option<Shared>,
}

impl SessionCutoffs {
    /// In this host's memory only.
    pub fn local(access_ttl_secs: u64) -> Self {
        Self {
            known: Arc::new(Known::new(access_ttl_secs)),
            shared: None,
        }
    }

    /// Shared through the Redis at `url` (keys under `prefix`); listens for
    /// other hosts' cutoffs in the background.
    pub async fn shared(url: &str, prefix: &str, access_ttl_secs: u64) -> anyhow::Result<Self> {
        let (client, conn) = crate::revisions::redis::connect(url).await?;
        let known = Arc::new(Known::new(access_ttl_secs));
        tokio::spawn(listen(
            client,
            format!("{prefix}nbf"),
            Arc::downgrade(&known),
        ));
        Ok(Self {
            known,
            shared: Some(Shared {
                conn,
                prefix: prefix.to_owned(),
                raise: Script::new(RAISE),
                misses: AtomicU64::new(0),
            }),
        })
    }

    /// Ends every session of `user_id` now: its access tokens issued
    /// until this instant are refused from here on (on every host sharing
    /// the Redis). Returns the cutoff (µs).
    pub async fn end_sessions(&self, user_id: &str) -> i64 {
        let mut at = now_us();
        self.known.raise(user_id, at, None);
        if let Some(shared) = &self.shared {
            let mut conn = shared.conn.clone();
            let mut call = shared.raise.key(shared.key(user_id));
            call.arg(at.to_string())
                .arg(self.known.keep_for / 1000 + 60_000)
                .arg(format!("{}nbf", shared.prefix))
                .arg(user_id);
            let result = tokio::time::timeout(REDIS_TIMEOUT, call.invoke_async::<i64>(&mut conn))
                .await
                .map_err(|_| anyhow::anyhow!("Redis did not answer in time"))
                .and_then(|r| r.map_err(anyhow::Error::from));
            match result {
                Ok(stored) => {
                    at = at.max(stored);
                    self.known.raise(user_id, at, None);
                }
                Err(e) => {
                    tracing::error!(user = user_id, error = %e, "session cutoff not shared through Redis: other hosts accept this user's earlier access tokens until they expire");
                    shared.missed(&e);
                }
            }
        }
        at
    }

    /// Whether an access token of `user_id` issued at `issued_us` is still
    /// good (issued at or after the user's last cutoff).
    pub async fn allows(&self, user_id: &str, issued_us: i64) -> bool {
        issued_us >= self.cutoff_of(user_id).await
    }

    async fn cutoff_of(&self, user_id: &str) -> i64 {
        let Some(shared) = &self.shared else {
            return self.known.get(user_id, 0).0;
        };
        let sub = self.known.subscription.load(Ordering::Acquire);
        let (known, fresh) = self.known.get(user_id, sub);
        if fresh {
            return known;
        }
        let mut conn = shared.conn.clone();
        let mut cmd = redis::cmd("GET");
        cmd.arg(shared.key(user_id));
        let get = cmd.query_async::<Option<i64>>(&mut conn);
        match tokio::time::timeout(REDIS_TIMEOUT, get).await {
            Ok(Ok(stored)) => {
                let cutoff = stored.unwrap_or(0);
                let read = (sub != 0).then(|| (Instant::now(), sub));
                self.known.raise(user_id, cutoff, read);
                known.max(cutoff)
            }
            Ok(Err(e)) => {
                shared.missed(&e.into());
                known
            }
            Err(_) => {
                shared.missed(&anyhow::anyhow!("Redis did not answer in time"));
                known
            }
        }
    }
}

/// Applies other hosts' cutoffs as they are published; resubscribes after
/// a lost connection. Ends when the cutoffs are dropped.
async fn listen(client: redis::Client, channel: String, known: Weak<Known>) {
    let mut generation = 0u64;
    loop {
        match crate::revisions::redis::subscribe(&client, &channel).await {
            Ok(pubsub) => {
                generation += 1;
                let Some(k) = known.upgrade() else { return };
                k.subscription.store(generation, Ordering::Release);
                drop(k);
                let mut messages = pubsub.into_on_message();
                while let Some(msg) = messages.next().await {
                    let Some(k) = known.upgrade() else { return };
                    let Ok(payload) = msg.get_payload::<String>() else {
                        continue;
                    };
                    if let Some((user, at)) = payload.rsplit_once(' ')
                        && let Ok(at) = at.parse::<i64>()
                    {
                        // No `read`: the entry is refreshed from Redis
                        // when next asked, with whatever else it knows.
                        k.raise(user, at, None);
                    }
                }
                tracing::warn!("session cutoffs: the Redis subscription ended; resubscribing");
            }
            Err(e) => tracing::warn!(error = %e, "session cutoffs: cannot subscribe in Redis"),
        }
        match known.upgrade() {
            Some(k) => k.subscription.store(0, Ordering::Release),
            None => return,
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_issued_before_the_cutoff_are_refused_and_later_ones_pass() {
        let cutoffs = SessionCutoffs::local(3600);
        let before = now_us();
        assert!(cutoffs.allows("u", before).await, "no cutoff yet");
        let at = cutoffs.end_sessions("u").await;
        assert!(at >= before);
        assert!(!cutoffs.allows("u", before).await);
        assert!(!cutoffs.allows("u", at - 1).await);
        assert!(cutoffs.allows("u", at).await);
        assert!(cutoffs.allows("v", before).await, "other users untouched");
    }

    #[test]
    fn a_cutoff_never_moves_back() {
        let known = Known::new(3600);
        known.raise("u", 200, None);
        known.raise("u", 100, None);
        assert_eq!(known.get("u", 0), (200, false));
    }

    #[test]
    fn a_read_is_trusted_only_under_the_subscription_it_was_made_in() {
        let known = Known::new(3600);
        known.raise("u", 5, Some((Instant::now(), 1)));
        assert_eq!(known.get("u", 1), (5, true));
        assert_eq!(known.get("u", 2), (5, false));
        assert_eq!(known.get("u", 0), (5, false));
    }
}
