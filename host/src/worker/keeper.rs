//! A leased job's heartbeat keeper: renews the lease, sends progress, and
//! stops the job when the host says so.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{JobSource, WorkItem, Worker};
use crate::queue::{BeatReply, StepProgress};

/// The last step progress and when the backend started, for heartbeats.
pub(super) type JobProgress = (Option<StepProgress>, Option<DateTime<Utc>>);

/// A job between stages, with the channel its heartbeat keeper reads.
pub(super) struct Running {
    pub item: WorkItem,
    /// Cancelled when the job must stop (user cancel, lease lost).
    pub stop: CancellationToken,
    /// Step progress and the backend's start time, for heartbeats.
    pub progress: watch::Sender<JobProgress>,
    /// Ends the heartbeat keeper.
    pub done: CancellationToken,
    pub keeper: tokio::task::JoinHandle<()>,
}

/// Starts the job's heartbeat keeper: renews the lease every
/// `beat_every`, sends progress (at most every 100 ms), and stops the
/// job when the host says it was cancelled or the lease is lost.
impl<S: JobSource> Worker<S> {
    pub(super) fn keep_alive(&self, item: WorkItem) -> Running {
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
                        let (p, started) = rx.borrow_and_update().clone();
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
                let (p, started) = rx.borrow_and_update().clone();
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
}
