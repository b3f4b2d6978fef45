//! A graph workflow's definition: declared inputs, typed nodes and the
//! edges between their ports, and the structural rules it must keep (a DAG,
//! every edge between compatible ports, required ports connected, every
//! node leading to an output). Pure: what needs the registry or the model
//! catalogue is checked in `check`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::queue::job::MAX_LORAS;

mod check;

use check::check_inputs;
pub use check::{Checked, Link, check, check_value};

pub const MAX_NODES: usize = 64;
pub const MAX_EDGES: usize = 256;
pub const MAX_INPUTS: usize = 32;
/// Bytes of a stored definition.
pub const MAX_DEFINITION_BYTES: usize = 256 << 10;
/// The pseudo-node whose out-ports are the declared inputs.
pub const INPUTS: &str = "inputs";

/// What travels along an edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortType {
    /// Generation parameters (model, prompts, size, steps …).
    Params,
    /// One or more images.
    Images,
    String,
    Integer,
    Number,
}

impl PortType {
    fn accepts(self, from: PortType) -> bool {
        self == from || (self == PortType::Number && from == PortType::Integer)
    }

    fn as_str(self) -> &'static str {
        match self {
            PortType::Params => "params",
            PortType::Images => "images",
            PortType::String => "string",
            PortType::Integer => "integer",
            PortType::Number => "number",
        }
    }
}

/// The type of a declared input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputType {
    String,
    Integer,
    Number,
    /// Base64 or the id of one of the runner's images.
    Image,
}

impl InputType {
    pub fn port(self) -> PortType {
        match self {
            InputType::String => PortType::String,
            InputType::Integer => PortType::Integer,
            InputType::Number => PortType::Number,
            InputType::Image => PortType::Images,
        }
    }
}

/// An input a run supplies (or takes the default of).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputDecl {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: InputType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// Smallest value (numbers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest value (numbers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Longest text, in characters (strings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// A component's input that a run may leave out (the component sees
    /// none); graph inputs are required unless they have a default.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// What a node does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum NodeOp {
    /// Generation parameters: `values` as the REST API takes them (model,
    /// prompt, size, steps, cfg_scale, sampler, seed, batch_size, loras,
    /// strength); in-ports override single fields.
    Params {
        #[serde(default)]
        values: Map<String, Value>,
    },
    TextToImage,
    ImageToImage,
    Inpaint,
    Upscale {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scale: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
    },
    /// A published node plugin, `name@version` (pinned at save).
    Plugin {
        plugin: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        config: Option<Value>,
    },
    /// Its images become the run's gallery images.
    Output,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    pub id: String,
    #[serde(flatten)]
    pub op: NodeOp,
}

/// `from` an out-port to an in-port, each `node.port`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Graph {
    pub kind: &'static str,
    pub inputs: Vec<InputDecl>,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

/// Where a definition breaks a rule: the node and port when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {reason}", node.as_deref().unwrap_or("definition"), port.as_deref().map(|p| format!(".{p}")).unwrap_or_default())]
pub struct DefinitionError {
    pub node: Option<String>,
    pub port: Option<String>,
    pub reason: String,
}

impl DefinitionError {
    pub fn whole(reason: impl Into<String>) -> Self {
        Self {
            node: None,
            port: None,
            reason: reason.into(),
        }
    }

    pub fn node(node: &str, reason: impl Into<String>) -> Self {
        Self {
            node: Some(node.to_owned()),
            port: None,
            reason: reason.into(),
        }
    }

    pub fn port(node: &str, port: &str, reason: impl Into<String>) -> Self {
        Self {
            node: Some(node.to_owned()),
            port: Some(port.to_owned()),
            reason: reason.into(),
        }
    }
}

pub type DefResult<T> = Result<T, DefinitionError>;

/// A plugin node's kind, from its registry entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginSide {
    /// params → params
    Pre,
    /// images (+ params) → images
    Post,
}

/// A port: name, type, and (in-ports) whether it must be connected.
type Port = (&'static str, PortType, bool);

/// The scalar fields a `params` node takes on in-ports.
pub const PARAM_PORTS: &[Port] = &[
    ("prompt", PortType::String, false),
    ("negative_prompt", PortType::String, false),
    ("seed", PortType::Integer, false),
    ("steps", PortType::Integer, false),
    ("cfg_scale", PortType::Number, false),
    ("width", PortType::Integer, false),
    ("height", PortType::Integer, false),
    ("batch_size", PortType::Integer, false),
    ("strength", PortType::Number, false),
];

fn in_ports(op: &NodeOp, side: Option<PluginSide>) -> &'static [Port] {
    match op {
        NodeOp::Params { .. } => PARAM_PORTS,
        NodeOp::TextToImage => &[("params", PortType::Params, true)],
        NodeOp::ImageToImage => &[
            ("params", PortType::Params, true),
            ("source", PortType::Images, true),
        ],
        NodeOp::Inpaint => &[
            ("params", PortType::Params, true),
            ("source", PortType::Images, true),
            ("mask", PortType::Images, true),
        ],
        NodeOp::Upscale { .. } => &[("source", PortType::Images, true)],
        NodeOp::Plugin { .. } => match side {
            Some(PluginSide::Pre) => &[("params", PortType::Params, true)],
            _ => &[
                ("images", PortType::Images, true),
                ("params", PortType::Params, false),
            ],
        },
        NodeOp::Output => &[("images", PortType::Images, true)],
    }
}

fn out_ports(op: &NodeOp, side: Option<PluginSide>) -> &'static [Port] {
    match op {
        NodeOp::Params { .. } => &[("params", PortType::Params, false)],
        NodeOp::Plugin { .. } if side == Some(PluginSide::Pre) => {
            &[("params", PortType::Params, false)]
        }
        NodeOp::Output => &[],
        _ => &[("images", PortType::Images, false)],
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// An inference step a component declares it will run (what its run is
/// priced at: the reservation is their sum).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredStep {
    /// `text_to_image`, `image_to_image`, `inpaint` or `upscale`.
    #[serde(rename = "type")]
    pub op: String,
    pub model: String,
    /// Output size.
    pub width: u32,
    pub height: u32,
    #[serde(default = "one")]
    pub steps: u32,
    #[serde(default = "one")]
    pub batch_size: u32,
    /// The LoRAs (catalogue names) its calls on `model` may apply, each
    /// priced into the step for every step and image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loras: Vec<String>,
}

fn one() -> u32 {
    1
}

/// Steps a component may declare.
pub const MAX_DECLARED_STEPS: usize = 16;

/// A published workflow component, pinned at save, with the inputs it
/// takes and the inference steps it declares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    pub kind: String,
    /// `name@version` (a bare name is pinned to the newest at save).
    pub plugin: String,
    #[serde(default)]
    pub inputs: Vec<InputDecl>,
    pub steps: Vec<DeclaredStep>,
    /// The most seconds its run may take besides its inference calls
    /// (reserved and charged as node time); unset: the workflow kind's
    /// time limit. Never more than that limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_seconds: Option<u32>,
}

/// The most a component may declare as `max_seconds`.
pub const MAX_COMPONENT_SECONDS: u32 = 3600;

/// A workflow definition of either kind.
#[derive(Debug, Clone)]
pub enum Definition {
    Graph(Graph),
    Component(Component),
}

impl Definition {
    pub fn inputs(&self) -> &[InputDecl] {
        match self {
            Definition::Graph(g) => &g.inputs,
            Definition::Component(c) => &c.inputs,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Definition::Graph(_) => "graph",
            Definition::Component(_) => "component",
        }
    }

    pub fn to_json(&self) -> String {
        match self {
            Definition::Graph(g) => serde_json::to_string(g),
            Definition::Component(c) => serde_json::to_string(c),
        }
        .expect("a definition serialises")
    }
}

/// Reads a definition of either kind; a component's inputs and declared
/// steps are checked for shape here (their models at save).
pub fn parse_any(v: &Value) -> DefResult<Definition> {
    if v.get("kind").and_then(Value::as_str) != Some("component") {
        return parse(v).map(Definition::Graph);
    }
    let c: Component = serde_json::from_value(v.clone())
        .map_err(|e| DefinitionError::whole(format!("component: {e}")))?;
    check_inputs(&c.inputs, true)?;
    if c.max_seconds
        .is_some_and(|s| !(1..=MAX_COMPONENT_SECONDS).contains(&s))
    {
        return Err(DefinitionError::port(
            "component",
            "max_seconds",
            format!("1 to {MAX_COMPONENT_SECONDS}"),
        ));
    }
    if c.steps.is_empty() || c.steps.len() > MAX_DECLARED_STEPS {
        return Err(DefinitionError::port(
            "component",
            "steps",
            format!("declare 1 to {MAX_DECLARED_STEPS} inference steps (the run's price)"),
        ));
    }
    for (i, s) in c.steps.iter().enumerate() {
        let here =
            |r: &str| DefinitionError::port("component", &format!("steps[{i}]"), r.to_owned());
        if !["text_to_image", "image_to_image", "inpaint", "upscale"].contains(&s.op.as_str()) {
            return Err(here(
                "type: text_to_image, image_to_image, inpaint or upscale",
            ));
        }
        let max_side = if s.op == "upscale" { 8192 } else { 2048 };
        if !(64..=max_side).contains(&s.width) || !(64..=max_side).contains(&s.height) {
            return Err(here(&format!("width and height 64 to {max_side}")));
        }
        if !(1..=150).contains(&s.steps) || !(1..=8).contains(&s.batch_size) {
            return Err(here("steps 1 to 150, batch_size 1 to 8"));
        }
        if s.loras.len() > MAX_LORAS || (s.op == "upscale" && !s.loras.is_empty()) {
            return Err(here(&format!(
                "loras: at most {MAX_LORAS}, and none on an upscale"
            )));
        }
    }
    Ok(Definition::Component(c))
}

/// Reads a graph definition as the API takes it. Errors name the node.
pub fn parse(v: &Value) -> DefResult<Graph> {
    let obj = v
        .as_object()
        .ok_or_else(|| DefinitionError::whole("expected a JSON object"))?;
    match obj.get("kind").and_then(Value::as_str) {
        Some("graph") => {}
        _ => {
            return Err(DefinitionError::whole(
                "kind must be \"graph\" (typed nodes and edges) or \"component\" (a workflow plugin)",
            ));
        }
    }
    if let Some(k) = obj
        .keys()
        .find(|k| !["kind", "inputs", "nodes", "edges"].contains(&k.as_str()))
    {
        return Err(DefinitionError::whole(format!("unknown field {k}")));
    }
    let inputs: Vec<InputDecl> = match obj.get("inputs") {
        None => Vec::new(),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| DefinitionError::whole(format!("inputs: {e}")))?,
    };
    let raw_nodes = obj
        .get("nodes")
        .and_then(Value::as_array)
        .ok_or_else(|| DefinitionError::whole("nodes must be a list"))?;
    if raw_nodes.len() > MAX_NODES {
        return Err(DefinitionError::whole(format!("at most {MAX_NODES} nodes")));
    }
    let mut nodes = Vec::with_capacity(raw_nodes.len());
    for (i, raw) in raw_nodes.iter().enumerate() {
        let mut o = raw
            .as_object()
            .cloned()
            .ok_or_else(|| DefinitionError::whole(format!("nodes[{i}] is not an object")))?;
        let id = match o.remove("id") {
            Some(Value::String(s)) => s,
            _ => {
                return Err(DefinitionError::whole(format!(
                    "nodes[{i}] needs an id (a string)"
                )));
            }
        };
        let op: NodeOp = serde_json::from_value(Value::Object(o))
            .map_err(|e| DefinitionError::node(&id, e.to_string()))?;
        nodes.push(Node { id, op });
    }
    let edges: Vec<Edge> = match obj.get("edges") {
        None => Vec::new(),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| DefinitionError::whole(format!("edges: {e}")))?,
    };
    if edges.len() > MAX_EDGES {
        return Err(DefinitionError::whole(format!("at most {MAX_EDGES} edges")));
    }
    Ok(Graph {
        kind: "graph",
        inputs,
        nodes,
        edges,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use serde_json::json;

    fn graph(nodes: Value, edges: Value) -> Value {
        json!({
            "kind": "graph",
            "inputs": [{ "name": "prompt", "type": "string", "default": "a fox" }],
            "nodes": nodes,
            "edges": edges,
        })
    }

    fn basic() -> Value {
        graph(
            json!([
                { "id": "p", "type": "params", "values": { "model": "m" } },
                { "id": "gen", "type": "text_to_image" },
                { "id": "out", "type": "output" },
            ]),
            json!([
                { "from": "inputs.prompt", "to": "p.prompt" },
                { "from": "p.params", "to": "gen.params" },
                { "from": "gen.images", "to": "out.images" },
            ]),
        )
    }

    fn checked(v: Value) -> DefResult<Checked> {
        check(&parse(&v)?, &HashMap::new())
    }

    #[test]
    fn a_chain_orders_its_nodes() {
        let c = checked(basic()).unwrap();
        assert_eq!(c.order, vec![0, 1, 2]);
        assert_eq!(c.into_port(0, "prompt").unwrap().from, None);
    }

    #[test]
    fn a_cycle_is_refused_naming_a_node_on_it() {
        let v = graph(
            json!([
                { "id": "p", "type": "params" },
                { "id": "a", "type": "upscale" },
                { "id": "b", "type": "upscale" },
                { "id": "out", "type": "output" },
            ]),
            json!([
                { "from": "a.images", "to": "b.source" },
                { "from": "b.images", "to": "a.source" },
                { "from": "b.images", "to": "out.images" },
            ]),
        );
        let e = checked(v).unwrap_err();
        assert!(e.reason.contains("cycle"), "{e}");
        assert!(["a", "b"].contains(&e.node.as_deref().unwrap()));
    }

    #[test]
    fn port_errors_name_node_and_port() {
        let mut v = basic();
        v["edges"][1] = json!({ "from": "inputs.prompt", "to": "gen.params" });
        let e = checked(v).unwrap_err();
        assert_eq!(
            (e.node.as_deref(), e.port.as_deref()),
            (Some("gen"), Some("params"))
        );
        assert!(e.reason.contains("takes params"), "{e}");

        let mut v = basic();
        v["edges"].as_array_mut().unwrap().remove(1);
        let e = checked(v).unwrap_err();
        assert_eq!(
            (e.node.as_deref(), e.port.as_deref(), e.reason.as_str()),
            (Some("gen"), Some("params"), "must be connected")
        );

        let mut v = basic();
        v["edges"][2]["to"] = json!("out.pictures");
        let e = checked(v).unwrap_err();
        assert_eq!(e.port.as_deref(), Some("pictures"));

        let mut v = basic();
        v["edges"][0]["from"] = json!("inputs.nope");
        assert_eq!(checked(v).unwrap_err().node.as_deref(), Some("inputs"));

        let mut v = basic();
        v["edges"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "from": "gen.images", "to": "out.images" }));
        assert!(checked(v).unwrap_err().reason.contains("twice"));
    }

    #[test]
    fn plugin_ports_follow_the_plugin_side() {
        let v = graph(
            json!([
                { "id": "p", "type": "params" },
                { "id": "style", "type": "plugin", "plugin": "s@1.0.0" },
                { "id": "gen", "type": "text_to_image" },
                { "id": "mark", "type": "plugin", "plugin": "w@1.0.0" },
                { "id": "out", "type": "output" },
            ]),
            json!([
                { "from": "p.params", "to": "style.params" },
                { "from": "style.params", "to": "gen.params" },
                { "from": "gen.images", "to": "mark.images" },
                { "from": "mark.images", "to": "out.images" },
            ]),
        );
        let g = parse(&v).unwrap();
        let sides = HashMap::from([
            ("style".to_owned(), PluginSide::Pre),
            ("mark".to_owned(), PluginSide::Post),
        ]);
        assert!(check(&g, &sides).is_ok());
        // The same graph with the sides swapped breaks at the first plugin.
        let swapped = HashMap::from([
            ("style".to_owned(), PluginSide::Post),
            ("mark".to_owned(), PluginSide::Pre),
        ]);
        let e = check(&g, &swapped).unwrap_err();
        assert_eq!(e.node.as_deref(), Some("style"));
    }

    #[test]
    fn dead_ends_ids_and_inputs_are_checked() {
        let mut v = basic();
        v["nodes"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "id": "lonely", "type": "params" }));
        assert_eq!(
            checked(v).unwrap_err().node.as_deref(),
            Some("lonely"),
            "a node that leads nowhere"
        );
        let mut v = basic();
        v["nodes"][1]["id"] = json!("p");
        assert!(checked(v).unwrap_err().reason.contains("two nodes"));
        let mut v = basic();
        v["inputs"][0]["default"] = json!(3);
        let e = checked(v).unwrap_err();
        assert_eq!(e.port.as_deref(), Some("prompt"));
        let mut v = basic();
        v["nodes"][1]["type"] = json!("teleport");
        assert_eq!(parse(&v).unwrap_err().node.as_deref(), Some("gen"));
        assert!(parse(&json!({ "kind": "other" })).is_err());
    }

    #[test]
    fn input_values_keep_their_limits() {
        let d = InputDecl {
            name: "seed".into(),
            ty: InputType::Integer,
            default: None,
            min: Some(0.0),
            max: Some(10.0),
            max_length: None,
            description: String::new(),
            optional: false,
        };
        assert!(check_value(&d, &json!(3)).is_ok());
        assert!(check_value(&d, &json!(11)).is_err());
        assert!(check_value(&d, &json!("3")).is_err());
        assert!(check_value(&d, &json!(2.5)).is_err());
    }
}
