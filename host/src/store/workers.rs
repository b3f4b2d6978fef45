//! The `workers` table: who leases jobs, what they serve, when they were
//! last heard from.

use chrono::{DateTime, Utc};

use super::{Db, StoreResult, Writer};
use crate::{exec, exec_one, on_db, on_write};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WorkerRow {
    pub id: String,
    pub name: String,
    pub backend: String,
    pub models: String,
    pub paused: bool,
    pub last_seen_at: DateTime<Utc>,
}

/// Registers a worker or renews its registration; false when the id is
/// registered with another key (another process claims it).
pub async fn upsert_worker(w: &Writer<'_>, row: &WorkerRow, key_hash: &str) -> StoreResult<bool> {
    Ok(on_write!(w, p => exec_one!(p, sqlx::query(
        "INSERT INTO workers (id, name, backend, models, paused, started_at, last_seen_at, key_hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $6, $7) ON CONFLICT (id) DO UPDATE SET name = $2, \
         backend = $3, models = $4, paused = $5, last_seen_at = $6, key_hash = $7 \
         WHERE workers.key_hash = $7 OR workers.key_hash = ''",
    )
    .bind(&row.id)
    .bind(&row.name)
    .bind(&row.backend)
    .bind(&row.models)
    .bind(row.paused)
    .bind(row.last_seen_at)
    .bind(key_hash)))?)
}

pub async fn touch_worker(w: &Writer<'_>, id: &str, now: DateTime<Utc>) -> StoreResult<()> {
    on_write!(w, p => exec!(p, sqlx::query("UPDATE workers SET last_seen_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now)))?;
    Ok(())
}

pub async fn live_workers(db: &Db, since: DateTime<Utc>) -> StoreResult<Vec<WorkerRow>> {
    Ok(on_db!(db, p => sqlx::query_as(
        "SELECT id, name, backend, models, paused, last_seen_at FROM workers WHERE last_seen_at >= $1",
    )
    .bind(since)
    .fetch_all(p)
    .await)?)
}

/// Removes a worker's registration if `key_hash` is its key; false when
/// it is not (or there is no such worker).
pub async fn forget_worker(w: &Writer<'_>, id: &str, key_hash: &str) -> StoreResult<bool> {
    Ok(on_write!(w, p => exec_one!(p, sqlx::query(
        "DELETE FROM workers WHERE id = $1 AND key_hash = $2",
    )
    .bind(id)
    .bind(key_hash)))?)
}
