//! 구독 API: plans, the current subscription, checkout, upgrade, downgrade,
//! cancel and resume. The work is `billing::subscriptions`.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiJson, AuthUser, CurrentUser};
use super::response::{Envelope, ErrorEnvelope, ok};
use crate::app::SharedState;
use crate::billing::plans::{Features, Plan};
use crate::billing::subscriptions::BillingError;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::i18n::Lang;
use crate::store::billing::SubscriptionRow;
use crate::store::users as user_store;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(plans))
        .routes(routes!(current))
        .routes(routes!(checkout))
        .routes(routes!(upgrade))
        .routes(routes!(downgrade))
        .routes(routes!(cancel))
        .routes(routes!(resume))
}

impl From<BillingError> for ApiError {
    fn from(e: BillingError) -> Self {
        match e {
            BillingError::Invalid { field, reason } => ApiError::invalid_param(field, reason),
            BillingError::NotConfigured => ApiError::with_details(
                ErrorCode::ServiceUnavailable,
                json!({ "reason": "billing_not_configured" }),
            ),
            // A state of the account, not a malformed request.
            BillingError::NoSubscription => ApiError::with_details(
                ErrorCode::Conflict,
                json!({ "field": "subscription", "reason": "no_paid_subscription" }),
            ),
            BillingError::AlreadySubscribed(plan) => ApiError::with_details(
                ErrorCode::Conflict,
                json!({ "reason": "already_subscribed", "plan": plan }),
            ),
            BillingError::PastDue => ApiError::with_details(
                ErrorCode::Conflict,
                json!({ "reason": "subscription_past_due", "status": "past_due" }),
            ),
            BillingError::RateLimited { retry_after_secs } => ApiError::with_details(
                ErrorCode::RateLimited,
                json!({ "reason": "too many checkouts", "retry_after": retry_after_secs }),
            )
            .retry_after(retry_after_secs),
            BillingError::Provider(e) => {
                tracing::warn!(error = %e, "payment provider call failed");
                ApiError::with_details(
                    ErrorCode::ServiceUnavailable,
                    json!({ "reason": "payment_provider_failed", "cause": e.cause() }),
                )
                .retry_after(30)
            }
            BillingError::Store(e) => ApiError::internal(e),
            BillingError::Ledger(e) => ApiError::internal(e),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlanView {
    /// `plan-<name>`.
    pub id: String,
    pub name: String,
    pub display_name: String,
    /// USD; `null` for plans sold by contract.
    pub monthly_price: Option<f64>,
    pub yearly_price: Option<f64>,
    /// Credits granted each month.
    pub credits: i64,
    pub storage_gb: u64,
    pub queue_count: u32,
    #[schema(value_type = Object)]
    pub features: Features,
}

impl From<&Plan> for PlanView {
    fn from(p: &Plan) -> Self {
        PlanView {
            id: format!("plan-{}", p.name),
            name: p.name.clone(),
            display_name: p.display_name.clone(),
            monthly_price: p.monthly_price,
            yearly_price: p.yearly_price,
            credits: p.credits,
            storage_gb: p.storage_gb,
            queue_count: p.queue_count,
            features: p.features.clone(),
        }
    }
}

/// 플랜 목록 — the plan catalogue, by rank.
#[utoipa::path(get, path = "/subscriptions/plans", tag = "subscriptions",
    responses((status = 200, body = Envelope<Vec<PlanView>>)))]
async fn plans(State(state): State<SharedState>) -> ApiResult<impl axum::response::IntoResponse> {
    let views: Vec<PlanView> = state
        .billing
        .plans()
        .all()
        .into_iter()
        .map(PlanView::from)
        .collect();
    Ok(ok(views))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlanRef {
    pub name: String,
    pub display_name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentMethod {
    /// `card`.
    #[serde(rename = "type")]
    pub kind: String,
    pub last_four: Option<String>,
    pub brand: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CurrentSubscription {
    pub id: String,
    pub plan: PlanRef,
    /// on_trial, active, past_due (payment failing: the plan is kept for
    /// now), unpaid, paused, cancelled (until the period ends), expired.
    pub status: String,
    pub billing_cycle: String,
    pub current_period_start: Option<DateTime<Utc>>,
    pub current_period_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
    /// A lower plan that takes over when the period ends.
    pub pending_plan: Option<String>,
    pub payment_method: Option<PaymentMethod>,
    pub provider: String,
}

impl CurrentSubscription {
    fn of(row: SubscriptionRow, plan: &Plan) -> Self {
        let payment_method =
            (row.card_last_four.is_some() || row.card_brand.is_some()).then(|| PaymentMethod {
                kind: "card".into(),
                last_four: row.card_last_four,
                brand: row.card_brand,
            });
        CurrentSubscription {
            id: row.id,
            plan: PlanRef {
                name: plan.name.clone(),
                display_name: plan.display_name.clone(),
            },
            status: row.status,
            billing_cycle: row.billing_cycle,
            current_period_start: row.current_period_start,
            current_period_end: row.current_period_end,
            cancel_at_period_end: row.cancel_at_period_end,
            pending_plan: row.pending_plan,
            payment_method,
            provider: row.provider,
        }
    }
}

/// 현재 구독 조회 — `data: null` without a paid subscription.
#[utoipa::path(get, path = "/subscriptions/current", tag = "subscriptions", security(("bearer" = [])),
    responses((status = 200, body = Envelope<Option<CurrentSubscription>>)))]
async fn current(
    State(state): State<SharedState>,
    user: CurrentUser,
) -> ApiResult<impl axum::response::IntoResponse> {
    let row = state.billing.current(&user.id).await?;
    Ok(ok(row.map(|r| {
        let plan = state.billing.plans().tier(&r.plan).clone();
        CurrentSubscription::of(r, &plan)
    })))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutBody {
    pub plan: String,
    /// monthly (default) or yearly.
    #[serde(default = "monthly")]
    pub billing_cycle: String,
}

fn monthly() -> String {
    "monthly".into()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckoutView {
    pub checkout_url: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// 체크아웃 세션 생성 — a payment page at the provider.
#[utoipa::path(post, path = "/subscriptions/checkout", tag = "subscriptions", security(("bearer" = [])),
    request_body = CheckoutBody,
    responses(
        (status = 200, body = Envelope<CheckoutView>),
        (status = 400, description = "INVALID_PARAMETERS: plan or billing_cycle", body = ErrorEnvelope),
        (status = 409, description = "CONFLICT: already subscribed (use upgrade)", body = ErrorEnvelope),
        (status = 429, description = "RATE_LIMITED: billing_checkouts_per_hour", body = ErrorEnvelope),
        (status = 503, description = "SERVICE_UNAVAILABLE: billing not configured or the provider failed", body = ErrorEnvelope),
    ))]
async fn checkout(
    State(state): State<SharedState>,
    user: AuthUser,
    ApiJson(body): ApiJson<CheckoutBody>,
) -> ApiResult<impl axum::response::IntoResponse> {
    let email = user_store::find_by_id(&state.db, &user.id)
        .await
        .map_err(ApiError::internal)?
        .ok_or(ErrorCode::InvalidToken)?
        .email;
    let c = state
        .billing
        .checkout(&user.id, &email, &body.plan, &body.billing_cycle)
        .await?;
    let expires_at = c
        .expires_at
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    Ok(ok(CheckoutView {
        checkout_url: c.url,
        expires_at,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeBody {
    pub target_plan: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UpgradeView {
    pub previous_plan: String,
    pub new_plan: String,
    pub effective_immediately: bool,
    /// Credits granted by this call: none. The difference comes with the
    /// paid invoice (`credits_pending`).
    pub credits_granted: i64,
    /// The difference in monthly credits between the plans (less what the
    /// period already had), granted once the provider has been paid the
    /// change's prorated invoice.
    pub credits_pending: i64,
    pub message: String,
}

fn display_name(state: &SharedState, plan: &str) -> String {
    state.billing.plans().tier(plan).display_name.clone()
}

/// 구독 업그레이드 — a higher plan, at once; its credits once it is paid.
#[utoipa::path(post, path = "/subscriptions/upgrade", tag = "subscriptions", security(("bearer" = [])),
    request_body = ChangeBody,
    responses(
        (status = 200, body = Envelope<UpgradeView>),
        (status = 400, description = "INVALID_PARAMETERS: unknown, same or lower plan", body = ErrorEnvelope),
        (status = 409, description = "CONFLICT: no_paid_subscription, or subscription_past_due (the last payment failed)", body = ErrorEnvelope),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = ErrorEnvelope),
    ))]
async fn upgrade(
    State(state): State<SharedState>,
    lang: Lang,
    user: CurrentUser,
    ApiJson(body): ApiJson<ChangeBody>,
) -> ApiResult<impl axum::response::IntoResponse> {
    let up = state.billing.upgrade(&user.id, &body.target_plan).await?;
    let name = display_name(&state, &up.new_plan);
    let pending = up.credits_pending;
    let message = match (lang, pending) {
        (Lang::Ko, 0) => format!("{name} 플랜으로 업그레이드되었습니다."),
        (Lang::En, 0) => format!("Upgraded to the {name} plan."),
        (Lang::Ko, n) => format!(
            "{name} 플랜으로 업그레이드되었습니다. 결제가 완료되면 크레딧 {n}이 추가됩니다."
        ),
        (Lang::En, n) => {
            format!(
                "Upgraded to the {name} plan. {n} credits are added once the payment is collected."
            )
        }
    };
    Ok(ok(UpgradeView {
        previous_plan: up.previous_plan,
        new_plan: up.new_plan,
        effective_immediately: true,
        credits_granted: 0,
        credits_pending: pending,
        message,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DowngradeView {
    pub current_plan: String,
    pub new_plan: String,
    pub effective_immediately: bool,
    /// When the lower plan takes over.
    pub effective_at: Option<DateTime<Utc>>,
    pub message: String,
}

fn date(lang: Lang, t: Option<DateTime<Utc>>) -> String {
    match (lang, t) {
        (Lang::Ko, Some(t)) => t.format("%Y년 %-m월 %-d일").to_string(),
        (Lang::En, Some(t)) => t.format("%B %-d, %Y").to_string(),
        (Lang::Ko, None) => "현재 기간 종료 시".into(),
        (Lang::En, None) => "the end of the period".into(),
    }
}

/// 구독 다운그레이드 — a lower plan from the next period (not in the spec).
#[utoipa::path(post, path = "/subscriptions/downgrade", tag = "subscriptions", security(("bearer" = [])),
    request_body = ChangeBody,
    responses(
        (status = 200, body = Envelope<DowngradeView>),
        (status = 400, description = "INVALID_PARAMETERS: unknown, same or higher plan", body = ErrorEnvelope),
        (status = 409, description = "CONFLICT: no_paid_subscription", body = ErrorEnvelope),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = ErrorEnvelope),
    ))]
async fn downgrade(
    State(state): State<SharedState>,
    lang: Lang,
    user: CurrentUser,
    ApiJson(body): ApiJson<ChangeBody>,
) -> ApiResult<impl axum::response::IntoResponse> {
    let row = state.billing.downgrade(&user.id, &body.target_plan).await?;
    let name = display_name(&state, &body.target_plan);
    let when = date(lang, row.current_period_end);
    let message = match lang {
        Lang::Ko => format!("{when}부터 {name} 플랜이 적용됩니다."),
        Lang::En => format!("The {name} plan starts on {when}."),
    };
    Ok(ok(DowngradeView {
        current_plan: row.plan,
        new_plan: body.target_plan,
        effective_immediately: false,
        effective_at: row.current_period_end,
        message,
    }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    pub reason: Option<String>,
    pub feedback: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CancelView {
    /// `cancelling`: the plan stays until `ends_at`.
    pub status: String,
    pub ends_at: Option<DateTime<Utc>>,
    pub message: String,
}

/// 구독 취소 — at the end of the paid period.
#[utoipa::path(post, path = "/subscriptions/cancel", tag = "subscriptions", security(("bearer" = [])),
    request_body = CancelBody,
    responses(
        (status = 200, body = Envelope<CancelView>),
        (status = 409, description = "CONFLICT: no_paid_subscription", body = ErrorEnvelope),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = ErrorEnvelope),
    ))]
async fn cancel(
    State(state): State<SharedState>,
    lang: Lang,
    user: CurrentUser,
    body: axum::body::Bytes,
) -> ApiResult<impl axum::response::IntoResponse> {
    let body: CancelBody = super::extract::optional_json(&body)?;
    for (field, value) in [("reason", &body.reason), ("feedback", &body.feedback)] {
        if value.as_ref().is_some_and(|v| v.len() > 2000) {
            return Err(ApiError::invalid_param(field, "at most 2000 bytes"));
        }
    }
    let row = state.billing.cancel(&user.id).await?;
    tracing::info!(user = %user.id, reason = ?body.reason, feedback = ?body.feedback, "subscription cancelled");
    let when = date(lang, row.current_period_end);
    let message = match lang {
        Lang::Ko => format!("구독이 {when}에 종료됩니다."),
        Lang::En => format!("Your subscription ends on {when}."),
    };
    Ok(ok(CancelView {
        status: "cancelling".into(),
        ends_at: row.current_period_end,
        message,
    }))
}

/// 구독 재개 — undo a pending cancel (not in the spec).
#[utoipa::path(post, path = "/subscriptions/resume", tag = "subscriptions", security(("bearer" = [])),
    responses(
        (status = 200, body = Envelope<CurrentSubscription>),
        (status = 400, description = "INVALID_PARAMETERS: nothing to resume", body = ErrorEnvelope),
        (status = 409, description = "CONFLICT: no_paid_subscription", body = ErrorEnvelope),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = ErrorEnvelope),
    ))]
async fn resume(
    State(state): State<SharedState>,
    user: CurrentUser,
) -> ApiResult<impl axum::response::IntoResponse> {
    let row = state.billing.resume(&user.id).await?;
    let plan = state.billing.plans().tier(&row.plan).clone();
    Ok(ok(CurrentSubscription::of(row, &plan)))
}
