//! The internal worker API (`/internal/v1`), for `pingvas worker`
//! processes: lease (long poll), heartbeat, complete, fail, fetch a pinned
//! node plugin, unregister. Authenticated with the shared worker token
//! (`PINGVAS_WORKER_TOKEN`); closed when none is configured. Not part of
//! the public API document.

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};

use super::extract::require_bearer;
use super::response::ok;
use crate::app::SharedState;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::queue::StepProgress;
use crate::worker::local::with_inputs;
use crate::worker::wire::{
    CompleteRequest, FailRequest, HeartbeatRequest, LeaseRequest, LeasedJob,
};
use crate::worker::wire::{LEASE_TOKEN, WORKER_KEY};

/// Results of a batch of large images are big; the public body limit does
/// not apply here.
const INTERNAL_BODY_LIMIT: usize = 512 << 20;
const MAX_WAIT: Duration = Duration::from_secs(30);

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/lease", post(lease))
        .route("/jobs/{id}/heartbeat", post(heartbeat))
        .route("/jobs/{id}/complete", post(complete))
        .route("/jobs/{id}/fail", post(fail))
        .route("/jobs/{id}/plugins/{name}/{version}", get(plugin))
        .route("/jobs/{id}/nodes/{name}/{version}", get(component_node))
        .route("/workers/{id}", delete(goodbye))
        .layer(DefaultBodyLimit::max(INTERNAL_BODY_LIMIT))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> ApiResult<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::validation(Some(name), "missing"))
}

/// A request carrying the worker token.
pub struct WorkerAuth;

impl FromRequestParts<SharedState> for WorkerAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, ApiError> {
        let Some(expected) = &state.config.worker_token else {
            return Err(ApiError::with_details(
                ErrorCode::Forbidden,
                serde_json::json!({ "reason": "no worker token is configured" }),
            ));
        };
        require_bearer(&parts.headers, expected)?;
        Ok(WorkerAuth)
    }
}

async fn lease(
    State(state): State<SharedState>,
    _: WorkerAuth,
    Json(req): Json<LeaseRequest>,
) -> ApiResult<Response> {
    let info = req.info();
    state.queue.touch_worker(&info).await?;
    let wait = Duration::from_millis(req.wait_ms).min(MAX_WAIT);
    match state.queue.wait_for_lease(&info, wait).await? {
        None => Ok(StatusCode::NO_CONTENT.into_response()),
        Some(lease) => {
            let item = with_inputs(&state.blobs, lease)
                .await
                .map_err(ApiError::internal)?;
            Ok(ok(LeasedJob::of(&item)).into_response())
        }
    }
}

async fn heartbeat(
    State(state): State<SharedState>,
    _: WorkerAuth,
    Path(id): Path<String>,
    Json(req): Json<HeartbeatRequest>,
) -> ApiResult<impl IntoResponse> {
    let progress = req
        .step
        .zip(req.total_steps)
        .map(|(step, total_steps)| StepProgress {
            step,
            total_steps,
            node: req.node,
            message: req.message,
        });
    let reply = state
        .queue
        .heartbeat(&id, &req.lease_token, progress, req.gpu_started_at)
        .await?;
    Ok(ok(reply))
}

async fn complete(
    State(state): State<SharedState>,
    _: WorkerAuth,
    Path(id): Path<String>,
    Json(req): Json<CompleteRequest>,
) -> ApiResult<impl IntoResponse> {
    let token = req.lease_token.clone();
    let done = req
        .into_finished()
        .map_err(|_| ApiError::invalid_param("images", "not base64"))?;
    let settled = state.queue.complete(&id, &token, done).await?;
    Ok(ok(serde_json::json!({
        "job_id": settled.job_id,
        "image_ids": settled.image_ids,
        "credits_used": settled.credits_used,
    })))
}

async fn fail(
    State(state): State<SharedState>,
    _: WorkerAuth,
    Path(id): Path<String>,
    Json(req): Json<FailRequest>,
) -> ApiResult<impl IntoResponse> {
    let settled = state
        .queue
        .fail(&id, &req.lease_token, &req.failure)
        .await?;
    Ok(ok(serde_json::json!({ "job_id": settled.job_id })))
}

/// A node plugin pinned by a job the asking worker holds (the lease
/// token in `x-lease-token`).
async fn plugin(
    State(state): State<SharedState>,
    _: WorkerAuth,
    headers: HeaderMap,
    Path((job_id, name, version)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let token = header(&headers, LEASE_TOKEN)?;
    state
        .queue
        .check_pinned(&job_id, token, &name, &version)
        .await?;
    component(&state, &name, &version).await
}

/// A node plugin a workflow component of a held job asks for, resolved
/// for the job's owner (visible to them, not yanked).
async fn component_node(
    State(state): State<SharedState>,
    _: WorkerAuth,
    headers: HeaderMap,
    Path((job_id, name, version)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let token = header(&headers, LEASE_TOKEN)?;
    let owner = state.queue.held_job_owner(&job_id, token).await?;
    let r = state
        .registry
        .resolve(&owner, &name, Some(&version))
        .await
        .map_err(|_| ErrorCode::NotFound)?;
    if r.plugin.kind != "node" {
        return Err(ErrorCode::NotFound.into());
    }
    component(&state, &name, &version).await
}

/// A stored component's bytes.
async fn component(state: &SharedState, name: &str, version: &str) -> ApiResult<Response> {
    let bytes = state
        .registry
        .component_bytes(name, version)
        .await
        .map_err(|_| ErrorCode::NotFound)?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/wasm")],
        bytes,
    )
        .into_response())
}

/// Unregisters a worker; only with its own key (`x-worker-key`).
async fn goodbye(
    State(state): State<SharedState>,
    _: WorkerAuth,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let key = header(&headers, WORKER_KEY)?;
    state.queue.forget_worker(&id, key).await?;
    Ok(ok(serde_json::json!({ "worker_id": id })))
}
