//! A per-key hourly allowance (publishes, checkouts per user): what a
//! single free account may make the host do for others (compile code,
//! call a payment provider) is counted here. In this host's memory, or
//! with Redis in one count every host shares (this host's own stands in
//! while Redis cannot be reached).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::ratelimit::SharedLimits;

/// Keys remembered before the ones whose allowance has refilled are
/// forgotten (the limiter's memory stays bounded).
const MAX_KEYS: usize = 100_000;
const HOUR: Duration = Duration::from_secs(3600);

pub struct HourlyAllowance {
    per_hour: u32,
    limiter: DefaultKeyedRateLimiter<String>,
    /// With Redis: the allowance's name in its keys, and the limits.
    shared: Option<(&'static str, Arc<SharedLimits>)>,
}

impl HourlyAllowance {
    /// `per_hour` uses per key (at least 1), refilling evenly.
    pub fn new(per_hour: u32) -> Self {
        let per_hour = per_hour.max(1);
        let n = NonZeroU32::new(per_hour).expect("at least 1");
        Self {
            per_hour,
            limiter: RateLimiter::keyed(Quota::per_hour(n)),
            shared: None,
        }
    }

    /// Counted in Redis as `name` (unique among the allowances).
    pub fn shared(mut self, name: &'static str, limits: Option<Arc<SharedLimits>>) -> Self {
        self.shared = limits.map(|l| (name, l));
        self
    }

    /// Takes one use for `key`; when none is left, the seconds until one is.
    pub async fn take(&self, key: &str) -> Result<(), u64> {
        if let Some((name, limits)) = &self.shared {
            match limits
                .check_per(&format!("{name}:{key}"), self.per_hour, HOUR)
                .await
            {
                Ok(d) => return d.retry_after.map_or(Ok(()), Err),
                Err(e) => limits.unreachable(&e),
            }
        }
        self.take_here(key)
    }

    fn take_here(&self, key: &str) -> Result<(), u64> {
        if self.limiter.len() > MAX_KEYS {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&key.to_owned())
            .map_err(|not_until| {
                not_until
                    .wait_time_from(DefaultClock::default().now())
                    .as_secs()
                    .max(1)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_key_has_its_own_allowance() {
        let a = HourlyAllowance::new(2);
        assert_eq!(a.take("u1").await, Ok(()));
        assert_eq!(a.take("u1").await, Ok(()));
        let wait = a.take("u1").await.unwrap_err();
        assert!((1..=1800).contains(&wait), "{wait}");
        assert_eq!(a.take("u2").await, Ok(()));
    }
}
