//! An export as read for conversion: its nodes, the edges between their
//! fields and the exposed fields, borrowed from the request's JSON, with
//! what the conversion has gathered so far (model mappings, notes, inputs).

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::{Map, Value, json};

use super::resolve::Source;
use super::{Deadline, MAPPED, MAX_EXPORT_EDGES, MAX_EXPORT_NODES, ModelMapping};
use crate::models::ModelCatalogue;
use crate::workflows::definition::{DefinitionError, MAX_INPUTS};

/// Characters of an export's text quoted in an error.
const QUOTED_CHARS: usize = 120;

#[derive(Debug, Clone, Copy)]
pub(super) struct Node<'a> {
    pub kind: &'a str,
    pub label: &'a str,
    inputs: Option<&'a Map<String, Value>>,
}

impl<'a> Node<'a> {
    /// A field's static value (`null` when unset).
    pub fn value(&self, field: &str) -> Option<&'a Value> {
        self.inputs?
            .get(field)
            .and_then(|f| f.get("value"))
            .filter(|v| !v.is_null())
    }
}

pub(super) struct Export<'a> {
    pub nodes: HashMap<&'a str, Node<'a>>,
    /// (target node, field) → (source node, field).
    edges: HashMap<(&'a str, &'a str), (&'a str, &'a str)>,
    exposed: HashSet<(&'a str, &'a str)>,
    pub catalogue: &'a ModelCatalogue,
    pub models: Vec<ModelMapping>,
    pub notes: Vec<String>,
    pub inputs: Vec<Value>,
    /// Each (node, field) resolved so far (`resolve`).
    pub(super) resolved: HashMap<(&'a str, &'a str), Option<Source>>,
    pub deadline: Deadline,
}

fn bad(reason: impl Into<String>) -> DefinitionError {
    DefinitionError::whole(reason)
}

/// At most `QUOTED_CHARS` of an export's text, for an error.
pub(super) fn quoted(s: &str) -> String {
    let mut out: String = s.chars().take(QUOTED_CHARS).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

fn input_name(label: &str, field: &str) -> String {
    let base = if label.trim().is_empty() {
        field
    } else {
        label
    };
    let mut s: String = base
        .chars()
        .take(QUOTED_CHARS)
        .flat_map(char::to_lowercase)
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    while s.contains("__") {
        s = s.replace("__", "_");
    }
    let s = s.trim_matches('_').to_owned();
    let s = if s.is_empty() { field.to_owned() } else { s };
    s.chars().take(40).collect()
}

impl<'a> Export<'a> {
    /// Reads `export`'s nodes (every type mapped, or all the others named),
    /// edges and exposed fields, within the limits on their number.
    pub fn read(
        export: &'a Value,
        catalogue: &'a ModelCatalogue,
        deadline: Deadline,
    ) -> Result<Self, DefinitionError> {
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
            let kind = data.get("type").and_then(Value::as_str).unwrap_or_default();
            if !MAPPED.contains(&kind) {
                unknown.insert(quoted(kind));
            }
            let text = |k: &str| data.get(k).and_then(Value::as_str).unwrap_or_default();
            nodes.insert(
                id,
                Node {
                    kind,
                    label: text("label"),
                    inputs: data.get("inputs").and_then(Value::as_object),
                },
            );
        }
        if !unknown.is_empty() {
            return Err(bad(format!(
                "node types that cannot be imported: {}",
                unknown.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
        let raw_edges = export.get("edges").and_then(Value::as_array);
        if raw_edges.is_some_and(|e| e.len() > MAX_EXPORT_EDGES) {
            return Err(bad(format!("at most {MAX_EXPORT_EDGES} edges")));
        }
        let mut edges = HashMap::new();
        for e in raw_edges.into_iter().flatten() {
            // Collapsed edges only draw the UI; the default ones carry fields.
            let text = |k: &str| e.get(k).and_then(Value::as_str);
            let (Some(s), Some(sh), Some(t), Some(th)) = (
                text("source"),
                text("sourceHandle"),
                text("target"),
                text("targetHandle"),
            ) else {
                continue;
            };
            edges.insert((t, th), (s, sh));
        }
        let exposed = export
            .get("exposedFields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|f| Some((f.get("nodeId")?.as_str()?, f.get("fieldName")?.as_str()?)))
            .collect();
        Ok(Export {
            nodes,
            edges,
            exposed,
            catalogue,
            models: Vec::new(),
            notes: Vec::new(),
            inputs: Vec::new(),
            resolved: HashMap::new(),
            deadline,
        })
    }

    pub fn node(&self, id: &str) -> Result<Node<'a>, DefinitionError> {
        self.nodes
            .get(id)
            .copied()
            .ok_or_else(|| bad(format!("an edge names the missing node {}", quoted(id))))
    }

    /// What feeds `node.field`: (source node, its field).
    pub fn source(&self, node: &'a str, field: &'a str) -> Option<(&'a str, &'a str)> {
        self.edges.get(&(node, field)).copied()
    }

    pub fn is_exposed(&self, node: &'a str, field: &'a str) -> bool {
        self.exposed.contains(&(node, field))
    }

    /// Declares the `image` input (once).
    pub fn image_input(&mut self) {
        if !self.inputs.iter().any(|i| i["name"] == "image") {
            self.inputs
                .push(json!({ "name": "image", "type": "image" }));
        }
    }

    /// Sets `values[key]` from a resolved field; an exposed one becomes an
    /// input wired to the params node's port of that name.
    pub fn apply(
        &mut self,
        src: Option<Source>,
        key: &str,
        values: &mut Map<String, Value>,
        edges: &mut Vec<Value>,
        params: &str,
        ty: &str,
    ) -> Result<(), DefinitionError> {
        match src {
            Some(Source::Value(v)) if !v.is_object() => {
                values.insert(key.into(), v);
            }
            Some(Source::Random) => {
                values.insert(key.into(), json!(-1));
            }
            Some(Source::Exposed { label, default }) => {
                if self.inputs.len() >= MAX_INPUTS {
                    return Err(bad(format!("at most {MAX_INPUTS} inputs")));
                }
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
        Ok(())
    }

    /// The catalogue model a reference maps to: by hash, then name, then
    /// the catalogue's first model of `kind` for `base`.
    pub fn map_model(
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
                        format!("base {}", quoted(base.as_deref().unwrap_or("unknown")))
                    } else {
                        quoted(&r.to_string())
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
