//! 사용자 API: the caller's profile and credit history.

use axum::extract::State;
use axum::response::IntoResponse;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiJson, ApiQuery, AuthUser};
use super::response::{
    Envelope, ErrorEnvelope, MAX_PER_PAGE, PageMeta, PagedEnvelope, check_page, ok,
};
use crate::app::SharedState;
use crate::billing::ledger::TxKind;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::users::{self, Profile, ProfileError};

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(get_me, patch_me))
        .routes(routes!(get_credits))
        .routes(routes!(get_usage))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// day, week, month (default: this calendar month) or 30d (the last 30 days)
    pub period: Option<String>,
}

/// 사용량 통계 조회
#[utoipa::path(get, path = "/users/me/usage", tag = "users", security(("bearer" = [])), params(UsageQuery),
    responses((status = 200, body = Envelope<crate::usage::Usage>), (status = 400, description = "INVALID_PARAMETERS", body = ErrorEnvelope)))]
async fn get_usage(
    State(state): State<SharedState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> ApiResult<impl IntoResponse> {
    let period = match q.period.as_deref() {
        None | Some("") => crate::usage::Period::Month,
        Some(p) => crate::usage::Period::parse(p)
            .ok_or_else(|| ApiError::invalid_param("period", "day, week, month or 30d"))?,
    };
    let usage = crate::usage::usage(&state.db, &user.id, period)
        .await
        .map_err(ApiError::internal)?;
    Ok(ok(usage))
}

impl From<ProfileError> for ApiError {
    fn from(e: ProfileError) -> Self {
        match e {
            // The token is sound but its account is gone.
            ProfileError::NotFound => ApiError::new(ErrorCode::InvalidToken),
            ProfileError::Invalid { field, reason } => ApiError::validation(Some(field), reason),
            ProfileError::Internal(e) => ApiError::internal(e),
        }
    }
}

/// 현재 사용자 정보 조회
#[utoipa::path(get, path = "/users/me", tag = "users", security(("bearer" = [])),
    responses(
        (status = 200, body = Envelope<Profile>),
        (status = 401, description = "UNAUTHORIZED, INVALID_TOKEN, TOKEN_EXPIRED", body = ErrorEnvelope),
    ))]
async fn get_me(State(state): State<SharedState>, user: AuthUser) -> ApiResult<impl IntoResponse> {
    Ok(ok(users::profile(&state.db, &state.plans, &user.id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchMeRequest {
    /// 1–100 characters.
    pub name: Option<String>,
    /// An absolute http(s) URL, or `null` to remove it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub avatar_url: Option<Option<String>>,
}

/// Tells a field sent as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PatchMeResponse {
    pub id: String,
    pub name: String,
    pub avatar_url: Option<String>,
}

/// 프로필 수정
#[utoipa::path(patch, path = "/users/me", tag = "users", security(("bearer" = [])),
    request_body = PatchMeRequest,
    responses(
        (status = 200, body = Envelope<PatchMeResponse>),
        (status = 400, description = "VALIDATION_ERROR: unknown or invalid field", body = ErrorEnvelope),
    ))]
async fn patch_me(
    State(state): State<SharedState>,
    user: AuthUser,
    ApiJson(req): ApiJson<PatchMeRequest>,
) -> ApiResult<impl IntoResponse> {
    let avatar = req.avatar_url.as_ref().map(|v| v.as_deref());
    let row = users::update(&state.db, &user.id, req.name.as_deref(), avatar).await?;
    Ok(ok(PatchMeResponse {
        id: row.id,
        name: row.name,
        avatar_url: row.avatar_url,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CreditsQuery {
    /// Page number, from 1.
    pub page: Option<u32>,
    /// 1–100, default 20.
    pub per_page: Option<u32>,
    /// signup_grant, subscription_grant, generation_use, generation_refund, admin_adjustment
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreditTransaction {
    pub id: String,
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    pub kind: String,
    pub amount: i64,
    pub description: String,
    pub balance_after: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreditsResponse {
    pub balance: i64,
    pub reserved: i64,
    pub available: i64,
    pub transactions: Vec<CreditTransaction>,
}

/// 크레딧 잔액 및 내역 조회
#[utoipa::path(get, path = "/users/me/credits", tag = "users", security(("bearer" = [])),
    params(CreditsQuery),
    responses(
        (status = 200, body = PagedEnvelope<CreditsResponse>),
        (status = 400, description = "INVALID_PARAMETERS", body = ErrorEnvelope),
    ))]
async fn get_credits(
    State(state): State<SharedState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<CreditsQuery>,
) -> ApiResult<impl IntoResponse> {
    let page = check_page(q.page, q.per_page, MAX_PER_PAGE)?;
    let kind = match q.kind.as_deref() {
        None | Some("") => None,
        Some(k) => Some(
            TxKind::parse(k)
                .ok_or_else(|| ApiError::invalid_param("type", "unknown transaction type"))?,
        ),
    };
    let balance = state
        .ledger
        .balance(&user.id)
        .await
        .map_err(ApiError::internal)?;
    let (rows, total) = state
        .ledger
        .history(&user.id, kind, page)
        .await
        .map_err(ApiError::internal)?;
    let transactions = rows
        .into_iter()
        .map(|r| CreditTransaction {
            id: r.id,
            kind: r.kind,
            amount: r.amount,
            description: r.description,
            balance_after: r.balance_after,
            created_at: r.created_at,
        })
        .collect();
    let body = CreditsResponse {
        balance: balance.balance,
        reserved: balance.reserved,
        available: balance.available,
        transactions,
    };
    Ok(ok(body).meta(PageMeta::of(page, total)))
}
