//! What the API shows of a user's jobs and of the queue: domain views
//! built from the rows, the same shapes the events use.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::enqueue::summaries;
use super::failure::JobError;
use super::job::{JobSpec, JobStatus, JobType};
use super::scheduler;
use super::{Queue, QueueError, QueueResult};
use crate::blobs::signed::FileLinks;
use crate::i18n::Lang;
use crate::store::Page;
use crate::store::images::{self as img, ImageRow};
use crate::store::jobs::{self as q, JobRow};

/// One image a job made, with signed links.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ResultImage {
    pub image_id: String,
    pub image_url: String,
    pub thumbnail_url: String,
    pub width: i64,
    pub height: i64,
}

impl ResultImage {
    pub fn new(
        links: &FileLinks,
        id: &str,
        blob_key: &str,
        thumb_key: &str,
        width: i64,
        height: i64,
    ) -> Self {
        Self {
            image_id: id.to_owned(),
            image_url: links.url(blob_key),
            thumbnail_url: links.url(thumb_key),
            width,
            height,
        }
    }

    fn of(links: &FileLinks, row: &ImageRow) -> Self {
        Self::new(
            links,
            &row.id,
            &row.blob_key,
            &row.thumb_key,
            row.width,
            row.height,
        )
    }
}

/// The first image as the spec shows it, and every image of the batch.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobResult {
    pub image_id: String,
    pub image_url: String,
    pub images: Vec<ResultImage>,
}

/// A job as its owner sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobDetail {
    pub job_id: String,
    #[schema(value_type = String)]
    pub status: JobStatus,
    #[schema(value_type = String)]
    pub job_type: JobType,
    /// The parameters generated with (input images shown as `true`).
    #[schema(value_type = Object)]
    pub params: Value,
    pub progress: i64,
    pub step: i64,
    pub total_steps: i64,
    pub estimated_credits: i64,
    pub credits_used: Option<i64>,
    pub credits_refunded: Option<i64>,
    /// Measured GPU time the charge is based on.
    pub gpu_seconds: Option<f64>,
    /// Time the job's pre- and post-nodes took on the worker, charged
    /// with the GPU time.
    pub node_seconds: Option<f64>,
    pub gpu_started_at: Option<DateTime<Utc>>,
    pub gpu_finished_at: Option<DateTime<Utc>>,
    pub attempts: i64,
    pub result: Option<JobResult>,
    pub error: Option<JobError>,
    pub queued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl JobDetail {
    fn new(links: &FileLinks, row: JobRow, images: &[ImageRow], lang: Lang) -> Self {
        let params = serde_json::from_str::<JobSpec>(&row.params)
            .map(|s| s.public_params())
            .unwrap_or(Value::Null);
        let images: Vec<ResultImage> = images.iter().map(|i| ResultImage::of(links, i)).collect();
        let result = images.first().map(|first| JobResult {
            image_id: first.image_id.clone(),
            image_url: first.image_url.clone(),
            images: images.clone(),
        });
        let error = row
            .error_code
            .as_deref()
            .and_then(|c| c.parse().ok())
            .map(|code| JobError::new(code, row.error_message.clone(), lang));
        JobDetail {
            job_id: row.id,
            status: row.status,
            job_type: row.job_type,
            params,
            progress: row.progress,
            step: row.step,
            total_steps: row.total_steps,
            estimated_credits: row.estimated_credits,
            credits_used: row.credits_used,
            credits_refunded: row.credits_refunded,
            gpu_seconds: row.gpu_seconds,
            node_seconds: row.node_seconds,
            gpu_started_at: row.gpu_started_at,
            gpu_finished_at: row.gpu_finished_at,
            attempts: row.attempts,
            result,
            error,
            queued_at: row.queued_at,
            started_at: row.started_at,
            completed_at: row.completed_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProcessingItem {
    pub job_id: String,
    #[schema(value_type = String)]
    pub status: JobStatus,
    pub progress: i64,
    pub started_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueuedItem {
    pub job_id: String,
    #[schema(value_type = String)]
    pub status: JobStatus,
    pub position: usize,
    pub queued_at: DateTime<Utc>,
}

/// The user's view of the queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueStatus {
    pub active_jobs: i64,
    pub queued_jobs: i64,
    pub completed_today: i64,
    pub processing: Vec<ProcessingItem>,
    pub queued: Vec<QueuedItem>,
}

impl Queue {
    /// A user's job with its images; `NotFound` for anyone else's.
    pub async fn job_of(&self, user_id: &str, job_id: &str, lang: Lang) -> QueueResult<JobDetail> {
        let row = q::get(&self.parts.db, job_id)
            .await?
            .filter(|r| r.user_id == user_id)
            .ok_or(QueueError::NotFound)?;
        self.detail(row, lang).await
    }

    async fn detail(&self, row: JobRow, lang: Lang) -> QueueResult<JobDetail> {
        // Only a completed job has images.
        let images = match row.status {
            JobStatus::Completed => img::of_job(&self.parts.db, &row.id).await?,
            _ => vec![],
        };
        Ok(JobDetail::new(&self.parts.links, row, &images, lang))
    }

    /// One page of a user's jobs, newest first, and the total.
    pub async fn list(
        &self,
        user_id: &str,
        status: Option<JobStatus>,
        page: Page,
        lang: Lang,
    ) -> QueueResult<(Vec<JobDetail>, i64)> {
        let (rows, total) = q::list_for_user(&self.parts.db, user_id, status, page).await?;
        let mut details = Vec::with_capacity(rows.len());
        for row in rows {
            details.push(self.detail(row, lang).await?);
        }
        Ok((details, total))
    }

    /// The user's view of the queue: running jobs, queued jobs with their
    /// positions, and today's completions.
    pub async fn status_of(&self, user_id: &str) -> QueueResult<QueueStatus> {
        let processing =
            q::user_jobs_in(&self.parts.db, user_id, JobStatus::Processing, 100).await?;
        let queued_rows = q::user_jobs_in(&self.parts.db, user_id, JobStatus::Queued, 100).await?;
        let groups = summaries(&q::queued_groups(&self.parts.db).await?);
        let mut per_priority: HashMap<i64, usize> = HashMap::new();
        let queued = queued_rows
            .into_iter()
            .map(|r| {
                let k = per_priority.entry(r.priority).or_default();
                *k += 1;
                QueuedItem {
                    position: scheduler::position_of(&groups, user_id, r.priority as u32, *k),
                    job_id: r.id,
                    status: r.status,
                    queued_at: r.queued_at,
                }
            })
            .collect();
        let midnight = Utc::now()
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc();
        Ok(QueueStatus {
            active_jobs: q::count_user_status(&self.parts.db, user_id, JobStatus::Processing)
                .await?,
            queued_jobs: q::count_user_status(&self.parts.db, user_id, JobStatus::Queued).await?,
            completed_today: q::count_completed_since(&self.parts.db, user_id, midnight).await?,
            processing: processing
                .into_iter()
                .map(|r| ProcessingItem {
                    job_id: r.id,
                    status: r.status,
                    progress: r.progress,
                    started_at: r.started_at,
                })
                .collect(),
            queued,
        })
    }
}
