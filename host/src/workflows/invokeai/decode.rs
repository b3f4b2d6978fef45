//! One image decode of the export followed back to its denoise step, as
//! the values of a params node: model (through LoRA loaders), sampler,
//! prompts, size, seed and the strength of an encoded source image.

use serde_json::{Map, Value, json};

use super::MAX_DEPTH;
use super::export::Export;
use crate::inference::invokeai::sampler_of;
use crate::models::ModelCatalogue;
use crate::workflows::definition::DefinitionError;

/// A decode node's denoise step as the values of a params node.
pub(super) fn decode<'a>(
    x: &mut Export<'a>,
    decode_id: &'a str,
    params: &str,
    edges: &mut Vec<Value>,
) -> Result<Map<String, Value>, DefinitionError> {
    let Some((denoise_id, _)) = x.source(decode_id, "latents") else {
        return Err(DefinitionError::node(
            decode_id,
            "its latents are not connected",
        ));
    };
    let denoise = x.node(denoise_id)?;
    let flux = denoise.kind == "flux_denoise";
    if !flux && denoise.kind != "denoise_latents" {
        return Err(DefinitionError::node(
            decode_id,
            format!("latents from {}, not a denoise step", denoise.kind),
        ));
    }
    let mut values = Map::new();
    // The model, through any LoRA loaders.
    let mut at = x
        .source(denoise_id, if flux { "transformer" } else { "unet" })
        .map(|(s, _)| s)
        .ok_or_else(|| DefinitionError::node(denoise_id, "no model is connected"))?;
    let mut loras = Vec::new();
    let model = loop {
        if loras.len() > MAX_DEPTH {
            return Err(DefinitionError::node(
                at,
                format!("more than {MAX_DEPTH} LoRA loaders before a model loader (a cycle?)"),
            ));
        }
        let n = x.node(at)?;
        match n.kind {
            "lora_loader" | "sdxl_lora_loader" => {
                let weight = n.value("weight").and_then(Value::as_f64).unwrap_or(1.0);
                loras.push((at, n.value("lora"), weight));
                at = x
                    .source(at, "unet")
                    .map(|(s, _)| s)
                    .ok_or_else(|| DefinitionError::node(at, "no model is connected"))?;
            }
            "main_model_loader" | "sdxl_model_loader" | "flux_model_loader" => {
                let base = match n.kind {
                    "sdxl_model_loader" => "sdxl",
                    "flux_model_loader" => "flux",
                    _ => "sd-1",
                };
                break (
                    x.map_model(at, "model", "main", n.value("model"), Some(base))?,
                    base,
                );
            }
            other => {
                return Err(DefinitionError::node(
                    at,
                    format!("{other} where a model loader was expected"),
                ));
            }
        }
    };
    values.insert("model".into(), json!(model.0));
    let base = catalogue_base(x.catalogue, &model.0).unwrap_or_else(|| model.1.to_owned());
    let mut lora_values = Vec::new();
    for (node, reference, weight) in loras.into_iter().rev() {
        let name = x.map_model(node, "lora", "lora", reference, Some(&base))?;
        lora_values.push(json!({ "name": name, "weight": weight }));
    }
    if !lora_values.is_empty() {
        values.insert("loras".into(), Value::Array(lora_values));
    }
    if x.nodes.values().any(|n| n.kind == "vae_loader") {
        x.notes
            .push("vae_loader: the catalogue model's own VAE is used".into());
    }

    let steps = denoise.value(if flux { "num_steps" } else { "steps" });
    let cfg = denoise.value(if flux { "guidance" } else { "cfg_scale" });
    let scheduler = denoise.value("scheduler").and_then(Value::as_str);
    let start = denoise
        .value("denoising_start")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    if let Some(s) = steps {
        values.insert("steps".into(), s.clone());
    }
    if let Some(c) = cfg {
        values.insert("cfg_scale".into(), c.clone());
    }
    if let Some(s) = scheduler {
        let (sampler, exact) = sampler_of(s);
        if !exact {
            x.notes.push(format!(
                "scheduler {}: the nearest sampler, {sampler}, is used",
                super::export::quoted(s)
            ));
        }
        values.insert("sampler".into(), json!(sampler));
    }

    // Prompts.
    let (pos, neg) = if flux {
        ("positive_text_conditioning", None)
    } else {
        ("positive_conditioning", Some("negative_conditioning"))
    };
    for (field, key) in [(Some(pos), "prompt"), (neg, "negative_prompt")] {
        let Some(field) = field else { continue };
        let Some((enc, _)) = x.source(denoise_id, field) else {
            continue;
        };
        let src = x.resolve(enc, "prompt")?;
        x.apply(src, key, &mut values, edges, params, "string")?;
    }
    if !values.contains_key("prompt")
        && !edges.iter().any(|e| e["to"] == format!("{params}.prompt"))
    {
        values.insert("prompt".into(), json!(""));
    }

    // Size and seed: on the noise node, or (FLUX) on the denoise step.
    let size_node = if flux {
        Some(denoise_id)
    } else {
        x.source(denoise_id, "noise").map(|(n, _)| n)
    };
    if let Some(sn) = size_node {
        for (field, ty) in [
            ("width", "integer"),
            ("height", "integer"),
            ("seed", "integer"),
        ] {
            let src = x.resolve(sn, field)?;
            x.apply(src, field, &mut values, edges, params, ty)?;
        }
    }

    // An encoded source image: image-to-image at 1 − denoising_start.
    if let Some((enc, _)) = x.source(denoise_id, "latents") {
        let kind = x.node(enc)?.kind;
        if kind != "i2l" && kind != "flux_vae_encode" {
            return Err(DefinitionError::node(
                enc,
                format!("{kind} as the source latents is not supported"),
            ));
        }
        let strength = ((1.0 - start) * 100.0).round() / 100.0;
        values.insert("strength".into(), json!(strength.clamp(0.0, 1.0)));
    }
    Ok(values)
}

fn catalogue_base(catalogue: &ModelCatalogue, model: &str) -> Option<String> {
    catalogue.get(model).and_then(|m| m.base.clone())
}
