//! The failed-login back-off in Redis: one hash per account
//! (`<prefix>login:<account>`: failures, first and last, in Redis's
//! milliseconds), kept for the window, read and written by scripts.

use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;

use super::{BASE_DELAY, FREE_FAILURES, MAX_DELAY, WINDOW};

/// KEYS[1]: the account. ARGV: window ms. Counts one failure, starting a
/// new series when the last one's window has passed.
const FAILED: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local first = tonumber(redis.call('HGET', KEYS[1], 'first'))
if not first or now - first > window then
  redis.call('DEL', KEYS[1])
  first = now
  redis.call('HSET', KEYS[1], 'first', now)
end
redis.call('HINCRBY', KEYS[1], 'count', 1)
redis.call('HSET', KEYS[1], 'last', now)
redis.call('PEXPIRE', KEYS[1], math.max(1, first + window - now))
return 1
";

/// KEYS[1]: the account. ARGV: window ms, free failures, first delay ms,
/// longest delay ms. Returns the ms still to wait (0: none).
const WAIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('HMGET', KEYS[1], 'count', 'first', 'last')
if not v[1] then return 0 end
local count, first, last = tonumber(v[1]), tonumber(v[2]), tonumber(v[3])
local free = tonumber(ARGV[2])
if now - first > tonumber(ARGV[1]) or count < free then return 0 end
local delay = math.min(tonumber(ARGV[3]) * 2 ^ math.min(count - free, 16), tonumber(ARGV[4]))
return math.max(0, last + delay - now)
";

const TIMEOUT: Duration = Duration::from_millis(250);

pub struct SharedThrottle {
    conn: ConnectionManager,
    prefix: String,
    failed: Script,
    wait: Script,
}

impl SharedThrottle {
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let (_, conn) = crate::revisions::redis::connect(url).await?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            failed: Script::new(FAILED),
            wait: Script::new(WAIT),
        })
    }

    fn key(&self, account: &str) -> String {
        format!("{}login:{account}", self.prefix)
    }

    pub(super) async fn wait(&self, account: &str) -> anyhow::Result<Option<Duration>> {
        let mut conn = self.conn.clone();
        let mut call = self.wait.key(self.key(account));
        call.arg(WINDOW.as_millis() as u64)
            .arg(FREE_FAILURES)
            .arg(BASE_DELAY.as_millis() as u64)
            .arg(MAX_DELAY.as_millis() as u64);
        let ms: i64 = within(call.invoke_async(&mut conn)).await?;
        Ok((ms > 0).then(|| Duration::from_millis(ms as u64)))
    }

    pub(super) async fn failed(&self, account: &str) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let mut call = self.failed.key(self.key(account));
        call.arg(WINDOW.as_millis() as u64);
        let _: i64 = within(call.invoke_async(&mut conn)).await?;
        Ok(())
    }

    pub(super) async fn succeeded(&self, account: &str) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let _: i64 = within(
            redis::cmd("DEL")
                .arg(self.key(account))
                .query_async(&mut conn),
        )
        .await?;
        Ok(())
    }

    pub(super) fn unreachable(&self, e: &anyhow::Error) {
        tracing::warn!(error = %e, "login back-off: Redis unreachable; this host's own stands in");
    }
}

async fn within<T>(call: impl Future<Output = redis::RedisResult<T>>) -> anyhow::Result<T> {
    Ok(tokio::time::timeout(TIMEOUT, call)
        .await
        .map_err(|_| anyhow::anyhow!("Redis did not answer within {TIMEOUT:?}"))??)
}
