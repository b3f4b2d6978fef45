//! 스토리지 API: what a user stores against their plan's quota.

use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::CurrentUser;
use super::response::{Envelope, ok};
use crate::app::SharedState;
use crate::error::ApiResult;
use crate::gallery::storage::StorageUsage;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new().routes(routes!(usage))
}

/// 스토리지 사용량 — the same `used_bytes` as `/users/me.storage_used`.
#[utoipa::path(get, path = "/storage/usage", tag = "storage", security(("bearer" = [])),
    responses((status = 200, body = Envelope<StorageUsage>)))]
async fn usage(
    State(state): State<SharedState>,
    user: CurrentUser,
) -> ApiResult<impl axum::response::IntoResponse> {
    Ok(ok(state.gallery.usage(&user.id, &user.tier).await?))
}
