//! What the adapters of GPU servers (`invokeai`, `comfyui`) share: the
//! server's base URL, the models this worker serves through it, an HTTP
//! client with timeouts, and the image transfers both do the same way.

use std::time::Duration;

use image::RgbaImage;

use super::InferenceError;
use crate::imaging::{self, encode_png};
use crate::models::{Model, ModelCatalogue};

/// Implements `InferenceBackend` for a GPU server adapter: a type with an
/// inherent `async fn run_op(&self, Operation, ProgressSink)` and
/// `async fn models_of(&self, &ModelCatalogue) -> Result<Vec<String>, _>`.
macro_rules! gpu_server_backend {
    ($adapter:ty, $name:expr) => {
        impl $crate::inference::InferenceBackend for $adapter {
            fn name(&self) -> &'static str {
                $name
            }

            fn discover<'a>(
                &'a self,
                catalogue: &'a $crate::models::ModelCatalogue,
            ) -> futures::future::BoxFuture<
                'a,
                Result<Option<Vec<String>>, $crate::inference::InferenceError>,
            > {
                Box::pin(async move { self.models_of(catalogue).await.map(Some) })
            }

            fn run<'a>(
                &'a self,
                op: $crate::inference::Operation,
                progress: $crate::inference::ProgressSink,
            ) -> futures::future::BoxFuture<
                'a,
                Result<Vec<image::RgbaImage>, $crate::inference::InferenceError>,
            > {
                Box::pin(self.run_op(op, progress))
            }
        }
    };
}
pub(crate) use gpu_server_backend;

pub struct GpuServer {
    base: String,
    pub http: reqwest::Client,
}

/// The server could not be reached or answered at the transport level.
pub fn unavailable(e: impl std::fmt::Display) -> InferenceError {
    InferenceError::Unavailable(e.to_string())
}

impl GpuServer {
    pub fn new(base: &str) -> anyhow::Result<Self> {
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .timeout(Duration::from_secs(120))
                .build()?,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The catalogue names a server has, from what it lists: main models,
    /// LoRAs and ControlNets whose name or hash `has` recognises, and every
    /// upscaler (both
    /// adapters upscale by resampling, without weights).
    pub fn matched(catalogue: &ModelCatalogue, has: impl Fn(&Model) -> bool) -> Vec<String> {
        catalogue
            .all()
            .iter()
            .filter(|m| match m.kind.as_str() {
                "main" | "lora" | "controlnet" => has(m),
                "upscaler" => true,
                _ => false,
            })
            .map(|m| m.name.clone())
            .collect()
    }

    /// `img` as a PNG file part named `name`, for a multipart upload.
    pub fn png_part(
        img: &RgbaImage,
        name: String,
    ) -> Result<reqwest::multipart::Part, InferenceError> {
        let png = encode_png(img).map_err(InferenceError::Failed)?;
        reqwest::multipart::Part::bytes(png)
            .file_name(name)
            .mime_str("image/png")
            .map_err(unavailable)
    }

    /// Sends `req` and decodes the image it answers.
    pub async fn fetch_image(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<RgbaImage, InferenceError> {
        let bytes = req
            .send()
            .await
            .map_err(unavailable)?
            .error_for_status()
            .map_err(unavailable)?
            .bytes()
            .await
            .map_err(unavailable)?;
        imaging::decode(&bytes).map_err(InferenceError::Failed)
    }
}
