//! The job source of the worker inside `pingvas serve`: the queue and the
//! plugin registry of this process, no network in between.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{JobSource, WorkItem};
use crate::blobs::Blobs;
use crate::plugins::registry::Registry;
use crate::plugins::world::PluginKind;
use crate::plugins::{LoadedPlugin, PluginRuntime};
use crate::queue::failure::Failure;
use crate::queue::job::NodeSpec;
use crate::queue::{BeatReply, Finished, Lease, Queue, QueueError, StepProgress, WorkerInfo};

pub struct LocalSource {
    pub queue: Arc<Queue>,
    pub registry: Arc<Registry>,
    pub blobs: Blobs,
}

/// Reads a leased job's input images from blob storage.
pub async fn with_inputs(blobs: &Blobs, lease: Lease) -> anyhow::Result<WorkItem> {
    let mut inputs = HashMap::new();
    for k in lease.spec.input_keys() {
        let bytes = blobs.get(&k).await?;
        inputs.insert(k, bytes);
    }
    Ok(WorkItem { lease, inputs })
}

fn ended_ok(r: Result<impl Sized, QueueError>) -> anyhow::Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(QueueError::Ended { status }) => {
            tracing::info!(
                status = status.as_str(),
                "job ended on the host before the report"
            );
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

impl JobSource for LocalSource {
    async fn lease(&self, info: &WorkerInfo, wait: Duration) -> anyhow::Result<Option<WorkItem>> {
        self.queue.touch_worker(info).await?;
        match self.queue.wait_for_lease(info, wait).await? {
            Some(lease) => Ok(Some(with_inputs(&self.blobs, lease).await?)),
            None => Ok(None),
        }
    }

    async fn heartbeat(
        &self,
        job_id: &str,
        token: &str,
        progress: Option<StepProgress>,
        gpu_started_at: Option<DateTime<Utc>>,
    ) -> anyhow::Result<BeatReply> {
        Ok(self
            .queue
            .heartbeat(job_id, token, progress, gpu_started_at)
            .await?)
    }

    async fn complete(&self, job_id: &str, token: &str, done: Finished) -> anyhow::Result<()> {
        ended_ok(self.queue.complete(job_id, token, done).await)
    }

    async fn fail(&self, job_id: &str, token: &str, failure: &Failure) -> anyhow::Result<()> {
        ended_ok(self.queue.fail(job_id, token, failure).await)
    }

    async fn plugin(
        &self,
        _runtime: &PluginRuntime,
        _lease: &Lease,
        pinned: &NodeSpec,
        kind: PluginKind,
    ) -> anyhow::Result<Arc<LoadedPlugin>> {
        let loaded = self
            .registry
            .load_pinned(&pinned.name, &pinned.version)
            .await?;
        anyhow::ensure!(
            loaded.kind == kind,
            "{} is a {} plugin",
            pinned.name,
            loaded.kind.as_str()
        );
        Ok(loaded)
    }

    async fn component_node(
        &self,
        _runtime: &PluginRuntime,
        lease: &Lease,
        name: &str,
        version: &str,
    ) -> anyhow::Result<Arc<LoadedPlugin>> {
        let r = self
            .registry
            .resolve(&lease.user_id, name, Some(version))
            .await
            .map_err(|e| anyhow::anyhow!("{name}@{version}: {e}"))?;
        anyhow::ensure!(r.plugin.kind == "node", "{name} is not a node plugin");
        Ok(r.loaded)
    }

    async fn goodbye(&self, info: &WorkerInfo) {
        if let Err(e) = self.queue.forget_worker(&info.id, &info.key).await {
            tracing::warn!(error = %e, "unregistering the worker");
        }
    }
}
