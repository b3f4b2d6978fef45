//! One job's steps on a worker, as plain functions: inputs decoded, the
//! pre-nodes' parameters folded back into the spec, the backend operation
//! built, outputs encoded.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits, RgbaImage};

use crate::inference::{Generation, Operation};
use crate::plugins::host::images::ImageHandle;
use crate::plugins::runtime::{Lora, Params};
use crate::queue::job::{JobSpec, JobType, LoraSpec};

/// Decodes an input image (PNG, JPEG or WebP) with decoder limits, so a
/// decompression bomb fails instead of eating memory.
pub fn decode_image(bytes: &[u8]) -> Result<RgbaImage, String> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(8192);
    limits.max_image_height = Some(8192);
    limits.max_alloc = Some(512 << 20);
    reader.limits(limits);
    Ok(reader.decode().map_err(|e| e.to_string())?.to_rgba8())
}

pub fn encode_png(img: &RgbaImage) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// The parameters a node sees.
pub fn params_of(spec: &JobSpec) -> Params {
    Params {
        prompt: spec.prompt.clone(),
        negative_prompt: spec.negative_prompt.clone(),
        model: spec.model.clone(),
        width: spec.width,
        height: spec.height,
        steps: spec.steps,
        cfg_scale: spec.cfg_scale,
        sampler: spec.sampler.clone(),
        seed: i64::try_from(spec.seed).unwrap_or(i64::MAX),
        batch_size: spec.batch_size,
        loras: spec
            .loras
            .iter()
            .map(|l| Lora {
                name: l.name.clone(),
                weight: l.weight,
            })
            .collect(),
        strength: spec.strength,
    }
}

/// Folds a pre-node's answer back into the spec. What sets the price —
/// model, size, steps, batch — was paid for at enqueue and stays; the
/// node may rewrite prompts, sampler, guidance, seed and LoRA weights.
pub fn apply_params(spec: &JobSpec, p: Params) -> JobSpec {
    JobSpec {
        prompt: p.prompt,
        negative_prompt: p.negative_prompt,
        cfg_scale: if (0.0..=30.0).contains(&p.cfg_scale) {
            p.cfg_scale
        } else {
            spec.cfg_scale
        },
        sampler: p.sampler,
        seed: u64::try_from(p.seed).unwrap_or(spec.seed),
        loras: p
            .loras
            .into_iter()
            .map(|l| LoraSpec {
                name: l.name,
                weight: l.weight,
            })
            .collect(),
        strength: p.strength.map(|s| s.clamp(0.0, 1.0)).or(spec.strength),
        ..spec.clone()
    }
}

fn generation(spec: &JobSpec) -> Generation {
    Generation {
        prompt: spec.prompt.clone(),
        negative_prompt: spec.negative_prompt.clone(),
        model: spec.model.clone(),
        width: spec.width,
        height: spec.height,
        steps: spec.steps,
        cfg_scale: spec.cfg_scale,
        sampler: spec.sampler.clone(),
        seed: spec.seed,
        batch_size: spec.batch_size,
    }
}

/// The backend operation of a job, given its decoded input images.
pub fn operation(
    spec: &JobSpec,
    source: Option<RgbaImage>,
    mask: Option<RgbaImage>,
) -> Result<Operation, String> {
    let need = |img: Option<RgbaImage>, what: &str| img.ok_or_else(|| format!("missing {what}"));
    Ok(match spec.job_type {
        JobType::TextToImage => Operation::TextToImage(generation(spec)),
        JobType::ImageToImage => Operation::ImageToImage {
            generation: generation(spec),
            source: need(source, "source image")?,
            strength: spec.strength.unwrap_or(0.75),
        },
        JobType::Upscale => Operation::Upscale {
            source: need(source, "source image")?,
            scale: spec.scale.unwrap_or(2),
        },
        JobType::Inpaint => Operation::Inpaint {
            generation: generation(spec),
            source: need(source, "source image")?,
            mask: need(mask, "mask image")?,
        },
    })
}

pub fn to_handle(img: RgbaImage) -> Result<ImageHandle, String> {
    let (w, h) = img.dimensions();
    ImageHandle::new(w, h, img.into_raw())
}

pub fn from_handle(h: &ImageHandle) -> Result<RgbaImage, String> {
    RgbaImage::from_raw(h.width, h.height, h.rgba.as_ref().clone())
        .ok_or_else(|| "image buffer does not match its size".to_owned())
}
