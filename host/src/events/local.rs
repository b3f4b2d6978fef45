//! Events kept in this process: the last `BACKLOG` of each user, ids from
//! this host's clock.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use chrono::Utc;

use super::fanout::Fanout;
use super::{BACKLOG, Event};

/// Users whose newest event is older than this are forgotten.
const IDLE_MICROS: u64 = 3600 * 1_000_000;

pub(super) struct Backlog {
    inner: Mutex<Inner>,
    /// Ids from earlier runs are below this one: resuming from one of
    /// them may have missed events.
    started: u64,
}

struct Inner {
    last_seq: u64,
    users: HashMap<String, Kept>,
}

#[derive(Default)]
struct Kept {
    recent: VecDeque<Arc<Event>>,
    /// Events before this id were dropped from `recent`.
    dropped_before: u64,
}

fn now_micros() -> u64 {
    u64::try_from(Utc::now().timestamp_micros()).unwrap_or(0)
}

impl Backlog {
    pub(super) fn new() -> Self {
        let started = now_micros();
        Self {
            inner: Mutex::new(Inner {
                last_seq: started,
                users: HashMap::new(),
            }),
            started,
        }
    }

    /// Keeps the event and hands it to this host's subscribers, under one
    /// lock: subscribers see ids in order.
    pub(super) fn publish(&self, user_id: &str, body: &str, fanout: &Fanout) {
        let mut inner = self.inner.lock().expect("event backlog lock");
        let seq = (inner.last_seq + 1).max(now_micros());
        inner.last_seq = seq;
        let event = Arc::new(Event::new(seq, body));
        if inner.users.len() > 1024 && seq.is_multiple_of(64) {
            let horizon = seq.saturating_sub(IDLE_MICROS);
            inner
                .users
                .retain(|_, k| k.recent.back().is_some_and(|e| e.seq > horizon));
        }
        let kept = inner.users.entry(user_id.to_owned()).or_default();
        if kept.recent.len() == BACKLOG
            && let Some(old) = kept.recent.pop_front()
        {
            kept.dropped_before = old.seq + 1;
        }
        kept.recent.push_back(event.clone());
        fanout.deliver(user_id, event);
    }

    pub(super) fn newest(&self, user_id: &str) -> u64 {
        let inner = self.inner.lock().expect("event backlog lock");
        inner
            .users
            .get(user_id)
            .and_then(|k| k.recent.back())
            .map_or(0, |e| e.seq)
    }

    /// The kept events after `after`, and whether they are all there were.
    pub(super) fn after(&self, user_id: &str, after: u64) -> (Vec<Arc<Event>>, bool) {
        let inner = self.inner.lock().expect("event backlog lock");
        let Some(kept) = inner.users.get(user_id) else {
            return (Vec::new(), after >= self.started);
        };
        let events = kept
            .recent
            .iter()
            .filter(|e| e.seq > after)
            .cloned()
            .collect();
        let complete = after >= self.started && after.saturating_add(1) >= kept.dropped_before;
        (events, complete)
    }
}
