//! 워크플로우 API: a user's workflows and the public ones. The work is
//! `workflows`; runs go through `POST /generate/workflow`.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiJson, ApiPath, ApiQuery, AuthUser, CurrentUser};
use super::response::{
    Envelope, ErrorEnvelope, MAX_PER_PAGE, PageMeta, PagedEnvelope, check_page, ok,
};
use crate::app::SharedState;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::workflows::{ImportReport, NewWorkflow, Workflow, WorkflowError, WorkflowPatch};

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_workflow, update, delete))
        .routes(routes!(copy))
        .routes(routes!(import_invokeai))
}

impl From<WorkflowError> for ApiError {
    fn from(e: WorkflowError) -> Self {
        match e {
            WorkflowError::NotFound => ApiError::new(ErrorCode::NotFound),
            WorkflowError::Invalid { field, reason } => ApiError::invalid_param(&field, reason),
            WorkflowError::Definition(d) => ApiError::with_details(
                ErrorCode::ValidationError,
                json!({ "node": d.node, "port": d.port, "reason": d.reason }),
            ),
            WorkflowError::TooMany { max } => ApiError::with_details(
                ErrorCode::Conflict,
                json!({ "reason": "too_many_workflows", "max": max }),
            ),
            WorkflowError::Generation(g) => g.into(),
            WorkflowError::Store(e) => ApiError::internal(e),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowView {
    pub id: String,
    pub name: String,
    pub description: String,
    /// `graph`.
    pub kind: String,
    /// What a run takes (`POST /generate/workflow` `inputs`).
    #[schema(value_type = Vec<Object>)]
    pub inputs: Value,
    /// The stored definition (plugins pinned to versions); detail only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub definition: Option<Value>,
    pub is_public: bool,
    /// Whether the caller owns it (and may edit or delete it).
    pub is_owner: bool,
    pub tags: Vec<String>,
    pub copied_from: Option<String>,
    pub definition_bytes: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// How an InvokeAI export was converted (the answer to an import only):
    /// each model reference and the catalogue model it now uses, and what
    /// was approximated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import: Option<ImportReport>,
}

impl WorkflowView {
    fn of(w: Workflow, viewer: &str, with_definition: bool) -> Self {
        let definition: Value = serde_json::from_str(&w.row.definition).unwrap_or(Value::Null);
        WorkflowView {
            inputs: definition
                .get("inputs")
                .cloned()
                .unwrap_or_else(|| json!([])),
            definition: with_definition.then_some(definition),
            is_owner: w.row.user_id == viewer,
            id: w.row.id,
            name: w.row.name,
            description: w.row.description,
            kind: w.row.kind,
            is_public: w.row.is_public,
            tags: w.tags,
            copied_from: w.row.copied_from,
            definition_bytes: w.row.definition_bytes,
            created_at: w.row.created_at,
            updated_at: w.row.updated_at,
            import: w.imported,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    pub page: Option<u32>,
    /// At most 100.
    pub per_page: Option<u32>,
    /// Only workflows with this tag.
    pub tag: Option<String>,
    /// `mine` for your own only; default your own and the public ones.
    pub scope: Option<String>,
}

/// 워크플로우 목록 — your own and the public ones, newest first.
#[utoipa::path(get, path = "/workflows", tag = "workflows", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = PagedEnvelope<Vec<WorkflowView>>), (status = 400, body = ErrorEnvelope)))]
async fn list(
    State(state): State<SharedState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<impl axum::response::IntoResponse> {
    let page = check_page(q.page, q.per_page, MAX_PER_PAGE)?;
    let mine_only = match q.scope.as_deref() {
        None | Some("all") => false,
        Some("mine") => true,
        Some(_) => return Err(ApiError::invalid_param("scope", "mine or all")),
    };
    let tag = q.tag.as_deref().map(str::trim).filter(|t| !t.is_empty());
    let (rows, total) = state
        .workflows
        .list(
            &user.id,
            mine_only,
            tag.map(str::to_lowercase).as_deref(),
            page,
        )
        .await?;
    let views: Vec<WorkflowView> = rows
        .into_iter()
        .map(|w| WorkflowView::of(w, &user.id, false))
        .collect();
    Ok(ok(views).meta(PageMeta::of(page, total)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkflow {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// A graph definition (`kind: "graph"`, `inputs`, `nodes`, `edges`).
    #[schema(value_type = Object)]
    pub definition: Value,
    #[serde(default)]
    pub is_public: bool,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// 워크플로우 생성 — the definition is checked (structure, plugins, models,
/// parameters); errors name the node and port.
#[utoipa::path(post, path = "/workflows", tag = "workflows", security(("bearer" = [])),
    request_body = CreateWorkflow,
    responses((status = 201, body = Envelope<WorkflowView>),
        (status = 400, description = "VALIDATION_ERROR (details: node, port, reason) / INVALID_PARAMETERS", body = ErrorEnvelope),
        (status = 402, description = "STORAGE_EXCEEDED", body = ErrorEnvelope),
        (status = 409, description = "too many workflows", body = ErrorEnvelope)))]
async fn create(
    State(state): State<SharedState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<CreateWorkflow>,
) -> ApiResult<impl axum::response::IntoResponse> {
    let w = state
        .workflows
        .create(
            &user,
            NewWorkflow {
                name: body.name,
                description: body.description,
                definition: body.definition,
                is_public: body.is_public,
                tags: body.tags,
            },
        )
        .await?;
    Ok(ok(WorkflowView::of(w, &user.id, true)).status(StatusCode::CREATED))
}

/// 워크플로우 상세 — yours, or a public one.
#[utoipa::path(get, path = "/workflows/{workflow_id}", tag = "workflows", security(("bearer" = [])),
    params(("workflow_id" = String, Path)),
    responses((status = 200, body = Envelope<WorkflowView>), (status = 404, body = ErrorEnvelope)))]
async fn get_workflow(
    State(state): State<SharedState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<impl axum::response::IntoResponse> {
    let w = state.workflows.get(&user.id, &id).await?;
    Ok(ok(WorkflowView::of(w, &user.id, true)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWorkflow {
    pub name: Option<String>,
    pub description: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub definition: Option<Value>,
    pub is_public: Option<bool>,
    pub tags: Option<Vec<String>>,
}

/// 워크플로우 수정 — the owner only (others get NOT_FOUND).
#[utoipa::path(patch, path = "/workflows/{workflow_id}", tag = "workflows", security(("bearer" = [])),
    params(("workflow_id" = String, Path)), request_body = UpdateWorkflow,
    responses((status = 200, body = Envelope<WorkflowView>), (status = 400, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope)))]
async fn update(
    State(state): State<SharedState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateWorkflow>,
) -> ApiResult<impl axum::response::IntoResponse> {
    let w = state
        .workflows
        .update(
            &user,
            &id,
            WorkflowPatch {
                name: body.name,
                description: body.description,
                definition: body.definition,
                is_public: body.is_public,
                tags: body.tags,
            },
        )
        .await?;
    Ok(ok(WorkflowView::of(w, &user.id, true)))
}

/// 워크플로우 삭제 — the owner only; its storage is freed.
#[utoipa::path(delete, path = "/workflows/{workflow_id}", tag = "workflows", security(("bearer" = [])),
    params(("workflow_id" = String, Path)),
    responses((status = 200, description = "`data: null`"), (status = 404, body = ErrorEnvelope)))]
async fn delete(
    State(state): State<SharedState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<impl axum::response::IntoResponse> {
    state.workflows.delete(&user.id, &id).await?;
    Ok(ok(Value::Null))
}

/// 워크플로우 복사 — a public workflow (or your own) into a private one of
/// yours.
#[utoipa::path(post, path = "/workflows/{workflow_id}/copy", tag = "workflows", security(("bearer" = [])),
    params(("workflow_id" = String, Path)),
    responses((status = 201, body = Envelope<WorkflowView>),
        (status = 402, description = "STORAGE_EXCEEDED", body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
        (status = 409, description = "CONFLICT: too many workflows", body = ErrorEnvelope)))]
async fn copy(
    State(state): State<SharedState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<impl axum::response::IntoResponse> {
    let w = state.workflows.copy(&user, &id).await?;
    Ok(ok(WorkflowView::of(w, &user.id, true)).status(StatusCode::CREATED))
}

/// InvokeAI 워크플로우 가져오기 — the body is a workflow exported from
/// InvokeAI's workflow library; it becomes a private graph workflow. The
/// answer's `import` shows which catalogue model each model reference now
/// uses (by hash, name, or the loader's base) and what was approximated.
#[utoipa::path(post, path = "/workflows/import/invokeai", tag = "workflows", security(("bearer" = [])),
    request_body(content = Object, description = "An InvokeAI workflow export"),
    responses((status = 201, body = Envelope<WorkflowView>),
        (status = 400, description = "VALIDATION_ERROR: node types it cannot map are named", body = ErrorEnvelope)))]
async fn import_invokeai(
    State(state): State<SharedState>,
    user: CurrentUser,
    ApiJson(export): ApiJson<Value>,
) -> ApiResult<impl axum::response::IntoResponse> {
    let w = state.workflows.import_invokeai(&user, export).await?;
    Ok(ok(WorkflowView::of(w, &user.id, true)).status(StatusCode::CREATED))
}
