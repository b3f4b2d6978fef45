//! The dispatch order of queued jobs, as pure logic over a snapshot (the
//! queue store feeds it; it touches no database):
//!
//! 1. tier priority — studio before pro before starter before free (the
//!    plan's rank);
//! 2. within a priority, round-robin between users: the user served least
//!    recently goes first, so one user's hundred jobs never starve
//!    another's one;
//! 3. then age: a user's oldest job first.
//!
//! A user whose running jobs already fill their tier's `queue_count` is
//! skipped, and so is a job for a model the asking worker does not serve.

use std::collections::HashMap;

/// A queued job as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    pub id: String,
    pub user_id: String,
    /// The rank of the user's tier: higher is served first.
    pub priority: u32,
    pub model: String,
    /// Enqueue order (monotonic): lower is older.
    pub seq: i64,
}

/// What the scheduler knows of a user with queued jobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserSlots {
    /// Jobs of the user running now.
    pub running: u32,
    /// The tier's `queue_count`: how many may run at once.
    pub cap: u32,
    /// When the user last had a job dispatched (a dispatch counter);
    /// `None` if never.
    pub last_dispatch: Option<i64>,
}

impl UserSlots {
    fn has_room(&self) -> bool {
        self.running < self.cap
    }
}

/// The next job to dispatch to a worker serving the models `serves` says
/// yes to, or `None` when nothing is eligible.
pub fn pick_next<'a>(
    jobs: &'a [QueuedJob],
    users: &HashMap<String, UserSlots>,
    serves: impl Fn(&str) -> bool,
) -> Option<&'a QueuedJob> {
    // Per user: their oldest eligible job.
    let mut oldest: HashMap<&str, &QueuedJob> = HashMap::new();
    for job in jobs {
        let room = users.get(&job.user_id).is_none_or(UserSlots::has_room);
        if !room || !serves(&job.model) {
            continue;
        }
        oldest
            .entry(job.user_id.as_str())
            .and_modify(|cur| {
                if job.seq < cur.seq {
                    *cur = job;
                }
            })
            .or_insert(job);
    }
    oldest.into_values().min_by_key(|job| {
        let last = users.get(&job.user_id).and_then(|u| u.last_dispatch);
        // Higher priority first; never-served users (None) before served
        // ones, then least recently served; then the older job.
        (
            std::cmp::Reverse(job.priority),
            last.map_or((0, 0), |l| (1, l)),
            job.seq,
        )
    })
}

/// The order in which the queued jobs would be dispatched if every user had
/// room and every model a worker: job id → 1-based queue position.
pub fn positions(jobs: &[QueuedJob], users: &HashMap<String, UserSlots>) -> HashMap<String, usize> {
    let mut remaining: Vec<QueuedJob> = jobs.to_vec();
    let mut state: HashMap<String, UserSlots> = users
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                UserSlots {
                    running: 0,
                    cap: u32::MAX,
                    last_dispatch: v.last_dispatch,
                },
            )
        })
        .collect();
    let mut clock = state
        .values()
        .filter_map(|u| u.last_dispatch)
        .max()
        .unwrap_or(0);
    let mut order = HashMap::with_capacity(jobs.len());
    while let Some(next) = pick_next(&remaining, &state, |_| true).cloned() {
        clock += 1;
        order.insert(next.id.clone(), order.len() + 1);
        state
            .entry(next.user_id.clone())
            .or_insert(UserSlots {
                running: 0,
                cap: u32::MAX,
                last_dispatch: None,
            })
            .last_dispatch = Some(clock);
        remaining.retain(|j| j.id != next.id);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn job(id: &str, user: &str, priority: u32, seq: i64) -> QueuedJob {
        QueuedJob {
            id: id.into(),
            user_id: user.into(),
            priority,
            model: "sdxl".into(),
            seq,
        }
    }

    fn slots(cap: u32) -> UserSlots {
        UserSlots {
            running: 0,
            cap,
            last_dispatch: None,
        }
    }

    /// Dispatches everything (caps lifted as jobs finish at once) and
    /// returns the order of job ids.
    fn drain(mut jobs: Vec<QueuedJob>, mut users: HashMap<String, UserSlots>) -> Vec<String> {
        let mut out = Vec::new();
        let mut clock = 0;
        while let Some(next) = pick_next(&jobs, &users, |_| true).cloned() {
            clock += 1;
            users
                .entry(next.user_id.clone())
                .or_insert(slots(1))
                .last_dispatch = Some(clock);
            jobs.retain(|j| j.id != next.id);
            out.push(next.id);
        }
        out
    }

    #[test]
    fn higher_tiers_first_then_age() {
        let jobs = vec![
            job("free-old", "f", 0, 1),
            job("pro", "p", 2, 5),
            job("studio", "s", 3, 9),
        ];
        let users = HashMap::from([
            ("f".into(), slots(1)),
            ("p".into(), slots(1)),
            ("s".into(), slots(3)),
        ]);
        assert_eq!(drain(jobs, users), ["studio", "pro", "free-old"]);
    }

    #[test]
    fn one_users_backlog_does_not_starve_another() {
        let mut jobs: Vec<QueuedJob> = (0..50).map(|i| job(&format!("a{i}"), "a", 0, i)).collect();
        jobs.push(job("b0", "b", 0, 100));
        let users = HashMap::from([("a".into(), slots(1)), ("b".into(), slots(1))]);
        let order = drain(jobs, users);
        let b_at = order.iter().position(|id| id == "b0").unwrap();
        assert!(b_at <= 1, "B's job dispatched at {b_at}");
        assert_eq!(&order[..3], ["a0", "b0", "a1"]);
    }

    #[test]
    fn full_users_and_unserved_models_are_skipped() {
        let mut jobs = vec![job("a1", "a", 3, 1), job("b1", "b", 0, 2)];
        jobs.push(QueuedJob {
            model: "flux".into(),
            ..job("c1", "c", 3, 0)
        });
        let users = HashMap::from([
            (
                "a".into(),
                UserSlots {
                    running: 2,
                    cap: 2,
                    last_dispatch: Some(1),
                },
            ),
            ("b".into(), slots(1)),
            ("c".into(), slots(1)),
        ]);
        let next = pick_next(&jobs, &users, |m| m == "sdxl").unwrap();
        assert_eq!(next.id, "b1");
        assert!(pick_next(&jobs, &users, |_| false).is_none());
    }

    #[test]
    fn positions_follow_the_dispatch_order() {
        let jobs = vec![
            job("a0", "a", 0, 0),
            job("a1", "a", 0, 1),
            job("b0", "b", 0, 2),
            job("s0", "s", 3, 3),
        ];
        let p = positions(&jobs, &HashMap::new());
        assert_eq!((p["s0"], p["a0"], p["b0"], p["a1"]), (1, 2, 3, 4));
    }

    proptest! {
        /// Whatever the queue, between two dispatches to the same user of a
        /// priority, every other user of that priority with jobs waiting
        /// is served once: nobody waits behind more than one job of each
        /// other same-priority user.
        #[test]
        fn round_robin_is_fair(backlogs in prop::collection::vec(1usize..20, 2..6)) {
            let mut jobs = Vec::new();
            let mut seq = 0;
            for (u, n) in backlogs.iter().enumerate() {
                for k in 0..*n {
                    jobs.push(job(&format!("u{u}-{k}"), &format!("u{u}"), 0, seq));
                    seq += 1;
                }
            }
            let order = drain(jobs, HashMap::new());
            let users: Vec<String> = order.iter().map(|id| id.split('-').next().unwrap().to_owned()).collect();
            // In every window of as many dispatches as there are users
            // still waiting, no user appears twice.
            let mut left: HashMap<String, usize> = backlogs.iter().enumerate().map(|(u, n)| (format!("u{u}"), *n)).collect();
            for (i, u) in users.iter().enumerate() {
                let active = left.values().filter(|n| **n > 0).count();
                let window = &users[i..(i + active).min(users.len())];
                prop_assert_eq!(window.iter().filter(|w| *w == u).count(), 1);
                *left.get_mut(u).unwrap() -= 1;
            }
        }
    }
}
