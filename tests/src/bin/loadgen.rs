//! HTTP load generator for the benchmarks in BENCHMARKS.md.
//!
//! Starts the `pingvas` binary (next to this one) on a fresh SQLite data dir
//! and a free loopback port, then measures in one run:
//! 1. `GET /healthz` throughput (the baseline),
//! 2. `GET /api/v1/users/me` with a valid token, as a ratio of 1,
//! 3. `GET /healthz` latency while 8 clients loop on `POST /auth/login`.
//!
//! `cargo build --release -p pingvas-host -p pingvas-tests --bins &&
//!  target/release/loadgen [--seconds 10] [--connections 32]`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pingvas_tests::bench::{Args, drive, sign_in, start_serve};
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
    let b = base.clone();
    let me = drive(args.connections, duration, StatusCode::OK, move |c, _| {
        c.get(format!("{b}/api/v1/users/me")).bearer_auth(&token)
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
    println!();
    println!(
        "users/me ÷ healthz throughput: {:.1}% (target ≥ 30%)",
        ratio * 100.0
    );
    println!(
        "healthz p99 under login load: {:.2} ms (target < 20 ms)",
        probe.percentile_ms(0.99)
    );
}
