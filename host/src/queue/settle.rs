//! Ending jobs: every ending — completion, failure, cancel, the reaper's
//! verdict — goes through `Queue::end`, which checks who may end the job,
//! settles its reservation, writes its images and its final state in one
//! transaction, then tells the user.

use chrono::{DateTime, Utc};

use super::events::{JobCancelled, JobCompleted, JobFailed, UserEvent};
use super::failure::JobError;
use super::failure::{Failure, FailureCode};
use super::job::{
    ImageMetadata, JobSpec, JobStatus, JobType, MAX_OUTPUT_BYTES, MAX_OUTPUT_IMAGES, charge_for,
    workflow_charge,
};
use super::results::{StoredImage, store_png};
use super::views::ResultImage;
use super::{Queue, QueueError, QueueResult};
use crate::billing::ledger;
use crate::i18n::Lang;
use crate::store::images::{self as img, ImageRow};
use crate::store::jobs::{self as q, JobRow};
use crate::store::new_id;

/// A worker's report of the work done.
#[derive(Debug, Clone)]
pub struct Finished {
    /// PNG bytes, one per output image.
    pub images: Vec<Vec<u8>>,
    pub gpu_seconds: f64,
    /// Seconds the job's pre- and post-nodes occupied the worker.
    pub node_seconds: f64,
    pub gpu_started_at: Option<DateTime<Utc>>,
    pub gpu_finished_at: Option<DateTime<Utc>>,
    /// The backend that produced them (image metadata says what made it).
    pub backend: String,
    /// The parameters after the pre-nodes (what was really generated).
    pub effective: Option<JobSpec>,
    /// A workflow's GPU seconds per inference step, in the plan's order
    /// (each is charged at its step's model rate); empty otherwise.
    pub step_seconds: Vec<f64>,
    /// A workflow's output node of each image, in `images`' order.
    pub image_nodes: Vec<String>,
}

/// How a job ended, as the API reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    pub job_id: String,
    pub status: JobStatus,
    pub credits_used: i64,
    pub credits_refunded: i64,
    pub image_ids: Vec<String>,
}

/// Who may end a job.
#[derive(Debug, Clone, Copy)]
pub(super) enum Holder<'a> {
    /// The worker holding this lease (or the reaper, for the lease that
    /// expired).
    Lease(&'a str),
    /// The job's owner, whatever the active state (cancel).
    Owner(&'a str),
    /// The reaper: a job still queued.
    Queued,
}

impl Holder<'_> {
    fn may_end(self, row: &JobRow) -> bool {
        match self {
            Holder::Lease(t) => {
                row.status == JobStatus::Processing && row.lease_token.as_deref() == Some(t)
            }
            Holder::Owner(_) => !row.status.has_ended(),
            Holder::Queued => row.status == JobStatus::Queued,
        }
    }

    /// Why the holder may not end the job.
    fn refusal(self, row: &JobRow) -> QueueError {
        if row.status.has_ended() {
            QueueError::Ended { status: row.status }
        } else {
            QueueError::LeaseLost
        }
    }
}

/// How a job ends, with what that ending charges.
#[derive(Clone, Copy)]
pub(super) enum Outcome<'a> {
    /// The worker's images, charged the measured GPU and node seconds.
    Completed {
        images: &'a [StoredImage],
        finished: &'a Finished,
    },
    /// Charged the work done until then when the failure is the user's
    /// doing (their node), nothing otherwise.
    Failed(&'a Failure),
    /// The owner cancelled: a running job is charged its GPU time so far.
    Cancelled,
}

impl<'a> Outcome<'a> {
    fn status(self) -> JobStatus {
        match self {
            Outcome::Completed { .. } => JobStatus::Completed,
            Outcome::Failed(_) => JobStatus::Failed,
            Outcome::Cancelled => JobStatus::Cancelled,
        }
    }

    fn images(self) -> &'a [StoredImage] {
        match self {
            Outcome::Completed { images, .. } => images,
            _ => &[],
        }
    }

    fn finished(self) -> Option<&'a Finished> {
        match self {
            Outcome::Completed { finished, .. } => Some(finished),
            _ => None,
        }
    }
}

impl Queue {
    /// Stores the results and completes the job: charge the measured GPU
    /// time, release the rest, write the `images` rows. The files of a
    /// report the job no longer accepts are removed again.
    pub async fn complete(
        &self,
        job_id: &str,
        token: &str,
        mut done: Finished,
    ) -> QueueResult<Settled> {
        if done.images.is_empty() {
            tracing::warn!(job = job_id, "the worker returned no images");
            let failure = Failure::new(FailureCode::InvalidOutput);
            return self.fail(job_id, token, &failure).await;
        }
        // The owner names the files; whether the lease still holds is
        // decided once, by `end`.
        let row = q::get(&self.parts.db, job_id)
            .await?
            .ok_or(QueueError::NotFound)?;
        let owner = row.user_id.clone();
        let record = self.generation_record(&row, &done).await?;
        // A worker keeps to the job's output bound; one that does not
        // gets nothing stored.
        let bytes: usize = done.images.iter().map(Vec::len).sum();
        if done.images.len() > MAX_OUTPUT_IMAGES || bytes as u64 > MAX_OUTPUT_BYTES {
            tracing::warn!(
                job = job_id,
                images = done.images.len(),
                bytes,
                "the worker's images pass the job's output bound"
            );
            let failure = Failure::new(FailureCode::InvalidOutput);
            return self.fail(job_id, token, &failure).await;
        }
        // One image at a time: signed, stored, let go of.
        let mut stored = Vec::with_capacity(done.images.len());
        let mut refused = None;
        for png in std::mem::take(&mut done.images) {
            let signed = match self.with_credentials(&record, png).await {
                Ok(signed) => signed,
                Err(reason) => {
                    refused = Some(format!("cannot carry credentials: {reason}"));
                    break;
                }
            };
            match store_png(&self.parts.blobs, &owner, &new_id(), signed).await {
                Ok(s) => stored.push(s),
                Err(reason) => {
                    refused = Some(reason);
                    break;
                }
            }
        }
        if let Some(reason) = refused {
            tracing::warn!(job = job_id, %reason, "the worker's images are unusable");
            for s in &stored {
                let _ = self.parts.blobs.delete(&s.blob_key).await;
                let _ = self.parts.blobs.delete(&s.thumb_key).await;
            }
            let failure = Failure::new(FailureCode::InvalidOutput);
            return self.fail(job_id, token, &failure).await;
        }
        let outcome = Outcome::Completed {
            images: &stored,
            finished: &done,
        };
        let ended = self.end(job_id, Holder::Lease(token), outcome).await;
        if ended.is_err() {
            for s in &stored {
                let _ = self.parts.blobs.delete(&s.blob_key).await;
                let _ = self.parts.blobs.delete(&s.thumb_key).await;
            }
        }
        ended
    }

    /// Fails the job: the work the user's own code caused is charged
    /// (`FailureCode::is_users_doing`), the rest of the reservation
    /// released.
    /// The reason is cleaned here too: a worker is not trusted to have.
    pub async fn fail(&self, job_id: &str, token: &str, failure: &Failure) -> QueueResult<Settled> {
        let mut clean = Failure::new(failure.code).after(failure.worker_seconds);
        if let Some(reason) = &failure.reason {
            clean = clean.because(reason);
        }
        self.end(job_id, Holder::Lease(token), Outcome::Failed(&clean))
            .await
    }

    /// Cancels a user's job: a queued one is refunded in full, a running
    /// one is charged the GPU time it used so far.
    pub async fn cancel(&self, user_id: &str, job_id: &str) -> QueueResult<Settled> {
        self.end(job_id, Holder::Owner(user_id), Outcome::Cancelled)
            .await
    }

    /// A completed workflow's charge: each inference step's GPU seconds
    /// (as the worker measured them, in the plan's order) at the rate of
    /// the model the plan gives it, the nodes' time at the first model's,
    /// capped by the reservation.
    fn workflow_charge(&self, row: &JobRow, done: &Finished) -> QueueResult<i64> {
        let spec: JobSpec = serde_json::from_str(&row.params)
            .map_err(|e| QueueError::Invalid(format!("stored params: {e}")))?;
        let plan = spec
            .workflow
            .ok_or_else(|| QueueError::Invalid("a workflow job without its plan".into()))?;
        let mut steps = Vec::new();
        for ((name, _), secs) in plan.inferences().zip(&done.step_seconds) {
            steps.push((self.model(name)?, *secs));
        }
        let first = self.first_model(row)?;
        Ok(workflow_charge(
            &steps,
            (first, done.node_seconds),
            row.estimated_credits,
        ))
    }

    /// The one place a job ends: checks who may end it, settles the
    /// reservation, writes images and the job's final state, all in one
    /// transaction; then tells the user.
    pub(super) async fn end(
        &self,
        job_id: &str,
        holder: Holder<'_>,
        o: Outcome<'_>,
    ) -> QueueResult<Settled> {
        let mut tx = self.parts.db.begin().await?;
        let row = q::get_for_update(&mut tx, job_id)
            .await?
            // Nobody learns of another user's jobs.
            .filter(|r| !matches!(holder, Holder::Owner(u) if r.user_id != u))
            .ok_or(QueueError::NotFound)?;
        if !holder.may_end(&row) {
            tx.rollback().await?;
            return Err(holder.refusal(&row));
        }
        // A workflow's other time is at its first model's rate.
        let model = self.first_model(&row)?.clone();
        let now = Utc::now();
        let seconds = match (o, row.status, row.gpu_started_at) {
            (Outcome::Completed { finished, .. }, ..) => {
                finished.gpu_seconds + finished.node_seconds
            }
            (Outcome::Failed(f), ..) if f.code.is_users_doing() => f.worker_seconds,
            (Outcome::Cancelled, JobStatus::Processing, Some(t)) => {
                (now - t).num_microseconds().unwrap_or(0) as f64 / 1e6
            }
            _ => 0.0,
        };
        let charge = match o {
            Outcome::Completed { finished, .. } if row.job_type == JobType::Workflow => {
                self.workflow_charge(&row, finished)?
            }
            _ => charge_for(seconds, &model, row.estimated_credits),
        };
        let description = match o {
            Outcome::Completed { .. } => format!("이미지 생성 ({})", row.model),
            Outcome::Cancelled => format!("취소된 생성 작업 ({})", row.model),
            Outcome::Failed(_) => format!("실패한 생성 작업 ({})", row.model),
        };
        let settlement = ledger::settle_in(
            &mut tx,
            &row.hold_id,
            charge,
            &description,
            &format!("job:{job_id}:settle"),
        )
        .await?;
        let spec = ran_spec(&row, o.finished());
        let backend = o.finished().map(|f| f.backend.as_str());
        let metadata = serde_json::to_string(&ImageMetadata::new(&model, spec.as_ref(), backend))
            .map_err(|e| QueueError::Invalid(e.to_string()))?;
        let workflow_meta = |i: usize| -> Option<String> {
            let plan = spec.as_ref()?.workflow.as_ref()?;
            let node = o
                .finished()
                .and_then(|f| f.image_nodes.get(i))
                .filter(|n| plan.is_output(n));
            let mut m: serde_json::Value = serde_json::from_str(&metadata).ok()?;
            m["job_type"] = "workflow".into();
            m["models"] = plan.models().into();
            m["workflow_id"] = plan.workflow_id.clone().into();
            m["workflow_node"] = node.cloned().into();
            Some(m.to_string())
        };
        let mut image_ids = Vec::new();
        for (i, s) in o.images().iter().enumerate() {
            img::insert(
                &mut tx,
                &ImageRow {
                    id: s.id.clone(),
                    user_id: row.user_id.clone(),
                    job_id: Some(row.id.clone()),
                    blob_key: s.blob_key.clone(),
                    thumb_key: s.thumb_key.clone(),
                    width: i64::from(s.width),
                    height: i64::from(s.height),
                    file_size: s.file_size as i64,
                    mime_type: "image/png".into(),
                    is_starred: false,
                    is_public: false,
                    share_token: None,
                    metadata: workflow_meta(i).unwrap_or_else(|| metadata.clone()),
                    created_at: now,
                    thumb_size: s.thumb_size as i64,
                    share_expires_at: None,
                },
            )
            .await?;
            if let Some(board) = &row.save_to_board {
                img::add_to_board(&mut tx, board, &s.id, now).await?;
            }
            image_ids.push(s.id.clone());
        }
        let ids_json =
            (!image_ids.is_empty()).then(|| serde_json::to_string(&image_ids).unwrap_or_default());
        let (gpu_seconds, gpu_started, gpu_finished) = match (o, o.finished()) {
            (_, Some(f)) => (Some(f.gpu_seconds), f.gpu_started_at, f.gpu_finished_at),
            (Outcome::Cancelled, None) if seconds > 0.0 => (Some(seconds), None, Some(now)),
            _ => (None, None, None),
        };
        let node_seconds = o.finished().map(|f| f.node_seconds);
        let error = match o {
            Outcome::Failed(f) => Some((f.code, f.reason.as_deref())),
            _ => None,
        };
        let ended = q::end(
            &mut tx,
            job_id,
            &q::Ending {
                status: o.status(),
                credits_used: settlement.charged,
                credits_refunded: settlement.released,
                error_code: error.map(|(code, _)| code.as_str()),
                error_message: error.and_then(|(_, reason)| reason),
                node_seconds,
                result_image_ids: ids_json.as_deref(),
                gpu_seconds,
                gpu_started_at: gpu_started,
                gpu_finished_at: gpu_finished,
                now,
            },
        )
        .await?;
        if !ended {
            tx.rollback().await?;
            return Err(QueueError::LeaseLost);
        }
        if row.status == JobStatus::Queued {
            q::count_queued(&mut tx, &row.user_id, -1).await?;
        }
        tx.commit().await?;
        self.wake_workers();
        if !image_ids.is_empty() {
            self.parts.revisions.bump(&row.user_id);
        }

        if let Some(started) = row
            .started_at
            .filter(|_| o.status() == JobStatus::Completed)
        {
            let secs = (now - started).num_milliseconds() as f64 / 1000.0;
            let mut mean = self.job_seconds.lock().expect("throughput lock");
            *mean = Some(mean.map_or(secs, |m| m * 0.8 + secs * 0.2));
        }
        let settled = Settled {
            job_id: job_id.to_owned(),
            status: o.status(),
            credits_used: settlement.charged,
            credits_refunded: settlement.released,
            image_ids,
        };
        self.notify(&row.user_id, self.ending_event(&settled, o));
        self.notify_credits(&row.user_id).await;
        Ok(settled)
    }

    fn ending_event(&self, s: &Settled, o: Outcome<'_>) -> UserEvent {
        let job_id = s.job_id.clone();
        match o {
            Outcome::Completed { images, .. } => UserEvent::JobCompleted(JobCompleted {
                job_id,
                status: s.status,
                images: images
                    .iter()
                    .map(|i| {
                        let (w, h) = (i.width.into(), i.height.into());
                        ResultImage::new(&self.parts.links, &i.id, &i.blob_key, &i.thumb_key, w, h)
                    })
                    .collect(),
                credits_used: s.credits_used,
                credits_refunded: s.credits_refunded,
            }),
            Outcome::Failed(f) => UserEvent::JobFailed(JobFailed {
                job_id,
                status: s.status,
                error: JobError::new(f.code, f.reason.clone(), Lang::default()),
                credits_used: s.credits_used,
                credits_refunded: s.credits_refunded,
            }),
            Outcome::Cancelled => UserEvent::JobCancelled(JobCancelled {
                job_id,
                status: s.status,
                credits_used: s.credits_used,
                credits_refunded: s.credits_refunded,
            }),
        }
    }
}

/// The parameters a job ran with: what the worker reports after the
/// pre-nodes, else the stored request.
pub(super) fn ran_spec(row: &JobRow, done: Option<&Finished>) -> Option<JobSpec> {
    done.and_then(|f| f.effective.clone())
        .or_else(|| serde_json::from_str(&row.params).ok())
}
