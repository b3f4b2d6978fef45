//! GPU workers. A worker owns one inference backend and a plugin runtime;
//! it leases jobs from a `JobSource` (the queue in this process, or a host
//! over the internal HTTP API), runs pre-nodes → backend → post-nodes, and
//! reports the result. Leasing runs ahead of the GPU: while one job is on
//! the backend the next lease is already fetched, and a finished job's
//! post-nodes, encoding and upload run beside the next job's inference, so
//! the backend is not left idle between jobs.

mod component;
mod keeper;
pub mod local;
mod models;
mod nodes;
pub mod pipeline;
pub mod remote;
pub mod wire;
mod workflow;

use keeper::Running;
use nodes::JobFailure;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use image::RgbaImage;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::Config;
use crate::imaging;
use crate::inference::{InferenceBackend, InferenceError, Progress};
use crate::models::ModelCatalogue;
use crate::plugins::limits::LimitsOverride;
use crate::plugins::world::PluginKind;
use crate::plugins::{LoadedPlugin, PluginRuntime};
use crate::queue::failure::Failure;
use crate::queue::job::{JobSpec, NodeSpec};
use crate::queue::{BeatReply, FailureCode, Finished, Lease, StepProgress, WorkerInfo};

/// A leased job with its input images.
#[derive(Debug, Clone)]
pub struct WorkItem {
    pub lease: Lease,
    /// Input image bytes by blob key.
    pub inputs: HashMap<String, Vec<u8>>,
}

/// Where a worker gets jobs and reports them.
pub trait JobSource: Send + Sync + 'static {
    fn lease(
        &self,
        info: &WorkerInfo,
        wait: Duration,
    ) -> impl Future<Output = anyhow::Result<Option<WorkItem>>> + Send;
    fn heartbeat(
        &self,
        job_id: &str,
        token: &str,
        progress: Option<StepProgress>,
        gpu_started_at: Option<DateTime<Utc>>,
    ) -> impl Future<Output = anyhow::Result<BeatReply>> + Send;
    fn complete(
        &self,
        job_id: &str,
        token: &str,
        done: Finished,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
    fn fail(
        &self,
        job_id: &str,
        token: &str,
        failure: &Failure,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// A plugin pinned by the leased job (a node, or a workflow's
    /// component), compiled (cached by content hash).
    fn plugin(
        &self,
        runtime: &PluginRuntime,
        lease: &Lease,
        pinned: &NodeSpec,
        kind: PluginKind,
    ) -> impl Future<Output = anyhow::Result<Arc<LoadedPlugin>>> + Send;
    /// A node plugin a workflow component asks for by `name@version`,
    /// resolved for the job's owner (visible to them, not yanked).
    fn component_node(
        &self,
        runtime: &PluginRuntime,
        lease: &Lease,
        name: &str,
        version: &str,
    ) -> impl Future<Output = anyhow::Result<Arc<LoadedPlugin>>> + Send;
    /// Unregisters the worker when it stops.
    fn goodbye(&self, info: &WorkerInfo) -> impl Future<Output = ()> + Send;
}

pub struct Worker<S: JobSource> {
    pub source: Arc<S>,
    /// Who the worker is and the models it advertises (what its backend
    /// has, narrowed by `worker_models`), refreshed now and then.
    info: std::sync::RwLock<WorkerInfo>,
    /// `worker_models`: the most this worker may advertise.
    configured: Option<Vec<String>>,
    catalogue: ModelCatalogue,
    /// When the backend was last asked for its models, and whether a
    /// failed model lookup asks for a fresh look.
    models_checked: std::sync::Mutex<Option<Instant>>,
    recheck_models: AtomicBool,
    pub backend: Arc<dyn InferenceBackend>,
    pub runtime: Arc<PluginRuntime>,
    pub limits: HashMap<String, LimitsOverride>,
    /// How long one lease poll waits for work.
    pub poll: Duration,
    /// Heartbeat interval.
    pub beat_every: Duration,
    /// Cancelled to stop the job on the backend at once (shutdown past its
    /// grace period); the job is requeued when its lease expires.
    pub abort: CancellationToken,
}

/// How long one lease poll waits for work (a long poll on the internal
/// API, a wait on the queue in process).
pub const LEASE_POLL: Duration = Duration::from_secs(10);
impl<S: JobSource> Worker<S> {
    /// A worker as the configuration says: plugin limits, and heartbeats
    /// three times per lease. `info.models` is the configured narrowing;
    /// `refresh_models` adds what the backend really has.
    pub fn new(
        source: Arc<S>,
        info: WorkerInfo,
        backend: Arc<dyn InferenceBackend>,
        runtime: Arc<PluginRuntime>,
        catalogue: ModelCatalogue,
        config: &Config,
    ) -> Self {
        Self {
            source,
            configured: info.models.clone(),
            info: std::sync::RwLock::new(info),
            catalogue,
            models_checked: std::sync::Mutex::new(None),
            recheck_models: AtomicBool::new(false),
            backend,
            runtime,
            limits: config.plugin_limits.clone(),
            poll: LEASE_POLL,
            beat_every: (Duration::from_secs(config.lease_ttl_secs) / 3)
                .max(Duration::from_millis(100)),
            abort: CancellationToken::new(),
        }
    }

    /// Who the worker is now.
    pub fn info(&self) -> WorkerInfo {
        self.info.read().expect("worker info").clone()
    }
}

/// A job after inference, on its way to the post-nodes.
struct Inferred {
    spec: JobSpec,
    images: Vec<RgbaImage>,
    pre_seconds: f64,
    gpu_seconds: f64,
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
    /// A workflow's GPU seconds per inference step, and each image's
    /// output node (empty for other jobs).
    step_seconds: Vec<f64>,
    image_nodes: Vec<String>,
}

impl<S: JobSource> Worker<S> {
    /// Runs until `shutdown` is cancelled, then lets the job on the GPU
    /// finish its report and unregisters.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        tracing::info!(worker = %self.info().id, backend = self.backend.name(), "worker started");
        // One lease may wait ahead of the GPU.
        let slots = Arc::new(Semaphore::new(1));
        let (tx, mut rx) = mpsc::channel::<Running>(1);
        let leaser = {
            let this = self.clone();
            let shutdown = shutdown.clone();
            let slots = slots.clone();
            tokio::spawn(async move { this.lease_loop(tx, slots, shutdown).await })
        };
        let mut finishers = tokio::task::JoinSet::new();
        loop {
            let job = tokio::select! {
                job = rx.recv() => job,
                _ = shutdown.cancelled() => None,
            };
            let Some(job) = job else { break };
            slots.add_permits(1);
            if let Some(fin) = self.clone().run_gpu(job).await {
                finishers.spawn(fin);
            }
            while finishers.try_join_next().is_some() {}
        }
        // Jobs leased but not started go back to the queue when their
        // lease expires; their keepers stop now.
        leaser.abort();
        while let Ok(job) = rx.try_recv() {
            job.done.cancel();
            job.keeper.abort();
        }
        while finishers.join_next().await.is_some() {}
        let info = self.info();
        self.source.goodbye(&info).await;
        tracing::info!(worker = %info.id, "worker stopped");
    }

    async fn lease_loop(
        self: Arc<Self>,
        tx: mpsc::Sender<Running>,
        slots: Arc<Semaphore>,
        shutdown: CancellationToken,
    ) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => p,
                _ = shutdown.cancelled() => return,
            };
            let Ok(permit) = permit else { return };
            self.refresh_models_if_due().await;
            let info = self.info();
            let leased = tokio::select! {
                r = self.source.lease(&info, self.poll) => r,
                _ = shutdown.cancelled() => return,
            };
            match leased {
                Ok(Some(item)) => {
                    backoff = Duration::from_millis(100);
                    permit.forget();
                    let running = self.keep_alive(item);
                    if tx.send(running).await.is_err() {
                        return;
                    }
                }
                Ok(None) => drop(permit),
                Err(e) => {
                    drop(permit);
                    tracing::warn!(error = %e, "leasing failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Pre-nodes and inference; returns the job's finishing stage (post
    /// nodes, encode, report) to run beside the next job.
    async fn run_gpu(
        self: Arc<Self>,
        job: Running,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        let result = async {
            if let Some(plan) = &job.item.lease.spec.workflow {
                let done = self.run_workflow(&job, plan).await?;
                return Ok(Inferred {
                    spec: job.item.lease.spec.clone(),
                    images: done.images,
                    pre_seconds: done.node_seconds,
                    gpu_seconds: done.gpu_seconds,
                    started_at: done.started_at,
                    finished_at: done.finished_at,
                    step_seconds: done.step_seconds,
                    image_nodes: done.image_nodes,
                });
            }
            let pre_started = Instant::now();
            let spec = self
                .run_pre_nodes(&job.item.lease)
                .await
                .map_err(|f| f.after(pre_started.elapsed().as_secs_f64()))?;
            let pre_seconds = pre_started.elapsed().as_secs_f64();
            let input = |key: &Option<String>| -> Result<Option<RgbaImage>, JobFailure> {
                key.as_ref()
                    .map(|k| {
                        let bytes = job.item.inputs.get(k).ok_or_else(|| {
                            JobFailure::new(FailureCode::InvalidInput, format!("input {k} missing"))
                        })?;
                        imaging::decode(bytes)
                            .map_err(|e| JobFailure::new(FailureCode::InvalidInput, e))
                    })
                    .transpose()
            };
            let guide = spec.controlnet.as_ref().map(|c| c.image.clone());
            let op = pipeline::operation(
                &spec,
                input(&spec.source_image)?,
                input(&spec.mask_image)?,
                input(&guide)?,
            )
            .map_err(|e| JobFailure::new(FailureCode::InvalidInput, e))?;
            let stop = job.stop.clone();
            let tx = job.progress.clone();
            let started_at = Utc::now();
            let started = Instant::now();
            tx.send_modify(|v| v.1 = Some(started_at));
            let sink = Arc::new(move |p: Progress| {
                tx.send_modify(|v| v.0 = Some(StepProgress::steps(p.step, p.total_steps)));
                !stop.is_cancelled()
            });
            let out = tokio::select! {
                r = self.backend.run(op, sink) => r,
                _ = job.stop.cancelled() => Err(InferenceError::Cancelled),
            };
            let finished = Instant::now();
            let gpu_seconds = finished.duration_since(started).as_secs_f64();
            let gpu_finished_at = started_at
                + chrono::Duration::from_std(finished.duration_since(started)).unwrap_or_default();
            match out {
                Ok(images) => Ok(Inferred {
                    spec,
                    images,
                    pre_seconds,
                    gpu_seconds,
                    started_at,
                    finished_at: gpu_finished_at,
                    step_seconds: Vec::new(),
                    image_nodes: Vec::new(),
                }),
                Err(InferenceError::Cancelled) => {
                    Err(JobFailure::new(FailureCode::Cancelled, "stopped"))
                }
                Err(InferenceError::InvalidInput(m)) => {
                    Err(JobFailure::new(FailureCode::InvalidInput, m))
                }
                Err(e @ InferenceError::UnknownModel(_)) => {
                    // The backend lost a model: look again before leasing.
                    self.recheck_models.store(true, Ordering::Relaxed);
                    Err(JobFailure::new(FailureCode::InferenceFailed, e.to_string()))
                }
                Err(e) => Err(JobFailure::new(FailureCode::InferenceFailed, e.to_string())),
            }
        }
        .await;
        let this = self.clone();
        Some(async move {
            // The keeper renews the lease until the report is ready (post
            // nodes can take a while), then sends the last progress.
            let Running {
                item,
                progress,
                done,
                keeper,
                ..
            } = job;
            let lease = &item.lease;
            let report = match result {
                Ok(done) => {
                    let post_started = Instant::now();
                    let finished = this.finish(lease, &done.spec, done.images).await;
                    let post_seconds = post_started.elapsed().as_secs_f64();
                    let node_seconds = done.pre_seconds + post_seconds;
                    match finished {
                        Ok(pngs) => Ok(Finished {
                            images: pngs,
                            gpu_seconds: done.gpu_seconds,
                            node_seconds,
                            gpu_started_at: Some(done.started_at),
                            gpu_finished_at: Some(done.finished_at),
                            backend: this.backend.name().to_owned(),
                            // A workflow's parameters are its stored plan.
                            effective: done.spec.workflow.is_none().then_some(done.spec),
                            step_seconds: done.step_seconds,
                            image_nodes: done.image_nodes,
                        }),
                        Err(f) => Err(f.after(done.gpu_seconds + node_seconds)),
                    }
                }
                Err(f) => Err(f),
            };
            done.cancel();
            let _ = keeper.await;
            drop(progress);
            let outcome = match report {
                Ok(done) => {
                    this.source
                        .complete(&lease.job_id, &lease.token, done)
                        .await
                }
                // The host already ended a cancelled job.
                Err(f) if f.failure.code == FailureCode::Cancelled => Ok(()),
                Err(f) => {
                    tracing::warn!(job = %lease.job_id, code = f.failure.code.as_str(), detail = %f.detail, "job failed");
                    this.source
                        .fail(&lease.job_id, &lease.token, &f.failure)
                        .await
                }
            };
            if let Err(e) = outcome {
                tracing::warn!(job = %lease.job_id, error = %e, "reporting the job failed");
            }
        })
    }
}
