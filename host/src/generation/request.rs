//! The request bodies of `POST /generate/*`, as the spec names their
//! fields. Everything optional has the default a user of the studio
//! expects; unknown fields are refused.

use serde::Deserialize;
use utoipa::ToSchema;

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoraRequest {
    pub name: String,
    pub weight: f32,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ControlNetRequest {
    pub model: String,
    /// base64 image or an image id of yours.
    pub image: String,
    #[serde(default = "one")]
    pub weight: f32,
}

/// A published node plugin to run inside the job.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeRequest {
    pub name: String,
    /// Default: the newest version that is not yanked.
    pub version: Option<String>,
    /// The node's parameters (a JSON object).
    #[serde(default)]
    pub parameters: Option<serde_json::Value>,
}

fn one() -> f32 {
    1.0
}

/// Fields of `Common`, for the unknown-field check (serde cannot refuse
/// unknown fields next to `flatten`).
pub const COMMON_FIELDS: &[&str] = &[
    "negative_prompt",
    "steps",
    "cfg_scale",
    "sampler",
    "seed",
    "batch_size",
    "loras",
    "save_to_board",
    "pre_nodes",
    "post_nodes",
];
pub const TEXT_TO_IMAGE_FIELDS: &[&str] = &["prompt", "model", "width", "height", "controlnet"];
pub const IMAGE_TO_IMAGE_FIELDS: &[&str] = &[
    "prompt",
    "model",
    "source_image",
    "strength",
    "width",
    "height",
];
pub const INPAINT_FIELDS: &[&str] = &["prompt", "model", "source_image", "mask_image"];

/// Fields every diffusion request shares.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct Common {
    pub negative_prompt: Option<String>,
    pub steps: Option<u32>,
    pub cfg_scale: Option<f32>,
    pub sampler: Option<String>,
    /// -1 (default): a random seed, recorded with the job.
    pub seed: Option<i64>,
    pub batch_size: Option<u32>,
    pub loras: Option<Vec<LoraRequest>>,
    pub save_to_board: Option<String>,
    pub pre_nodes: Option<Vec<NodeRequest>>,
    pub post_nodes: Option<Vec<NodeRequest>>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct TextToImageRequest {
    pub prompt: String,
    pub model: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub controlnet: Option<ControlNetRequest>,
    #[serde(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ImageToImageRequest {
    pub prompt: String,
    pub model: String,
    /// base64 image or an image id of yours.
    pub source_image: String,
    /// 0..1, default 0.75.
    pub strength: Option<f32>,
    /// Output size; default the source's (rounded down to a multiple of 8).
    pub width: Option<u32>,
    pub height: Option<u32>,
    #[serde(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpscaleRequest {
    /// base64 image or an image id of yours.
    pub image: String,
    /// 2 (default), 3 or 4.
    pub scale: Option<u32>,
    /// An upscaler of the catalogue; default `real-esrgan`.
    pub model: Option<String>,
    pub save_to_board: Option<String>,
    pub post_nodes: Option<Vec<NodeRequest>>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct InpaintRequest {
    pub prompt: String,
    pub model: String,
    pub source_image: String,
    /// White repaints, black keeps; the source's size.
    pub mask_image: String,
    #[serde(flatten)]
    pub common: Common,
}
