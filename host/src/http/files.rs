//! `GET /api/v1/files/<key>?expires=…&sig=…`: stored images and thumbnails
//! behind signed, expiring links (the links the API hands out).

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::extract::ApiQuery;
use crate::app::SharedState;
use crate::error::{ApiError, ApiResult, ErrorCode};

#[derive(Debug, Deserialize)]
pub struct Signature {
    pub expires: i64,
    pub sig: String,
}

fn mime_of(key: &str) -> &'static str {
    match key.rsplit('.').next() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        _ => "application/octet-stream",
    }
}

pub async fn file(
    State(state): State<SharedState>,
    Path(key): Path<String>,
    ApiQuery(s): ApiQuery<Signature>,
) -> ApiResult<Response> {
    let servable = key.starts_with("images/") || key.starts_with("thumbnails/");
    if !servable || !state.links.verify(&key, s.expires, &s.sig) {
        return Err(ErrorCode::Forbidden.into());
    }
    let blobs = state.blobs.clone();
    let k = key.clone();
    let bytes = tokio::task::spawn_blocking(move || blobs.get(&k))
        .await
        .map_err(ApiError::internal)?
        .map_err(|_| ErrorCode::NotFound)?;
    Ok((
        [
            (header::CONTENT_TYPE, mime_of(&key)),
            (header::CACHE_CONTROL, "private, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        bytes,
    )
        .into_response())
}
