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

/// One user's queued jobs at one priority, summarised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedGroup {
    pub user_id: String,
    pub priority: u32,
    pub queued: usize,
    /// `seq` of the user's oldest queued job.
    pub oldest: i64,
    pub last_dispatch: Option<i64>,
}

/// The rotation key of a group among users of its priority: never-served
/// users first, then least recently served, then the older backlog (the
/// order `pick_next` serves them in).
fn rotation_key(g: &QueuedGroup) -> ((u8, i64), i64) {
    (g.last_dispatch.map_or((0, 0), |l| (1, l)), g.oldest)
}

/// The 1-based queue position of the `k`-th (1-based, by age) queued job
/// of `user` at `priority`, computed from per-user summaries in O(users)
/// instead of simulating every dispatch: every job of a higher priority
/// goes first, and each other user of the same priority gets one job per
/// round, ahead of ours in the round if they come first in the rotation.
/// Agrees with `positions` (checked by a property test).
pub fn position_of(groups: &[QueuedGroup], user: &str, priority: u32, k: usize) -> usize {
    let own = groups
        .iter()
        .find(|g| g.user_id == user && g.priority == priority);
    let mut ahead = k.saturating_sub(1);
    for g in groups {
        if g.priority > priority {
            ahead += g.queued;
        } else if g.priority == priority && g.user_id != user {
            let before_us = own.is_none_or(|o| rotation_key(g) < rotation_key(o));
            ahead += g.queued.min(if before_us { k } else { k - 1 });
        }
    }
    ahead + 1
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

    /// Summaries of `jobs` as the store computes them.
    fn groups(jobs: &[QueuedJob], last: &HashMap<String, Option<i64>>) -> Vec<QueuedGroup> {
        let mut out: Vec<QueuedGroup> = Vec::new();
        for j in jobs {
            match out
                .iter_mut()
                .find(|g| g.user_id == j.user_id && g.priority == j.priority)
            {
                Some(g) => {
                    g.queued += 1;
                    g.oldest = g.oldest.min(j.seq);
                }
                None => out.push(QueuedGroup {
                    user_id: j.user_id.clone(),
                    priority: j.priority,
                    queued: 1,
                    oldest: j.seq,
                    last_dispatch: last.get(&j.user_id).copied().flatten(),
                }),
            }
        }
        out
    }

    proptest! {
        /// The O(users) position formula agrees with simulating the
        /// dispatches, for every job of every queue.
        #[test]
        fn position_of_matches_the_simulation(
            users in prop::collection::vec((1usize..8, 0u32..3, prop::option::of(0i64..1000)), 1..6),
            interleave in prop::collection::vec(0usize..6, 0..40),
        ) {
            let mut jobs = Vec::new();
            let mut left: Vec<usize> = users.iter().map(|u| u.0).collect();
            let mut seq = 0;
            let mut counts = vec![0; users.len()];
            let mut push = |u: usize, jobs: &mut Vec<QueuedJob>, seq: &mut i64| {
                jobs.push(job(&format!("u{u}-{}", counts[u]), &format!("u{u}"), users[u].1, *seq));
                counts[u] += 1;
                *seq += 1;
            };
            for pick in interleave {
                let u = pick % users.len();
                if left[u] > 0 {
                    left[u] -= 1;
                    push(u, &mut jobs, &mut seq);
                }
            }
            for (u, &n) in left.iter().enumerate() {
                for _ in 0..n {
                    push(u, &mut jobs, &mut seq);
                }
            }
            // Distinct dispatch clocks, as the store's are.
            let last: HashMap<String, Option<i64>> = users
                .iter()
                .enumerate()
                .map(|(i, u)| (format!("u{i}"), u.2.map(|t| t * 10 + i as i64)))
                .collect();
            let slots: HashMap<String, UserSlots> = last
                .iter()
                .map(|(k, l)| (k.clone(), UserSlots { running: 0, cap: 1, last_dispatch: *l }))
                .collect();
            let simulated = positions(&jobs, &slots);
            let summary = groups(&jobs, &last);
            for j in &jobs {
                let k: usize = j.id.split('-').nth(1).unwrap().parse::<usize>().unwrap() + 1;
                prop_assert_eq!(position_of(&summary, &j.user_id, j.priority, k), simulated[&j.id], "job {}", j.id);
            }
        }

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
