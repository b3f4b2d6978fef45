//! Running the HTTP server until a shutdown signal.

use std::future::Future;
use std::time::Duration;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::SharedState;
use crate::worker::Worker;
use crate::worker::local::LocalSource;

/// Serves the API on `listener` until `shutdown` resolves, then lets
/// in-flight requests finish (up to the configured grace period).
pub async fn serve(
    state: SharedState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let grace = Duration::from_secs(state.config.shutdown_grace_secs);
    let db = state.db.clone();
    let background = CancellationToken::new();
    let abort = CancellationToken::new();
    let mut tasks = start_background(&state, &background, &abort).await?;
    let closing = state.shutdown.clone();
    let app = crate::http::router(state);
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        closing.cancel();
        tracing::info!("shutting down: no new connections, finishing in-flight requests");
        let _ = stopping_tx.send(());
    };
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(signal)
        .into_future();
    tokio::pin!(server);
    tokio::select! {
        res = &mut server => res?,
        _ = async { let _ = stopping_rx.await; tokio::time::sleep(grace).await } => {
            tracing::warn!(?grace, "grace period over; dropping remaining connections");
        }
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
    if state.config.worker_enabled {
        let info = state.local_worker_info();
        let backend = crate::inference::build(
            &state.config.worker_backend,
            state.config.worker_backend_url.as_deref(),
            info.models.clone(),
        )?;
        // Registered before the first request, so enqueues see a worker.
        state.queue.touch_worker(&info).await?;
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
            &state.config,
        );
        worker.abort = abort.clone();
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
