//! The per-tier limits on the API (`ratelimit`). The bearer is validated
//! once here and its claims handed to `AuthUser` through the request's
//! extensions; the user's tier comes from a short cache. Without a valid
//! bearer — none, a bad one, one issued before its user's sessions ended,
//! or one of an account that no longer exists — the auth routes (login,
//! register, refresh …) are limited per client address at the default
//! tier's rate; other routes pass on (their extractor answers them).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::extract::bearer_token;
use crate::app::SharedState;
use crate::auth::tokens::Claims;
use crate::billing::plans::DEFAULT_TIER;
use crate::error::{ApiError, ErrorCode};
use crate::ratelimit::Decision;

async fn bearer_claims(state: &SharedState, headers: &HeaderMap) -> Option<Claims> {
    let token = bearer_token(headers).ok()?;
    state.auth.authenticate(token).await.ok()
}

async fn tier_of(state: &SharedState, user_id: &str) -> Option<String> {
    let caller = crate::users::caller(&state.db, user_id).await.ok()??;
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

/// The client's address: the peer, or — when the peer is a trusted proxy —
/// the last address of `X-Forwarded-For` that is not one.
pub(crate) fn client_ip(state: &SharedState, req: &Request) -> Option<IpAddr> {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>()?.0.ip();
    let is_trusted = |ip: &IpAddr| state.trusted_proxies.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .collect::<Vec<_>>();
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !is_trusted(ip))
            .unwrap_or(peer),
    )
}

fn refusal(d: &Decision, wait: u64, per_min: u32, what: &str) -> Response {
    let mut resp = ApiError::with_details(
        ErrorCode::RateLimited,
        json!({ "limit": what, "per_minute": per_min, "retry_after": wait }),
    )
    .into_response();
    set_headers(&mut resp, d);
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(wait));
    resp
}

/// The auth routes without a bearer, per client address.
async fn limit_client(state: &SharedState, req: Request, next: Next) -> Response {
    let per_min = state.plans.tier(DEFAULT_TIER).requests_per_min;
    let Some(ip) = client_ip(state, &req) else {
        return next.run(req).await;
    };
    let d = state.rate_limits.check(&format!("ip:{ip}"), per_min).await;
    if let Some(wait) = d.retry_after {
        return refusal(&d, wait, per_min, "requests");
    }
    let mut resp = next.run(req).await;
    set_headers(&mut resp, &d);
    resp
}

pub async fn limit(State(state): State<SharedState>, mut req: Request, next: Next) -> Response {
    if !state.config.rate_limits_enabled {
        return next.run(req).await;
    }
    let user = match bearer_claims(&state, req.headers()).await {
        Some(claims) => tier_of(&state, &claims.sub)
            .await
            .map(|tier| (claims, tier)),
        None => None,
    };
    let Some((claims, tier)) = user else {
        if req.uri().path().contains("/auth/") {
            return limit_client(&state, req, next).await;
        }
        return next.run(req).await;
    };
    let plan = state.plans.tier(&tier);
    let requests = state
        .rate_limits
        .check(&format!("req:{}", claims.sub), plan.requests_per_min)
        .await;
    if let Some(wait) = requests.retry_after {
        return refusal(&requests, wait, plan.requests_per_min, "requests");
    }
    // A generation is limited by its own bucket too, and its headers tell
    // that one (the tighter, the one a client paces generations by).
    let mut shown = requests;
    if req.method() == Method::POST && req.uri().path().contains("/generate/") {
        let g = state
            .rate_limits
            .check(&format!("gen:{}", claims.sub), plan.generations_per_min)
            .await;
        if let Some(wait) = g.retry_after {
            return refusal(&g, wait, plan.generations_per_min, "generations");
        }
        shown = g;
    }
    req.extensions_mut().insert(claims);
    let mut resp = next.run(req).await;
    set_headers(&mut resp, &shown);
    resp
}
