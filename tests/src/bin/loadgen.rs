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
use std::time::{Duration, Instant};

use pingvas_tests::bench::{ServerProcess, start_serve};
use serde_json::{Value, json};

struct Args {
    seconds: u64,
    connections: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        seconds: 10,
        connections: 32,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let v = it.next().and_then(|v| v.parse::<u64>().ok());
        match (a.as_str(), v) {
            ("--seconds", Some(v)) => args.seconds = v,
            ("--connections", Some(v)) => args.connections = v as usize,
            _ => {
                eprintln!("usage: loadgen [--seconds N] [--connections N]");
                std::process::exit(2);
            }
        }
    }
    args
}

async fn start_server() -> ServerProcess {
    start_serve(|_| Vec::new()).await
}

struct Run {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&mut self, p: f64) -> Duration {
        self.latencies.sort_unstable();
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let idx = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[idx]
    }
}

/// `connections` clients each sending `make()` back to back until `stop`.
async fn drive(
    connections: usize,
    duration: Duration,
    make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync + 'static,
) -> Run {
    let make = Arc::new(make);
    let start = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let make = make.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let (mut ok, mut err, mut lat) = (0u64, 0u64, Vec::new());
                while start.elapsed() < duration {
                    let t = Instant::now();
                    match make(&client).send().await {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            ok += 1;
                            lat.push(t.elapsed());
                        }
                        _ => err += 1,
                    }
                }
                (ok, err, lat)
            })
        })
        .collect();
    let mut run = Run {
        requests: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for t in tasks {
        let (ok, err, lat) = t.await.unwrap();
        run.requests += ok;
        run.errors += err;
        run.latencies.extend(lat);
    }
    run.elapsed = start.elapsed();
    run
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let duration = Duration::from_secs(args.seconds);
    let server = start_server().await;
    let base = server.base.clone();
    let client = reqwest::Client::new();
    let creds = json!({ "email": "bench@example.com", "password": "SecurePass123!" });
    client
        .post(format!("{base}/api/v1/auth/register"))
        .json(&creds)
        .send()
        .await
        .unwrap();
    let login: Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&creds)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["data"]["access_token"]
        .as_str()
        .expect("login")
        .to_owned();

    let b = base.clone();
    let mut health = drive(args.connections, duration, move |c| {
        c.get(format!("{b}/healthz"))
    })
    .await;
    let b = base.clone();
    let mut me = drive(args.connections, duration, move |c| {
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
    let mut probe = drive(1, duration, move |c| c.get(format!("{b}/healthz"))).await;
    stop.store(true, Ordering::Relaxed);
    let mut login_count = 0;
    for t in logins {
        login_count += t.await.unwrap();
    }

    let ratio = me.rps() / health.rps();
    println!("| measurement | requests/s | p50 ms | p99 ms | errors |");
    println!("|---|---:|---:|---:|---:|");
    for (name, run) in [
        ("GET /healthz (baseline)", &mut health),
        ("GET /api/v1/users/me", &mut me),
    ] {
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {} |",
            run.rps(),
            run.percentile(0.5).as_secs_f64() * 1e3,
            run.percentile(0.99).as_secs_f64() * 1e3,
            run.errors
        );
    }
    println!(
        "| GET /healthz while 8 clients log in ({:.1} logins/s) | {:.0} | {:.2} | {:.2} | {} |",
        login_count as f64 / probe.elapsed.as_secs_f64(),
        probe.rps(),
        probe.percentile(0.5).as_secs_f64() * 1e3,
        probe.percentile(0.99).as_secs_f64() * 1e3,
        probe.errors
    );
    println!();
    println!(
        "users/me ÷ healthz throughput: {:.1}% (target ≥ 30%)",
        ratio * 100.0
    );
    println!(
        "healthz p99 under login load: {:.2} ms (target < 20 ms)",
        probe.percentile(0.99).as_secs_f64() * 1e3
    );
}
