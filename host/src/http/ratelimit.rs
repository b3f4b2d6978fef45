//! The per-tier limits on the API (`ratelimit`). The bearer is validated
//! once here and its claims handed to `AuthUser` through the request's
//! extensions; the user's tier comes from a short cache. Requests without
//! a valid bearer pass on (the route's extractor answers them).

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, RETRY_AFTER};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::SharedState;
use crate::auth::tokens::Claims;
use crate::error::{ApiError, ErrorCode};
use crate::ratelimit::Decision;

fn bearer_claims(state: &SharedState, req: &Request) -> Option<Claims> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    state.auth.access.validate(token.trim()).ok()
}

async fn tier_of(state: &SharedState, user_id: &str) -> Option<String> {
    if let Some(t) = state.tiers.get(user_id) {
        return Some(t);
    }
    let caller = crate::users::caller(&state.db, user_id).await.ok()??;
    state.tiers.put(user_id, &caller.tier);
    Some(caller.tier)
}

fn set_headers(resp: &mut Response, d: &Decision) {
    let h = resp.headers_mut();
    for (name, value) in [
        ("x-ratelimit-limit", i64::from(d.limit)),
        ("x-ratelimit-remaining", i64::from(d.remaining)),
        ("x-ratelimit-reset", d.reset),
    ] {
        h.insert(name, HeaderValue::from(value));
    }
}

pub async fn limit(State(state): State<SharedState>, mut req: Request, next: Next) -> Response {
    if !state.config.rate_limits_enabled {
        return next.run(req).await;
    }
    let Some(claims) = bearer_claims(&state, &req) else {
        return next.run(req).await;
    };
    let Some(tier) = tier_of(&state, &claims.sub).await else {
        return next.run(req).await;
    };
    let plan = state.plans.tier(&tier);
    let requests = state
        .rate_limits
        .check(&format!("req:{}", claims.sub), plan.requests_per_min)
        .await;
    let mut refused = requests
        .retry_after
        .map(|wait| (wait, plan.requests_per_min, "requests"));
    if refused.is_none() && req.method() == Method::POST && req.uri().path().contains("/generate/")
    {
        let g = state
            .rate_limits
            .check(&format!("gen:{}", claims.sub), plan.generations_per_min)
            .await;
        refused = g
            .retry_after
            .map(|wait| (wait, plan.generations_per_min, "generations"));
    }
    if let Some((wait, per_min, what)) = refused {
        let mut resp = ApiError::with_details(
            ErrorCode::RateLimited,
            json!({ "limit": what, "per_minute": per_min, "retry_after": wait }),
        )
        .into_response();
        set_headers(&mut resp, &requests);
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(wait));
        return resp;
    }
    req.extensions_mut().insert(claims);
    let mut resp = next.run(req).await;
    set_headers(&mut resp, &requests);
    resp
}
