//! A job's pre- and post-nodes on the worker, and how their failures are
//! reported.

use std::sync::Arc;

use image::RgbaImage;

use super::{JobSource, Worker, pipeline};
use crate::imaging;
use crate::plugins::limits;
use crate::plugins::runtime::Params;
use crate::plugins::{LoadedPlugin, PluginError, PluginKind};
use crate::queue::failure::Failure;
use crate::queue::job::{JobSpec, NodeSpec};
use crate::queue::{FailureCode, Lease};

/// Why a job failed on the worker: what the host is told, and the whole
/// story for the worker's log (never shown to the user).
pub(super) struct JobFailure {
    pub failure: Failure,
    pub detail: String,
}

impl JobFailure {
    pub fn new(code: FailureCode, detail: impl Into<String>) -> Self {
        Self {
            failure: Failure::new(code),
            detail: detail.into(),
        }
    }

    /// A node failed: the user's own choice of code.
    pub fn plugin(e: &PluginError) -> Self {
        Self {
            failure: Failure::new(FailureCode::PluginFailed).because(&e.user_reason()),
            detail: e.to_string(),
        }
    }

    /// With a reason the user is shown.
    pub fn because(mut self, reason: &str) -> Self {
        self.failure = self.failure.because(reason);
        self
    }

    /// The user's chosen work took `seconds` of the worker before this.
    pub fn after(mut self, seconds: f64) -> Self {
        self.failure = self.failure.after(seconds);
        self
    }
}

/// A node handed back an image handle whose pixels do not fit its size.
pub(super) fn bad_output(plugin: &str, reason: &str) -> PluginError {
    PluginError::BadOutput {
        plugin: plugin.to_owned(),
        reason: reason.to_owned(),
    }
}

impl<S: JobSource> Worker<S> {
    async fn load_node(
        &self,
        lease: &Lease,
        node: &NodeSpec,
    ) -> Result<Arc<LoadedPlugin>, JobFailure> {
        self.source
            .plugin(&self.runtime, lease, node, PluginKind::Node)
            .await
            .map_err(|e| {
                JobFailure::new(
                    FailureCode::HostFailed,
                    format!("loading {}@{}: {e}", node.name, node.version),
                )
            })
    }

    /// A node's limits: this worker's, its time cut to what the job
    /// reserved for it.
    fn node_limits(&self, node: &NodeSpec) -> limits::Limits {
        limits::resolve(PluginKind::Node, &node.name, &self.limits).within(node.reserved_ms)
    }

    pub(super) async fn run_pre_nodes(&self, lease: &Lease) -> Result<JobSpec, JobFailure> {
        let mut spec = lease.spec.clone();
        for node in &lease.spec.pre_nodes {
            spec = self.run_pre_node(lease, node, &spec).await?;
        }
        Ok(spec)
    }

    /// One pre-node: `spec` as it rewrites it (within the request's rules).
    pub(super) async fn run_pre_node(
        &self,
        lease: &Lease,
        node: &NodeSpec,
        spec: &JobSpec,
    ) -> Result<JobSpec, JobFailure> {
        let plugin = self.load_node(lease, node).await?;
        let run = self
            .runtime
            .run_pre(
                &node.name,
                &plugin,
                self.node_limits(node),
                Params::from(spec),
                &node.parameters.to_string(),
            )
            .await
            .map_err(|e| JobFailure::plugin(&e))?;
        run.output
            .apply_to(spec)
            .map_err(|reason| JobFailure::plugin(&bad_output(&node.name, &reason)))
    }

    /// One post-node over `images`.
    pub(super) async fn run_post_node(
        &self,
        lease: &Lease,
        node: &NodeSpec,
        spec: &JobSpec,
        images: Vec<RgbaImage>,
    ) -> Result<Vec<RgbaImage>, JobFailure> {
        let plugin = self.load_node(lease, node).await?;
        let handles = images
            .into_iter()
            .map(pipeline::to_handle)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| JobFailure::new(FailureCode::HostFailed, e))?;
        let run = self
            .runtime
            .run_post(
                &node.name,
                &plugin,
                self.node_limits(node),
                Params::from(spec),
                handles,
                &node.parameters.to_string(),
            )
            .await
            .map_err(|e| JobFailure::plugin(&e))?;
        run.output
            .iter()
            .map(pipeline::from_handle)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| JobFailure::plugin(&bad_output(&node.name, &e)))
    }

    /// Post-nodes, then PNG encoding (blocking work off the async threads),
    /// one image at a time: each is let go of once encoded.
    pub(super) async fn finish(
        &self,
        lease: &Lease,
        spec: &JobSpec,
        images: Vec<RgbaImage>,
    ) -> Result<Vec<Vec<u8>>, JobFailure> {
        let mut images = images;
        for node in &spec.post_nodes {
            images = self.run_post_node(lease, node, spec, images).await?;
            pipeline::check_outputs(&images)
                .map_err(|e| JobFailure::plugin(&bad_output(&node.name, &e)))?;
        }
        tokio::task::spawn_blocking(move || {
            images
                .into_iter()
                .map(|img| imaging::encode_png(&img))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| JobFailure::new(FailureCode::HostFailed, e.to_string()))?
        .map_err(|e| JobFailure::new(FailureCode::HostFailed, e))
    }
}
