//! InvokeAI workflow import: an export of InvokeAI's workflow library
//! (`nodes` of `invocation`s with their `inputs`, `edges` between field
//! handles, `exposedFields`) converted into a graph definition. The core
//! graphs are recognised from each image decode back to its denoise step:
//! model loader (through LoRA loaders), prompts (through `string` and
//! `string_join` nodes), noise (size, seed), sampler, and an encoded source
//! image for image-to-image; upscalers become upscale nodes. Node types it
//! cannot map are all named in the error, never dropped. Model references
//! map to catalogue models by hash, then name, then the catalogue's model
//! for the loader's base; the mapping is returned so the user can change it.
//!
//! An import is bounded: nodes, edges, image producers and inputs are
//! counted, each field is resolved once (`resolve`), every resolved text is
//! held to the prompt limit while it is built, and the whole conversion has
//! a time budget checked as it goes. The caller runs it on the blocking
//! pool, never on the async runtime (`Workflows::convert`).

mod decode;
mod export;
mod resolve;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use super::definition::{self, DefinitionError};
use crate::models::ModelCatalogue;
use export::Export;

/// Nodes an export may hold (more than any real workflow).
const MAX_EXPORT_NODES: usize = 512;
/// Edges an export may hold (each node's fields, generously).
const MAX_EXPORT_EDGES: usize = 2048;
/// How far a value is followed through `string`/`string_join` nodes, and
/// LoRA loaders through to their model loader; an export that goes deeper
/// is a cycle or a construction.
const MAX_DEPTH: usize = 32;
/// Image decodes and upscalers: each becomes at least one node of the
/// converted graph, which holds at most `definition::MAX_NODES`.
const MAX_PRODUCERS: usize = definition::MAX_NODES;
/// How long one conversion may take; past it the import is refused.
pub const IMPORT_TIME_LIMIT: Duration = Duration::from_secs(2);

/// Invocation types the importer understands.
const MAPPED: &[&str] = &[
    "main_model_loader",
    "sdxl_model_loader",
    "flux_model_loader",
    "vae_loader",
    "lora_loader",
    "sdxl_lora_loader",
    "compel",
    "sdxl_compel_prompt",
    "flux_text_encoder",
    "noise",
    "denoise_latents",
    "flux_denoise",
    "l2i",
    "i2l",
    "flux_vae_encode",
    "flux_vae_decode",
    "rand_int",
    "string",
    "string_join",
    "integer",
    "float",
    "esrgan",
    "spandrel_image_to_image",
];

/// How a model reference of the export was matched.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelMapping {
    /// The InvokeAI node that names it.
    pub node: String,
    /// `model` or `lora`.
    pub role: &'static str,
    /// What the export says (`key`, `hash`, `name`, `base`), or null.
    pub reference: Value,
    /// The catalogue model chosen.
    pub model: String,
    /// `hash`, `name` or `base`.
    pub matched_by: &'static str,
}

/// A converted export.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Imported {
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    pub definition: Value,
    pub models: Vec<ModelMapping>,
    /// What was approximated or left aside, for the user to review.
    pub notes: Vec<String>,
}

/// Whether `v` looks like an InvokeAI export (not a graph definition).
pub fn is_export(v: &Value) -> bool {
    v.get("kind").is_none()
        && v.get("nodes")
            .and_then(Value::as_array)
            .is_some_and(|n| n.iter().any(|x| x.get("data").is_some()))
}

/// Converts an InvokeAI export into a graph definition, within
/// [`IMPORT_TIME_LIMIT`] from now. CPU-bound: callers run it on the
/// blocking pool.
pub fn import(export: &Value, catalogue: &ModelCatalogue) -> Result<Imported, DefinitionError> {
    import_within(export, catalogue, Instant::now() + IMPORT_TIME_LIMIT)
}

/// The time budget of one conversion.
#[derive(Debug, Clone, Copy)]
struct Deadline(Instant);

impl Deadline {
    fn check(self) -> Result<(), DefinitionError> {
        if Instant::now() > self.0 {
            return Err(DefinitionError::whole(format!(
                "the import took longer than its time limit of {} s",
                IMPORT_TIME_LIMIT.as_secs_f32()
            )));
        }
        Ok(())
    }
}

/// [`import`] with its deadline given.
fn import_within(
    export: &Value,
    catalogue: &ModelCatalogue,
    deadline: Instant,
) -> Result<Imported, DefinitionError> {
    let mut x = Export::read(export, catalogue, Deadline(deadline))?;

    // Images the graph makes: decodes and upscales, in a stable order.
    let mut producers: Vec<(&str, &str)> = x
        .nodes
        .iter()
        .filter(|(_, n)| {
            [
                "l2i",
                "flux_vae_decode",
                "esrgan",
                "spandrel_image_to_image",
            ]
            .contains(&n.kind)
        })
        .map(|(id, n)| (*id, n.kind))
        .collect();
    producers.sort();
    if producers.is_empty() {
        return Err(DefinitionError::whole(
            "no image decode (l2i, flux_vae_decode) or upscale node",
        ));
    }
    if producers.len() > MAX_PRODUCERS {
        return Err(DefinitionError::whole(format!(
            "at most {MAX_PRODUCERS} image decode or upscale nodes"
        )));
    }
    let mut out_nodes: Vec<Value> = Vec::new();
    let mut out_edges: Vec<Value> = Vec::new();
    // InvokeAI id → our node id and out-port of its images.
    let mut made: HashMap<&str, String> = HashMap::new();
    let mut consumed = BTreeSet::new();
    for (i, &(id, kind)) in producers.iter().enumerate() {
        x.deadline.check()?;
        let ours = format!("n{}", i + 1);
        if is_upscaler(kind) {
            let n = x.node(id)?;
            let model_name = n
                .value("model_name")
                .or_else(|| n.value("image_to_image_model").and_then(|m| m.get("name")))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_lowercase();
            let scale = if model_name.contains("x2") { 2 } else { 4 };
            out_nodes.push(json!({ "id": ours, "type": "upscale", "scale": scale }));
            x.notes.push(format!(
                "{kind} {id}: upscale ×{scale} on the catalogue's upscaler"
            ));
            made.insert(id, ours);
            continue;
        }
        let (params, step) = (format!("{ours}_params"), ours.clone());
        let values = decode::decode(&mut x, id, &params, &mut out_edges)?;
        let image_to_image = values.contains_key("strength");
        out_nodes.push(json!({ "id": params, "type": "params", "values": Value::Object(values) }));
        out_nodes.push(json!({
            "id": step,
            "type": if image_to_image { "image_to_image" } else { "text_to_image" },
        }));
        out_edges
            .push(json!({ "from": format!("{params}.params"), "to": format!("{step}.params") }));
        if image_to_image {
            x.image_input();
            out_edges.push(json!({ "from": "inputs.image", "to": format!("{step}.source") }));
        }
        made.insert(id, ours);
    }
    // Upscalers take the image of the node before them (or an input).
    for &(id, kind) in &producers {
        if !is_upscaler(kind) {
            continue;
        }
        let ours = made[id].clone();
        let from = match x.source(id, "image") {
            Some((src, _)) if made.contains_key(src) => {
                consumed.insert(src);
                format!("{}.images", made[src])
            }
            _ => {
                x.image_input();
                "inputs.image".into()
            }
        };
        out_edges.push(json!({ "from": from, "to": format!("{ours}.source") }));
    }
    for &(id, _) in &producers {
        if !consumed.contains(id) {
            let out = format!("{}_out", made[id]);
            out_nodes.push(json!({ "id": out, "type": "output" }));
            out_edges.push(
                json!({ "from": format!("{}.images", made[id]), "to": format!("{out}.images") }),
            );
        }
    }
    let text = |k: &str| {
        export
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    Ok(Imported {
        name: Some(text("name"))
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| "Imported InvokeAI workflow".into()),
        description: text("description"),
        tags: text("tags")
            .split(',')
            .map(tag_of)
            .filter(|t| !t.is_empty())
            .take(super::MAX_TAGS)
            .collect(),
        definition: json!({
            "kind": "graph",
            "inputs": x.inputs,
            "nodes": out_nodes,
            "edges": out_edges,
        }),
        models: x.models,
        notes: x.notes,
    })
}

fn is_upscaler(kind: &str) -> bool {
    kind == "esrgan" || kind == "spandrel_image_to_image"
}

/// An export's tag as ours: lowercase letters, digits, `-` and `_`.
fn tag_of(t: &str) -> String {
    let t: String = t
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(32)
        .collect();
    t.trim_matches('-').to_owned()
}
