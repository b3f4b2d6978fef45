//! The job source of `pingvas worker`: a host's internal worker API over
//! HTTP, authenticated with the shared worker token.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use super::wire::{
    CompleteRequest, FailRequest, HeartbeatRequest, LEASE_TOKEN, LeaseRequest, LeasedJob,
    WORKER_KEY,
};
use super::{JobSource, WorkItem};
use crate::plugins::{LoadedPlugin, PluginKind, PluginRuntime};
use crate::queue::Lease;
use crate::queue::failure::Failure;
use crate::queue::job::NodeSpec;
use crate::queue::{BeatReply, Finished, StepProgress, WorkerInfo};

pub struct RemoteSource {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl RemoteSource {
    pub fn new(server: &str, token: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            base: format!("{}/internal/v1", server.trim_end_matches('/')),
            token: token.to_owned(),
            http,
        })
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
        timeout: Duration,
    ) -> anyhow::Result<Option<T>> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(timeout)
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        match resp.status() {
            StatusCode::NO_CONTENT => Ok(None),
            s if s.is_success() => {
                let v: serde_json::Value = resp.json().await?;
                Ok(Some(serde_json::from_value(v["data"].clone())?))
            }
            StatusCode::CONFLICT => {
                tracing::info!(path, "the host says the job already ended");
                Ok(None)
            }
            s => bail!(
                "POST {path}: {s}: {}",
                resp.text().await.unwrap_or_default()
            ),
        }
    }

    /// Fetches a component of the leased job (`what`: `plugins` pinned by
    /// the job, `nodes` a component asks for) and compiles it as `kind`.
    async fn fetch_plugin(
        &self,
        runtime: &PluginRuntime,
        lease: &Lease,
        what: &str,
        name: &str,
        version: &str,
        kind: PluginKind,
    ) -> anyhow::Result<Arc<LoadedPlugin>> {
        let resp = self
            .http
            .get(format!(
                "{}/jobs/{}/{what}/{name}/{version}",
                self.base, lease.job_id
            ))
            .bearer_auth(&self.token)
            .header(LEASE_TOKEN, &lease.token)
            .timeout(Duration::from_secs(60))
            .send()
            .await?
            .error_for_status()?;
        let bytes = resp.bytes().await?;
        runtime
            .load(name, &bytes, Some(kind))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
    }
}

impl JobSource for RemoteSource {
    async fn lease(&self, info: &WorkerInfo, wait: Duration) -> anyhow::Result<Option<WorkItem>> {
        let wait_ms = wait.as_millis() as u64;
        let leased: Option<LeasedJob> = self
            .post(
                "/lease",
                &LeaseRequest::of(info, wait_ms),
                wait + Duration::from_secs(15),
            )
            .await?;
        leased.map(LeasedJob::into_item).transpose()
    }

    async fn heartbeat(
        &self,
        job_id: &str,
        token: &str,
        progress: Option<StepProgress>,
        gpu_started_at: Option<DateTime<Utc>>,
    ) -> anyhow::Result<BeatReply> {
        let body = HeartbeatRequest {
            lease_token: token.to_owned(),
            step: progress.as_ref().map(|p| p.step),
            total_steps: progress.as_ref().map(|p| p.total_steps),
            gpu_started_at,
            node: progress.as_ref().and_then(|p| p.node.clone()),
            message: progress.and_then(|p| p.message),
        };
        let reply: Option<BeatReply> = self
            .post(
                &format!("/jobs/{job_id}/heartbeat"),
                &body,
                Duration::from_secs(10),
            )
            .await?;
        Ok(reply.unwrap_or(BeatReply::Lost))
    }

    async fn complete(&self, job_id: &str, token: &str, done: Finished) -> anyhow::Result<()> {
        let _: Option<serde_json::Value> = self
            .post(
                &format!("/jobs/{job_id}/complete"),
                &CompleteRequest::of(token, &done),
                Duration::from_secs(120),
            )
            .await?;
        Ok(())
    }

    async fn fail(&self, job_id: &str, token: &str, failure: &Failure) -> anyhow::Result<()> {
        let body = FailRequest {
            lease_token: token.to_owned(),
            failure: failure.clone(),
        };
        let _: Option<serde_json::Value> = self
            .post(
                &format!("/jobs/{job_id}/fail"),
                &body,
                Duration::from_secs(30),
            )
            .await?;
        Ok(())
    }

    async fn plugin(
        &self,
        runtime: &PluginRuntime,
        lease: &Lease,
        pinned: &NodeSpec,
        kind: PluginKind,
    ) -> anyhow::Result<Arc<LoadedPlugin>> {
        let (name, version) = (&pinned.name, &pinned.version);
        self.fetch_plugin(runtime, lease, "plugins", name, version, kind)
            .await
    }

    async fn component_node(
        &self,
        runtime: &PluginRuntime,
        lease: &Lease,
        name: &str,
        version: &str,
    ) -> anyhow::Result<Arc<LoadedPlugin>> {
        self.fetch_plugin(runtime, lease, "nodes", name, version, PluginKind::Node)
            .await
    }

    async fn goodbye(&self, info: &WorkerInfo) {
        let _ = self
            .http
            .delete(format!("{}/workers/{}", self.base, info.id))
            .bearer_auth(&self.token)
            .header(WORKER_KEY, &info.key)
            .timeout(Duration::from_secs(5))
            .send()
            .await;
    }
}
