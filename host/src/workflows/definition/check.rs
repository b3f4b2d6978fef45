//! The structural rules of a graph: declared inputs, every edge between
//! compatible ports, required ports connected, a DAG whose every node leads
//! to an output; and the run order that follows from them.

use std::collections::{HashMap, HashSet, VecDeque};

use serde_json::Value;

use super::{
    DefResult, DefinitionError, Graph, INPUTS, InputDecl, InputType, MAX_INPUTS, NodeOp,
    PluginSide, in_ports, out_ports, valid_name,
};

/// An edge's resolved ends: node index (`None` for `inputs`) and port.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub from: Option<usize>,
    pub from_port: String,
    pub to: usize,
    pub to_port: String,
}

/// A graph that keeps the structural rules, with its nodes in an order
/// that runs every node after those it takes from.
#[derive(Debug, Clone)]
pub struct Checked {
    pub order: Vec<usize>,
    pub links: Vec<Link>,
}

impl Checked {
    /// The link into `node`'s in-port `port`.
    pub fn into_port(&self, node: usize, port: &str) -> Option<&Link> {
        self.links
            .iter()
            .find(|l| l.to == node && l.to_port == port)
    }
}

pub(super) fn check_inputs(inputs: &[InputDecl], optional_allowed: bool) -> DefResult<()> {
    if inputs.len() > MAX_INPUTS {
        return Err(DefinitionError::whole(format!(
            "at most {MAX_INPUTS} inputs"
        )));
    }
    let mut seen = HashSet::new();
    for d in inputs {
        let here = |r: &str| DefinitionError::port(INPUTS, &d.name, r.to_owned());
        if !valid_name(&d.name) {
            return Err(here("a name of a-z, 0-9, _ and -, at most 40"));
        }
        if !seen.insert(d.name.as_str()) {
            return Err(here("declared twice"));
        }
        if d.optional && !optional_allowed {
            return Err(here(
                "a graph's inputs are required (give a default instead)",
            ));
        }
        if let (Some(lo), Some(hi)) = (d.min, d.max)
            && lo > hi
        {
            return Err(here("min is above max"));
        }
        if let Some(v) = &d.default {
            if d.ty == InputType::Image {
                return Err(here("an image input has no default"));
            }
            check_value(d, v).map_err(|r| here(&format!("default: {r}")))?;
        }
    }
    Ok(())
}

/// Checks a value given for a declared input against its type and limits.
pub fn check_value(d: &InputDecl, v: &Value) -> Result<(), String> {
    let in_range = |x: f64| {
        if d.min.is_some_and(|lo| x < lo) || d.max.is_some_and(|hi| x > hi) {
            Err(format!(
                "between {} and {}",
                d.min.map_or("-∞".into(), |x| x.to_string()),
                d.max.map_or("∞".into(), |x| x.to_string())
            ))
        } else {
            Ok(())
        }
    };
    match d.ty {
        InputType::String => {
            let s = v.as_str().ok_or("expected a string")?;
            let limit = d.max_length.unwrap_or(crate::queue::job::MAX_PROMPT_CHARS);
            if s.chars().count() > limit {
                return Err(format!("at most {limit} characters"));
            }
            Ok(())
        }
        InputType::Integer => in_range(v.as_i64().ok_or("expected an integer")? as f64),
        InputType::Number => {
            let x = v.as_f64().ok_or("expected a number")?;
            if !x.is_finite() {
                return Err("expected a finite number".into());
            }
            in_range(x)
        }
        InputType::Image => v
            .as_str()
            .map(|_| ())
            .ok_or_else(|| "expected base64 or an image id".into()),
    }
}

fn split_port(s: &str) -> Option<(&str, &str)> {
    s.split_once('.')
        .filter(|(n, p)| !n.is_empty() && !p.is_empty())
}

/// The structural rules. `sides` gives each plugin node's kind (by node
/// id), read from the registry.
pub fn check(g: &Graph, sides: &HashMap<String, PluginSide>) -> DefResult<Checked> {
    check_inputs(&g.inputs, false)?;
    let mut index = HashMap::new();
    for (i, n) in g.nodes.iter().enumerate() {
        if !valid_name(&n.id) || n.id == INPUTS {
            return Err(DefinitionError::node(
                &n.id,
                "a node id of a-z, 0-9, _ and -, at most 40, not \"inputs\"",
            ));
        }
        if index.insert(n.id.as_str(), i).is_some() {
            return Err(DefinitionError::node(&n.id, "two nodes have this id"));
        }
    }
    let side = |i: usize| sides.get(&g.nodes[i].id).copied();
    let mut links = Vec::with_capacity(g.edges.len());
    for e in &g.edges {
        let (to_node, to_port) = split_port(&e.to).ok_or_else(|| {
            DefinitionError::whole(format!("edge to {:?}: expected node.port", e.to))
        })?;
        let to = *index.get(to_node).ok_or_else(|| {
            DefinitionError::node(to_node, format!("edge from {}: no such node", e.from))
        })?;
        let want = in_ports(&g.nodes[to].op, side(to))
            .iter()
            .find(|p| p.0 == to_port)
            .ok_or_else(|| DefinitionError::port(to_node, to_port, "no such in-port"))?
            .1;
        let (from_node, from_port) = split_port(&e.from).ok_or_else(|| {
            DefinitionError::port(
                to_node,
                to_port,
                format!("edge from {:?}: expected node.port", e.from),
            )
        })?;
        let (from, have) = if from_node == INPUTS {
            let d = g
                .inputs
                .iter()
                .find(|d| d.name == from_port)
                .ok_or_else(|| DefinitionError::port(INPUTS, from_port, "no such input"))?;
            (None, d.ty.port())
        } else {
            let f = *index.get(from_node).ok_or_else(|| {
                DefinitionError::node(from_node, format!("edge to {}: no such node", e.to))
            })?;
            let have = out_ports(&g.nodes[f].op, side(f))
                .iter()
                .find(|p| p.0 == from_port)
                .ok_or_else(|| DefinitionError::port(from_node, from_port, "no such out-port"))?
                .1;
            (Some(f), have)
        };
        if !want.accepts(have) {
            return Err(DefinitionError::port(
                to_node,
                to_port,
                format!(
                    "takes {}, but {}.{from_port} gives {}",
                    want.as_str(),
                    from_node,
                    have.as_str()
                ),
            ));
        }
        if links
            .iter()
            .any(|l: &Link| l.to == to && l.to_port == to_port)
        {
            return Err(DefinitionError::port(
                to_node,
                to_port,
                "connected twice (an in-port takes one edge)",
            ));
        }
        links.push(Link {
            from,
            from_port: from_port.to_owned(),
            to,
            to_port: to_port.to_owned(),
        });
    }
    for (i, n) in g.nodes.iter().enumerate() {
        for (port, _, required) in in_ports(&n.op, side(i)) {
            if *required && !links.iter().any(|l| l.to == i && l.to_port == *port) {
                return Err(DefinitionError::port(&n.id, port, "must be connected"));
            }
        }
    }
    let order = topological(g, &links)?;
    leads_to_output(g, &links)?;
    Ok(Checked { order, links })
}

/// Kahn's algorithm; a node left over is on a cycle.
fn topological(g: &Graph, links: &[Link]) -> DefResult<Vec<usize>> {
    let n = g.nodes.len();
    let mut indegree = vec![0usize; n];
    let mut next: Vec<Vec<usize>> = vec![Vec::new(); n];
    for l in links {
        if let Some(f) = l.from {
            indegree[l.to] += 1;
            next[f].push(l.to);
        }
    }
    let mut ready: VecDeque<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_front() {
        order.push(i);
        for &j in &next[i] {
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.push_back(j);
            }
        }
    }
    if order.len() < n {
        let on_cycle = (0..n).find(|&i| indegree[i] > 0).expect("a node left");
        return Err(DefinitionError::node(
            &g.nodes[on_cycle].id,
            "is on a cycle (a workflow is a DAG)",
        ));
    }
    Ok(order)
}

fn leads_to_output(g: &Graph, links: &[Link]) -> DefResult<()> {
    let mut useful: Vec<bool> = g.nodes.iter().map(|n| n.op == NodeOp::Output).collect();
    if !useful.contains(&true) {
        return Err(DefinitionError::whole("needs at least one output node"));
    }
    // Walk edges backwards from the outputs until nothing changes.
    let mut changed = true;
    while changed {
        changed = false;
        for l in links {
            if let Some(f) = l.from
                && useful[l.to]
                && !useful[f]
            {
                useful[f] = true;
                changed = true;
            }
        }
    }
    match useful.iter().position(|u| !u) {
        Some(i) => Err(DefinitionError::node(
            &g.nodes[i].id,
            "does not lead to an output",
        )),
        None => Ok(()),
    }
}
