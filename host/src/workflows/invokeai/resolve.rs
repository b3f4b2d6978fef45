//! What a field of the export resolves to, followed through `string`,
//! `string_join`, `integer`, `float` and `rand_int` nodes. Each (node,
//! field) is resolved once and remembered, so a chain of joins that feeds
//! each node to the next twice costs one step a node, not one a path; a
//! text is held to the prompt limit as it is joined, never built past it;
//! and the time budget is checked at every step.

use serde_json::{Value, json};

use super::MAX_DEPTH;
use super::export::{Export, quoted};
use crate::queue::job::MAX_PROMPT_CHARS;
use crate::workflows::definition::DefinitionError;

/// What a prompt, number or image field of the core graph resolves to.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Source {
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

/// Characters of `s`, counting no further than just past the limit.
fn chars_within_limit(s: &str) -> usize {
    if s.len() <= MAX_PROMPT_CHARS {
        return s.chars().count();
    }
    s.chars().take(MAX_PROMPT_CHARS + 1).count()
}

fn too_long(node: &str, field: &str) -> DefinitionError {
    DefinitionError::port(
        node,
        field,
        format!(
            "{}: a text longer than {MAX_PROMPT_CHARS} characters (the prompt limit)",
            quoted(field)
        ),
    )
}

/// A resolved text held to the prompt limit (other values pass).
fn within_limit(v: &Value, node: &str, field: &str) -> Result<(), DefinitionError> {
    match v.as_str() {
        Some(s) if chars_within_limit(s) > MAX_PROMPT_CHARS => Err(too_long(node, field)),
        _ => Ok(()),
    }
}

impl<'a> Export<'a> {
    /// What `node.field` resolves to: an exposed field, a connected
    /// `string`/`string_join`/`integer`/`float`/`rand_int`, or its value.
    pub fn resolve(
        &mut self,
        node: &'a str,
        field: &'a str,
    ) -> Result<Option<Source>, DefinitionError> {
        self.resolve_within(node, field, MAX_DEPTH)
    }

    fn resolve_within(
        &mut self,
        node: &'a str,
        field: &'a str,
        depth: usize,
    ) -> Result<Option<Source>, DefinitionError> {
        if let Some(known) = self.resolved.get(&(node, field)) {
            return Ok(known.clone());
        }
        let Some(depth) = depth.checked_sub(1) else {
            return Err(DefinitionError::node(
                node,
                format!(
                    "{}: followed through more than {MAX_DEPTH} nodes (a cycle?)",
                    quoted(field)
                ),
            ));
        };
        self.deadline.check()?;
        let found = self.follow(node, field, depth)?;
        self.resolved.insert((node, field), found.clone());
        Ok(found)
    }

    /// `resolve_within` not yet remembered.
    fn follow(
        &mut self,
        node: &'a str,
        field: &'a str,
        depth: usize,
    ) -> Result<Option<Source>, DefinitionError> {
        let n = self.node(node)?;
        if self.is_exposed(node, field) {
            let default = n.value(field).cloned().unwrap_or(Value::Null);
            within_limit(&default, node, field)?;
            return Ok(Some(Source::Exposed {
                label: n.label.to_owned(),
                default,
            }));
        }
        let Some((from, from_field)) = self.source(node, field) else {
            if let Some(v) = n.value(field) {
                within_limit(v, node, field)?;
            }
            return Ok(n.value(field).cloned().map(Source::Value));
        };
        let src = self.node(from)?;
        match src.kind {
            "rand_int" => Ok(Some(Source::Random)),
            "string" | "integer" | "float" => self.resolve_within(from, "value", depth),
            "string_join" => {
                let left = self.text_of(from, "string_left", depth)?;
                let right = self.text_of(from, "string_right", depth)?;
                if chars_within_limit(&left) + chars_within_limit(&right) > MAX_PROMPT_CHARS {
                    return Err(too_long(node, field));
                }
                Ok(Some(Source::Value(json!(left + &right))))
            }
            // Another node's output (noise, an encoder's size …): the
            // caller decides what it means.
            _ => Ok(Some(Source::Value(
                json!({ "from": from, "field": from_field }),
            ))),
        }
    }

    /// One side of a `string_join`: its text, or empty.
    fn text_of(
        &mut self,
        node: &'a str,
        field: &'a str,
        depth: usize,
    ) -> Result<String, DefinitionError> {
        Ok(match self.resolve_within(node, field, depth)? {
            Some(Source::Value(v) | Source::Exposed { default: v, .. }) => {
                v.as_str().unwrap_or_default().to_owned()
            }
            _ => String::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use serde_json::{Value, json};

    use super::super::{Deadline, export::Export};
    use super::*;
    use crate::models::ModelCatalogue;

    fn catalogue() -> ModelCatalogue {
        ModelCatalogue::load(None, &crate::billing::plans::Catalogue::builtin())
            .expect("the built-in catalogue")
    }

    /// A prompt node fed by a chain of `depth` joins, each taking both
    /// sides from the next; the last joins `leaf` with itself.
    fn chain(depth: usize, leaf: &str) -> Value {
        let mut nodes = vec![json!({ "id": "p", "type": "invocation",
            "data": { "id": "p", "type": "compel", "inputs": {} } })];
        let mut edges = vec![json!({ "source": "j0", "sourceHandle": "value",
            "target": "p", "targetHandle": "prompt" })];
        for i in 0..depth {
            let inputs = if i + 1 == depth {
                json!({ "string_left": { "value": leaf }, "string_right": { "value": leaf } })
            } else {
                json!({})
            };
            nodes.push(json!({ "id": format!("j{i}"), "type": "invocation",
                "data": { "id": format!("j{i}"), "type": "string_join", "inputs": inputs } }));
            if i + 1 < depth {
                for side in ["string_left", "string_right"] {
                    edges.push(
                        json!({ "source": format!("j{}", i + 1), "sourceHandle": "value",
                        "target": format!("j{i}"), "targetHandle": side }),
                    );
                }
            }
        }
        json!({ "nodes": nodes, "edges": edges })
    }

    fn within(deadline: Duration) -> Deadline {
        Deadline(Instant::now() + deadline)
    }

    #[test]
    fn each_field_is_resolved_once_however_many_paths_reach_it() {
        let export = chain(MAX_DEPTH - 1, "");
        let catalogue = catalogue();
        let mut x = Export::read(&export, &catalogue, within(Duration::from_secs(60))).unwrap();
        let started = Instant::now();
        let got = x.resolve("p", "prompt").unwrap();
        assert_eq!(got, Some(Source::Value(json!(""))));
        // 2^31 paths; one entry per (node, field) reached.
        assert_eq!(x.resolved.len(), 1 + 2 * (MAX_DEPTH - 1));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn joined_text_is_refused_past_the_prompt_limit_without_being_built() {
        // 2 × 2^30 characters if it were built.
        let export = chain(MAX_DEPTH - 1, "ab");
        let catalogue = catalogue();
        let mut x = Export::read(&export, &catalogue, within(Duration::from_secs(60))).unwrap();
        let e = x.resolve("p", "prompt").unwrap_err();
        assert!(e.reason.contains(&MAX_PROMPT_CHARS.to_string()), "{e:?}");
        assert!(e.reason.contains("prompt limit"), "{e:?}");
        assert!(e.port.is_some(), "{e:?}");
        // Nothing longer than the limit was remembered.
        assert!(x.resolved.values().all(|s| match s {
            Some(Source::Value(v)) => v.as_str().is_none_or(|s| s.len() <= MAX_PROMPT_CHARS),
            _ => true,
        }));

        // Up to the limit it joins: 2^11 characters, but not 2^12.
        let export = chain(11, "a");
        let mut x = Export::read(&export, &catalogue, within(Duration::from_secs(60))).unwrap();
        assert_eq!(
            x.resolve("p", "prompt").unwrap(),
            Some(Source::Value(json!("a".repeat(1 << 11))))
        );
        let export = chain(12, "a");
        let mut x = Export::read(&export, &catalogue, within(Duration::from_secs(60))).unwrap();
        assert!(x.resolve("p", "prompt").is_err());
    }

    #[test]
    fn a_leaf_past_the_prompt_limit_is_refused_where_it_is_read() {
        let export = chain(10, &"x".repeat(256 << 10));
        let catalogue = catalogue();
        let mut x = Export::read(&export, &catalogue, within(Duration::from_secs(60))).unwrap();
        let e = x.resolve("p", "prompt").unwrap_err();
        assert_eq!(e.node.as_deref(), Some("j9"), "{e:?}");
        assert_eq!(e.port.as_deref(), Some("string_left"), "{e:?}");
        assert!(e.reason.contains("4000 characters"), "{e:?}");
    }

    #[test]
    fn resolving_stops_at_the_time_limit() {
        let export = chain(4, "a");
        let catalogue = catalogue();
        let past = Instant::now() - Duration::from_millis(1);
        let mut x = Export::read(&export, &catalogue, Deadline(past)).unwrap();
        let e = x.resolve("p", "prompt").unwrap_err();
        assert!(e.reason.contains("time limit of 2 s"), "{e:?}");
    }
}
