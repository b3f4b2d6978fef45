//! 갤러리 API: a user's images. The work is `gallery`.

use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiPath, ApiQuery, AuthUser, CurrentUser};
use super::page_cache::PageKey;
use super::response::{
    Envelope, ErrorEnvelope, PageMeta, PagedEnvelope, check_page, json_bytes, ok,
};
use crate::app::SharedState;
use crate::blobs::signed::FileLinks;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::gallery::GalleryError;
use crate::gallery::images::MAX_UPLOAD_BYTES;
use crate::provenance::Verification;
use crate::store::images::{ImageFilter, ImageRow, SortBy};

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(upload))
        .routes(routes!(get_image, delete_image))
        .routes(routes!(star, unstar))
        .routes(routes!(share, unshare))
        .routes(routes!(credentials))
        .routes(routes!(verify))
}

impl From<GalleryError> for ApiError {
    fn from(e: GalleryError) -> Self {
        match e {
            GalleryError::NotFound => ApiError::new(ErrorCode::NotFound),
            GalleryError::Invalid { field, reason } => ApiError::invalid_param(field, reason),
            GalleryError::Limit { what, max } => ApiError::with_details(
                ErrorCode::Conflict,
                json!({ "reason": format!("too_many_{what}"), "max": max }),
            ),
            GalleryError::StorageExceeded { used, quota } => ApiError::with_details(
                ErrorCode::StorageExceeded,
                json!({ "used_bytes": used, "quota_bytes": quota }),
            ),
            GalleryError::Store(e) => ApiError::internal(e),
            GalleryError::Internal(e) => ApiError::internal(e),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImageView {
    pub id: String,
    pub thumbnail_url: String,
    pub full_url: String,
    pub width: i64,
    pub height: i64,
    pub file_size: i64,
    pub is_starred: bool,
    pub created_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub metadata: Value,
}

impl ImageView {
    pub fn of(row: &ImageRow, links: &FileLinks) -> Self {
        Self::until(row, links, links.expiry_now())
    }

    /// With links that expire at `expires`.
    pub fn until(row: &ImageRow, links: &FileLinks, expires: i64) -> Self {
        ImageView {
            id: row.id.clone(),
            thumbnail_url: links.url_until(&row.thumb_key, expires),
            full_url: links.url_until(&row.blob_key, expires),
            width: row.width,
            height: row.height,
            file_size: row.file_size,
            is_starred: row.is_starred,
            created_at: row.created_at,
            metadata: serde_json::from_str(&row.metadata).unwrap_or(Value::Null),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BoardRef {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImageDetail {
    #[serde(flatten)]
    pub image: ImageView,
    pub mime_type: String,
    pub is_public: bool,
    pub share_url: Option<String>,
    pub share_expires_at: Option<DateTime<Utc>>,
    pub boards: Vec<BoardRef>,
    /// The job that made it; `null` for uploads.
    pub generation_job_id: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    pub page: Option<u32>,
    /// At most 50.
    pub per_page: Option<u32>,
    pub board_id: Option<String>,
    pub starred: Option<bool>,
    /// created_at (default) or file_size.
    pub sort: Option<String>,
    /// asc or desc (default).
    pub order: Option<String>,
}

/// 이미지 목록 조회 — newest first unless sorted otherwise.
#[utoipa::path(get, path = "/images", tag = "gallery", security(("bearer" = [])), params(ListQuery),
    responses(
        (status = 200, body = PagedEnvelope<Vec<ImageView>>),
        (status = 400, description = "INVALID_PARAMETERS", body = ErrorEnvelope),
        (status = 404, description = "NOT_FOUND: board_id is not your board", body = ErrorEnvelope),
    ))]
async fn list(
    State(state): State<SharedState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<impl axum::response::IntoResponse> {
    let page = check_page(q.page, q.per_page, MAX_PER_PAGE)?;
    let sort = match q.sort.as_deref() {
        None | Some("created_at") => SortBy::CreatedAt,
        Some("file_size") => SortBy::FileSize,
        Some(_) => return Err(ApiError::invalid_param("sort", "created_at or file_size")),
    };
    let descending = match q.order.as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(_) => return Err(ApiError::invalid_param("order", "asc or desc")),
    };
    let filter = ImageFilter {
        user_id: &user.id,
        board_id: q.board_id.as_deref(),
        starred: q.starred,
        sort,
        descending,
    };
    // Revision and link expiry are read before the query: a page listed
    // under them is true for them (`page_cache`).
    let revision = state.gallery.revision(&user.id);
    let expires = state.links.expiry_now();
    let key = PageKey {
        user_id: user.id.clone(),
        query: format!(
            "{}|{:?}|{sort:?}|{descending}|{}|{}",
            filter.board_id.unwrap_or(""),
            filter.starred,
            page.page,
            page.per_page
        ),
    };
    if let Some(body) = revision.and_then(|r| state.image_pages.get(&key, r, expires)) {
        return Ok(json_bytes(body));
    }
    let (rows, total) = state.gallery.list(&filter, page).await?;
    let views: Vec<ImageView> = rows
        .iter()
        .map(|r| ImageView::until(r, &state.links, expires))
        .collect();
    let body = ok(views)
        .meta(PageMeta::of(page, total))
        .to_bytes()
        .map_err(ApiError::internal)?;
    if let Some(revision) = revision {
        state.image_pages.put(key, revision, expires, body.clone());
    }
    Ok(json_bytes(body))
}

/// 이미지 상세 조회.
#[utoipa::path(get, path = "/images/{image_id}", tag = "gallery", security(("bearer" = [])),
    params(("image_id" = String, Path)),
    responses(
        (status = 200, body = Envelope<ImageDetail>),
        (status = 404, description = "NOT_FOUND (also another user's image)", body = ErrorEnvelope),
    ))]
async fn get_image(
    State(state): State<SharedState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<impl axum::response::IntoResponse> {
    let row = state.gallery.image(&user.id, &id).await?;
    let boards = state.gallery.boards_of(&row.id).await?;
    let live_share = row.live_share(Utc::now());
    Ok(ok(ImageDetail {
        image: ImageView::of(&row, &state.links),
        mime_type: row.mime_type.clone(),
        is_public: live_share.is_some(),
        share_url: live_share.map(|t| state.links.shared_url(t)),
        share_expires_at: live_share.and(row.share_expires_at),
        boards: boards
            .into_iter()
            .map(|(id, name)| BoardRef { id, name })
            .collect(),
        generation_job_id: row.job_id.clone(),
    }))
}

/// 이미지 삭제 — the row, its board links and its files; the storage is freed.
#[utoipa::path(delete, path = "/images/{image_id}", tag = "gallery", security(("bearer" = [])),
    params(("image_id" = String, Path)),
    responses(
        (status = 200, description = "`data: null`"),
        (status = 404, description = "NOT_FOUND", body = ErrorEnvelope),
    ))]
async fn delete_image(
    State(state): State<SharedState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<impl axum::response::IntoResponse> {
    state.gallery.delete(&user.id, &id).await?;
    Ok(ok(Value::Null))
}

/// 즐겨찾기 추가.
#[utoipa::path(post, path = "/images/{image_id}/star", tag = "gallery", security(("bearer" = [])),
    params(("image_id" = String, Path)),
    responses((status = 200, description = "`is_starred: true`"), (status = 404, body = ErrorEnvelope)))]
async fn star(
    State(state): State<SharedState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<impl axum::response::IntoResponse> {
    state.gallery.star(&user.id, &id, true).await?;
    Ok(ok(json!({ "id": id, "is_starred": true })))
}

/// 즐겨찾기 제거.
#[utoipa::path(delete, path = "/images/{image_id}/star", tag = "gallery", security(("bearer" = [])),
    params(("image_id" = String, Path)),
    responses((status = 200, description = "`is_starred: false`"), (status = 404, body = ErrorEnvelope)))]
async fn unstar(
    State(state): State<SharedState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<impl axum::response::IntoResponse> {
    state.gallery.star(&user.id, &id, false).await?;
    Ok(ok(json!({ "id": id, "is_starred": false })))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShareBody {
    /// The link ends after this many hours; unset: until revoked.
    pub expires_in_hours: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ShareView {
    pub share_url: String,
    pub share_token: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// 공유 링크 생성 — anyone with the link sees the image (`GET /shared/{token}`).
#[utoipa::path(post, path = "/images/{image_id}/share", tag = "gallery", security(("bearer" = [])),
    params(("image_id" = String, Path)), request_body = ShareBody,
    responses(
        (status = 200, body = Envelope<ShareView>),
        (status = 400, description = "INVALID_PARAMETERS: expires_in_hours", body = ErrorEnvelope),
        (status = 404, description = "NOT_FOUND", body = ErrorEnvelope),
    ))]
async fn share(
    State(state): State<SharedState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
    body: axum::body::Bytes,
) -> ApiResult<impl axum::response::IntoResponse> {
    let body: ShareBody = super::extract::optional_json(&body)?;
    let (token, expires_at) = state
        .gallery
        .share(&user.id, &id, body.expires_in_hours)
        .await?;
    Ok(ok(ShareView {
        share_url: state.links.shared_url(&token),
        share_token: token,
        expires_at,
    }))
}

/// 공유 해제 — the link stops working at once.
#[utoipa::path(delete, path = "/images/{image_id}/share", tag = "gallery", security(("bearer" = [])),
    params(("image_id" = String, Path)),
    responses((status = 200, description = "`is_public: false`"), (status = 404, body = ErrorEnvelope)))]
async fn unshare(
    State(state): State<SharedState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<impl axum::response::IntoResponse> {
    state.gallery.unshare(&user.id, &id).await?;
    Ok(ok(json!({ "id": id, "is_public": false })))
}

/// The most images a gallery page holds.
pub const MAX_PER_PAGE: u32 = 50;

/// Form of `POST /images/upload` (multipart/form-data).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// A PNG, JPEG or WebP image.
    #[schema(format = Binary, value_type = String)]
    file: Vec<u8>,
}

/// 이미지 업로드 — a gallery image (usable as `source_image`), stored as PNG.
#[utoipa::path(post, path = "/images/upload", tag = "gallery", security(("bearer" = [])),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, body = Envelope<ImageView>),
        (status = 400, description = "INVALID_PARAMETERS / VALIDATION_ERROR: not a PNG, JPEG or WebP, or unreadable", body = ErrorEnvelope),
        (status = 402, description = "STORAGE_EXCEEDED", body = ErrorEnvelope),
        (status = 413, description = "PAYLOAD_TOO_LARGE", body = ErrorEnvelope),
    ))]
async fn upload(
    State(state): State<SharedState>,
    user: CurrentUser,
    form: Multipart,
) -> ApiResult<impl axum::response::IntoResponse> {
    let file = file_field(form).await?;
    let row = state.gallery.upload(&user.id, &user.tier, file).await?;
    Ok(ok(ImageView::of(&row, &state.links)).status(StatusCode::CREATED))
}

/// The one `file` part of a multipart form, at most `MAX_UPLOAD_BYTES`.
async fn file_field(mut form: Multipart) -> ApiResult<Vec<u8>> {
    let bad_form = |reason: String| ApiError::validation(None, reason);
    let mut file = None;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| bad_form(e.body_text()))?
    {
        match field.name() {
            Some("file") => {
                let bytes = field.bytes().await.map_err(|e| bad_form(e.body_text()))?;
                if bytes.len() > MAX_UPLOAD_BYTES {
                    return Err(ApiError::with_details(
                        ErrorCode::PayloadTooLarge,
                        json!({ "max_bytes": MAX_UPLOAD_BYTES }),
                    ));
                }
                file = Some(bytes.to_vec());
            }
            other => return Err(ApiError::validation(other, "unknown form field")),
        }
    }
    file.ok_or_else(|| ApiError::validation(Some("file"), "missing"))
}

async fn check_credentials(state: &SharedState, bytes: Vec<u8>) -> ApiResult<Verification> {
    let mime = crate::provenance::mime_of(&bytes).ok_or_else(|| {
        ApiError::with_details(
            ErrorCode::InvalidParameters,
            json!({ "field": "file", "reason": "not a PNG, JPEG or WebP image" }),
        )
    })?;
    let creds = state.credentials.clone();
    // A manifest too broken to read (even one that makes the parser
    // panic) is a finding about the file, not a server fault.
    Ok(
        match tokio::task::spawn_blocking(move || creds.verify(&bytes, mime)).await {
            Ok(Ok(report)) => report,
            Ok(Err(e)) => Verification::unreadable(&format!("{e:#}")),
            Err(join) if join.is_panic() => {
                Verification::unreadable("the manifest could not be parsed")
            }
            Err(join) => return Err(ApiError::internal(join)),
        },
    )
}

/// 콘텐츠 자격 증명 — the C2PA manifest of one of your images, checked:
/// who signed it, that it declares AI generation, whether the file changed.
#[utoipa::path(get, path = "/images/{image_id}/credentials", tag = "gallery", security(("bearer" = [])),
    params(("image_id" = String, Path)),
    responses(
        (status = 200, body = Envelope<Verification>),
        (status = 404, description = "NOT_FOUND (also another user's image)", body = ErrorEnvelope),
    ))]
async fn credentials(
    State(state): State<SharedState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<impl axum::response::IntoResponse> {
    let row = state.gallery.image(&user.id, &id).await?;
    let bytes = state
        .blobs
        .get(&row.blob_key)
        .await
        .map_err(ApiError::internal)?;
    Ok(ok(check_credentials(&state, bytes).await?))
}

/// 콘텐츠 자격 증명 검증 — checks any image file (multipart `file`): its
/// C2PA manifest, signer, AI-generation declaration and whether the pixels
/// changed since signing.
#[utoipa::path(post, path = "/images/verify", tag = "gallery", security(("bearer" = [])),
    request_body(content = UploadForm, content_type = "multipart/form-data", description = "`file`: the image"),
    responses(
        (status = 200, body = Envelope<Verification>),
        (status = 400, description = "INVALID_PARAMETERS: not an image; VALIDATION_ERROR: bad form", body = ErrorEnvelope),
        (status = 413, description = "PAYLOAD_TOO_LARGE", body = ErrorEnvelope),
    ))]
async fn verify(
    State(state): State<SharedState>,
    _user: AuthUser,
    form: Multipart,
) -> ApiResult<impl axum::response::IntoResponse> {
    let file = file_field(form).await?;
    Ok(ok(check_credentials(&state, file).await?))
}
