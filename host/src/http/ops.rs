//! Operations endpoints outside the API prefix: liveness, readiness,
//! Prometheus metrics.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use crate::app::SharedState;
use crate::error::{ApiError, ErrorCode};

/// The process is up and serving.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "success": true, "data": { "status": "ok" } }))
}

/// The database answers; 503 in the envelope when it does not.
pub async fn readyz(State(state): State<SharedState>) -> axum::response::Response {
    match tokio::time::timeout(std::time::Duration::from_secs(2), state.db.ping()).await {
        Ok(Ok(())) => (
            StatusCode::OK,
            Json(json!({ "success": true, "data": { "status": "ready", "database": state.db.kind() } })),
        )
            .into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database unreachable");
            ApiError::with_details(ErrorCode::ServiceUnavailable, json!({ "database": "unreachable" })).into_response()
        }
        Err(_) => {
            ApiError::with_details(ErrorCode::ServiceUnavailable, json!({ "database": "timeout" })).into_response()
        }
    }
}
