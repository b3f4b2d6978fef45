//! Stored images: `GET /api/v1/files/<key>?expires=…&sig=…` behind the
//! signed, expiring links the API hands out, and `GET /api/v1/shared/<token>`
//! for images their owner shared. Both answer `ETag` / `If-None-Match`
//! (304) and single byte ranges (206).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::extract::ApiQuery;
use crate::app::SharedState;
use crate::blobs::Blobs;
use crate::error::{ApiError, ApiResult, ErrorCode};

#[derive(Debug, Deserialize)]
pub struct Signature {
    pub expires: i64,
    pub sig: String,
}

/// Longest a browser may keep a file without asking again.
const MAX_CACHE_SECS: i64 = 3600;

/// The content type of a stored file or a web asset, by its extension.
pub fn mime_of(key: &str) -> &'static str {
    match key.rsplit('.').next() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("svg") => "image/svg+xml",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("txt") => "text/plain; charset=utf-8",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// Whether `If-None-Match` names `tag` (or `*`): the client's copy is current.
pub fn if_none_match(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim() == "*"
                || v.split(',')
                    .any(|t| t.trim().trim_start_matches("W/") == tag)
        })
}

/// A blob never changes under its key (keys are unique per image), so key
/// and length make a strong validator without hashing the bytes.
fn etag(key: &str, len: usize) -> String {
    let digest = hex::encode(&Sha256::digest(key.as_bytes())[..12]);
    format!("\"{digest}-{len}\"")
}

/// The byte range a `Range` header asks for, as `start..=end`; `Err` when
/// it cannot be satisfied. Only single `bytes=` ranges; others are ignored
/// (the whole file is sent), as RFC 9110 allows.
fn range_of(headers: &HeaderMap, len: usize) -> Option<Result<(usize, usize), ()>> {
    let spec = headers
        .get(header::RANGE)?
        .to_str()
        .ok()?
        .strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.is_empty(), b.is_empty()) {
        // The last `b` bytes.
        (true, false) => {
            let n: usize = b.parse().ok()?;
            if n == 0 || len == 0 {
                return Some(Err(()));
            }
            (len.saturating_sub(n), len - 1)
        }
        (false, _) => {
            let start: usize = a.parse().ok()?;
            let end: usize = if b.is_empty() {
                len.saturating_sub(1)
            } else {
                b.parse().ok()?
            };
            if start >= len || end < start {
                return Some(Err(()));
            }
            (start, end.min(len - 1))
        }
        (true, true) => return None,
    };
    Some(Ok(parsed))
}

/// Answers with the blob of `key`: 304 when the client has it, 206 for a
/// range (only those bytes are read), 416 for a range past the end.
async fn serve(
    blobs: &Blobs,
    key: &str,
    headers: &HeaderMap,
    cache_control: &str,
) -> ApiResult<Response> {
    let len = blobs
        .head(key)
        .await
        .map_err(ApiError::internal)?
        .ok_or(ErrorCode::NotFound)? as usize;
    let tag = etag(key, len);
    let mut common = HeaderMap::new();
    common.insert(header::ETAG, HeaderValue::from_str(&tag).expect("hex tag"));
    common.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_str(cache_control).expect("ascii"),
    );
    common.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    common.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if if_none_match(headers, &tag) {
        return Ok((StatusCode::NOT_MODIFIED, common).into_response());
    }
    common.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime_of(key)));
    let missing = |e: std::io::Error| -> ApiError {
        if e.kind() == std::io::ErrorKind::NotFound {
            ErrorCode::NotFound.into()
        } else {
            ApiError::internal(e)
        }
    };
    Ok(match range_of(headers, len) {
        None => (common, blobs.get(key).await.map_err(missing)?).into_response(),
        Some(Ok((start, end))) => {
            let range = format!("bytes {start}-{end}/{len}");
            common.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&range).expect("ascii"),
            );
            let part = blobs
                .get_range(key, start as u64..end as u64 + 1)
                .await
                .map_err(missing)?;
            (StatusCode::PARTIAL_CONTENT, common, Body::from(part)).into_response()
        }
        Some(Err(())) => {
            let mut r = ApiError::invalid_param("range", format!("the file has {len} bytes"))
                .into_response();
            *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            r.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{len}")).expect("ascii"),
            );
            r
        }
    })
}

pub async fn file(
    State(state): State<SharedState>,
    Path(key): Path<String>,
    ApiQuery(s): ApiQuery<Signature>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let servable = key.starts_with("images/") || key.starts_with("thumbnails/");
    if !servable || !state.links.verify(&key, s.expires, &s.sig) {
        return Err(ErrorCode::Forbidden.into());
    }
    // Never cached past the link's own life.
    let max_age = (s.expires - Utc::now().timestamp()).clamp(0, MAX_CACHE_SECS);
    serve(
        &state.blobs,
        &key,
        &headers,
        &format!("private, max-age={max_age}"),
    )
    .await
}

/// An image its owner shared: no login, until the link is revoked or ends.
pub async fn shared(
    State(state): State<SharedState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let row = state.gallery.shared(&token).await?;
    // Revalidated every time, so a revoked link stops at once.
    serve(&state.blobs, &row.blob_key, &headers, "public, no-cache").await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranged(v: &str, len: usize) -> Option<Result<(usize, usize), ()>> {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(v).unwrap());
        range_of(&h, len)
    }

    #[test]
    fn byte_ranges() {
        assert_eq!(ranged("bytes=0-9", 100), Some(Ok((0, 9))));
        assert_eq!(ranged("bytes=90-", 100), Some(Ok((90, 99))));
        assert_eq!(ranged("bytes=-10", 100), Some(Ok((90, 99))));
        assert_eq!(ranged("bytes=50-500", 100), Some(Ok((50, 99))));
        assert_eq!(ranged("bytes=-500", 100), Some(Ok((0, 99))));
        assert_eq!(ranged("bytes=100-", 100), Some(Err(())));
        assert_eq!(ranged("bytes=9-3", 100), Some(Err(())));
        assert_eq!(ranged("bytes=-0", 100), Some(Err(())));
        assert_eq!(ranged("bytes=0-1,5-6", 100), None);
        assert_eq!(ranged("items=0-1", 100), None);
        assert_eq!(ranged("bytes=x-1", 100), None);
    }
}
