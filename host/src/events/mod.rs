//! The per-user event channels behind `GET /ws`: jobs and the ledger
//! publish, WebSocket connections subscribe to their user's channel.
//! Every event gets an id that only grows (microseconds since the epoch,
//! bumped when two land in one microsecond, so ids stay ordered across
//! restarts), and each user's recent events are kept so a client that
//! reconnects with its last id gets what it missed.
//!
//! Two homes for the kept events: this process's memory (one host, the
//! embedded default; `local`) or one capped Redis stream per user whose
//! ids come from Redis's clock (any number of hosts; `redis`). Either way
//! the events reach this host's sockets through `fanout`.

mod fanout;
mod local;
pub mod redis;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::broadcast;

use fanout::Fanout;

/// Events kept per user for resuming.
pub const BACKLOG: usize = 512;

/// One event as a client receives it, rendered once for every socket.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The id: ordered, unique; a client resumes with the last one seen.
    pub seq: u64,
    /// The JSON frame: `id`, `timestamp`, and the payload's `type` and
    /// `data`.
    pub text: Arc<str>,
}

impl Event {
    /// The event with id `seq` whose body is `body` (a rendered JSON
    /// object without its opening brace, from `body`).
    fn new(seq: u64, body: &str) -> Self {
        Self {
            seq,
            text: frame(seq, body).into(),
        }
    }
}

fn frame(seq: u64, body: &str) -> String {
    format!("{{\"id\":\"{seq}\",{body}")
}

/// The event's JSON object without the id and without its opening brace:
/// `"timestamp":…,"type":…,"data":…}` (the id is set where it is known).
fn body<P: Serialize>(payload: &P) -> Option<String> {
    #[derive(Serialize)]
    struct Body<'a, P> {
        timestamp: DateTime<Utc>,
        #[serde(flatten)]
        payload: &'a P,
    }
    let text = serde_json::to_string(&Body {
        timestamp: Utc::now(),
        payload,
    })
    .ok()?;
    text.strip_prefix('{').map(str::to_owned)
}

/// What a subscriber gets: the events it missed, then a live feed.
pub struct Subscription {
    /// The socket starts after this id: `after`, or the user's newest
    /// kept event when the client resumes nothing (older events are not
    /// its to replay, even after a lost live feed).
    pub start: u64,
    pub backlog: Vec<Arc<Event>>,
    /// False when `after` was older than the kept backlog: events were
    /// lost and the client should refetch state.
    pub complete: bool,
    pub live: broadcast::Receiver<Arc<Event>>,
}

/// The channel name of a user (the spec's `websocket_channel`).
pub fn channel_of(user_id: &str) -> String {
    format!("user_{user_id}")
}

/// The event channels of every user.
pub struct Events {
    fanout: Arc<Fanout>,
    kept: Kept,
}

enum Kept {
    Here(local::Backlog),
    Redis(redis::Streams),
}

impl Default for Events {
    fn default() -> Self {
        Self::local()
    }
}

impl Events {
    /// Events kept in this process (one host).
    pub fn local() -> Self {
        Self {
            fanout: Arc::default(),
            kept: Kept::Here(local::Backlog::new()),
        }
    }

    /// Events kept in the Redis at `url` under `prefix`, delivered to
    /// every host's sockets.
    pub async fn shared(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let fanout = Arc::<Fanout>::default();
        let streams = redis::Streams::open(url, prefix, &fanout).await?;
        Ok(Self {
            fanout,
            kept: Kept::Redis(streams),
        })
    }

    /// Publishes an event on the user's channel. With Redis, it goes out
    /// from an ordered outbox: a host's events reach Redis in the order
    /// they were published.
    pub fn publish<P: Serialize>(&self, user_id: &str, payload: &P) {
        let Some(body) = body(payload) else {
            tracing::error!("an event did not serialise");
            return;
        };
        match &self.kept {
            Kept::Here(backlog) => backlog.publish(user_id, &body, &self.fanout),
            Kept::Redis(streams) => streams.publish(user_id, body),
        }
    }

    /// Subscribes to a user's channel, unless the user already has `max`
    /// subscribers on this host; with `after`, first replays the kept
    /// events newer than that id.
    pub async fn subscribe_within(
        &self,
        user_id: &str,
        after: Option<u64>,
        max: usize,
    ) -> Option<Subscription> {
        // Joined before the backlog is read: an event lands in the
        // backlog, the live feed or both (the socket skips ids it sent).
        let live = self.fanout.join(user_id, max)?;
        let (start, backlog, complete) = match after {
            None => (self.newest(user_id).await, Vec::new(), true),
            Some(after) => {
                let (backlog, complete) = self.kept_after(user_id, after).await;
                (after, backlog, complete)
            }
        };
        Some(Subscription {
            start,
            backlog,
            complete,
            live,
        })
    }

    /// Kept events of a user newer than `after` (to recover after a slow
    /// subscriber lagged behind the live feed).
    pub async fn since(&self, user_id: &str, after: u64) -> Vec<Arc<Event>> {
        self.kept_after(user_id, after).await.0
    }

    /// The id of the user's newest kept event (0: none).
    async fn newest(&self, user_id: &str) -> u64 {
        match &self.kept {
            Kept::Here(backlog) => backlog.newest(user_id),
            Kept::Redis(streams) => streams.newest(user_id).await,
        }
    }

    async fn kept_after(&self, user_id: &str, after: u64) -> (Vec<Arc<Event>>, bool) {
        match &self.kept {
            Kept::Here(backlog) => backlog.after(user_id, after),
            Kept::Redis(streams) => streams.after(user_id, after).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    #[serde(tag = "type", content = "data")]
    enum Ev {
        #[serde(rename = "a")]
        A(u32),
    }

    fn data(e: &Event) -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(&e.text).unwrap();
        assert_eq!(v["id"], e.seq.to_string());
        assert!(v["timestamp"].is_string());
        v["data"].clone()
    }

    #[tokio::test]
    async fn ids_grow_and_resume_replays_only_newer_events() {
        let events = Events::local();
        events.publish("u1", &Ev::A(1));
        events.publish("u1", &Ev::A(2));
        events.publish("u2", &Ev::A(3));
        let all = events.since("u1", 0).await;
        assert_eq!(all.len(), 2);
        assert!(all[1].seq > all[0].seq);
        let sub = events
            .subscribe_within("u1", Some(all[0].seq), 8)
            .await
            .unwrap();
        assert!(sub.complete);
        assert_eq!(sub.backlog.len(), 1);
        assert_eq!(data(&sub.backlog[0]), 2);
    }

    #[tokio::test]
    async fn live_events_follow_the_backlog() {
        let events = Events::local();
        events.publish("u", &Ev::A(1));
        let first = events.since("u", 0).await[0].seq;
        let mut sub = events
            .subscribe_within("u", Some(first - 1), 8)
            .await
            .unwrap();
        events.publish("u", &Ev::A(2));
        assert_eq!(sub.backlog.len(), 1);
        assert_eq!(data(&sub.live.recv().await.unwrap()), 2);
    }

    #[tokio::test]
    async fn resuming_past_the_backlog_is_reported_incomplete() {
        let events = Events::local();
        events.publish("u", &Ev::A(0));
        let first = events.since("u", 0).await[0].seq;
        // The first and the one after it fall out of the backlog.
        for i in 0..=BACKLOG as u32 {
            events.publish("u", &Ev::A(i));
        }
        let sub = |after| events.subscribe_within("u", Some(after), 8);
        assert!(!sub(first).await.unwrap().complete);
        assert!(!sub(1).await.unwrap().complete);
        let last = events.since("u", 0).await.last().unwrap().seq;
        assert!(sub(last).await.unwrap().complete);
    }

    #[tokio::test]
    async fn subscribers_per_user_are_capped() {
        let events = Events::local();
        let a = events.subscribe_within("u", None, 2).await.unwrap();
        let _b = events.subscribe_within("u", None, 2).await.unwrap();
        assert!(events.subscribe_within("u", None, 2).await.is_none());
        assert!(events.subscribe_within("v", None, 2).await.is_some());
        drop(a);
        assert!(events.subscribe_within("u", None, 2).await.is_some());
    }
}
