//! 이미지 생성 API: validate, estimate, reserve and queue; 202 with the
//! job's place in the queue.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiJson, CurrentUser, json_body};
use super::response::{Envelope, ErrorEnvelope, ok};
use crate::app::SharedState;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::generation::request::{
    ImageToImageRequest, InpaintRequest, TextToImageRequest, UpscaleRequest,
};
use crate::generation::{GenerationError, Kind};
use crate::queue::QueueError;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(text_to_image))
        .routes(routes!(image_to_image))
        .routes(routes!(upscale))
        .routes(routes!(inpaint))
        .routes(routes!(workflow))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub job_id: String,
    pub status: &'static str,
    pub queue_position: usize,
    pub estimated_wait_seconds: u64,
    pub estimated_credits: i64,
    pub websocket_channel: String,
}

impl From<GenerationError> for ApiError {
    fn from(e: GenerationError) -> Self {
        match e {
            GenerationError::Invalid { field, reason } => ApiError::invalid_param(&field, reason),
            GenerationError::ModelNotAvailable { model, min_tier } => ApiError::with_details(
                ErrorCode::ModelNotAvailable,
                json!({ "model": model, "required_tier": min_tier }),
            ),
            GenerationError::FeatureLocked {
                model,
                feature,
                plan,
            } => ApiError::with_details(
                ErrorCode::FeatureLocked,
                json!({ "model": model, "feature": feature, "required_plan": plan }),
            ),
            GenerationError::StorageExceeded { used, quota } => ApiError::with_details(
                ErrorCode::StorageExceeded,
                json!({ "used_bytes": used, "quota_bytes": quota }),
            ),
            GenerationError::Queue(e) => e.into(),
            GenerationError::Internal(e) => ApiError::internal(e),
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Insufficient {
                required,
                available,
            } => ApiError::with_details(
                ErrorCode::InsufficientCredits,
                json!({ "required": required, "available": available }),
            ),
            QueueError::QuotaExceeded { limit } => {
                ApiError::with_details(ErrorCode::QuotaExceeded, json!({ "max_queued": limit }))
            }
            QueueError::QueueFull { limit } => {
                ApiError::with_details(ErrorCode::QueueFull, json!({ "max_queued": limit }))
            }
            QueueError::NoWorker { model } => ApiError::with_details(
                ErrorCode::ServiceUnavailable,
                json!({ "model": model, "reason": "no worker serves this model now" }),
            ),
            QueueError::NotFound => ErrorCode::NotFound.into(),
            QueueError::Ended { status } => {
                ApiError::with_details(ErrorCode::Conflict, json!({ "status": status.as_str() }))
            }
            QueueError::NotYourWorker | QueueError::NotPinned => {
                ApiError::with_details(ErrorCode::Forbidden, json!({ "reason": e.to_string() }))
            }
            QueueError::LeaseLost => ApiError::with_details(
                ErrorCode::Conflict,
                json!({ "reason": "the lease is no longer held" }),
            ),
            QueueError::Invalid(reason) => ApiError::invalid_param("params", reason),
            e @ (QueueError::Ledger(_) | QueueError::Store(_) | QueueError::Failed) => {
                ApiError::internal(e)
            }
        }
    }
}

/// With `require_verified_email`, only a verified address may generate.
fn check_verified(state: &SharedState, user: &CurrentUser) -> ApiResult<()> {
    if state.config.require_verified_email && !user.email_verified {
        return Err(ApiError::with_details(
            ErrorCode::Forbidden,
            json!({ "code": "EMAIL_NOT_VERIFIED",
                    "reason": "verify your email address to generate images (POST /auth/resend-verification sends the link again)" }),
        ));
    }
    Ok(())
}

async fn submit(
    state: &SharedState,
    user: &CurrentUser,
    kind: Kind,
    body: &[u8],
) -> ApiResult<Response> {
    check_verified(state, user)?;
    let body: Value = json_body(body)?;
    let e = state.generator.submit(user, kind, body).await?;
    Ok(accepted(e))
}

fn accepted(e: crate::queue::Enqueued) -> Response {
    ok(Accepted {
        job_id: e.job_id,
        status: "queued",
        queue_position: e.queue_position,
        estimated_wait_seconds: e.estimated_wait_seconds,
        estimated_credits: e.estimated_credits,
        websocket_channel: e.websocket_channel,
    })
    .status(StatusCode::ACCEPTED)
    .into_response()
}

/// 텍스트에서 이미지 생성
#[utoipa::path(post, path = "/generate/text-to-image", tag = "generate", security(("bearer" = [])),
    request_body = TextToImageRequest,
    responses((status = 202, body = Envelope<Accepted>),
        (status = 400, description = "INVALID_PARAMETERS; VALIDATION_ERROR (details.reason malformed_json) for a body that is not JSON", body = ErrorEnvelope),
        (status = 402, description = "INSUFFICIENT_CREDITS; STORAGE_EXCEEDED", body = ErrorEnvelope),
        (status = 403, description = "MODEL_NOT_AVAILABLE (details.required_tier); FEATURE_LOCKED (details.feature, details.required_plan: a model needs a plan feature); FORBIDDEN with details.code EMAIL_NOT_VERIFIED (require_verified_email)", body = ErrorEnvelope),
        (status = 429, description = "QUOTA_EXCEEDED / QUEUE_FULL", body = ErrorEnvelope),
        (status = 503, description = "no worker serves the model", body = ErrorEnvelope)))]
async fn text_to_image(
    State(state): State<SharedState>,
    user: CurrentUser,
    body: Bytes,
) -> ApiResult<Response> {
    submit(&state, &user, Kind::TextToImage, &body).await
}

/// 이미지에서 이미지 생성
#[utoipa::path(post, path = "/generate/image-to-image", tag = "generate", security(("bearer" = [])),
    request_body = ImageToImageRequest,
    responses((status = 202, body = Envelope<Accepted>),
        (status = 400, description = "INVALID_PARAMETERS; VALIDATION_ERROR (details.reason malformed_json) for a body that is not JSON", body = ErrorEnvelope),
        (status = 402, description = "INSUFFICIENT_CREDITS; STORAGE_EXCEEDED", body = ErrorEnvelope),
        (status = 403, description = "MODEL_NOT_AVAILABLE (details.required_tier); FEATURE_LOCKED (details.feature, details.required_plan: a model needs a plan feature); FORBIDDEN with details.code EMAIL_NOT_VERIFIED (require_verified_email)", body = ErrorEnvelope),
        (status = 429, description = "QUOTA_EXCEEDED / QUEUE_FULL", body = ErrorEnvelope),
        (status = 503, description = "no worker serves the model", body = ErrorEnvelope)))]
async fn image_to_image(
    State(state): State<SharedState>,
    user: CurrentUser,
    body: Bytes,
) -> ApiResult<Response> {
    submit(&state, &user, Kind::ImageToImage, &body).await
}

/// 이미지 업스케일
#[utoipa::path(post, path = "/generate/upscale", tag = "generate", security(("bearer" = [])),
    request_body = UpscaleRequest,
    responses((status = 202, body = Envelope<Accepted>),
        (status = 400, description = "INVALID_PARAMETERS; VALIDATION_ERROR (details.reason malformed_json) for a body that is not JSON", body = ErrorEnvelope),
        (status = 402, description = "INSUFFICIENT_CREDITS; STORAGE_EXCEEDED", body = ErrorEnvelope),
        (status = 403, description = "MODEL_NOT_AVAILABLE (details.required_tier); FEATURE_LOCKED (details.feature, details.required_plan: a model needs a plan feature); FORBIDDEN with details.code EMAIL_NOT_VERIFIED (require_verified_email)", body = ErrorEnvelope),
        (status = 429, description = "QUOTA_EXCEEDED / QUEUE_FULL", body = ErrorEnvelope),
        (status = 503, description = "no worker serves the model", body = ErrorEnvelope)))]
async fn upscale(
    State(state): State<SharedState>,
    user: CurrentUser,
    body: Bytes,
) -> ApiResult<Response> {
    submit(&state, &user, Kind::Upscale, &body).await
}

/// 인페인팅
#[utoipa::path(post, path = "/generate/inpaint", tag = "generate", security(("bearer" = [])),
    request_body = InpaintRequest,
    responses((status = 202, body = Envelope<Accepted>),
        (status = 400, description = "INVALID_PARAMETERS; VALIDATION_ERROR (details.reason malformed_json) for a body that is not JSON", body = ErrorEnvelope),
        (status = 402, description = "INSUFFICIENT_CREDITS; STORAGE_EXCEEDED", body = ErrorEnvelope),
        (status = 403, description = "MODEL_NOT_AVAILABLE (details.required_tier); FEATURE_LOCKED (details.feature, details.required_plan: a model needs a plan feature); FORBIDDEN with details.code EMAIL_NOT_VERIFIED (require_verified_email)", body = ErrorEnvelope),
        (status = 429, description = "QUOTA_EXCEEDED / QUEUE_FULL", body = ErrorEnvelope),
        (status = 503, description = "no worker serves the model", body = ErrorEnvelope)))]
async fn inpaint(
    State(state): State<SharedState>,
    user: CurrentUser,
    body: Bytes,
) -> ApiResult<Response> {
    submit(&state, &user, Kind::Inpaint, &body).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowRunRequest {
    pub workflow_id: String,
    /// Values of the workflow's declared inputs (defaults fill the rest);
    /// image inputs as base64 or the id of one of your images.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub inputs: serde_json::Map<String, Value>,
    pub save_to_board: Option<String>,
}

/// 워크플로우 실행 — one job; credits are estimated as the sum of its
/// inference steps, each at its model's rate.
#[utoipa::path(post, path = "/generate/workflow", tag = "generate", security(("bearer" = [])),
    request_body = WorkflowRunRequest,
    responses((status = 202, body = Envelope<Accepted>),
        (status = 400, description = "INVALID_PARAMETERS (inputs.<name>, nodes.<id>.plugin)", body = ErrorEnvelope),
        (status = 402, description = "INSUFFICIENT_CREDITS", body = ErrorEnvelope),
        (status = 404, description = "NOT_FOUND: no such workflow you may run", body = ErrorEnvelope)))]
async fn workflow(
    State(state): State<SharedState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<WorkflowRunRequest>,
) -> ApiResult<Response> {
    check_verified(&state, &user)?;
    let prepared = state
        .workflows
        .prepare_run(&user, &body.workflow_id, &body.inputs, body.save_to_board)
        .await?;
    let e = state.generator.submit_prepared(&user, prepared).await?;
    Ok(accepted(e))
}
