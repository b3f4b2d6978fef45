//! `pingvas plugin check`: the publish validation plus one sandboxed call
//! with sample input, reporting what it took — an author's local loop.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

use super::image_handle::ImageHandle;
use super::registry::{RegistryError, check_component};
use super::runtime::Params;
use super::{PluginKind, PluginRuntime, limits};

/// The sample input of a check call (all fields optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckInput {
    pub prompt: Option<String>,
    pub negative_prompt: Option<String>,
    pub model: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub steps: Option<u32>,
    pub seed: Option<i64>,
    /// The node's parameters (its `config`).
    pub config: Option<serde_json::Value>,
    /// Size of the sample image a post-node gets.
    pub image_width: Option<u32>,
    pub image_height: Option<u32>,
}

pub struct CheckReport {
    pub lines: Vec<String>,
}

fn sample_params(i: &CheckInput) -> Params {
    let d = Params::default();
    Params {
        prompt: i.prompt.clone().unwrap_or(d.prompt),
        negative_prompt: i.negative_prompt.clone().unwrap_or(d.negative_prompt),
        model: i.model.clone().unwrap_or(d.model),
        width: i.width.unwrap_or(d.width),
        height: i.height.unwrap_or(d.height),
        steps: i.steps.unwrap_or(d.steps),
        seed: i.seed.unwrap_or(d.seed),
        ..d
    }
}

/// A colourful gradient to feed post-nodes.
pub fn sample_image(w: u32, h: u32) -> ImageHandle {
    let mut px = Vec::with_capacity(w as usize * h as usize * 4);
    for y in 0..h {
        for x in 0..w {
            px.extend_from_slice(&[
                (x * 255 / w.max(1)) as u8,
                (y * 255 / h.max(1)) as u8,
                128,
                255,
            ]);
        }
    }
    ImageHandle::new(w, h, px).expect("sample image size is valid")
}

/// A config that satisfies a node's parameter schema, for a check run
/// without `--input`: each property's `default`, first of `examples`,
/// `const` or first `enum` value; a required property without any of
/// them gets a plain value of its type (the minimum for numbers); other
/// properties are left out, so the node uses its own defaults.
pub fn sample_config(schema: &Value) -> Value {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut out = serde_json::Map::new();
    if let Some(props) = schema["properties"].as_object() {
        for (name, prop) in props {
            let chosen = prop
                .get("default")
                .or_else(|| prop["examples"].get(0))
                .or_else(|| prop.get("const"))
                .or_else(|| prop["enum"].get(0))
                .cloned();
            match chosen {
                Some(v) => {
                    out.insert(name.clone(), v);
                }
                None if required.contains(&name.as_str()) => {
                    out.insert(name.clone(), plain_value(prop));
                }
                None => {}
            }
        }
    }
    Value::Object(out)
}

/// A value of the schema's type.
fn plain_value(schema: &Value) -> Value {
    let number = || schema.get("minimum").cloned().unwrap_or(json!(0));
    match schema["type"].as_str() {
        Some("object") => sample_config(schema),
        Some("array") => {
            let n = schema["minItems"].as_u64().unwrap_or(0) as usize;
            Value::Array(vec![plain_value(&schema["items"]); n])
        }
        Some("number" | "integer") => number(),
        Some("boolean") => Value::Bool(false),
        Some("null") => Value::Null,
        _ => json!(""),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

pub async fn check(
    runtime: &PluginRuntime,
    name: &str,
    bytes: &[u8],
    input: &CheckInput,
    max_bytes: usize,
) -> Result<CheckReport, RegistryError> {
    let mut lines = vec![format!("file: {name} ({} bytes)", bytes.len())];
    let t = Instant::now();
    let checked = check_component(
        runtime,
        name,
        None,
        bytes,
        max_bytes,
        limits::Limits::for_kind,
    )
    .await?;
    let plugin = &checked.compiled.plugin;
    lines.push(format!(
        "valid component, world `{}` (checked in {})",
        plugin.kind.world(),
        ms(t.elapsed())
    ));
    lines.push(format!("sha256: {}", plugin.sha256));
    lines.push(format!("imports: {}", plugin.shape.imports.join(", ")));
    lines.push(format!("exports: {}", plugin.shape.exports.join(", ")));
    let Some(d) = &checked.descriptor else {
        lines.push(format!(
            "{} plugins are checked only; no sample call",
            plugin.kind.as_str()
        ));
        return Ok(CheckReport { lines });
    };
    lines.push(format!(
        "describe(): {}@{} ({}-node) — {}",
        d.name,
        d.version,
        d.kind.as_str(),
        d.description
    ));
    lines.push(format!("parameters schema: {}", d.parameters_schema));
    let config = match &input.config {
        Some(c) => c.to_string(),
        None => {
            let schema = serde_json::from_str(&d.parameters_schema).unwrap_or_default();
            let sample = sample_config(&schema);
            lines.push(format!("sample config (from the schema): {sample}"));
            sample.to_string()
        }
    };
    let limits = limits::Limits::for_kind(PluginKind::Node);
    let params = sample_params(input);
    let report = match d.kind.as_str() {
        "pre" => runtime
            .run_pre(name, plugin, limits, params, &config)
            .await
            .map(|r| {
                let out = format!(
                    "prompt: {:?}\nnegative_prompt: {:?}\nsize: {}x{} steps {} seed {}",
                    r.output.prompt,
                    r.output.negative_prompt,
                    r.output.width,
                    r.output.height,
                    r.output.steps,
                    r.output.seed
                );
                (out, r.elapsed, r.peak_memory, r.log)
            }),
        _ => {
            let img = sample_image(
                input.image_width.unwrap_or(512),
                input.image_height.unwrap_or(512),
            );
            runtime
                .run_post(name, plugin, limits, params, vec![img], &config)
                .await
                .map(|r| {
                    let out = r
                        .output
                        .iter()
                        .map(|i| {
                            format!("image {}x{} metadata {:?}", i.width, i.height, i.metadata)
                        })
                        .collect::<Vec<_>>()
                        .join("\n");
                    (out, r.elapsed, r.peak_memory, r.log)
                })
        }
    };
    match report {
        Ok((out, elapsed, peak, log)) => {
            lines.push(format!(
                "process() ok in {}, peak linear memory {} KiB",
                ms(elapsed),
                peak / 1024
            ));
            lines.extend(out.lines().map(|l| format!("  {l}")));
            if !log.is_empty() {
                lines.push(format!("stdout/stderr:\n{log}"));
            }
            Ok(CheckReport { lines })
        }
        Err(e) => Err(RegistryError::Component(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_config_satisfies_the_schema() {
        let schema = json!({
            "type": "object",
            "required": ["style", "size", "tags"],
            "properties": {
                "style": { "enum": ["anime", "photo"] },
                "size": { "type": "integer", "minimum": 64 },
                "tags": { "type": "array", "items": { "type": "string" }, "minItems": 2 },
                "strength": { "type": "number", "default": 0.5 },
                "note": { "type": "string", "examples": ["hello"] },
                "optional": { "type": "boolean" }
            }
        });
        assert_eq!(
            sample_config(&schema),
            json!({ "style": "anime", "size": 64, "tags": ["", ""], "strength": 0.5, "note": "hello" })
        );
        assert_eq!(sample_config(&json!({ "type": "object" })), json!({}));
    }
}
