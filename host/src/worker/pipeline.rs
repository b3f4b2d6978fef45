//! One job's steps on a worker, as plain functions: the backend operation
//! built from the spec and its decoded inputs, images moved in and out of
//! plugin handles.

use image::RgbaImage;

use crate::inference::{Control, Operation};
use crate::plugins::image_handle::ImageHandle;
use crate::queue::job::{JobSpec, JobType, MAX_OUTPUT_IMAGES, MAX_OUTPUT_PIXELS};

/// The backend operation of a job, given its decoded input images.
pub fn operation(
    spec: &JobSpec,
    source: Option<RgbaImage>,
    mask: Option<RgbaImage>,
    guide: Option<RgbaImage>,
) -> Result<Operation, String> {
    let need = |img: Option<RgbaImage>, what: &str| img.ok_or_else(|| format!("missing {what}"));
    let generation = spec.generation.clone();
    Ok(match spec.job_type {
        JobType::TextToImage => Operation::TextToImage {
            generation,
            control: match &spec.controlnet {
                Some(c) => Some(Control {
                    model: c.model.clone(),
                    image: need(guide, "ControlNet image")?,
                    weight: c.weight,
                }),
                None => None,
            },
        },
        JobType::ImageToImage => Operation::ImageToImage {
            generation,
            source: need(source, "source image")?,
            strength: spec.strength.unwrap_or(0.75),
        },
        JobType::Upscale => Operation::Upscale {
            source: need(source, "source image")?,
            scale: spec.scale.unwrap_or(2),
        },
        JobType::Inpaint => Operation::Inpaint {
            generation,
            source: need(source, "source image")?,
            mask: need(mask, "mask image")?,
        },
        // A workflow runs step by step (`worker::workflow`).
        JobType::Workflow => return Err("a workflow is not one operation".into()),
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

/// Whether `images` stay within one job's output bound (count and
/// pixels), and why not.
pub fn check_outputs(images: &[RgbaImage]) -> Result<(), String> {
    let pixels: u64 = images
        .iter()
        .map(|i| u64::from(i.width()) * u64::from(i.height()))
        .sum();
    if images.len() > MAX_OUTPUT_IMAGES || pixels > MAX_OUTPUT_PIXELS {
        return Err(format!(
            "{} images of {} megapixels; a job outputs at most {MAX_OUTPUT_IMAGES} images of {} megapixels together",
            images.len(),
            pixels / 1_000_000,
            MAX_OUTPUT_PIXELS / 1_000_000
        ));
    }
    Ok(())
}
