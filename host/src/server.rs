//! Running the HTTP server until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::SharedState;
use crate::billing::subscriptions::Billing;
use crate::config::Config;
use crate::http::listen::ConnectionLimits;
use crate::http::{self, listen};
use crate::worker::Worker;
use crate::worker::local::LocalSource;

/// The sockets the host listens on: the public API, and the internal
/// worker API and `/metrics` when the configuration gives them addresses
/// of their own.
pub struct Listeners {
    pub api: TcpListener,
    pub internal: Option<TcpListener>,
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    /// Binds the listeners the configuration names besides `api`.
    pub async fn bind(api: TcpListener, config: &Config) -> anyhow::Result<Self> {
        async fn bind_opt(
            addr: Option<SocketAddr>,
            what: &str,
        ) -> anyhow::Result<Option<TcpListener>> {
            match addr {
                Some(a) => {
                    Ok(Some(TcpListener::bind(a).await.with_context(|| {
                        format!("binding the {what} address {a}")
                    })?))
                }
                None => Ok(None),
            }
        }
        Ok(Self {
            api,
            internal: bind_opt(config.internal_addr, "internal API").await?,
            metrics: bind_opt(config.metrics_addr, "metrics").await?,
        })
    }
}

/// Serves every listener until `shutdown` resolves, then lets in-flight
/// requests finish (up to the configured grace period).
pub async fn serve(
    state: SharedState,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let grace = Duration::from_secs(state.config.shutdown_grace_secs);
    let db = state.db.clone();
    let background = CancellationToken::new();
    let abort = CancellationToken::new();
    let mut tasks = start_background(&state, &background, &abort).await?;
    let limits = ConnectionLimits::from(&state.config);
    let stop = CancellationToken::new();
    let mut servers = tokio::task::JoinSet::new();
    let mut apps = vec![(listeners.api, http::router(state.clone()))];
    if let Some(l) = listeners.internal {
        apps.push((l, http::internal_router(state.clone())));
    }
    if let Some(l) = listeners.metrics {
        apps.push((l, http::metrics_router(state.clone())));
    }
    for (listener, app) in apps {
        let stop = stop.clone();
        servers.spawn(listen::serve(listener, app, limits, async move {
            stop.cancelled().await
        }));
    }
    shutdown.await;
    state.shutdown.cancel();
    stop.cancel();
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    let finished = tokio::time::timeout(grace, async {
        while servers.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(?grace, "grace period over; dropping remaining connections");
        servers.abort_all();
    }
    // The worker finishes and reports the job it is running, within the
    // grace period; a job cut off here is requeued when its lease expires.
    background.cancel();
    let drained =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!("worker still busy after the grace period; its job will be retried");
        abort.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        tasks.abort_all();
    }
    db.close().await;
    Ok(())
}

/// How often stored webhooks are retried and yearly plans' months granted.
const BILLING_UPKEEP_EVERY: Duration = Duration::from_secs(60);

/// Retries billing events not applied yet, grants the months of yearly
/// plans and drops tiers whose paid period ran out.
async fn billing_upkeep(billing: Arc<Billing>, stop: CancellationToken) {
    loop {
        if let Err(e) = billing.drain().await {
            tracing::warn!(error = %e, "billing events");
        }
        if let Err(e) = billing.maintain(chrono::Utc::now()).await {
            tracing::warn!(error = %e, "billing upkeep");
        }
        tokio::select! {
            _ = tokio::time::sleep(BILLING_UPKEEP_EVERY) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// How often the storage sweep looks for unreferenced files.
const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Removes files nothing references any more (`gallery::sweep`).
async fn storage_sweep(state: SharedState, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
            _ = stop.cancelled() => return,
        }
        if let Err(e) = state.gallery.sweep(chrono::Utc::now()).await {
            tracing::warn!(error = %e, "storage sweep");
        }
    }
}

/// SIGHUP reloads the billing adapter from the configuration file.
#[cfg(unix)]
async fn reload_on_hangup(
    billing: Arc<Billing>,
    mut hangups: tokio::signal::unix::Signal,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = hangups.recv() => {}
            _ = stop.cancelled() => return,
        }
        if let Err(e) = billing.adapters.reload().await {
            tracing::error!(error = %e, "billing adapter reload refused; the previous adapter keeps serving");
        }
    }
}

/// The queue reaper and, unless disabled, the in-process worker.
async fn start_background(
    state: &SharedState,
    stop: &CancellationToken,
    abort: &CancellationToken,
) -> anyhow::Result<tokio::task::JoinSet<()>> {
    let mut tasks = tokio::task::JoinSet::new();
    let queue = state.queue.clone();
    let every = state.queue_settings.reap_every();
    let reaper_stop = stop.clone();
    tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = reaper_stop.cancelled() => return,
            }
            if let Err(e) = queue.reap().await {
                tracing::warn!(error = %e, "queue reaper");
            }
        }
    });
    tasks.spawn(billing_upkeep(state.billing.clone(), stop.clone()));
    tasks.spawn(storage_sweep(state.clone(), stop.clone()));
    // Registered before the server answers anything: a SIGHUP that came
    // before the handler would end the process.
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(hangups) => {
            tasks.spawn(reload_on_hangup(
                state.billing.clone(),
                hangups,
                stop.clone(),
            ));
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reload the billing adapter through the API")
        }
    }
    if state.config.worker_enabled {
        let info = state.local_worker_info();
        let backend = crate::inference::build(
            &state.config.worker_backend,
            state.config.worker_backend_url.as_deref(),
        )?;
        let source = LocalSource {
            queue: state.queue.clone(),
            registry: state.registry.clone(),
            blobs: state.blobs.clone(),
        };
        let mut worker = Worker::new(
            Arc::new(source),
            info,
            backend,
            state.registry.runtime.clone(),
            state.models.clone(),
            &state.config,
        );
        worker.abort = abort.clone();
        // Registered with what its backend has before the first request,
        // so enqueues see the worker.
        worker.refresh_models().await;
        state.queue.touch_worker(&worker.info()).await?;
        let worker = Arc::new(worker);
        tasks.spawn(worker.run(stop.clone()));
    }
    Ok(tasks)
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
