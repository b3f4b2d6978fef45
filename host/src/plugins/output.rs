//! What a guest hands back, checked before the host uses it: node
//! descriptors and rewritten parameters within bounds, guest errors cut to
//! size.

use super::bindings::v0_1_0::node::pingvas::plugin::node_types::Descriptor;
use super::bindings::v0_1_0::node::pingvas::plugin::types::{
    GenerationParams as Params, PluginError as GuestError,
};
use super::error::PluginError;

/// Longest prompt a pre-node may hand back.
pub const MAX_PROMPT_BYTES: usize = 16 << 10;

pub(super) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub(super) fn bad_output(name: &str, reason: &str) -> PluginError {
    PluginError::BadOutput {
        plugin: name.into(),
        reason: reason.into(),
    }
}

pub(crate) fn guest_error(name: &str, e: GuestError) -> PluginError {
    let cut = |m: String| m.chars().take(1000).collect::<String>();
    match e {
        GuestError::InvalidInput(m) => PluginError::InvalidInput {
            plugin: name.into(),
            message: cut(m),
        },
        GuestError::Rejected(m) => PluginError::Rejected {
            plugin: name.into(),
            message: cut(m),
        },
        GuestError::Failed(m) => PluginError::Failed {
            plugin: name.into(),
            message: cut(m),
        },
    }
}

pub(super) fn check_descriptor(name: &str, d: &Descriptor) -> Result<(), PluginError> {
    if d.name.is_empty() || d.name.len() > 64 || semver::Version::parse(&d.version).is_err() {
        return Err(bad_output(
            name,
            "describe(): name must be 1-64 characters and version semver",
        ));
    }
    if d.description.len() > 4096 || d.parameters_schema.len() > 64 << 10 {
        return Err(bad_output(
            name,
            "describe(): description or schema too large",
        ));
    }
    if !serde_json::from_str::<serde_json::Value>(&d.parameters_schema).is_ok_and(|v| v.is_object())
    {
        return Err(bad_output(
            name,
            "describe(): parameters-schema is not a JSON object",
        ));
    }
    Ok(())
}

pub(super) fn check_params(name: &str, p: &Params) -> Result<(), PluginError> {
    if p.prompt.len() > MAX_PROMPT_BYTES || p.negative_prompt.len() > MAX_PROMPT_BYTES {
        return Err(bad_output(
            name,
            &format!("prompt longer than {MAX_PROMPT_BYTES} bytes"),
        ));
    }
    if p.loras.len() > 16 || p.model.len() > 256 || p.sampler.len() > 64 {
        return Err(bad_output(name, "parameters out of range"));
    }
    Ok(())
}

/// Text a guest wrote, safe for one log line: control characters (newlines,
/// escape sequences) are written as escapes.
pub fn escape_controls(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}
