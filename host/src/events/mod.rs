//! The per-user event bus behind `GET /ws`: jobs and the ledger publish,
//! WebSocket connections subscribe to their user's channel. Every event
//! gets an id that only grows (microseconds since the epoch, bumped when
//! two land in one microsecond, so ids stay ordered across restarts), and
//! each user's recent events are kept so a client that reconnects with its
//! last id gets what it missed. The bus carries any payload type that
//! serialises with its own `type` and `data` (the studio's events are
//! `queue::events::UserEvent`). In-process; Redis pub/sub for several hosts
//! comes with the scale-out work.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::broadcast;

/// Events kept per user for resuming.
const BACKLOG: usize = 512;
/// Users whose newest event is older than this are forgotten when nobody
/// listens.
const IDLE_SECS: i64 = 3600;

/// One event as a client receives it: `id`, `timestamp`, and the
/// payload's `type` and `data`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event<P> {
    /// Ordered, unique: resume with the last one seen.
    pub id: String,
    pub timestamp: DateTime<Utc>,
    #[serde(flatten)]
    pub payload: P,
    #[serde(skip)]
    pub seq: u64,
}

/// What a subscriber gets: the events it missed, then a live feed.
pub struct Subscription<P> {
    pub backlog: Vec<Arc<Event<P>>>,
    /// False when `after` was older than the kept backlog: events were
    /// lost and the client should refetch state.
    pub complete: bool,
    pub live: broadcast::Receiver<Arc<Event<P>>>,
}

struct Channel<P> {
    recent: VecDeque<Arc<Event<P>>>,
    /// Events before this id were dropped from `recent`.
    dropped_before: u64,
    tx: broadcast::Sender<Arc<Event<P>>>,
}

impl<P> Channel<P> {
    fn new() -> Self {
        Self {
            recent: VecDeque::new(),
            dropped_before: 0,
            tx: broadcast::channel(BACKLOG).0,
        }
    }
}

pub struct EventBus<P> {
    inner: Mutex<Inner<P>>,
    /// Ids from earlier runs are below this one: resuming from one of them
    /// may have missed events.
    started: u64,
}

struct Inner<P> {
    last_seq: u64,
    channels: HashMap<String, Channel<P>>,
}

impl<P> Default for EventBus<P> {
    fn default() -> Self {
        Self::new()
    }
}

fn now_micros() -> u64 {
    u64::try_from(Utc::now().timestamp_micros()).unwrap_or(0)
}

/// The channel name of a user (the spec's `websocket_channel`).
pub fn channel_of(user_id: &str) -> String {
    format!("user_{user_id}")
}

impl<P> EventBus<P> {
    pub fn new() -> Self {
        let started = now_micros();
        Self {
            inner: Mutex::new(Inner {
                last_seq: started,
                channels: HashMap::new(),
            }),
            started,
        }
    }

    /// Publishes an event on the user's channel.
    pub fn publish(&self, user_id: &str, payload: P) -> Arc<Event<P>> {
        let mut inner = self.inner.lock().expect("event bus lock");
        let seq = (inner.last_seq + 1).max(now_micros());
        inner.last_seq = seq;
        let event = Arc::new(Event {
            id: seq.to_string(),
            timestamp: Utc::now(),
            payload,
            seq,
        });
        if inner.channels.len() > 1024 && seq.is_multiple_of(64) {
            let horizon = seq.saturating_sub(IDLE_SECS as u64 * 1_000_000);
            inner.channels.retain(|_, c| {
                c.tx.receiver_count() > 0 || c.recent.back().is_some_and(|e| e.seq > horizon)
            });
        }
        let ch = inner
            .channels
            .entry(user_id.to_owned())
            .or_insert_with(Channel::new);
        if ch.recent.len() == BACKLOG
            && let Some(old) = ch.recent.pop_front()
        {
            ch.dropped_before = old.seq + 1;
        }
        ch.recent.push_back(event.clone());
        let _ = ch.tx.send(event.clone());
        event
    }

    /// Subscribes to a user's channel; with `after`, first replays the kept
    /// events newer than that id.
    pub fn subscribe(&self, user_id: &str, after: Option<u64>) -> Subscription<P> {
        let mut inner = self.inner.lock().expect("event bus lock");
        self.subscribe_locked(&mut inner, user_id, after)
    }

    fn subscribe_locked(
        &self,
        inner: &mut Inner<P>,
        user_id: &str,
        after: Option<u64>,
    ) -> Subscription<P> {
        let ch = inner
            .channels
            .entry(user_id.to_owned())
            .or_insert_with(Channel::new);
        let live = ch.tx.subscribe();
        let (backlog, complete) = match after {
            None => (Vec::new(), true),
            Some(after) => {
                let backlog: Vec<_> = ch
                    .recent
                    .iter()
                    .filter(|e| e.seq > after)
                    .cloned()
                    .collect();
                let complete = after >= self.started && after + 1 >= ch.dropped_before;
                (backlog, complete)
            }
        };
        Subscription {
            backlog,
            complete,
            live,
        }
    }

    /// Like `subscribe`, unless the user already has `max` subscribers
    /// (checked and taken under one lock, so racing callers cannot pass
    /// the cap together).
    pub fn subscribe_within(
        &self,
        user_id: &str,
        after: Option<u64>,
        max: usize,
    ) -> Option<Subscription<P>> {
        let mut inner = self.inner.lock().expect("event bus lock");
        let live = inner
            .channels
            .get(user_id)
            .map_or(0, |c| c.tx.receiver_count());
        if live >= max {
            return None;
        }
        Some(self.subscribe_locked(&mut inner, user_id, after))
    }

    /// Kept events of a user newer than `after` (to recover after a slow
    /// subscriber lagged behind the live feed).
    pub fn since(&self, user_id: &str, after: u64) -> Vec<Arc<Event<P>>> {
        let inner = self.inner.lock().expect("event bus lock");
        inner
            .channels
            .get(user_id)
            .map(|ch| {
                ch.recent
                    .iter()
                    .filter(|e| e.seq > after)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Bus = EventBus<&'static str>;

    #[test]
    fn ids_grow_and_resume_replays_only_newer_events() {
        let bus = Bus::new();
        let a = bus.publish("u1", "job.queued");
        let b = bus.publish("u1", "job.started");
        bus.publish("u2", "job.queued");
        assert!(b.seq > a.seq);
        let sub = bus.subscribe("u1", Some(a.seq));
        assert!(sub.complete);
        assert_eq!(sub.backlog.len(), 1);
        assert_eq!(sub.backlog[0].payload, "job.started");
    }

    #[tokio::test]
    async fn live_events_follow_the_backlog_without_gaps() {
        let bus = Bus::new();
        let first = bus.publish("u", "a");
        let mut sub = bus.subscribe("u", Some(first.seq - 1));
        bus.publish("u", "b");
        assert_eq!(sub.backlog.len(), 1);
        assert_eq!(sub.live.recv().await.unwrap().payload, "b");
    }

    #[test]
    fn resuming_past_the_backlog_is_reported_incomplete() {
        let bus = Bus::new();
        let first = bus.publish("u", "e");
        for _ in 0..=BACKLOG {
            bus.publish("u", "e");
        }
        assert!(!bus.subscribe("u", Some(first.seq)).complete);
        assert!(!bus.subscribe("u", Some(1)).complete);
        let last = bus.since("u", 0).last().unwrap().seq;
        assert!(bus.subscribe("u", Some(last)).complete);
    }

    #[test]
    fn subscribers_per_user_are_capped() {
        let bus = Bus::new();
        let a = bus.subscribe_within("u", None, 2).unwrap();
        let _b = bus.subscribe_within("u", None, 2).unwrap();
        assert!(bus.subscribe_within("u", None, 2).is_none());
        assert!(bus.subscribe_within("v", None, 2).is_some());
        drop(a);
        assert!(bus.subscribe_within("u", None, 2).is_some());
    }
}
