//! The graphs `invokeai` enqueues, in InvokeAI's invocation vocabulary
//! (node types and fields as its OpenAPI document names them).

use serde_json::{Value, json};

use crate::inference::{Generation, decimal};

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
    let exact = crate::inference::SAMPLERS
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
        // InvokeAI otherwise answers a repeated node from its cache: a
        // job is run, and timed, as asked.
        o.entry("use_cache").or_insert(json!(false));
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
#[derive(Clone)]
pub(super) struct Latents<'a> {
    pub source: Option<&'a str>,
    pub mask: Option<&'a str>,
    pub strength: f32,
}

/// What a denoising graph applies besides the main model: LoRAs (their
/// InvokeAI identifiers and weights, in order) and a ControlNet.
#[derive(Default)]
pub(super) struct Adapters<'a> {
    pub loras: Vec<(Value, f32)>,
    pub control: Option<ControlNet<'a>>,
}

/// A ControlNet as the graph takes it: the model's identifier, the guide
/// image uploaded to InvokeAI, its weight.
pub(super) struct ControlNet<'a> {
    pub model: Value,
    pub image: &'a str,
    pub weight: f32,
}

/// Text/image-to-image or inpaint graph for a main model of `identifier`,
/// applying `adapters`.
pub(super) fn denoise_graph(
    g: &Generation,
    identifier: &Value,
    from: Latents<'_>,
    adapters: &Adapters<'_>,
) -> Graph {
    let mut graph = Graph::default();
    let sdxl = identifier["base"] == "sdxl";
    let loader = if sdxl {
        "sdxl_model_loader"
    } else {
        "main_model_loader"
    };
    graph.node("loader", loader, json!({ "model": identifier }));
    // The LoRAs in a chain between the loader and its users: each takes
    // the UNet and text encoder(s) of the one before.
    let (mut unet, mut clip, mut clip2) = (
        ("loader".to_owned(), "unet"),
        ("loader".to_owned(), "clip"),
        ("loader".to_owned(), "clip2"),
    );
    for (i, (lora, weight)) in adapters.loras.iter().enumerate() {
        let id = format!("lora{i}");
        let kind = if sdxl {
            "sdxl_lora_loader"
        } else {
            "lora_loader"
        };
        graph.node(
            &id,
            kind,
            json!({ "lora": lora, "weight": decimal(*weight) }),
        );
        graph.edge((&unet.0, unet.1), (&id, "unet"));
        graph.edge((&clip.0, clip.1), (&id, "clip"));
        if sdxl {
            graph.edge((&clip2.0, clip2.1), (&id, "clip2"));
        }
        (unet, clip, clip2) = ((id.clone(), "unet"), (id.clone(), "clip"), (id, "clip2"));
    }
    let unet = (unet.0.as_str(), unet.1);
    let vae = ("loader", "vae");
    for (id, text) in [("positive", &g.prompt), ("negative", &g.negative_prompt)] {
        if sdxl {
            graph.node(
                id,
                "sdxl_compel_prompt",
                json!({ "prompt": text, "style": text, "original_width": g.width,
                        "original_height": g.height, "target_width": g.width,
                        "target_height": g.height }),
            );
            graph.edge((&clip2.0, clip2.1), (id, "clip2"));
        } else {
            graph.node(id, "compel", json!({ "prompt": text }));
        }
        graph.edge((&clip.0, clip.1), (id, "clip"));
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
    if let Some(c) = &adapters.control {
        graph.node(
            "control",
            "controlnet",
            json!({ "image": { "image_name": c.image }, "control_model": c.model,
                    "control_weight": decimal(c.weight), "begin_step_percent": 0.0,
                    "end_step_percent": 1.0, "control_mode": "balanced",
                    "resize_mode": "just_resize" }),
        );
        graph.edge(("control", "control"), ("denoise", "control"));
    }
    if let Some(source) = from.source {
        graph.node("i2l", "i2l", json!({ "image": { "image_name": source } }));
        graph.edge(vae, ("i2l", "vae"));
        graph.edge(("i2l", "latents"), ("denoise", "latents"));
        if let Some(mask) = from.mask {
            // As InvokeAI 6.14's own canvas wires an inpaint: a gradient
            // mask (black repaints) guides the denoise, and the decoded
            // image is blended into the source through the mask's
            // expanded, faded area, so pixels outside it stay the source's.
            graph.node(
                "mask",
                "create_gradient_mask",
                json!({ "mask": { "image_name": mask }, "image": { "image_name": source },
                        "edge_radius": 8, "coherence_mode": "Gaussian Blur",
                        "minimum_denoise": 0.0 }),
            );
            graph.edge(vae, ("mask", "vae"));
            graph.edge(unet, ("mask", "unet"));
            graph.edge(("mask", "denoise_mask"), ("denoise", "denoise_mask"));
            graph.node("decode", "l2i", json!({}));
            graph.edge(("denoise", "latents"), ("decode", "latents"));
            graph.edge(vae, ("decode", "vae"));
            graph.node(
                "fade",
                "expand_mask_with_fade",
                json!({ "fade_size_px": 8 }),
            );
            graph.edge(("mask", "expanded_mask_area"), ("fade", "mask"));
            graph.node(
                OUTPUT,
                "invokeai_img_blend",
                json!({ "layer_base": { "image_name": source }, "is_intermediate": false }),
            );
            graph.edge(("decode", "image"), (OUTPUT, "layer_upper"));
            graph.edge(("fade", "image"), (OUTPUT, "mask"));
            return graph;
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
            loras: Vec::new(),
        }
    }

    /// Two LoRAs and a ControlNet of `base`.
    pub(in crate::inference::invokeai) fn adapters(base: &str) -> Adapters<'static> {
        let id = |name: &str, kind: &str| {
            json!({ "key": format!("key-{name}"), "hash": "h", "name": name, "base": base,
                    "type": kind })
        };
        Adapters {
            loras: vec![(id("add_detail", "lora"), 0.8), (id("film", "lora"), -0.5)],
            control: Some(ControlNet {
                model: id("canny", "controlnet"),
                image: "guide.png",
                weight: 1.2,
            }),
        }
    }

    /// The node and field an edge into `(node, field)` comes from.
    fn source_of<'g>(graph: &'g Graph, node: &str, field: &str) -> (&'g str, &'g str) {
        let e = graph
            .edges
            .iter()
            .find(|e| e["destination"]["node_id"] == node && e["destination"]["field"] == field)
            .unwrap_or_else(|| panic!("nothing into {node}.{field}"));
        (
            e["source"]["node_id"].as_str().unwrap(),
            e["source"]["field"].as_str().unwrap(),
        )
    }

    #[test]
    fn loras_chain_between_the_loader_and_its_users_and_a_controlnet_guides_the_denoise() {
        for base in ["sd-1", "sdxl"] {
            let id = json!({ "key": "k", "hash": "h", "name": "n", "base": base, "type": "main" });
            let cases = latents_cases();
            let graph = denoise_graph(&generation("m"), &id, cases[0].clone(), &adapters(base));
            let kind = if base == "sdxl" {
                "sdxl_lora_loader"
            } else {
                "lora_loader"
            };
            assert_eq!(graph.nodes["lora0"]["type"], kind);
            assert_eq!(graph.nodes["lora0"]["weight"], 0.8);
            assert_eq!(graph.nodes["lora1"]["lora"]["key"], "key-film");
            assert_eq!(source_of(&graph, "lora0", "unet"), ("loader", "unet"));
            assert_eq!(source_of(&graph, "lora1", "clip"), ("lora0", "clip"));
            assert_eq!(source_of(&graph, "denoise", "unet"), ("lora1", "unet"));
            for prompt in ["positive", "negative"] {
                assert_eq!(source_of(&graph, prompt, "clip"), ("lora1", "clip"));
                if base == "sdxl" {
                    assert_eq!(source_of(&graph, prompt, "clip2"), ("lora1", "clip2"));
                }
            }
            // The VAE stays the checkpoint's.
            assert_eq!(source_of(&graph, OUTPUT, "vae"), ("loader", "vae"));
            let control = &graph.nodes["control"];
            assert_eq!(control["type"], "controlnet");
            assert_eq!(control["control_weight"], 1.2);
            assert_eq!(control["control_model"]["key"], "key-canny");
            assert_eq!(control["image"]["image_name"], "guide.png");
            assert_eq!(
                source_of(&graph, "denoise", "control"),
                ("control", "control")
            );
            // Without adapters, the loader feeds everything.
            let plain = denoise_graph(
                &generation("m"),
                &id,
                cases[0].clone(),
                &Adapters::default(),
            );
            assert_eq!(source_of(&plain, "denoise", "unet"), ("loader", "unet"));
            assert!(!plain.nodes.contains_key("control"));
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
                graphs.push(denoise_graph(
                    &generation("m"),
                    &id,
                    latents.clone(),
                    &Adapters::default(),
                ));
                graphs.push(denoise_graph(
                    &generation("m"),
                    &id,
                    latents,
                    &adapters(base),
                ));
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
        for sampler in crate::inference::SAMPLERS {
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
