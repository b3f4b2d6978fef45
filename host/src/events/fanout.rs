//! This host's subscribers per user: a broadcast channel each, and the
//! newest event it carried (so an event delivered twice, by the live feed
//! and a catch-up, goes out once).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use super::{BACKLOG, Event};

/// Users with no subscriber left are forgotten once there are this many.
const SWEEP_ABOVE: usize = 1024;

#[derive(Default)]
pub(super) struct Fanout {
    users: Mutex<HashMap<String, Slot>>,
}

struct Slot {
    tx: broadcast::Sender<Arc<Event>>,
    /// The newest event sent on `tx`.
    last: u64,
}

impl Fanout {
    /// A live feed of the user's events, unless `max` are open already
    /// (checked and taken under one lock, so racing callers cannot pass
    /// the cap together).
    pub(super) fn join(
        &self,
        user_id: &str,
        max: usize,
    ) -> Option<broadcast::Receiver<Arc<Event>>> {
        let mut users = self.users.lock().expect("fanout lock");
        if users.len() > SWEEP_ABOVE {
            users.retain(|_, s| s.tx.receiver_count() > 0);
        }
        let slot = users.entry(user_id.to_owned()).or_insert_with(|| Slot {
            tx: broadcast::channel(BACKLOG).0,
            last: 0,
        });
        (slot.tx.receiver_count() < max).then(|| slot.tx.subscribe())
    }

    /// Sends `event` to the user's subscribers on this host, unless they
    /// had it (or a newer one) already.
    pub(super) fn deliver(&self, user_id: &str, event: Arc<Event>) {
        let mut users = self.users.lock().expect("fanout lock");
        let Some(slot) = users.get_mut(user_id) else {
            return;
        };
        if slot.tx.receiver_count() == 0 {
            users.remove(user_id);
            return;
        }
        if event.seq > slot.last {
            slot.last = event.seq;
            let _ = slot.tx.send(event);
        }
    }

    /// The users with subscribers here and the newest event each got
    /// (where a catch-up starts after a lost feed).
    pub(super) fn listening(&self) -> Vec<(String, u64)> {
        let users = self.users.lock().expect("fanout lock");
        users
            .iter()
            .filter(|(_, s)| s.tx.receiver_count() > 0)
            .map(|(u, s)| (u.clone(), s.last))
            .collect()
    }
}
