//! 큐 관리 API: the caller's jobs — queue status, list, detail, cancel.

use axum::extract::State;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiPath, ApiQuery, AuthUser};
use super::response::{Envelope, ErrorEnvelope, PageMeta, PagedEnvelope, check_page, ok};
use crate::app::SharedState;
use crate::error::{ApiError, ApiResult};
use crate::queue::job::{JobSpec, JobStatus};
use crate::store::images::ImageRow;
use crate::store::jobs::JobRow;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(queue_status))
        .routes(routes!(list_items))
        .routes(routes!(get_item, cancel_item))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProcessingItem {
    pub job_id: String,
    pub status: String,
    pub progress: i64,
    pub started_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueuedItem {
    pub job_id: String,
    pub status: String,
    pub position: usize,
    pub queued_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueueStatusView {
    pub active_jobs: i64,
    pub queued_jobs: i64,
    pub completed_today: i64,
    pub processing: Vec<ProcessingItem>,
    pub queued: Vec<QueuedItem>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResultImage {
    pub image_id: String,
    pub image_url: String,
    pub thumbnail_url: String,
    pub width: i64,
    pub height: i64,
}

/// The first image as the spec shows it, and every image of the batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobResult {
    pub image_id: String,
    pub image_url: String,
    pub images: Vec<ResultImage>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobError {
    pub code: Option<String>,
    pub message: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    pub job_id: String,
    pub status: String,
    pub job_type: String,
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
    pub gpu_started_at: Option<DateTime<Utc>>,
    pub gpu_finished_at: Option<DateTime<Utc>>,
    pub attempts: i64,
    pub result: Option<JobResult>,
    pub error: Option<JobError>,
    pub queued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

fn job_view(state: &SharedState, row: JobRow, images: &[ImageRow]) -> JobView {
    let params = serde_json::from_str::<JobSpec>(&row.params)
        .map(|s| s.public_params())
        .unwrap_or(Value::Null);
    let links = state.queue.links();
    let images: Vec<ResultImage> = images
        .iter()
        .map(|i| ResultImage {
            image_id: i.id.clone(),
            image_url: links.url(&i.blob_key),
            thumbnail_url: links.url(&i.thumb_key),
            width: i.width,
            height: i.height,
        })
        .collect();
    let result = images.first().map(|first| JobResult {
        image_id: first.image_id.clone(),
        image_url: first.image_url.clone(),
        images: Vec::new(),
    });
    let result = result.map(|r| JobResult { images, ..r });
    let error = row.error_code.clone().map(|code| JobError {
        code: Some(code),
        message: row.error_message.clone(),
    });
    JobView {
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

/// 큐 상태 조회
#[utoipa::path(get, path = "/queue/status", tag = "queue", security(("bearer" = [])),
    responses((status = 200, body = Envelope<QueueStatusView>)))]
async fn queue_status(
    State(state): State<SharedState>,
    user: AuthUser,
) -> ApiResult<impl IntoResponse> {
    let s = state.queue.status_of(&user.id).await?;
    Ok(ok(QueueStatusView {
        active_jobs: s.active_jobs,
        queued_jobs: s.queued_jobs,
        completed_today: s.completed_today,
        processing: s
            .processing
            .into_iter()
            .map(|r| ProcessingItem {
                job_id: r.id,
                status: r.status,
                progress: r.progress,
                started_at: r.started_at,
            })
            .collect(),
        queued: s
            .queued
            .into_iter()
            .map(|(r, position)| QueuedItem {
                job_id: r.id,
                status: r.status,
                position,
                queued_at: r.queued_at,
            })
            .collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ItemsQuery {
    /// queued, processing, completed, failed, cancelled
    pub status: Option<String>,
    pub page: Option<u32>,
    pub per_page: Option<u32>,
}

/// 큐 아이템 목록
#[utoipa::path(get, path = "/queue/items", tag = "queue", security(("bearer" = [])), params(ItemsQuery),
    responses((status = 200, body = PagedEnvelope<Vec<JobView>>), (status = 400, body = ErrorEnvelope)))]
async fn list_items(
    State(state): State<SharedState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<ItemsQuery>,
) -> ApiResult<impl IntoResponse> {
    let (page, per_page) = check_page(q.page, q.per_page, 100)?;
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(JobStatus::parse(s).ok_or_else(|| {
            ApiError::invalid_param(
                "status",
                "queued, processing, completed, failed or cancelled",
            )
        })?),
    };
    let (rows, total) = state.queue.list(&user.id, status, page, per_page).await?;
    let mut views = Vec::with_capacity(rows.len());
    for row in rows {
        let images = state.queue.images_of(&row).await?;
        views.push(job_view(&state, row, &images));
    }
    Ok(ok(views).meta(PageMeta {
        page,
        per_page,
        total,
    }))
}

/// 작업 상세 조회
#[utoipa::path(get, path = "/queue/items/{job_id}", tag = "queue", security(("bearer" = [])),
    params(("job_id" = String, Path)),
    responses((status = 200, body = Envelope<JobView>), (status = 404, body = ErrorEnvelope)))]
async fn get_item(
    State(state): State<SharedState>,
    user: AuthUser,
    ApiPath(job_id): ApiPath<String>,
) -> ApiResult<impl IntoResponse> {
    let (row, images) = state.queue.job_of(&user.id, &job_id).await?;
    Ok(ok(job_view(&state, row, &images)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CancelledView {
    pub job_id: String,
    pub status: &'static str,
    pub credits_refunded: i64,
    /// GPU time already used by a running job, charged.
    pub credits_used: i64,
}

/// 작업 취소
#[utoipa::path(delete, path = "/queue/items/{job_id}", tag = "queue", security(("bearer" = [])),
    params(("job_id" = String, Path)),
    responses((status = 200, body = Envelope<CancelledView>), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "the job already ended", body = ErrorEnvelope)))]
async fn cancel_item(
    State(state): State<SharedState>,
    user: AuthUser,
    ApiPath(job_id): ApiPath<String>,
) -> ApiResult<impl IntoResponse> {
    let s = state.queue.cancel(&user.id, &job_id).await?;
    Ok(ok(CancelledView {
        job_id: s.job_id,
        status: "cancelled",
        credits_refunded: s.credits_refunded,
        credits_used: s.credits_used,
    }))
}
