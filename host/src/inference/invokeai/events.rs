//! InvokeAI's socket.io feed: Engine.IO 4 frames over a WebSocket at
//! `/ws/socket.io/` (`0` open, `40` connect, `42` event, `2`/`3`
//! ping/pong). What it reads of each queue item:
//! - step progress: InvokeAI 6.14 tells a denoise's progress only as
//!   `invocation_progress` events whose `percentage` (0–1) is set —
//!   `message: "Denoising"`, one per step; other progress events carry
//!   none;
//! - the output image: the `invocation_complete` of the graph's output
//!   node (`invocation_source_id`) names it in `result.image`, a few ms
//!   before the item is marked completed;
//! - its status (`queue_item_status_changed`: `status`, `error_type`,
//!   `error_message`).
//!
//! (Its long-polling transport fails under gzip, so the feed opens the
//! WebSocket transport directly.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// How long connecting and subscribing may take before the backend falls
/// back to counting executed nodes.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// Items whose news the feed keeps at most (the newest ids: InvokeAI
/// numbers items in order); news of other clients' items goes too.
const KEPT_ITEMS: usize = 256;

/// What the feed last heard of one queue item.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct ItemNews {
    /// How far its denoise is (0–1).
    pub percentage: Option<f32>,
    /// The image its output node saved.
    pub output: Option<String>,
    /// Its last status (`in_progress`, `completed`, `failed`, `canceled` …).
    pub status: Option<String>,
    /// `error_type: error_message` of a failed item.
    pub error: Option<String>,
    /// The batch the item is of (`batch_id`): news of an item of another
    /// batch under the same id (InvokeAI's ids start again with a fresh
    /// database) is not the item's.
    pub batch: Option<String>,
}

/// The news of queue items as the feed last told it, and a wake-up for
/// each (so a follower need not wait for its next poll).
pub(super) struct Feed {
    items: Arc<Mutex<HashMap<i64, ItemNews>>>,
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
    /// Connects to the server at `base` and subscribes to `queue` (reading
    /// the output images of nodes with the id `output`); `None`
    /// when the server does not answer the socket.io handshake in time.
    pub async fn open(base: &str, queue: &str, output: &'static str) -> Option<Feed> {
        match tokio::time::timeout(OPEN_TIMEOUT, Self::connect(base, queue, output)).await {
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

    /// Connects, subscribes to `queue` and reads news of the items of
    /// graphs whose output node is `output`.
    async fn connect(base: &str, queue: &str, output: &'static str) -> Result<Feed, String> {
        let url = format!(
            "{}/ws/socket.io/?EIO=4&transport=websocket",
            base.trim_end_matches('/').replacen("http", "ws", 1)
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .map_err(|e| e.to_string())?;
        let open = handshake_frame(&mut ws).await?;
        let Some(params) = open.strip_prefix('0') else {
            return Err("no Engine.IO open packet".into());
        };
        let silent = silence_limit(params);
        send(&mut ws, "40").await?;
        while !handshake_frame(&mut ws).await?.starts_with("40") {}
        let subscribe = serde_json::json!(["subscribe_queue", { "queue_id": queue }]);
        send(&mut ws, &format!("42{subscribe}")).await?;
        let items = Arc::new(Mutex::new(HashMap::new()));
        let changed = Arc::new(tokio::sync::Notify::new());
        let heard = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (seen, wake, count) = (items.clone(), changed.clone(), heard.clone());
        // A socket that hears not even the server's ping for longer than
        // it promised is dead (a half-open connection): the reader ends,
        // the feed counts as closed and is opened again for the next job.
        let reader = tokio::spawn(async move {
            while let Ok(Some(Ok(frame))) = tokio::time::timeout(silent, next_frame(&mut ws)).await
            {
                if frame == "2" {
                    if send(&mut ws, "3").await.is_err() {
                        return;
                    }
                    continue;
                }
                let Some(event) = frame.strip_prefix("42") else {
                    continue;
                };
                let Some((item, news)) = news_of(event, output) else {
                    continue;
                };
                {
                    let mut items = seen.lock().expect("feed lock");
                    news.apply(items.entry(item).or_default());
                    if items.len() > KEPT_ITEMS {
                        let oldest = items.keys().min().copied();
                        oldest.map(|k| items.remove(&k));
                    }
                }
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                wake.notify_waiters();
            }
        });
        Ok(Feed {
            items,
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
        let mut items = self.items.lock().expect("feed lock");
        for id in ids {
            items.remove(id);
        }
    }

    /// How many events of items the feed has heard.
    pub fn heard(&self) -> u64 {
        self.heard.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until the feed has heard more than `since`, at most `limit`;
    /// whether it did.
    pub async fn changed(&self, since: u64, limit: Duration) -> bool {
        let notified = self.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        self.heard() != since || tokio::time::timeout(limit, notified).await.is_ok()
    }

    /// What the feed has heard of item `id` of batch `batch` (any batch
    /// when the enqueue named none).
    pub fn news(&self, id: i64, batch: Option<&str>) -> ItemNews {
        self.items
            .lock()
            .expect("feed lock")
            .get(&id)
            .filter(|n| batch.is_none() || n.batch.as_deref() == batch)
            .cloned()
            .unwrap_or_default()
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

/// How long the server may stay silent before the socket counts as dead:
/// its `pingInterval` plus `pingTimeout` from the open packet (45 s when it
/// names none).
fn silence_limit(open: &str) -> Duration {
    let v: Value = serde_json::from_str(open).unwrap_or_default();
    let ms = |k: &str| v[k].as_u64().unwrap_or(0);
    match ms("pingInterval") + ms("pingTimeout") {
        0 => Duration::from_secs(45),
        total => Duration::from_millis(total.min(600_000)),
    }
}

/// The queue item a socket.io event (`["name", {…}]`) tells of, and what
/// it tells: a denoise step's percentage, the image of the node `output`,
/// or the item's status.
fn news_of(event: &str, output: &str) -> Option<(i64, ItemNews)> {
    let v: Value = serde_json::from_str(event).ok()?;
    let data = &v[1];
    let item = data["item_id"].as_i64()?;
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let news = match v[0].as_str()? {
        "invocation_progress" => ItemNews {
            percentage: Some(data["percentage"].as_f64()? as f32),
            ..ItemNews::default()
        },
        "invocation_complete" if data["invocation_source_id"] == output => ItemNews {
            output: Some(text(&data["result"]["image"]["image_name"])?),
            ..ItemNews::default()
        },
        "queue_item_status_changed" => ItemNews {
            status: Some(text(&data["status"])?),
            error: data["error_type"].as_str().map(|t| {
                format!(
                    "{t}: {}",
                    data["error_message"].as_str().unwrap_or_default()
                )
            }),
            ..ItemNews::default()
        },
        _ => return None,
    };
    let batch = text(&data["batch_id"]);
    Some((item, ItemNews { batch, ..news }))
}

impl ItemNews {
    /// Folds newer news into what was heard.
    fn apply(self, into: &mut ItemNews) {
        into.percentage = self.percentage.or(into.percentage);
        into.output = self.output.or(into.output.take());
        into.batch = self.batch.or(into.batch.take());
        if self.status.is_some() {
            into.status = self.status;
            into.error = self.error;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The percentage a frame tells, if it tells one.
    fn denoised(event: &str) -> Option<(i64, f32)> {
        news_of(event, "output").and_then(|(i, n)| Some((i, n.percentage?)))
    }

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
    fn the_fixture_s_frames_read_as_steps_output_and_status() {
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

        // The fixture's first invocation_complete is its model loader's:
        // an output image only for the node named as the output.
        let complete = &doc["first_of_each"]["invocation_complete"];
        let mut saved = complete.clone();
        saved["invocation_source_id"] = "output".into();
        saved["result"] = serde_json::json!({ "type": "image_output", "width": 64, "height": 64,
                                              "image": { "image_name": "a.png" } });
        let framed = |name: &str, data: &Value| serde_json::json!([name, data]).to_string();
        assert_eq!(
            news_of(&framed("invocation_complete", complete), "output"),
            None
        );
        let mut news = ItemNews::default();
        let (item, heard) = news_of(&framed("invocation_complete", &saved), "output").unwrap();
        assert_eq!(item, 2);
        heard.apply(&mut news);
        let mut status = doc["first_of_each"]["queue_item_status_changed"].clone();
        let (_, heard) = news_of(&framed("queue_item_status_changed", &status), "output").unwrap();
        heard.apply(&mut news);
        assert_eq!(news.status.as_deref(), Some("in_progress"));
        assert_eq!(
            news.output.as_deref(),
            Some("a.png"),
            "kept past the status"
        );
        status["status"] = "failed".into();
        status["error_type"] = "OutOfMemoryError".into();
        status["error_message"] = "CUDA out of memory".into();
        let (_, heard) = news_of(&framed("queue_item_status_changed", &status), "output").unwrap();
        heard.apply(&mut news);
        assert_eq!(
            news.error.as_deref(),
            Some("OutOfMemoryError: CUDA out of memory")
        );
        assert_eq!(
            news.batch.as_deref(),
            Some("56ff0bdd-3fff-435b-81fb-45cf780d2290")
        );

        // The fixture's open packet: 25 s between pings, 20 s to answer.
        let open = doc["wire"]["handshake"][0]["frame"].as_str().unwrap();
        assert_eq!(
            silence_limit(open.strip_prefix('0').unwrap()),
            Duration::from_secs(45)
        );
        assert_eq!(
            silence_limit(r#"{"pingInterval":1000,"pingTimeout":500}"#),
            Duration::from_millis(1500)
        );
    }
}
