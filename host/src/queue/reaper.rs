//! The reaper: jobs whose worker stopped renewing the lease go back to the
//! queue (or fail past the retry limit, refunded), and queued jobs for
//! models no live worker has served for a while fail. Safe to run on every
//! host at once: each transition is conditional.

use chrono::Utc;

use super::events::{JobRequeued, UserEvent};
use super::failure::{Failure, FailureCode};
use super::job::JobStatus;
use super::settle::{Holder, Outcome};
use super::{Queue, QueueError, QueueResult};
use crate::store::jobs::{self as q, JobRow};

impl Queue {
    /// One pass; the number of jobs it moved.
    pub async fn reap(&self) -> QueueResult<usize> {
        let now = Utc::now();
        let mut n = 0;
        for row in q::expired_leases(&self.parts.db, now).await? {
            let Some(token) = row.lease_token.clone() else {
                continue;
            };
            if row.attempts >= i64::from(self.settings.max_attempts) {
                tracing::warn!(job = %row.id, attempts = row.attempts, "the job's workers stopped responding; failing it");
                n += self
                    .reap_one(&row.id, Holder::Lease(&token), FailureCode::WorkerLost)
                    .await?;
            } else if self.requeue(&row, &token).await? {
                tracing::warn!(job = %row.id, attempt = row.attempts, "lease expired; job back in the queue");
                self.notify(
                    &row.user_id,
                    UserEvent::JobRequeued(JobRequeued {
                        job_id: row.id.clone(),
                        status: JobStatus::Queued,
                        attempt: row.attempts,
                    }),
                );
                n += 1;
            }
        }
        let horizon = now - self.settings.worker_offline;
        let served = self.served().await?;
        if !served.all {
            for row in q::queued_before(&self.parts.db, horizon).await? {
                if served.covers(&row.model) {
                    continue;
                }
                tracing::warn!(job = %row.id, model = %row.model, "no worker has served the job's model for a while; failing it");
                n += self
                    .reap_one(&row.id, Holder::Queued, FailureCode::NoWorker)
                    .await?;
            }
        }
        if n > 0 {
            self.wake_workers();
        }
        Ok(n)
    }

    /// Fails a job the reaper found abandoned, with a refund; 0 when
    /// something else ended it first.
    async fn reap_one(
        &self,
        job_id: &str,
        holder: Holder<'_>,
        code: FailureCode,
    ) -> QueueResult<usize> {
        let failure = Failure::new(code);
        match self.end(job_id, holder, Outcome::Failed(&failure)).await {
            Ok(_) => Ok(1),
            Err(QueueError::LeaseLost | QueueError::Ended { .. }) => Ok(0),
            Err(e) => Err(e),
        }
    }

    async fn requeue(&self, row: &JobRow, token: &str) -> QueueResult<bool> {
        let mut tx = self.parts.db.begin().await?;
        let ok = q::requeue(&mut tx, &row.id, token).await?;
        if ok {
            q::count_queued(&mut tx, &row.user_id, 1).await?;
        }
        tx.commit().await?;
        Ok(ok)
    }
}
