//! 웹훅 API: payment-provider webhooks. The raw body goes to the adapter
//! to verify before anything parses it; a verified event is stored, then
//! answered, then applied.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::ApiPath;
use super::response::ErrorEnvelope;
use crate::app::SharedState;
use crate::billing::webhooks::{Received, WebhookRefused};
use crate::error::{ApiError, ApiResult, ErrorCode};

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new().routes(routes!(webhook))
}

impl From<WebhookRefused> for ApiError {
    fn from(e: WebhookRefused) -> Self {
        match e {
            WebhookRefused::UnknownProvider(_) => ApiError::new(ErrorCode::NotFound),
            WebhookRefused::NotConfigured | WebhookRefused::Signature => ApiError::with_details(
                ErrorCode::Unauthorized,
                json!({ "reason": "invalid_signature" }),
            ),
            WebhookRefused::Adapter(e) => {
                tracing::error!(error = %e, "billing adapter failed on a verified webhook");
                // The provider retries a delivery that was not answered 2xx.
                ApiError::with_details(
                    ErrorCode::ServiceUnavailable,
                    json!({ "reason": "adapter_failed" }),
                )
            }
            WebhookRefused::TooLarge => ApiError::with_details(
                ErrorCode::PayloadTooLarge,
                json!({ "max_bytes": crate::billing::webhooks::MAX_WEBHOOK_BYTES }),
            ),
            WebhookRefused::Store(e) => ApiError::internal(e),
        }
    }
}

/// The headers handed to the adapter (names lowercase).
fn header_list(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

/// 결제 웹훅 수신 — `/webhooks/lemon-squeezy`, `/webhooks/stripe`: the
/// configured provider's (or, during the grace period after a swap, the
/// previous provider's) signed events.
#[utoipa::path(post, path = "/webhooks/{provider}", tag = "webhooks",
    params(("provider" = String, Path, description = "lemon-squeezy, stripe")),
    request_body(content = String, description = "The provider's event, as it signed it", content_type = "application/json"),
    responses(
        (status = 200, description = "`{\"success\":true}`: stored (or a replay)"),
        (status = 401, description = "UNAUTHORIZED: missing or bad signature", body = ErrorEnvelope),
        (status = 404, description = "NOT_FOUND: not the configured provider", body = ErrorEnvelope),
        (status = 413, description = "PAYLOAD_TOO_LARGE: over 1 MiB", body = ErrorEnvelope),
        (status = 503, description = "SERVICE_UNAVAILABLE: the adapter failed; the provider retries", body = ErrorEnvelope),
    ))]
async fn webhook(
    State(state): State<SharedState>,
    ApiPath(provider): ApiPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let received = state
        .billing
        .receive(&provider, header_list(&headers), &body)
        .await?;
    if let Received::Stored { .. } = received {
        let billing = state.billing.clone();
        tokio::spawn(async move {
            if let Err(e) = billing.drain().await {
                tracing::warn!(error = %e, "applying billing events");
            }
        });
    }
    Ok(axum::Json(json!({ "success": true })))
}
