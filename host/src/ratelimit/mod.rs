//! Per-tier request limits: the plan catalogue's `requests_per_min` for
//! every authenticated API request and `generations_per_min` for
//! `POST /generate/*`, per user, by GCRA — in this host's memory
//! (governor), or with `redis_url` in Redis (`redis.rs`: one atomic script
//! per check, so every host shares the limits). A decision carries what the
//! `X-RateLimit-*` headers say.

mod redis;
pub use self::redis::SharedLimits;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

/// A keyed GCRA limiter that reports what is left after each check.
type Keyed =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// Keys remembered per limiter before those whose allowance has refilled
/// are forgotten (memory stays bounded).
const MAX_KEYS: usize = 100_000;

/// The outcome of one check, as the headers tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Requests a minute (`X-RateLimit-Limit`).
    pub limit: u32,
    /// Requests left at once (`X-RateLimit-Remaining`).
    pub remaining: u32,
    /// When the allowance is whole again, unix seconds (`X-RateLimit-Reset`).
    pub reset: i64,
    /// Refused: seconds until one more is allowed (`Retry-After`).
    pub retry_after: Option<u64>,
}

/// The limits as configured: shared through Redis, or this host's own.
#[derive(Default)]
pub struct RateLimits {
    local: LocalLimits,
    shared: Option<Arc<SharedLimits>>,
}

impl RateLimits {
    /// In this host's memory only.
    pub fn local() -> Self {
        Self::default()
    }

    /// Shared through Redis; this host's own limits stand in while Redis
    /// cannot be reached (the host keeps serving).
    pub fn shared(limits: Arc<SharedLimits>) -> Self {
        Self {
            local: LocalLimits::default(),
            shared: Some(limits),
        }
    }

    pub fn redis(&self) -> Option<&SharedLimits> {
        self.shared.as_deref()
    }

    /// Takes one request of `key`'s `per_min` allowance.
    pub async fn check(&self, key: &str, per_min: u32) -> Decision {
        if let Some(shared) = &self.shared {
            match shared.check(key, per_min).await {
                Ok(d) => return d,
                Err(e) => shared.unreachable(&e),
            }
        }
        self.local.check(key, per_min)
    }
}

/// GCRA limiters in this host's memory, one per distinct per-minute
/// limit, each keyed by user.
#[derive(Default)]
pub struct LocalLimits {
    by_limit: Mutex<HashMap<u32, Arc<Keyed>>>,
}

impl LocalLimits {
    fn limiter(&self, per_min: u32) -> Arc<Keyed> {
        let mut map = self.by_limit.lock().expect("limiters");
        map.entry(per_min)
            .or_insert_with(|| {
                let n = NonZeroU32::new(per_min.max(1)).expect("at least 1");
                Arc::new(
                    RateLimiter::keyed(Quota::per_minute(n))
                        .with_middleware::<StateInformationMiddleware>(),
                )
            })
            .clone()
    }

    /// Takes one request of `key`'s `per_min` allowance.
    pub fn check(&self, key: &str, per_min: u32) -> Decision {
        let per_min = per_min.max(1);
        let limiter = self.limiter(per_min);
        if limiter.len() > MAX_KEYS {
            limiter.retain_recent();
        }
        // One request's share of the minute.
        let interval = Duration::from_secs(60) / per_min;
        let now = chrono::Utc::now();
        let at = |after: Duration| (now + after).timestamp() + i64::from(after.subsec_nanos() > 0);
        match limiter.check_key(&key.to_owned()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Decision {
                    limit: per_min,
                    remaining,
                    reset: at(interval * (per_min - remaining)),
                    retry_after: None,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Decision {
                    limit: per_min,
                    remaining: 0,
                    reset: at(wait + interval * (per_min - 1)),
                    retry_after: Some(wait.as_secs_f64().ceil().max(1.0) as u64),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowance_counts_down_then_refuses_with_a_wait() {
        let limits = LocalLimits::default();
        let now = chrono::Utc::now().timestamp();
        let first = limits.check("u", 3);
        assert_eq!(
            (first.limit, first.remaining, first.retry_after),
            (3, 2, None)
        );
        // One request's share is 20 s: whole again 20 s after the first.
        assert!((now + 20..=now + 21).contains(&first.reset), "{first:?}");
        assert_eq!(limits.check("u", 3).remaining, 1);
        assert_eq!(limits.check("u", 3).remaining, 0);
        let refused = limits.check("u", 3);
        assert_eq!(refused.remaining, 0);
        let wait = refused.retry_after.expect("refused");
        assert!((1..=20).contains(&wait), "{refused:?}");
        // Other keys and other limits have their own allowance.
        assert_eq!(limits.check("v", 3).remaining, 2);
        assert_eq!(limits.check("u", 10).remaining, 9);
    }
}
