//! The internal worker API's bodies (`/internal/v1/...`), shared by the
//! host's handlers and the remote worker's client. Image bytes travel as
//! base64 inside JSON; a heartbeat is answered with `queue::BeatReply`.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::WorkItem;
use crate::queue::failure::Failure;
use crate::queue::job::JobSpec;
use crate::queue::{Finished, Lease, WorkerInfo};

/// The header with the lease token of the job a plugin download is for.
pub const LEASE_TOKEN: &str = "x-lease-token";
/// The header with the worker's own key, for unregistering.
pub const WORKER_KEY: &str = "x-worker-key";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseRequest {
    pub worker_id: String,
    pub name: String,
    pub backend: String,
    /// `None`: every model of the catalogue.
    pub models: Option<Vec<String>>,
    #[serde(default)]
    pub paused: bool,
    /// The worker process's secret: only it may renew or remove the
    /// registration of `worker_id`.
    pub worker_key: String,
    /// How long to wait for work (long poll), at most 30 s.
    #[serde(default)]
    pub wait_ms: u64,
}

impl LeaseRequest {
    pub fn of(info: &WorkerInfo, wait_ms: u64) -> Self {
        Self {
            worker_id: info.id.clone(),
            name: info.name.clone(),
            backend: info.backend.clone(),
            models: info.models.clone(),
            paused: info.paused,
            worker_key: info.key.clone(),
            wait_ms,
        }
    }

    pub fn info(&self) -> WorkerInfo {
        WorkerInfo {
            id: self.worker_id.clone(),
            name: self.name.clone(),
            backend: self.backend.clone(),
            models: self.models.clone(),
            paused: self.paused,
            key: self.worker_key.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeasedJob {
    pub job_id: String,
    pub user_id: String,
    pub lease_token: String,
    pub lease_expires_at: DateTime<Utc>,
    pub attempt: i64,
    pub spec: JobSpec,
    /// Input images by blob key, base64.
    pub inputs: HashMap<String, String>,
}

impl LeasedJob {
    pub fn of(item: &WorkItem) -> Self {
        Self {
            job_id: item.lease.job_id.clone(),
            user_id: item.lease.user_id.clone(),
            lease_token: item.lease.token.clone(),
            lease_expires_at: item.lease.expires_at,
            attempt: item.lease.attempt,
            spec: item.lease.spec.clone(),
            inputs: item
                .inputs
                .iter()
                .map(|(k, v)| (k.clone(), B64.encode(v)))
                .collect(),
        }
    }

    pub fn into_item(self) -> anyhow::Result<WorkItem> {
        let inputs = self
            .inputs
            .into_iter()
            .map(|(k, v)| Ok((k, B64.decode(v)?)))
            .collect::<anyhow::Result<_>>()?;
        Ok(WorkItem {
            lease: Lease {
                job_id: self.job_id,
                user_id: self.user_id,
                token: self.lease_token,
                expires_at: self.lease_expires_at,
                attempt: self.attempt,
                spec: self.spec,
            },
            inputs,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    pub lease_token: String,
    pub step: Option<u32>,
    pub total_steps: Option<u32>,
    pub gpu_started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompleteRequest {
    pub lease_token: String,
    /// PNG images, base64.
    pub images: Vec<String>,
    pub gpu_seconds: f64,
    #[serde(default)]
    pub node_seconds: f64,
    pub gpu_started_at: Option<DateTime<Utc>>,
    pub gpu_finished_at: Option<DateTime<Utc>>,
    pub backend: String,
    pub effective: Option<JobSpec>,
    #[serde(default)]
    pub step_seconds: Vec<f64>,
    #[serde(default)]
    pub image_nodes: Vec<String>,
}

impl CompleteRequest {
    pub fn of(token: &str, done: &Finished) -> Self {
        Self {
            lease_token: token.to_owned(),
            images: done.images.iter().map(|i| B64.encode(i)).collect(),
            gpu_seconds: done.gpu_seconds,
            node_seconds: done.node_seconds,
            gpu_started_at: done.gpu_started_at,
            gpu_finished_at: done.gpu_finished_at,
            backend: done.backend.clone(),
            effective: done.effective.clone(),
            step_seconds: done.step_seconds.clone(),
            image_nodes: done.image_nodes.clone(),
        }
    }

    pub fn into_finished(self) -> Result<Finished, base64::DecodeError> {
        Ok(Finished {
            images: self
                .images
                .iter()
                .map(|i| B64.decode(i))
                .collect::<Result<_, _>>()?,
            gpu_seconds: self.gpu_seconds,
            node_seconds: self.node_seconds,
            gpu_started_at: self.gpu_started_at,
            gpu_finished_at: self.gpu_finished_at,
            backend: self.backend,
            effective: self.effective,
            step_seconds: self.step_seconds,
            image_nodes: self.image_nodes,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailRequest {
    pub lease_token: String,
    #[serde(flatten)]
    pub failure: Failure,
}
