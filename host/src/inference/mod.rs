//! GPU inference behind one trait, chosen per worker: the built-in
//! `cpu-reference` backend, and adapters for InvokeAI's and ComfyUI's HTTP
//! APIs.

pub mod comfyui;
pub mod cpu_reference;
pub mod gpu_server;
pub mod invokeai;

use std::sync::Arc;

use futures::future::BoxFuture;
use image::RgbaImage;
use serde::{Deserialize, Serialize};

use crate::models::ModelCatalogue;

/// Samplers every backend maps.
pub const SAMPLERS: &[&str] = &[
    "euler",
    "euler_a",
    "heun",
    "dpm_2",
    "dpm_2_a",
    "lms",
    "dpmpp_2m",
    "dpmpp_2m_karras",
    "dpmpp_sde",
    "ddim",
    "unipc",
];

/// Generation parameters a backend needs (also the core of a job's
/// specification, `queue::job::JobSpec`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Generation {
    pub prompt: String,
    pub negative_prompt: String,
    pub model: String,
    pub width: u32,
    pub height: u32,
    pub steps: u32,
    pub cfg_scale: f32,
    pub sampler: String,
    /// Already resolved (never -1 here).
    pub seed: u64,
    pub batch_size: u32,
    /// LoRAs to apply, in order, each by the catalogue's name with its
    /// weight (checked against the model's base and the user's tier at
    /// enqueue).
    #[serde(default)]
    pub loras: Vec<Lora>,
}

/// One LoRA of a generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lora {
    pub name: String,
    pub weight: f32,
}

/// A weight as a backend's JSON takes it: the decimal the user wrote
/// (0.8, not the f32's 0.800000011920929).
pub fn decimal(weight: f32) -> f64 {
    (f64::from(weight) * 1e4).round() / 1e4
}

/// A ControlNet guiding a text-to-image generation: the catalogue's
/// model, the guide image (any size: it is resized to the output), and
/// how strongly it guides (0–2).
#[derive(Debug, Clone)]
pub struct Control {
    pub model: String,
    pub image: RgbaImage,
    pub weight: f32,
}

/// One unit of GPU work.
#[derive(Debug, Clone)]
pub enum Operation {
    TextToImage {
        generation: Generation,
        control: Option<Control>,
    },
    /// `strength` 0..1: how far the result may move away from `source`.
    ImageToImage {
        generation: Generation,
        source: RgbaImage,
        strength: f32,
    },
    Upscale {
        source: RgbaImage,
        scale: u32,
    },
    /// Repaints where `mask` is white; keeps `source` where it is black.
    Inpaint {
        generation: Generation,
        source: RgbaImage,
        mask: RgbaImage,
    },
}

/// Step progress of a running operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub step: u32,
    pub total_steps: u32,
}

/// Receives step progress; answering false asks the backend to stop (the
/// job was cancelled or its lease lost).
pub type ProgressSink = Arc<dyn Fn(Progress) -> bool + Send + Sync>;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InferenceError {
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("model {0} is not served by this backend")]
    UnknownModel(String),
    #[error("backend failed: {0}")]
    Failed(String),
    #[error("stopped: the job was cancelled")]
    Cancelled,
    #[error("backend unreachable: {0}")]
    Unavailable(String),
}

/// A GPU backend: runs one operation, reporting step progress.
pub trait InferenceBackend: Send + Sync {
    /// What the backend is, as shown in image metadata.
    fn name(&self) -> &'static str;
    /// The catalogue's models this backend really has (its own model list,
    /// matched by name or hash); `None`: every model (it needs no weights).
    fn discover<'a>(
        &'a self,
        catalogue: &'a ModelCatalogue,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, InferenceError>>;
    fn run<'a>(
        &'a self,
        op: Operation,
        progress: ProgressSink,
    ) -> BoxFuture<'a, Result<Vec<RgbaImage>, InferenceError>>;
}

/// Whether `model` is in `list`; no list means every model.
pub fn listed(list: Option<&[String]>, model: &str) -> bool {
    list.is_none_or(|m| m.iter().any(|x| x == model))
}

/// The backend a worker was configured with.
pub fn build(kind: &str, url: Option<&str>) -> anyhow::Result<Arc<dyn InferenceBackend>> {
    let need_url = || {
        url.map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("backend {kind} needs a base URL (worker_backend_url)"))
    };
    Ok(match kind {
        cpu_reference::NAME => Arc::new(cpu_reference::CpuReference),
        invokeai::NAME => Arc::new(invokeai::InvokeAi::new(&need_url()?)?),
        comfyui::NAME => Arc::new(comfyui::ComfyUi::new(&need_url()?)?),
        other => anyhow::bail!("unknown backend {other} (cpu-reference, invokeai, comfyui)"),
    })
}
