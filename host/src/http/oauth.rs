//! 소셜 로그인: `GET /auth/{google,discord}` sends the browser to the
//! provider with a state cookie; the callback finishes the sign-in and
//! sends the browser on to `frontend_url` with the tokens in the URL
//! fragment (never the query, so they reach no server log), or with
//! `#error=<code>` when the sign-in failed.

use axum::extract::{RawQuery, State};
use axum::http::header::{CACHE_CONTROL, COOKIE, LOCATION, REFERRER_POLICY, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::response::ErrorEnvelope;
use crate::app::SharedState;
use crate::auth::oauth::{Callback, OAuthError, Provider, STATE_TTL_MINUTES};
use crate::error::{ApiError, ErrorCode};

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(google))
        .routes(routes!(google_callback))
        .routes(routes!(discord))
        .routes(routes!(discord_callback))
}

const STATE_COOKIE: &str = "pingvas_oauth_state";

fn cookie_path(p: Provider) -> String {
    format!("{}/auth/{p}/callback", super::API_PREFIX)
}

fn redirect(to: &str, cookie: String) -> Response {
    let mut resp = StatusCode::FOUND.into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(to) {
        h.insert(LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        h.insert(SET_COOKIE, v);
    }
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

fn not_configured(e: OAuthError) -> Response {
    ApiError::with_details(
        ErrorCode::ServiceUnavailable,
        json!({ "reason": e.to_string() }),
    )
    .into_response()
}

async fn begin(state: &SharedState, p: Provider) -> Response {
    match state.oauth.begin(p).await {
        Ok(started) => {
            // The cookie lives on the API's host, which `public_url` names.
            let https = state
                .config
                .public_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https:"));
            let secure = if https { "; Secure" } else { "" };
            let cookie = format!(
                "{STATE_COOKIE}={}; Path={}; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
                started.state,
                cookie_path(p),
                STATE_TTL_MINUTES * 60,
            );
            redirect(&started.url, cookie)
        }
        Err(e @ OAuthError::NotConfigured(_)) => not_configured(e),
        Err(e) => ApiError::internal(anyhow::anyhow!("{e}")).into_response(),
    }
}

fn cookie_state(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == STATE_COOKIE)
        .map(|(_, v)| v.to_owned())
}

async fn finish(
    state: &SharedState,
    p: Provider,
    headers: &HeaderMap,
    query: Option<String>,
) -> Response {
    let front = state.config.frontend_base();
    let clear = format!(
        "{STATE_COOKIE}=; Path={}; Max-Age=0; HttpOnly; SameSite=Lax",
        cookie_path(p)
    );
    let cb = Callback::parse(query.as_deref().unwrap_or_default());
    let cookie = cookie_state(headers);
    let outcome = match state.oauth.finish(p, &cb, cookie.as_deref()).await {
        Ok(profile) => state.auth.sign_in_with(p, &profile).await,
        Err(e) => Err(e),
    };
    let fragment: Vec<(&str, String)> = match outcome {
        Ok(signed) => vec![
            ("access_token", signed.tokens.access_token),
            ("refresh_token", signed.tokens.refresh_token),
            ("token_type", "Bearer".into()),
            ("expires_in", signed.tokens.expires_in.to_string()),
            ("provider", p.to_string()),
            ("new_user", signed.created.to_string()),
        ],
        Err(e @ OAuthError::NotConfigured(_)) => return not_configured(e),
        Err(e) => {
            match &e {
                OAuthError::Internal(err) => {
                    tracing::error!(provider = %p, error = format!("{err:#}"), "OAuth sign-in failed")
                }
                other => tracing::info!(provider = %p, error = %other, "OAuth sign-in refused"),
            }
            vec![
                ("error", e.code().to_owned()),
                ("error_description", e.to_string()),
                ("provider", p.to_string()),
            ]
        }
    };
    let encoded = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fragment)
        .finish();
    let to = match url::Url::parse(&front) {
        Ok(mut u) => {
            u.set_fragment(Some(&encoded));
            u.to_string()
        }
        Err(_) => format!("{front}#{encoded}"),
    };
    redirect(&to, clear)
}

/// Google 로그인 시작 — a redirect to Google, with the state cookie.
#[utoipa::path(get, path = "/auth/google", tag = "auth",
    responses((status = 302, description = "to Google's consent page"),
        (status = 503, description = "SERVICE_UNAVAILABLE: Google sign-in is not configured", body = ErrorEnvelope)))]
async fn google(State(state): State<SharedState>) -> Response {
    begin(&state, Provider::Google).await
}

/// Google OAuth 콜백 — a redirect to the front end: tokens in the fragment
/// (`#access_token=…&refresh_token=…&expires_in=…&new_user=…`), or
/// `#error=<code>&error_description=…`.
#[utoipa::path(get, path = "/auth/google/callback", tag = "auth",
    params(("code" = Option<String>, Query, description = "OAuth authorization code"),
           ("state" = Option<String>, Query, description = "CSRF 방지 토큰")),
    responses((status = 302, description = "to frontend_url with tokens or an error in the fragment"),
        (status = 503, description = "SERVICE_UNAVAILABLE: Google sign-in is not configured", body = ErrorEnvelope)))]
async fn google_callback(
    State(state): State<SharedState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    finish(&state, Provider::Google, &headers, query).await
}

/// Discord 로그인 시작 — a redirect to Discord, with the state cookie.
#[utoipa::path(get, path = "/auth/discord", tag = "auth",
    responses((status = 302, description = "to Discord's consent page"),
        (status = 503, description = "SERVICE_UNAVAILABLE: Discord sign-in is not configured", body = ErrorEnvelope)))]
async fn discord(State(state): State<SharedState>) -> Response {
    begin(&state, Provider::Discord).await
}

/// Discord OAuth 콜백 — as Google's.
#[utoipa::path(get, path = "/auth/discord/callback", tag = "auth",
    params(("code" = Option<String>, Query, description = "OAuth authorization code"),
           ("state" = Option<String>, Query, description = "CSRF 방지 토큰")),
    responses((status = 302, description = "to frontend_url with tokens or an error in the fragment"),
        (status = 503, description = "SERVICE_UNAVAILABLE: Discord sign-in is not configured", body = ErrorEnvelope)))]
async fn discord_callback(
    State(state): State<SharedState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    finish(&state, Provider::Discord, &headers, query).await
}
