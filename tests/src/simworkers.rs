//! Simulated GPU workers: each long-polls `/internal/v1/lease` on one of
//! the hosts it is given and completes what it leases at once with a
//! small PNG of the job's size, recording every lease (which job, when).
//! For the scale tests of many workers against one database.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// One lease a simulated worker got.
#[derive(Debug, Clone)]
pub struct Leased {
    pub job_id: String,
    pub worker: usize,
    pub at: DateTime<Utc>,
}

pub struct SimWorkers {
    pub leases: Arc<Mutex<Vec<Leased>>>,
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl SimWorkers {
    /// `n` workers, spread over `bases` in turn, with the worker token.
    pub fn start(bases: &[String], n: usize, token: &str) -> Self {
        let leases = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        // One connection pool per host: 200 long polls need 200 sockets.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(n)
            .build()
            .unwrap();
        for i in 0..n {
            let base = bases[i % bases.len()].clone();
            let (client, token, leases, stop) = (
                client.clone(),
                token.to_owned(),
                leases.clone(),
                stop.clone(),
            );
            tasks.spawn(async move {
                tokio::select! {
                    () = work(client, base, token, i, leases) => {}
                    () = stop.cancelled() => {}
                }
            });
        }
        Self {
            leases,
            stop,
            tasks,
        }
    }

    pub async fn stop(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

async fn work(
    client: reqwest::Client,
    base: String,
    token: String,
    index: usize,
    leases: Arc<Mutex<Vec<Leased>>>,
) {
    let worker_id = format!("sim-{index}-{}", uuid::Uuid::new_v4().simple());
    let ask = json!({
        "worker_id": worker_id,
        "name": format!("sim-{index}"),
        "backend": "cpu-reference",
        "models": null,
        "worker_key": format!("key-{worker_id}"),
        "wait_ms": 10_000,
    });
    loop {
        let Ok(resp) = client
            .post(format!("{base}/internal/v1/lease"))
            .bearer_auth(&token)
            .json(&ask)
            .send()
            .await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if resp.status() != reqwest::StatusCode::OK {
            continue;
        }
        let at = Utc::now();
        let Ok(body) = resp.json::<Value>().await else {
            continue;
        };
        let job = &body["data"];
        let job_id = job["job_id"].as_str().unwrap_or_default().to_owned();
        leases.lock().unwrap().push(Leased {
            job_id: job_id.clone(),
            worker: index,
            at,
        });
        let spec = &job["spec"];
        let side = |k: &str| spec[k].as_u64().unwrap_or(64) as u32;
        let batch = spec["batch_size"].as_u64().unwrap_or(1).max(1) as usize;
        let png = crate::png_base64(side("width"), side("height"), [40, 90, 160]);
        let now = Utc::now();
        let done = json!({
            "lease_token": job["lease_token"],
            "images": vec![png; batch],
            "gpu_seconds": 0.01,
            "gpu_started_at": now,
            "gpu_finished_at": now,
            "backend": "cpu-reference",
            "effective": spec,
        });
        let _ = client
            .post(format!("{base}/internal/v1/jobs/{job_id}/complete"))
            .bearer_auth(&token)
            .json(&done)
            .send()
            .await;
    }
}
