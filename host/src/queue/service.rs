//! The queue service: enqueue with a credit reservation in the same
//! transaction, lease jobs to workers in the scheduler's order, renew
//! leases, and end every job exactly once with its reservation settled in
//! the same transaction (charge the measured GPU time on success or a
//! cancel while running, release everything otherwise).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::Notify;

use super::job::{JobSpec, JobStatus, charge_for, estimate_credits};
use super::results::{StoredImage, store_png};
use super::scheduler::{self, QueuedJob, UserSlots};
use crate::billing::ledger::{self, LedgerError};
use crate::billing::plans::Catalogue as Plans;
use crate::blobs::LocalBlobs;
use crate::blobs::signed::FileLinks;
use crate::events::EventBus;
use crate::models::{Model, ModelCatalogue};
use crate::store::images::{self as img, ImageRow};
use crate::store::jobs::{self as q, JobRow, WorkerRow};
use crate::store::{Db, StoreError, Tx, new_id};

#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub lease_ttl: Duration,
    pub max_attempts: u32,
    pub max_queued: u64,
    pub worker_offline: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("insufficient credits: {required} required, {available} available")]
    Insufficient { required: i64, available: i64 },
    #[error("{limit} jobs already queued for this user")]
    QuotaExceeded { limit: u32 },
    #[error("the queue is full ({limit} jobs)")]
    QueueFull { limit: u64 },
    #[error("no worker serves model {model}")]
    NoWorker { model: String },
    #[error("no such job")]
    NotFound,
    #[error("job already {status}")]
    Ended { status: String },
    #[error("the lease is no longer held")]
    LeaseLost,
    #[error("invalid: {0}")]
    Invalid(String),
    #[error(transparent)]
    Ledger(LedgerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<LedgerError> for QueueError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Insufficient {
                required,
                available,
            } => QueueError::Insufficient {
                required,
                available,
            },
            LedgerError::Store(s) => QueueError::Store(s),
            other => QueueError::Ledger(other),
        }
    }
}

impl From<sqlx::Error> for QueueError {
    fn from(e: sqlx::Error) -> Self {
        QueueError::Store(e.into())
    }
}

pub type QueueResult<T> = Result<T, QueueError>;

#[derive(Debug, Clone, PartialEq)]
pub struct Enqueued {
    pub job_id: String,
    pub queue_position: usize,
    pub estimated_wait_seconds: u64,
    pub estimated_credits: i64,
    pub websocket_channel: String,
}

/// A job handed to a worker.
#[derive(Debug, Clone)]
pub struct Lease {
    pub job_id: String,
    pub user_id: String,
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub attempt: i64,
    pub spec: JobSpec,
}

/// What a heartbeat tells the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeatReply {
    /// Keep going; the lease now lasts until then.
    Continue { expires_at: DateTime<Utc> },
    /// The user cancelled: stop, the job is settled.
    Cancelled,
    /// The lease is gone (expired and given to another worker, or the job
    /// ended): stop and drop the work.
    Lost,
}

/// A worker's report of the work done.
#[derive(Debug, Clone)]
pub struct Finished {
    /// PNG bytes, one per output image.
    pub images: Vec<Vec<u8>>,
    pub gpu_seconds: f64,
    pub gpu_started_at: Option<DateTime<Utc>>,
    pub gpu_finished_at: Option<DateTime<Utc>>,
    /// The backend that produced them (image metadata says what made it).
    pub backend: String,
    /// The parameters after the pre-nodes (what was really generated).
    pub effective: Option<JobSpec>,
}

/// Who registers as a worker and what it serves.
#[derive(Debug, Clone)]
pub struct WorkerInfo {
    pub id: String,
    pub name: String,
    pub backend: String,
    /// `None`: every model of the catalogue.
    pub models: Option<Vec<String>>,
    pub paused: bool,
}

impl WorkerInfo {
    pub fn serves(&self, model: &str) -> bool {
        crate::inference::listed(self.models.as_deref(), model)
    }
}

/// How much of a job's reservation a terminal transition charges.
#[derive(Debug, Clone, Copy)]
enum Charge {
    Nothing,
    /// Measured GPU seconds reported by the worker.
    Measured(f64),
    /// GPU time used so far (from the recorded GPU start until now).
    SoFar,
}

/// Who may make a terminal transition.
#[derive(Debug, Clone, Copy)]
enum Holder<'a> {
    /// The worker holding this lease (or the reaper, for the lease that
    /// expired).
    Lease(&'a str),
    /// The job's owner, whatever the active state (cancel).
    Owner(&'a str),
    /// The reaper: a job still queued.
    Queued,
}

struct Outcome<'a> {
    status: JobStatus,
    charge: Charge,
    error: Option<(&'a str, &'a str)>,
    images: Vec<StoredImage>,
    finished: Option<&'a Finished>,
}

/// How a job ended, as the API reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    pub job_id: String,
    pub status: JobStatus,
    pub credits_used: i64,
    pub credits_refunded: i64,
    pub image_ids: Vec<String>,
}

/// What live workers serve, as last read.
struct ServedCache {
    at: Instant,
    models: HashSet<String>,
    /// Some worker serves every model.
    all: bool,
    workers: usize,
}

pub struct Queue {
    db: Db,
    plans: Plans,
    models: ModelCatalogue,
    events: std::sync::Arc<EventBus>,
    blobs: std::sync::Arc<LocalBlobs>,
    links: FileLinks,
    settings: QueueSettings,
    wake: Notify,
    clock: AtomicI64,
    served: Mutex<Option<ServedCache>>,
    /// When a heartbeat last refreshed each worker's `last_seen_at`.
    seen: Mutex<HashMap<String, Instant>>,
    /// Exponentially weighted mean of lease-to-completion seconds.
    job_seconds: Mutex<Option<f64>>,
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

impl Queue {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        db: Db,
        plans: Plans,
        models: ModelCatalogue,
        events: std::sync::Arc<EventBus>,
        blobs: std::sync::Arc<LocalBlobs>,
        links: FileLinks,
        settings: QueueSettings,
    ) -> Self {
        Self {
            db,
            plans,
            models,
            events,
            blobs,
            links,
            settings,
            wake: Notify::new(),
            clock: AtomicI64::new(0),
            served: Mutex::new(None),
            seen: Mutex::new(HashMap::new()),
            job_seconds: Mutex::new(None),
        }
    }

    pub fn settings(&self) -> &QueueSettings {
        &self.settings
    }

    pub fn links(&self) -> &FileLinks {
        &self.links
    }

    pub fn blobs(&self) -> &std::sync::Arc<LocalBlobs> {
        &self.blobs
    }

    /// A strictly increasing microsecond clock (enqueue order, dispatch
    /// order), close to wall time.
    fn tick(&self) -> i64 {
        let now = micros(Utc::now());
        let mut prev = self.clock.load(Ordering::Relaxed);
        loop {
            let next = now.max(prev + 1);
            match self
                .clock
                .compare_exchange(prev, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(p) => prev = p,
            }
        }
    }

    fn model(&self, name: &str) -> QueueResult<&Model> {
        self.models
            .get(name)
            .ok_or_else(|| QueueError::Invalid(format!("unknown model {name}")))
    }

    // ---- workers -------------------------------------------------------

    /// Records a worker as alive (on start and on every lease poll).
    pub async fn touch_worker(&self, w: &WorkerInfo) -> QueueResult<()> {
        let known = self
            .served
            .lock()
            .expect("served lock")
            .as_ref()
            .is_some_and(|c| {
                c.all
                    || w.models
                        .as_ref()
                        .is_some_and(|m| m.iter().all(|x| c.models.contains(x)))
            });
        if !known {
            *self.served.lock().expect("served lock") = None;
        }
        let models = match &w.models {
            Some(m) => serde_json::to_string(m).unwrap_or_default(),
            None => "[\"*\"]".into(),
        };
        q::upsert_worker(
            &self.db,
            &WorkerRow {
                id: w.id.clone(),
                name: w.name.clone(),
                backend: w.backend.clone(),
                models,
                paused: w.paused,
                last_seen_at: Utc::now(),
            },
        )
        .await?;
        if !known {
            *self.served.lock().expect("served lock") = None;
        }
        Ok(())
    }

    pub async fn forget_worker(&self, id: &str) -> QueueResult<()> {
        q::forget_worker(&self.db, id).await?;
        *self.served.lock().expect("served lock") = None;
        Ok(())
    }

    /// Models some live worker serves (`all`: one serves every model), and
    /// how many workers are live; cached for a second.
    async fn served_models(&self) -> QueueResult<(HashSet<String>, bool, usize)> {
        if let Some(c) = &*self.served.lock().expect("served lock")
            && c.at.elapsed() < Duration::from_secs(1)
        {
            return Ok((c.models.clone(), c.all, c.workers));
        }
        let since = Utc::now() - self.settings.worker_offline;
        let workers = q::live_workers(&self.db, since).await?;
        let mut set = HashSet::new();
        let mut all = false;
        for w in &workers {
            let models: Vec<String> = serde_json::from_str(&w.models).unwrap_or_default();
            for m in models {
                if m == "*" {
                    all = true;
                } else {
                    set.insert(m);
                }
            }
        }
        let n = workers.len();
        *self.served.lock().expect("served lock") = Some(ServedCache {
            at: Instant::now(),
            models: set.clone(),
            all,
            workers: n,
        });
        Ok((set, all, n))
    }

    pub async fn is_served(&self, model: &str) -> QueueResult<bool> {
        let (set, all, _) = self.served_models().await?;
        Ok(all || set.contains(model))
    }

    // ---- enqueue -------------------------------------------------------

    /// Reserves the estimate and queues the job, in one transaction.
    pub async fn enqueue(&self, user_id: &str, tier: &str, spec: JobSpec) -> QueueResult<Enqueued> {
        let model = self.model(&spec.model)?;
        if !self.is_served(&spec.model).await? {
            return Err(QueueError::NoWorker {
                model: spec.model.clone(),
            });
        }
        let plan = self.plans.tier(tier);
        let priority = plan.rank;
        let estimated = estimate_credits(&spec, model);
        let id = new_id();
        let now = Utc::now();
        let seq = self.tick();
        let params =
            serde_json::to_string(&spec).map_err(|e| QueueError::Invalid(e.to_string()))?;

        let mut tx = self.db.begin().await?;
        let hold = ledger::reserve_in(
            &mut tx,
            user_id,
            estimated,
            &format!("생성 작업 예약 {id}"),
            &format!("job:{id}"),
        )
        .await?;
        // Counted in the transaction (a row lock on the user's counter on
        // PostgreSQL), so concurrent enqueues cannot overshoot the caps.
        let mine = q::count_enqueued(&mut tx, user_id, i64::from(priority)).await?;
        if q::total_queued(&mut tx).await? as u64 > self.settings.max_queued {
            tx.rollback().await?;
            return Err(QueueError::QueueFull {
                limit: self.settings.max_queued,
            });
        }
        if mine > i64::from(plan.max_queued) {
            tx.rollback().await?;
            return Err(QueueError::QuotaExceeded {
                limit: plan.max_queued,
            });
        }
        q::insert(
            &mut tx,
            &q::NewJob {
                id: &id,
                user_id,
                job_type: spec.job_type.as_str(),
                priority: i64::from(priority),
                model: &spec.model,
                params: &params,
                hold_id: &hold.id,
                estimated_credits: estimated,
                seq,
                save_to_board: spec.save_to_board.as_deref(),
                now,
            },
        )
        .await?;
        tx.commit().await?;
        self.wake.notify_waiters();

        // The position is read after the commit, outside the write lock.
        let groups = summaries(&q::queued_groups(&self.db).await?);
        let position = scheduler::position_of(&groups, user_id, priority, mine as usize);
        let wait = self
            .estimated_wait(position, spec.expected_gpu_seconds(model))
            .await;
        self.events.publish(
            user_id,
            "job.queued",
            json!({
                "job_id": id,
                "status": "queued",
                "job_type": spec.job_type,
                "queue_position": position,
                "estimated_wait_seconds": wait,
                "estimated_credits": estimated,
            }),
        );
        self.publish_credits(user_id).await;
        Ok(Enqueued {
            job_id: id,
            queue_position: position,
            estimated_wait_seconds: wait,
            estimated_credits: estimated,
            websocket_channel: EventBus::channel_of(user_id),
        })
    }

    /// Seconds until a job at `position` starts: the jobs ahead of it at
    /// the measured mean job time, spread over the live workers.
    async fn estimated_wait(&self, position: usize, fallback_secs: f64) -> u64 {
        let mean = self
            .job_seconds
            .lock()
            .expect("throughput lock")
            .unwrap_or(fallback_secs);
        let workers = self
            .served_models()
            .await
            .map(|(_, _, n)| n)
            .unwrap_or(1)
            .max(1);
        (position.saturating_sub(1) as f64 * mean / workers as f64).ceil() as u64
    }

    async fn publish_credits(&self, user_id: &str) {
        if let Ok(Some(a)) = crate::store::credits::account(&self.db, user_id).await {
            self.events.publish(
                user_id,
                "credits.updated",
                json!({
                    "balance": a.balance,
                    "reserved": a.reserved,
                    "available": a.balance - a.reserved,
                }),
            );
        }
    }

    // ---- leasing -------------------------------------------------------

    /// Leases the next job for `worker` in the scheduler's order, if any.
    pub async fn lease(&self, worker: &WorkerInfo) -> QueueResult<Option<Lease>> {
        let mut tx = self.db.begin().await?;
        q::lock_queue(&mut tx).await?;
        let candidates: Vec<q::Candidate> = q::lease_candidates(&mut tx)
            .await?
            .into_iter()
            .filter(|c| worker.serves(&c.model))
            .collect();
        if candidates.is_empty() {
            tx.rollback().await?;
            return Ok(None);
        }
        let running: HashMap<String, i64> = q::running_counts(&mut tx).await?.into_iter().collect();
        let mut users: HashMap<String, UserSlots> = HashMap::new();
        for c in &candidates {
            if users.contains_key(&c.user_id) {
                continue;
            }
            let last = q::last_dispatch(&mut tx, &c.user_id).await?;
            users.insert(
                c.user_id.clone(),
                UserSlots {
                    running: running.get(&c.user_id).copied().unwrap_or(0) as u32,
                    cap: self.plans.tier(&c.tier).queue_count,
                    last_dispatch: last,
                },
            );
        }
        let jobs: Vec<QueuedJob> = candidates
            .iter()
            .enumerate()
            .map(|(i, c)| QueuedJob {
                id: i.to_string(),
                user_id: c.user_id.clone(),
                priority: c.priority as u32,
                model: c.model.clone(),
                seq: c.seq,
            })
            .collect();
        let Some(pick) = scheduler::pick_next(&jobs, &users, |_| true) else {
            tx.rollback().await?;
            return Ok(None);
        };
        let c = &candidates[pick.id.parse::<usize>().expect("index")];
        let Some(row) = q::queued_job_at(&mut tx, &c.user_id, &c.model, c.seq).await? else {
            tx.rollback().await?;
            return Ok(None);
        };
        let token = new_id();
        let now = Utc::now();
        let expires_at = now + self.settings.lease_ttl;
        let granted = q::grant_lease(
            &mut tx,
            &q::LeaseGrant {
                job_id: &row.id,
                worker_id: &worker.id,
                token: &token,
                expires_at,
                dispatched_at: self.tick(),
                now,
            },
        )
        .await?;
        if !granted {
            tx.rollback().await?;
            return Ok(None);
        }
        q::count_queued(&mut tx, &row.user_id, -1).await?;
        tx.commit().await?;
        let spec: JobSpec =
            serde_json::from_str(&row.params).map_err(|e| QueueError::Invalid(e.to_string()))?;
        self.events.publish(
            &row.user_id,
            "job.started",
            json!({
                "job_id": row.id,
                "status": "processing",
                "attempt": row.attempts + 1,
                "started_at": now,
            }),
        );
        Ok(Some(Lease {
            job_id: row.id,
            user_id: row.user_id,
            token,
            expires_at,
            attempt: row.attempts + 1,
            spec,
        }))
    }

    /// Waits up to `wait` for a job this worker may take. Wakes on every
    /// enqueue and job end in this process, and re-checks every second for
    /// work queued through other hosts.
    pub async fn wait_for_lease(
        &self,
        worker: &WorkerInfo,
        wait: Duration,
    ) -> QueueResult<Option<Lease>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !worker.paused
                && let Some(lease) = self.lease(worker).await?
            {
                return Ok(Some(lease));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let step = (deadline - now).min(Duration::from_secs(1));
            let _ = tokio::time::timeout(step, notified).await;
        }
    }

    /// Renews a lease, records progress, and tells the worker whether to go
    /// on.
    pub async fn heartbeat(
        &self,
        job_id: &str,
        token: &str,
        progress: Option<(u32, u32)>,
        gpu_started_at: Option<DateTime<Utc>>,
    ) -> QueueResult<BeatReply> {
        let expires_at = Utc::now() + self.settings.lease_ttl;
        let pct = progress.map(|(step, total)| {
            let pct = if total == 0 {
                0
            } else {
                (u64::from(step) * 100 / u64::from(total)).min(100)
            };
            (pct as i64, i64::from(step), i64::from(total))
        });
        let held = q::heartbeat(
            &self.db,
            &q::Beat {
                job_id,
                token,
                expires_at,
                progress: pct,
                gpu_started_at,
            },
        )
        .await?;
        let Some((user_id, worker_id)) = held else {
            let row = q::get(&self.db, job_id).await?;
            return Ok(match row {
                Some(r) if r.status == JobStatus::Cancelled.as_str() => BeatReply::Cancelled,
                _ => BeatReply::Lost,
            });
        };
        if let Some((percent, step, total)) = pct {
            self.events.publish(
                &user_id,
                "job.progress",
                json!({ "job_id": job_id, "percent": percent, "step": step, "total_steps": total }),
            );
        }
        // A worker busy with a long job does not poll for leases; its
        // heartbeats keep it counted as alive.
        if let Some(worker) = worker_id {
            let stale = self
                .seen
                .lock()
                .expect("seen lock")
                .get(&worker)
                .is_none_or(|t| t.elapsed() > self.settings.worker_offline / 4);
            if stale {
                q::touch_worker(&self.db, &worker, Utc::now()).await?;
                self.seen
                    .lock()
                    .expect("seen lock")
                    .insert(worker, Instant::now());
            }
        }
        Ok(BeatReply::Continue { expires_at })
    }

    // ---- endings -------------------------------------------------------

    /// Stores the results and completes the job: charge the measured GPU
    /// time, release the rest, write the `images` rows.
    pub async fn complete(
        &self,
        job_id: &str,
        token: &str,
        done: Finished,
    ) -> QueueResult<Settled> {
        let row = q::get(&self.db, job_id)
            .await?
            .ok_or(QueueError::NotFound)?;
        if row.lease_token.as_deref() != Some(token) || row.status != "processing" {
            return Err(self.why_not_held(&row));
        }
        if done.images.is_empty() {
            return self
                .fail(
                    job_id,
                    token,
                    "INVALID_OUTPUT",
                    "the worker returned no images",
                )
                .await;
        }
        let blobs = self.blobs.clone();
        let user = row.user_id.clone();
        let pngs = done.images.clone();
        let stored = tokio::task::spawn_blocking(move || {
            pngs.iter()
                .map(|png| store_png(&blobs, &user, &new_id(), png))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| QueueError::Invalid(e.to_string()))?;
        let stored = match stored {
            Ok(s) => s,
            Err(reason) => return self.fail(job_id, token, "INVALID_OUTPUT", &reason).await,
        };
        let settled = self
            .end(
                job_id,
                Holder::Lease(token),
                Outcome {
                    status: JobStatus::Completed,
                    charge: Charge::Measured(done.gpu_seconds),
                    error: None,
                    images: stored,
                    finished: Some(&done),
                },
            )
            .await?;
        if let Some(started) = row.started_at {
            let secs = (Utc::now() - started).num_milliseconds() as f64 / 1000.0;
            let mut mean = self.job_seconds.lock().expect("throughput lock");
            *mean = Some(mean.map_or(secs, |m| m * 0.8 + secs * 0.2));
        }
        Ok(settled)
    }

    /// Fails the job and releases its whole reservation.
    pub async fn fail(
        &self,
        job_id: &str,
        token: &str,
        code: &str,
        message: &str,
    ) -> QueueResult<Settled> {
        self.end(
            job_id,
            Holder::Lease(token),
            Outcome {
                status: JobStatus::Failed,
                charge: Charge::Nothing,
                error: Some((code, message)),
                images: vec![],
                finished: None,
            },
        )
        .await
    }

    /// Cancels a user's job: a queued one is refunded in full, a running
    /// one is charged the GPU time it used so far.
    pub async fn cancel(&self, user_id: &str, job_id: &str) -> QueueResult<Settled> {
        self.end(
            job_id,
            Holder::Owner(user_id),
            Outcome {
                status: JobStatus::Cancelled,
                charge: Charge::SoFar,
                error: None,
                images: vec![],
                finished: None,
            },
        )
        .await
    }

    fn why_not_held(&self, row: &JobRow) -> QueueError {
        match JobStatus::parse(&row.status) {
            Some(JobStatus::Cancelled | JobStatus::Completed | JobStatus::Failed) => {
                QueueError::Ended {
                    status: row.status.clone(),
                }
            }
            _ => QueueError::LeaseLost,
        }
    }

    /// The one place a job ends: checks who may end it, settles the
    /// reservation, writes images and the job's final state, all in one
    /// transaction; then tells the user.
    async fn end(&self, job_id: &str, holder: Holder<'_>, o: Outcome<'_>) -> QueueResult<Settled> {
        let mut tx = self.db.begin().await?;
        let row = q::get_for_update(&mut tx, job_id)
            .await?
            // Nobody learns of another user's jobs.
            .filter(|r| !matches!(holder, Holder::Owner(u) if r.user_id != u))
            .ok_or(QueueError::NotFound)?;
        let allowed = match holder {
            Holder::Lease(t) => row.status == "processing" && row.lease_token.as_deref() == Some(t),
            Holder::Owner(_) => matches!(row.status.as_str(), "queued" | "processing"),
            Holder::Queued => row.status == "queued",
        };
        if !allowed {
            tx.rollback().await?;
            return Err(self.why_not_held(&row));
        }
        let model = self.model(&row.model)?.clone();
        let now = Utc::now();
        let seconds = match o.charge {
            Charge::Nothing => 0.0,
            Charge::Measured(s) => s,
            Charge::SoFar => match (row.status.as_str(), row.gpu_started_at) {
                ("processing", Some(t)) => (now - t).num_microseconds().unwrap_or(0) as f64 / 1e6,
                _ => 0.0,
            },
        };
        let charge = charge_for(seconds, &model, row.estimated_credits);
        let description = match o.status {
            JobStatus::Completed => format!("이미지 생성 ({})", row.model),
            JobStatus::Cancelled => format!("취소된 생성 작업 ({})", row.model),
            _ => format!("실패한 생성 작업 ({})", row.model),
        };
        let settlement = ledger::settle_in(
            &mut tx,
            &row.hold_id,
            charge,
            &description,
            &format!("job:{job_id}:settle"),
        )
        .await?;
        let spec: Option<JobSpec> = o
            .finished
            .and_then(|f| f.effective.clone())
            .or_else(|| serde_json::from_str(&row.params).ok());
        let mut image_ids = Vec::new();
        for s in &o.images {
            let metadata = image_metadata(spec.as_ref(), &model, o.finished);
            img::insert(
                &mut tx,
                &ImageRow {
                    id: s.id.clone(),
                    user_id: row.user_id.clone(),
                    job_id: Some(row.id.clone()),
                    blob_key: s.blob_key.clone(),
                    thumb_key: s.thumb_key.clone(),
                    width: i64::from(s.width),
                    height: i64::from(s.height),
                    file_size: s.file_size as i64,
                    mime_type: "image/png".into(),
                    is_starred: false,
                    is_public: false,
                    share_token: None,
                    metadata: metadata.to_string(),
                    created_at: now,
                },
            )
            .await?;
            if let Some(board) = &row.save_to_board {
                img::add_to_board(&mut tx, board, &s.id, now).await?;
            }
            image_ids.push(s.id.clone());
        }
        let ids_json =
            (!image_ids.is_empty()).then(|| serde_json::to_string(&image_ids).unwrap_or_default());
        let (gpu_seconds, gpu_started, gpu_finished) = match o.finished {
            Some(f) => (Some(f.gpu_seconds), f.gpu_started_at, f.gpu_finished_at),
            None if seconds > 0.0 => (Some(seconds), None, Some(now)),
            None => (None, None, None),
        };
        let ended = q::end(
            &mut tx,
            job_id,
            &q::Ending {
                status: o.status.as_str(),
                credits_used: settlement.charged,
                credits_refunded: settlement.released,
                error_code: o.error.map(|e| e.0),
                error_message: o.error.map(|e| e.1),
                result_image_ids: ids_json.as_deref(),
                gpu_seconds,
                gpu_started_at: gpu_started,
                gpu_finished_at: gpu_finished,
                now,
            },
        )
        .await?;
        if !ended {
            tx.rollback().await?;
            return Err(QueueError::LeaseLost);
        }
        if row.status == "queued" {
            q::count_queued(&mut tx, &row.user_id, -1).await?;
        }
        tx.commit().await?;
        self.wake.notify_waiters();

        let settled = Settled {
            job_id: job_id.to_owned(),
            status: o.status,
            credits_used: settlement.charged,
            credits_refunded: settlement.released,
            image_ids,
        };
        let data = match o.status {
            JobStatus::Completed => json!({
                "job_id": job_id,
                "status": "completed",
                "images": o.images.iter().map(|s| json!({
                    "image_id": s.id,
                    "image_url": self.links.url(&s.blob_key),
                    "thumbnail_url": self.links.url(&s.thumb_key),
                    "width": s.width,
                    "height": s.height,
                })).collect::<Vec<_>>(),
                "credits_used": settled.credits_used,
                "credits_refunded": settled.credits_refunded,
            }),
            JobStatus::Cancelled => json!({
                "job_id": job_id,
                "status": "cancelled",
                "credits_used": settled.credits_used,
                "credits_refunded": settled.credits_refunded,
            }),
            _ => json!({
                "job_id": job_id,
                "status": "failed",
                "error": {
                    "code": o.error.map(|e| e.0),
                    "message": o.error.map(|e| e.1),
                },
                "credits_refunded": settled.credits_refunded,
            }),
        };
        let kind = format!("job.{}", o.status.as_str());
        self.events.publish(&row.user_id, &kind, data);
        self.publish_credits(&row.user_id).await;
        Ok(settled)
    }

    // ---- reaping -------------------------------------------------------

    /// Returns jobs whose lease expired to the queue (or fails them past
    /// the retry limit, with a refund), and fails queued jobs for models no
    /// live worker has served for `worker_offline`. Safe to run on every
    /// host at once: each transition is conditional.
    pub async fn reap(&self) -> QueueResult<usize> {
        let now = Utc::now();
        let mut n = 0;
        for row in q::expired_leases(&self.db, now).await? {
            let Some(token) = row.lease_token.clone() else {
                continue;
            };
            if row.attempts >= i64::from(self.settings.max_attempts) {
                let msg = format!("the worker stopped responding {} times", row.attempts);
                n += self
                    .reap_one(&row.id, Holder::Lease(&token), "WORKER_LOST", &msg)
                    .await?;
            } else if self.requeue(&row, &token).await? {
                tracing::warn!(job = %row.id, attempt = row.attempts, "lease expired; job back in the queue");
                self.events.publish(
                    &row.user_id,
                    "job.requeued",
                    json!({ "job_id": row.id, "status": "queued", "attempt": row.attempts }),
                );
                n += 1;
            }
        }
        let horizon = now - self.settings.worker_offline;
        let (served, all, _) = self.served_models().await?;
        if !all {
            for row in q::queued_before(&self.db, horizon).await? {
                if served.contains(&row.model) {
                    continue;
                }
                let msg = format!("no worker has served model {} for a while", row.model);
                n += self
                    .reap_one(&row.id, Holder::Queued, "NO_WORKER", &msg)
                    .await?;
            }
        }
        if n > 0 {
            self.wake.notify_waiters();
        }
        Ok(n)
    }

    /// Fails a job the reaper found abandoned, with a refund; 0 when
    /// something else ended it first.
    async fn reap_one(
        &self,
        job_id: &str,
        holder: Holder<'_>,
        code: &str,
        message: &str,
    ) -> QueueResult<usize> {
        let outcome = Outcome {
            status: JobStatus::Failed,
            charge: Charge::Nothing,
            error: Some((code, message)),
            images: vec![],
            finished: None,
        };
        match self.end(job_id, holder, outcome).await {
            Ok(_) => Ok(1),
            Err(QueueError::LeaseLost | QueueError::Ended { .. }) => Ok(0),
            Err(e) => Err(e),
        }
    }

    async fn requeue(&self, row: &JobRow, token: &str) -> QueueResult<bool> {
        let mut tx: Tx = self.db.begin().await?;
        let ok = q::requeue(&mut tx, &row.id, token).await?;
        if ok {
            q::count_queued(&mut tx, &row.user_id, 1).await?;
        }
        tx.commit().await?;
        Ok(ok)
    }

    // ---- views ---------------------------------------------------------

    /// A user's job with its images; `NotFound` for anyone else's.
    pub async fn job_of(
        &self,
        user_id: &str,
        job_id: &str,
    ) -> QueueResult<(JobRow, Vec<ImageRow>)> {
        let row = q::get(&self.db, job_id)
            .await?
            .filter(|r| r.user_id == user_id)
            .ok_or(QueueError::NotFound)?;
        let images = self.images_of(&row).await?;
        Ok((row, images))
    }

    /// The images a job made (none unless it completed).
    pub async fn images_of(&self, row: &JobRow) -> QueueResult<Vec<ImageRow>> {
        if row.status != JobStatus::Completed.as_str() {
            return Ok(vec![]);
        }
        Ok(img::of_job(&self.db, &row.id).await?)
    }

    pub async fn list(
        &self,
        user_id: &str,
        status: Option<JobStatus>,
        page: u32,
        per_page: u32,
    ) -> QueueResult<(Vec<JobRow>, i64)> {
        let offset = i64::from(page.saturating_sub(1)) * i64::from(per_page);
        Ok(q::list_for_user(
            &self.db,
            user_id,
            status.map(JobStatus::as_str),
            per_page.into(),
            offset,
        )
        .await?)
    }

    /// The user's view of the queue: running jobs, queued jobs with their
    /// positions, and today's completions.
    pub async fn status_of(&self, user_id: &str) -> QueueResult<QueueStatus> {
        let processing = q::user_jobs_in(&self.db, user_id, "processing", 100).await?;
        let queued_rows = q::user_jobs_in(&self.db, user_id, "queued", 100).await?;
        let groups = summaries(&q::queued_groups(&self.db).await?);
        let mut per_priority: HashMap<i64, usize> = HashMap::new();
        let queued = queued_rows
            .into_iter()
            .map(|r| {
                let k = per_priority.entry(r.priority).or_default();
                *k += 1;
                let pos = scheduler::position_of(&groups, user_id, r.priority as u32, *k);
                (r, pos)
            })
            .collect();
        let midnight = Utc::now()
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc();
        Ok(QueueStatus {
            active_jobs: q::count_user_status(&self.db, user_id, "processing").await?,
            queued_jobs: q::count_user_status(&self.db, user_id, "queued").await?,
            completed_today: q::count_completed_since(&self.db, user_id, midnight).await?,
            processing,
            queued,
        })
    }

    pub fn model_of(&self, name: &str) -> Option<&Model> {
        self.models.get(name)
    }
}

pub struct QueueStatus {
    pub active_jobs: i64,
    pub queued_jobs: i64,
    pub completed_today: i64,
    pub processing: Vec<JobRow>,
    pub queued: Vec<(JobRow, usize)>,
}

fn summaries(groups: &[q::QueuedGroup]) -> Vec<scheduler::QueuedGroup> {
    groups
        .iter()
        .map(|g| scheduler::QueuedGroup {
            user_id: g.user_id.clone(),
            priority: g.priority as u32,
            queued: g.queued as usize,
            oldest: g.oldest,
            last_dispatch: g.last_dispatch,
        })
        .collect()
}

/// The generation metadata of an image (the gallery's `metadata`).
fn image_metadata(
    spec: Option<&JobSpec>,
    model: &Model,
    done: Option<&Finished>,
) -> serde_json::Value {
    let Some(s) = spec else {
        return json!({ "model": model.name, "model_hash": model.hash });
    };
    json!({
        "model": model.name,
        "model_hash": model.hash,
        "job_type": s.job_type,
        "prompt": s.prompt,
        "negative_prompt": s.negative_prompt,
        "steps": s.steps,
        "cfg_scale": s.cfg_scale,
        "seed": s.seed,
        "sampler": s.sampler,
        "loras": s.loras,
        "strength": s.strength,
        "scale": s.scale,
        "backend": done.map(|d| d.backend.clone()),
    })
}
