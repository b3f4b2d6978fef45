//! 모델 API: the model catalogue with availability for the caller's tier.

use axum::extract::State;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiQuery, CurrentUser};
use super::response::{Envelope, ErrorEnvelope, ok};
use crate::app::SharedState;
use crate::error::{ApiError, ApiResult};
use crate::models::{MODEL_BASES, MODEL_TYPES};

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new().routes(routes!(list_models))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ModelsQuery {
    /// main, vae, lora, controlnet, upscaler
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<String>,
    /// sd-1, sd-2, sdxl, flux
    pub base: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelView {
    pub id: String,
    pub name: String,
    pub display_name: String,
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    pub kind: String,
    pub base: Option<String>,
    pub description: String,
    pub thumbnail_url: Option<String>,
    pub min_tier: String,
    /// Whether the caller's tier may use it.
    pub is_available: bool,
    /// For models a job runs on (`main`, `upscaler`): whether a live
    /// worker has it now, so a job for it would be queued.
    pub can_run_now: Option<bool>,
}

fn one_of(field: &str, value: Option<&str>, allowed: &[&str]) -> ApiResult<()> {
    match value {
        Some(v) if !allowed.contains(&v) => Err(ApiError::invalid_param(
            field,
            format!("one of {}", allowed.join(", ")),
        )),
        _ => Ok(()),
    }
}

/// 사용 가능한 모델 목록
#[utoipa::path(get, path = "/models", tag = "models", security(("bearer" = [])), params(ModelsQuery),
    responses((status = 200, body = Envelope<Vec<ModelView>>), (status = 400, description = "INVALID_PARAMETERS", body = ErrorEnvelope)))]
async fn list_models(
    State(state): State<SharedState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<ModelsQuery>,
) -> ApiResult<impl IntoResponse> {
    one_of("type", q.kind.as_deref(), &MODEL_TYPES)?;
    one_of("base", q.base.as_deref(), &MODEL_BASES)?;
    let mut views = Vec::new();
    for m in state.models.filter(q.kind.as_deref(), q.base.as_deref()) {
        // Whether a live worker has the model: a checkpoint or upscaler to
        // run, a LoRA or ControlNet to apply. VAEs are not asked for.
        let can_run_now = match m.kind.as_str() {
            "main" | "upscaler" | "lora" | "controlnet" => {
                Some(state.queue.is_served(&m.name).await?)
            }
            _ => None,
        };
        views.push(ModelView {
            can_run_now,
            is_available: state.models.allows(&state.plans, &user.tier, m),
            id: m.id.clone(),
            name: m.name.clone(),
            display_name: m.display_name.clone(),
            kind: m.kind.clone(),
            base: m.base.clone(),
            description: m.description.clone(),
            thumbnail_url: m.thumbnail_url.clone(),
            min_tier: m.min_tier.clone(),
        });
    }
    Ok(ok(views))
}
