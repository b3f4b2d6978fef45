//! GPU inference behind one trait, chosen per worker. So far the built-in
//! `cpu-reference` backend; the `invokeai` and `comfyui` adapters come with
//! the queue issue.

pub mod cpu_reference;

use std::sync::Arc;

use futures::future::BoxFuture;
use image::RgbaImage;

/// Generation parameters a backend needs.
#[derive(Debug, Clone, PartialEq)]
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
}

/// One unit of GPU work.
#[derive(Debug, Clone)]
pub enum Operation {
    TextToImage(Generation),
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

pub type ProgressSink = Arc<dyn Fn(Progress) + Send + Sync>;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InferenceError {
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("model {0} is not served by this backend")]
    UnknownModel(String),
    #[error("backend failed: {0}")]
    Failed(String),
}

/// A GPU backend: runs one operation, reporting step progress.
pub trait InferenceBackend: Send + Sync {
    /// What the backend is, as shown in image metadata.
    fn name(&self) -> &'static str;
    /// Models this backend serves (a worker advertises them).
    fn serves(&self, model: &str) -> bool;
    fn run<'a>(
        &'a self,
        op: Operation,
        progress: ProgressSink,
    ) -> BoxFuture<'a, Result<Vec<RgbaImage>, InferenceError>>;
}
