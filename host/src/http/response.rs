//! The spec's success envelope: `{"success":true,"data":…,"meta"?:…}`.

use axum::Json;
use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::Page;

/// Pagination of a list response.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct PageMeta {
    pub page: u32,
    pub per_page: u32,
    pub total: i64,
}

/// A success answer: `data`, optional `meta` and `message`, and a status.
pub struct Success<T> {
    status: StatusCode,
    data: T,
    meta: Option<PageMeta>,
    message: Option<&'static str>,
}

pub fn ok<T: Serialize>(data: T) -> Success<T> {
    Success {
        status: StatusCode::OK,
        data,
        meta: None,
        message: None,
    }
}

impl<T: Serialize> Success<T> {
    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn meta(mut self, meta: PageMeta) -> Self {
        self.meta = Some(meta);
        self
    }

    pub fn message(mut self, message: &'static str) -> Self {
        self.message = Some(message);
        self
    }
}

/// The wire form of a success answer, serialised in one pass.
#[derive(Serialize)]
struct Body<'a, T> {
    success: bool,
    data: &'a T,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<PageMeta>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'static str>,
}

impl<T: Serialize> Success<T> {
    fn body(&self) -> Body<'_, T> {
        Body {
            success: true,
            data: &self.data,
            meta: self.meta,
            message: self.message,
        }
    }

    /// The JSON of a 200 answer, to keep and answer with again
    /// (`json_bytes`).
    pub fn to_bytes(&self) -> serde_json::Result<Bytes> {
        serde_json::to_vec(&self.body()).map(Bytes::from)
    }
}

/// A 200 answer of JSON already serialised (`Success::to_bytes`).
pub fn json_bytes(body: Bytes) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

impl<T: Serialize> IntoResponse for Success<T> {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

/// The envelope as documented in OpenAPI.
#[derive(ToSchema)]
pub struct Envelope<T> {
    pub success: bool,
    pub data: T,
}

/// A paginated envelope as documented in OpenAPI.
#[derive(ToSchema)]
pub struct PagedEnvelope<T> {
    pub success: bool,
    pub data: T,
    pub meta: PageMeta,
}

/// The error envelope as documented in OpenAPI.
#[derive(ToSchema)]
pub struct ErrorEnvelope {
    pub success: bool,
    pub error: ErrorBody,
}

#[derive(ToSchema)]
pub struct ErrorBody {
    /// One of the spec's error codes, e.g. `INVALID_TOKEN`.
    pub code: String,
    /// Korean by default; English with `Accept-Language: en`.
    pub message: String,
    #[schema(value_type = Object, nullable)]
    pub details: Option<serde_json::Value>,
}

/// The most items a list page holds, unless a route says fewer.
pub const MAX_PER_PAGE: u32 = 100;
/// The deepest page a list serves (an offset the database still skips
/// cheaply).
pub const MAX_PAGE: u32 = 100_000;

/// Page and page size from a query, checked against the spec's bounds.
pub fn check_page(
    page: Option<u32>,
    per_page: Option<u32>,
    max_per_page: u32,
) -> crate::error::ApiResult<Page> {
    let page = page.unwrap_or(1);
    let per_page = per_page.unwrap_or(20);
    if !(1..=MAX_PAGE).contains(&page) {
        return Err(crate::error::ApiError::invalid_param(
            "page",
            format!("must be between 1 and {MAX_PAGE}"),
        ));
    }
    if !(1..=max_per_page).contains(&per_page) {
        return Err(crate::error::ApiError::invalid_param(
            "per_page",
            format!("must be between 1 and {max_per_page}"),
        ));
    }
    Ok(Page { page, per_page })
}

impl PageMeta {
    /// The meta of `page` of a list of `total` rows.
    pub fn of(page: Page, total: i64) -> Self {
        Self {
            page: page.page,
            per_page: page.per_page,
            total,
        }
    }
}
