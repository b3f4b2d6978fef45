//! 보드 API: named collections of a user's images. The work is `gallery`.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiJson, ApiPath, ApiQuery, AuthUser};
use super::response::{
    Envelope, ErrorEnvelope, MAX_PER_PAGE, PageMeta, PagedEnvelope, check_page, ok,
};
use crate::app::SharedState;
use crate::error::ApiResult;
use crate::store::images::{BoardRow, BoardSummary};

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(update, delete))
        .routes(routes!(add_images))
        .routes(routes!(remove_image))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BoardView {
    pub id: String,
    pub name: String,
    pub description: String,
    pub image_count: i64,
    /// The thumbnail of the image added last; `null` while empty.
    pub cover_thumbnail_url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl BoardView {
    fn of(s: BoardSummary, state: &SharedState) -> Self {
        BoardView {
            image_count: s.image_count,
            cover_thumbnail_url: s.cover_thumb_key.map(|k| state.links.url(&k)),
            ..Self::new(s.board)
        }
    }

    fn new(b: BoardRow) -> Self {
        BoardView {
            id: b.id,
            name: b.name,
            description: b.description,
            image_count: 0,
            cover_thumbnail_url: None,
            created_at: b.created_at,
            updated_at: b.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    pub page: Option<u32>,
    pub per_page: Option<u32>,
}

/// 보드 목록 — oldest first, with image counts and covers.
#[utoipa::path(get, path = "/boards", tag = "boards", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = PagedEnvelope<Vec<BoardView>>), (status = 400, body = ErrorEnvelope)))]
async fn list(
    State(state): State<SharedState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<impl axum::response::IntoResponse> {
    let page = check_page(q.page, q.per_page, MAX_PER_PAGE)?;
    let (rows, total) = state.gallery.boards(&user.id, page).await?;
    let views: Vec<BoardView> = rows.into_iter().map(|b| BoardView::of(b, &state)).collect();
    Ok(ok(views).meta(PageMeta::of(page, total)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    pub name: String,
    pub description: Option<String>,
}

/// 보드 생성.
#[utoipa::path(post, path = "/boards", tag = "boards", security(("bearer" = [])), request_body = CreateBody,
    responses((status = 201, body = Envelope<BoardView>), (status = 400, description = "INVALID_PARAMETERS: name or description", body = ErrorEnvelope), (status = 409, description = "CONFLICT: too_many_boards (500)", body = ErrorEnvelope)))]
async fn create(
    State(state): State<SharedState>,
    user: AuthUser,
    ApiJson(body): ApiJson<CreateBody>,
) -> ApiResult<impl axum::response::IntoResponse> {
    let board = state
        .gallery
        .create_board(&user.id, &body.name, body.description.as_deref())
        .await?;
    Ok(ok(BoardView::new(board)).status(StatusCode::CREATED))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    pub name: Option<String>,
    pub description: Option<String>,
}

/// 보드 수정.
#[utoipa::path(patch, path = "/boards/{board_id}", tag = "boards", security(("bearer" = [])),
    params(("board_id" = String, Path)), request_body = UpdateBody,
    responses((status = 200, body = Envelope<BoardView>), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn update(
    State(state): State<SharedState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateBody>,
) -> ApiResult<impl axum::response::IntoResponse> {
    let board = state
        .gallery
        .update_board(
            &user.id,
            &id,
            body.name.as_deref(),
            body.description.as_deref(),
        )
        .await?;
    Ok(ok(BoardView::of(board, &state)))
}

/// 보드 삭제 — its images stay in the gallery.
#[utoipa::path(delete, path = "/boards/{board_id}", tag = "boards", security(("bearer" = [])),
    params(("board_id" = String, Path)),
    responses((status = 200, description = "`data: null`"), (status = 404, body = ErrorEnvelope)))]
async fn delete(
    State(state): State<SharedState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<impl axum::response::IntoResponse> {
    state.gallery.delete_board(&user.id, &id).await?;
    Ok(ok(Value::Null))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddBody {
    pub image_ids: Vec<String>,
}

/// 보드에 이미지 추가 — all or none; an id that is not your image refuses the whole call (INVALID_PARAMETERS).
#[utoipa::path(post, path = "/boards/{board_id}/images", tag = "boards", security(("bearer" = [])),
    params(("board_id" = String, Path)), request_body = AddBody,
    responses((status = 200, description = "`added`: how many ids"),
        (status = 400, description = "INVALID_PARAMETERS: image_ids not all images of yours (nothing is added)", body = ErrorEnvelope),
        (status = 404, description = "NOT_FOUND: no such board of yours", body = ErrorEnvelope)))]
async fn add_images(
    State(state): State<SharedState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AddBody>,
) -> ApiResult<impl axum::response::IntoResponse> {
    state
        .gallery
        .add_to_board(&user.id, &id, &body.image_ids)
        .await?;
    Ok(ok(json!({ "board_id": id, "added": body.image_ids.len() })))
}

/// 보드에서 이미지 제거 — the image stays in the gallery.
#[utoipa::path(delete, path = "/boards/{board_id}/images/{image_id}", tag = "boards", security(("bearer" = [])),
    params(("board_id" = String, Path), ("image_id" = String, Path)),
    responses((status = 200, description = "`data: null`"), (status = 404, body = ErrorEnvelope)))]
async fn remove_image(
    State(state): State<SharedState>,
    user: AuthUser,
    ApiPath((id, image_id)): ApiPath<(String, String)>,
) -> ApiResult<impl axum::response::IntoResponse> {
    state
        .gallery
        .remove_from_board(&user.id, &id, &image_id)
        .await?;
    Ok(ok(Value::Null))
}
