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
    let within = std::time::Duration::from_secs(2);
    let blobs = state.blobs.describe();
    let database = match tokio::time::timeout(within, state.db.ping()).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database unreachable");
            Some("unreachable")
        }
        Err(_) => Some("timeout"),
    };
    // A lookup of a key that is never written: reachable stores answer
    // "none".
    let blob_store = match tokio::time::timeout(within, state.blobs.head("readyz/probe")).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, store = %blobs, "readiness: blob store unreachable");
            Some("unreachable")
        }
        Err(_) => Some("timeout"),
    };
    // Redis, when the limits are shared through it.
    let redis = match state.rate_limits.redis() {
        None => None,
        Some(r) => match r.ping().await {
            Ok(()) => Some("ok"),
            Err(e) => {
                tracing::warn!(error = %e, "readiness: Redis unreachable");
                Some("unreachable")
            }
        },
    };
    if database.is_none() && blob_store.is_none() && redis != Some("unreachable") {
        let mut data = json!({ "status": "ready", "database": state.db.kind(), "blobs": blobs });
        if redis.is_some() {
            data["redis"] = json!("ok");
        }
        return (
            StatusCode::OK,
            Json(json!({ "success": true, "data": data })),
        )
            .into_response();
    }
    ApiError::with_details(
        ErrorCode::ServiceUnavailable,
        json!({ "database": database.unwrap_or("ok"), "blobs": blob_store.unwrap_or("ok"),
                "redis": redis.unwrap_or("not configured") }),
    )
    .into_response()
}
