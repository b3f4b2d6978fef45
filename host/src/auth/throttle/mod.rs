//! Failed-login back-off per account: after a few wrong passwords within a
//! window, each further attempt must wait a doubling delay after the last
//! failure; an attempt that comes earlier is answered like a wrong
//! password without hashing anything. In this host's memory, or with Redis
//! one series per account that every host shares (this host's own stands
//! in while Redis cannot be reached).

mod local;
mod redis;

use std::time::{Duration, Instant};

pub use local::LoginThrottle;
pub use redis::SharedThrottle;

/// Wrong passwords allowed within a window before the back-off starts.
pub const FREE_FAILURES: u32 = 5;
/// How long failures are remembered after the first of a series.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// The first delay; it doubles with every further failure.
pub const BASE_DELAY: Duration = Duration::from_secs(1);
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// Accounts tracked at most (in memory); the oldest series are dropped
/// first.
pub const MAX_TRACKED: usize = 100_000;

/// The wait after the last of `failures` (at least `FREE_FAILURES`).
fn delay_after(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(FREE_FAILURES).min(16);
    (BASE_DELAY * 2u32.pow(doublings)).min(MAX_DELAY)
}

/// The back-off as configured.
#[derive(Default)]
pub struct LoginBackoff {
    local: LoginThrottle,
    shared: Option<SharedThrottle>,
}

impl LoginBackoff {
    pub fn shared(shared: SharedThrottle) -> Self {
        Self {
            local: LoginThrottle::default(),
            shared: Some(shared),
        }
    }

    /// Whether `account` must wait before an attempt is tried.
    pub async fn must_wait(&self, account: &str) -> bool {
        if let Some(shared) = &self.shared {
            match shared.wait(account).await {
                Ok(wait) => return wait.is_some(),
                Err(e) => shared.unreachable(&e),
            }
        }
        self.local.wait(account, Instant::now()).is_some()
    }

    /// Records a wrong password for `account`.
    pub async fn failed(&self, account: &str) {
        if let Some(shared) = &self.shared {
            match shared.failed(account).await {
                Ok(()) => return,
                Err(e) => shared.unreachable(&e),
            }
        }
        self.local.failed(account, Instant::now());
    }

    /// A right password ends the series.
    pub async fn succeeded(&self, account: &str) {
        if let Some(shared) = &self.shared
            && let Err(e) = shared.succeeded(account).await
        {
            shared.unreachable(&e);
        }
        self.local.succeeded(account);
    }
}
