//! Outermost middleware that makes every error answer the spec's envelope
//! in the client's language: errors raised by our handlers and extractors
//! are re-rendered when English was asked for, and bare error statuses from
//! tower layers or the router (413, 405, 408 …) are wrapped.

use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::extract::lang_of;
use crate::error::{ApiError, ErrorCode};
use crate::i18n::Lang;

pub async fn localize_errors(req: Request, next: Next) -> Response {
    let lang = lang_of(req.headers());
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    if let Some(err) = response.extensions().get::<ApiError>().cloned() {
        if lang == Lang::default() {
            return response;
        }
        return render(response, &err, lang);
    }
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    render(
        response,
        &ApiError::new(ErrorCode::for_status(status)),
        lang,
    )
}

/// Replaces the body with `err` in `lang`, keeping status and headers other
/// than the body's own.
fn render(response: Response, err: &ApiError, lang: Lang) -> Response {
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(CONTENT_TYPE);
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    let fresh = axum::Json(err.body(lang)).into_response();
    let (fresh_parts, body) = fresh.into_parts();
    parts.headers.extend(fresh_parts.headers);
    parts.extensions.insert(err.clone());
    Response::from_parts(parts, body)
}
