//! The HTTP API: one router file per API area (the spec's sections), the
//! extractors, the envelope, and the middleware stack.

pub mod admin;
pub mod auth;
pub mod boards;
pub mod envelope;
pub mod extract;
pub mod files;
pub mod generate;
pub mod images;
pub mod internal;
pub mod listen;
pub mod metrics;
pub mod models;
pub mod oauth;
pub mod openapi;
pub mod ops;
pub mod page_cache;
pub mod plugins;
pub mod queue;
pub mod ratelimit;
pub mod response;
pub mod storage;
pub mod subscriptions;
pub mod users;
pub mod web;
pub mod webhooks;
pub mod workflows;
pub mod ws;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::routing::get;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::app::SharedState;
use crate::error::{ApiError, ErrorCode};

pub const API_PREFIX: &str = "/api/v1";
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The API routes with their OpenAPI description.
pub fn api() -> OpenApiRouter<SharedState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(auth::router())
        .merge(oauth::router())
        .merge(users::router())
        .merge(models::router())
        .merge(plugins::router())
        .merge(generate::router())
        .merge(queue::router())
        .merge(images::router())
        .merge(boards::router())
        .merge(storage::router())
        .merge(workflows::router())
        .merge(subscriptions::router())
        .merge(webhooks::router())
        .merge(admin::router())
        .routes(utoipa_axum::routes!(ws::events))
}

/// The public listener's routes: the API, its docs, files, health and
/// the web studio;
/// the internal worker API and `/metrics` too unless they have listeners
/// of their own.
pub fn router(state: SharedState) -> Router {
    let (api_router, spec) = api().split_for_parts();
    let spec = openapi::served(spec, &state.models, &state.plans);
    let mut app = Router::new()
        .nest(
            API_PREFIX,
            api_router.layer(axum::middleware::from_fn_with_state(
                state.clone(),
                ratelimit::limit,
            )),
        )
        .merge(
            SwaggerUi::new("/docs")
                .external_url_unchecked(format!("{API_PREFIX}/openapi.json"), spec),
        )
        .route(&format!("{API_PREFIX}/files/{{*key}}"), get(files::file))
        .route(
            &format!("{API_PREFIX}/shared/{{token}}"),
            get(files::shared),
        )
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz));
    if state.config.web_ui {
        app = app.merge(web::router(&state));
    }
    if state.config.internal_addr.is_none() {
        app = app.nest("/internal/v1", internal::router());
    }
    if state.config.metrics_addr.is_none() {
        app = app.route("/metrics", get(metrics::handler));
    }
    with_layers(app, state)
}

/// The internal worker API alone (`internal_addr`).
pub fn internal_router(state: SharedState) -> Router {
    with_layers(
        Router::new().nest("/internal/v1", internal::router()),
        state,
    )
}

/// `/metrics` alone (`metrics_addr`).
pub fn metrics_router(state: SharedState) -> Router {
    with_layers(
        Router::new().route("/metrics", get(metrics::handler)),
        state,
    )
}

/// Error envelopes, limits, CORS, metrics, request ids and tracing around
/// a listener's routes.
fn with_layers(app: Router<SharedState>, state: SharedState) -> Router {
    let body_limit = state.config.body_limit_bytes;
    let cors = cors_layer(&state.config.cors_origin_list());
    app.fallback(|| async { ApiError::new(ErrorCode::NotFound) })
        .method_not_allowed_fallback(|| async { ApiError::new(ErrorCode::MethodNotAllowed) })
        .route_layer(axum::middleware::from_fn(metrics::tag_route))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, Duration::from_secs(60)))
        .layer(cors)
        .layer(axum::middleware::from_fn(envelope::localize_errors))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::record))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), uri = %req.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}

fn cors_layer(origins: &[String]) -> CorsLayer {
    let base = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::PUT,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT_LANGUAGE,
        ])
        // A browser on another origin reads only what is exposed: the
        // limits and when to retry too, not only the request id.
        .expose_headers([
            REQUEST_ID,
            header::RETRY_AFTER,
            HeaderName::from_static("x-ratelimit-limit"),
            HeaderName::from_static("x-ratelimit-remaining"),
            HeaderName::from_static("x-ratelimit-reset"),
            HeaderName::from_static("idempotent-replayed"),
        ])
        .max_age(Duration::from_secs(600));
    if origins.iter().any(|o| o == "*") {
        return base.allow_origin(AllowOrigin::any());
    }
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    base.allow_origin(list)
}
