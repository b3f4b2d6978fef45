//! What a job is: its validated specification (stored as the job's
//! `params`), the conversions to what backends and nodes see, and the
//! credit arithmetic around it.

use serde::{Deserialize, Serialize};

use crate::inference::Generation;
use crate::models::{Model, ModelCatalogue};
pub use crate::store::jobs::{JobStatus, JobType};
use crate::workflows::plan::WorkflowPlan;

/// Samplers every backend maps (the backends' list).
pub use crate::inference::SAMPLERS;
pub const MAX_PROMPT_CHARS: usize = 4000;
pub const MAX_LORAS: usize = 5;
/// Most images one job may hand back.
pub const MAX_OUTPUT_IMAGES: usize = 64;
/// Most pixels of all of one job's output images together (64 Mi: one
/// 8192² upscale, or two batches of 8 at 2048²): what a worker holds and
/// encodes and the host signs and stores for one job, 256 MiB as RGBA.
pub const MAX_OUTPUT_PIXELS: u64 = 64 << 20;
/// Most PNG bytes of one job's images together, as the host takes them
/// from a worker (an image's PNG can be somewhat larger than its pixels).
pub const MAX_OUTPUT_BYTES: u64 = MAX_OUTPUT_PIXELS * 4 + (16 << 20);

/// A LoRA of a job: the backend's own `Lora` (in `generation.loras`).
pub use crate::inference::Lora as LoraSpec;

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
    /// The time the job reserved for this plugin, milliseconds: its time
    /// limit when the job was queued. A worker never lets it run longer
    /// (whatever its own limits say), so node time never passes what was
    /// paid for. Pinned by `Queue::enqueue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_ms: Option<u64>,
}

impl NodeSpec {
    pub fn new(name: String, version: String, parameters: serde_json::Value) -> Self {
        Self {
            name,
            version,
            parameters,
            reserved_ms: None,
        }
    }

    /// The seconds reserved for it (none before it is pinned).
    pub fn reserved_seconds(&self) -> f64 {
        self.reserved_ms.unwrap_or(0) as f64 / 1000.0
    }
}

/// The validated request: everything a worker needs to run the job.
/// Input images are blob keys (uploads are stored at enqueue). The
/// generation parameters are the backend's own `Generation`, flattened, so
/// the stored JSON names each field once.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct JobSpec {
    pub job_type: JobType,
    /// Model, prompts, output size, steps, guidance, sampler, resolved
    /// seed (a request's -1 is replaced by the seed used), batch size.
    #[serde(flatten)]
    pub generation: Generation,
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
    /// A workflow run's compiled steps (`JobType::Workflow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<WorkflowPlan>,
}

impl JobSpec {
    pub fn model(&self) -> &str {
        &self.generation.model
    }

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
            // A workflow run shows which workflow and its models, not its
            // compiled steps (stored input keys among them).
            if let Some(plan) = &self.workflow {
                o.insert(
                    "workflow".into(),
                    serde_json::json!({ "workflow_id": plan.workflow_id }),
                );
                o.insert("models".into(), plan.models().into());
            }
            o.remove("job_type");
        }
        v
    }

    /// The blob keys of the job's input images.
    pub fn input_keys(&self) -> Vec<String> {
        let plan = self
            .workflow
            .iter()
            .flat_map(|p| p.input_keys().map(str::to_owned));
        [
            self.source_image.clone(),
            self.mask_image.clone(),
            self.controlnet.as_ref().map(|c| c.image.clone()),
        ]
        .into_iter()
        .flatten()
        .chain(plan)
        .collect()
    }

    /// Expected GPU seconds on a GPU of the catalogue's speeds: the
    /// model's, and each LoRA's and the ControlNet's for every step they
    /// add to. A request's sizes are those it runs at (an inpaint's are
    /// its source's, an upscale's its result's).
    pub fn expected_gpu_seconds(&self, model: &Model, catalogue: &ModelCatalogue) -> f64 {
        let g = &self.generation;
        match self.job_type {
            JobType::Upscale => {
                megapixels(g.width, g.height) * model.gpu_seconds_per_megapixel_step
            }
            // A diffusion run at the request's size: `Work` without sources.
            _ => Work {
                job_type: self.job_type,
                generation: g,
                controlnet: self.controlnet.as_ref().map(|c| c.model.as_str()),
                sources: &[],
                scale: 1,
            }
            .gpu_seconds(model, catalogue),
        }
    }

    /// The LoRAs and the ControlNet a diffusion job applies, by name (a
    /// LoRA named twice is applied, and counted, twice).
    pub fn adapters(&self) -> impl Iterator<Item = &str> {
        let loras = self.generation.loras.iter().map(|l| l.name.as_str());
        loras.chain(self.controlnet.as_ref().map(|c| c.model.as_str()))
    }

    /// Every plugin the job runs (its nodes, a workflow's nodes and
    /// component), to pin and price their time.
    pub fn plugins_mut(&mut self) -> impl Iterator<Item = &mut NodeSpec> {
        let plan = self.workflow.iter_mut().flat_map(|p| p.plugins_mut());
        self.pre_nodes
            .iter_mut()
            .chain(self.post_nodes.iter_mut())
            .chain(plan)
    }

    /// The plugin seconds the job reserved: each plugin's pinned time.
    pub fn reserved_node_seconds(&self) -> f64 {
        let plan = self.workflow.iter().flat_map(|p| p.plugins());
        self.pre_nodes
            .iter()
            .chain(&self.post_nodes)
            .chain(plan)
            .map(NodeSpec::reserved_seconds)
            .sum()
    }
}

fn megapixels(width: u32, height: u32) -> f64 {
    f64::from(width) * f64::from(height) / 1e6
}

/// GPU seconds per megapixel-step of a diffusion run on `model` with
/// `adapters` (LoRAs, a ControlNet): the model's own speed plus each
/// adapter's, as each adds its own work to every UNet step. An adapter the
/// catalogue lacks counts at the model's speed (enqueue refuses one).
pub fn diffusion_speed<'a>(
    model: &Model,
    adapters: impl IntoIterator<Item = &'a str>,
    catalogue: &ModelCatalogue,
) -> f64 {
    let own = model.gpu_seconds_per_megapixel_step;
    let added: f64 = adapters
        .into_iter()
        .map(|a| {
            catalogue
                .get(a)
                .map_or(own, |m| m.gpu_seconds_per_megapixel_step)
        })
        .sum();
    own + added
}

/// What one inference operation really processes, to price it: its
/// kind, its diffusion parameters, the sizes of the source images it is
/// given, and an upscale's factor.
#[derive(Debug, Clone, Copy)]
pub struct Work<'a> {
    pub job_type: JobType,
    pub generation: &'a Generation,
    /// The ControlNet model it applies, if any.
    pub controlnet: Option<&'a str>,
    pub sources: &'a [(u32, u32)],
    pub scale: u32,
}

impl Work<'_> {
    /// Expected GPU seconds on `model` with the run's LoRAs and ControlNet
    /// (`diffusion_speed`): image-to-image runs once per source at the
    /// requested size; inpaint runs at its (first) source's size; upscale
    /// costs each result megapixel once.
    pub fn gpu_seconds(&self, model: &Model, catalogue: &ModelCatalogue) -> f64 {
        let g = self.generation;
        let per_run = f64::from(g.steps.max(1)) * f64::from(g.batch_size.max(1));
        let diffusion = |megapixels: f64| {
            let adapters = g
                .loras
                .iter()
                .map(|l| l.name.as_str())
                .chain(self.controlnet);
            megapixels * per_run * diffusion_speed(model, adapters, catalogue)
        };
        match self.job_type {
            JobType::TextToImage => diffusion(megapixels(g.width, g.height)),
            JobType::ImageToImage => {
                diffusion(self.sources.len().max(1) as f64 * megapixels(g.width, g.height))
            }
            JobType::Inpaint => {
                let (w, h) = self.sources.first().copied().unwrap_or((g.width, g.height));
                diffusion(megapixels(w, h))
            }
            JobType::Upscale => {
                let s = self.scale.max(1);
                let mp: f64 = self
                    .sources
                    .iter()
                    .map(|&(w, h)| megapixels(w * s, h * s))
                    .sum();
                mp * model.gpu_seconds_per_megapixel_step
            }
            JobType::Workflow => 0.0,
        }
    }
}

impl JobSpec {
    /// Checks what a pre-node may rewrite against the rules a request
    /// keeps: prompt lengths, guidance, a known sampler, the seed range,
    /// LoRA weights, strength — and LoRAs only among those the request
    /// named (checked against the catalogue and the tier at enqueue), each
    /// no more often than it named it (each use was priced).
    /// The field that breaks a rule, and why.
    pub fn check_rewrite_of(&self, original: &JobSpec) -> Result<(), String> {
        let g = &self.generation;
        if g.prompt.chars().count() > MAX_PROMPT_CHARS
            || g.negative_prompt.chars().count() > MAX_PROMPT_CHARS
        {
            return Err(format!("prompt: at most {MAX_PROMPT_CHARS} characters"));
        }
        if !(g.cfg_scale.is_finite() && (0.0..=30.0).contains(&g.cfg_scale)) {
            return Err("cfg_scale: between 0 and 30".into());
        }
        if !SAMPLERS.contains(&g.sampler.as_str()) && g.sampler != original.generation.sampler {
            return Err(format!("sampler: unknown sampler {:?}", g.sampler));
        }
        if g.seed > u64::from(u32::MAX) {
            return Err("seed: 0 to 4294967295".into());
        }
        if self.generation.loras.len() > MAX_LORAS {
            return Err(format!("loras: at most {MAX_LORAS}"));
        }
        let uses = |loras: &[LoraSpec], name: &str| loras.iter().filter(|l| l.name == name).count();
        for l in &self.generation.loras {
            // Each use of a LoRA was priced: never more uses than asked.
            let asked = uses(&original.generation.loras, &l.name);
            if asked == 0 {
                return Err(format!("loras: {} was not in the request", l.name));
            }
            if uses(&self.generation.loras, &l.name) > asked {
                return Err(format!("loras: {} more often than the request", l.name));
            }
            if !(l.weight.is_finite() && (-2.0..=2.0).contains(&l.weight)) {
                return Err(format!("loras: weight of {} between -2 and 2", l.name));
            }
        }
        if self
            .strength
            .is_some_and(|s| !(s.is_finite() && (0.0..=1.0).contains(&s)))
        {
            return Err("strength: between 0 and 1".into());
        }
        Ok(())
    }
}

/// The generation metadata of an image (the gallery's `metadata`).
#[derive(Debug, Clone, Serialize)]
pub struct ImageMetadata<'a> {
    pub model: &'a str,
    pub model_hash: &'a str,
    #[serde(flatten)]
    pub job: Option<JobMetadata<'a>>,
}

/// The part of an image's metadata that comes from its job.
#[derive(Debug, Clone, Serialize)]
pub struct JobMetadata<'a> {
    pub job_type: JobType,
    pub prompt: &'a str,
    pub negative_prompt: &'a str,
    pub steps: u32,
    pub cfg_scale: f32,
    pub seed: u64,
    pub sampler: &'a str,
    pub loras: &'a [LoraSpec],
    pub strength: Option<f32>,
    pub scale: Option<u32>,
    /// The backend that made the image.
    pub backend: Option<&'a str>,
}

impl<'a> ImageMetadata<'a> {
    /// What made an image: the model, and the job's parameters when known.
    pub fn new(model: &'a Model, spec: Option<&'a JobSpec>, backend: Option<&'a str>) -> Self {
        Self {
            model: &model.name,
            model_hash: &model.hash,
            job: spec.map(|s| JobMetadata {
                job_type: s.job_type,
                prompt: &s.generation.prompt,
                negative_prompt: &s.generation.negative_prompt,
                steps: s.generation.steps,
                cfg_scale: s.generation.cfg_scale,
                seed: s.generation.seed,
                sampler: &s.generation.sampler,
                loras: &s.generation.loras,
                strength: s.strength,
                scale: s.scale,
                backend,
            }),
        }
    }
}

/// Credits for `gpu_seconds` of GPU time on `model`: whole credits,
/// rounded up, at least one.
pub fn credits_for(gpu_seconds: f64, model: &Model) -> i64 {
    let raw = (gpu_seconds.max(0.0) * model.credits_per_gpu_second).ceil();
    (raw as i64).max(1)
}

/// The up-front estimate, reserved at enqueue: the most the job can cost —
/// its expected GPU time (its LoRAs' and ControlNet's included), and the
/// time reserved for its plugins, at the model's rate.
pub fn estimate_credits(spec: &JobSpec, model: &Model, catalogue: &ModelCatalogue) -> i64 {
    credits_for(spec.expected_gpu_seconds(model, catalogue), model) + node_credits(spec, model)
}

/// The credits that pay for a job's reserved plugin time at `model`'s
/// rate (none without plugins).
pub fn node_credits(spec: &JobSpec, model: &Model) -> i64 {
    let secs = spec.reserved_node_seconds();
    if secs > 0.0 {
        credits_for(secs, model)
    } else {
        0
    }
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

/// What a completed workflow is charged: each inference step's GPU
/// seconds at its model's rate, the node time at `nodes`' model's rate,
/// rounded up once for the whole job (as one REST job of the same work is;
/// not once per step), at least one credit when anything ran, capped by
/// the reservation.
pub fn workflow_charge(steps: &[(&Model, f64)], nodes: (&Model, f64), reserved: i64) -> i64 {
    let exact: f64 = steps
        .iter()
        .copied()
        .chain(std::iter::once(nodes))
        .map(|(model, secs)| secs.max(0.0) * model.credits_per_gpu_second)
        .sum();
    if exact <= 0.0 {
        return 0;
    }
    ((exact.ceil() as i64).max(1)).min(reserved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_steps_are_charged_at_their_own_models_rates() {
        let cheap = Model {
            credits_per_gpu_second: 1.0,
            ..model()
        };
        let dear = Model {
            credits_per_gpu_second: 3.0,
            ..model()
        };
        // 2 s on the cheap model, 2 s on the dear one, 0.5 s of nodes.
        let steps = [(&cheap, 2.0), (&dear, 2.0)];
        assert_eq!(workflow_charge(&steps, (&cheap, 0.5), 100), 9);
        assert_eq!(workflow_charge(&steps, (&cheap, 0.0), 100), 8);
        // Rounded up once for the job, not per step: 0.6 s of steps and
        // 0.1 s of nodes are one credit, as the same REST job's 0.7 s.
        let short = [(&cheap, 0.2), (&cheap, 0.2), (&cheap, 0.2)];
        assert_eq!(workflow_charge(&short, (&cheap, 0.1), 100), 1);
        assert_eq!(
            workflow_charge(&short, (&cheap, 0.1), 100),
            charge_for(0.7, &cheap, 100)
        );
        // Never above the reservation.
        assert_eq!(workflow_charge(&steps, (&cheap, 0.5), 7), 7);
        // A step that never ran costs nothing.
        assert_eq!(workflow_charge(&[(&dear, 0.0)], (&cheap, 0.0), 100), 0);
    }

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
            feature: None,
        }
    }

    /// The model of `model()`, a LoRA and a ControlNet for it.
    fn catalogue() -> ModelCatalogue {
        let entry = |name: &str, kind: &str, speed: f64| {
            format!(
                "[[models]]\nid = \"{name}\"\nname = \"{name}\"\ndisplay_name = \"{name}\"\n\
                 type = \"{kind}\"\nbase = \"sdxl\"\nmin_tier = \"free\"\n\
                 credits_per_gpu_second = 2.0\ngpu_seconds_per_megapixel_step = {speed}\n"
            )
        };
        let text = [
            entry("sdxl", "main", 0.1),
            entry("detail", "lora", 0.02),
            entry("canny", "controlnet", 0.04),
        ]
        .join("\n");
        ModelCatalogue::parse(&text, &crate::billing::plans::Catalogue::builtin()).unwrap()
    }

    fn spec(job_type: JobType, w: u32, h: u32, steps: u32, batch: u32) -> JobSpec {
        JobSpec {
            job_type,
            generation: Generation {
                model: "sdxl".into(),
                prompt: "p".into(),
                width: w,
                height: h,
                steps,
                cfg_scale: 7.0,
                sampler: "euler".into(),
                seed: 1,
                batch_size: batch,
                ..Generation::default()
            },
            ..JobSpec::default()
        }
    }

    fn estimate_credits_of(spec: &JobSpec, m: &Model) -> i64 {
        estimate_credits(spec, m, &catalogue())
    }

    #[test]
    fn estimate_grows_with_size_steps_and_batch() {
        let m = model();
        // 1 MP x 30 steps x 0.1 s = 3 s x 2 credits/s = 6.
        let base = estimate_credits_of(&spec(JobType::TextToImage, 1000, 1000, 30, 1), &m);
        assert_eq!(base, 6);
        assert_eq!(
            estimate_credits_of(&spec(JobType::TextToImage, 1000, 1000, 30, 4), &m),
            24
        );
        assert_eq!(
            estimate_credits_of(&spec(JobType::TextToImage, 1000, 1000, 60, 1), &m),
            12
        );
        assert_eq!(
            estimate_credits_of(&spec(JobType::TextToImage, 2000, 1000, 30, 1), &m),
            12
        );
        // Upscale: per output megapixel, no steps.
        assert_eq!(
            estimate_credits_of(&spec(JobType::Upscale, 2000, 2000, 30, 1), &m),
            1
        );
        // Tiny jobs still cost one credit.
        assert_eq!(
            estimate_credits_of(&spec(JobType::TextToImage, 64, 64, 1, 1), &m),
            1
        );
    }

    #[test]
    fn loras_and_a_controlnet_are_priced_for_every_step() {
        let (m, c) = (model(), catalogue());
        let plain = spec(JobType::TextToImage, 1000, 1000, 30, 2);
        // 1 MP x 30 steps x 2 images x 0.1 s = 6 s.
        assert!((plain.expected_gpu_seconds(&m, &c) - 6.0).abs() < 1e-9);
        let mut with = plain.clone();
        with.generation.loras = vec![
            LoraSpec {
                name: "detail".into(),
                weight: 0.5,
            };
            2
        ];
        with.controlnet = Some(ControlNetSpec {
            model: "canny".into(),
            image: "inputs/guide.png".into(),
            weight: 1.0,
        });
        // + 2 x 0.02 (each use of the LoRA) + 0.04 (the ControlNet) per MP-step.
        let expected = 60.0 * (0.1 + 0.04 + 0.04);
        assert!((with.expected_gpu_seconds(&m, &c) - expected).abs() < 1e-9);
        assert_eq!(
            estimate_credits(&with, &m, &c),
            (expected * 2.0).ceil() as i64
        );
        assert!(estimate_credits(&with, &m, &c) > estimate_credits(&plain, &m, &c));
        // A step's real work prices the same adapters the same way.
        let work = Work {
            job_type: JobType::TextToImage,
            generation: &with.generation,
            controlnet: Some("canny"),
            sources: &[],
            scale: 1,
        };
        assert!((work.gpu_seconds(&m, &c) - expected).abs() < 1e-9);
        // An upscale runs no UNet steps: adapters add nothing.
        let mut up = with.clone();
        up.job_type = JobType::Upscale;
        assert!((up.expected_gpu_seconds(&m, &c) - 0.1).abs() < 1e-9);
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

    #[test]
    fn stored_params_keep_their_flat_shape() {
        let s = spec(JobType::TextToImage, 64, 64, 4, 1);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["prompt"], "p");
        assert_eq!(v["width"], 64);
        assert!(v.get("generation").is_none());
        let back: JobSpec = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn a_pre_node_rewrite_keeps_the_request_rules() {
        let mut original = spec(JobType::TextToImage, 64, 64, 4, 1);
        original.generation.loras = vec![LoraSpec {
            name: "detail".into(),
            weight: 0.5,
        }];
        let ok = |f: &dyn Fn(&mut JobSpec)| {
            let mut s = original.clone();
            f(&mut s);
            s.check_rewrite_of(&original)
        };
        assert!(ok(&|s| s.generation.prompt = "another".into()).is_ok());
        assert!(ok(&|s| s.generation.loras[0].weight = 1.5).is_ok());
        assert!(ok(&|s| s.generation.loras.clear()).is_ok());
        assert!(ok(&|s| s.generation.sampler = "warp".into()).is_err());
        assert!(ok(&|s| s.generation.cfg_scale = f32::NAN).is_err());
        assert!(ok(&|s| s.generation.loras[0].weight = f32::INFINITY).is_err());
        assert!(ok(&|s| s.generation.loras[0].name = "premium-only".into()).is_err());
        // The same LoRA once more than asked would run unpaid steps.
        assert!(ok(&|s| s.generation.loras.push(s.generation.loras[0].clone())).is_err());
        assert!(ok(&|s| s.generation.prompt = "x".repeat(MAX_PROMPT_CHARS + 1)).is_err());
        assert!(ok(&|s| s.strength = Some(2.0)).is_err());
    }

    #[test]
    fn metadata_of_an_image_without_its_job_names_the_model() {
        let m = model();
        let v = serde_json::to_value(ImageMetadata::new(&m, None, None)).unwrap();
        assert_eq!(v, serde_json::json!({ "model": "sdxl", "model_hash": "" }));
        let s = spec(JobType::TextToImage, 64, 64, 4, 1);
        let v =
            serde_json::to_value(ImageMetadata::new(&m, Some(&s), Some("cpu-reference"))).unwrap();
        assert_eq!(v["job_type"], "text_to_image");
        assert_eq!(v["backend"], "cpu-reference");
        assert_eq!(v["steps"], 4);
    }
}
