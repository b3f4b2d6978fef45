//! Leasing: a worker gets the next job in the scheduler's order, for a
//! limited time that heartbeats renew.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::events::{JobStarted, UserEvent};
use super::job::{JobSpec, JobStatus};
use super::scheduler::{self, QueuedJob, UserSlots};
use super::{Queue, QueueError, QueueResult, WorkerInfo};
use crate::store::jobs as q;
use crate::store::new_id;

/// A job handed to a worker.
#[derive(Debug, Clone)]
pub struct Lease {
    pub job_id: String,
    pub user_id: String,
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub attempt: i64,
    pub spec: JobSpec,
}

impl Queue {
    /// Leases the next job for `worker` in the scheduler's order, if any.
    pub async fn lease(&self, worker: &WorkerInfo) -> QueueResult<Option<Lease>> {
        Ok(self.try_lease(worker).await?.ok())
    }

    /// A lease for `worker`, or the models of the queued jobs it found
    /// (none of them one it could take now).
    async fn try_lease(&self, worker: &WorkerInfo) -> QueueResult<Result<Lease, Vec<String>>> {
        let mut tx = self.parts.db.begin().await?;
        q::lock_queue(&mut tx).await?;
        let all = q::lease_candidates(&mut tx).await?;
        let mut models: Vec<String> = all.iter().map(|c| c.model.clone()).collect();
        models.sort_unstable();
        models.dedup();
        let candidates: Vec<q::Candidate> = all
            .into_iter()
            .filter(|c| worker.serves(&c.model))
            .collect();
        if candidates.is_empty() {
            tx.rollback().await?;
            return Ok(Err(models));
        }
        let running: HashMap<String, i64> = q::running_counts(&mut tx).await?.into_iter().collect();
        let mut users: HashMap<String, UserSlots> = HashMap::new();
        for c in &candidates {
            if users.contains_key(&c.user_id) {
                continue;
            }
            let last = q::last_dispatch(&mut tx, &c.user_id).await?;
            users.insert(
                c.user_id.clone(),
                UserSlots {
                    running: running.get(&c.user_id).copied().unwrap_or(0) as u32,
                    cap: self.parts.plans.tier(&c.tier).queue_count,
                    last_dispatch: last,
                },
            );
        }
        // Each candidate is a user's oldest job for one model; the pick's
        // user, model and seq find its row.
        let jobs: Vec<QueuedJob> = candidates
            .into_iter()
            .map(|c| QueuedJob {
                id: String::new(),
                user_id: c.user_id,
                priority: c.priority as u32,
                model: c.model,
                seq: c.seq,
            })
            .collect();
        let Some(pick) = scheduler::pick_next(&jobs, &users, |_| true) else {
            tx.rollback().await?;
            return Ok(Err(models));
        };
        let Some(row) = q::queued_job_at(&mut tx, &pick.user_id, &pick.model, pick.seq).await?
        else {
            tx.rollback().await?;
            return Ok(Err(models));
        };
        let token = new_id();
        let now = Utc::now();
        let dispatched_at = q::order_stamps(&mut tx, 1).await?[0];
        let expires_at = now + self.settings.lease_ttl;
        let granted = q::grant_lease(
            &mut tx,
            &q::LeaseGrant {
                job_id: &row.id,
                worker_id: &worker.id,
                token: &token,
                expires_at,
                dispatched_at,
                now,
            },
        )
        .await?;
        if !granted {
            tx.rollback().await?;
            return Ok(Err(models));
        }
        q::count_queued(&mut tx, &row.user_id, -1).await?;
        tx.commit().await?;
        let spec: JobSpec =
            serde_json::from_str(&row.params).map_err(|e| QueueError::Invalid(e.to_string()))?;
        let attempt = row.attempts + 1;
        self.notify(
            &row.user_id,
            UserEvent::JobStarted(JobStarted {
                job_id: row.id.clone(),
                status: JobStatus::Processing,
                attempt,
                started_at: now,
            }),
        );
        Ok(Ok(Lease {
            job_id: row.id,
            user_id: row.user_id,
            token,
            expires_at,
            attempt,
            spec,
        }))
    }

    /// Whether the holder of `token`'s lease on `job_id` may fetch node
    /// plugin `name`@`version`: the job is running under that lease and
    /// pinned that version.
    pub async fn check_pinned(
        &self,
        job_id: &str,
        token: &str,
        name: &str,
        version: &str,
    ) -> QueueResult<()> {
        let row = self.held(job_id, token).await?;
        let spec: JobSpec =
            serde_json::from_str(&row.params).map_err(|e| QueueError::Invalid(e.to_string()))?;
        let pinned = spec
            .pre_nodes
            .iter()
            .chain(&spec.post_nodes)
            .chain(spec.workflow.iter().flat_map(|p| p.plugins()))
            .any(|n| n.name == name && n.version == version);
        if pinned {
            Ok(())
        } else {
            Err(QueueError::NotPinned)
        }
    }

    /// The owner of a job the lease `token` holds.
    pub async fn held_job_owner(&self, job_id: &str, token: &str) -> QueueResult<String> {
        Ok(self.held(job_id, token).await?.user_id)
    }

    async fn held(&self, job_id: &str, token: &str) -> QueueResult<q::JobRow> {
        q::get(&self.parts.db, job_id)
            .await?
            .filter(|r| {
                r.status == JobStatus::Processing && r.lease_token.as_deref() == Some(token)
            })
            .ok_or(QueueError::NotPinned)
    }

    /// Waits up to `wait` for a job this worker may take. Wakes on every
    /// enqueue and job end (on any host where they are heard, else in this
    /// process with a re-check every second).
    ///
    /// A wake-up wakes every waiting worker, but they try one at a time,
    /// and a worker skips the database when an earlier try since the last
    /// change found nothing it serves: one enqueue costs a lease or two,
    /// not one per waiting worker.
    pub async fn wait_for_lease(
        &self,
        worker: &WorkerInfo,
        wait: Duration,
    ) -> QueueResult<Option<Lease>> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut polled = false;
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !worker.paused
                && let Some(lease) = self.lease_in_turn(worker, polled).await?
            {
                return Ok(Some(lease));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let poll = if self.hears_other_hosts.load(Ordering::Relaxed) {
                Duration::from_secs(10)
            } else {
                Duration::from_secs(1)
            };
            let step = (deadline - now).min(poll);
            polled = tokio::time::timeout(step, notified).await.is_err();
        }
    }

    /// One lease try in this host's turn; skipped (None) when nothing
    /// changed since a try found no job this worker serves, unless
    /// `polled` (a periodic re-check trusts no knowledge).
    async fn lease_in_turn(&self, worker: &WorkerInfo, polled: bool) -> QueueResult<Option<Lease>> {
        let mut known = self.leasing.lock().await;
        let change = self.changes.load(Ordering::Acquire);
        if !polled && known.change == change && !known.models.iter().any(|m| worker.serves(m)) {
            return Ok(None);
        }
        match self.try_lease(worker).await? {
            Ok(lease) => Ok(Some(lease)),
            Err(mut models) => {
                // What is left for workers that serve other models.
                models.retain(|m| !worker.serves(m));
                if known.change == change {
                    known.models.retain(|m| models.contains(m));
                } else {
                    *known = Fruitless { change, models };
                }
                Ok(None)
            }
        }
    }
}

/// What the last fruitless lease tries learned: at queue change `change`,
/// only jobs of `models` (none served by the workers that tried) were
/// queued.
#[derive(Debug)]
pub(super) struct Fruitless {
    pub change: u64,
    pub models: Vec<String>,
}

impl Default for Fruitless {
    fn default() -> Self {
        Self {
            change: u64::MAX,
            models: Vec::new(),
        }
    }
}
