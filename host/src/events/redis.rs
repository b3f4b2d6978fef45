//! Events kept in Redis: one capped stream per user, ids from Redis's
//! clock (so they grow across hosts), and one pub/sub channel that hands
//! every new event to every host, which passes it to its own sockets.
//!
//! A host publishes from an ordered outbox: one script call per burst
//! writes each event to its user's stream and announces it, atomically,
//! so the channel carries events in id order. After a lost subscription a
//! host catches its subscribers up from the streams before it goes live
//! again: a Redis restart costs latency, not events (unless Redis lost
//! its data: then resuming reports `complete: false`).

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::fanout::Fanout;
use super::{BACKLOG, Event};

/// Events in one script call at most.
const MAX_BATCH: usize = 256;
/// Events waiting for Redis at most; more are dropped (and logged).
const OUTBOX: usize = 16_384;
/// How long a burst is retried while Redis is away before it is dropped.
const RETRY_FOR: Duration = Duration::from_secs(60);
/// A stream nobody published to for this long is dropped.
const IDLE_SECS: u64 = 24 * 3600;

/// KEYS: the clock, then one stream per event. ARGV: channel, stream
/// length, idle seconds, then each event's body, then each event's user.
const PUBLISH: &str = r#"
local t = redis.call('TIME')
local id = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if id <= last then id = last + 1 end
local n = #KEYS - 1
for i = 1, n do
  if i > 1 then id = id + 1 end
  local sid = string.format('%.0f', id)
  local frame = '{"id":"' .. sid .. '",' .. ARGV[3 + i]
  redis.call('XADD', KEYS[1 + i], 'MAXLEN', ARGV[2], sid .. '-0', 'f', frame)
  redis.call('EXPIRE', KEYS[1 + i], ARGV[3])
  redis.call('PUBLISH', ARGV[1], ARGV[3 + n + i] .. '\n' .. sid .. '\n' .. frame)
end
redis.call('SET', KEYS[1], string.format('%.0f', id))
return n
"#;

pub(super) struct Streams {
    conn: redis::aio::ConnectionManager,
    outbox: mpsc::Sender<(String, String)>,
    prefix: String,
    _stop: DropGuard,
}

struct Keys {
    prefix: String,
}

impl Keys {
    fn stream(&self, user_id: &str) -> String {
        format!("{}events:{user_id}", self.prefix)
    }
    fn clock(&self) -> String {
        format!("{}events:clock", self.prefix)
    }
    fn channel(&self) -> String {
        format!("{}events", self.prefix)
    }
}

impl Streams {
    pub(super) async fn open(
        url: &str,
        prefix: &str,
        fanout: &Arc<Fanout>,
    ) -> anyhow::Result<Self> {
        let (client, conn) = crate::revisions::redis::connect(url).await?;
        let (tx, rx) = mpsc::channel(OUTBOX);
        let stop = CancellationToken::new();
        let keys = || Keys {
            prefix: prefix.to_owned(),
        };
        tokio::spawn(publish(conn.clone(), keys(), rx));
        let listener = listen(client, conn.clone(), keys(), Arc::downgrade(fanout));
        let stopped = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = listener => {}
                () = stopped.cancelled() => {}
            }
        });
        Ok(Self {
            conn,
            outbox: tx,
            prefix: prefix.to_owned(),
            _stop: stop.drop_guard(),
        })
    }

    pub(super) fn publish(&self, user_id: &str, body: String) {
        if self.outbox.try_send((user_id.to_owned(), body)).is_err() {
            tracing::warn!("events: the Redis outbox is full; an event was dropped");
        }
    }

    /// The id of the user's newest kept event (0: none, or Redis away).
    pub(super) async fn newest(&self, user_id: &str) -> u64 {
        let keys = Keys {
            prefix: self.prefix.clone(),
        };
        let mut conn = self.conn.clone();
        let newest = tokio::time::timeout(
            Duration::from_secs(2),
            redis::cmd("XREVRANGE")
                .arg(keys.stream(user_id))
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query_async::<Vec<(String, Vec<String>)>>(&mut conn),
        )
        .await;
        match newest {
            Ok(Ok(entries)) => entries
                .first()
                .and_then(|(id, _)| id.split('-').next()?.parse().ok())
                .unwrap_or(0),
            _ => 0,
        }
    }

    /// The kept events after `after`, and whether the one with id `after`
    /// is still kept (else some may be gone). Without Redis: none, and
    /// incomplete.
    pub(super) async fn after(&self, user_id: &str, after: u64) -> (Vec<Arc<Event>>, bool) {
        let keys = Keys {
            prefix: self.prefix.clone(),
        };
        let mut conn = self.conn.clone();
        match range(&mut conn, &keys.stream(user_id), after).await {
            Ok(mut events) => {
                let complete = events.first().is_some_and(|e| e.seq == after);
                if complete {
                    events.remove(0);
                }
                (events, complete)
            }
            Err(e) => {
                tracing::warn!(error = %e, "events: cannot read a stream in Redis");
                (Vec::new(), false)
            }
        }
    }
}

/// The events of `stream` from id `from` on (inclusive).
async fn range(
    conn: &mut redis::aio::ConnectionManager,
    stream: &str,
    from: u64,
) -> anyhow::Result<Vec<Arc<Event>>> {
    let entries: Vec<(String, Vec<String>)> = tokio::time::timeout(
        Duration::from_secs(2),
        redis::cmd("XRANGE")
            .arg(stream)
            .arg(format!("{from}-0"))
            .arg("+")
            .arg("COUNT")
            .arg(BACKLOG + 1)
            .query_async(conn),
    )
    .await
    .map_err(|_| anyhow::anyhow!("timed out"))??;
    Ok(entries
        .into_iter()
        .filter_map(|(id, fields)| {
            let seq = id.split('-').next()?.parse().ok()?;
            let text = fields.get(1)?;
            Some(Arc::new(Event {
                seq,
                text: text.as_str().into(),
            }))
        })
        .collect())
}

/// Writes the outbox to Redis in bursts, in order, until the streams are
/// dropped.
async fn publish(
    mut conn: redis::aio::ConnectionManager,
    keys: Keys,
    mut outbox: mpsc::Receiver<(String, String)>,
) {
    let script = redis::Script::new(PUBLISH);
    let (clock, channel) = (keys.clock(), keys.channel());
    let mut burst = Vec::with_capacity(MAX_BATCH);
    while outbox.recv_many(&mut burst, MAX_BATCH).await > 0 {
        let mut call = script.prepare_invoke();
        call.key(&clock);
        for (user, _) in &burst {
            call.key(keys.stream(user));
        }
        call.arg(&channel).arg(BACKLOG).arg(IDLE_SECS);
        for (_, body) in &burst {
            call.arg(body);
        }
        for (user, _) in &burst {
            call.arg(user);
        }
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            let sent =
                tokio::time::timeout(Duration::from_secs(2), call.invoke_async::<i64>(&mut conn))
                    .await;
            match sent {
                Ok(Ok(_)) => break,
                _ if started.elapsed() >= RETRY_FOR => {
                    tracing::error!(
                        events = burst.len(),
                        "events: Redis stayed away; a burst of events was dropped"
                    );
                    break;
                }
                failed => {
                    if let Ok(Err(e)) = failed {
                        tracing::warn!(error = %e, "events: publishing to Redis failed; retrying");
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
        burst.clear();
    }
}

/// Hands every host's events to this host's subscribers; after a lost
/// subscription, catches them up from the streams first.
async fn listen(
    client: redis::Client,
    mut conn: redis::aio::ConnectionManager,
    keys: Keys,
    fanout: Weak<Fanout>,
) {
    let channel = keys.channel();
    let mut caught_up = true;
    loop {
        match crate::revisions::redis::subscribe(&client, &channel).await {
            Ok(pubsub) => {
                let mut messages = pubsub.into_on_message();
                if !caught_up {
                    let Some(fanout) = fanout.upgrade() else {
                        return;
                    };
                    for (user, last) in fanout.listening() {
                        let Ok(events) = range(&mut conn, &keys.stream(&user), last + 1).await
                        else {
                            continue;
                        };
                        for event in events {
                            fanout.deliver(&user, event);
                        }
                    }
                }
                while let Some(msg) = messages.next().await {
                    let Some(fanout) = fanout.upgrade() else {
                        return;
                    };
                    let Ok(payload) = msg.get_payload::<String>() else {
                        continue;
                    };
                    let mut parts = payload.splitn(3, '\n');
                    let (Some(user), Some(seq), Some(text)) =
                        (parts.next(), parts.next(), parts.next())
                    else {
                        continue;
                    };
                    let Ok(seq) = seq.parse() else { continue };
                    fanout.deliver(
                        user,
                        Arc::new(Event {
                            seq,
                            text: text.into(),
                        }),
                    );
                }
                tracing::warn!("events: the Redis subscription ended; resubscribing");
            }
            Err(e) => tracing::warn!(error = %e, "events: cannot subscribe in Redis"),
        }
        caught_up = false;
        if fanout.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
