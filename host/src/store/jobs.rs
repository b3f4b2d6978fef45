//! The `jobs` table. The queue's rules (who gets which job,
//! what a transition settles) live in `queue`; these are the statements.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Db, Page, StoreResult, Tx, TxConn, UnknownValue, Writer};
use crate::{exec, exec_one, on_db, on_tx, on_write};

/// What a job does (the `job_type` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
pub enum JobType {
    #[default]
    TextToImage,
    ImageToImage,
    Upscale,
    Inpaint,
    /// A graph workflow (`JobSpec::workflow`).
    Workflow,
}

/// Where a job is in its life (the `status` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::EnumString, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Processing,
    Completed,
    Failed,
    Cancelled,
}

impl JobType {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Completed, failed or cancelled: nothing changes it any more.
    pub fn has_ended(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

impl TryFrom<String> for JobType {
    type Error = UnknownValue;
    fn try_from(s: String) -> Result<Self, UnknownValue> {
        s.parse().map_err(|_| UnknownValue(s))
    }
}

impl TryFrom<String> for JobStatus {
    type Error = UnknownValue;
    fn try_from(s: String) -> Result<Self, UnknownValue> {
        s.parse().map_err(|_| UnknownValue(s))
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRow {
    pub id: String,
    pub user_id: String,
    #[sqlx(try_from = "String")]
    pub job_type: JobType,
    #[sqlx(try_from = "String")]
    pub status: JobStatus,
    pub priority: i64,
    pub model: String,
    pub params: String,
    pub hold_id: String,
    pub estimated_credits: i64,
    pub credits_used: Option<i64>,
    pub credits_refunded: Option<i64>,
    pub seq: i64,
    pub attempts: i64,
    pub worker_id: Option<String>,
    pub lease_token: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub progress: i64,
    pub step: i64,
    pub total_steps: i64,
    pub gpu_seconds: Option<f64>,
    pub node_seconds: Option<f64>,
    pub gpu_started_at: Option<DateTime<Utc>>,
    pub gpu_finished_at: Option<DateTime<Utc>>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub result_image_ids: Option<String>,
    pub save_to_board: Option<String>,
    pub queued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

const JOB_COLUMNS: &str = "id, user_id, job_type, status, priority, model, params, hold_id, \
     estimated_credits, credits_used, credits_refunded, seq, attempts, worker_id, lease_token, \
     lease_expires_at, progress, step, total_steps, gpu_seconds, node_seconds, gpu_started_at, \
     gpu_finished_at, error_code, error_message, result_image_ids, save_to_board, queued_at, \
     started_at, completed_at";

pub struct NewJob<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub job_type: JobType,
    pub priority: i64,
    pub model: &'a str,
    pub params: &'a str,
    pub hold_id: &'a str,
    pub estimated_credits: i64,
    pub seq: i64,
    pub save_to_board: Option<&'a str>,
    pub now: DateTime<Utc>,
}

/// Inserts queued jobs, all in one statement.
pub async fn insert(tx: &mut Tx, jobs: &[NewJob<'_>]) -> StoreResult<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO jobs (id, user_id, job_type, status, priority, model, params, hold_id, \
         estimated_credits, seq, save_to_board, queued_at) VALUES {}",
        super::value_rows(jobs.len(), 11, |row| {
            row.insert(3, "'queued'".into());
        })
    );
    on_tx!(tx, c => {
        let mut q = sqlx::query(&sql);
        for j in jobs {
            q = q
                .bind(j.id)
                .bind(j.user_id)
                .bind(j.job_type.as_str())
                .bind(j.priority)
                .bind(j.model)
                .bind(j.params)
                .bind(j.hold_id)
                .bind(j.estimated_credits)
                .bind(j.seq)
                .bind(j.save_to_board)
                .bind(j.now);
        }
        exec!(c, q)
    })?;
    Ok(())
}

/// `n` order stamps (a job's `seq` at enqueue, its `dispatched_at` at
/// lease), increasing and unique across hosts: from a sequence on
/// PostgreSQL, from a counter row on SQLite (whose writers are serial).
pub async fn order_stamps(tx: &mut Tx, n: usize) -> StoreResult<Vec<i64>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    Ok(match &mut tx.conn {
        TxConn::Postgres(t) => {
            let mut stamps: Vec<i64> =
                sqlx::query_scalar("SELECT nextval('job_order') FROM generate_series(1, $1)")
                    .bind(n)
                    .fetch_all(&mut **t)
                    .await?;
            stamps.sort_unstable();
            stamps
        }
        TxConn::Sqlite(t, _) => {
            let last: i64 =
                sqlx::query_scalar("UPDATE job_order SET last = last + $1 RETURNING last")
                    .bind(n)
                    .fetch_one(&mut **t)
                    .await?;
            (last - n + 1..=last).collect()
        }
    })
}

/// The PostgreSQL advisory-lock key that serialises leasing ("pq" "ue").
pub const QUEUE_LOCK_KEY: i64 = 724_365_001;

/// Serialises leasing across hosts on PostgreSQL (SQLite's write
/// transactions are serial already), so the scheduler sees one queue.
pub async fn lock_queue(tx: &mut Tx) -> StoreResult<()> {
    if let TxConn::Postgres(t) = &mut tx.conn {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(QUEUE_LOCK_KEY)
            .execute(&mut **t)
            .await?;
    }
    Ok(())
}

/// Per user and priority: queued jobs, the oldest one's `seq`, and when
/// the user was last dispatched to.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct QueuedGroup {
    pub user_id: String,
    pub priority: i64,
    pub queued: i64,
    pub oldest: i64,
    pub last_dispatch: Option<i64>,
}

/// Per user with queued jobs: how many, the oldest one's `seq`, and
/// when the user was last dispatched to; O(users), from the counters.
const QUEUED_GROUPS: &str = "SELECT c.user_id, c.priority, c.queued, \
     COALESCE((SELECT MIN(w.seq) FROM jobs w WHERE w.user_id = c.user_id AND w.status = 'queued'), 0) AS oldest, \
     (SELECT MAX(d.dispatched_at) FROM jobs d WHERE d.user_id = c.user_id) AS last_dispatch \
     FROM queue_counters c WHERE c.queued > 0";

pub async fn queued_groups(db: &Db) -> StoreResult<Vec<QueuedGroup>> {
    Ok(on_db!(db, p => sqlx::query_as(QUEUED_GROUPS).fetch_all(p).await)?)
}

/// `queued_groups` as a transaction sees them, with the counters of
/// `user_ids` even where nothing of theirs is queued.
pub async fn queued_groups_with_in(
    tx: &mut Tx,
    user_ids: &[&str],
) -> StoreResult<Vec<QueuedGroup>> {
    let list = super::value_rows(1, user_ids.len().max(1), |_| {});
    let sql = format!("{QUEUED_GROUPS} OR c.user_id IN {list}");
    Ok(on_tx!(tx, c => {
        let mut q = sqlx::query_as(&sql);
        if user_ids.is_empty() {
            q = q.bind("");
        }
        for id in user_ids {
            q = q.bind(*id);
        }
        q.fetch_all(c).await
    })?)
}

/// Counts more queued jobs per user — `(user, priority, n)`, users in id
/// order — in one statement; a user's priority becomes that of their
/// newest jobs. With every `n` 0 it only makes sure each counter exists,
/// and on PostgreSQL holds each counter's row lock for the rest of the
/// transaction: concurrent enqueues of a user, on any host, are counted
/// one transaction after the other.
pub async fn count_enqueued(tx: &mut Tx, counts: &[(&str, i64, i64)]) -> StoreResult<()> {
    if counts.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO queue_counters (user_id, priority, queued) VALUES {} \
         ON CONFLICT (user_id) DO UPDATE SET queued = queue_counters.queued + excluded.queued, \
         priority = CASE WHEN excluded.queued > 0 THEN excluded.priority \
         ELSE queue_counters.priority END",
        super::value_rows(counts.len(), 3, |_| {})
    );
    on_tx!(tx, c => {
        let mut q = sqlx::query(&sql);
        for (user_id, priority, n) in counts {
            q = q.bind(*user_id).bind(*priority).bind(*n);
        }
        exec!(c, q)
    })?;
    Ok(())
}

/// A job of the user left (`delta` −1) or re-entered (+1) the queue.
pub async fn count_queued(tx: &mut Tx, user_id: &str, delta: i64) -> StoreResult<()> {
    on_tx!(tx, c => exec!(c, sqlx::query("UPDATE queue_counters SET queued = queued + $2 WHERE user_id = $1")
        .bind(user_id)
        .bind(delta)))?;
    Ok(())
}

/// A user's oldest queued job per model, with the user's current tier.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Candidate {
    pub user_id: String,
    pub model: String,
    pub priority: i64,
    pub seq: i64,
    pub tier: String,
}

pub async fn lease_candidates(tx: &mut Tx) -> StoreResult<Vec<Candidate>> {
    Ok(on_tx!(tx, c => sqlx::query_as(
        "SELECT j.user_id, j.model, j.priority, MIN(j.seq) AS seq, u.tier FROM jobs j \
         JOIN users u ON u.id = j.user_id WHERE j.status = 'queued' \
         GROUP BY j.user_id, j.model, j.priority, u.tier",
    )
    .fetch_all(c)
    .await)?)
}

pub async fn running_counts(tx: &mut Tx) -> StoreResult<Vec<(String, i64)>> {
    Ok(on_tx!(tx, c => sqlx::query_as(
        "SELECT user_id, COUNT(*) FROM jobs WHERE status = 'processing' GROUP BY user_id",
    )
    .fetch_all(c)
    .await)?)
}

pub async fn last_dispatch(tx: &mut Tx, user_id: &str) -> StoreResult<Option<i64>> {
    Ok(on_tx!(tx, c => sqlx::query_scalar(
        "SELECT MAX(dispatched_at) FROM jobs WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_one(c)
    .await)?)
}

pub async fn queued_job_at(
    tx: &mut Tx,
    user_id: &str,
    model: &str,
    seq: i64,
) -> StoreResult<Option<JobRow>> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE user_id = $1 AND model = $2 AND seq = $3 \
         AND status = 'queued' ORDER BY id LIMIT 1"
    );
    Ok(
        on_tx!(tx, c => sqlx::query_as(&sql).bind(user_id).bind(model).bind(seq).fetch_optional(c).await)?,
    )
}

pub struct LeaseGrant<'a> {
    pub job_id: &'a str,
    pub worker_id: &'a str,
    pub token: &'a str,
    pub expires_at: DateTime<Utc>,
    pub dispatched_at: i64,
    pub now: DateTime<Utc>,
}

pub async fn grant_lease(tx: &mut Tx, g: &LeaseGrant<'_>) -> StoreResult<bool> {
    Ok(on_tx!(tx, c => exec_one!(c, sqlx::query(
        "UPDATE jobs SET status = 'processing', worker_id = $2, lease_token = $3, \
         lease_expires_at = $4, dispatched_at = $5, attempts = attempts + 1, \
         started_at = COALESCE(started_at, $6), progress = 0, step = 0, gpu_started_at = NULL \
         WHERE id = $1 AND status = 'queued'",
    )
    .bind(g.job_id)
    .bind(g.worker_id)
    .bind(g.token)
    .bind(g.expires_at)
    .bind(g.dispatched_at)
    .bind(g.now)))?)
}

pub struct Beat<'a> {
    pub job_id: &'a str,
    pub token: &'a str,
    pub expires_at: DateTime<Utc>,
    pub progress: Option<(i64, i64, i64)>,
    pub gpu_started_at: Option<DateTime<Utc>>,
}

/// Renews a live lease and records progress; answers the job's owner and
/// worker, or `None` when the lease is no longer this worker's (expired and
/// re-leased, or the job ended).
pub async fn heartbeat(
    w: &Writer<'_>,
    b: &Beat<'_>,
) -> StoreResult<Option<(String, Option<String>)>> {
    let (pct, step, total) = b.progress.unwrap_or((-1, -1, -1));
    Ok(on_write!(w, p => sqlx::query_as(
        "UPDATE jobs SET lease_expires_at = $3, \
         progress = CASE WHEN $4 >= 0 THEN $4 ELSE progress END, \
         step = CASE WHEN $5 >= 0 THEN $5 ELSE step END, \
         total_steps = CASE WHEN $6 >= 0 THEN $6 ELSE total_steps END, \
         gpu_started_at = COALESCE(gpu_started_at, $7) \
         WHERE id = $1 AND lease_token = $2 AND status = 'processing' \
         RETURNING user_id, worker_id",
    )
    .bind(b.job_id)
    .bind(b.token)
    .bind(b.expires_at)
    .bind(pct)
    .bind(step)
    .bind(total)
    .bind(b.gpu_started_at)
    .fetch_optional(p)
    .await)?)
}

pub async fn get(db: &Db, id: &str) -> StoreResult<Option<JobRow>> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
    Ok(on_db!(db, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await)?)
}

/// The job, locked for a state change (row lock on PostgreSQL; SQLite
/// write transactions are serial).
pub async fn get_for_update(tx: &mut Tx, id: &str) -> StoreResult<Option<JobRow>> {
    let lock = tx.row_lock();
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1{lock}");
    Ok(on_tx!(tx, c => sqlx::query_as(&sql).bind(id).fetch_optional(c).await)?)
}

pub async fn list_for_user(
    db: &Db,
    user_id: &str,
    status: Option<JobStatus>,
    page: Page,
) -> StoreResult<(Vec<JobRow>, i64)> {
    let status = status.map(JobStatus::as_str);
    let filter = "user_id = $1 AND ($2 IS NULL OR status = $2)";
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE {filter} ORDER BY queued_at DESC, id DESC LIMIT $3 OFFSET $4"
    );
    let count = format!("SELECT COUNT(*) FROM jobs WHERE {filter}");
    on_db!(db, p => {
        let rows = sqlx::query_as(&sql).bind(user_id).bind(status).bind(page.limit()).bind(page.offset()).fetch_all(p).await?;
        let total: i64 = sqlx::query_scalar(&count).bind(user_id).bind(status).fetch_one(p).await?;
        Ok((rows, total))
    })
}

/// A user's jobs in one status, oldest first (the queue status view).
pub async fn user_jobs_in(
    db: &Db,
    user_id: &str,
    status: JobStatus,
    limit: i64,
) -> StoreResult<Vec<JobRow>> {
    let status = status.as_str();
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE user_id = $1 AND status = $2 ORDER BY seq, id LIMIT $3"
    );
    Ok(
        on_db!(db, p => sqlx::query_as(&sql).bind(user_id).bind(status).bind(limit).fetch_all(p).await)?,
    )
}

pub async fn count_user_status(db: &Db, user_id: &str, status: JobStatus) -> StoreResult<i64> {
    Ok(on_db!(db, p => sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs WHERE user_id = $1 AND status = $2",
    )
    .bind(user_id)
    .bind(status.as_str())
    .fetch_one(p)
    .await)?)
}

pub async fn count_completed_since(
    db: &Db,
    user_id: &str,
    since: DateTime<Utc>,
) -> StoreResult<i64> {
    Ok(on_db!(db, p => sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs WHERE user_id = $1 AND status = 'completed' AND completed_at >= $2",
    )
    .bind(user_id)
    .bind(since)
    .fetch_one(p)
    .await)?)
}

/// How a job ended.
pub struct Ending<'a> {
    pub status: JobStatus,
    pub credits_used: i64,
    pub credits_refunded: i64,
    pub error_code: Option<&'a str>,
    pub error_message: Option<&'a str>,
    pub result_image_ids: Option<&'a str>,
    pub gpu_seconds: Option<f64>,
    pub node_seconds: Option<f64>,
    pub gpu_started_at: Option<DateTime<Utc>>,
    pub gpu_finished_at: Option<DateTime<Utc>>,
    pub now: DateTime<Utc>,
}

/// Ends a job that has not ended yet; false when it already had.
pub async fn end(tx: &mut Tx, id: &str, e: &Ending<'_>) -> StoreResult<bool> {
    Ok(on_tx!(tx, c => exec_one!(c, sqlx::query(
        "UPDATE jobs SET status = $2, credits_used = $3, credits_refunded = $4, error_code = $5, \
         error_message = $6, result_image_ids = $7, gpu_seconds = COALESCE($8, gpu_seconds), \
         gpu_started_at = COALESCE($9, gpu_started_at), gpu_finished_at = $10, completed_at = $11, \
         progress = CASE WHEN $2 = 'completed' THEN 100 ELSE progress END, lease_token = NULL, \
         lease_expires_at = NULL, node_seconds = $12 \
         WHERE id = $1 AND status IN ('queued', 'processing')",
    )
    .bind(id)
    .bind(e.status.as_str())
    .bind(e.credits_used)
    .bind(e.credits_refunded)
    .bind(e.error_code)
    .bind(e.error_message)
    .bind(e.result_image_ids)
    .bind(e.gpu_seconds)
    .bind(e.gpu_started_at)
    .bind(e.gpu_finished_at)
    .bind(e.now)
    .bind(e.node_seconds)))?)
}

/// Processing jobs whose lease ran out.
pub async fn expired_leases(db: &Db, now: DateTime<Utc>) -> StoreResult<Vec<JobRow>> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE status = 'processing' AND lease_expires_at < $1"
    );
    Ok(on_db!(db, p => sqlx::query_as(&sql).bind(now).fetch_all(p).await)?)
}

/// Puts a job whose lease expired back in the queue (keeping its place).
pub async fn requeue(tx: &mut Tx, id: &str, token: &str) -> StoreResult<bool> {
    Ok(on_tx!(tx, c => exec_one!(c, sqlx::query(
        "UPDATE jobs SET status = 'queued', worker_id = NULL, lease_token = NULL, \
         lease_expires_at = NULL, progress = 0, step = 0, gpu_started_at = NULL \
         WHERE id = $1 AND status = 'processing' AND lease_token = $2",
    )
    .bind(id)
    .bind(token)))?)
}

/// Queued jobs queued before `before`, oldest first.
pub async fn queued_before(db: &Db, before: DateTime<Utc>) -> StoreResult<Vec<JobRow>> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE status = 'queued' AND queued_at < $1 ORDER BY seq LIMIT 1000"
    );
    Ok(on_db!(db, p => sqlx::query_as(&sql).bind(before).fetch_all(p).await)?)
}

/// What usage statistics need of one job.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UsageRow {
    pub model: String,
    #[sqlx(try_from = "String")]
    pub status: JobStatus,
    pub credits_used: Option<i64>,
    pub result_image_ids: Option<String>,
    pub queued_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// A user's jobs queued or ended since `since`.
pub async fn usage_since(
    db: &Db,
    user_id: &str,
    since: DateTime<Utc>,
) -> StoreResult<Vec<UsageRow>> {
    Ok(on_db!(db, p => sqlx::query_as(
        "SELECT model, status, credits_used, result_image_ids, queued_at, completed_at FROM jobs \
         WHERE user_id = $1 AND (queued_at >= $2 OR completed_at >= $2)",
    )
    .bind(user_id)
    .bind(since)
    .fetch_all(p)
    .await)?)
}
