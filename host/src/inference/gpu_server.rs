//! What the adapters of GPU servers (`invokeai`, `comfyui`) share: the
//! server's base URL, the models this worker serves through it, an HTTP
//! client with timeouts, and the image transfers both do the same way.

use std::time::Duration;

use image::RgbaImage;

use super::InferenceError;
use crate::imaging::{self, encode_png};

/// Implements `InferenceBackend` for a GPU server adapter: a type with a
/// `server: GpuServer` field and an inherent
/// `async fn run_op(&self, Operation, ProgressSink)`.
macro_rules! gpu_server_backend {
    ($adapter:ty, $name:expr) => {
        impl $crate::inference::InferenceBackend for $adapter {
            fn name(&self) -> &'static str {
                $name
            }

            fn serves(&self, model: &str) -> bool {
                self.server.serves(model)
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
    models: Option<Vec<String>>,
    pub http: reqwest::Client,
}

/// The server could not be reached or answered at the transport level.
pub fn unavailable(e: impl std::fmt::Display) -> InferenceError {
    InferenceError::Unavailable(e.to_string())
}

impl GpuServer {
    pub fn new(base: &str, models: Option<Vec<String>>) -> anyhow::Result<Self> {
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            models,
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

    pub fn serves(&self, model: &str) -> bool {
        super::listed(self.models.as_deref(), model)
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
