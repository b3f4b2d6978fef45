//! Validation of generation requests into job specs. Every refusal names
//! the failing field.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use image::RgbaImage;
use rand::Rng;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::request::*;
use super::{GenResult, GenerationError, invalid};
use crate::billing::plans::Catalogue as Plans;
use crate::blobs::LocalBlobs;
use crate::imaging;
use crate::inference::Generation;
use crate::models::{Model, ModelCatalogue};
use crate::plugins::registry::{Registry, RegistryError};
use crate::queue::job::{ControlNetSpec, JobSpec, JobType, LoraSpec, NodeSpec};
use crate::store::Db;
use crate::store::images as img;
use crate::users::Caller;

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
pub const MAX_PROMPT_CHARS: usize = 4000;
pub const MAX_LORAS: usize = 5;
pub const MAX_NODES: usize = 8;
/// Largest side of an upscaled image.
pub const MAX_UPSCALED_SIDE: u32 = 4096;

/// A decoded input image and the blob key it is stored under.
struct Input {
    key: String,
    image: RgbaImage,
}

/// What validation needs: the catalogue, the user's boards, images and
/// plugins, and blob storage for uploaded inputs.
pub struct Generator {
    pub db: Db,
    pub models: ModelCatalogue,
    pub plans: Plans,
    pub registry: Arc<Registry>,
    pub blobs: Arc<LocalBlobs>,
}

impl Generator {
    fn model(&self, caller: &Caller, field: &str, name: &str, kinds: &[&str]) -> GenResult<Model> {
        let m = self
            .models
            .get(name)
            .filter(|m| kinds.contains(&m.kind.as_str()))
            .ok_or_else(|| invalid(field, format!("unknown {} model {name}", kinds.join("/"))))?;
        if !self.models.allows(&self.plans, &caller.tier, m) {
            return Err(GenerationError::ModelNotAvailable {
                model: m.name.clone(),
                min_tier: m.min_tier.clone(),
            });
        }
        Ok(m.clone())
    }

    /// A base64 image (optionally a `data:` URL) or the id of an image the
    /// caller owns, decoded for real; uploads are stored content-addressed.
    async fn input(&self, caller: &Caller, field: &str, value: &str) -> GenResult<Input> {
        let value = value.trim();
        if value.is_empty() {
            return Err(invalid(field, "empty"));
        }
        if uuid::Uuid::parse_str(value).is_ok() {
            let row = img::get(&self.db, value)
                .await?
                .filter(|r| r.user_id == caller.id)
                .ok_or_else(|| invalid(field, "no such image of yours"))?;
            let blobs = self.blobs.clone();
            let key = row.blob_key.clone();
            let bytes = tokio::task::spawn_blocking(move || blobs.get(&key))
                .await
                .map_err(anyhow::Error::from)?
                .map_err(|e| anyhow::anyhow!("reading image {value}: {e}"))?;
            let image = imaging::decode(&bytes).map_err(|e| invalid(field, e))?;
            return Ok(Input {
                key: row.blob_key,
                image,
            });
        }
        let data = value
            .strip_prefix("data:")
            .and_then(|rest| rest.split_once(";base64,").map(|(_, d)| d))
            .unwrap_or(value);
        let bytes = B64
            .decode(data.as_bytes())
            .map_err(|_| invalid(field, "neither an image id nor valid base64"))?;
        let (image, bytes) =
            tokio::task::spawn_blocking(move || imaging::decode(&bytes).map(|i| (i, bytes)))
                .await
                .map_err(anyhow::Error::from)?
                .map_err(|e| invalid(field, format!("not a readable image: {e}")))?;
        let key = format!(
            "inputs/{}/{}",
            caller.id,
            hex::encode(Sha256::digest(&bytes))
        );
        let blobs = self.blobs.clone();
        let k = key.clone();
        tokio::task::spawn_blocking(move || blobs.put(&k, &bytes))
            .await
            .map_err(anyhow::Error::from)?
            .map_err(|e| anyhow::anyhow!("storing input: {e}"))?;
        Ok(Input { key, image })
    }

    async fn board(&self, caller: &Caller, board: Option<String>) -> GenResult<Option<String>> {
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
            out.push(NodeSpec {
                name: runnable.plugin.name,
                version: runnable.version.version,
                parameters,
            });
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
        let prompt = prompt.trim().to_owned();
        if prompt.is_empty() {
            return Err(invalid("prompt", "must not be empty"));
        }
        if prompt.chars().count() > MAX_PROMPT_CHARS {
            return Err(invalid(
                "prompt",
                format!("at most {MAX_PROMPT_CHARS} characters"),
            ));
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
        if !(1..=150).contains(&steps) {
            return Err(invalid("steps", "between 1 and 150"));
        }
        let cfg_scale = c.cfg_scale.unwrap_or(7.5);
        if !(cfg_scale.is_finite() && (0.0..=30.0).contains(&cfg_scale)) {
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
        if !(1..=8).contains(&batch_size) {
            return Err(invalid("batch_size", "between 1 and 8"));
        }
        let loras = c.loras.unwrap_or_default();
        if loras.len() > MAX_LORAS {
            return Err(invalid("loras", format!("at most {MAX_LORAS}")));
        }
        let mut lora_specs = Vec::with_capacity(loras.len());
        for (i, l) in loras.into_iter().enumerate() {
            let lora = self.model(caller, &format!("loras[{i}].name"), &l.name, &["lora"])?;
            if !(l.weight.is_finite() && (-2.0..=2.0).contains(&l.weight)) {
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
                weight: l.weight,
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
                cfg_scale,
                sampler,
                seed,
                batch_size,
            },
            loras: lora_specs,
            pre_nodes: self.nodes(caller, "pre_nodes", "pre", c.pre_nodes).await?,
            post_nodes: self
                .nodes(caller, "post_nodes", "post", c.post_nodes)
                .await?,
            save_to_board: self.board(caller, c.save_to_board).await?,
            ..JobSpec::default()
        })
    }

    pub async fn text_to_image(&self, caller: &Caller, body: Value) -> GenResult<JobSpec> {
        let (r, common) = parse_with_common::<TextToImage>(body)?;
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
            if !(cn.weight.is_finite() && (0.0..=2.0).contains(&cn.weight)) {
                return Err(invalid("controlnet.weight", "between 0 and 2"));
            }
            let input = self.input(caller, "controlnet.image", &cn.image).await?;
            spec.controlnet = Some(ControlNetSpec {
                model: m.name,
                image: input.key,
                weight: cn.weight,
            });
        }
        Ok(spec)
    }

    pub async fn image_to_image(&self, caller: &Caller, body: Value) -> GenResult<JobSpec> {
        let (r, common) = parse_with_common::<ImageToImage>(body)?;
        let strength = r.strength.unwrap_or(0.75);
        if !(strength.is_finite() && (0.0..=1.0).contains(&strength)) {
            return Err(invalid("strength", "between 0 and 1"));
        }
        let source = self.input(caller, "source_image", &r.source_image).await?;
        let fit = |v: u32| (v / 8 * 8).clamp(64, 2048);
        let size = (
            r.width.unwrap_or_else(|| fit(source.image.width())),
            r.height.unwrap_or_else(|| fit(source.image.height())),
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
        spec.source_image = Some(source.key);
        spec.strength = Some(strength);
        Ok(spec)
    }

    pub async fn inpaint(&self, caller: &Caller, body: Value) -> GenResult<JobSpec> {
        let (r, common) = parse_with_common::<Inpaint>(body)?;
        let source = self.input(caller, "source_image", &r.source_image).await?;
        let (w, h) = source.image.dimensions();
        if !(64..=2048).contains(&w) || !(64..=2048).contains(&h) {
            return Err(invalid("source_image", "64 to 2048 pixels on each side"));
        }
        let mask = self.input(caller, "mask_image", &r.mask_image).await?;
        if mask.image.dimensions() != (w, h) {
            return Err(invalid(
                "mask_image",
                format!(
                    "{}x{}, the source is {w}x{h}",
                    mask.image.width(),
                    mask.image.height()
                ),
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
        spec.source_image = Some(source.key);
        spec.mask_image = Some(mask.key);
        Ok(spec)
    }

    pub async fn upscale(&self, caller: &Caller, body: Value) -> GenResult<JobSpec> {
        check_fields(&body, &[fields_of::<UpscaleRequest>()])?;
        let r: UpscaleRequest = parse(body)?;
        let model = self.model(
            caller,
            "model",
            r.model.as_deref().unwrap_or("real-esrgan"),
            &["upscaler"],
        )?;
        let scale = r.scale.unwrap_or(2);
        if !(2..=4).contains(&scale) {
            return Err(invalid("scale", "2, 3 or 4"));
        }
        let source = self.input(caller, "image", &r.image).await?;
        let (w, h) = (source.image.width() * scale, source.image.height() * scale);
        if w > MAX_UPSCALED_SIDE || h > MAX_UPSCALED_SIDE {
            return Err(invalid(
                "image",
                format!("{w}x{h} after upscaling; at most {MAX_UPSCALED_SIDE} per side"),
            ));
        }
        Ok(JobSpec {
            job_type: JobType::Upscale,
            generation: Generation {
                model: model.name,
                width: w,
                height: h,
                steps: 1,
                batch_size: 1,
                ..Generation::default()
            },
            source_image: Some(source.key),
            scale: Some(scale),
            post_nodes: self
                .nodes(caller, "post_nodes", "post", r.post_nodes)
                .await?,
            save_to_board: self.board(caller, r.save_to_board).await?,
            ..JobSpec::default()
        })
    }
}

fn check_size(field: &str, v: u32) -> GenResult<()> {
    if !(64..=2048).contains(&v) || !v.is_multiple_of(8) {
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
