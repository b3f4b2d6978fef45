//! `hires-fix`: a workflow component. Generates at a base size, upscales,
//! then refines the upscaled image with image-to-image at a low strength —
//! detail at a size the model was not trained for. Given an `image` input
//! it starts from that image instead of generating one.
//!
//! Inputs (JSON): `prompt` (required), `negative_prompt`, `model`
//! (`stable-diffusion-1.5`), `width`/`height` (base size, 512), `steps`
//! (20; the refine pass takes half), `cfg_scale` (7.5), `seed` (-1),
//! `scale` (2), `strength` (0.35), `upscaler` (`real-esrgan`), `post_node`
//! (a post-node `name@version` run over the result), `lora` and
//! `lora_weight` (1.0): a LoRA applied to both diffusion passes (the
//! definition must declare it on those steps).

wit_bindgen::generate!({ path: "../../wit/plugin@0.2.1", world: "workflow" });

use pingvas::plugin::types::{GenerationParams, Lora};
use pingvas::plugin::{inference, job_inputs, nodes, progress};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Inputs {
    prompt: String,
    #[serde(default)]
    negative_prompt: String,
    #[serde(default = "model")]
    model: String,
    #[serde(default = "base")]
    width: u32,
    #[serde(default = "base")]
    height: u32,
    #[serde(default = "steps")]
    steps: u32,
    #[serde(default = "cfg")]
    cfg_scale: f32,
    #[serde(default = "random")]
    seed: i64,
    #[serde(default = "two")]
    scale: u32,
    #[serde(default = "low")]
    strength: f32,
    #[serde(default = "upscaler")]
    upscaler: String,
    /// A post-node (`name@version`) to run over the result, if any.
    #[serde(default)]
    post_node: Option<String>,
    #[serde(default)]
    lora: Option<String>,
    #[serde(default = "full")]
    lora_weight: f32,
}

fn full() -> f32 {
    1.0
}

fn model() -> String {
    "stable-diffusion-1.5".into()
}
fn base() -> u32 {
    512
}
fn steps() -> u32 {
    20
}
fn cfg() -> f32 {
    7.5
}
fn random() -> i64 {
    -1
}
fn two() -> u32 {
    2
}
fn low() -> f32 {
    0.35
}
fn upscaler() -> String {
    "real-esrgan".into()
}

fn params(i: &Inputs, width: u32, height: u32, steps: u32, strength: Option<f32>) -> GenerationParams {
    GenerationParams {
        prompt: i.prompt.clone(),
        negative_prompt: i.negative_prompt.clone(),
        model: i.model.clone(),
        width,
        height,
        steps,
        cfg_scale: i.cfg_scale,
        sampler: "euler_a".into(),
        seed: i.seed,
        batch_size: 1,
        loras: i
            .lora
            .iter()
            .map(|name| Lora {
                name: name.clone(),
                weight: i.lora_weight,
            })
            .collect(),
        strength,
    }
}

struct HiresFix;

impl Guest for HiresFix {
    fn run(inputs: String) -> Result<WorkflowOutput, PluginError> {
        let i: Inputs = serde_json::from_str(&inputs)
            .map_err(|e| PluginError::InvalidInput(format!("inputs: {e}")))?;
        let start: Image = match job_inputs::image("image") {
            Some(given) => given,
            None => {
                progress::report(5, "generating at the base size");
                inference::text_to_image(&params(&i, i.width, i.height, i.steps, None))?
                    .into_iter()
                    .next()
                    .ok_or_else(|| PluginError::Failed("text-to-image made no image".into()))?
            }
        };
        progress::report(40, "upscaling");
        let big = inference::upscale(&start, i.scale, &i.upscaler)?;
        let (w, h) = (big.width(), big.height());
        progress::report(70, "refining");
        let refine = params(&i, w, h, (i.steps / 2).max(1), Some(i.strength));
        let mut refined = inference::image_to_image(&refine, &big)?;
        if let Some(node) = &i.post_node {
            progress::report(90, &format!("running {node}"));
            refined = nodes::run_post(node, &refine, refined, "{}")?;
        }
        for img in &refined {
            img.set_metadata("workflow.hires-fix", &format!("{}x{} → {w}x{h}", start.width(), start.height()));
        }
        progress::report(100, "done");
        Ok(WorkflowOutput {
            images: refined,
            outputs: serde_json::json!({ "base": [start.width(), start.height()], "final": [w, h] })
                .to_string(),
        })
    }
}

export!(HiresFix);
