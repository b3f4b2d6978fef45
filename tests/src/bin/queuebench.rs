//! Load script for the queue benchmarks in BENCHMARKS.md. Starts the
//! `pingvas` binary (next to this one) on fresh SQLite data dirs and
//! measures, each against a baseline taken in the same run:
//!
//! 1. `POST /generate/text-to-image` throughput with the worker paused
//!    (baseline: `GET /healthz` throughput);
//! 2. enqueue-to-lease latency with an idle worker: `started_at −
//!    queued_at` of jobs sent one at a time (baseline: a `GET /healthz`
//!    round trip);
//! 3. how long the backend sits idle between back-to-back jobs on one
//!    worker: a job's `gpu_started_at` minus the previous one's
//!    `gpu_finished_at` (the backend's own timestamps), while more jobs
//!    wait.
//!
//! `cargo build --release -p pingvas-host -p pingvas-tests --bins &&
//!  target/release/queuebench [--seconds 5] [--connections 32]`

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use pingvas_tests::bench::{
    Args, ServerProcess, drive, enqueue, percentile as pct, sibling_pingvas, sign_in, start_serve,
    wait_end,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

const PLANS: &str = include_str!("../../../host/src/billing/plans.default.toml");

/// Starts `pingvas serve`; the studio tier may queue without limit here so
/// the throughput run measures the queue, not the quota.
async fn start(paused: bool) -> ServerProcess {
    start_serve(|dir| {
        let plans = dir.join("plans.toml");
        std::fs::write(
            &plans,
            PLANS.replace("max_queued = 100", "max_queued = 10000000"),
        )
        .unwrap();
        vec![
            ("PINGVAS_PLANS_FILE".into(), plans.display().to_string()),
            ("PINGVAS_WORKER_PAUSED".into(), paused.to_string()),
            ("PINGVAS_QUEUE_MAX_QUEUED".into(), "10000000".into()),
        ]
    })
    .await
}

/// Registers a studio user with plenty of credits; returns a token.
async fn studio_user(server: &ServerProcess, email: &str) -> String {
    sign_in(&server.base, email, || {
        for args in [
            vec!["admin", "set-tier", email, "studio"],
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
    .await
}

fn job(prompt: &str, size: u32, steps: u32) -> Value {
    json!({ "prompt": prompt, "model": "stable-diffusion-1.5", "width": size, "height": size, "steps": steps, "seed": 1 })
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().expect("a timestamp").parse().unwrap()
}

#[tokio::main]
async fn main() {
    let args = Args::parse("queuebench", 5, 32);
    let (seconds, connections, duration) = (args.seconds, args.connections, args.duration());

    // 1. Enqueue throughput, worker paused.
    let server = start(true).await;
    let token = Arc::new(studio_user(&server, "bench@example.com").await);
    let b = server.base.clone();
    let health = drive(connections, duration, StatusCode::OK, move |c, _| {
        c.get(format!("{b}/healthz"))
    })
    .await
    .rps();
    let b = server.base.clone();
    let t = token.clone();
    let run = drive(connections, duration, StatusCode::ACCEPTED, move |c, n| {
        c.post(format!("{b}/api/v1/generate/text-to-image"))
            .bearer_auth(t.as_str())
            .json(&job(&format!("job {n}"), 512, 20))
    })
    .await;
    let (enqueues, errors) = (run.rps(), run.errors);
    drop(server);

    // 2. Enqueue-to-lease latency, idle worker; 3. backend idle gaps.
    let server = start(false).await;
    let token = studio_user(&server, "latency@example.com").await;
    let client = reqwest::Client::new();
    let mut rtt = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        client
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .unwrap();
        rtt.push(t.elapsed().as_secs_f64() * 1e3);
    }
    rtt.sort_by(f64::total_cmp);
    let mut lease_ms = Vec::new();
    for i in 0..200 {
        let id = enqueue(
            &client,
            &server.base,
            &token,
            &job(&format!("latency {i}"), 64, 1),
        )
        .await;
        let d = wait_end(&client, &server.base, &token, &id).await;
        let ms = (time(&d["started_at"]) - time(&d["queued_at"]))
            .num_microseconds()
            .unwrap() as f64
            / 1e3;
        lease_ms.push(ms);
    }
    lease_ms.sort_by(f64::total_cmp);

    let mut ids = Vec::new();
    for i in 0..60 {
        ids.push(
            enqueue(
                &client,
                &server.base,
                &token,
                &job(&format!("burst {i}"), 256, 8),
            )
            .await,
        );
    }
    let mut jobs = Vec::new();
    for id in &ids {
        jobs.push(wait_end(&client, &server.base, &token, id).await);
    }
    jobs.sort_by_key(|j| time(&j["gpu_started_at"]));
    let mut gaps: Vec<f64> = jobs
        .windows(2)
        // Back to back: the next job was queued before this one finished.
        .filter(|w| time(&w[1]["queued_at"]) < time(&w[0]["gpu_finished_at"]))
        .map(|w| {
            (time(&w[1]["gpu_started_at"]) - time(&w[0]["gpu_finished_at"]))
                .num_microseconds()
                .unwrap() as f64
                / 1e3
        })
        .collect();
    gaps.sort_by(f64::total_cmp);
    let gpu_ms: Vec<f64> = jobs
        .iter()
        .map(|j| j["gpu_seconds"].as_f64().unwrap() * 1e3)
        .collect();
    let mean_gpu = gpu_ms.iter().sum::<f64>() / gpu_ms.len() as f64;

    println!("| measurement | value | baseline (same run) | ratio |");
    println!("|---|---:|---:|---:|");
    println!(
        "| POST /generate/text-to-image, worker paused ({connections} clients, {seconds} s) | {enqueues:.0} enqueues/s ({errors} errors) | GET /healthz {health:.0} req/s | {:.1}% |",
        enqueues / health * 100.0
    );
    println!(
        "| enqueue → lease, idle worker, p50 / p99 / max (200 jobs) | {:.2} / {:.2} / {:.2} ms | /healthz round trip p50 / p99 {:.2} / {:.2} ms | p99 {:.1}× |",
        pct(&lease_ms, 0.5),
        pct(&lease_ms, 0.99),
        pct(&lease_ms, 1.0),
        pct(&rtt, 0.5),
        pct(&rtt, 0.99),
        pct(&lease_ms, 0.99) / pct(&rtt, 0.99)
    );
    println!(
        "| backend idle between back-to-back jobs, p50 / p99 / max ({} gaps) | {:.3} / {:.3} / {:.3} ms | mean GPU time per job {mean_gpu:.1} ms | p99 {:.2}% of a job |",
        gaps.len(),
        pct(&gaps, 0.5),
        pct(&gaps, 0.99),
        pct(&gaps, 1.0),
        pct(&gaps, 0.99) / mean_gpu * 100.0
    );
    println!();
    println!("enqueues/s: {enqueues:.0} (target ≥ 1000)");
    println!(
        "enqueue-to-lease p99: {:.2} ms (target ≤ 10 ms)",
        pct(&lease_ms, 0.99)
    );
    println!(
        "backend idle p99: {:.3} ms, max {:.3} ms (target ≤ 5 ms)",
        pct(&gaps, 0.99),
        pct(&gaps, 1.0)
    );
}
