//! `cpu-reference`: the built-in backend for development, tests and demos.
//! No ML and no weights — it says so in its name. It renders an abstract
//! picture from (prompt, negative prompt, model, seed, size), so equal
//! inputs give equal bytes; it refines the picture over `steps` passes over
//! every pixel (time grows with steps × pixels, and progress is real), it
//! really resamples for upscale (Lanczos3) and really composites inside the
//! mask for inpaint. LoRAs and a ControlNet change the picture in ways a
//! test can measure: each LoRA pulls every pixel towards a colour of its
//! own (its name's hash; a negative weight towards the opposite colour) by
//! a share that grows with its weight, and a ControlNet pulls the picture's
//! brightness towards the guide image's, by its weight.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use image::imageops::{self, FilterType};
use image::{Rgba, RgbaImage};

use super::{
    Control, Generation, InferenceBackend, InferenceError, Lora, Operation, Progress, ProgressSink,
};

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

/// A LoRA's pull: the colour it pulls towards and how far (0–0.6).
fn lora_pull(l: &Lora) -> ([f32; 3], f32) {
    let mut state = l.name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let colour = [unit(&mut state), unit(&mut state), unit(&mut state)];
    let colour = if l.weight < 0.0 {
        colour.map(|c| 1.0 - c)
    } else {
        colour
    };
    (colour, (l.weight.abs() * 0.3).min(0.6))
}

/// A ControlNet's guide at the output's size, as brightness 0–1, and how
/// far it pulls (0–0.8).
struct Guide {
    luma: Vec<f32>,
    pull: f32,
}

impl Guide {
    fn new(c: &Control, w: u32, h: u32) -> Guide {
        let resized = imageops::resize(&c.image, w, h, FilterType::Triangle);
        let luma = resized
            .pixels()
            .map(|p| {
                (0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]))
                    / 255.0
            })
            .collect();
        Guide {
            luma,
            pull: (c.weight.clamp(0.0, 2.0) * 0.4).min(0.8),
        }
    }
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
    guide: Option<&Guide>,
    progress: &dyn Fn(Progress) -> bool,
) -> Result<RgbaImage, InferenceError> {
    let (w, h) = (g.width as usize, g.height as usize);
    let loras: Vec<([f32; 3], f32)> = g.loras.iter().map(lora_pull).collect();
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
                for (colour, k) in &loras {
                    for (cv, lv) in c.iter_mut().zip(colour) {
                        *cv += (lv - *cv) * k;
                    }
                }
                if let Some(guide) = guide {
                    let target = guide.luma[py * w + px];
                    let luma = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
                    let shift = (target - luma) * guide.pull;
                    for cv in &mut c {
                        *cv += shift;
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
            Operation::TextToImage {
                generation: g,
                control,
            } => {
                check_size(g.width, g.height)?;
                let guide = control.map(|c| Guide::new(&c, g.width, g.height));
                (0..g.batch_size.max(1))
                    .map(|i| render(&g, i, guide.as_ref(), progress))
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
                    .map(|i| {
                        Ok(blend(
                            &source,
                            &render(&generation, i, None, progress)?,
                            |_, _| k,
                        ))
                    })
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
                    .map(|i| {
                        Ok(blend(
                            &source,
                            &render(&generation, i, None, progress)?,
                            coverage,
                        ))
                    })
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
            loras: Vec::new(),
        }
    }

    fn t2i(generation: Generation) -> Operation {
        Operation::TextToImage {
            generation,
            control: None,
        }
    }

    /// Mean absolute difference per channel value.
    fn distance(a: &RgbaImage, b: &RgbaImage) -> f64 {
        let sum: u64 = a
            .as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(x, y)| u64::from(x.abs_diff(*y)))
            .sum();
        sum as f64 / a.as_raw().len() as f64
    }

    #[tokio::test]
    async fn loras_change_the_picture_by_their_weight_and_name() {
        let with = |loras: &[(&str, f32)]| {
            t2i(Generation {
                loras: loras
                    .iter()
                    .map(|&(name, weight)| Lora {
                        name: name.into(),
                        weight,
                    })
                    .collect(),
                ..generation(7)
            })
        };
        let (plain, _) = run(with(&[])).await;
        let (zero, _) = run(with(&[("add-detail", 0.0)])).await;
        let (light, _) = run(with(&[("add-detail", 0.5)])).await;
        let (full, _) = run(with(&[("add-detail", 1.5)])).await;
        let (again, _) = run(with(&[("add-detail", 1.5)])).await;
        let (other, _) = run(with(&[("film-grain", 1.5)])).await;
        let (two, _) = run(with(&[("add-detail", 1.5), ("film-grain", 1.5)])).await;
        assert_eq!(zero[0].as_raw(), plain[0].as_raw(), "weight 0 is no LoRA");
        assert_eq!(full[0].as_raw(), again[0].as_raw(), "deterministic");
        let (d_light, d_full) = (
            distance(&plain[0], &light[0]),
            distance(&plain[0], &full[0]),
        );
        assert!(d_light > 3.0, "visible at 0.5: {d_light}");
        assert!(
            d_full > d_light * 1.5,
            "more weight, more change: {d_light} → {d_full}"
        );
        assert!(distance(&full[0], &other[0]) > 3.0, "each LoRA its own");
        assert!(distance(&full[0], &two[0]) > 3.0, "two apply both");
    }

    #[tokio::test]
    async fn a_controlnet_pulls_the_picture_towards_its_guide() {
        // Dark left half, bright right half.
        let guide = RgbaImage::from_fn(32, 32, |x, _| {
            if x < 16 {
                Rgba([0, 0, 0, 255])
            } else {
                Rgba([255, 255, 255, 255])
            }
        });
        let controlled = |weight: f32| Operation::TextToImage {
            generation: generation(7),
            control: Some(Control {
                model: "canny".into(),
                image: guide.clone(),
                weight,
            }),
        };
        let (plain, _) = run(t2i(generation(7))).await;
        let (none, _) = run(controlled(0.0)).await;
        let (guided, _) = run(controlled(1.0)).await;
        assert_eq!(
            none[0].as_raw(),
            plain[0].as_raw(),
            "weight 0 guides nothing"
        );
        // Left-to-right brightness contrast, against the plain picture's.
        let contrast = |img: &RgbaImage| {
            let half = |range: std::ops::Range<u32>| {
                let mut sum = 0f64;
                for y in 0..img.height() {
                    for x in range.clone() {
                        sum += f64::from(img.get_pixel(x, y)[1]);
                    }
                }
                sum / f64::from(img.height() * range.len() as u32)
            };
            half(32..64) - half(0..32)
        };
        let (c_plain, c_guided) = (contrast(&plain[0]), contrast(&guided[0]));
        assert!(
            c_guided > c_plain + 40.0,
            "the guide's bright right half shows: {c_plain} → {c_guided}"
        );
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
        let (a, progress) = run(t2i(generation(7))).await;
        let (b, _) = run(t2i(generation(7))).await;
        let (c, _) = run(t2i(generation(8))).await;
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
        let (batch, progress) = run(t2i(Generation {
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
        let (t2i, _) = run(t2i(generation(3))).await;
        assert_eq!(fresh[0].as_raw(), t2i[0].as_raw());
    }

    #[tokio::test]
    async fn a_false_answer_stops_the_render() {
        let steps = Arc::new(Mutex::new(0));
        let seen = steps.clone();
        let out = CpuReference
            .run(
                t2i(Generation {
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
