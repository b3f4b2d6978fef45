//! The failed-login back-off in this host's memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{FREE_FAILURES, MAX_TRACKED, WINDOW, delay_after};

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    first: Instant,
    last: Instant,
}

pub struct LoginThrottle {
    failures: Mutex<HashMap<String, Failures>>,
    capacity: usize,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self::with_capacity(MAX_TRACKED)
    }
}

impl LoginThrottle {
    /// A throttle that remembers at most `capacity` accounts.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            failures: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    pub fn tracked(&self) -> usize {
        self.failures.lock().expect("throttle lock").len()
    }

    /// How long `account` must still wait before an attempt is tried;
    /// `None`: now.
    pub fn wait(&self, account: &str, now: Instant) -> Option<Duration> {
        let map = self.failures.lock().expect("throttle lock");
        let f = map.get(account)?;
        if now.duration_since(f.first) > WINDOW || f.count < FREE_FAILURES {
            return None;
        }
        (f.last + delay_after(f.count))
            .checked_duration_since(now)
            .filter(|d| !d.is_zero())
    }

    /// Records a wrong password for `account`.
    pub fn failed(&self, account: &str, now: Instant) {
        let mut map = self.failures.lock().expect("throttle lock");
        if map.len() >= self.capacity && !map.contains_key(account) {
            map.retain(|_, f| now.duration_since(f.first) <= WINDOW);
            if map.len() >= self.capacity
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, f)| f.last)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        let f = map.entry(account.to_owned()).or_insert(Failures {
            count: 0,
            first: now,
            last: now,
        });
        if now.duration_since(f.first) > WINDOW {
            *f = Failures {
                count: 0,
                first: now,
                last: now,
            };
        }
        f.count += 1;
        f.last = now;
    }

    /// A right password ends the series.
    pub fn succeeded(&self, account: &str) {
        self.failures.lock().expect("throttle lock").remove(account);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{BASE_DELAY, MAX_DELAY};
    use super::*;

    #[test]
    fn back_off_doubles_after_the_free_failures_and_resets() {
        let t = LoginThrottle::default();
        let start = Instant::now();
        for i in 0..FREE_FAILURES {
            assert_eq!(t.wait("a", start), None, "attempt {i} is free");
            t.failed("a", start);
        }
        // Five failures: the next attempt waits 1 s after the last.
        assert_eq!(t.wait("a", start), Some(BASE_DELAY));
        assert_eq!(t.wait("a", start + BASE_DELAY), None);
        t.failed("a", start + BASE_DELAY);
        let last = start + BASE_DELAY;
        assert_eq!(t.wait("a", last), Some(BASE_DELAY * 2));
        // Other accounts are not slowed down.
        assert_eq!(t.wait("b", last), None);
        // Many failures: capped.
        for _ in 0..20 {
            t.failed("a", last);
        }
        assert_eq!(t.wait("a", last), Some(MAX_DELAY));
        // After the window the series starts over.
        assert_eq!(t.wait("a", start + WINDOW + Duration::from_secs(1)), None);
        // A right password ends it.
        t.succeeded("a");
        assert_eq!(t.wait("a", last), None);
    }

    #[test]
    fn the_accounts_remembered_are_bounded() {
        let t = LoginThrottle::with_capacity(3);
        let start = Instant::now();
        for (i, name) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            t.failed(name, start + Duration::from_secs(i as u64));
        }
        assert_eq!(t.tracked(), 3);
        // The oldest series went first.
        for _ in 0..FREE_FAILURES {
            t.failed("e", start + Duration::from_secs(5));
        }
        assert!(t.wait("e", start + Duration::from_secs(5)).is_some());
    }
}
