//! `safety-filter`: a pre-node that rejects prompts containing a word of
//! the operator's list. Matching is case-insensitive and on whole words,
//! so "class" does not match "ass".

wit_bindgen::generate!({ path: "../../wit/plugin@0.1.0", world: "node" });

use pingvas::plugin::node_types::NodeKind;
use serde::Deserialize;

/// Used when the operator's config names no list.
const DEFAULT_WORDS: &[&str] = &["gore", "nsfw", "nude", "beheading", "csam"];

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The operator's blocked words or phrases.
    words: Option<Vec<String>>,
    /// Also check the negative prompt.
    #[serde(default)]
    check_negative: bool,
}

fn words_of(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The first blocked entry found in `text`; phrases match as word runs.
fn find_blocked(text: &str, blocked: &[String]) -> Option<String> {
    let words = words_of(text);
    blocked.iter().find_map(|entry| {
        let needle = words_of(entry);
        (!needle.is_empty() && words.windows(needle.len()).any(|w| w == needle.as_slice()))
            .then(|| entry.clone())
    })
}

struct SafetyFilter;

impl Guest for SafetyFilter {
    fn describe() -> Descriptor {
        Descriptor {
            name: "safety-filter".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: NodeKind::Pre,
            description: "Rejects prompts that contain a blocked word or phrase.".into(),
            parameters_schema: r#"{"type":"object","properties":{"words":{"type":"array","items":{"type":"string"}},"check_negative":{"type":"boolean"}},"additionalProperties":false}"#.into(),
        }
    }

    fn process(input: NodeInput) -> Result<NodeOutput, PluginError> {
        let NodeInput::Pre(input) = input else {
            return Err(PluginError::InvalidInput(
                "safety-filter is a pre-node".into(),
            ));
        };
        let config: Config = if input.config.trim().is_empty() {
            Config::default()
        } else {
            serde_json::from_str(&input.config)
                .map_err(|e| PluginError::InvalidInput(format!("config: {e}")))?
        };
        let blocked: Vec<String> = match config.words {
            Some(w) => w,
            None => DEFAULT_WORDS.iter().map(|s| s.to_string()).collect(),
        };
        let mut texts = vec![("prompt", &input.params.prompt)];
        if config.check_negative {
            texts.push(("negative_prompt", &input.params.negative_prompt));
        }
        for (field, text) in texts {
            if let Some(term) = find_blocked(text, &blocked) {
                return Err(PluginError::Rejected(format!(
                    "{field} contains a blocked term: \"{term}\""
                )));
            }
        }
        Ok(NodeOutput::Pre(input.params))
    }
}

export!(SafetyFilter);
