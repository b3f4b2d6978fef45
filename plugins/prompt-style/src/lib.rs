//! `prompt-style`: a pre-node that applies a named style preset to the
//! prompt and negative prompt.

wit_bindgen::generate!({ path: "../../wit/plugin@0.1.0", world: "node" });

use pingvas::plugin::log::{Level, log};
use pingvas::plugin::node_types::NodeKind;
use serde::Deserialize;

/// (name, prompt prefix, prompt suffix, extra negative prompt)
const PRESETS: &[(&str, &str, &str, &str)] = &[
    (
        "cinematic",
        "cinematic film still of ",
        ", shallow depth of field, film grain, dramatic lighting",
        "cartoon, illustration, flat colors",
    ),
    (
        "anime",
        "anime artwork of ",
        ", key visual, vibrant colors, studio quality",
        "photo, realistic, 3d render",
    ),
    (
        "photographic",
        "professional photograph of ",
        ", 35mm, natural light, highly detailed",
        "painting, drawing, cartoon",
    ),
    (
        "watercolor",
        "watercolor painting of ",
        ", soft washes, paper texture",
        "photo, sharp edges, 3d render",
    ),
    (
        "pixel-art",
        "pixel art of ",
        ", 16-bit, limited palette",
        "blurry, smooth gradients, photo",
    ),
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    style: String,
}

struct PromptStyle;

fn schema() -> String {
    let names: Vec<String> = PRESETS.iter().map(|p| format!("\"{}\"", p.0)).collect();
    format!(
        r#"{{"type":"object","required":["style"],"properties":{{"style":{{"enum":[{}]}}}},"additionalProperties":false}}"#,
        names.join(",")
    )
}

fn join_negative(existing: &str, extra: &str) -> String {
    if existing.trim().is_empty() {
        extra.to_owned()
    } else {
        format!("{existing}, {extra}")
    }
}

impl Guest for PromptStyle {
    fn describe() -> Descriptor {
        Descriptor {
            name: "prompt-style".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: NodeKind::Pre,
            description: "Applies a named style preset to the prompt and negative prompt.".into(),
            parameters_schema: schema(),
        }
    }

    fn process(input: NodeInput) -> Result<NodeOutput, PluginError> {
        let NodeInput::Pre(input) = input else {
            return Err(PluginError::InvalidInput(
                "prompt-style is a pre-node".into(),
            ));
        };
        let config: Config = serde_json::from_str(&input.config)
            .map_err(|e| PluginError::InvalidInput(format!("config: {e}")))?;
        let Some(&(_, prefix, suffix, negative)) = PRESETS.iter().find(|p| p.0 == config.style)
        else {
            let known: Vec<&str> = PRESETS.iter().map(|p| p.0).collect();
            return Err(PluginError::InvalidInput(format!(
                "unknown style `{}`; known: {}",
                config.style,
                known.join(", ")
            )));
        };
        let mut params = input.params;
        params.prompt = format!("{prefix}{}{suffix}", params.prompt.trim());
        params.negative_prompt = join_negative(&params.negative_prompt, negative);
        log(Level::Debug, &format!("applied style {}", config.style));
        Ok(NodeOutput::Pre(params))
    }
}

export!(PromptStyle);
