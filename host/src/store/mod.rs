//! Database access on SQLite (embedded default, WAL mode) and PostgreSQL
//! (scale-out), picked by the URL scheme. Both run the same SQL text: the
//! queries use `$N` placeholders and portable types, and the `on_db!` /
//! `on_tx!` macros expand one body for each driver. Schema lives in
//! `migrations/sqlite` and `migrations/postgres` and is kept identical.

pub mod billing;
pub mod credits;
pub mod email_tokens;
pub mod identities;
pub mod images;
pub mod jobs;
pub mod plugins;
pub mod profiles;
pub mod tokens;
pub mod users;
pub mod wakeups;
pub mod workers;
pub mod workflows;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};

use crate::revisions::Revisions;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database url scheme (expected sqlite:// or postgres://)")]
    UnsupportedScheme,
}

impl StoreError {
    /// True when the error is a violation of a UNIQUE constraint.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Db(sqlx::Error::Database(e)) if e.is_unique_violation())
    }

    /// True when the error is a violation of a CHECK constraint.
    pub fn is_check_violation(&self) -> bool {
        matches!(self, StoreError::Db(sqlx::Error::Database(e)) if e.is_check_violation())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A column held a value its Rust type does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown value `{0}`")]
pub struct UnknownValue(pub String);

/// A connection pool to one of the two supported databases, with the
/// revisions of what `GET /users/me` shows (`profile_revisions`).
#[derive(Clone, Debug)]
pub struct Db {
    pub pool: Pool,
    profiles: Revisions,
    profile_rows: Arc<profiles::ProfileCache>,
}

#[derive(Clone, Debug)]
pub enum Pool {
    /// With the write gate: SQLite has one writer at a time, and a writer
    /// that finds the lock taken sleeps in SQLite's busy handler (1, 2,
    /// 5 … 100 ms). Writers of this process queue on the gate instead and
    /// get the lock the moment it is free.
    Sqlite(SqlitePool, WriteGate),
    Postgres(PgPool),
}

pub type WriteGate = Arc<tokio::sync::Mutex<()>>;

/// A single-statement write outside a transaction. On SQLite it holds the
/// write gate for as long as it lives, so store functions that write take
/// a `Writer` (or a `Tx`) and cannot forget the gate.
pub struct Writer<'a> {
    pub conn: WriterConn<'a>,
    profiles: &'a Revisions,
}

pub enum WriterConn<'a> {
    Sqlite(&'a SqlitePool, tokio::sync::OwnedMutexGuard<()>),
    Postgres(&'a PgPool),
}

/// An open transaction on either database (on SQLite holding the gate).
pub struct Tx {
    pub conn: TxConn,
    profiles: Revisions,
    /// Profile parts this transaction changed (`profiles::Part::key`):
    /// their revisions are bumped once it commits.
    changed_profiles: Vec<String>,
}

pub enum TxConn {
    Sqlite(
        Transaction<'static, Sqlite>,
        tokio::sync::OwnedMutexGuard<()>,
    ),
    Postgres(Transaction<'static, Postgres>),
}

/// Runs `$body` with `$pool` bound to the concrete pool of `$db`.
#[macro_export]
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match &$db.pool {
            $crate::store::Pool::Sqlite($pool, _) => $body,
            $crate::store::Pool::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` with `$conn` bound to the concrete connection of `$tx`.
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, $conn:ident => $body:expr) => {
        match &mut $tx.conn {
            $crate::store::TxConn::Sqlite(t, _) => {
                let $conn = &mut **t;
                $body
            }
            $crate::store::TxConn::Postgres(t) => {
                let $conn = &mut **t;
                $body
            }
        }
    };
}

/// Runs `$body` with `$pool` bound to the concrete pool of a `Writer`.
#[macro_export]
macro_rules! on_write {
    ($w:expr, $pool:ident => $body:expr) => {
        match &$w.conn {
            $crate::store::WriterConn::Sqlite(p, _) => {
                let $pool = *p;
                $body
            }
            $crate::store::WriterConn::Postgres(p) => {
                let $pool = *p;
                $body
            }
        }
    };
}

/// Executes a statement on `$conn` (inside `on_tx!`/`on_write!`).
#[macro_export]
macro_rules! exec {
    ($conn:expr, $query:expr) => {
        $query.execute($conn).await.map(|_| ())
    };
}

/// Executes a statement on `$conn`; true when it changed exactly one row.
#[macro_export]
macro_rules! exec_one {
    ($conn:expr, $query:expr) => {
        $query.execute($conn).await.map(|r| r.rows_affected() == 1)
    };
}

impl Db {
    /// Opens a pool for `url`; a SQLite file (and its directory) is created
    /// when missing.
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10));
            if let Some(parent) = opts
                .get_filename()
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
            {
                std::fs::create_dir_all(parent).map_err(sqlx::Error::Io)?;
            }
            // A local file connection cannot go stale: skip the ping on every
            // acquire, which costs a round trip to the connection's thread.
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections.max(1))
                .test_before_acquire(false)
                .acquire_timeout(Duration::from_secs(15))
                .connect_with(opts)
                .await?;
            Ok(Db::new(Pool::Sqlite(pool, Arc::default())))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let opts = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections.max(1))
                .acquire_timeout(Duration::from_secs(15))
                .connect_with(opts)
                .await?;
            Ok(Db::new(Pool::Postgres(pool)))
        } else {
            Err(StoreError::UnsupportedScheme)
        }
    }

    fn new(pool: Pool) -> Self {
        Db {
            pool,
            profiles: Revisions::default(),
            profile_rows: Arc::default(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(..) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// The SQLite pool, when this is SQLite.
    pub fn sqlite(&self) -> Option<&SqlitePool> {
        match &self.pool {
            Pool::Sqlite(p, _) => Some(p),
            Pool::Postgres(_) => None,
        }
    }

    /// Revisions of the parts of users' profiles (`profiles::Part`),
    /// bumped by the store functions that write them once their write
    /// committed.
    pub fn profile_revisions(&self) -> &Revisions {
        &self.profiles
    }

    fn profile_cache(&self) -> &profiles::ProfileCache {
        &self.profile_rows
    }

    pub async fn migrate(&self) -> StoreResult<()> {
        match &self.pool {
            Pool::Sqlite(p, _) => SQLITE_MIGRATIONS.run(p).await?,
            Pool::Postgres(p) => POSTGRES_MIGRATIONS.run(p).await?,
        }
        Ok(())
    }

    /// Begins a write transaction. On SQLite it takes the write lock up
    /// front (`BEGIN IMMEDIATE`) so a read-then-write transaction never fails
    /// to upgrade under concurrency; PostgreSQL uses row locks instead.
    pub async fn begin(&self) -> StoreResult<Tx> {
        let conn = match &self.pool {
            Pool::Sqlite(p, gate) => {
                let guard = gate.clone().lock_owned().await;
                TxConn::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?, guard)
            }
            Pool::Postgres(p) => TxConn::Postgres(p.begin().await?),
        };
        Ok(Tx {
            conn,
            profiles: self.profiles.clone(),
            changed_profiles: Vec::new(),
        })
    }

    /// A single-statement write: on SQLite it waits for the write gate
    /// (see `Db::Sqlite`); on PostgreSQL rows lock themselves.
    pub async fn write(&self) -> Writer<'_> {
        let conn = match &self.pool {
            Pool::Sqlite(p, gate) => WriterConn::Sqlite(p, gate.clone().lock_owned().await),
            Pool::Postgres(p) => WriterConn::Postgres(p),
        };
        Writer {
            conn,
            profiles: &self.profiles,
        }
    }

    pub async fn ping(&self) -> StoreResult<()> {
        on_db!(self, p => exec!(p, sqlx::query("SELECT 1")))?;
        Ok(())
    }

    pub async fn close(&self) {
        on_db!(self, p => p.close().await)
    }
}

impl Tx {
    /// The clause that locks the rows a `SELECT` reads for the rest of the
    /// transaction: `FOR UPDATE` on PostgreSQL; nothing on SQLite, whose
    /// write transactions are serial.
    pub fn row_lock(&self) -> &'static str {
        match self.conn {
            TxConn::Sqlite(..) => "",
            TxConn::Postgres(_) => " FOR UPDATE",
        }
    }

    /// Notes that this transaction writes `part` of `user_id`'s profile.
    pub(crate) fn profile_changed(&mut self, part: profiles::Part, user_id: &str) {
        let key = part.key(user_id);
        if !self.changed_profiles.contains(&key) {
            self.changed_profiles.push(key);
        }
    }

    pub async fn commit(self) -> StoreResult<()> {
        match self.conn {
            TxConn::Sqlite(t, _) => t.commit().await?,
            TxConn::Postgres(t) => t.commit().await?,
        }
        for key in &self.changed_profiles {
            self.profiles.bump(key);
        }
        Ok(())
    }

    pub async fn rollback(self) -> StoreResult<()> {
        match self.conn {
            TxConn::Sqlite(t, _) => t.rollback().await?,
            TxConn::Postgres(t) => t.rollback().await?,
        }
        Ok(())
    }
}

impl Writer<'_> {
    /// Notes that this writer's statement, which returned already (and so
    /// committed), wrote `part` of `user_id`'s profile.
    pub(crate) fn profile_changed(&self, part: profiles::Part, user_id: &str) {
        self.profiles.bump(&part.key(user_id));
    }
}

/// One page of a list: 1-based `page` of `per_page` rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub page: u32,
    pub per_page: u32,
}

impl Page {
    pub fn limit(self) -> i64 {
        i64::from(self.per_page)
    }

    /// Rows before this page.
    pub fn offset(self) -> i64 {
        i64::from(self.page.saturating_sub(1)) * i64::from(self.per_page)
    }
}

/// `rows` rows of `columns` placeholders each, numbered on from `$1`:
/// `($1, $2), ($3, $4)` (one row is an `IN` list); `fill` may add
/// literal columns to a row.
fn value_rows(rows: usize, columns: usize, fill: impl Fn(&mut Vec<String>)) -> String {
    (0..rows)
        .map(|r| {
            let mut row: Vec<String> = (1..=columns)
                .map(|c| format!("${}", r * columns + c))
                .collect();
            fill(&mut row);
            format!("({})", row.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A fresh UUID v7 as text: ids are time-ordered strings on both databases.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
