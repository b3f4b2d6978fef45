//! GPU workers. A worker owns one inference backend and a plugin runtime;
//! it leases jobs from a `JobSource` (the queue in this process, or a host
//! over the internal HTTP API), runs pre-nodes → backend → post-nodes, and
//! reports the result. Leasing runs ahead of the GPU: while one job is on
//! the backend the next lease is already fetched, and a finished job's
//! post-nodes, encoding and upload run beside the next job's inference, so
//! the backend is not left idle between jobs.

pub mod local;
pub mod pipeline;
pub mod remote;
pub mod wire;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use image::RgbaImage;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;

use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::Config;
use crate::imaging;
use crate::inference::{InferenceBackend, InferenceError, Progress};
use crate::models::ModelCatalogue;
use crate::plugins::limits::{self, LimitsOverride};
use crate::plugins::runtime::Params;
use crate::plugins::{LoadedPlugin, PluginError, PluginKind, PluginRuntime};
use crate::queue::failure::Failure;
use crate::queue::job::{JobSpec, NodeSpec};
use crate::queue::{BeatReply, FailureCode, Finished, Lease, WorkerInfo};

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
        progress: Option<(u32, u32)>,
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
    /// A node plugin pinned by the leased job, compiled (cached by content
    /// hash).
    fn node_plugin(
        &self,
        runtime: &PluginRuntime,
        lease: &Lease,
        node: &NodeSpec,
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
/// How often a worker asks its backend which models it has.
pub const MODEL_RECHECK: Duration = Duration::from_secs(60);

/// What a worker advertises: what the backend has (`None`: every model),
/// narrowed by what it is configured to serve.
fn narrow(found: Option<Vec<String>>, configured: &Option<Vec<String>>) -> Option<Vec<String>> {
    match (found, configured) {
        (None, c) => c.clone(),
        (Some(f), None) => Some(f),
        (Some(f), Some(c)) => Some(f.into_iter().filter(|m| c.contains(m)).collect()),
    }
}

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

    /// Asks the backend which catalogue models it has and advertises those
    /// (a backend that cannot be asked keeps what was advertised).
    pub async fn refresh_models(&self) {
        match self.backend.discover(&self.catalogue).await {
            Ok(found) => {
                let models = narrow(found, &self.configured);
                let mut info = self.info.write().expect("worker info");
                if info.models != models {
                    tracing::info!(worker = %info.id, ?models, "models the backend has");
                }
                info.models = models;
            }
            Err(e) => tracing::warn!(error = %e, "asking the backend for its models failed"),
        }
        *self.models_checked.lock().expect("models checked") = Some(Instant::now());
        self.recheck_models.store(false, Ordering::Relaxed);
    }

    /// Refreshes the models when they are old or a lookup failed.
    async fn refresh_models_if_due(&self) {
        let due = self.recheck_models.load(Ordering::Relaxed)
            || self
                .models_checked
                .lock()
                .expect("models checked")
                .is_none_or(|t| t.elapsed() > MODEL_RECHECK);
        if due {
            self.refresh_models().await;
        }
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
}

/// A node handed back an image handle whose pixels do not fit its size.
fn bad_output(plugin: &str, reason: &str) -> PluginError {
    PluginError::BadOutput {
        plugin: plugin.to_owned(),
        reason: reason.to_owned(),
    }
}

/// The last step progress and when the backend started, for heartbeats.
type JobProgress = (Option<(u32, u32)>, Option<DateTime<Utc>>);

/// A job between stages, with the channel its heartbeat keeper reads.
struct Running {
    item: WorkItem,
    /// Cancelled when the job must stop (user cancel, lease lost).
    stop: CancellationToken,
    /// Step progress and the backend's start time, for heartbeats.
    progress: watch::Sender<JobProgress>,
    /// Ends the heartbeat keeper.
    done: CancellationToken,
    keeper: tokio::task::JoinHandle<()>,
}

/// Why a job failed on the worker: what the host is told, and the whole
/// story for the worker's log (never shown to the user).
struct JobFailure {
    failure: Failure,
    detail: String,
}

impl JobFailure {
    fn new(code: FailureCode, detail: impl Into<String>) -> Self {
        Self {
            failure: Failure::new(code),
            detail: detail.into(),
        }
    }

    /// A node failed: the user's own choice of code.
    fn plugin(e: &PluginError) -> Self {
        Self {
            failure: Failure::new(FailureCode::PluginFailed).because(&e.user_reason()),
            detail: e.to_string(),
        }
    }

    /// The user's chosen work took `seconds` of the worker before this.
    fn after(mut self, seconds: f64) -> Self {
        self.failure = self.failure.after(seconds);
        self
    }
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

    /// Starts the job's heartbeat keeper: renews the lease every
    /// `beat_every`, sends progress (at most every 100 ms), and stops the
    /// job when the host says it was cancelled or the lease is lost.
    fn keep_alive(&self, item: WorkItem) -> Running {
        let stop = self.abort.child_token();
        let done = CancellationToken::new();
        let (progress, mut rx) = watch::channel((None, None));
        let source = self.source.clone();
        let (job_id, token) = (item.lease.job_id.clone(), item.lease.token.clone());
        // Beat well within the lease the host granted, whatever its TTL.
        let granted = (item.lease.expires_at - Utc::now())
            .to_std()
            .unwrap_or(Duration::from_secs(1));
        let every = self
            .beat_every
            .min(granted / 3)
            .max(Duration::from_millis(50));
        let (stop2, done2) = (stop.clone(), done.clone());
        let keeper = tokio::spawn(async move {
            const MIN_GAP: Duration = Duration::from_millis(100);
            let mut next = tokio::time::Instant::now() + every;
            let mut last_sent = tokio::time::Instant::now() - MIN_GAP;
            let mut dirty = false;
            loop {
                tokio::select! {
                    _ = done2.cancelled() => {
                        // The last progress goes out before the job is
                        // reported, so its events come in order.
                        let pending = dirty || rx.has_changed().unwrap_or(false);
                        let (p, started) = *rx.borrow_and_update();
                        if pending {
                            let _ = source.heartbeat(&job_id, &token, p, started).await;
                        }
                        return;
                    }
                    changed = rx.changed() => {
                        if changed.is_err() { return; }
                        dirty = true;
                        // Progress goes out at once, then at most every
                        // 100 ms.
                        next = next.min(last_sent + MIN_GAP);
                        continue;
                    }
                    _ = tokio::time::sleep_until(next) => {}
                }
                last_sent = tokio::time::Instant::now();
                let (p, started) = *rx.borrow_and_update();
                let sent = if dirty { p } else { None };
                dirty = false;
                next = tokio::time::Instant::now() + every;
                match source.heartbeat(&job_id, &token, sent, started).await {
                    Ok(BeatReply::Continue { .. }) => {}
                    Ok(BeatReply::Cancelled) | Ok(BeatReply::Lost) => {
                        stop2.cancel();
                        return;
                    }
                    Err(e) => tracing::warn!(job = %job_id, error = %e, "heartbeat failed"),
                }
            }
        });
        Running {
            item,
            stop,
            progress,
            done,
            keeper,
        }
    }

    /// Pre-nodes and inference; returns the job's finishing stage (post
    /// nodes, encode, report) to run beside the next job.
    async fn run_gpu(
        self: Arc<Self>,
        job: Running,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        let result = async {
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
            let op =
                pipeline::operation(&spec, input(&spec.source_image)?, input(&spec.mask_image)?)
                    .map_err(|e| JobFailure::new(FailureCode::InvalidInput, e))?;
            let stop = job.stop.clone();
            let tx = job.progress.clone();
            let started_at = Utc::now();
            let started = Instant::now();
            tx.send_modify(|v| v.1 = Some(started_at));
            let sink = Arc::new(move |p: Progress| {
                tx.send_modify(|v| v.0 = Some((p.step, p.total_steps)));
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
                            effective: Some(done.spec),
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

    async fn load_node(
        &self,
        lease: &Lease,
        node: &NodeSpec,
    ) -> Result<Arc<LoadedPlugin>, JobFailure> {
        self.source
            .node_plugin(&self.runtime, lease, node)
            .await
            .map_err(|e| {
                JobFailure::new(
                    FailureCode::HostFailed,
                    format!("loading {}@{}: {e}", node.name, node.version),
                )
            })
    }

    fn node_limits(&self, name: &str) -> limits::Limits {
        limits::resolve(PluginKind::Node, name, &self.limits)
    }

    async fn run_pre_nodes(&self, lease: &Lease) -> Result<JobSpec, JobFailure> {
        let mut spec = lease.spec.clone();
        for node in &lease.spec.pre_nodes {
            let plugin = self.load_node(lease, node).await?;
            let run = self
                .runtime
                .run_pre(
                    &node.name,
                    &plugin,
                    self.node_limits(&node.name),
                    Params::from(&spec),
                    &node.parameters.to_string(),
                )
                .await
                .map_err(|e| JobFailure::plugin(&e))?;
            spec = run
                .output
                .apply_to(&spec)
                .map_err(|reason| JobFailure::plugin(&bad_output(&node.name, &reason)))?;
        }
        Ok(spec)
    }

    /// Post-nodes, then PNG encoding (blocking work off the async threads).
    async fn finish(
        &self,
        lease: &Lease,
        spec: &JobSpec,
        images: Vec<RgbaImage>,
    ) -> Result<Vec<Vec<u8>>, JobFailure> {
        let mut images = images;
        for node in &spec.post_nodes {
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
                    self.node_limits(&node.name),
                    Params::from(spec),
                    handles,
                    &node.parameters.to_string(),
                )
                .await
                .map_err(|e| JobFailure::plugin(&e))?;
            images = run
                .output
                .iter()
                .map(pipeline::from_handle)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| JobFailure::plugin(&bad_output(&node.name, &e)))?;
        }
        tokio::task::spawn_blocking(move || {
            images
                .iter()
                .map(imaging::encode_png)
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| JobFailure::new(FailureCode::HostFailed, e.to_string()))?
        .map_err(|e| JobFailure::new(FailureCode::HostFailed, e))
    }
}

#[cfg(test)]
mod tests {
    use super::narrow;

    #[test]
    fn advertised_models_are_what_the_backend_has_within_the_configuration() {
        let v = |m: &[&str]| Some(m.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(narrow(None, &None), None);
        assert_eq!(narrow(None, &v(&["a"])), v(&["a"]));
        assert_eq!(narrow(v(&["a", "b"]), &None), v(&["a", "b"]));
        assert_eq!(narrow(v(&["a", "b"]), &v(&["b", "c"])), v(&["b"]));
        assert_eq!(narrow(v(&[]), &None), v(&[]));
    }
}
