//! What a user pays is what the workers do: every inference step of a
//! graph is priced from the images it really gets, plugin time is
//! reserved and charged, and a step that would do more than was paid for
//! is refused before it runs.

use pingvas_tests::pingvas_host::plugins::limits::LimitsOverride;
use pingvas_tests::{Session, TestServer, assert_error, graph_inpaint, png_base64};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn workflow(srv: &TestServer, s: &Session, definition: Value) -> String {
    let (status, b) = srv
        .post(
            "/workflows",
            Some(&s.access),
            json!({ "name": "priced", "definition": definition }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    b["data"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_graph_inpaint_is_priced_as_the_same_rest_inpaint() {
    let srv = TestServer::start_with(|c| c.worker_paused = true).await;
    let alice = srv.signup("alice@example.com").await;
    srv.set_credits(&alice.user_id, 100_000).await;
    let source = png_base64(2048, 2048, [90, 120, 160]);
    let mask = png_base64(2048, 2048, [255, 255, 255]);
    for batch in [1, 8] {
        let (s, rest) = srv
            .generate(
                "inpaint",
                &alice.access,
                json!({ "prompt": "a door", "model": "stable-diffusion-1.5",
                        "source_image": source, "mask_image": mask,
                        "steps": 150, "batch_size": batch }),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{rest}");
        let rest = rest["data"]["estimated_credits"].as_i64().unwrap();

        let id = workflow(&srv, &alice, graph_inpaint(150, batch)).await;
        let (s, b) = srv
            .generate(
                "workflow",
                &alice.access,
                json!({ "workflow_id": id, "inputs": { "source": source, "mask": mask } }),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        let graph = b["data"]["estimated_credits"].as_i64().unwrap();
        // 2048² × 150 steps × batch at 0.08 s per megapixel-step, 1 credit/s.
        let expected = (2048.0 * 2048.0 / 1e6 * 150.0 * f64::from(batch) * 0.08_f64).ceil() as i64;
        assert_eq!(rest, expected, "the REST price");
        assert_eq!(
            graph, rest,
            "the graph's inpaint is priced at its source's size (batch {batch})"
        );
    }
}

#[tokio::test]
async fn an_inpaint_fed_an_upscaled_source_is_refused_at_run() {
    let srv = TestServer::start_with(|c| c.worker_paused = true).await;
    let alice = srv.signup("alice@example.com").await;
    srv.set_credits(&alice.user_id, 1_000_000).await;
    // The source is upscaled ×4 (2048² → 8192²) before the inpaint.
    let mut def = graph_inpaint(4, 1);
    def["nodes"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "id": "big", "type": "upscale", "scale": 4 }));
    let edges = def["edges"].as_array_mut().unwrap();
    edges.retain(|e| e["to"] != "paint.source");
    edges.push(json!({ "from": "inputs.source", "to": "big.source" }));
    edges.push(json!({ "from": "big.images", "to": "paint.source" }));
    let id = workflow(&srv, &alice, def).await;
    let source = png_base64(2048, 2048, [1, 2, 3]);
    let before = srv.credits(&alice.user_id).await;
    let got = srv
        .generate(
            "workflow",
            &alice.access,
            json!({ "workflow_id": id, "inputs": { "source": source, "mask": source } }),
        )
        .await;
    let e = assert_error(&got, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    assert!(e.to_string().contains("paint"), "names the node: {e}");
    assert_eq!(
        srv.credits(&alice.user_id).await,
        before,
        "nothing reserved"
    );
}

#[tokio::test]
async fn a_graph_whose_outputs_pass_the_jobs_bound_is_refused() {
    let srv = TestServer::start_with(|c| c.worker_paused = true).await;
    let alice = srv.signup("alice@example.com").await;
    srv.set_tier("alice@example.com", "studio").await;
    srv.set_credits(&alice.user_id, 1_000_000).await;
    // Two 8192² upscales of one 2048² input: 128 Mi pixels of output.
    let def = json!({
        "kind": "graph",
        "inputs": [{ "name": "source", "type": "image" }],
        "nodes": [
            { "id": "a", "type": "upscale", "scale": 4 },
            { "id": "b", "type": "upscale", "scale": 4 },
            { "id": "out_a", "type": "output" },
            { "id": "out_b", "type": "output" },
        ],
        "edges": [
            { "from": "inputs.source", "to": "a.source" },
            { "from": "inputs.source", "to": "b.source" },
            { "from": "a.images", "to": "out_a.images" },
            { "from": "b.images", "to": "out_b.images" },
        ],
    });
    let id = workflow(&srv, &alice, def).await;
    let source = png_base64(2048, 2048, [1, 2, 3]);
    let got = srv
        .generate(
            "workflow",
            &alice.access,
            json!({ "workflow_id": id, "inputs": { "source": source } }),
        )
        .await;
    let e = assert_error(&got, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    assert!(e.to_string().contains("at most"), "{e}");
}

#[tokio::test]
async fn a_graph_that_multiplies_its_images_between_steps_is_refused_before_it_builds_them() {
    let srv = TestServer::start_with(|c| c.worker_paused = true).await;
    let alice = srv.signup("alice@example.com").await;
    srv.set_credits(&alice.user_id, 1_000_000).await;
    // Batch 8 at every step: 8 images, 64 after one image-to-image, 512
    // after the second (and 8^10 after ten, which the compiler once
    // listed size by size before pricing), collapsed by an inpaint into
    // one output: the output bound alone never sees them.
    let mut nodes = vec![
        json!({ "id": "p", "type": "params",
                "values": { "model": "stable-diffusion-1.5", "prompt": "a", "width": 64,
                            "height": 64, "steps": 1, "batch_size": 8 } }),
        json!({ "id": "one", "type": "params",
                "values": { "model": "stable-diffusion-1.5", "prompt": "a", "width": 64,
                            "height": 64, "steps": 1, "batch_size": 1 } }),
        json!({ "id": "gen", "type": "text_to_image" }),
        json!({ "id": "paint", "type": "inpaint" }),
        json!({ "id": "out", "type": "output" }),
    ];
    let mut edges = vec![json!({ "from": "p.params", "to": "gen.params" })];
    let mut last = "gen".to_owned();
    for i in 0..10 {
        let id = format!("i2i{i}");
        nodes.push(json!({ "id": id, "type": "image_to_image" }));
        edges.push(json!({ "from": "p.params", "to": format!("{id}.params") }));
        edges.push(json!({ "from": format!("{last}.images"), "to": format!("{id}.source") }));
        last = id;
    }
    edges.extend([
        json!({ "from": "one.params", "to": "paint.params" }),
        json!({ "from": format!("{last}.images"), "to": "paint.source" }),
        json!({ "from": "gen.images", "to": "paint.mask" }),
        json!({ "from": "paint.images", "to": "out.images" }),
    ]);
    let id = workflow(
        &srv,
        &alice,
        json!({ "kind": "graph", "nodes": nodes, "edges": edges }),
    )
    .await;
    let got = srv
        .generate("workflow", &alice.access, json!({ "workflow_id": id }))
        .await;
    let e = assert_error(&got, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    assert_eq!(e["details"]["node"], "i2i1", "{e}");
    let reason = e["details"]["reason"].as_str().unwrap();
    assert!(reason.contains("512 images"), "{reason}");
    let (balance, reserved, _) = srv.credits(&alice.user_id).await;
    assert_eq!((balance, reserved), (1_000_000, 0), "nothing reserved");
}

/// params → text-to-image → `nodes` hostile-post nodes in a chain, each in
/// `mode` → `tail` (an extra step fed by the last node, or none) → output.
fn chain(nodes: usize, mode: &str, tail: Option<Value>) -> Value {
    let mut list = vec![
        json!({ "id": "p", "type": "params",
                "values": { "model": "stable-diffusion-1.5", "prompt": "a", "width": 64, "height": 64, "steps": 2 } }),
        json!({ "id": "gen", "type": "text_to_image" }),
        json!({ "id": "out", "type": "output" }),
    ];
    let mut edges = vec![json!({ "from": "p.params", "to": "gen.params" })];
    let mut last = "gen".to_owned();
    for i in 0..nodes {
        let id = format!("n{i}");
        list.push(
            json!({ "id": id, "type": "plugin", "plugin": "hostile-post",
                          "config": { "mode": mode } }),
        );
        edges.push(json!({ "from": format!("{last}.images"), "to": format!("{id}.images") }));
        last = id;
    }
    if let Some(step) = tail {
        let id = step["id"].as_str().unwrap().to_owned();
        let port = if step["type"] == "upscale" {
            "source"
        } else {
            "images"
        };
        edges.push(json!({ "from": format!("{last}.images"), "to": format!("{id}.{port}") }));
        if step["type"] == "image_to_image" {
            edges.push(json!({ "from": "p.params", "to": format!("{id}.params") }));
        }
        list.push(step);
        last = id;
    }
    edges.push(json!({ "from": format!("{last}.images"), "to": "out.images" }));
    json!({ "kind": "graph", "nodes": list, "edges": edges })
}

async fn run_to_end(srv: &TestServer, s: &Session, id: &str) -> (Value, Value, i64) {
    let mut events = srv.events(&s.access, None).await;
    let (status, b) = srv
        .generate("workflow", &s.access, json!({ "workflow_id": id }))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{b}");
    let job = b["data"]["job_id"].as_str().unwrap().to_owned();
    let estimated = b["data"]["estimated_credits"].as_i64().unwrap();
    let end = events.until_end(&job).await;
    let row = srv.job(&s.access, &job).await;
    (end, row, estimated)
}

/// A server whose hostile-post node may run 1 s a call.
async fn with_node_limit() -> (TestServer, Session) {
    let srv = TestServer::start_with(|c| {
        c.plugin_limits.insert(
            "hostile-post".into(),
            LimitsOverride {
                // Well above `spin`'s 80 ms, even on a loaded machine.
                timeout_ms: Some(1000),
                ..Default::default()
            },
        );
    })
    .await;
    let alice = srv.signup("alice@example.com").await;
    srv.publish_node(&alice.access, "hostile-post", "hostile-post")
        .await;
    srv.set_credits(&alice.user_id, 1_000).await;
    (srv, alice)
}

#[tokio::test]
async fn a_graph_of_64_slow_nodes_reserves_and_pays_its_node_time() {
    let (srv, alice) = with_node_limit().await;
    // The most a graph holds: params, the generation, 61 slow nodes and the
    // output.
    let id = workflow(&srv, &alice, chain(61, "spin", None)).await;
    let before = srv.credits(&alice.user_id).await;
    let (end, row, estimated) = run_to_end(&srv, &alice, &id).await;
    assert_eq!(end["type"], "job.completed", "{end}");
    // 61 nodes × 1 s reserved at 1 credit/s, besides the inference.
    assert!(estimated > 61, "node time is reserved: {estimated}");
    let node_seconds = row["node_seconds"].as_f64().unwrap();
    assert!(node_seconds >= 61.0 * 0.08, "the premise: {node_seconds} s");
    let charged = row["credits_used"].as_i64().unwrap();
    assert!(
        charged >= node_seconds.ceil() as i64,
        "{charged} credits for {node_seconds} s of nodes"
    );
    let after = srv.credits(&alice.user_id).await;
    assert_eq!(before.0 - after.0, charged);
    assert_eq!(after.1, 0, "nothing stays reserved");
}

#[tokio::test]
async fn a_node_that_enlarges_images_cannot_make_the_next_step_run_unpaid() {
    let (srv, alice) = with_node_limit().await;
    // 64² → the node makes 256² → an upscale priced for a 64² source.
    let tail = json!({ "id": "big", "type": "upscale", "scale": 2 });
    let id = workflow(&srv, &alice, chain(1, "enlarge", Some(tail))).await;
    let before = srv.credits(&alice.user_id).await;
    let (end, row, estimated) = run_to_end(&srv, &alice, &id).await;
    assert_eq!(end["type"], "job.failed", "{end}");
    let error = &end["data"]["error"];
    assert_eq!(error["code"], "INSUFFICIENT_CREDITS", "{end}");
    assert!(
        error["reason"].as_str().unwrap_or_default().contains("big"),
        "names the step: {end}"
    );
    // The work done until then is the user's, and charged; never more
    // than reserved, and nothing stays held.
    let charged = row["credits_used"].as_i64().unwrap();
    assert!(
        (1..=estimated).contains(&charged),
        "{charged} of {estimated}"
    );
    let after = srv.credits(&alice.user_id).await;
    assert_eq!(before.0 - after.0, charged);
    assert_eq!(after.1, 0);
    assert_eq!(
        srv.count("SELECT COUNT(*) FROM images").await,
        0,
        "no image of the refused step"
    );
}

#[tokio::test]
async fn a_rest_post_node_reserves_its_time_limit() {
    let (srv, alice) = with_node_limit().await;
    let base = json!({ "prompt": "a", "model": "stable-diffusion-1.5",
                       "width": 64, "height": 64, "steps": 1 });
    let (s, plain) = srv
        .generate("text-to-image", &alice.access, base.clone())
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{plain}");
    let mut with_nodes = base;
    with_nodes["post_nodes"] = json!([
        { "name": "hostile-post", "parameters": { "mode": "spin" } },
        { "name": "hostile-post", "parameters": { "mode": "spin" } },
    ]);
    let (s, b) = srv
        .generate("text-to-image", &alice.access, with_nodes)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let plain = plain["data"]["estimated_credits"].as_i64().unwrap();
    let noded = b["data"]["estimated_credits"].as_i64().unwrap();
    // Two nodes × 1 s at 1 credit/s: two more credits.
    assert_eq!(noded, plain + 2, "{plain} → {noded}");
}

#[tokio::test]
async fn loras_and_a_controlnet_are_reserved_for_every_step() {
    let srv = TestServer::start_with(|c| c.worker_paused = true).await;
    let alice = srv.signup("alice@example.com").await;
    srv.set_tier("alice@example.com", "pro").await;
    srv.set_credits(&alice.user_id, 100_000).await;
    let lora = json!({ "name": "add_detail", "weight": 0.8 });
    let control =
        json!({ "model": "canny", "image": png_base64(64, 64, [200, 200, 200]), "weight": 1.0 });
    let mut estimates = Vec::new();
    for (loras, controlnet) in [
        (json!([]), Value::Null),
        (json!([lora]), Value::Null),
        (json!([lora, lora]), Value::Null),
        (json!([lora]), control),
    ] {
        let (s, b) = srv
            .generate(
                "text-to-image",
                &alice.access,
                json!({ "prompt": "a quay", "model": "stable-diffusion-xl",
                        "width": 1024, "height": 1024, "steps": 40, "batch_size": 2,
                        "loras": loras, "controlnet": controlnet }),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        estimates.push(b["data"]["estimated_credits"].as_i64().unwrap());
    }
    // 1024² × 40 steps × 2 images at 2 credits/s; per megapixel-step SDXL
    // takes 0.12 s and the LoRA and the ControlNet 0.05 s each.
    let work = 1024.0 * 1024.0 / 1e6 * 40.0 * 2.0 * 2.0;
    let expected: Vec<i64> = [0.12_f64, 0.17, 0.22, 0.22]
        .iter()
        .map(|speed| (work * speed).ceil() as i64)
        .collect();
    assert_eq!(estimates, expected);
}
