//! The load scripts' driver (`loadgen`, `queuebench`): a `pingvas serve`
//! process on a fresh SQLite data dir and a free loopback port, their
//! command line, clients driving requests back to back, and quantiles.

use std::process::Child;
use std::time::Duration;

use crate::process::{free_port, serve_command, wait_healthy};

/// A running server process, killed and reaped when dropped.
pub struct ServerProcess {
    child: Child,
    pub base: String,
    pub dir: tempfile::TempDir,
}

impl ServerProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU seconds (user + system) the process has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("the server's /proc stat");
        // Fields after the command name (which may hold spaces): utime and
        // stime are the 12th and 13th, in clock ticks of 1/100 s.
        let rest = &stat[stat.rfind(')').expect("stat") + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        ticks as f64 / 100.0
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `pingvas` binary next to the running one.
pub fn sibling_pingvas() -> std::path::PathBuf {
    std::env::current_exe().unwrap().with_file_name("pingvas")
}

/// Starts `pingvas serve` with `env` (a closure may write files into the
/// data dir first) and waits until `/healthz` answers.
pub async fn start_serve(
    env: impl FnOnce(&std::path::Path) -> Vec<(String, String)>,
) -> ServerProcess {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let bin = sibling_pingvas();
    let child = serve_command(&bin, dir.path(), port)
        .envs(env(dir.path()))
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
    // From here on, dropping `server` kills and reaps the child.
    let server = ServerProcess {
        child,
        base: format!("http://127.0.0.1:{port}"),
        dir,
    };
    wait_healthy(&reqwest::Client::new(), &server.base).await;
    server
}

/// The load scripts' command line: `[--seconds N] [--connections N]`.
pub struct Args {
    pub seconds: u64,
    pub connections: usize,
}

impl Args {
    /// Parses the process arguments over the script's defaults; exits 2
    /// with a usage line on anything else.
    pub fn parse(script: &str, seconds: u64, connections: usize) -> Self {
        Self::parse_from(script, seconds, connections, std::env::args().skip(1))
    }

    /// `parse` over given arguments (a script that reads flags of its own
    /// first passes the rest).
    pub fn parse_from(
        script: &str,
        seconds: u64,
        connections: usize,
        args: impl IntoIterator<Item = String>,
    ) -> Self {
        let mut parsed = Args {
            seconds,
            connections,
        };
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            let v = it.next().and_then(|v| v.parse::<u64>().ok());
            match (a.as_str(), v) {
                ("--seconds", Some(v)) => parsed.seconds = v,
                ("--connections", Some(v)) => parsed.connections = v as usize,
                _ => {
                    eprintln!("usage: {script} [--seconds N] [--connections N]");
                    std::process::exit(2);
                }
            }
        }
        parsed
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.seconds)
    }
}

/// What one driven phase did.
pub struct Run {
    /// Answers with the expected status.
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Round trips of the expected answers, sorted.
    pub latencies: Vec<Duration>,
}

impl Run {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// The `p` quantile (0..=1) of the latencies, in milliseconds.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        percentile(
            &self
                .latencies
                .iter()
                .map(|d| d.as_secs_f64() * 1e3)
                .collect::<Vec<_>>(),
            p,
        )
    }
}

/// The `p` quantile (0..=1) of sorted values; 0 when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// `connections` clients each sending `make(client, n)` (`n` unique per
/// request) back to back for `duration`; an answer with `expect` counts,
/// anything else is an error.
pub async fn drive(
    connections: usize,
    duration: Duration,
    expect: reqwest::StatusCode,
    make: impl Fn(&reqwest::Client, u64) -> reqwest::RequestBuilder + Send + Sync + 'static,
) -> Run {
    let make = std::sync::Arc::new(make);
    let start = std::time::Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let make = make.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let (mut ok, mut err, mut lat) = (0u64, 0u64, Vec::new());
                let mut n = c as u64 * 1_000_000;
                while start.elapsed() < duration {
                    n += 1;
                    let t = std::time::Instant::now();
                    match make(&client, n).send().await {
                        Ok(r) if r.status() == expect => {
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
    run.latencies.sort_unstable();
    run
}

/// Sends `req`; its JSON answer.
pub async fn answer(req: reqwest::RequestBuilder) -> serde_json::Value {
    req.send().await.unwrap().json().await.unwrap()
}

/// Registers `email` (if new) with the bench password and logs in; the
/// access token. `before_login` runs in between (operator commands).
pub async fn sign_in(base: &str, email: &str, before_login: impl FnOnce()) -> String {
    let client = reqwest::Client::new();
    let creds = serde_json::json!({ "email": email, "password": "SecurePass123!" });
    client
        .post(format!("{base}/api/v1/auth/register"))
        .json(&creds)
        .send()
        .await
        .unwrap();
    before_login();
    let login = answer(
        client
            .post(format!("{base}/api/v1/auth/login"))
            .json(&creds),
    )
    .await;
    login["data"]["access_token"]
        .as_str()
        .expect("login")
        .to_owned()
}

/// Enqueues a text-to-image job; its id.
pub async fn enqueue(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    body: &serde_json::Value,
) -> String {
    let r = generate(client, base, token, "text-to-image", body).await;
    r["data"]["job_id"].as_str().expect("accepted").to_owned()
}

/// `POST /generate/{kind}`; the answer (`data.job_id`,
/// `data.estimated_credits` when accepted).
pub async fn generate(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    kind: &str,
    body: &serde_json::Value,
) -> serde_json::Value {
    let url = format!("{base}/api/v1/generate/{kind}");
    answer(client.post(url).bearer_auth(token).json(body)).await
}

/// A job as its owner sees it.
pub async fn detail(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    id: &str,
) -> serde_json::Value {
    let url = format!("{base}/api/v1/queue/items/{id}");
    answer(client.get(url).bearer_auth(token)).await["data"].clone()
}

/// Waits until the job has ended (the benchmark's own clock; not a test).
pub async fn wait_end(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    id: &str,
) -> serde_json::Value {
    loop {
        let d = detail(client, base, token, id).await;
        if matches!(
            d["status"].as_str(),
            Some("completed" | "failed" | "cancelled")
        ) {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
