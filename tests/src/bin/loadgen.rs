//! HTTP load generator for the benchmarks in BENCHMARKS.md.
//!
//! Starts the `pingvas` binary (next to this one) on a fresh SQLite data dir
//! and a free loopback port, then measures in one run:
//! 1. `GET /healthz` throughput (the baseline),
//! 2. `GET /api/v1/users/me` with a valid token, as a ratio of 1,
//! 3. `GET /healthz` latency while 8 clients loop on `POST /auth/login`;
//! 4. `GET /healthz` and a signed image `GET` while 200 clients send
//!    logins with wrong passwords (each for a fresh address, so the
//!    per-account back-off does not spare the hashing).
//!
//! `cargo build --release -p pingvas-host -p pingvas-tests --bins &&
//!  target/release/loadgen [--seconds 10] [--connections 32]`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pingvas_tests::bench::{Args, drive, enqueue, sign_in, start_serve, wait_end};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::main]
async fn main() {
    let args = Args::parse("loadgen", 10, 32);
    let duration = args.duration();
    let server = start_serve(|_| Vec::new()).await;
    let base = server.base.clone();
    let token = sign_in(&base, "bench@example.com", || {}).await;
    let creds = json!({ "email": "bench@example.com", "password": "SecurePass123!" });

    let b = base.clone();
    let health = drive(args.connections, duration, StatusCode::OK, move |c, _| {
        c.get(format!("{b}/healthz"))
    })
    .await;
    let (b, t) = (base.clone(), token.clone());
    let me = drive(args.connections, duration, StatusCode::OK, move |c, _| {
        c.get(format!("{b}/api/v1/users/me")).bearer_auth(&t)
    })
    .await;

    // 8 clients loop on login while one client probes /healthz.
    let stop = Arc::new(AtomicBool::new(false));
    let logins: Vec<_> = (0..8)
        .map(|_| {
            let (b, creds, stop) = (base.clone(), creds.clone(), stop.clone());
            tokio::spawn(async move {
                let c = reqwest::Client::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(r) = c
                        .post(format!("{b}/api/v1/auth/login"))
                        .json(&creds)
                        .send()
                        .await
                    {
                        n += u64::from(r.status().is_success());
                    }
                }
                n
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b = base.clone();
    let probe = drive(1, duration, StatusCode::OK, move |c, _| {
        c.get(format!("{b}/healthz"))
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut login_count = 0;
    for t in logins {
        login_count += t.await.unwrap();
    }

    // 200 clients send wrong passwords while one client probes /healthz
    // and another a signed image link.
    let image = first_image(&base, &token).await;
    let stop = Arc::new(AtomicBool::new(false));
    let flood: Vec<_> = (0..200)
        .map(|i| {
            let (b, stop) = (base.clone(), stop.clone());
            tokio::spawn(async move {
                let c = reqwest::Client::new();
                let (mut refused, mut busy, mut n) = (0u64, 0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let body = json!({ "email": format!("nobody{i}-{n}@example.com"), "password": "Wrong-pass-1" });
                    if let Ok(r) = c.post(format!("{b}/api/v1/auth/login")).json(&body).send().await {
                        match r.status() {
                            StatusCode::UNAUTHORIZED => refused += 1,
                            StatusCode::SERVICE_UNAVAILABLE => busy += 1,
                            _ => {}
                        }
                    }
                }
                (refused, busy)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b = base.clone();
    let flood_health = tokio::spawn(drive(1, duration, StatusCode::OK, move |c, _| {
        c.get(format!("{b}/healthz"))
    }));
    let img = image.clone();
    let flood_image = drive(1, duration, StatusCode::OK, move |c, _| c.get(&img)).await;
    let flood_health = flood_health.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let (mut refused, mut busy) = (0, 0);
    for t in flood {
        let (r, b) = t.await.unwrap();
        refused += r;
        busy += b;
    }

    let ratio = me.rps() / health.rps();
    println!("| measurement | requests/s | p50 ms | p99 ms | errors |");
    println!("|---|---:|---:|---:|---:|");
    for (name, run) in [
        ("GET /healthz (baseline)", &health),
        ("GET /api/v1/users/me", &me),
    ] {
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {} |",
            run.rps(),
            run.percentile_ms(0.5),
            run.percentile_ms(0.99),
            run.errors
        );
    }
    println!(
        "| GET /healthz while 8 clients log in ({:.1} logins/s) | {:.0} | {:.2} | {:.2} | {} |",
        login_count as f64 / probe.elapsed.as_secs_f64(),
        probe.rps(),
        probe.percentile_ms(0.5),
        probe.percentile_ms(0.99),
        probe.errors
    );
    let secs = flood_health.elapsed.as_secs_f64();
    for (name, run) in [
        (
            "GET /healthz while 200 clients send wrong passwords",
            &flood_health,
        ),
        (
            "signed image GET while 200 clients send wrong passwords",
            &flood_image,
        ),
    ] {
        println!(
            "| {name} ({:.0} refused/s, {:.0} turned away/s) | {:.0} | {:.2} | {:.2} | {} |",
            refused as f64 / secs,
            busy as f64 / secs,
            run.rps(),
            run.percentile_ms(0.5),
            run.percentile_ms(0.99),
            run.errors
        );
    }
    println!();
    println!(
        "users/me ÷ healthz throughput: {:.1}% (target ≥ 30%)",
        ratio * 100.0
    );
    println!(
        "healthz p99 under login load: {:.2} ms (target < 20 ms)",
        probe.percentile_ms(0.99)
    );
    println!(
        "under 200 wrong-password clients: healthz p99 {:.2} ms, signed image p99 {:.2} ms (target < 50 ms)",
        flood_health.percentile_ms(0.99),
        flood_image.percentile_ms(0.99)
    );
}

/// Generates a small image with the in-process worker; its signed link.
async fn first_image(base: &str, token: &str) -> String {
    let c = reqwest::Client::new();
    let body = json!({ "prompt": "bench", "model": "stable-diffusion-1.5", "width": 256, "height": 256, "steps": 4 });
    let id = enqueue(&c, base, token, &body).await;
    let done = wait_end(&c, base, token, &id).await;
    let url = done["result"]["image_url"].as_str().expect("completed");
    format!("{base}{url}")
}
