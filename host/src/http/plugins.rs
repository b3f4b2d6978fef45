//! 플러그인 API: publish, list, look up and yank WASM plugins.

use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiPath, ApiQuery, AuthUser, CurrentUser};
use super::response::{
    Envelope, ErrorEnvelope, MAX_PER_PAGE, PageMeta, PagedEnvelope, check_page, ok,
};
use crate::app::SharedState;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::plugins::PluginKind;
use crate::plugins::registry::{Manifest, RegistryError};
use crate::store::plugins::{PluginRow, VersionRow};

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(publish, list))
        .routes(routes!(get_plugin))
        .routes(routes!(list_versions))
        .routes(routes!(yank))
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Invalid { field, reason } => ApiError::validation(Some(field), reason),
            RegistryError::TooLarge { max } => {
                ApiError::with_details(ErrorCode::PayloadTooLarge, json!({ "max_bytes": max }))
            }
            RegistryError::Component(e) => ApiError::with_details(
                ErrorCode::ValidationError,
                json!({ "field": "component", "reason": e.cause(), "message": e.to_string() }),
            ),
            RegistryError::Mismatch(m) => ApiError::with_details(
                ErrorCode::ValidationError,
                json!({ "field": "manifest", "reason": "manifest_mismatch", "message": m }),
            ),
            RegistryError::NameTaken => {
                ApiError::with_details(ErrorCode::Conflict, json!({ "reason": "name_taken" }))
            }
            RegistryError::VersionExists => {
                ApiError::with_details(ErrorCode::Conflict, json!({ "reason": "version_exists" }))
            }
            RegistryError::NotFound => ApiError::new(ErrorCode::NotFound),
            RegistryError::Forbidden => ApiError::new(ErrorCode::Forbidden),
            RegistryError::Yanked => {
                ApiError::with_details(ErrorCode::Conflict, json!({ "reason": "yanked" }))
            }
            RegistryError::RateLimited { retry_after_secs } => ApiError::with_details(
                ErrorCode::RateLimited,
                json!({ "reason": "too many publishes", "retry_after": retry_after_secs }),
            )
            .retry_after(retry_after_secs),
            RegistryError::Internal(e) => ApiError::internal(e),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PluginView {
    pub name: String,
    /// node, workflow or billing
    pub kind: String,
    pub description: String,
    /// public or private
    pub visibility: String,
    /// Shown to the publisher only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    pub is_owner: bool,
    /// Newest version that is not yanked.
    pub latest_version: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl PluginView {
    fn of(p: PluginRow, viewer: &str) -> Self {
        let is_owner = p.owner_id == viewer;
        PluginView {
            is_owner,
            name: p.name,
            kind: p.kind,
            description: p.description,
            visibility: p.visibility,
            owner_id: is_owner.then_some(p.owner_id),
            latest_version: p.latest_version,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionView {
    pub version: String,
    pub sha256: String,
    pub size_bytes: i64,
    /// The `pingvas:plugin` ABI the component targets.
    pub abi_version: String,
    /// pre or post, for nodes.
    pub node_kind: Option<String>,
    /// JSON Schema of the node's parameters.
    #[schema(value_type = Object, nullable)]
    pub parameters_schema: Option<serde_json::Value>,
    pub yanked: bool,
    pub yanked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl From<VersionRow> for VersionView {
    fn from(v: VersionRow) -> Self {
        VersionView {
            parameters_schema: v
                .parameters_schema
                .and_then(|s| serde_json::from_str(&s).ok()),
            yanked: v.yanked_at.is_some(),
            version: v.version,
            sha256: v.sha256,
            size_bytes: v.size_bytes,
            abi_version: v.abi_version,
            node_kind: v.node_kind,
            yanked_at: v.yanked_at,
            created_at: v.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PublishedPlugin {
    pub plugin: PluginView,
    pub version: VersionView,
}

/// Form of `POST /plugins` (multipart/form-data).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PublishForm {
    /// JSON: `{"name","version","kind","description","visibility"}`.
    manifest: String,
    /// The component (`.wasm`).
    #[schema(format = Binary, value_type = String)]
    component: Vec<u8>,
}

/// 플러그인 게시 — upload a component with its manifest.
#[utoipa::path(post, path = "/plugins", tag = "plugins", security(("bearer" = [])),
    request_body(content = PublishForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, body = Envelope<PublishedPlugin>),
        (status = 400, description = "VALIDATION_ERROR: bad manifest, not a component, wrong world, describe() failed or disagrees", body = ErrorEnvelope),
        (status = 409, description = "CONFLICT: version exists or name taken", body = ErrorEnvelope),
        (status = 413, description = "PAYLOAD_TOO_LARGE", body = ErrorEnvelope),
    ))]
async fn publish(
    State(state): State<SharedState>,
    user: CurrentUser,
    mut form: Multipart,
) -> ApiResult<impl IntoResponse> {
    let bad_form = |reason: String| ApiError::validation(None, reason);
    let mut manifest: Option<Manifest> = None;
    let mut component: Option<Vec<u8>> = None;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| bad_form(e.body_text()))?
    {
        match field.name() {
            Some("manifest") => {
                let text = field.text().await.map_err(|e| bad_form(e.body_text()))?;
                manifest = Some(
                    serde_json::from_str(&text)
                        .map_err(|e| ApiError::validation(Some("manifest"), e.to_string()))?,
                );
            }
            Some("component") => {
                let bytes = field.bytes().await.map_err(|e| bad_form(e.body_text()))?;
                if bytes.len() > state.registry.max_bytes {
                    return Err(RegistryError::TooLarge {
                        max: state.registry.max_bytes,
                    }
                    .into());
                }
                component = Some(bytes.to_vec());
            }
            other => return Err(ApiError::validation(other, "unknown form field")),
        }
    }
    let manifest = manifest.ok_or_else(|| ApiError::validation(Some("manifest"), "missing"))?;
    let component = component.ok_or_else(|| ApiError::validation(Some("component"), "missing"))?;
    let (plugin, version) = state.registry.publish(&user, &manifest, &component).await?;
    let body = PublishedPlugin {
        plugin: PluginView::of(plugin, &user.id),
        version: version.into(),
    };
    Ok(ok(body).status(StatusCode::CREATED))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// node, workflow or billing
    pub kind: Option<String>,
    pub page: Option<u32>,
    /// 1–100, default 20.
    pub per_page: Option<u32>,
}

/// 플러그인 목록 — public plugins and your own.
#[utoipa::path(get, path = "/plugins", tag = "plugins", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = PagedEnvelope<Vec<PluginView>>)))]
async fn list(
    State(state): State<SharedState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<impl IntoResponse> {
    let page = check_page(q.page, q.per_page, MAX_PER_PAGE)?;
    let kind = match q.kind.as_deref() {
        None | Some("") => None,
        Some(k) => Some(
            PluginKind::parse(k)
                .ok_or_else(|| ApiError::invalid_param("kind", "node, workflow or billing"))?,
        ),
    };
    let (rows, total) = state.registry.list(&user.id, kind, page).await?;
    let views: Vec<PluginView> = rows
        .into_iter()
        .map(|p| PluginView::of(p, &user.id))
        .collect();
    Ok(ok(views).meta(PageMeta::of(page, total)))
}

/// 플러그인 상세
#[utoipa::path(get, path = "/plugins/{name}", tag = "plugins", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = Envelope<PluginView>), (status = 404, body = ErrorEnvelope)))]
async fn get_plugin(
    State(state): State<SharedState>,
    user: AuthUser,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<impl IntoResponse> {
    let plugin = state.registry.get(&user.id, &name).await?;
    Ok(ok(PluginView::of(plugin, &user.id)))
}

/// 플러그인 버전 목록
#[utoipa::path(get, path = "/plugins/{name}/versions", tag = "plugins", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = Envelope<Vec<VersionView>>), (status = 404, body = ErrorEnvelope)))]
async fn list_versions(
    State(state): State<SharedState>,
    user: AuthUser,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<impl IntoResponse> {
    let (_, versions) = state.registry.versions(&user.id, &name).await?;
    Ok(ok(versions
        .into_iter()
        .map(VersionView::from)
        .collect::<Vec<_>>()))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct YankResponse {
    pub name: String,
    pub version: String,
    pub yanked: bool,
}

/// 버전 철회 (yank) — running jobs keep it; new jobs cannot pick it.
#[utoipa::path(delete, path = "/plugins/{name}/versions/{version}", tag = "plugins", security(("bearer" = [])),
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = Envelope<YankResponse>), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn yank(
    State(state): State<SharedState>,
    user: AuthUser,
    ApiPath((name, version)): ApiPath<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    state.registry.yank(&user.id, &name, &version).await?;
    Ok(ok(YankResponse {
        name,
        version,
        yanked: true,
    }))
}
