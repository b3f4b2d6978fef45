//! A pre-node template: adds quality tags to the prompt.
//!
//! The host calls `describe()` when you publish (name, version and kind
//! must match your manifest) and `process()` inside every job that lists
//! your node in `pre_nodes`. Return `PluginError::InvalidInput` for bad
//! config, `Rejected` to refuse a job on purpose, `Failed` for the rest.

// The WIT of the plugin ABI. Outside this repository, copy the repository's
// `wit/plugin@0.1.0` folder into your crate and point `path` at the copy.
wit_bindgen::generate!({ path: "../../wit/plugin@0.2.0", world: "node" });

use pingvas::plugin::log::{Level, log};
use pingvas::plugin::node_types::NodeKind;
use serde::Deserialize;

/// The node's parameters, sent by the user as JSON `config`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    tags: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tags: vec!["highly detailed".into(), "sharp focus".into()],
        }
    }
}

struct QualityTags;

impl Guest for QualityTags {
    fn describe() -> Descriptor {
        Descriptor {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: NodeKind::Pre,
            description: "Adds quality tags to the prompt.".into(),
            parameters_schema: r#"{"type":"object","properties":{"tags":{"type":"array","items":{"type":"string"},"maxItems":16}},"additionalProperties":false}"#.into(),
        }
    }

    fn process(input: NodeInput) -> Result<NodeOutput, PluginError> {
        let NodeInput::Pre(input) = input else {
            return Err(PluginError::InvalidInput("this is a pre-node".into()));
        };
        let config: Config = if input.config.trim().is_empty() {
            Config::default()
        } else {
            serde_json::from_str(&input.config)
                .map_err(|e| PluginError::InvalidInput(format!("config: {e}")))?
        };
        if config.tags.len() > 16 {
            return Err(PluginError::InvalidInput("at most 16 tags".into()));
        }
        let mut params = input.params;
        for tag in &config.tags {
            params.prompt.push_str(", ");
            params.prompt.push_str(tag);
        }
        log(Level::Debug, &format!("added {} tags", config.tags.len()));
        Ok(NodeOutput::Pre(params))
    }
}

export!(QualityTags);
