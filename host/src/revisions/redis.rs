//! Revisions shared by the hosts of one Redis: each host publishes the
//! users it bumped on one channel and bumps the users other hosts publish.
//!
//! A message is `<host>\n<user>\n<user>…`: the bumps this host made since
//! its last message (a burst of writes costs one publish), sent as soon
//! as the previous publish returned. A host skips its own messages.

use std::sync::Weak;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;

use super::{Inner, Revisions};

/// Users named in one message at most.
const MAX_BATCH: usize = 512;
/// Bumps waiting to be published at most (Redis slower than this host
/// writes: the rest are dropped, and other hosts' caches fall back on the
/// entries' age).
const OUTBOX: usize = 16_384;

/// Shares `revisions` through the Redis at `url` on `channel`. Until the
/// subscription stands (and whenever it is lost) they give no revision.
pub async fn share(revisions: &Revisions, url: &str, channel: String) -> anyhow::Result<()> {
    let (client, conn) = connect(url).await?;
    let (tx, rx) = mpsc::channel(OUTBOX);
    if revisions.inner.outbox.set(tx).is_err() {
        anyhow::bail!("revisions are shared already");
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let _ = revisions.inner.stop.set(stop.clone().drop_guard());
    revisions.new_epoch(false);
    let host = uuid::Uuid::new_v4().simple().to_string();
    tokio::spawn(publish(conn, channel.clone(), host.clone(), rx));
    let listener = listen(
        client,
        channel,
        host,
        std::sync::Arc::downgrade(&revisions.inner),
    );
    tokio::spawn(async move {
        tokio::select! {
            () = listener => {}
            () = stop.cancelled() => {}
        }
    });
    Ok(())
}

/// Publishes bumps until the revisions are dropped.
async fn publish(
    mut conn: redis::aio::ConnectionManager,
    channel: String,
    host: String,
    mut bumps: mpsc::Receiver<String>,
) {
    let mut users = Vec::with_capacity(MAX_BATCH);
    while bumps.recv_many(&mut users, MAX_BATCH).await > 0 {
        users.sort_unstable();
        users.dedup();
        let message = format!("{host}\n{}", users.join("\n"));
        users.clear();
        let sent = tokio::time::timeout(
            Duration::from_secs(1),
            redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(message)
                .query_async::<i64>(&mut conn),
        )
        .await;
        if !matches!(sent, Ok(Ok(_))) {
            // Other hosts' caches bound how long they trust an entry.
            tracing::warn!(channel, "revisions: a bump was not published to Redis");
        }
    }
}

/// Bumps what other hosts publish; resubscribes after a lost connection.
async fn listen(client: redis::Client, channel: String, host: String, inner: Weak<Inner>) {
    let revisions = |inner: &Weak<Inner>| inner.upgrade().map(|inner| Revisions { inner });
    loop {
        match subscribe(&client, &channel).await {
            Ok(pubsub) => {
                let Some(r) = revisions(&inner) else { return };
                r.new_epoch(true);
                drop(r);
                let mut messages = pubsub.into_on_message();
                while let Some(msg) = messages.next().await {
                    let Some(r) = revisions(&inner) else { return };
                    let Ok(payload) = msg.get_payload::<String>() else {
                        continue;
                    };
                    let mut lines = payload.lines();
                    if lines.next() == Some(host.as_str()) {
                        continue;
                    }
                    for user in lines {
                        r.bump_here(user);
                    }
                }
                tracing::warn!(
                    channel,
                    "revisions: the Redis subscription ended; resubscribing"
                );
            }
            Err(e) => tracing::warn!(channel, error = %e, "revisions: cannot subscribe in Redis"),
        }
        match revisions(&inner) {
            Some(r) => r.new_epoch(false),
            None => return,
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A client of the Redis at `url` and a connection manager (which
/// reconnects by itself); five seconds to connect.
pub(crate) async fn connect(
    url: &str,
) -> anyhow::Result<(redis::Client, redis::aio::ConnectionManager)> {
    let client = redis::Client::open(url)?;
    let conn = tokio::time::timeout(Duration::from_secs(5), client.get_connection_manager())
        .await
        .map_err(|_| anyhow::anyhow!("connecting to Redis timed out"))??;
    Ok((client, conn))
}

/// A Redis subscription to `channel` (five seconds to connect).
pub(crate) async fn subscribe(
    client: &redis::Client,
    channel: &str,
) -> anyhow::Result<redis::aio::PubSub> {
    let mut pubsub = tokio::time::timeout(Duration::from_secs(5), client.get_async_pubsub())
        .await
        .map_err(|_| anyhow::anyhow!("timed out"))??;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}
