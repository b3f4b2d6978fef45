//! `cpu-reference`: the built-in backend for development, tests and demos.
//! No ML and no weights — it says so in its name. It renders an abstract
//! picture from (prompt, negative prompt, model, seed, size), so equal
//! inputs give equal bytes; it refines the picture over `steps` passes over
//! every pixel (time grows with steps × pixels, and progress is real), it
//! really resamples for upscale (Lanczos3) and really composites inside the
//! mask for inpaint.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use image::imageops::{self, FilterType};
use image::{Rgba, RgbaImage};

use super::{Generation, InferenceBackend, InferenceError, Operation, Progress, ProgressSink};

pub const NAME: &str = "cpu-reference";
const BLOBS: usize = 6;

/// The backend: it needs no weights, so it has every model.
#[derive(Debug, Clone, Default)]
pub struct CpuReference;

/// splitmix64: a tiny, fixed PRNG, so outputs never change with a crate
/// upgrade.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn unit(state: &mut u64) -> f32 {
    (next(state) >> 40) as f32 / (1u64 << 24) as f32
}

/// FNV-1a over the inputs that decide the picture.
fn picture_seed(g: &Generation, index: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [
        g.prompt.as_bytes(),
        b"\0",
        g.negative_prompt.as_bytes(),
        b"\0",
        g.model.as_bytes(),
    ] {
        for b in part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h ^ g.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(index).rotate_left(32)
}

struct Blob {
    x: f32,
    y: f32,
    radius: f32,
    color: [f32; 3],
}

/// Renders one picture, calling `progress` after every step; stops with
/// `Cancelled` when it answers false.
fn render(
    g: &Generation,
    index: u32,
    progress: &dyn Fn(Progress) -> bool,
) -> Result<RgbaImage, InferenceError> {
    let (w, h) = (g.width as usize, g.height as usize);
    let mut state = picture_seed(g, index);
    let base = [unit(&mut state), unit(&mut state), unit(&mut state)];
    let blobs: Vec<Blob> = (0..BLOBS)
        .map(|_| Blob {
            x: unit(&mut state),
            y: unit(&mut state),
            radius: 0.1 + 0.35 * unit(&mut state),
            color: [unit(&mut state), unit(&mut state), unit(&mut state)],
        })
        .collect();
    let mut acc = vec![0f32; w * h * 3];
    let steps = g.steps.max(1);
    for step in 1..=steps {
        // Each step sees the blobs a little off their place, less so as
        // steps go on; averaging the steps converges like denoising does.
        let jitter = 0.08 / step as f32;
        let moved: Vec<(f32, f32)> = blobs
            .iter()
            .map(|b| {
                (
                    b.x + jitter * (unit(&mut state) - 0.5),
                    b.y + jitter * (unit(&mut state) - 0.5),
                )
            })
            .collect();
        let weight = 1.0 / step as f32;
        for py in 0..h {
            let fy = (py as f32 + 0.5) / h as f32;
            for px in 0..w {
                let fx = (px as f32 + 0.5) / w as f32;
                let mut c = [base[0] * (1.0 - fy), base[1] * fx, base[2] * fy];
                for (b, (bx, by)) in blobs.iter().zip(&moved) {
                    let d2 = (fx - bx) * (fx - bx) + (fy - by) * (fy - by);
                    let k = (1.0 - d2 / (b.radius * b.radius)).max(0.0);
                    for (cv, bv) in c.iter_mut().zip(b.color) {
                        *cv += (bv - *cv) * k;
                    }
                }
                let i = (py * w + px) * 3;
                for (av, cv) in acc[i..i + 3].iter_mut().zip(c) {
                    *av += (cv - *av) * weight;
                }
            }
        }
        if !progress(Progress {
            step,
            total_steps: steps,
        }) {
            return Err(InferenceError::Cancelled);
        }
    }
    Ok(RgbaImage::from_fn(g.width, g.height, |x, y| {
        let i = (y as usize * w + x as usize) * 3;
        let q = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
        Rgba([q(acc[i]), q(acc[i + 1]), q(acc[i + 2]), 255])
    }))
}

/// `a` where `t` is 0, `b` where it is 1, per pixel; alpha from `a`.
fn blend(a: &RgbaImage, b: &RgbaImage, t: impl Fn(u32, u32) -> f32) -> RgbaImage {
    RgbaImage::from_fn(a.width(), a.height(), |x, y| {
        let (pa, pb, k) = (a.get_pixel(x, y), b.get_pixel(x, y), t(x, y));
        let mix =
            |i: usize| (f32::from(pa[i]) + (f32::from(pb[i]) - f32::from(pa[i])) * k).round() as u8;
        Rgba([mix(0), mix(1), mix(2), pa[3]])
    })
}

fn check_size(w: u32, h: u32) -> Result<(), InferenceError> {
    if w == 0 || h == 0 || w > 8192 || h > 8192 {
        return Err(InferenceError::InvalidInput(format!("size {w}x{h}")));
    }
    Ok(())
}

impl CpuReference {
    fn run_blocking(
        &self,
        op: Operation,
        progress: &dyn Fn(Progress) -> bool,
    ) -> Result<Vec<RgbaImage>, InferenceError> {
        match op {
            Operation::TextToImage(g) => {
                check_size(g.width, g.height)?;
                (0..g.batch_size.max(1))
                    .map(|i| render(&g, i, progress))
                    .collect()
            }
            Operation::ImageToImage {
                generation,
                source,
                strength,
            } => {
                check_size(generation.width, generation.height)?;
                let source = imageops::resize(
                    &source,
                    generation.width,
                    generation.height,
                    FilterType::Lanczos3,
                );
                let k = strength.clamp(0.0, 1.0);
                (0..generation.batch_size.max(1))
                    .map(|i| Ok(blend(&source, &render(&generation, i, progress)?, |_, _| k)))
                    .collect()
            }
            Operation::Upscale { source, scale } => {
                if !(1..=4).contains(&scale) {
                    return Err(InferenceError::InvalidInput(format!(
                        "scale {scale} (1 to 4)"
                    )));
                }
                let (w, h) = (source.width() * scale, source.height() * scale);
                check_size(w, h)?;
                let out = imageops::resize(&source, w, h, FilterType::Lanczos3);
                progress(Progress {
                    step: 1,
                    total_steps: 1,
                });
                Ok(vec![out])
            }
            Operation::Inpaint {
                generation,
                source,
                mask,
            } => {
                if mask.dimensions() != source.dimensions() {
                    return Err(InferenceError::InvalidInput(
                        "mask and source differ in size".into(),
                    ));
                }
                let generation = Generation {
                    width: source.width(),
                    height: source.height(),
                    ..generation
                };
                let coverage = |x: u32, y: u32| {
                    let m = mask.get_pixel(x, y);
                    (0.299 * f32::from(m[0]) + 0.587 * f32::from(m[1]) + 0.114 * f32::from(m[2]))
                        / 255.0
                };
                (0..generation.batch_size.max(1))
                    .map(|i| Ok(blend(&source, &render(&generation, i, progress)?, coverage)))
                    .collect()
            }
        }
    }
}

impl InferenceBackend for CpuReference {
    fn name(&self) -> &'static str {
        NAME
    }

    fn discover<'a>(
        &'a self,
        _catalogue: &'a crate::models::ModelCatalogue,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, InferenceError>> {
        Box::pin(async { Ok(None) })
    }

    fn run<'a>(
        &'a self,
        op: Operation,
        progress: ProgressSink,
    ) -> BoxFuture<'a, Result<Vec<RgbaImage>, InferenceError>> {
        let this = Arc::new(self.clone());
        async move {
            tokio::task::spawn_blocking(move || this.run_blocking(op, &*progress))
                .await
                .map_err(|e| InferenceError::Failed(e.to_string()))?
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn generation(seed: u64) -> Generation {
        Generation {
            prompt: "a lighthouse".into(),
            negative_prompt: String::new(),
            model: "stable-diffusion-1.5".into(),
            width: 64,
            height: 48,
            steps: 5,
            cfg_scale: 7.0,
            sampler: "euler".into(),
            seed,
            batch_size: 1,
        }
    }

    async fn run(op: Operation) -> (Vec<RgbaImage>, Vec<Progress>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let out = CpuReference
            .run(
                op,
                Arc::new(move |p| {
                    sink.lock().unwrap().push(p);
                    true
                }),
            )
            .await
            .unwrap();
        let seen = seen.lock().unwrap().clone();
        (out, seen)
    }

    #[tokio::test]
    async fn text_to_image_is_deterministic_with_step_progress() {
        let (a, progress) = run(Operation::TextToImage(generation(7))).await;
        let (b, _) = run(Operation::TextToImage(generation(7))).await;
        let (c, _) = run(Operation::TextToImage(generation(8))).await;
        assert_eq!(a[0].dimensions(), (64, 48));
        assert_eq!(a[0].as_raw(), b[0].as_raw(), "equal inputs, equal bytes");
        assert_ne!(
            a[0].as_raw(),
            c[0].as_raw(),
            "another seed, another picture"
        );
        assert_eq!(
            progress.iter().map(|p| p.step).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        let (batch, progress) = run(Operation::TextToImage(Generation {
            batch_size: 3,
            ..generation(7)
        }))
        .await;
        assert_eq!(batch.len(), 3);
        assert_eq!(batch[0].as_raw(), a[0].as_raw());
        assert_ne!(batch[1].as_raw(), batch[0].as_raw());
        assert_eq!(progress.len(), 15);
    }

    #[tokio::test]
    async fn upscale_really_resamples() {
        let checker = RgbaImage::from_fn(4, 4, |x, y| {
            if (x + y) % 2 == 0 {
                Rgba([255, 255, 255, 255])
            } else {
                Rgba([0, 0, 0, 255])
            }
        });
        let (out, _) = run(Operation::Upscale {
            source: checker,
            scale: 2,
        })
        .await;
        assert_eq!(out[0].dimensions(), (8, 8));
        assert!(
            out[0].pixels().any(|p| p[0] > 10 && p[0] < 245),
            "interpolated values, not a pixel copy"
        );
        let err = CpuReference
            .run(
                Operation::Upscale {
                    source: RgbaImage::new(2, 2),
                    scale: 9,
                },
                Arc::new(|_| true),
            )
            .await;
        assert!(matches!(err, Err(InferenceError::InvalidInput(_))));
    }

    #[tokio::test]
    async fn inpaint_changes_only_inside_the_mask() {
        let source = RgbaImage::from_pixel(64, 48, Rgba([10, 20, 30, 255]));
        let mask = RgbaImage::from_fn(64, 48, |x, _| {
            if x < 32 {
                Rgba([0, 0, 0, 255])
            } else {
                Rgba([255, 255, 255, 255])
            }
        });
        let (out, _) = run(Operation::Inpaint {
            generation: generation(1),
            source: source.clone(),
            mask,
        })
        .await;
        for (x, y, p) in out[0].enumerate_pixels() {
            if x < 32 {
                assert_eq!(p, source.get_pixel(x, y));
            }
        }
        assert!((32..64).any(|x| out[0].get_pixel(x, 10) != source.get_pixel(x, 10)));
        let wrong = RgbaImage::new(8, 8);
        let err = CpuReference
            .run(
                Operation::Inpaint {
                    generation: generation(1),
                    source,
                    mask: wrong,
                },
                Arc::new(|_| true),
            )
            .await;
        assert!(matches!(err, Err(InferenceError::InvalidInput(_))));
    }

    #[tokio::test]
    async fn image_to_image_strength_bounds() {
        let source = RgbaImage::from_pixel(64, 48, Rgba([200, 100, 50, 255]));
        let (keep, _) = run(Operation::ImageToImage {
            generation: generation(3),
            source: source.clone(),
            strength: 0.0,
        })
        .await;
        assert_eq!(keep[0].as_raw(), source.as_raw());
        let (fresh, _) = run(Operation::ImageToImage {
            generation: generation(3),
            source,
            strength: 1.0,
        })
        .await;
        let (t2i, _) = run(Operation::TextToImage(generation(3))).await;
        assert_eq!(fresh[0].as_raw(), t2i[0].as_raw());
    }

    #[tokio::test]
    async fn a_false_answer_stops_the_render() {
        let steps = Arc::new(Mutex::new(0));
        let seen = steps.clone();
        let out = CpuReference
            .run(
                Operation::TextToImage(Generation {
                    steps: 50,
                    ..generation(1)
                }),
                Arc::new(move |p| {
                    *seen.lock().unwrap() = p.step;
                    p.step < 3
                }),
            )
            .await;
        assert_eq!(out, Err(InferenceError::Cancelled));
        assert_eq!(*steps.lock().unwrap(), 3);
    }
}
