//! Workflow scheduling overhead (BENCHMARKS.md): a 20-node graph — a
//! params node, 18 `prompt-style` pre-nodes in a chain, text-to-image and
//! an output — run one at a time on the in-process cpu-reference worker,
//! against a plain text-to-image job (no nodes) as the baseline, in one run.
//!
//! Per run: the enqueue answer's latency (validation, compiling the graph,
//! reserving), the wait for a lease (`started_at − queued_at`), and the
//! worker's overhead (`completed_at − started_at − gpu_seconds −
//! node_seconds`: everything but the backend's and the nodes' own time).
//! Their sum is the scheduling overhead; target ≤ 20 ms a run.
//!
//! `cargo build --release -p pingvas-host -p pingvas-tests --bins &&
//!  target/release/workflowbench [--runs 50]`
//!
//! `workflowbench --pricing STEPS` instead runs the same inpaint — a
//! 1024² source and mask, STEPS steps — through `POST /generate/inpaint`
//! and through a graph whose params say 64×64, and prints the credits each
//! was charged per GPU second (the graph must not be cheaper). It prices
//! stable-diffusion-1.5 at 4 expected GPU s per megapixel-step, so that
//! the reservation (the cap) stays above the time the cpu-reference
//! backend really takes, even in a debug build.

use std::process::{Command, Stdio};
use std::time::Instant;

use chrono::{DateTime, Utc};
use pingvas_tests::bench::{
    answer, detail, generate, percentile, sibling_pingvas, sign_in, start_serve, wait_end,
};
use serde_json::{Value, json};

const CHAIN: usize = 18;

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().expect("a timestamp").parse().unwrap()
}

fn graph() -> Value {
    let mut nodes = vec![json!({ "id": "p", "type": "params", "values": {
        "model": "stable-diffusion-1.5", "prompt": "a lighthouse", "width": 64, "height": 64, "steps": 1, "seed": 3 } })];
    let mut edges = Vec::new();
    let mut from = "p.params".to_owned();
    for i in 0..CHAIN {
        let id = format!("style{i}");
        nodes.push(
            json!({ "id": id, "type": "plugin", "plugin": "prompt-style",
            "config": { "style": "cinematic" } }),
        );
        edges.push(json!({ "from": from, "to": format!("{id}.params") }));
        from = format!("{id}.params");
    }
    nodes.push(json!({ "id": "gen", "type": "text_to_image" }));
    nodes.push(json!({ "id": "out", "type": "output" }));
    edges.push(json!({ "from": from, "to": "gen.params" }));
    edges.push(json!({ "from": "gen.images", "to": "out.images" }));
    json!({ "kind": "graph", "nodes": nodes, "edges": edges })
}

/// Milliseconds of each part of a run: (enqueue answer, lease wait,
/// worker overhead).
async fn one(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
    body: &Value,
) -> (f64, f64, f64) {
    let t = Instant::now();
    let r = generate(client, base, token, path, body).await;
    let enqueue = t.elapsed().as_secs_f64() * 1e3;
    let id = r["data"]["job_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"));
    let d = wait_end(client, base, token, id).await;
    assert_eq!(d["status"], "completed", "{d}");
    let d = detail(client, base, token, id).await;
    let ms = |a: DateTime<Utc>, b: DateTime<Utc>| (b - a).num_microseconds().unwrap() as f64 / 1e3;
    let lease = ms(time(&d["queued_at"]), time(&d["started_at"]));
    let worked = ms(time(&d["started_at"]), time(&d["completed_at"]));
    let own =
        (d["gpu_seconds"].as_f64().unwrap() + d["node_seconds"].as_f64().unwrap_or(0.0)) * 1e3;
    (enqueue, lease, worked - own)
}

fn row(name: &str, runs: &mut [(f64, f64, f64)]) -> f64 {
    let med = |f: fn(&(f64, f64, f64)) -> f64, runs: &[(f64, f64, f64)]| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        (percentile(&v, 0.5), percentile(&v, 0.95))
    };
    let (e, e95) = med(|r| r.0, runs);
    let (l, l95) = med(|r| r.1, runs);
    let (w, w95) = med(|r| r.2, runs);
    let (t, t95) = med(|r| r.0 + r.1 + r.2, runs);
    println!(
        "| {name} | {e:.2} / {e95:.2} | {l:.2} / {l95:.2} | {w:.2} / {w95:.2} | {t:.2} / {t95:.2} |"
    );
    t
}

/// `POST /workflows`; the new workflow's id.
async fn create_workflow(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    name: &str,
    definition: Value,
) -> String {
    let created = answer(
        client
            .post(format!("{base}/api/v1/workflows"))
            .bearer_auth(token)
            .json(&json!({ "name": name, "definition": definition })),
    )
    .await;
    created["data"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_owned()
}

/// REST inpaint against graph inpaint of the same work: credits, GPU
/// seconds and credits per GPU second of each.
async fn pricing(client: &reqwest::Client, base: &str, token: &str, steps: u32) {
    let source = pingvas_tests::png_base64(1024, 1024, [90, 120, 160]);
    let mask = pingvas_tests::png_base64(1024, 1024, [255, 255, 255]);
    let graph = pingvas_tests::graph_inpaint(steps, 1);
    let id = create_workflow(client, base, token, "inpaint", graph).await;
    let rest = json!({ "prompt": "a door", "model": "stable-diffusion-1.5", "steps": steps,
        "seed": 3, "source_image": source, "mask_image": mask });
    let run = json!({ "workflow_id": id, "inputs": { "source": source, "mask": mask } });
    println!("inpaint of a 1024² source, {steps} steps, stable-diffusion-1.5 (1 credit/s):");
    println!();
    println!("| path | estimated | charged | GPU s | node s | credits per GPU s |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut per_second = Vec::new();
    for (name, path, body) in [
        ("POST /generate/inpaint", "inpaint", &rest),
        ("graph: params 64×64 → inpaint", "workflow", &run),
    ] {
        let r = generate(client, base, token, path, body).await;
        let job = r["data"]["job_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{r}"));
        let d = wait_end(client, base, token, job).await;
        assert_eq!(d["status"], "completed", "{d}");
        let d = detail(client, base, token, job).await;
        let charged = d["credits_used"].as_i64().unwrap();
        let gpu = d["gpu_seconds"].as_f64().unwrap();
        let node = d["node_seconds"].as_f64().unwrap_or(0.0);
        let rate = charged as f64 / gpu;
        per_second.push(rate);
        println!(
            "| {name} | {} | {charged} | {gpu:.2} | {node:.2} | {rate:.3} |",
            r["data"]["estimated_credits"]
        );
    }
    println!();
    println!(
        "graph / REST credits per GPU second: {:.3}",
        per_second[1] / per_second[0]
    );
}

#[tokio::main]
async fn main() {
    let mut runs = 50usize;
    let mut pricing_steps = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match (a.as_str(), it.next().and_then(|v| v.parse().ok())) {
            ("--runs", Some(n)) => runs = n,
            ("--pricing", Some(n)) => pricing_steps = Some(n),
            _ => {
                eprintln!("usage: workflowbench [--runs N] [--pricing STEPS]");
                std::process::exit(2);
            }
        }
    }
    let server = start_serve(|dir| match pricing_steps {
        // Priced so that the reservation never caps the charge: what each
        // path is charged is then its measured GPU time at the rate.
        Some(_) => {
            let models = dir.join("models.toml");
            let catalogue = include_str!("../../../host/src/models/models.default.toml").replace(
                "gpu_seconds_per_megapixel_step = 0.08",
                "gpu_seconds_per_megapixel_step = 4.0",
            );
            std::fs::write(&models, catalogue).unwrap();
            vec![("PINGVAS_MODELS_FILE".into(), models.display().to_string())]
        }
        None => Vec::new(),
    })
    .await;
    let email = "bench@example.com";
    let token = sign_in(&server.base, email, || {
        for args in [
            vec!["admin", "set-role", email, "admin"],
            vec!["admin", "grant-credits", email, "100000000"],
        ] {
            let ok = Command::new(sibling_pingvas())
                .args(&args)
                .current_dir(server.dir.path())
                .stdout(Stdio::null())
                .status()
                .unwrap()
                .success();
            assert!(ok, "pingvas {args:?}");
        }
    })
    .await;
    let client = reqwest::Client::new();
    if let Some(steps) = pricing_steps {
        let steps = u32::try_from(steps).expect("steps");
        pricing(&client, &server.base, &token, steps).await;
        return;
    }
    let wasm = pingvas_tests::plugin_wasm("prompt-style");
    let form = reqwest::multipart::Form::new()
        .text(
            "manifest",
            pingvas_tests::manifest("prompt-style", "0.1.0", "node", "public").to_string(),
        )
        .part(
            "component",
            reqwest::multipart::Part::bytes(wasm).file_name("p.wasm"),
        );
    let published = client
        .post(format!("{}/api/v1/plugins", server.base))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert!(published.status().is_success(), "publish");
    let id = create_workflow(&client, &server.base, &token, "bench", graph()).await;
    let plain = json!({ "prompt": "a lighthouse", "model": "stable-diffusion-1.5",
        "width": 64, "height": 64, "steps": 1, "seed": 3 });
    let run_body = json!({ "workflow_id": id });

    // Warm up (plugin compile cache, connections), then alternate.
    for _ in 0..5 {
        one(&client, &server.base, &token, "text-to-image", &plain).await;
        one(&client, &server.base, &token, "workflow", &run_body).await;
    }
    let (mut base_runs, mut wf_runs) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        base_runs.push(one(&client, &server.base, &token, "text-to-image", &plain).await);
        wf_runs.push(one(&client, &server.base, &token, "workflow", &run_body).await);
    }
    println!("{runs} runs each, ms, median / p95:");
    println!();
    println!("| job | enqueue answer | lease wait | worker overhead | total |");
    println!("|---|---:|---:|---:|---:|");
    let b = row("text-to-image, no nodes (baseline)", &mut base_runs);
    let w = row(
        &format!("workflow: params + {CHAIN} pre-nodes + text-to-image + output"),
        &mut wf_runs,
    );
    println!();
    println!(
        "workflow scheduling overhead: {w:.2} ms a run (target ≤ 20 ms), {:.2}× the plain job's {b:.2} ms",
        w / b
    );
}
