//! Generation requests: parsing and validating what a user asked for into
//! a `JobSpec` the queue runs — sizes, steps, guidance, sampler, seeds,
//! LoRAs, models and the user's tier, input images (decoded for real and
//! stored), boards and node plugins (pinned to a version).

pub mod inputs;
pub mod request;
pub mod validate;

pub use validate::{Generator, Kind};

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("model {model} needs the {min_tier} tier")]
    ModelNotAvailable { model: String, min_tier: String },
    /// The model needs a plan feature the caller's plan lacks.
    #[error("model {model} needs the {feature} feature")]
    FeatureLocked {
        model: String,
        feature: String,
        /// The lowest plan that has it.
        plan: Option<String>,
    },
    #[error("storage quota exceeded: {used} of {quota} bytes")]
    StorageExceeded { used: i64, quota: i64 },
    /// The queue refused the job (credits, caps, no worker).
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for GenerationError {
    fn from(e: StoreError) -> Self {
        GenerationError::Internal(e.into())
    }
}

pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> GenerationError {
    GenerationError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

pub type GenResult<T> = Result<T, GenerationError>;
