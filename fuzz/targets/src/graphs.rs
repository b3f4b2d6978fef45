//! Workflow graph definitions and the InvokeAI importer.

#[allow(unused_imports)]
use super::*;

/// A plugin node's kind, as the registry would say: chosen from the node
/// (a name is not resolved here), so both kinds are seen.
pub(crate) fn sides_of(g: &Graph) -> HashMap<String, PluginSide> {
    g.nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| matches!(n.op, NodeOp::Plugin { .. }))
        .map(|(i, n)| {
            let side = if (i + n.id.len()) % 2 == 0 {
                PluginSide::Pre
            } else {
                PluginSide::Post
            };
            (n.id.clone(), side)
        })
        .collect()
}

/// What a checked graph promises the run that compiles it.
pub(crate) fn check_checked(g: &Graph, c: &Checked) {
    let n = g.nodes.len();
    assert_eq!(c.order.len(), n, "the run order holds every node once");
    let mut at = vec![usize::MAX; n];
    for (pos, &i) in c.order.iter().enumerate() {
        assert!(
            i < n && at[i] == usize::MAX,
            "the run order holds every node once"
        );
        at[i] = pos;
    }
    assert_eq!(c.links.len(), g.edges.len(), "every edge is one link");
    for l in &c.links {
        assert!(l.to < n);
        if let Some(f) = l.from {
            assert!(f < n);
            assert!(
                at[f] < at[l.to],
                "{} runs before {}, which it takes from",
                g.nodes[l.to].id,
                g.nodes[f].id
            );
        }
        assert_eq!(
            c.into_port(l.to, &l.to_port),
            Some(l),
            "an in-port takes one link"
        );
    }
    assert!(
        g.nodes.iter().any(|x| x.op == NodeOp::Output),
        "a checked graph has an output"
    );
}

/// A definition as stored (`Definition::to_json`), parsed as a run reads
/// it (`workflows::run`: `parse_any` of the stored text).
pub(crate) fn reparse(stored: &str) -> Definition {
    let v: Value = serde_json::from_str(stored)
        .unwrap_or_else(|e| panic!("a stored definition is not JSON: {e}: {stored}"));
    definition::parse_any(&v)
        .unwrap_or_else(|e| panic!("a stored definition no longer parses: {e}: {stored}"))
}

/// A definition value as `Workflows::check_definition` takes it: the size
/// limit, `parse_any`, then (graphs) the structural checks; what passes is
/// stored as `to_json` and must read back the same.
pub(crate) fn check_definition(v: &Value) {
    let size = serde_json::to_vec(v).map_or(usize::MAX, |b| b.len());
    if size > definition::MAX_DEFINITION_BYTES {
        return;
    }
    let Ok(def) = definition::parse_any(v) else {
        return;
    };
    let _ = (def.inputs().len(), def.kind());
    match &def {
        Definition::Graph(g) => {
            // As pinned with no plugin sides known, then with chosen ones.
            let mut tries = vec![HashMap::new()];
            let chosen = sides_of(g);
            if !chosen.is_empty() {
                tries.push(chosen);
            }
            for sides in tries {
                let Ok(checked) = definition::check(g, &sides) else {
                    continue;
                };
                check_checked(g, &checked);
                // A run checks the values it is given against the inputs.
                for d in &g.inputs {
                    for node in &g.nodes {
                        if let NodeOp::Params { values } = &node.op {
                            for value in values.values() {
                                let _ = definition::check_value(d, value);
                            }
                        }
                    }
                }
                let stored = def.to_json();
                let Definition::Graph(again) = reparse(&stored) else {
                    panic!("a stored graph reads back as a component: {stored}");
                };
                assert_eq!(&again, g, "a stored graph reads back changed");
                let rechecked = definition::check(&again, &sides)
                    .unwrap_or_else(|e| panic!("a stored graph no longer checks: {e}: {stored}"));
                assert_eq!(
                    (&rechecked.order, &rechecked.links),
                    (&checked.order, &checked.links),
                    "a stored graph checks differently"
                );
            }
        }
        Definition::Component(c) => {
            let stored = def.to_json();
            let Definition::Component(again) = reparse(&stored) else {
                panic!("a stored component reads back as a graph: {stored}");
            };
            assert_eq!(&again, c, "a stored component reads back changed");
        }
    }
}

/// Fuzz target `graph_definition`: JSON → `parse_any` → `check`.
pub fn graph_definition(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    check_definition(&v);
}

// ---------------------------------------------------------------------------
// 3. InvokeAI workflow import.

/// The built-in model catalogue (what the importer maps models to).
pub(crate) fn catalogue() -> &'static ModelCatalogue {
    static CATALOGUE: OnceLock<ModelCatalogue> = OnceLock::new();
    CATALOGUE.get_or_init(|| {
        ModelCatalogue::load(None, &Catalogue::builtin()).expect("the built-in model catalogue")
    })
}

/// Fuzz target `invokeai_import`: an export as `POST
/// /workflows/import/invokeai` takes it (`is_export`, then
/// `invokeai::import`), and the converted definition through the checks
/// every saved definition passes.
pub fn invokeai_import(data: &[u8]) {
    let Ok(export) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if !invokeai::is_export(&export) {
        return;
    }
    let catalogue = catalogue();
    let Ok(imported) = invokeai::import(&export, catalogue) else {
        return;
    };
    for m in &imported.models {
        assert!(
            catalogue.get(&m.model).is_some(),
            "an import maps to {}, which the catalogue lacks",
            m.model
        );
    }
    assert!(imported.tags.len() <= pingvas_host::workflows::MAX_TAGS);
    let d = &imported.definition;
    let count = |k: &str| d[k].as_array().map_or(0, Vec::len);
    if let Err(e) = definition::parse_any(d) {
        // Only its size may make the parser refuse what the importer built.
        assert!(
            count("nodes") > definition::MAX_NODES || count("edges") > definition::MAX_EDGES,
            "the parser refuses an imported definition: {e}: {d}"
        );
    }
    check_definition(d);
}

// ---------------------------------------------------------------------------
// 4. and 6.: a real AppState over a throwaway SQLite database.
