//! 큐 관리 API: the caller's jobs — queue status, list, detail, cancel.

use axum::extract::State;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiPath, ApiQuery, AuthUser};
use super::response::{
    Envelope, ErrorEnvelope, MAX_PER_PAGE, PageMeta, PagedEnvelope, check_page, ok,
};
use crate::app::SharedState;
use crate::error::{ApiError, ApiResult};
use crate::i18n::Lang;
use crate::queue::job::JobStatus;
use crate::queue::{JobDetail, QueueStatus};

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(queue_status))
        .routes(routes!(list_items))
        .routes(routes!(get_item, cancel_item))
}

/// 큐 상태 조회
#[utoipa::path(get, path = "/queue/status", tag = "queue", security(("bearer" = [])),
    responses((status = 200, body = Envelope<QueueStatus>)))]
async fn queue_status(
    State(state): State<SharedState>,
    user: AuthUser,
) -> ApiResult<impl IntoResponse> {
    Ok(ok(state.queue.status_of(&user.id).await?))
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
    responses((status = 200, body = PagedEnvelope<Vec<JobDetail>>), (status = 400, body = ErrorEnvelope)))]
async fn list_items(
    State(state): State<SharedState>,
    user: AuthUser,
    lang: Lang,
    ApiQuery(q): ApiQuery<ItemsQuery>,
) -> ApiResult<impl IntoResponse> {
    let page = check_page(q.page, q.per_page, MAX_PER_PAGE)?;
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(s.parse::<JobStatus>().map_err(|_| {
            ApiError::invalid_param(
                "status",
                "queued, processing, completed, failed or cancelled",
            )
        })?),
    };
    let (jobs, total) = state.queue.list(&user.id, status, page, lang).await?;
    Ok(ok(jobs).meta(PageMeta::of(page, total)))
}

/// 작업 상세 조회
#[utoipa::path(get, path = "/queue/items/{job_id}", tag = "queue", security(("bearer" = [])),
    params(("job_id" = String, Path)),
    responses((status = 200, body = Envelope<JobDetail>), (status = 404, body = ErrorEnvelope)))]
async fn get_item(
    State(state): State<SharedState>,
    user: AuthUser,
    lang: Lang,
    ApiPath(job_id): ApiPath<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(ok(state.queue.job_of(&user.id, &job_id, lang).await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CancelledView {
    pub job_id: String,
    #[schema(value_type = String)]
    pub status: JobStatus,
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
        status: s.status,
        credits_refunded: s.credits_refunded,
        credits_used: s.credits_used,
    }))
}
