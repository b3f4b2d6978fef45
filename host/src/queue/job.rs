//! What a job is: its type, status and validated specification (stored as
//! the job's `params`), and the credit arithmetic around it.

use serde::{Deserialize, Serialize};

use crate::models::Model;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobType {
    TextToImage,
    ImageToImage,
    Upscale,
    Inpaint,
}

impl JobType {
    pub fn as_str(self) -> &'static str {
        match self {
            JobType::TextToImage => "text_to_image",
            JobType::ImageToImage => "image_to_image",
            JobType::Upscale => "upscale",
            JobType::Inpaint => "inpaint",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Processing,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Processing,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Processing => "processing",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraSpec {
    pub name: String,
    pub weight: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlNetSpec {
    pub model: String,
    /// Blob key of the stored guide image.
    pub image: String,
    pub weight: f32,
}

/// A node plugin pinned to the version resolved at enqueue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSpec {
    pub name: String,
    pub version: String,
    /// The node's parameters (JSON object), handed to it as its config.
    pub parameters: serde_json::Value,
}

/// The validated request: everything a worker needs to run the job.
/// Input images are blob keys (uploads are stored at enqueue).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub job_type: JobType,
    pub model: String,
    pub prompt: String,
    pub negative_prompt: String,
    /// Output size.
    pub width: u32,
    pub height: u32,
    pub steps: u32,
    pub cfg_scale: f32,
    pub sampler: String,
    /// Resolved: a request's -1 is replaced by the random seed used.
    pub seed: u64,
    pub batch_size: u32,
    #[serde(default)]
    pub loras: Vec<LoraSpec>,
    #[serde(default)]
    pub controlnet: Option<ControlNetSpec>,
    #[serde(default)]
    pub source_image: Option<String>,
    #[serde(default)]
    pub mask_image: Option<String>,
    #[serde(default)]
    pub strength: Option<f32>,
    #[serde(default)]
    pub scale: Option<u32>,
    #[serde(default)]
    pub pre_nodes: Vec<NodeSpec>,
    #[serde(default)]
    pub post_nodes: Vec<NodeSpec>,
    #[serde(default)]
    pub save_to_board: Option<String>,
}

impl JobSpec {
    /// The parameters shown to the job's owner (input blob keys left out).
    pub fn public_params(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            for key in ["source_image", "mask_image"] {
                if o.get(key).is_some_and(|x| !x.is_null()) {
                    o.insert(key.into(), serde_json::Value::Bool(true));
                }
            }
            if let Some(cn) = o.get_mut("controlnet").and_then(|c| c.as_object_mut()) {
                cn.remove("image");
            }
            o.remove("job_type");
        }
        v
    }

    /// Expected GPU seconds on a GPU of the model's catalogue speed.
    pub fn expected_gpu_seconds(&self, model: &Model) -> f64 {
        let megapixels = f64::from(self.width) * f64::from(self.height) / 1e6;
        let work = match self.job_type {
            JobType::Upscale => megapixels,
            _ => megapixels * f64::from(self.steps.max(1)) * f64::from(self.batch_size.max(1)),
        };
        work * model.gpu_seconds_per_megapixel_step
    }
}

/// Credits for `gpu_seconds` of GPU time on `model`: whole credits,
/// rounded up, at least one.
pub fn credits_for(gpu_seconds: f64, model: &Model) -> i64 {
    let raw = (gpu_seconds.max(0.0) * model.credits_per_gpu_second).ceil();
    (raw as i64).max(1)
}

/// The up-front estimate, reserved at enqueue: the most the job can cost.
pub fn estimate_credits(spec: &JobSpec, model: &Model) -> i64 {
    credits_for(spec.expected_gpu_seconds(model), model)
}

/// What a job that used `gpu_seconds` is charged out of a reservation of
/// `reserved`: the measured time at the model's rate, capped by the
/// reservation (the estimate is the price ceiling the user agreed to).
pub fn charge_for(gpu_seconds: f64, model: &Model, reserved: i64) -> i64 {
    if gpu_seconds <= 0.0 {
        return 0;
    }
    credits_for(gpu_seconds, model).min(reserved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        Model {
            id: "m".into(),
            name: "sdxl".into(),
            display_name: "SDXL".into(),
            kind: "main".into(),
            base: Some("sdxl".into()),
            description: String::new(),
            thumbnail_url: None,
            min_tier: "free".into(),
            hash: String::new(),
            credits_per_gpu_second: 2.0,
            gpu_seconds_per_megapixel_step: 0.1,
        }
    }

    fn spec(job_type: JobType, w: u32, h: u32, steps: u32, batch: u32) -> JobSpec {
        JobSpec {
            job_type,
            model: "sdxl".into(),
            prompt: "p".into(),
            negative_prompt: String::new(),
            width: w,
            height: h,
            steps,
            cfg_scale: 7.0,
            sampler: "euler".into(),
            seed: 1,
            batch_size: batch,
            loras: vec![],
            controlnet: None,
            source_image: None,
            mask_image: None,
            strength: None,
            scale: None,
            pre_nodes: vec![],
            post_nodes: vec![],
            save_to_board: None,
        }
    }

    #[test]
    fn estimate_grows_with_size_steps_and_batch() {
        let m = model();
        // 1 MP x 30 steps x 0.1 s = 3 s x 2 credits/s = 6.
        let base = estimate_credits(&spec(JobType::TextToImage, 1000, 1000, 30, 1), &m);
        assert_eq!(base, 6);
        assert_eq!(
            estimate_credits(&spec(JobType::TextToImage, 1000, 1000, 30, 4), &m),
            24
        );
        assert_eq!(
            estimate_credits(&spec(JobType::TextToImage, 1000, 1000, 60, 1), &m),
            12
        );
        assert_eq!(
            estimate_credits(&spec(JobType::TextToImage, 2000, 1000, 30, 1), &m),
            12
        );
        // Upscale: per output megapixel, no steps.
        assert_eq!(
            estimate_credits(&spec(JobType::Upscale, 2000, 2000, 30, 1), &m),
            1
        );
        // Tiny jobs still cost one credit.
        assert_eq!(
            estimate_credits(&spec(JobType::TextToImage, 64, 64, 1, 1), &m),
            1
        );
    }

    #[test]
    fn charge_is_measured_time_capped_by_the_reservation() {
        let m = model();
        assert_eq!(charge_for(0.0, &m, 10), 0);
        assert_eq!(charge_for(0.01, &m, 10), 1);
        assert_eq!(charge_for(2.2, &m, 10), 5);
        assert_eq!(charge_for(100.0, &m, 10), 10);
    }

    #[test]
    fn public_params_hide_blob_keys() {
        let mut s = spec(JobType::ImageToImage, 64, 64, 1, 1);
        s.source_image = Some("inputs/abc.png".into());
        let v = s.public_params();
        assert_eq!(v["source_image"], true);
        assert_eq!(v["model"], "sdxl");
        assert!(!v.to_string().contains("inputs/"));
    }
}
