//! The graphs `invokeai` enqueues, in InvokeAI's invocation vocabulary
//! (node types and fields as its OpenAPI document names them).

use serde_json::{Value, json};

use crate::inference::Generation;

/// The node whose image is the result.
pub(super) const OUTPUT: &str = "output";

/// InvokeAI's scheduler for one of our sampler names.
pub(super) fn scheduler(sampler: &str) -> &str {
    match sampler {
        "euler_a" | "euler" | "heun" | "lms" | "ddim" | "dpmpp_2m" | "dpmpp_sde" | "unipc" => {
            sampler
        }
        "dpmpp_2m_karras" => "dpmpp_2m_k",
        "dpm_2" => "kdpm_2",
        "dpm_2_a" => "kdpm_2_a",
        _ => "euler",
    }
}

/// The sampler of an InvokeAI scheduler (workflow import): `scheduler`'s
/// inverse, and whether the match is exact (else the nearest).
pub fn sampler_of(scheduler: &str) -> (&'static str, bool) {
    let exact = crate::queue::job::SAMPLERS
        .iter()
        .find(|s| self::scheduler(s) == scheduler);
    if let Some(s) = exact {
        return (s, true);
    }
    let nearest = match scheduler {
        s if s.starts_with("dpmpp_2m") => "dpmpp_2m_karras",
        s if s.starts_with("dpmpp_sde") || s.starts_with("dpmpp_3m") => "dpmpp_sde",
        s if s.starts_with("kdpm_2_a") => "dpm_2_a",
        s if s.starts_with("kdpm_2") || s.starts_with("dpm") => "dpm_2",
        s if s.starts_with("euler_a") => "euler_a",
        s if s.starts_with("heun") => "heun",
        s if s.starts_with("lms") => "lms",
        s if s.starts_with("unipc") => "unipc",
        s if s.starts_with("ddim") || s.starts_with("ddpm") => "ddim",
        _ => "euler",
    };
    (nearest, false)
}

/// A graph under construction: nodes by id, edges between fields.
#[derive(Default)]
pub(super) struct Graph {
    pub nodes: serde_json::Map<String, Value>,
    pub edges: Vec<Value>,
}

impl Graph {
    pub fn node(&mut self, id: &str, kind: &str, mut fields: Value) {
        let o = fields.as_object_mut().expect("node fields are an object");
        o.insert("id".into(), json!(id));
        o.insert("type".into(), json!(kind));
        o.entry("is_intermediate").or_insert(json!(true));
        self.nodes.insert(id.into(), fields);
    }

    pub fn edge(&mut self, from: (&str, &str), to: (&str, &str)) {
        self.edges.push(json!({
            "source": { "node_id": from.0, "field": from.1 },
            "destination": { "node_id": to.0, "field": to.1 },
        }));
    }

    pub fn build(self) -> Value {
        json!({ "id": uuid::Uuid::now_v7().to_string(), "nodes": self.nodes, "edges": self.edges })
    }
}

/// Inputs of a denoising graph besides the generation parameters.
pub(super) struct Latents<'a> {
    pub source: Option<&'a str>,
    pub mask: Option<&'a str>,
    pub strength: f32,
}

/// Text/image-to-image or inpaint graph for a main model of `identifier`.
pub(super) fn denoise_graph(g: &Generation, identifier: &Value, from: Latents<'_>) -> Graph {
    let mut graph = Graph::default();
    let sdxl = identifier["base"] == "sdxl";
    let (unet, clip, vae) = (("loader", "unet"), ("loader", "clip"), ("loader", "vae"));
    if sdxl {
        graph.node(
            "loader",
            "sdxl_model_loader",
            json!({ "model": identifier }),
        );
        for (id, text) in [("positive", &g.prompt), ("negative", &g.negative_prompt)] {
            graph.node(
                id,
                "sdxl_compel_prompt",
                json!({ "prompt": text, "style": text, "original_width": g.width,
                        "original_height": g.height, "target_width": g.width,
                        "target_height": g.height }),
            );
            graph.edge(clip, (id, "clip"));
            graph.edge(("loader", "clip2"), (id, "clip2"));
        }
    } else {
        graph.node(
            "loader",
            "main_model_loader",
            json!({ "model": identifier }),
        );
        for (id, text) in [("positive", &g.prompt), ("negative", &g.negative_prompt)] {
            graph.node(id, "compel", json!({ "prompt": text }));
            graph.edge(clip, (id, "clip"));
        }
    }
    graph.node(
        "noise",
        "noise",
        json!({ "seed": g.seed % (1 << 32), "width": g.width, "height": g.height, "use_cpu": true }),
    );
    let denoise_start = if from.source.is_some() {
        1.0 - from.strength.clamp(0.0, 1.0)
    } else {
        0.0
    };
    graph.node(
        "denoise",
        "denoise_latents",
        json!({ "steps": g.steps, "cfg_scale": g.cfg_scale, "scheduler": scheduler(&g.sampler),
                "denoising_start": denoise_start, "denoising_end": 1.0 }),
    );
    graph.edge(unet, ("denoise", "unet"));
    graph.edge(
        ("positive", "conditioning"),
        ("denoise", "positive_conditioning"),
    );
    graph.edge(
        ("negative", "conditioning"),
        ("denoise", "negative_conditioning"),
    );
    graph.edge(("noise", "noise"), ("denoise", "noise"));
    if let Some(source) = from.source {
        graph.node("i2l", "i2l", json!({ "image": { "image_name": source } }));
        graph.edge(vae, ("i2l", "vae"));
        graph.edge(("i2l", "latents"), ("denoise", "latents"));
        if let Some(mask) = from.mask {
            graph.node(
                "mask",
                "create_denoise_mask",
                json!({ "image": { "image_name": source }, "mask": { "image_name": mask } }),
            );
            graph.edge(vae, ("mask", "vae"));
            graph.edge(("mask", "denoise_mask"), ("denoise", "denoise_mask"));
        }
    }
    graph.node(OUTPUT, "l2i", json!({ "is_intermediate": false }));
    graph.edge(("denoise", "latents"), (OUTPUT, "latents"));
    graph.edge(vae, (OUTPUT, "vae"));
    graph
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The three kinds of denoising graph: text, image and inpaint.
    pub(in crate::inference::invokeai) fn latents_cases() -> [Latents<'static>; 3] {
        [
            Latents {
                source: None,
                mask: None,
                strength: 1.0,
            },
            Latents {
                source: Some("in.png"),
                mask: None,
                strength: 0.6,
            },
            Latents {
                source: Some("in.png"),
                mask: Some("mask.png"),
                strength: 1.0,
            },
        ]
    }

    pub(in crate::inference::invokeai) fn generation(model: &str) -> Generation {
        Generation {
            prompt: "a lighthouse".into(),
            negative_prompt: "fog".into(),
            model: model.into(),
            width: 512,
            height: 512,
            steps: 20,
            cfg_scale: 7.0,
            sampler: "dpmpp_2m_karras".into(),
            seed: 7,
            batch_size: 1,
        }
    }

    /// Every node, field and edge our graphs use exists in InvokeAI's
    /// OpenAPI document (`../shared/fixtures/invokeai/openapi.json`), and
    /// every scheduler we map to is one it accepts.
    #[test]
    fn graphs_match_the_openapi_document() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/fixtures/invokeai/openapi.json"
        );
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("the fixture")).unwrap();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let schema_of = |kind: &str| {
            schemas
                .values()
                .find(|s| s["properties"]["type"]["const"] == kind)
                .unwrap_or_else(|| panic!("no invocation of type {kind}"))
        };
        let mut graphs = Vec::new();
        for base in ["sd-1", "sdxl"] {
            let id = json!({ "key": "k", "hash": "h", "name": "n", "base": base, "type": "main" });
            for latents in latents_cases() {
                graphs.push(denoise_graph(&generation("m"), &id, latents));
            }
        }
        for graph in &graphs {
            for (id, node) in &graph.nodes {
                let schema = schema_of(node["type"].as_str().unwrap());
                for field in node.as_object().unwrap().keys() {
                    assert!(
                        schema["properties"].get(field).is_some(),
                        "{id}: no field {field}"
                    );
                }
            }
            for edge in &graph.edges {
                let to = &edge["destination"];
                let node = &graph.nodes[to["node_id"].as_str().unwrap()];
                let schema = schema_of(node["type"].as_str().unwrap());
                let field = to["field"].as_str().unwrap();
                assert!(
                    schema["properties"].get(field).is_some(),
                    "edge into missing field {field}"
                );
            }
        }
        let enum_of = &schema_of("denoise_latents")["properties"]["scheduler"]["enum"];
        let known: Vec<&str> = enum_of
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for sampler in crate::queue::job::SAMPLERS {
            assert!(
                known.contains(&scheduler(sampler)),
                "{sampler} → {}",
                scheduler(sampler)
            );
        }
        let scale = schema_of("img_scale");
        assert!(
            scale["properties"]["resample_mode"]["enum"]
                .as_array()
                .unwrap()
                .contains(&json!("lanczos"))
        );
    }
}
