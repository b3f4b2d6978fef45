//! The GPU job queue: jobs and their states, the scheduler's dispatch
//! order, leases for workers, and the settlement of each job's credit
//! reservation. One file per job of the service:
//!
//! - `workers`: who is live and which models they serve;
//! - `enqueue`: price a job and check it can be served;
//! - `batch`: reserve the estimate and queue, in one transaction with the
//!   other enqueues of the moment;
//! - `lease`: hand workers jobs in the scheduler's order;
//! - `heartbeat`: renew leases, record progress, tell workers to stop;
//! - `settle`: end a job exactly once with its reservation settled;
//! - `reaper`: requeue or fail jobs whose worker was lost;
//! - `views`: what the API shows of jobs and the queue;
//! - `events`: what the user's WebSocket channel is told.

mod batch;
pub mod credentials;
pub mod enqueue;
pub mod error;
pub mod events;
pub mod failure;
pub mod heartbeat;
pub mod job;
pub mod lease;
pub mod reaper;
pub mod results;
pub mod scheduler;
pub mod settle;
pub mod views;
pub mod workers;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::billing::plans::Catalogue as Plans;
use crate::blobs::Blobs;
use crate::blobs::signed::FileLinks;
use crate::config::Config;
use crate::events::Events;
use crate::models::{Model, ModelCatalogue};
use crate::revisions::Revisions;
use crate::store::Db;

pub use enqueue::Enqueued;
pub use error::{QueueError, QueueResult};
pub use events::{BillingNotices, UserEvent};
pub use failure::FailureCode;
pub use heartbeat::{BeatReply, StepProgress};
pub use lease::Lease;
pub use settle::{Finished, Settled};
pub use views::{JobDetail, QueueStatus};
pub use workers::WorkerInfo;

/// The queue's rules from the configuration.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// A lease lives this long without a heartbeat.
    pub lease_ttl: Duration,
    /// Leases a job gets before it fails with `WORKER_LOST`.
    pub max_attempts: u32,
    /// Queued jobs of all users before `QUEUE_FULL`.
    pub max_queued: u64,
    /// The share of `max_queued` kept free of the lowest tier for higher
    /// ones (see `enqueue::tier_room`).
    pub tier_headroom: f64,
    /// A worker not heard from for this long no longer counts.
    pub worker_offline: Duration,
}

impl From<&Config> for QueueSettings {
    fn from(c: &Config) -> Self {
        Self {
            lease_ttl: Duration::from_secs(c.lease_ttl_secs),
            max_attempts: c.job_max_attempts,
            max_queued: c.queue_max_queued,
            tier_headroom: c.queue_tier_headroom,
            worker_offline: Duration::from_secs(c.worker_offline_secs),
        }
    }
}

impl QueueSettings {
    /// How often the reaper looks for expired leases.
    pub fn reap_every(&self) -> Duration {
        (self.lease_ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(2))
    }
}

/// What the queue works with.
pub struct QueueParts {
    pub db: Db,
    pub plans: Plans,
    pub models: ModelCatalogue,
    pub events: Arc<Events>,
    pub blobs: Blobs,
    pub links: FileLinks,
    /// Gallery revisions, bumped when a job adds images.
    pub revisions: Revisions,
    /// Signs the content credentials of every image a job makes.
    pub credentials: Arc<crate::provenance::Credentials>,
}

pub struct Queue {
    parts: QueueParts,
    settings: QueueSettings,
    /// Woken on every enqueue and job end: lease polls re-check.
    wake: Notify,
    /// Whether other hosts' queue changes wake this host's workers (else
    /// they poll each second).
    hears_other_hosts: AtomicBool,
    /// Queue changes heard (enqueues, job ends, other hosts' news).
    changes: AtomicU64,
    /// This host's lease tries, one at a time, and what fruitless ones
    /// learned.
    leasing: tokio::sync::Mutex<lease::Fruitless>,
    workers: workers::Registry,
    /// Exponentially weighted mean of lease-to-completion seconds.
    job_seconds: Mutex<Option<f64>>,
    /// Enqueues waiting for their transaction.
    batches: batch::Batches,
}

impl Queue {
    pub fn new(parts: QueueParts, settings: QueueSettings) -> Self {
        Self {
            parts,
            settings,
            wake: Notify::new(),
            hears_other_hosts: AtomicBool::new(false),
            changes: AtomicU64::new(0),
            leasing: tokio::sync::Mutex::default(),
            workers: workers::Registry::default(),
            job_seconds: Mutex::new(None),
            batches: batch::Batches::default(),
        }
    }

    /// Wakes the workers waiting for a lease, on this host and (through
    /// PostgreSQL) on the others: a job was queued or a slot came free.
    fn wake_workers(&self) {
        self.heard_change();
        if self.parts.db.sqlite().is_none() {
            let db = self.parts.db.clone();
            tokio::spawn(async move { crate::store::wakeups::queue_changed(&db).await });
        }
    }

    /// A queue change: waiting workers try again.
    fn heard_change(&self) {
        self.changes.fetch_add(1, Ordering::AcqRel);
        self.wake.notify_waiters();
    }

    /// Lets other hosts' queue changes wake this host's waiting workers
    /// (PostgreSQL; a no-op on SQLite). Stops when the queue is dropped.
    pub async fn hear_other_hosts(self: &Arc<Self>) -> anyhow::Result<()> {
        let Some(mut changes) = crate::store::wakeups::queue_changes(&self.parts.db).await? else {
            return Ok(());
        };
        self.hears_other_hosts.store(true, Ordering::Relaxed);
        let queue = Arc::downgrade(self);
        tokio::spawn(async move {
            while changes.recv().await.is_some() {
                let Some(queue) = queue.upgrade() else { return };
                queue.heard_change();
            }
        });
        Ok(())
    }

    /// The model a job is charged and described by: a workflow lists its
    /// models, the first is the job's.
    fn first_model(&self, row: &crate::store::jobs::JobRow) -> QueueResult<&Model> {
        self.model(row.model.split(',').next().unwrap_or_default())
    }

    fn model(&self, name: &str) -> QueueResult<&Model> {
        self.parts
            .models
            .get(name)
            .ok_or_else(|| QueueError::Invalid(format!("unknown model {name}")))
    }
}
