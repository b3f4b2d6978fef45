//! GCRA in Redis: one atomic script per check keeps a key's theoretical
//! arrival time (microseconds, Redis's own clock) so every host sees the
//! same allowance. Errors go back to the caller, which stands in with this
//! host's limits and counts the miss.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

use redis::Script;
use redis::aio::ConnectionManager;

use super::Decision;

/// KEYS[1]: the key. ARGV[1]: one request's share of the period (µs),
/// ARGV[2]: requests a period. Returns {allowed, remaining, µs until the
/// allowance is whole, µs until one more is allowed}.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if allow_at > now then
  return {0, 0, tat - now, allow_at - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.floor((new_tat - now) / 1000) + 1000)
return {1, math.floor((now + burst * interval - new_tat) / interval), new_tat - now, 0}
";

/// How long one check may wait for Redis before this host stands in.
const CHECK_TIMEOUT: Duration = Duration::from_millis(250);

pub struct SharedLimits {
    conn: ConnectionManager,
    prefix: String,
    script: Script,
    /// Checks Redis could not answer (`pingvas_ratelimit_redis_errors`).
    misses: Counter,
}

impl SharedLimits {
    /// Connects to `url`; keys are `<prefix>rl:<key>`.
    pub async fn connect(url: &str, prefix: &str, misses: Counter) -> anyhow::Result<Self> {
        let (_, conn) = crate::revisions::redis::connect(url).await?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            script: Script::new(GCRA),
            misses,
        })
    }

    pub async fn check(&self, key: &str, per_min: u32) -> anyhow::Result<Decision> {
        self.check_per(key, per_min, Duration::from_secs(60)).await
    }

    /// Takes one of `key`'s `n` uses a `period` (refilling evenly).
    pub async fn check_per(&self, key: &str, n: u32, period: Duration) -> anyhow::Result<Decision> {
        let n = n.max(1);
        let interval_us = (period.as_micros() / u128::from(n)).max(1) as u64;
        let mut conn = self.conn.clone();
        let mut invocation = self.script.key(format!("{}rl:{key}", self.prefix));
        invocation.arg(interval_us).arg(n);
        let call = invocation.invoke_async::<(i64, i64, i64, i64)>(&mut conn);
        let (allowed, remaining, full_us, retry_us) = tokio::time::timeout(CHECK_TIMEOUT, call)
            .await
            .map_err(|_| anyhow::anyhow!("Redis did not answer within {CHECK_TIMEOUT:?}"))??;
        let now = chrono::Utc::now().timestamp();
        let secs = |us: i64| (us.max(0) + 999_999) / 1_000_000;
        Ok(Decision {
            limit: n,
            remaining: remaining.clamp(0, i64::from(n)) as u32,
            reset: now + secs(full_us),
            retry_after: (allowed == 0).then(|| secs(retry_us).max(1) as u64),
        })
    }

    /// Counts and logs a check Redis could not answer.
    pub fn unreachable(&self, e: &anyhow::Error) {
        let n = self.misses.inc();
        // The first miss, then one in a thousand: a down Redis must not
        // flood the log.
        if n.is_multiple_of(1000) {
            tracing::warn!(error = %e, misses = n + 1, "rate limits: Redis unreachable; this host's own limits stand in");
        }
    }

    /// Whether Redis answers (readiness).
    pub async fn ping(&self) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let pong: String = tokio::time::timeout(
            Duration::from_secs(2),
            redis::cmd("PING").query_async(&mut conn),
        )
        .await
        .map_err(|_| anyhow::anyhow!("timeout"))??;
        anyhow::ensure!(pong == "PONG", "unexpected answer {pong}");
        Ok(())
    }
}
