//! The `workers` table: who leases jobs, what they serve, when they were
//! last heard from.

use chrono::{DateTime, Utc};

use super::{Db, StoreResult, Writer};
use crate::{exec, on_db, on_write};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WorkerRow {
    pub id: String,
    pub name: String,
    pub backend: String,
    pub models: String,
    pub paused: bool,
    pub last_seen_at: DateTime<Utc>,
}

pub async fn upsert_worker(w: &Writer<'_>, row: &WorkerRow) -> StoreResult<()> {
    on_write!(w, p => exec!(p, sqlx::query(
        "INSERT INTO workers (id, name, backend, models, paused, started_at, last_seen_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (id) DO UPDATE SET name = $2, \
         backend = $3, models = $4, paused = $5, last_seen_at = $6",
    )
    .bind(&row.id)
    .bind(&row.name)
    .bind(&row.backend)
    .bind(&row.models)
    .bind(row.paused)
    .bind(row.last_seen_at)))?;
    Ok(())
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

pub async fn forget_worker(w: &Writer<'_>, id: &str) -> StoreResult<()> {
    on_write!(w, p => exec!(p, sqlx::query("DELETE FROM workers WHERE id = $1").bind(id)))?;
    Ok(())
}
