//! A per-key hourly allowance (publishes, checkouts per user), in memory
//! of this host: what a single free account may make the host do for
//! others (compile code, call a payment provider) is counted here.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Keys remembered before the ones whose allowance has refilled are
/// forgotten (the limiter's memory stays bounded).
const MAX_KEYS: usize = 100_000;

pub struct HourlyAllowance {
    limiter: DefaultKeyedRateLimiter<String>,
}

impl HourlyAllowance {
    /// `per_hour` uses per key (at least 1), refilling evenly.
    pub fn new(per_hour: u32) -> Self {
        let n = NonZeroU32::new(per_hour.max(1)).expect("at least 1");
        Self {
            limiter: RateLimiter::keyed(Quota::per_hour(n)),
        }
    }

    /// Takes one use for `key`; when none is left, the seconds until one is.
    pub fn take(&self, key: &str) -> Result<(), u64> {
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

    #[test]
    fn each_key_has_its_own_allowance() {
        let a = HourlyAllowance::new(2);
        assert_eq!(a.take("u1"), Ok(()));
        assert_eq!(a.take("u1"), Ok(()));
        let wait = a.take("u1").unwrap_err();
        assert!((1..=1800).contains(&wait), "{wait}");
        assert_eq!(a.take("u2"), Ok(()));
    }
}
