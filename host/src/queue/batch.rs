//! Group commit of enqueues. An enqueue costs a handful of statements
//! (reserve, hold, count, position, insert); on SQLite every one is a
//! round trip to the connection's thread under the one write lock, and
//! that — not the work — is what bounds how many jobs a second get in.
//! So the enqueues waiting at one moment share a transaction: the
//! accounts and queue counters are read once, each job is checked in its
//! turn in memory exactly as alone (credits, the queue's room for its
//! tier, its user's cap), and the accepted ones are written with one
//! statement per user and table and one insert for all holds and jobs.
//!
//! Whoever enqueues adds the job to `pending` and starts a turn in a task
//! of its own; a turn takes everything pending, so a turn whose jobs an
//! earlier one took ends at once. The task, not the caller, runs the
//! transaction: a client that goes away never stops other users' jobs
//! half-way.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use tokio::sync::oneshot;

use super::enqueue::{Enqueued, NewEnqueue, summaries};
use super::events::{JobQueued, UserEvent};
use super::job::JobStatus;
use super::{Queue, QueueError, QueueResult, scheduler};
use crate::billing::reservations::Reservations;
use crate::events::channel_of;
use crate::store::images as img;
use crate::store::jobs as q;

/// Enqueues in one transaction at most.
const MAX_BATCH: usize = 64;

struct Request {
    job: NewEnqueue,
    reply: oneshot::Sender<QueueResult<Enqueued>>,
}

#[derive(Default)]
pub(super) struct Batches {
    pending: Mutex<Vec<Request>>,
    /// One turn at a time: later enqueues gather while a turn commits.
    turn: tokio::sync::Mutex<()>,
}

impl Queue {
    /// Queues `job` in the next turn's transaction.
    pub(super) async fn commit_enqueue(self: &Arc<Self>, job: NewEnqueue) -> QueueResult<Enqueued> {
        let (reply, answer) = oneshot::channel();
        self.batches
            .pending
            .lock()
            .expect("pending enqueues")
            .push(Request { job, reply });
        let this = self.clone();
        tokio::spawn(async move { this.take_turn().await });
        answer.await.map_err(|_| QueueError::Failed)?
    }

    async fn take_turn(&self) {
        let _turn = self.batches.turn.lock().await;
        loop {
            let batch: Vec<Request> = {
                let mut pending = self.batches.pending.lock().expect("pending enqueues");
                let n = pending.len().min(MAX_BATCH);
                pending.drain(..n).collect()
            };
            if batch.is_empty() {
                return;
            }
            let (jobs, replies): (Vec<NewEnqueue>, Vec<_>) =
                batch.into_iter().map(|r| (r.job, r.reply)).unzip();
            let answers = match self.commit_batch(&jobs).await {
                Ok(answers) => answers,
                Err(e) => {
                    tracing::error!(error = %e, jobs = jobs.len(), "enqueue transaction failed");
                    jobs.iter().map(|_| Err(QueueError::Failed)).collect()
                }
            };
            for (reply, answer) in replies.into_iter().zip(answers) {
                // The caller may have gone; its job stays queued.
                let _ = reply.send(answer);
            }
        }
    }

    /// Checks and writes `jobs` in one transaction, then announces the
    /// accepted ones; one answer per job, in order.
    async fn commit_batch(&self, jobs: &[NewEnqueue]) -> QueueResult<Vec<QueueResult<Enqueued>>> {
        let now = Utc::now();
        let mut users: Vec<&str> = jobs.iter().map(|j| j.user_id.as_str()).collect();
        users.sort_unstable();
        users.dedup();
        let mut tx = self.parts.db.begin().await?;
        let mut credits = Reservations::open_in(&mut tx, &users).await?;
        let locks: Vec<(&str, i64, i64)> = users.iter().map(|u| (*u, 0, 0)).collect();
        q::count_enqueued(&mut tx, &locks).await?;
        // Per user with queued jobs, and for this batch's users: queued
        // jobs, their oldest `seq`, last dispatch.
        let mut groups = summaries(&q::queued_groups_with_in(&mut tx, &users).await?);
        let stamps = q::order_stamps(&mut tx, jobs.len()).await?;
        let mut total: u64 = groups.iter().map(|g| g.queued as u64).sum();
        let mut outcomes = Vec::with_capacity(jobs.len());
        let mut accepted: Vec<(usize, String, usize, u64)> = Vec::new();
        for (i, job) in jobs.iter().enumerate() {
            let hold = match credits.hold(
                &job.user_id,
                job.credits,
                format!("job:{}", job.id),
                format!("생성 작업 예약 {}", job.id),
            ) {
                Ok(hold) => hold,
                Err(e) => {
                    outcomes.push(Some(Err(e.into())));
                    continue;
                }
            };
            let mine = groups
                .iter()
                .find(|g| g.user_id == job.user_id)
                .map_or(0, |g| g.queued)
                + 1;
            let refusal = if total + 1 > job.room {
                Some(QueueError::QueueFull { limit: job.room })
            } else if mine > job.max_queued as usize {
                Some(QueueError::QuotaExceeded {
                    limit: job.max_queued,
                })
            } else {
                None
            };
            if let Some(e) = refusal {
                credits.undo_last();
                outcomes.push(Some(Err(e)));
                continue;
            }
            total += 1;
            count_in(&mut groups, job, stamps[i]);
            let position = scheduler::position_of(&groups, &job.user_id, job.priority, mine);
            // Before the commit: `job.queued` goes out the moment the job
            // can be leased, before any worker can announce `job.started`.
            let wait = self.estimated_wait(position, job.gpu_seconds).await;
            accepted.push((i, hold, position, wait));
            outcomes.push(None);
        }
        let balances = credits.write_in(&mut tx).await.map_err(QueueError::from)?;
        // Per user: the priority of the newest job accepted, how many, and
        // the bytes of their stored uploads.
        let mut per_user: BTreeMap<&str, (i64, i64, i64)> = BTreeMap::new();
        for &(i, ..) in &accepted {
            let job = &jobs[i];
            let e = per_user.entry(&job.user_id).or_default();
            *e = (i64::from(job.priority), e.1 + 1, e.2 + job.input_bytes);
        }
        let counts: Vec<(&str, i64, i64)> = per_user.iter().map(|(u, c)| (*u, c.0, c.1)).collect();
        q::count_enqueued(&mut tx, &counts).await?;
        // The stored uploads count against storage at once (the sweep
        // takes them off after the job).
        for (user_id, (.., bytes)) in per_user.into_iter().filter(|(_, c)| c.2 > 0) {
            let delta = img::StoredBytes {
                other_bytes: bytes,
                ..img::StoredBytes::default()
            };
            img::add_storage(&mut tx, user_id, delta).await?;
        }
        let rows: Vec<q::NewJob<'_>> = accepted
            .iter()
            .map(|(i, hold, ..)| {
                let j = &jobs[*i];
                q::NewJob {
                    id: &j.id,
                    user_id: &j.user_id,
                    job_type: j.job_type,
                    priority: i64::from(j.priority),
                    model: &j.model,
                    params: &j.params,
                    hold_id: hold,
                    estimated_credits: j.credits,
                    seq: stamps[*i],
                    save_to_board: j.save_to_board.as_deref(),
                    now,
                }
            })
            .collect();
        q::insert(&mut tx, &rows).await?;
        tx.commit().await?;

        for (i, _, position, wait) in accepted {
            let job = &jobs[i];
            self.notify(
                &job.user_id,
                UserEvent::JobQueued(JobQueued {
                    job_id: job.id.clone(),
                    status: JobStatus::Queued,
                    job_type: job.job_type,
                    queue_position: position,
                    estimated_wait_seconds: wait,
                    estimated_credits: job.credits,
                }),
            );
            outcomes[i] = Some(Ok(Enqueued {
                job_id: job.id.clone(),
                queue_position: position,
                estimated_wait_seconds: wait,
                estimated_credits: job.credits,
                websocket_channel: channel_of(&job.user_id),
            }));
        }
        self.wake_workers();
        for (user_id, balance) in balances {
            self.notify_balance(&user_id, balance);
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("every job answered"))
            .collect())
    }
}

/// Counts `job` into its user's group (the counter the transaction
/// writes): one more queued, its tier's priority, and its `seq` as the
/// oldest when it is the user's only queued job.
fn count_in(groups: &mut Vec<scheduler::QueuedGroup>, job: &NewEnqueue, seq: i64) {
    match groups.iter_mut().find(|g| g.user_id == job.user_id) {
        Some(g) => {
            g.queued += 1;
            g.priority = job.priority;
            if g.queued == 1 {
                g.oldest = seq;
            }
        }
        None => groups.push(scheduler::QueuedGroup {
            user_id: job.user_id.clone(),
            priority: job.priority,
            queued: 1,
            oldest: seq,
            last_dispatch: None,
        }),
    }
}
