//! InvokeAI's socket.io feed, read for step progress: Engine.IO 4 frames
//! over a WebSocket at `/ws/socket.io/` (`0` open, `40` connect, `42`
//! event, `2`/`3` ping/pong). InvokeAI 6.14 tells a denoise's progress only
//! as `invocation_progress` events whose `percentage` (0–1) is set —
//! `message: "Denoising"`, one per step, `item_id` naming the queue item;
//! other progress events carry no percentage. (Its long-polling transport
//! fails under gzip, so the feed opens the WebSocket transport directly.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// How long connecting and subscribing may take before the backend falls
/// back to counting executed nodes.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// The denoise progress of queue items, as the feed last told it, and a
/// wake-up for each step or status change (so a follower need not wait
/// for its next poll).
pub(super) struct Feed {
    progress: Arc<Mutex<HashMap<i64, f32>>>,
    changed: Arc<tokio::sync::Notify>,
    /// Counts what the feed heard: a follower that saw count `n` before
    /// its poll waits only if nothing came since.
    heard: Arc<std::sync::atomic::AtomicU64>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Feed {
    /// Connects to the server at `base` and subscribes to `queue`; `None`
    /// when the server does not answer the socket.io handshake in time.
    pub async fn open(base: &str, queue: &str) -> Option<Feed> {
        match tokio::time::timeout(OPEN_TIMEOUT, Self::connect(base, queue)).await {
            Ok(Ok(feed)) => Some(feed),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "InvokeAI's socket.io feed: progress counts nodes");
                None
            }
            Err(_) => {
                tracing::warn!("InvokeAI's socket.io feed timed out: progress counts nodes");
                None
            }
        }
    }

    async fn connect(base: &str, queue: &str) -> Result<Feed, String> {
        let url = format!(
            "{}/ws/socket.io/?EIO=4&transport=websocket",
            base.trim_end_matches('/').replacen("http", "ws", 1)
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .map_err(|e| e.to_string())?;
        if !handshake_frame(&mut ws).await?.starts_with('0') {
            return Err("no Engine.IO open packet".into());
        }
        send(&mut ws, "40").await?;
        while !handshake_frame(&mut ws).await?.starts_with("40") {}
        let subscribe = serde_json::json!(["subscribe_queue", { "queue_id": queue }]);
        send(&mut ws, &format!("42{subscribe}")).await?;
        let progress = Arc::new(Mutex::new(HashMap::new()));
        let changed = Arc::new(tokio::sync::Notify::new());
        let heard = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (seen, wake, count) = (progress.clone(), changed.clone(), heard.clone());
        let tell = move || {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            wake.notify_waiters();
        };
        let reader = tokio::spawn(async move {
            while let Some(Ok(frame)) = next_frame(&mut ws).await {
                if frame == "2" {
                    if send(&mut ws, "3").await.is_err() {
                        return;
                    }
                    continue;
                }
                let Some(event) = frame.strip_prefix("42") else {
                    continue;
                };
                if let Some((item, pct)) = denoised(event) {
                    seen.lock().expect("progress lock").insert(item, pct);
                    tell();
                } else if event.starts_with(r#"["queue_item_status_changed""#) {
                    tell();
                }
            }
        });
        Ok(Feed {
            progress,
            changed,
            heard,
            reader,
        })
    }

    /// Whether the feed still reads its socket.
    pub fn is_open(&self) -> bool {
        !self.reader.is_finished()
    }

    /// Forgets what it heard of items that ended.
    pub fn forget(&self, ids: &[i64]) {
        let mut progress = self.progress.lock().expect("progress lock");
        for id in ids {
            progress.remove(id);
        }
    }

    /// How many steps and status changes the feed has heard.
    pub fn heard(&self) -> u64 {
        self.heard.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until the feed has heard more than `since`, at most `limit`.
    pub async fn changed(&self, since: u64, limit: Duration) {
        let notified = self.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.heard() == since {
            let _ = tokio::time::timeout(limit, notified).await;
        }
    }

    /// How far item `id`'s denoise is (0–1), if the feed told it.
    pub fn percentage(&self, id: i64) -> Option<f32> {
        self.progress
            .lock()
            .expect("progress lock")
            .get(&id)
            .copied()
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text frame; `None` when the socket ended.
async fn next_frame(ws: &mut Socket) -> Option<Result<String, String>> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(t)) => return Some(Ok(t.to_string())),
            Ok(Message::Close(_)) => return None,
            Ok(_) => continue,
            Err(e) => return Some(Err(e.to_string())),
        }
    }
}

async fn handshake_frame(ws: &mut Socket) -> Result<String, String> {
    next_frame(ws)
        .await
        .ok_or_else(|| "closed during the handshake".to_owned())?
}

async fn send(ws: &mut Socket, text: &str) -> Result<(), String> {
    ws.send(Message::text(text))
        .await
        .map_err(|e| e.to_string())
}

/// The queue item and percentage of a socket.io event that tells a step
/// of a denoise (`["invocation_progress", {item_id, percentage, …}]`).
fn denoised(event: &str) -> Option<(i64, f32)> {
    let v: Value = serde_json::from_str(event).ok()?;
    if v[0] != "invocation_progress" {
        return None;
    }
    let data = &v[1];
    Some((
        data["item_id"].as_i64()?,
        data["percentage"].as_f64()? as f32,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_progress_with_a_percentage_counts() {
        // Frames as InvokeAI 6.14.2 sent them (tests/fixtures/invokeai).
        let denoising = r#"["invocation_progress",{"queue_id":"default","item_id":2,"invocation_source_id":"denoise","message":"Denoising","percentage":0.25,"image":null}]"#;
        let loading = r#"["invocation_progress",{"queue_id":"default","item_id":2,"message":"Loading model rig-sd1 (unet)","percentage":null}]"#;
        let started = r#"["invocation_started",{"queue_id":"default","item_id":2}]"#;
        assert_eq!(denoised(denoising), Some((2, 0.25)));
        assert_eq!(denoised(loading), None);
        assert_eq!(denoised(started), None);
        assert_eq!(denoised("not json"), None);
    }

    #[test]
    fn the_fixture_s_frames_read_as_steps() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/invokeai/events-progress.json"
        );
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let frame = doc["wire"]["examples"][0]["frame"].as_str().unwrap();
        assert_eq!(frame.strip_prefix("42").and_then(denoised), Some((2, 0.0)));
        let steps: Vec<f32> = doc["invocation_progress"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| {
                let framed = serde_json::json!(["invocation_progress", e]).to_string();
                denoised(&framed).map(|(_, p)| p)
            })
            .collect();
        assert_eq!(steps, [0.0, 0.25, 0.5, 0.75, 1.0], "4 steps, 5 events");
    }
}
