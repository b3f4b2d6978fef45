//! `invokeai`: drives an InvokeAI server (6.x) through its session-queue
//! HTTP API, as its OpenAPI document describes it:
//!
//! 1. `GET /api/v2/models/?model_name=…&model_type=main` finds the model's
//!    identifier (key, hash, base);
//! 2. input images go up with `POST /api/v1/images/upload`;
//! 3. a graph (loader → prompts → noise → denoise → decode, or `img_scale`
//!    for upscaling) is enqueued with `POST /api/v1/queue/default/enqueue_batch`,
//!    one queue item per image of the batch (seeds from a batch datum);
//! 4. each item is followed on its socket.io feed (`events`: step
//!    progress, the output node's image, the item's status), opened before
//!    the enqueue, and with `GET /api/v1/queue/default/i/{item_id}` when
//!    the feed is silent (without a feed: polled, progress in executed
//!    nodes of the session);
//! 5. the output node's image comes from `GET /api/v1/images/i/{name}/full`
//!    as soon as the feed names it.
//!
//! A stopped job cancels its items (`PUT …/i/{item_id}/cancel`).

use std::time::Duration;

use image::RgbaImage;
use serde_json::{Value, json};

mod events;
mod graph;
pub use graph::sampler_of;

use events::Feed;

use graph::{Adapters, ControlNet, Graph, Latents, OUTPUT, denoise_graph};

use super::gpu_server::{GpuServer, gpu_server_backend, unavailable};
use super::{Generation, InferenceError, Operation, Progress, ProgressSink};
use crate::models::ModelCatalogue;

pub const NAME: &str = "invokeai";
const QUEUE: &str = "default";
const POLL: Duration = Duration::from_millis(200);
/// How long a server whose socket.io feed could not be opened is followed
/// by polling alone before the feed is tried again.
const FEED_RETRY: Duration = Duration::from_secs(60);
/// How often an item followed on a busy feed is read all the same.
const READ_ANYWAY: Duration = Duration::from_secs(2);

/// A model as graphs name it: InvokeAI's key, hash, name, base, type.
fn identifier(m: &Value) -> Value {
    json!({ "key": m["key"], "hash": m["hash"], "name": m["name"],
            "base": m["base"], "type": m["type"] })
}

/// `img` at `w`×`h` (Lanczos), or as it is when it has that size.
fn sized(img: &RgbaImage, w: u32, h: u32) -> std::borrow::Cow<'_, RgbaImage> {
    if img.dimensions() == (w, h) {
        std::borrow::Cow::Borrowed(img)
    } else {
        std::borrow::Cow::Owned(image::imageops::resize(
            img,
            w,
            h,
            image::imageops::FilterType::Lanczos3,
        ))
    }
}

/// Our masks repaint where they are white, InvokeAI's where black: the
/// mask inverted, opaque.
fn repaint_black(mask: &RgbaImage) -> RgbaImage {
    RgbaImage::from_fn(mask.width(), mask.height(), |x, y| {
        let p = mask.get_pixel(x, y);
        image::Rgba([255 - p[0], 255 - p[1], 255 - p[2], 255])
    })
}

/// The name of the image a completed queue item's output node saved.
/// Results are keyed by execution-graph node ids; the output node is
/// prepared from the graph node `output`.
fn output_image(item: &Value) -> Option<String> {
    let results = item["session"]["results"].as_object()?;
    let prepared = item["session"]["source_prepared_mapping"][OUTPUT]
        .as_array()
        .cloned()
        .unwrap_or_default();
    prepared
        .iter()
        .filter_map(Value::as_str)
        .find_map(|k| results.get(k))
        .or_else(|| results.get(OUTPUT))
        .and_then(|r| r["image"]["image_name"].as_str())
        .map(str::to_owned)
}

/// Cancels queue items (`PUT …/cancel` on each url) when dropped, unless
/// disarmed; in a task of its own, as a drop cannot wait.
struct CancelOnDrop {
    http: reqwest::Client,
    urls: Vec<String>,
}

impl CancelOnDrop {
    fn disarm(mut self) {
        self.urls.clear();
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let urls = std::mem::take(&mut self.urls);
        if urls.is_empty() {
            return;
        }
        let http = self.http.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                for url in urls {
                    let _ = http.put(url).send().await;
                }
            });
        }
    }
}

pub struct InvokeAi {
    server: GpuServer,
    /// The identifier of each catalogue model the last discovery matched
    /// (by name or hash), so a job looks none up.
    known: std::sync::Mutex<std::collections::HashMap<String, Value>>,
    /// The socket.io feed, kept open from job to job (opened again when
    /// it closed), and when opening it last failed.
    feed: tokio::sync::Mutex<(Option<std::sync::Arc<Feed>>, Option<std::time::Instant>)>,
}

impl InvokeAi {
    pub fn new(base: &str) -> anyhow::Result<Self> {
        Ok(Self {
            server: GpuServer::new(base)?,
            known: Default::default(),
            feed: Default::default(),
        })
    }

    /// The catalogue's models this server has (main models, LoRAs,
    /// ControlNets): `GET /api/v2/models/`, matched by name or by hash
    /// (InvokeAI prefixes its hashes with the algorithm, `blake3:…`).
    async fn models_of(&self, catalogue: &ModelCatalogue) -> Result<Vec<String>, InferenceError> {
        let list = self
            .json(self.server.http.get(self.server.url("/api/v2/models/")))
            .await?;
        let listed: Vec<&Value> = list["models"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        let text = |m: &Value, k: &str| m[k].as_str().unwrap_or_default().to_owned();
        let find = |m: &crate::models::Model| {
            listed.iter().copied().find(|l| {
                text(l, "name") == m.name
                    || (!m.hash.is_empty()
                        && text(l, "hash")
                            .rsplit(':')
                            .next()
                            .is_some_and(|h| h.starts_with(&m.hash)))
            })
        };
        let matched = GpuServer::matched(catalogue, |m| find(m).is_some());
        let known = catalogue
            .all()
            .iter()
            .filter_map(|m| Some((m.name.clone(), identifier(find(m)?))))
            .collect();
        *self.known.lock().expect("known models lock") = known;
        Ok(matched)
    }

    async fn json(&self, req: reqwest::RequestBuilder) -> Result<Value, InferenceError> {
        let resp = req.send().await.map_err(unavailable)?;
        let status = resp.status();
        let body = resp.text().await.map_err(unavailable)?;
        if !status.is_success() {
            return Err(InferenceError::Failed(format!(
                "InvokeAI answered {status}: {body}"
            )));
        }
        serde_json::from_str(&body).map_err(|e| InferenceError::Failed(format!("bad JSON: {e}")))
    }

    /// The identifier (key, hash, name, base, type) of the model `name` of
    /// InvokeAI's type `kind` (`main`, `lora`, `controlnet`): as the last
    /// discovery matched it, else looked up by name.
    async fn model(&self, name: &str, kind: &str) -> Result<Value, InferenceError> {
        let known = self
            .known
            .lock()
            .expect("known models lock")
            .get(name)
            .cloned();
        if let Some(id) = known.filter(|id| id["type"] == kind) {
            return Ok(id);
        }
        let list = self
            .json(
                self.server
                    .http
                    .get(self.server.url("/api/v2/models/"))
                    .query(&[("model_name", name), ("model_type", kind)]),
            )
            .await?;
        let m = list["models"]
            .as_array()
            .and_then(|a| a.iter().find(|m| m["name"] == name))
            .ok_or_else(|| InferenceError::UnknownModel(name.to_owned()))?;
        Ok(identifier(m))
    }

    /// The open socket.io feed, opened (again) when there is none.
    /// A server without one is asked again after a minute, not per job.
    async fn feed(&self) -> Option<std::sync::Arc<Feed>> {
        let mut slot = self.feed.lock().await;
        let (feed, failed) = &mut *slot;
        if let Some(open) = feed.as_ref().filter(|f| f.is_open()) {
            return Some(open.clone());
        }
        if failed.is_some_and(|at| at.elapsed() < FEED_RETRY) {
            return None;
        }
        *feed = Feed::open(self.server.base(), QUEUE, OUTPUT)
            .await
            .map(std::sync::Arc::new);
        *failed = feed.is_none().then(std::time::Instant::now);
        feed.clone()
    }

    /// The generation's LoRAs as InvokeAI identifiers, in order.
    async fn adapters<'a>(&self, g: &Generation) -> Result<Adapters<'a>, InferenceError> {
        let mut loras = Vec::with_capacity(g.loras.len());
        for l in &g.loras {
            loras.push((self.model(&l.name, "lora").await?, l.weight));
        }
        Ok(Adapters {
            loras,
            control: None,
        })
    }

    async fn upload(&self, img: &RgbaImage) -> Result<String, InferenceError> {
        let part = GpuServer::png_part(img, "input.png".into())?;
        let form = reqwest::multipart::Form::new().part("file", part);
        let dto = self
            .json(
                self.server
                    .http
                    .post(self.server.url("/api/v1/images/upload"))
                    .query(&[("image_category", "general"), ("is_intermediate", "true")])
                    .multipart(form),
            )
            .await?;
        dto["image_name"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| InferenceError::Failed("upload answered no image_name".into()))
    }

    /// Enqueues `graph` once per seed (or once when `seeds` is empty) and
    /// returns the queue item ids and the batch's id (if InvokeAI names it).
    async fn enqueue(
        &self,
        graph: Value,
        seeds: &[u64],
    ) -> Result<(Vec<i64>, Option<String>), InferenceError> {
        let mut batch = json!({ "graph": graph, "runs": 1, "origin": "pingvas" });
        if !seeds.is_empty() {
            batch["data"] = json!([[{
                "node_path": "noise", "field_name": "seed",
                "items": seeds.iter().map(|s| s % (1 << 32)).collect::<Vec<_>>(),
            }]]);
        }
        let result = self
            .json(
                self.server
                    .http
                    .post(
                        self.server
                            .url(&format!("/api/v1/queue/{QUEUE}/enqueue_batch")),
                    )
                    .json(&json!({ "batch": batch, "prepend": false })),
            )
            .await?;
        let ids: Vec<i64> = result["item_ids"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default();
        if ids.is_empty() {
            return Err(InferenceError::Failed(
                "enqueue_batch enqueued nothing".into(),
            ));
        }
        let batch = result["batch"]["batch_id"].as_str().map(str::to_owned);
        Ok((ids, batch))
    }

    fn cancel_url(&self, id: i64) -> String {
        self.server
            .url(&format!("/api/v1/queue/{QUEUE}/i/{id}/cancel"))
    }

    /// Follows the items to the end, reporting progress, and fetches each
    /// one's output image. With a socket.io `feed`, progress is the
    /// denoise's steps (`steps` an item), the output image is fetched as
    /// soon as its node completes (while InvokeAI finishes the item) and
    /// the item's end is heard, not read; its queue item is read first and
    /// whenever the feed is silent for a poll's time (the truth, and the
    /// fallback). Without one, the queue item is polled and progress is
    /// the session's executed nodes.
    async fn follow(
        &self,
        (ids, batch): (&[i64], Option<&str>),
        feed: Option<&Feed>,
        steps: u32,
        progress: &ProgressSink,
    ) -> Result<Vec<RgbaImage>, InferenceError> {
        let mut images = Vec::with_capacity(ids.len());
        let mut last = None;
        for (i, &id) in ids.iter().enumerate() {
            let mut image = None;
            let mut read_item = true;
            let mut read_at = std::time::Instant::now();
            loop {
                let heard = feed.map_or(0, Feed::heard);
                let news = feed.map(|f| f.news(id, batch)).unwrap_or_default();
                if let (None, Some(name)) = (&image, &news.output) {
                    image = Some(self.download(name).await?);
                }
                let ended = |s: &str| ["completed", "failed", "canceled"].contains(&s);
                // Read when the feed is silent, and every READ_ANYWAY
                // however busy it is with other items (a missed end).
                let due = read_item || read_at.elapsed() >= READ_ANYWAY;
                let item = match &news.status {
                    Some(s) if ended(s) => None,
                    _ if due || feed.is_none() => {
                        read_at = std::time::Instant::now();
                        Some(self.queue_item(id).await?)
                    }
                    _ => None,
                };
                let status = item
                    .as_ref()
                    .and_then(|i| i["status"].as_str())
                    .or(news.status.as_deref())
                    .unwrap_or("pending")
                    .to_owned();
                let (per_item, at) = match (feed, &item) {
                    (Some(_), _) => {
                        let per_item = steps.max(1);
                        let pct = match status.as_str() {
                            "completed" => 1.0,
                            _ => news.percentage.unwrap_or(0.0),
                        };
                        (per_item, (pct * per_item as f32).round() as u32)
                    }
                    (None, item) => {
                        let session = item.as_ref().map_or(&Value::Null, |i| &i["session"]);
                        let total =
                            session["graph"]["nodes"].as_object().map_or(1, |n| n.len()) as u32;
                        let ran = session["executed"].as_array().map_or(0, |e| e.len()) as u32;
                        (total, ran)
                    }
                };
                let now = Progress {
                    step: i as u32 * per_item + at.min(per_item),
                    total_steps: per_item * ids.len() as u32,
                };
                if last != Some(now) {
                    last = Some(now);
                    if !progress(now) {
                        // The caller's guard cancels the items left.
                        return Err(InferenceError::Cancelled);
                    }
                }
                match status.as_str() {
                    "completed" => break,
                    "failed" => {
                        let error = match &item {
                            Some(item) => format!(
                                "{}: {}",
                                item["error_type"].as_str().unwrap_or("error"),
                                item["error_message"].as_str().unwrap_or("")
                            ),
                            None => news.error.unwrap_or_else(|| "error".into()),
                        };
                        return Err(InferenceError::Failed(error));
                    }
                    "canceled" => {
                        return Err(InferenceError::Failed("canceled on InvokeAI".into()));
                    }
                    _ => {
                        read_item = match feed {
                            Some(feed) => !feed.changed(heard, POLL).await,
                            None => {
                                tokio::time::sleep(POLL).await;
                                true
                            }
                        }
                    }
                }
            }
            let image = match image {
                Some(image) => image,
                None => {
                    // Not heard from the feed: the completed item names it.
                    let item = self.queue_item(id).await?;
                    let name = output_image(&item).ok_or_else(|| {
                        InferenceError::Failed("no output image in the session".into())
                    })?;
                    self.download(&name).await?
                }
            };
            images.push(image);
        }
        Ok(images)
    }

    async fn queue_item(&self, id: i64) -> Result<Value, InferenceError> {
        let url = self.server.url(&format!("/api/v1/queue/{QUEUE}/i/{id}"));
        self.json(self.server.http.get(url)).await
    }

    async fn download(&self, name: &str) -> Result<RgbaImage, InferenceError> {
        let full = self
            .server
            .http
            .get(self.server.url(&format!("/api/v1/images/i/{name}/full")));
        self.server.fetch_image(full).await
    }

    async fn run_op(
        &self,
        op: Operation,
        progress: ProgressSink,
    ) -> Result<Vec<RgbaImage>, InferenceError> {
        let seeds = |g: &Generation| {
            (0..g.batch_size.max(1))
                .map(|i| g.seed + u64::from(i))
                .collect::<Vec<_>>()
        };
        let mut restore = None;
        // The denoise's steps an item (img2img runs fewer: InvokeAI's
        // percentage counts those it runs, so the share is the same).
        let steps = match &op {
            Operation::TextToImage { generation, .. }
            | Operation::ImageToImage { generation, .. }
            | Operation::Inpaint { generation, .. } => generation.steps,
            Operation::Upscale { .. } => 1,
        };
        let (graph, seeds) = match &op {
            Operation::TextToImage {
                generation,
                control,
            } => {
                let id = self.model(&generation.model, "main").await?;
                let mut adapters = self.adapters(generation).await?;
                let guide;
                if let Some(c) = control {
                    guide = self.upload(&c.image).await?;
                    adapters.control = Some(ControlNet {
                        model: self.model(&c.model, "controlnet").await?,
                        image: &guide,
                        weight: c.weight,
                    });
                }
                let graph = denoise_graph(
                    generation,
                    &id,
                    Latents {
                        source: None,
                        mask: None,
                        strength: 1.0,
                    },
                    &adapters,
                );
                (graph, seeds(generation))
            }
            Operation::ImageToImage {
                generation,
                source,
                strength,
            } => {
                let id = self.model(&generation.model, "main").await?;
                let adapters = self.adapters(generation).await?;
                // InvokeAI's noise and the source's latents must agree.
                let source = sized(source, generation.width, generation.height);
                let name = self.upload(&source).await?;
                let graph = denoise_graph(
                    generation,
                    &id,
                    Latents {
                        source: Some(&name),
                        mask: None,
                        strength: *strength,
                    },
                    &adapters,
                );
                (graph, seeds(generation))
            }
            Operation::Inpaint {
                generation,
                source,
                mask,
            } => {
                // At the source's size, in whole latents (8 pixels); the
                // result goes back to the source's size.
                let (w, h) = (source.width() / 8 * 8, source.height() / 8 * 8);
                restore = Some(source.dimensions()).filter(|&d| d != (w, h));
                let generation = &Generation {
                    width: w,
                    height: h,
                    ..generation.clone()
                };
                let id = self.model(&generation.model, "main").await?;
                let adapters = self.adapters(generation).await?;
                let (source, mask) = (sized(source, w, h), repaint_black(&sized(mask, w, h)));
                let (src, mask) = tokio::try_join!(self.upload(&source), self.upload(&mask))?;
                let graph = denoise_graph(
                    generation,
                    &id,
                    Latents {
                        source: Some(&src),
                        mask: Some(&mask),
                        strength: 1.0,
                    },
                    &adapters,
                );
                (graph, seeds(generation))
            }
            Operation::Upscale { source, scale } => {
                let name = self.upload(source).await?;
                let mut graph = Graph::default();
                graph.node(
                    OUTPUT,
                    "img_scale",
                    json!({ "image": { "image_name": name }, "scale_factor": scale,
                            "resample_mode": "lanczos", "is_intermediate": false }),
                );
                (graph, vec![])
            }
        };
        // Subscribed before the enqueue, so no step goes unheard.
        let feed = self.feed().await;
        let (ids, batch) = self.enqueue(graph.build(), &seeds).await?;
        // Items left when the job stops (its future dropped) or fails
        // half-way would keep InvokeAI busy unpaid: cancelled unless all end.
        let leftovers = CancelOnDrop {
            http: self.server.http.clone(),
            urls: ids.iter().map(|id| self.cancel_url(*id)).collect(),
        };
        let images = self
            .follow((&ids, batch.as_deref()), feed.as_deref(), steps, &progress)
            .await;
        if let Some(feed) = &feed {
            feed.forget(&ids);
        }
        let images = images?;
        leftovers.disarm();
        Ok(match restore {
            Some((w, h)) => images.iter().map(|i| sized(i, w, h).into_owned()).collect(),
            None => images,
        })
    }
}

gpu_server_backend!(InvokeAi, NAME);

#[cfg(test)]
mod tests {
    use super::graph::tests::{generation, latents_cases};
    use super::*;

    /// InvokeAI validates a batch's graph (node types, fields, edges) when
    /// it is enqueued; the items then fail for want of weights, which is
    /// fine here. `INVOKEAI_URL=http://127.0.0.1:9090 cargo test -p
    /// pingvas-host --lib -- --ignored invokeai_accepts`.
    #[tokio::test]
    #[ignore = "needs a running InvokeAI server at INVOKEAI_URL"]
    async fn invokeai_accepts_our_graphs() {
        let url = std::env::var("INVOKEAI_URL").expect("INVOKEAI_URL");
        let backend = InvokeAi::new(&url).unwrap();
        for base in ["sd-1", "sdxl"] {
            let id = json!({ "key": "missing", "hash": "blake3:missing", "name": "missing",
                             "base": base, "type": "main" });
            for latents in latents_cases() {
                let graph =
                    denoise_graph(&generation("missing"), &id, latents, &Adapters::default())
                        .build();
                let ids = backend.enqueue(graph, &[7, 8]).await;
                let (ids, _) =
                    ids.unwrap_or_else(|e| panic!("{base}: InvokeAI refused the graph: {e}"));
                assert_eq!(ids.len(), 2);
                for id in ids {
                    let _ = backend.server.http.put(backend.cancel_url(id)).send().await;
                }
            }
        }
    }
}
