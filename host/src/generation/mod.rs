//! Generation requests: parsing and validating what a user asked for into
//! a `JobSpec` the queue runs — sizes, steps, guidance, sampler, seeds,
//! LoRAs, models and the user's tier, input images (decoded for real and
//! stored), boards and node plugins (pinned to a version).

pub mod request;
pub mod validate;

pub use validate::{GenerationError, Generator};
