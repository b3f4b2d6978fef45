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

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::definition::DefinitionError;
use crate::inference::invokeai::sampler_of;
use crate::models::ModelCatalogue;

/// Nodes an export may hold (more than any real workflow).
const MAX_EXPORT_NODES: usize = 512;
/// How far a value is followed through `string`/`string_join` nodes, and
/// LoRA loaders through to their model loader; an export that goes deeper
/// is a cycle or a construction.
const MAX_DEPTH: usize = 32;

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

struct Node {
    kind: String,
    label: String,
    inputs: Map<String, Value>,
}

impl Node {
    /// A field's static value (`null` when unset).
    fn value(&self, field: &str) -> Option<&Value> {
        self.inputs
            .get(field)
            .and_then(|f| f.get("value"))
            .filter(|v| !v.is_null())
    }
}

/// What a prompt, number or image field of the core graph resolves to.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    Value(Value),
    /// A random seed (`rand_int`).
    Random,
    /// A field the export exposes to its user: becomes a workflow input
    /// (named by the node's label, else by the field it sets).
    Exposed {
        label: String,
        default: Value,
    },
}

struct Export<'a> {
    nodes: HashMap<String, Node>,
    /// (target node, field) → (source node, field).
    edges: HashMap<(String, String), (String, String)>,
    exposed: BTreeSet<(String, String)>,
    catalogue: &'a ModelCatalogue,
    models: Vec<ModelMapping>,
    notes: Vec<String>,
    inputs: Vec<Value>,
}

fn bad(reason: impl Into<String>) -> DefinitionError {
    DefinitionError::whole(reason)
}

fn input_name(label: &str, field: &str) -> String {
    let base = if label.trim().is_empty() {
        field
    } else {
        label
    };
    let mut s: String = base
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    while s.contains("__") {
        s = s.replace("__", "_");
    }
    let s = s.trim_matches('_').to_owned();
    let s = if s.is_empty() { field.to_owned() } else { s };
    s.chars().take(40).collect()
}

impl Export<'_> {
    fn node(&self, id: &str) -> Result<&Node, DefinitionError> {
        self.nodes
            .get(id)
            .ok_or_else(|| bad(format!("an edge names the missing node {id}")))
    }

    fn source(&self, node: &str, field: &str) -> Option<&(String, String)> {
        self.edges.get(&(node.to_owned(), field.to_owned()))
    }

    /// What `node.field` resolves to: an exposed field, a connected
    /// `string`/`string_join`/`integer`/`float`/`rand_int`, or its value.
    fn resolve(&self, node: &str, field: &str) -> Result<Option<Source>, DefinitionError> {
        self.resolve_within(node, field, MAX_DEPTH)
    }

    fn resolve_within(
        &self,
        node: &str,
        field: &str,
        depth: usize,
    ) -> Result<Option<Source>, DefinitionError> {
        let Some(depth) = depth.checked_sub(1) else {
            return Err(DefinitionError::node(
                node,
                format!("{field}: followed through more than {MAX_DEPTH} nodes (a cycle?)"),
            ));
        };
        let n = self.node(node)?;
        if self.exposed.contains(&(node.to_owned(), field.to_owned())) {
            let default = n.value(field).cloned().unwrap_or(Value::Null);
            return Ok(Some(Source::Exposed {
                label: n.label.clone(),
                default,
            }));
        }
        let Some((from, from_field)) = self.source(node, field) else {
            return Ok(n.value(field).cloned().map(Source::Value));
        };
        let src = self.node(from)?;
        match src.kind.as_str() {
            "rand_int" => Ok(Some(Source::Random)),
            "string" | "integer" | "float" => self.resolve_within(from, "value", depth),
            "string_join" => {
                let part = |f: &str| -> Result<String, DefinitionError> {
                    Ok(match self.resolve_within(from, f, depth)? {
                        Some(Source::Value(v) | Source::Exposed { default: v, .. }) => {
                            v.as_str().unwrap_or_default().to_owned()
                        }
                        _ => String::new(),
                    })
                };
                Ok(Some(Source::Value(json!(format!(
                    "{}{}",
                    part("string_left")?,
                    part("string_right")?
                )))))
            }
            // Another node's output (noise, an encoder's size …): the
            // caller decides what it means.
            _ => Ok(Some(Source::Value(
                json!({ "from": from, "field": from_field }),
            ))),
        }
    }

    /// Sets `values[key]` from a resolved field; an exposed one becomes an
    /// input wired to the params node's port of that name.
    fn apply(
        &mut self,
        src: Option<Source>,
        key: &str,
        values: &mut Map<String, Value>,
        edges: &mut Vec<Value>,
        params: &str,
        ty: &str,
    ) {
        match src {
            Some(Source::Value(v)) if !v.is_object() => {
                values.insert(key.into(), v);
            }
            Some(Source::Random) => {
                values.insert(key.into(), json!(-1));
            }
            Some(Source::Exposed { label, default }) => {
                let base = input_name(&label, key);
                let mut input = base.clone();
                let mut n = 1;
                while self.inputs.iter().any(|i| i["name"] == input.as_str()) {
                    n += 1;
                    input = format!("{base}_{n}");
                }
                let mut decl = json!({ "name": input, "type": ty });
                if !default.is_null() {
                    decl["default"] = default;
                }
                self.inputs.push(decl);
                edges.push(
                    json!({ "from": format!("inputs.{input}"), "to": format!("{params}.{key}") }),
                );
            }
            _ => {}
        }
    }

    /// The catalogue model a reference maps to: by hash, then name, then
    /// the catalogue's first model of `kind` for `base`.
    fn map_model(
        &mut self,
        node: &str,
        role: &'static str,
        kind: &str,
        reference: Option<&Value>,
        base: Option<&str>,
    ) -> Result<String, DefinitionError> {
        let r = reference.cloned().unwrap_or(Value::Null);
        let text = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_lowercase);
        let base = text("base").or(base.map(str::to_owned));
        let of_kind = || self.catalogue.all().iter().filter(|m| m.kind == kind);
        let found = if let Some(h) = text("hash").filter(|h| !h.is_empty()) {
            of_kind()
                .find(|m| !m.hash.is_empty() && h.contains(&m.hash.to_lowercase()))
                .map(|m| (m.name.clone(), "hash"))
        } else {
            None
        }
        .or_else(|| {
            let name = text("name")?;
            of_kind()
                .find(|m| m.name.to_lowercase() == name || m.display_name.to_lowercase() == name)
                .map(|m| (m.name.clone(), "name"))
        })
        .or_else(|| {
            let b = base.as_deref()?;
            of_kind()
                .find(|m| m.base.as_deref() == Some(b))
                .map(|m| (m.name.clone(), "base"))
        });
        let Some((model, matched_by)) = found else {
            return Err(DefinitionError::node(
                node,
                format!(
                    "no catalogue {kind} model for {}",
                    if r.is_null() {
                        format!("base {}", base.as_deref().unwrap_or("unknown"))
                    } else {
                        r.to_string()
                    }
                ),
            ));
        };
        self.models.push(ModelMapping {
            node: node.to_owned(),
            role,
            reference: r,
            model: model.clone(),
            matched_by,
        });
        Ok(model)
    }
}

/// Converts an InvokeAI export into a graph definition.
pub fn import(export: &Value, catalogue: &ModelCatalogue) -> Result<Imported, DefinitionError> {
    let raw_nodes = export
        .get("nodes")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("an InvokeAI workflow has a nodes list"))?;
    if raw_nodes.len() > MAX_EXPORT_NODES {
        return Err(bad(format!("at most {MAX_EXPORT_NODES} nodes")));
    }
    let mut nodes = HashMap::new();
    let mut unknown = BTreeSet::new();
    for n in raw_nodes {
        if n.get("type").and_then(Value::as_str) == Some("notes") {
            continue;
        }
        let data = n.get("data").ok_or_else(|| bad("a node without data"))?;
        let id = data
            .get("id")
            .or_else(|| n.get("id"))
            .and_then(Value::as_str)
            .ok_or_else(|| bad("a node without an id"))?;
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if !MAPPED.contains(&kind.as_str()) {
            unknown.insert(kind.clone());
        }
        nodes.insert(
            id.to_owned(),
            Node {
                kind,
                label: data
                    .get("label")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                inputs: data
                    .get("inputs")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default(),
            },
        );
    }
    if !unknown.is_empty() {
        return Err(bad(format!(
            "node types that cannot be imported: {}",
            unknown.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    let mut edges = HashMap::new();
    for e in export
        .get("edges")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        // Collapsed edges only draw the UI; the default ones carry fields.
        let (Some(s), Some(sh), Some(t), Some(th)) = (
            e.get("source").and_then(Value::as_str),
            e.get("sourceHandle").and_then(Value::as_str),
            e.get("target").and_then(Value::as_str),
            e.get("targetHandle").and_then(Value::as_str),
        ) else {
            continue;
        };
        edges.insert((t.to_owned(), th.to_owned()), (s.to_owned(), sh.to_owned()));
    }
    let exposed = export
        .get("exposedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|f| {
            Some((
                f.get("nodeId")?.as_str()?.to_owned(),
                f.get("fieldName")?.as_str()?.to_owned(),
            ))
        })
        .collect();
    let mut x = Export {
        nodes,
        edges,
        exposed,
        catalogue,
        models: Vec::new(),
        notes: Vec::new(),
        inputs: Vec::new(),
    };

    // Images the graph makes: decodes and upscales, in a stable order.
    let mut producers: Vec<(String, String)> = x
        .nodes
        .iter()
        .filter(|(_, n)| {
            [
                "l2i",
                "flux_vae_decode",
                "esrgan",
                "spandrel_image_to_image",
            ]
            .contains(&n.kind.as_str())
        })
        .map(|(id, n)| (id.clone(), n.kind.clone()))
        .collect();
    producers.sort();
    if producers.is_empty() {
        return Err(bad(
            "no image decode (l2i, flux_vae_decode) or upscale node",
        ));
    }
    let mut out_nodes: Vec<Value> = Vec::new();
    let mut out_edges: Vec<Value> = Vec::new();
    // InvokeAI id → our node id and out-port of its images.
    let mut made: HashMap<String, String> = HashMap::new();
    let mut consumed = BTreeSet::new();
    for (i, (id, kind)) in producers.iter().enumerate() {
        let ours = format!("n{}", i + 1);
        if kind == "esrgan" || kind == "spandrel_image_to_image" {
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
            made.insert(id.clone(), ours);
            continue;
        }
        let (params, step) = (format!("{ours}_params"), ours.clone());
        let values = decode(&mut x, id, &params, &mut out_edges)?;
        let image_to_image = values.contains_key("strength");
        out_nodes.push(json!({ "id": params, "type": "params", "values": Value::Object(values) }));
        out_nodes.push(json!({
            "id": step,
            "type": if image_to_image { "image_to_image" } else { "text_to_image" },
        }));
        out_edges
            .push(json!({ "from": format!("{params}.params"), "to": format!("{step}.params") }));
        if image_to_image {
            if !x.inputs.iter().any(|i| i["name"] == "image") {
                x.inputs.push(json!({ "name": "image", "type": "image" }));
            }
            out_edges.push(json!({ "from": "inputs.image", "to": format!("{step}.source") }));
        }
        made.insert(id.clone(), ours);
    }
    // Upscalers take the image of the node before them (or an input).
    for (id, kind) in &producers {
        if kind != "esrgan" && kind != "spandrel_image_to_image" {
            continue;
        }
        let ours = made[id].clone();
        let from = match x.source(id, "image") {
            Some((src, _)) if made.contains_key(src) => {
                consumed.insert(src.clone());
                format!("{}.images", made[src])
            }
            _ => {
                if !x.inputs.iter().any(|i| i["name"] == "image") {
                    x.inputs.push(json!({ "name": "image", "type": "image" }));
                }
                "inputs.image".into()
            }
        };
        out_edges.push(json!({ "from": from, "to": format!("{ours}.source") }));
    }
    for (id, _) in &producers {
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

/// A decode node's denoise step as the values of a params node.
fn decode(
    x: &mut Export<'_>,
    decode_id: &str,
    params: &str,
    edges: &mut Vec<Value>,
) -> Result<Map<String, Value>, DefinitionError> {
    let denoise_id = match x.source(decode_id, "latents") {
        Some((d, _)) => d.clone(),
        None => {
            return Err(DefinitionError::node(
                decode_id,
                "its latents are not connected",
            ));
        }
    };
    let denoise = x.node(&denoise_id)?;
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
        .source(&denoise_id, if flux { "transformer" } else { "unet" })
        .map(|(s, _)| s.clone())
        .ok_or_else(|| DefinitionError::node(&denoise_id, "no model is connected"))?;
    let mut loras = Vec::new();
    let model = loop {
        if loras.len() > MAX_DEPTH {
            return Err(DefinitionError::node(
                &at,
                format!("more than {MAX_DEPTH} LoRA loaders before a model loader (a cycle?)"),
            ));
        }
        let n = x.node(&at)?;
        match n.kind.as_str() {
            "lora_loader" | "sdxl_lora_loader" => {
                let weight = n.value("weight").and_then(Value::as_f64).unwrap_or(1.0);
                loras.push((at.clone(), n.value("lora").cloned(), weight));
                at = x
                    .source(&at, "unet")
                    .map(|(s, _)| s.clone())
                    .ok_or_else(|| DefinitionError::node(&at, "no model is connected"))?;
            }
            "main_model_loader" | "sdxl_model_loader" | "flux_model_loader" => {
                let base = match n.kind.as_str() {
                    "sdxl_model_loader" => "sdxl",
                    "flux_model_loader" => "flux",
                    _ => "sd-1",
                };
                let reference = n.value("model").cloned();
                let loader = at.clone();
                break (
                    x.map_model(&loader, "model", "main", reference.as_ref(), Some(base))?,
                    base,
                );
            }
            other => {
                return Err(DefinitionError::node(
                    &at,
                    format!("{other} where a model loader was expected"),
                ));
            }
        }
    };
    values.insert("model".into(), json!(model.0));
    let base = catalogue_base(x.catalogue, &model.0).unwrap_or_else(|| model.1.to_owned());
    let mut lora_values = Vec::new();
    for (node, reference, weight) in loras.into_iter().rev() {
        let name = x.map_model(&node, "lora", "lora", reference.as_ref(), Some(&base))?;
        lora_values.push(json!({ "name": name, "weight": weight }));
    }
    if !lora_values.is_empty() {
        values.insert("loras".into(), Value::Array(lora_values));
    }
    if x.nodes.values().any(|n| n.kind == "vae_loader") {
        x.notes
            .push("vae_loader: the catalogue model's own VAE is used".into());
    }

    let denoise = x.node(&denoise_id)?;
    let steps = denoise
        .value(if flux { "num_steps" } else { "steps" })
        .cloned();
    let cfg = denoise
        .value(if flux { "guidance" } else { "cfg_scale" })
        .cloned();
    let scheduler = denoise
        .value("scheduler")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let start = denoise
        .value("denoising_start")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    if let Some(s) = steps {
        values.insert("steps".into(), s);
    }
    if let Some(c) = cfg {
        values.insert("cfg_scale".into(), c);
    }
    if let Some(s) = scheduler {
        let (sampler, exact) = sampler_of(&s);
        if !exact {
            x.notes.push(format!(
                "scheduler {s}: the nearest sampler, {sampler}, is used"
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
        let Some((enc, _)) = x.source(&denoise_id, field).cloned() else {
            continue;
        };
        let src = x.resolve(&enc, "prompt")?;
        x.apply(src, key, &mut values, edges, params, "string");
    }
    if !values.contains_key("prompt")
        && !edges.iter().any(|e| e["to"] == format!("{params}.prompt"))
    {
        values.insert("prompt".into(), json!(""));
    }

    // Size and seed: on the noise node, or (FLUX) on the denoise step.
    let size_node = if flux {
        Some(denoise_id.clone())
    } else {
        x.source(&denoise_id, "noise").map(|(n, _)| n.clone())
    };
    if let Some(sn) = size_node {
        for (field, ty) in [
            ("width", "integer"),
            ("height", "integer"),
            ("seed", "integer"),
        ] {
            let src = x.resolve(&sn, field)?;
            x.apply(src, field, &mut values, edges, params, ty);
        }
    }

    // An encoded source image: image-to-image at 1 − denoising_start.
    if let Some((enc, _)) = x.source(&denoise_id, "latents").cloned() {
        let kind = x.node(&enc)?.kind.clone();
        if kind != "i2l" && kind != "flux_vae_encode" {
            return Err(DefinitionError::node(
                &enc,
                format!("{kind} as the source latents is not supported"),
            ));
        }
        let strength = ((1.0 - start) * 100.0).round() / 100.0;
        values.insert("strength".into(), json!(strength.clamp(0.0, 1.0)));
    }
    Ok(values)
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

fn catalogue_base(catalogue: &ModelCatalogue, model: &str) -> Option<String> {
    catalogue.get(model).and_then(|m| m.base.clone())
}
