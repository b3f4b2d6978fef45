//! The worker registry: which workers are live and which models they
//! serve, read from the `workers` table and cached for a second, so
//! enqueue can refuse a model nobody serves.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;

use sha2::{Digest, Sha256};

use super::{Queue, QueueError, QueueResult};
use crate::store::workers::{self as q, WorkerRow};

/// Who registers as a worker and what it serves.
#[derive(Debug, Clone)]
pub struct WorkerInfo {
    pub id: String,
    pub name: String,
    pub backend: String,
    /// `None`: every model of the catalogue.
    pub models: Option<Vec<String>>,
    pub paused: bool,
    /// A secret of the worker process: only it may renew or remove its
    /// registration.
    pub key: String,
}

impl WorkerInfo {
    /// A fresh identity: `prefix` and a random id, and a random key.
    pub fn new(prefix: &str, name: String, backend: String, models: Option<Vec<String>>) -> Self {
        Self {
            id: format!("{prefix}-{}", uuid::Uuid::now_v7().simple()),
            name,
            backend,
            models,
            paused: false,
            key: crate::auth::tokens::new_secret(),
        }
    }

    fn key_hash(key: &str) -> String {
        hex::encode(Sha256::digest(key.as_bytes()))
    }

    /// Serves `model`, or every model of a workflow's comma-joined list.
    pub fn serves(&self, model: &str) -> bool {
        model
            .split(',')
            .all(|m| crate::inference::listed(self.models.as_deref(), m))
    }
}

/// What live workers serve, as last read.
#[derive(Debug, Clone)]
pub(super) struct Served {
    pub models: HashSet<String>,
    /// Some worker serves every model.
    pub all: bool,
    pub workers: usize,
}

impl Served {
    /// Some worker serves `model` (every one of a comma-joined list; one
    /// worker serving all of them is what leasing asks, checked there).
    pub fn covers(&self, model: &str) -> bool {
        self.all || model.split(',').all(|m| self.models.contains(m))
    }
}

#[derive(Default)]
pub(super) struct Registry {
    served: Mutex<Option<(Instant, Served)>>,
    /// When a heartbeat last refreshed each worker's `last_seen_at`.
    seen: Mutex<HashMap<String, Instant>>,
}

impl Registry {
    fn forget_served(&self) {
        *self.served.lock().expect("served lock") = None;
    }
}

/// How long the served-models view is reused.
const SERVED_TTL: Duration = Duration::from_secs(1);

impl Queue {
    /// Records a worker as alive (on start and on every lease poll).
    pub async fn touch_worker(&self, w: &WorkerInfo) -> QueueResult<()> {
        let known = self
            .workers
            .served
            .lock()
            .expect("served lock")
            .as_ref()
            .is_some_and(|(_, s)| {
                s.all
                    || w.models
                        .as_ref()
                        .is_some_and(|m| m.iter().all(|x| s.models.contains(x)))
            });
        let models = match &w.models {
            Some(m) => serde_json::to_string(m).unwrap_or_default(),
            None => "[\"*\"]".into(),
        };
        let row = WorkerRow {
            id: w.id.clone(),
            name: w.name.clone(),
            backend: w.backend.clone(),
            models,
            paused: w.paused,
            last_seen_at: Utc::now(),
        };
        let own = q::upsert_worker(
            &self.parts.db.write().await,
            &row,
            &WorkerInfo::key_hash(&w.key),
        )
        .await?;
        if !own {
            return Err(QueueError::NotYourWorker);
        }
        // A worker with models the cached view lacks is seen at once.
        if !known {
            self.workers.forget_served();
        }
        Ok(())
    }

    /// Unregisters the worker `id` if `key` is its key.
    pub async fn forget_worker(&self, id: &str, key: &str) -> QueueResult<()> {
        let gone =
            q::forget_worker(&self.parts.db.write().await, id, &WorkerInfo::key_hash(key)).await?;
        if !gone {
            return Err(QueueError::NotYourWorker);
        }
        self.workers.forget_served();
        Ok(())
    }

    /// What live workers serve; cached for a second.
    pub(super) async fn served(&self) -> QueueResult<Served> {
        if let Some((at, s)) = &*self.workers.served.lock().expect("served lock")
            && at.elapsed() < SERVED_TTL
        {
            return Ok(s.clone());
        }
        let since = Utc::now() - self.settings.worker_offline;
        let workers = q::live_workers(&self.parts.db, since).await?;
        let mut served = Served {
            models: HashSet::new(),
            all: false,
            workers: workers.len(),
        };
        for w in &workers {
            let models: Vec<String> = serde_json::from_str(&w.models).unwrap_or_default();
            for m in models {
                if m == "*" {
                    served.all = true;
                } else {
                    served.models.insert(m);
                }
            }
        }
        *self.workers.served.lock().expect("served lock") = Some((Instant::now(), served.clone()));
        Ok(served)
    }

    pub async fn is_served(&self, model: &str) -> QueueResult<bool> {
        Ok(self.served().await?.covers(model))
    }

    /// A worker busy with a long job does not poll for leases; its
    /// heartbeats keep it counted as alive (a write at most every quarter
    /// of `worker_offline`).
    pub(super) async fn heard_from(&self, worker: String) -> QueueResult<()> {
        let stale = self
            .workers
            .seen
            .lock()
            .expect("seen lock")
            .get(&worker)
            .is_none_or(|t| t.elapsed() > self.settings.worker_offline / 4);
        if stale {
            q::touch_worker(&self.parts.db.write().await, &worker, Utc::now()).await?;
            self.workers
                .seen
                .lock()
                .expect("seen lock")
                .insert(worker, Instant::now());
        }
        Ok(())
    }
}
