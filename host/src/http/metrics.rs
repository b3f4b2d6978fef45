//! HTTP metrics middleware: times each request and records it under its
//! route template in the host's registry (`crate::metrics`).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::SharedState;

/// The route template a request matched, carried on its response.
#[derive(Clone)]
struct MatchedRoute(String);

/// Route layer: copies the matched route template onto the response so the
/// outer `record` middleware (which runs before routing) can label by it.
pub async fn tag_route(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| MatchedRoute(m.as_str().to_owned()));
    let mut response = next.run(req).await;
    if let Some(route) = route {
        response.extensions_mut().insert(route);
    }
    response
}

/// Middleware: times each request and counts it under its route template
/// (`/api/v1/users/me`), never the raw path, so label sets stay bounded.
pub async fn record(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(req.method());
    let response = next.run(req).await;
    let route = response
        .extensions()
        .get::<MatchedRoute>()
        .map_or("unmatched", |r| r.0.as_str());
    state.metrics.observe(
        method,
        route,
        response.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    response
}

/// The label of a request method: the standard ones by name, anything a
/// client invents as `OTHER`, so labels stay a fixed set.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// `/metrics`; with `metrics_token` set, only for that bearer token.
pub async fn handler(
    State(state): State<SharedState>,
    headers: axum::http::HeaderMap,
) -> Result<impl IntoResponse, crate::error::ApiError> {
    if let Some(token) = &state.config.metrics_token {
        super::extract::require_bearer(&headers, token)?;
    }
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    ))
}
