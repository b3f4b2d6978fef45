//! Queue wake-ups across hosts on PostgreSQL (`LISTEN`/`NOTIFY`): a host
//! that queued or ended a job tells the others, whose waiting workers
//! look for a lease at once instead of at their next poll. On SQLite
//! (one host) there is nobody to tell.

use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::mpsc;

use super::{Db, Pool};

/// The channel (per database, as PostgreSQL scopes notifications).
const QUEUE_CHANNEL: &str = "pingvas_queue";

/// Tells the other hosts the queue changed; errors are logged (their
/// workers still poll).
pub async fn queue_changed(db: &Db) {
    if let Pool::Postgres(p) = &db.pool
        && let Err(e) = sqlx::query("SELECT pg_notify($1, '')")
            .bind(QUEUE_CHANNEL)
            .execute(p)
            .await
    {
        tracing::warn!(error = %e, "cannot announce a queue change");
    }
}

/// A feed of queue changes announced by any host (this one included),
/// with one extra message after a lost connection (changes may have been
/// missed). None on SQLite. Ends when the receiver is dropped.
pub async fn queue_changes(db: &Db) -> anyhow::Result<Option<mpsc::Receiver<()>>> {
    let Pool::Postgres(pool) = &db.pool else {
        return Ok(None);
    };
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(QUEUE_CHANNEL).await?;
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        loop {
            let changed = tokio::select! {
                got = listener.try_recv() => got,
                () = tx.closed() => return,
            };
            match changed {
                // A change, or a lost connection (the next call reconnects).
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "queue wake-ups: PostgreSQL listener failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            // Full: a wake-up is pending already.
            let _ = tx.try_send(());
        }
    });
    Ok(Some(rx))
}
