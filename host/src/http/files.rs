//! Stored images: `GET /api/v1/files/<key>?expires=…&sig=…` behind the
//! signed, expiring links the API hands out, and `GET /api/v1/shared/<token>`
//! for images their owner shared. Both answer `ETag` / `If-None-Match`
//! (304) and single byte ranges (206), and stream the file from the blob
//! store as the client reads it (a slow reader holds a chunk, not the
//! file; one that reads nothing for `write_timeout_ms` is cut off by the
//! listener). One client address reads at most `file_reads_per_client`
//! files at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::extract::ApiQuery;
use crate::app::SharedState;
use crate::blobs::ByteStream;
use crate::error::{ApiError, ApiResult, ErrorCode};

#[derive(Debug, Deserialize)]
pub struct Signature {
    pub expires: i64,
    pub sig: String,
}

/// Longest a browser may keep a file without asking again.
const MAX_CACHE_SECS: i64 = 3600;
/// What a client over its file reads is told to wait, seconds.
const READERS_RETRY_AFTER: u64 = 1;

/// The files each client address is reading now.
pub struct Readers {
    max: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One file being read; its address's count drops when it is dropped
/// (the body ended, or the connection closed).
pub struct Reading {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Readers {
    /// At most `max` files at once per address (at least one).
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            open: Arc::default(),
        }
    }

    /// A read for `ip`, unless it has `max` open already.
    pub fn begin(&self, ip: IpAddr) -> Option<Reading> {
        let mut open = self.open.lock().expect("readers");
        let n = open.entry(ip).or_default();
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Reading {
            ip,
            open: self.open.clone(),
        })
    }

    /// Files `ip` is reading now.
    pub fn of(&self, ip: IpAddr) -> usize {
        self.open
            .lock()
            .expect("readers")
            .get(&ip)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        let mut open = self.open.lock().expect("readers");
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// A file's bytes holding its reader's place until they end or are dropped.
struct Counted {
    bytes: ByteStream,
    _reading: Option<Reading>,
}

impl Stream for Counted {
    type Item = std::io::Result<bytes::Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.bytes.poll_next_unpin(cx)
    }
}

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
/// range (only those bytes are read), 416 for a range past the end; the
/// bytes streamed from the store as the client takes them.
async fn serve(
    state: &SharedState,
    client: &Client,
    key: &str,
    cache_control: &str,
) -> ApiResult<Response> {
    let headers = &client.headers;
    let len = state
        .blobs
        .head(key)
        .await
        .map_err(ApiError::internal)?
        .ok_or(ErrorCode::NotFound)?;
    let tag = etag(key, len as usize);
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
    let (status, range) = match range_of(headers, len as usize) {
        None => (StatusCode::OK, 0..len),
        Some(Ok((start, end))) => {
            let range = format!("bytes {start}-{end}/{len}");
            common.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&range).expect("ascii"),
            );
            (StatusCode::PARTIAL_CONTENT, start as u64..end as u64 + 1)
        }
        Some(Err(())) => {
            let mut r = ApiError::invalid_param("range", format!("the file has {len} bytes"))
                .into_response();
            *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            r.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{len}")).expect("ascii"),
            );
            return Ok(r);
        }
    };
    let reading = match client.ip {
        Some(ip) => Some(
            state
                .file_readers
                .begin(ip)
                .ok_or_else(|| too_many_reads(state))?,
        ),
        None => None,
    };
    common.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(range.end - range.start),
    );
    let bytes = state
        .blobs
        .stream(key, range)
        .await
        .map_err(|e| -> ApiError {
            if e.kind() == std::io::ErrorKind::NotFound {
                ErrorCode::NotFound.into()
            } else {
                ApiError::internal(e)
            }
        })?;
    let body = Body::from_stream(Counted {
        bytes,
        _reading: reading,
    });
    Ok((status, common, body).into_response())
}

/// What `serve` needs of the request: its headers and the client's
/// address (as the rate limits determine it).
struct Client {
    headers: HeaderMap,
    ip: Option<IpAddr>,
}

impl Client {
    fn of(state: &SharedState, req: &Request) -> Self {
        Self {
            headers: req.headers().clone(),
            ip: super::ratelimit::client_ip(state, req),
        }
    }
}

/// The refusal of a client already reading its most files at once.
fn too_many_reads(state: &SharedState) -> ApiError {
    let max = state.config.file_reads_per_client.max(1);
    ApiError::with_details(
        ErrorCode::RateLimited,
        json!({ "limit": "file_reads", "max": max, "retry_after": READERS_RETRY_AFTER }),
    )
    .retry_after(READERS_RETRY_AFTER)
}

pub async fn file(
    State(state): State<SharedState>,
    Path(key): Path<String>,
    ApiQuery(s): ApiQuery<Signature>,
    req: Request,
) -> ApiResult<Response> {
    let servable = key.starts_with("images/") || key.starts_with("thumbnails/");
    if !servable || !state.links.verify(&key, s.expires, &s.sig) {
        return Err(ErrorCode::Forbidden.into());
    }
    // Never cached past the link's own life.
    let max_age = (s.expires - Utc::now().timestamp()).clamp(0, MAX_CACHE_SECS);
    let client = Client::of(&state, &req);
    serve(
        &state,
        &client,
        &key,
        &format!("private, max-age={max_age}"),
    )
    .await
}

/// An image its owner shared: no login, until the link is revoked or ends.
pub async fn shared(
    State(state): State<SharedState>,
    Path(token): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    let client = Client::of(&state, &req);
    let row = state.gallery.shared(&token).await?;
    // Revalidated every time, so a revoked link stops at once.
    serve(&state, &client, &row.blob_key, "public, no-cache").await
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
    fn each_address_reads_at_most_its_share_of_files_at_once() {
        let readers = Readers::new(2);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = readers.begin(a).unwrap();
        let second = readers.begin(a).unwrap();
        assert!(readers.begin(a).is_none(), "a third at once");
        assert!(readers.begin(b).is_some(), "another address has its own");
        drop(first);
        assert_eq!(readers.of(a), 1);
        let _third = readers.begin(a).unwrap();
        drop(second);
        assert_eq!(readers.of(a), 1);
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
