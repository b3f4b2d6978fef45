//! Validation of generation requests into job specs. Every refusal names
//! the failing field.

use std::sync::Arc;

use rand::Rng;
use serde_json::Value;
use tokio::sync::Semaphore;

use super::inputs::{self, Input};
use super::request::*;
use super::{GenResult, GenerationError, invalid};
use crate::billing::plans::Catalogue as Plans;
use crate::blobs::Blobs;
use crate::inference::Generation;
use crate::models::{Model, ModelCatalogue};
use crate::plugins::limits;
use crate::plugins::registry::{Registry, RegistryError};
use crate::plugins::world::PluginKind;
use crate::queue::job::{
    ControlNetSpec, JobSpec, JobType, LoraSpec, MAX_LORAS, MAX_PROMPT_CHARS, NodeSpec, SAMPLERS,
};
use crate::queue::{Enqueued, Queue};
use crate::store::Db;
use crate::store::images as img;
use crate::users::Caller;

pub const MAX_NODES: usize = 8;

// The ranges the validators hold requests to (the API document states
// the same, from these).
pub const STEPS: std::ops::RangeInclusive<u32> = 1..=150;
pub const CFG_SCALE: std::ops::RangeInclusive<f64> = 0.0..=30.0;
pub const BATCH_SIZE: std::ops::RangeInclusive<u32> = 1..=8;
/// Width and height: multiples of `SIDE_STEP` in this range.
pub const SIDE: std::ops::RangeInclusive<u32> = 64..=2048;
pub const SIDE_STEP: u32 = 8;
pub const LORA_WEIGHT: std::ops::RangeInclusive<f64> = -2.0..=2.0;
pub const CONTROL_WEIGHT: std::ops::RangeInclusive<f64> = 0.0..=2.0;
pub const STRENGTH: std::ops::RangeInclusive<f64> = 0.0..=1.0;
pub const UPSCALE_FACTORS: [u32; 3] = [2, 3, 4];
/// `-1` asks for a random seed.
pub const SEEDS: std::ops::RangeInclusive<i64> = -1..=u32::MAX as i64;
/// Largest side of an upscaled image.
pub const MAX_UPSCALED_SIDE: u32 = 8192;
/// Largest side of a source image (image-to-image, inpaint, upscale,
/// ControlNet guides).
pub const MAX_SOURCE_SIDE: u32 = 2048;

/// What validation needs: the catalogue, the user's boards, images and
/// plugins, and blob storage for uploaded inputs.
pub struct Generator {
    pub db: Db,
    pub models: ModelCatalogue,
    pub plans: Plans,
    pub registry: Arc<Registry>,
    pub blobs: Blobs,
    pub queue: Arc<Queue>,
    /// The operator's plugin limits: a job reserves each plugin's time
    /// limit.
    pub plugin_limits: std::collections::HashMap<String, crate::config::LimitsOverride>,
    /// Bounds image decoding to the cores.
    pub decoding: Arc<Semaphore>,
}

/// Which generation endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    TextToImage,
    ImageToImage,
    Upscale,
    Inpaint,
}

/// A validated request: the job and its input images, not yet decoded or
/// stored.
pub struct Prepared {
    pub spec: JobSpec,
    pub inputs: Vec<Input>,
}

impl Generator {
    /// Validates a request and queues its job. The cheap checks come first
    /// (fields, model, tier, sizes from the image headers, a worker for the
    /// model, the credit estimate); then the uploads are decoded for real
    /// and stored, and the job is queued — a refused job keeps no upload.
    pub async fn submit(&self, caller: &Caller, kind: Kind, body: Value) -> GenResult<Enqueued> {
        let prepared = match kind {
            Kind::TextToImage => self.text_to_image(caller, body).await?,
            Kind::ImageToImage => self.image_to_image(caller, body).await?,
            Kind::Upscale => self.upscale(caller, body).await?,
            Kind::Inpaint => self.inpaint(caller, body).await?,
        };
        self.submit_prepared(caller, prepared).await
    }

    /// Queues a validated job (`submit`'s second half; workflow runs come
    /// here compiled).
    pub async fn submit_prepared(
        &self,
        caller: &Caller,
        prepared: Prepared,
    ) -> GenResult<Enqueued> {
        let Prepared { mut spec, inputs } = prepared;
        self.reserve_plugin_time(&mut spec);
        if !inputs.is_empty() {
            // Before the costly decode; `enqueue` checks the same again.
            self.queue.preflight(&caller.id, &spec).await?;
        }
        crate::gallery::storage::check_quota(&self.db, &self.plans, &caller.id, &caller.tier)
            .await
            .map_err(|e| match e {
                crate::gallery::GalleryError::StorageExceeded { used, quota } => {
                    GenerationError::StorageExceeded { used, quota }
                }
                other => GenerationError::Internal(other.into()),
            })?;
        inputs::decode_all(&inputs, &self.decoding).await?;
        let stored = inputs::store_all(&inputs, &self.blobs).await?;
        let queued = self
            .queue
            .enqueue(
                &caller.id,
                &caller.tier,
                spec,
                inputs::stored_bytes(&inputs),
            )
            .await;
        if queued.is_err() {
            inputs::remove_all(stored, &self.blobs).await;
        }
        Ok(queued?)
    }

    /// Pins each node plugin's time limit into the job: the time it
    /// reserves, and the most a worker lets it run. (A workflow's
    /// component is pinned when the run is compiled.)
    fn reserve_plugin_time(&self, spec: &mut JobSpec) {
        for plugin in spec.plugins_mut() {
            if plugin.reserved_ms.is_none() {
                plugin.reserved_ms = Some(self.plugin_time_ms(PluginKind::Node, &plugin.name));
            }
        }
    }

    /// A plugin's time limit, milliseconds, as this host's operator set it.
    pub(crate) fn plugin_time_ms(&self, kind: PluginKind, name: &str) -> u64 {
        let limit = limits::resolve(kind, name, &self.plugin_limits).timeout;
        u64::try_from(limit.as_millis()).unwrap_or(u64::MAX)
    }

    /// A catalogue model of one of `kinds` that the caller's tier allows
    /// and whose plan feature, if it names one, the caller's plan has.
    pub(crate) fn model(
        &self,
        caller: &Caller,
        field: &str,
        name: &str,
        kinds: &[&str],
    ) -> GenResult<Model> {
        let m = self
            .models
            .get(name)
            .filter(|m| kinds.contains(&m.kind.as_str()))
            .ok_or_else(|| invalid(field, format!("unknown {} model {name}", kinds.join("/"))))?;
        if !self.models.ranks(&self.plans, &caller.tier, m) {
            return Err(GenerationError::ModelNotAvailable {
                model: m.name.clone(),
                min_tier: m.min_tier.clone(),
            });
        }
        if let Some(f) = &m.feature
            && !self.plans.tier(&caller.tier).features.has(f)
        {
            return Err(GenerationError::FeatureLocked {
                model: m.name.clone(),
                feature: f.clone(),
                plan: self
                    .plans
                    .lowest_with(f, self.plans.tier(&m.min_tier).rank)
                    .map(|p| p.name.clone()),
            });
        }
        Ok(m.clone())
    }

    async fn input(
        &self,
        caller: &Caller,
        field: &str,
        value: &str,
        max_side: u32,
    ) -> GenResult<Input> {
        inputs::probe(&self.db, caller, field, value, max_side).await
    }

    /// The caller's board to save into, if one is named.
    pub(crate) async fn board(
        &self,
        caller: &Caller,
        board: Option<String>,
    ) -> GenResult<Option<String>> {
        let Some(id) = board.filter(|b| !b.is_empty()) else {
            return Ok(None);
        };
        match img::get_board(&self.db, &id).await? {
            Some(b) if b.user_id == caller.id => Ok(Some(id)),
            _ => Err(invalid("save_to_board", "no such board of yours")),
        }
    }

    async fn nodes(
        &self,
        caller: &Caller,
        field: &str,
        want: &str,
        nodes: Option<Vec<NodeRequest>>,
    ) -> GenResult<Vec<NodeSpec>> {
        let nodes = nodes.unwrap_or_default();
        if nodes.len() > MAX_NODES {
            return Err(invalid(field, format!("at most {MAX_NODES} nodes")));
        }
        let mut out = Vec::with_capacity(nodes.len());
        for (i, n) in nodes.into_iter().enumerate() {
            let f = format!("{field}[{i}]");
            let parameters = match n.parameters {
                None | Some(Value::Null) => Value::Object(Default::default()),
                Some(v @ Value::Object(_)) => v,
                Some(_) => return Err(invalid(format!("{f}.parameters"), "expected an object")),
            };
            let runnable = match self
                .registry
                .resolve(&caller.id, &n.name, n.version.as_deref())
                .await
            {
                Ok(r) => r,
                Err(RegistryError::NotFound) => {
                    return Err(invalid(format!("{f}.name"), "no such plugin or version"));
                }
                Err(RegistryError::Yanked) => {
                    return Err(invalid(format!("{f}.version"), "this version is yanked"));
                }
                Err(e) => return Err(GenerationError::Internal(anyhow::anyhow!("{e}"))),
            };
            if runnable.plugin.kind != "node" || runnable.version.node_kind.as_deref() != Some(want)
            {
                return Err(invalid(
                    format!("{f}.name"),
                    format!("not a {want}-node plugin"),
                ));
            }
            out.push(NodeSpec::new(
                runnable.plugin.name,
                runnable.version.version,
                parameters,
            ));
        }
        Ok(out)
    }

    /// Checks the shared diffusion fields and fills a spec with them.
    async fn diffusion(
        &self,
        caller: &Caller,
        job_type: JobType,
        prompt: String,
        model: &str,
        (width, height): (u32, u32),
        c: Common,
    ) -> GenResult<JobSpec> {
        // Counted as sent (the document's maxLength), then trimmed.
        if prompt.chars().count() > MAX_PROMPT_CHARS {
            return Err(invalid(
                "prompt",
                format!("at most {MAX_PROMPT_CHARS} characters"),
            ));
        }
        let prompt = prompt.trim().to_owned();
        if prompt.is_empty() {
            return Err(invalid("prompt", "must not be empty"));
        }
        let negative_prompt = c.negative_prompt.unwrap_or_default();
        if negative_prompt.chars().count() > MAX_PROMPT_CHARS {
            return Err(invalid(
                "negative_prompt",
                format!("at most {MAX_PROMPT_CHARS} characters"),
            ));
        }
        let model = self.model(caller, "model", model, &["main"])?;
        check_size("width", width)?;
        check_size("height", height)?;
        let steps = c.steps.unwrap_or(30);
        if !STEPS.contains(&steps) {
            return Err(invalid("steps", "between 1 and 150"));
        }
        let cfg_scale = c.cfg_scale.unwrap_or(7.5);
        if !(cfg_scale.is_finite() && CFG_SCALE.contains(&cfg_scale)) {
            return Err(invalid("cfg_scale", "between 0 and 30"));
        }
        let sampler = c.sampler.unwrap_or_else(|| "euler_a".into());
        if !SAMPLERS.contains(&sampler.as_str()) {
            return Err(invalid(
                "sampler",
                format!("one of {}", SAMPLERS.join(", ")),
            ));
        }
        let seed = match c.seed.unwrap_or(-1) {
            -1 => rand::rng().random_range(0..=u64::from(u32::MAX)),
            s if (0..=i64::from(u32::MAX)).contains(&s) => s as u64,
            _ => return Err(invalid("seed", "-1 (random) or 0 to 4294967295")),
        };
        let batch_size = c.batch_size.unwrap_or(1);
        if !BATCH_SIZE.contains(&batch_size) {
            return Err(invalid("batch_size", "between 1 and 8"));
        }
        let loras = c.loras.unwrap_or_default();
        if loras.len() > MAX_LORAS {
            return Err(invalid("loras", format!("at most {MAX_LORAS}")));
        }
        let mut lora_specs = Vec::with_capacity(loras.len());
        for (i, l) in loras.into_iter().enumerate() {
            let lora = self.model(caller, &format!("loras[{i}].name"), &l.name, &["lora"])?;
            if !(l.weight.is_finite() && LORA_WEIGHT.contains(&l.weight)) {
                return Err(invalid(format!("loras[{i}].weight"), "between -2 and 2"));
            }
            if lora.base.is_some() && lora.base != model.base {
                return Err(invalid(
                    format!("loras[{i}].name"),
                    "made for another base model",
                ));
            }
            lora_specs.push(LoraSpec {
                name: lora.name,
                weight: l.weight as f32,
            });
        }
        Ok(JobSpec {
            job_type,
            generation: Generation {
                model: model.name,
                prompt,
                negative_prompt,
                width,
                height,
                steps,
                cfg_scale: cfg_scale as f32,
                sampler,
                seed,
                batch_size,
                loras: lora_specs,
            },
            pre_nodes: self.nodes(caller, "pre_nodes", "pre", c.pre_nodes).await?,
            post_nodes: self
                .nodes(caller, "post_nodes", "post", c.post_nodes)
                .await?,
            save_to_board: self.board(caller, c.save_to_board).await?,
            ..JobSpec::default()
        })
    }

    pub async fn text_to_image(&self, caller: &Caller, body: Value) -> GenResult<Prepared> {
        let (r, common) = parse_with_common::<TextToImage>(body)?;
        let mut inputs = Vec::new();
        let size = (r.width.unwrap_or(1024), r.height.unwrap_or(1024));
        let mut spec = self
            .diffusion(
                caller,
                JobType::TextToImage,
                r.prompt,
                &r.model,
                size,
                common,
            )
            .await?;
        if let Some(cn) = r.controlnet {
            let m = self.model(caller, "controlnet.model", &cn.model, &["controlnet"])?;
            if !(cn.weight.is_finite() && CONTROL_WEIGHT.contains(&cn.weight)) {
                return Err(invalid("controlnet.weight", "between 0 and 2"));
            }
            let input = self
                .input(caller, "controlnet.image", &cn.image, MAX_SOURCE_SIDE)
                .await?;
            spec.controlnet = Some(ControlNetSpec {
                model: m.name,
                image: input.key.clone(),
                weight: cn.weight as f32,
            });
            inputs.push(input);
        }
        Ok(Prepared { spec, inputs })
    }

    pub async fn image_to_image(&self, caller: &Caller, body: Value) -> GenResult<Prepared> {
        let (r, common) = parse_with_common::<ImageToImage>(body)?;
        let strength = r.strength.unwrap_or(0.75);
        if !(strength.is_finite() && STRENGTH.contains(&strength)) {
            return Err(invalid("strength", "between 0 and 1"));
        }
        let source = self
            .input(caller, "source_image", &r.source_image, MAX_SOURCE_SIDE)
            .await?;
        let fit = |v: u32| (v / 8 * 8).clamp(64, 2048);
        let size = (
            r.width.unwrap_or_else(|| fit(source.width)),
            r.height.unwrap_or_else(|| fit(source.height)),
        );
        let mut spec = self
            .diffusion(
                caller,
                JobType::ImageToImage,
                r.prompt,
                &r.model,
                size,
                common,
            )
            .await?;
        spec.source_image = Some(source.key.clone());
        spec.strength = Some(strength as f32);
        Ok(Prepared {
            spec,
            inputs: vec![source],
        })
    }

    pub async fn inpaint(&self, caller: &Caller, body: Value) -> GenResult<Prepared> {
        let (r, common) = parse_with_common::<Inpaint>(body)?;
        let source = self
            .input(caller, "source_image", &r.source_image, MAX_SOURCE_SIDE)
            .await?;
        let (w, h) = (source.width, source.height);
        if !(64..=2048).contains(&w) || !(64..=2048).contains(&h) {
            return Err(invalid("source_image", "64 to 2048 pixels on each side"));
        }
        let mask = self
            .input(caller, "mask_image", &r.mask_image, MAX_SOURCE_SIDE)
            .await?;
        if (mask.width, mask.height) != (w, h) {
            return Err(invalid(
                "mask_image",
                format!("{}x{}, the source is {w}x{h}", mask.width, mask.height),
            ));
        }
        // The output has the source's size; only the size rules of the
        // backend (multiples of 8) are relaxed for it.
        let mut spec = self
            .diffusion(
                caller,
                JobType::Inpaint,
                r.prompt,
                &r.model,
                (w / 8 * 8, h / 8 * 8),
                common,
            )
            .await?;
        spec.generation.width = w;
        spec.generation.height = h;
        spec.source_image = Some(source.key.clone());
        spec.mask_image = Some(mask.key.clone());
        Ok(Prepared {
            spec,
            inputs: vec![source, mask],
        })
    }

    pub async fn upscale(&self, caller: &Caller, body: Value) -> GenResult<Prepared> {
        check_fields(&body, &[fields_of::<UpscaleRequest>()])?;
        let r: UpscaleRequest = parse(body)?;
        let model = self.model(
            caller,
            "model",
            r.model.as_deref().unwrap_or("real-esrgan"),
            &["upscaler"],
        )?;
        let scale = r.scale.unwrap_or(2);
        if !UPSCALE_FACTORS.contains(&scale) {
            return Err(invalid("scale", "2, 3 or 4"));
        }
        let source = self
            .input(caller, "image", &r.image, MAX_SOURCE_SIDE)
            .await?;
        let (w, h) = (source.width * scale, source.height * scale);
        if w > MAX_UPSCALED_SIDE || h > MAX_UPSCALED_SIDE {
            return Err(invalid(
                "image",
                format!("{w}x{h} after upscaling; at most {MAX_UPSCALED_SIDE} per side"),
            ));
        }
        let spec = JobSpec {
            job_type: JobType::Upscale,
            generation: Generation {
                model: model.name,
                width: w,
                height: h,
                steps: 1,
                batch_size: 1,
                ..Generation::default()
            },
            source_image: Some(source.key.clone()),
            scale: Some(scale),
            post_nodes: self
                .nodes(caller, "post_nodes", "post", r.post_nodes)
                .await?,
            save_to_board: self.board(caller, r.save_to_board).await?,
            ..JobSpec::default()
        };
        Ok(Prepared {
            spec,
            inputs: vec![source],
        })
    }
}

fn check_size(field: &str, v: u32) -> GenResult<()> {
    if !SIDE.contains(&v) || !v.is_multiple_of(SIDE_STEP) {
        return Err(invalid(field, "a multiple of 8 from 64 to 2048"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_multiples_of_eight_in_range() {
        assert!(check_size("width", 64).is_ok());
        assert!(check_size("width", 2048).is_ok());
        assert!(check_size("width", 1000).is_ok());
        assert!(check_size("width", 1001).is_err());
        assert!(check_size("width", 56).is_err());
        assert!(check_size("width", 2056).is_err());
    }
}
