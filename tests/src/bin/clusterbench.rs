//! Load suite for the scale-out figures in BENCHMARKS.md ("Many hosts").
//! In one run on this machine:
//!
//! 1. the mix — sign-in, `users/me`, enqueue, queue status and items,
//!    gallery pages, with 200 idle event sockets open — on one host on
//!    SQLite, then on two hosts on PostgreSQL + Redis (+ S3 with `--s3`),
//!    clients spread over the hosts; per route throughput, p50, p99 and
//!    errors, and the hosts' CPU seconds per request (from /proc). Eight
//!    simulated workers complete the jobs at once, so the queue stays
//!    short;
//! 2. event delivery: `job.queued` published by the host that took the
//!    enqueue, to a socket on the other host (one host: the same host),
//!    arrival minus the event's `timestamp`;
//! 3. 200 simulated workers spread over the hosts: enqueue → lease
//!    (`started_at − queued_at`) of jobs enqueued one at a time, and how
//!    many times a job was leased.
//!
//! `cargo build --release -p pingvas-host -p pingvas-tests --bins &&
//!  target/release/clusterbench --postgres postgres://postgres@127.0.0.1:5432/postgres
//!  --redis redis://127.0.0.1:6379 [--s3 http://127.0.0.1:5055] [--seconds 10]`

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use pingvas_tests::bench::{ServerProcess, percentile, sibling_pingvas, sign_in, start_serve};
use pingvas_tests::simworkers::SimWorkers;
use reqwest::StatusCode;
use serde_json::{Value, json};

const PLANS: &str = include_str!("../../../host/src/billing/plans.default.toml");
const WORKER_TOKEN: &str = "bench-worker-token-0123456789abcdef";
/// Users: 25 hold the idle sockets (8 each), the last one measures
/// event delivery on sockets of its own.
const USERS: usize = 26;
const CLIENTS: usize = 16;
const IDLE_SOCKETS: usize = 200;
/// The fleet's enqueue pace (50 jobs a second).
const FLEET_EVERY: Duration = Duration::from_millis(20);

struct Opts {
    postgres: String,
    redis: String,
    s3: Option<String>,
    seconds: u64,
}

fn opts() -> Opts {
    let mut o = Opts {
        postgres: String::new(),
        redis: String::new(),
        s3: None,
        seconds: 10,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_default();
        match a.as_str() {
            "--postgres" => o.postgres = v,
            "--redis" => o.redis = v,
            "--s3" => o.s3 = Some(v),
            "--seconds" => o.seconds = v.parse().unwrap_or(10),
            _ => usage(),
        }
    }
    if o.postgres.is_empty() || o.redis.is_empty() {
        usage();
    }
    o
}

fn usage() -> ! {
    eprintln!("usage: clusterbench --postgres URL --redis URL [--s3 ENDPOINT] [--seconds N]");
    std::process::exit(2);
}

/// CPU seconds all processes named `name` have used (PostgreSQL's
/// backends, a Redis server) on this machine.
fn cpu_of(name: &str) -> f64 {
    let mut ticks = 0u64;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if &stat[open + 1..close] != name {
            continue;
        }
        let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        ticks += f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0);
    }
    ticks as f64 / 100.0
}

/// One studio: its hosts and the settings they share (for the CLI).
struct Studio {
    name: &'static str,
    hosts: Vec<ServerProcess>,
    env: Vec<(String, String)>,
}

impl Studio {
    fn bases(&self) -> Vec<String> {
        self.hosts.iter().map(|h| h.base.clone()).collect()
    }

    fn cpu_seconds(&self) -> f64 {
        self.hosts.iter().map(ServerProcess::cpu_seconds).sum()
    }

    /// `pingvas admin …` on the studio's database.
    fn admin(&self, args: &[&str]) {
        let ok = Command::new(sibling_pingvas())
            .arg("admin")
            .args(args)
            .envs(self.env.iter().cloned())
            .env("RUST_LOG", "warn")
            .current_dir(self.hosts[0].dir.path())
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "pingvas admin {args:?}");
    }
}

/// The settings every studio gets: remote workers only, queues without a
/// tier's limit (the mix measures requests, not quotas).
fn common_env(dir: &std::path::Path) -> Vec<(String, String)> {
    let plans = dir.join("plans.toml");
    std::fs::write(
        &plans,
        PLANS.replace("max_queued = 100", "max_queued = 10000000"),
    )
    .unwrap();
    [
        ("PINGVAS_PLANS_FILE", plans.display().to_string()),
        ("PINGVAS_QUEUE_MAX_QUEUED", "10000000".into()),
        ("PINGVAS_WORKER_ENABLED", "false".into()),
        ("PINGVAS_WORKER_TOKEN", WORKER_TOKEN.into()),
        ("PINGVAS_WEB_UI", "false".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

async fn one_host() -> Studio {
    let mut env = Vec::new();
    let host = start_serve(|dir| {
        env = common_env(dir);
        env.push(("PINGVAS_DATA_DIR".into(), dir.display().to_string()));
        env.clone()
    })
    .await;
    Studio {
        name: "1 host, SQLite",
        hosts: vec![host],
        env,
    }
}

async fn two_hosts(o: &Opts) -> Studio {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let database = format!("bench_{run}");
    let admin = sqlx::PgPool::connect(&o.postgres)
        .await
        .expect("PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE \"{database}\""))
        .execute(&admin)
        .await
        .unwrap();
    let mut url = reqwest::Url::parse(&o.postgres).expect("a PostgreSQL URL");
    url.set_path(&database);
    let url = url.to_string();
    let mut env = Vec::new();
    let first = start_serve(|dir| {
        env = common_env(dir);
        env.extend(
            [
                ("PINGVAS_DATA_DIR", dir.display().to_string()),
                ("PINGVAS_DATABASE_URL", url.clone()),
                ("PINGVAS_REDIS_URL", o.redis.clone()),
                ("PINGVAS_REDIS_PREFIX", format!("bench-{run}:")),
                ("PINGVAS_JWT_SECRET", format!("bench-secret-{run}")),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        if let Some(s3) = &o.s3 {
            env.extend(
                [
                    ("PINGVAS_BLOB_URL", format!("s3://pingvas-bench/run-{run}")),
                    ("PINGVAS_S3_ENDPOINT", s3.clone()),
                    ("PINGVAS_S3_ACCESS_KEY_ID", "testing".into()),
                    ("PINGVAS_S3_SECRET_ACCESS_KEY", "testing".into()),
                ]
                .map(|(k, v)| (k.to_owned(), v)),
            );
        }
        env.clone()
    })
    .await;
    let second = start_serve(|_| env.clone()).await;
    Studio {
        name: if o.s3.is_some() {
            "2 hosts, PostgreSQL + Redis + S3"
        } else {
            "2 hosts, PostgreSQL + Redis"
        },
        hosts: vec![first, second],
        env,
    }
}

/// Registers the studio's users (studio tier, plenty of credits); their
/// tokens.
async fn users(studio: &Studio, tag: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    for i in 0..USERS {
        let email = format!("{tag}-{i}@example.com");
        let token = sign_in(&studio.hosts[0].base, &email, || {
            studio.admin(&["set-tier", &email, "studio"]);
            studio.admin(&["grant-credits", &email, "100000000"]);
        })
        .await;
        tokens.push(token);
    }
    tokens
}

fn job(prompt: &str) -> Value {
    json!({ "prompt": prompt, "model": "stable-diffusion-1.5", "width": 64, "height": 64, "steps": 4, "seed": 1 })
}

/// `IDLE_SOCKETS` event sockets over the users and hosts, drained (so the
/// hosts never wait on them) until the returned guard is dropped.
async fn idle_sockets(bases: &[String], tokens: &[String]) -> tokio::task::JoinSet<()> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..IDLE_SOCKETS {
        let base = &bases[i % bases.len()];
        let token = &tokens[i % tokens.len()];
        let url = format!("{}/api/v1/ws?token={token}", base.replacen("http", "ws", 1));
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
        set.spawn(async move {
            let mut ws = ws;
            while let Some(Ok(_)) = ws.next().await {}
        });
    }
    set
}

#[derive(Default)]
struct RouteRun {
    ok: u64,
    errors: u64,
    latencies: Vec<f64>,
}

const ROUTES: [&str; 6] = [
    "users/me",
    "queue/status",
    "images (gallery page)",
    "queue/items",
    "generate (enqueue)",
    "auth/login",
];
/// One cycle of the mix: route indexes by weight (6:4:4:2:3:1).
const CYCLE: [usize; 20] = [0, 1, 2, 4, 0, 3, 1, 0, 2, 4, 0, 1, 2, 3, 0, 4, 1, 2, 0, 5];

/// Drives the mix for `duration`: `CLIENTS` clients, each as one user on
/// one host in turn.
async fn mix(
    bases: &[String],
    tokens: &[String],
    tag: &str,
    duration: Duration,
) -> (Vec<RouteRun>, f64) {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let base = bases[c % bases.len()].clone();
        let token = tokens[c].clone();
        let email = format!("{tag}-{c}@example.com");
        tasks.spawn(async move {
            let client = reqwest::Client::new();
            let mut runs: Vec<RouteRun> = (0..ROUTES.len()).map(|_| RouteRun::default()).collect();
            let mut n = c;
            while start.elapsed() < duration {
                n += 1;
                let route = CYCLE[n % CYCLE.len()];
                let api = |p: &str| format!("{base}/api/v1{p}");
                let (req, expect) = match route {
                    0 => (
                        client.get(api("/users/me")).bearer_auth(&token),
                        StatusCode::OK,
                    ),
                    1 => (
                        client.get(api("/queue/status")).bearer_auth(&token),
                        StatusCode::OK,
                    ),
                    2 => (
                        client.get(api("/images?limit=20")).bearer_auth(&token),
                        StatusCode::OK,
                    ),
                    3 => (
                        client.get(api("/queue/items?limit=20")).bearer_auth(&token),
                        StatusCode::OK,
                    ),
                    4 => (
                        client
                            .post(api("/generate/text-to-image"))
                            .bearer_auth(&token)
                            .json(&job("mix")),
                        StatusCode::ACCEPTED,
                    ),
                    _ => (
                        // A wrong password: the hashing a sign-in costs,
                        // without opening sessions.
                        client
                            .post(api("/auth/login"))
                            .json(&json!({ "email": email, "password": "Wrong-pass-1" })),
                        StatusCode::UNAUTHORIZED,
                    ),
                };
                let t = Instant::now();
                let r = &mut runs[route];
                match req.send().await {
                    Ok(resp) if resp.status() == expect => {
                        let _ = resp.bytes().await;
                        r.ok += 1;
                        r.latencies.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                    _ => r.errors += 1,
                }
            }
            runs
        });
    }
    let mut all: Vec<RouteRun> = (0..ROUTES.len()).map(|_| RouteRun::default()).collect();
    while let Some(runs) = tasks.join_next().await {
        for (into, r) in all.iter_mut().zip(runs.unwrap()) {
            into.ok += r.ok;
            into.errors += r.errors;
            into.latencies.extend(r.latencies);
        }
    }
    for r in &mut all {
        r.latencies.sort_by(f64::total_cmp);
    }
    (all, start.elapsed().as_secs_f64())
}

/// `job.queued` from the host that took the enqueue to a socket on the
/// last host: milliseconds from the event's timestamp to its arrival.
async fn event_delivery(bases: &[String], token: &str, samples: usize) -> Vec<f64> {
    let on = bases.last().unwrap();
    let url = format!("{}/api/v1/ws?token={token}", on.replacen("http", "ws", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
    let client = reqwest::Client::new();
    let mut ms = Vec::with_capacity(samples);
    for _ in 0..samples {
        let r = client
            .post(format!("{}/api/v1/generate/text-to-image", bases[0]))
            .bearer_auth(token)
            .json(&job("delivery"))
            .send()
            .await
            .unwrap();
        let id = r.json::<Value>().await.unwrap()["data"]["job_id"]
            .as_str()
            .expect("accepted")
            .to_owned();
        loop {
            let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) = ws.next().await else {
                continue;
            };
            let arrived = Utc::now();
            let e: Value = serde_json::from_str(&t).unwrap();
            if e["type"] == "job.queued" && e["data"]["job_id"] == id.as_str() {
                let at: DateTime<Utc> = e["timestamp"].as_str().unwrap().parse().unwrap();
                ms.push((arrived - at).num_microseconds().unwrap() as f64 / 1e3);
                break;
            }
        }
    }
    ms.sort_by(f64::total_cmp);
    ms
}

/// 200 simulated workers over the hosts; `jobs` enqueued one at a time
/// (each host in turn) every `FLEET_EVERY`. Enqueue → lease milliseconds, sorted,
/// and the most times one job was leased.
async fn fleet(bases: &[String], tokens: &[String], jobs: usize) -> (Vec<f64>, usize) {
    let workers = SimWorkers::start(bases, 200, WORKER_TOKEN);
    let client = reqwest::Client::new();
    // Until the hosts saw the workers' first polls, nobody serves.
    let mut ids = Vec::with_capacity(jobs);
    let every = std::env::var("FLEET_EVERY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(FLEET_EVERY, Duration::from_millis);
    let mut tick = tokio::time::interval(every);
    while ids.len() < jobs {
        tick.tick().await;
        let i = ids.len();
        let (base, token) = (&bases[i % bases.len()], &tokens[i % tokens.len()]);
        let r = client
            .post(format!("{base}/api/v1/generate/text-to-image"))
            .bearer_auth(token)
            .json(&job("fleet"))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::ACCEPTED {
            let v: Value = r.json().await.unwrap();
            ids.push((
                token.clone(),
                v["data"]["job_id"].as_str().unwrap().to_owned(),
            ));
        }
    }
    let mut ms = Vec::with_capacity(jobs);
    for (token, id) in &ids {
        loop {
            let d: Value = client
                .get(format!("{}/api/v1/queue/items/{id}", bases[0]))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let d = &d["data"];
            if d["status"] == "completed" {
                let t = |k: &str| d[k].as_str().unwrap().parse::<DateTime<Utc>>().unwrap();
                ms.push(
                    (t("started_at") - t("queued_at"))
                        .num_microseconds()
                        .unwrap() as f64
                        / 1e3,
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let leases = workers.leases.lock().unwrap().clone();
    workers.stop().await;
    let mut per_job: HashMap<String, usize> = HashMap::new();
    for l in leases {
        *per_job.entry(l.job_id).or_default() += 1;
    }
    ms.sort_by(f64::total_cmp);
    (ms, per_job.values().copied().max().unwrap_or(0))
}

struct Figures {
    name: &'static str,
    routes: Vec<RouteRun>,
    seconds: f64,
    cpu: f64,
    /// PostgreSQL's and Redis's CPU seconds over the mix.
    services: (f64, f64),
    delivery: Vec<f64>,
    lease: Vec<f64>,
    most_leases: usize,
}

async fn measure(studio: Studio, tag: &str, seconds: u64) -> Figures {
    let bases = studio.bases();
    let tokens = users(&studio, tag).await;
    // First, on an empty queue (the mix leaves jobs queued).
    let (lease, most_leases) = fleet(&bases, &tokens, 400).await;
    let sockets = idle_sockets(&bases, &tokens[..USERS - 1]).await;
    let workers = SimWorkers::start(&bases, 8, WORKER_TOKEN);
    // Warm-up: every route once per client, and a gallery to page.
    let _ = mix(&bases, &tokens, tag, Duration::from_secs(1)).await;
    let cpu_before = studio.cpu_seconds();
    let services_before = (cpu_of("postgres"), cpu_of("redis-server"));
    let (routes, elapsed) = mix(&bases, &tokens, tag, Duration::from_secs(seconds)).await;
    let cpu = studio.cpu_seconds() - cpu_before;
    let services = (
        cpu_of("postgres") - services_before.0,
        cpu_of("redis-server") - services_before.1,
    );
    let delivery = event_delivery(&bases, &tokens[USERS - 1], 300).await;
    workers.stop().await;
    drop(sockets);
    Figures {
        name: studio.name,
        routes,
        seconds: elapsed,
        cpu,
        services,
        delivery,
        lease,
        most_leases,
    }
}

fn report(f: &Figures) {
    let requests: u64 = f.routes.iter().map(|r| r.ok).sum();
    let errors: u64 = f.routes.iter().map(|r| r.errors).sum();
    println!("## {}", f.name);
    println!(
        "mix: {requests} requests in {:.1} s ({:.0}/s), {errors} errors, host CPU {:.2} s = {:.3} ms per request",
        f.seconds,
        requests as f64 / f.seconds,
        f.cpu,
        f.cpu * 1e3 / requests.max(1) as f64
    );
    println!(
        "PostgreSQL CPU {:.2} s = {:.3} ms per request; Redis CPU {:.2} s = {:.3} ms per request",
        f.services.0,
        f.services.0 * 1e3 / requests.max(1) as f64,
        f.services.1,
        f.services.1 * 1e3 / requests.max(1) as f64
    );
    println!("| route | requests/s | p50 ms | p99 ms | errors |");
    println!("|---|---|---|---|---|");
    for (name, r) in ROUTES.iter().zip(&f.routes) {
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {} |",
            r.ok as f64 / f.seconds,
            percentile(&r.latencies, 0.5),
            percentile(&r.latencies, 0.99),
            r.errors
        );
    }
    println!(
        "event delivery (job.queued → socket{}): p50 {:.2} ms, p99 {:.2} ms",
        if f.name.starts_with('2') {
            " on the other host"
        } else {
            ""
        },
        percentile(&f.delivery, 0.5),
        percentile(&f.delivery, 0.99)
    );
    println!(
        "200 workers: enqueue → lease p50 {:.2} ms, p99 {:.2} ms over {} jobs; most leases of one job: {}",
        percentile(&f.lease, 0.5),
        percentile(&f.lease, 0.99),
        f.lease.len(),
        f.most_leases
    );
}

#[tokio::main]
async fn main() {
    let o = opts();
    if let Some(s3) = &o.s3 {
        // moto and MinIO make the bucket on an unsigned PUT.
        let _ = reqwest::Client::new()
            .put(format!("{s3}/pingvas-bench"))
            .send()
            .await;
    }
    if std::env::var("FLEET_ONLY").is_ok() {
        for studio in [one_host().await, two_hosts(&o).await] {
            let tokens = users(&studio, "fleet").await;
            let (ms, most) = fleet(&studio.bases(), &tokens, 400).await;
            println!(
                "{}: p50 {:.2} ms, p99 {:.2} ms, most leases {most}",
                studio.name,
                percentile(&ms, 0.5),
                percentile(&ms, 0.99)
            );
        }
        return;
    }
    let single = measure(one_host().await, "one", o.seconds).await;
    report(&single);
    let pair = measure(two_hosts(&o).await, "two", o.seconds).await;
    report(&pair);
    let per = |f: &Figures| f.cpu / f.routes.iter().map(|r| r.ok).sum::<u64>().max(1) as f64;
    println!(
        "\nCPU per request, two hosts ÷ one host: {:.2}×",
        per(&pair) / per(&single)
    );
}
