//! Operator endpoints: the billing adapter and its events.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{AdminUser, ApiQuery};
use super::response::{
    Envelope, ErrorEnvelope, MAX_PER_PAGE, PageMeta, PagedEnvelope, check_page, ok,
};
use crate::app::SharedState;
use crate::billing::adapter::AdapterError;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::store::billing::{self as q, BillingEventRow};

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(reload_billing))
        .routes(routes!(billing_events))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdapterView {
    /// `null` when billing is now off.
    pub provider: Option<String>,
    pub adapter: Option<String>,
    pub sha256: Option<String>,
}

/// 결제 어댑터 다시 읽기 — re-read the configuration file and swap the
/// billing adapter; a broken one is refused and the old one keeps serving.
#[utoipa::path(post, path = "/admin/billing/reload", tag = "admin", security(("bearer" = [])),
    responses(
        (status = 200, body = Envelope<AdapterView>),
        (status = 400, description = "VALIDATION_ERROR: the new adapter or configuration is refused", body = ErrorEnvelope),
        (status = 403, description = "FORBIDDEN: not an admin", body = ErrorEnvelope),
    ))]
async fn reload_billing(
    State(state): State<SharedState>,
    _admin: AdminUser,
) -> ApiResult<impl axum::response::IntoResponse> {
    let adapter = state.billing.adapters.reload().await.map_err(|e| {
        tracing::error!(error = %e, "billing adapter reload refused; the previous adapter keeps serving");
        let cause = match &e {
            AdapterError::Plugin(p) => p.cause(),
            AdapterError::Config(_) => "configuration",
            AdapterError::Read { .. } => "unreadable",
            AdapterError::Provider(_) => "provider",
        };
        ApiError::with_details(
            ErrorCode::ValidationError,
            json!({ "field": "billing_adapter", "reason": cause, "message": e.to_string() }),
        )
    })?;
    Ok(ok(AdapterView {
        provider: adapter.as_ref().map(|a| a.provider.clone()),
        adapter: adapter.as_ref().map(|a| a.name.clone()),
        sha256: adapter.as_ref().map(|a| a.sha256.clone()),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// received, applied or failed.
    pub status: Option<String>,
    pub page: Option<u32>,
    pub per_page: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BillingEventView {
    pub id: String,
    pub provider: String,
    pub event_id: String,
    pub event_name: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub received_at: DateTime<Utc>,
    pub applied_at: Option<DateTime<Utc>>,
}

impl From<BillingEventRow> for BillingEventView {
    fn from(r: BillingEventRow) -> Self {
        BillingEventView {
            id: r.id,
            provider: r.provider,
            event_id: r.event_id,
            event_name: r.event_name,
            status: r.status,
            attempts: r.attempts,
            last_error: r.last_error,
            received_at: r.received_at,
            applied_at: r.applied_at,
        }
    }
}

/// 결제 이벤트 — stored webhooks, newest first (`?status=failed`: those
/// that did not apply).
#[utoipa::path(get, path = "/admin/billing/events", tag = "admin", security(("bearer" = [])),
    params(EventsQuery),
    responses(
        (status = 200, body = PagedEnvelope<Vec<BillingEventView>>),
        (status = 400, description = "INVALID_PARAMETERS", body = ErrorEnvelope),
        (status = 403, description = "FORBIDDEN: not an admin", body = ErrorEnvelope),
    ))]
async fn billing_events(
    State(state): State<SharedState>,
    _admin: AdminUser,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult<impl axum::response::IntoResponse> {
    let page = check_page(q.page, q.per_page, MAX_PER_PAGE)?;
    if let Some(s) = &q.status
        && !["received", "applied", "failed"].contains(&s.as_str())
    {
        return Err(ApiError::invalid_param(
            "status",
            "received, applied or failed",
        ));
    }
    let (rows, total) = q::list_events(&state.db, q.status.as_deref(), page)
        .await
        .map_err(ApiError::internal)?;
    let views: Vec<BillingEventView> = rows.into_iter().map(Into::into).collect();
    Ok(ok(views).meta(PageMeta::of(page, total)))
}
