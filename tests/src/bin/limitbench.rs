//! What the per-tier rate-limit check costs (BENCHMARKS.md): `GET
//! /api/v1/users/me` throughput on three servers started side by side —
//! limits off (the baseline), in process, and on Redis — with a plans file
//! whose limits the load never reaches. The three are measured in turn,
//! round after round (`--rounds`, the order rotating), and compared by
//! their median: the machine's drift hits all three alike. Targets: in
//! process under 5 % off the baseline, Redis under 25 %.
//!
//! `cargo build --release -p pingvas-host -p pingvas-tests --bins &&
//!  target/release/limitbench [--rounds 5] [--seconds 3] [--connections 32]`
//! (Redis: `LIMITBENCH_REDIS_URL`, default `redis://127.0.0.1:6379`.)

use pingvas_tests::bench::{Args, Run, ServerProcess, drive, sign_in, start_serve};
use reqwest::StatusCode;

const PLANS: &str = include_str!("../../../host/src/billing/plans.default.toml");

/// The default plans with limits no benchmark reaches.
fn unreachable_limits() -> String {
    PLANS
        .lines()
        .map(|l| {
            if l.starts_with("requests_per_min") || l.starts_with("generations_per_min") {
                let key = l.split('=').next().unwrap_or_default().trim();
                format!("{key} = 1000000000")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A server started with `env` and a signed-in user's token; whether the
/// limiter answers with headers (it is really on or off).
async fn server(env: Vec<(&'static str, String)>) -> (ServerProcess, String, bool) {
    let server = start_serve(move |dir| {
        let plans = dir.join("plans.toml");
        std::fs::write(&plans, unreachable_limits()).unwrap();
        let mut vars = vec![("PINGVAS_PLANS_FILE".to_owned(), plans.display().to_string())];
        vars.extend(env.into_iter().map(|(k, v)| (k.to_owned(), v)));
        vars
    })
    .await;
    let token = sign_in(&server.base, "bench@example.com", || {}).await;
    let probe = reqwest::Client::new()
        .get(format!("{}/api/v1/users/me", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let limited = probe.headers().contains_key("x-ratelimit-limit");
    (server, token, limited)
}

async fn measure(args: &Args, base: &str, token: &str) -> Run {
    let (base, token) = (base.to_owned(), token.to_owned());
    drive(
        args.connections,
        args.duration(),
        StatusCode::OK,
        move |c, _| c.get(format!("{base}/api/v1/users/me")).bearer_auth(&token),
    )
    .await
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let mut rounds = 5usize;
    let mut rest = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        if a == "--rounds" {
            rounds = it.next().and_then(|v| v.parse().ok()).unwrap_or(5).max(1);
        } else {
            rest.push(a);
        }
    }
    let args = Args::parse_from("limitbench", 3, 32, rest);
    let redis = std::env::var("LIMITBENCH_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("pingvas-bench-{}:", uuid::Uuid::now_v7().simple());
    let enabled = |v: &str| vec![("PINGVAS_RATE_LIMITS_ENABLED", v.to_owned())];
    let mut on_redis = enabled("true");
    on_redis.push(("PINGVAS_REDIS_URL", redis));
    on_redis.push(("PINGVAS_REDIS_PREFIX", prefix));
    let servers = [
        ("limits off (baseline)", server(enabled("false")).await),
        ("limits in process", server(enabled("true")).await),
        ("limits on Redis", server(on_redis).await),
    ];
    for (name, (_, _, limited)) in &servers {
        assert_eq!(*limited, !name.starts_with("limits off"), "{name}");
    }
    // A warm-up pass on each (connections, caches, the first allocations).
    for (_, (srv, token, _)) in &servers {
        measure(&args, &srv.base, token).await;
    }
    let mut rps: [Vec<f64>; 3] = Default::default();
    let mut p99: [Vec<f64>; 3] = Default::default();
    for round in 0..rounds {
        for k in 0..3 {
            let i = (round + k) % 3;
            let (_, (srv, token, _)) = &servers[i];
            let run = measure(&args, &srv.base, token).await;
            assert_eq!(run.errors, 0, "{}", servers[i].0);
            rps[i].push(run.rps());
            p99[i].push(run.percentile_ms(0.99));
        }
    }
    println!(
        "{rounds} rounds of {} s each, {} connections; medians:",
        args.seconds, args.connections
    );
    println!();
    println!("| GET /api/v1/users/me | requests/s | p99 ms | rounds (req/s) |");
    println!("|---|---:|---:|---|");
    for (i, (name, _)) in servers.iter().enumerate() {
        let each: Vec<String> = rps[i].iter().map(|r| format!("{r:.0}")).collect();
        println!(
            "| {name} | {:.0} | {:.2} | {} |",
            median(rps[i].clone()),
            median(p99[i].clone()),
            each.join(", ")
        );
    }
    let base = median(rps[0].clone());
    let cost = |i: usize| (1.0 - median(rps[i].clone()) / base) * 100.0;
    println!();
    println!(
        "in process: {:.1} % off the baseline (target < 5 %); Redis: {:.1} % (target < 25 %)",
        cost(1),
        cost(2)
    );
}
