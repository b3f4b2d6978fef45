//! Small local servers that speak the documented HTTP shapes of the GPU
//! servers the `comfyui` and `invokeai` backends drive, and remember what
//! they were asked (they "render" flat PNGs of the requested size); the
//! payment providers' APIs are in `billing`, the OAuth providers in
//! `oauth`, a mail server in `smtp`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Multipart, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};
use tokio::sync::mpsc;

pub mod billing;
pub mod comfy_info;
pub mod oauth;
pub mod smtp;
pub use billing::{FakeLemonSqueezy, FakeStripe, hmac_hex, stripe_signature};
pub use oauth::FakeOAuth;
pub use smtp::{ReceivedMail, SmtpSink};

fn png(w: u32, h: u32, shade: u8) -> Vec<u8> {
    let img = image::RgbaImage::from_pixel(w.max(1), h.max(1), image::Rgba([shade, 90, 160, 255]));
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn dims(bytes: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory(bytes).expect("uploaded image");
    (img.width(), img.height())
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// Bytes of a file the fake stores.
async fn read_upload(mut form: Multipart, field: &str) -> (String, Vec<u8>) {
    while let Some(part) = form.next_field().await.unwrap() {
        if part.name() == Some(field) {
            let name = part.file_name().unwrap_or("upload.png").to_owned();
            return (name, part.bytes().await.unwrap().to_vec());
        }
    }
    panic!("no {field} part in the upload");
}

// ---- ComfyUI -------------------------------------------------------------

#[derive(Default)]
pub struct ComfyState {
    /// Every `POST /prompt` body.
    pub prompts: Vec<Value>,
    pub uploads: Vec<String>,
    files: HashMap<String, Vec<u8>>,
    history: HashMap<String, Value>,
    sockets: HashMap<String, mpsc::UnboundedSender<String>>,
}

#[derive(Clone, Default)]
pub struct FakeComfy {
    pub state: Arc<Mutex<ComfyState>>,
}

impl FakeComfy {
    /// Starts the fake; returns it and its base URL.
    pub async fn start() -> (Self, String) {
        let fake = FakeComfy::default();
        let app = Router::new()
            .route("/ws", get(comfy_ws))
            .route("/prompt", post(comfy_prompt))
            .route("/history/{id}", get(comfy_history))
            .route("/view", get(comfy_view))
            .route("/upload/image", post(comfy_upload))
            .route("/interrupt", post(|| async { "" }))
            .route(
                "/models/checkpoints",
                get(|| async {
                    axum::Json(json!([
                        "stable-diffusion-1.5.safetensors",
                        "stable-diffusion-xl.safetensors"
                    ]))
                }),
            )
            .route(
                "/models/loras",
                get(|| async { axum::Json(json!(["add_detail.safetensors"])) }),
            )
            .route(
                "/models/controlnet",
                get(|| async { axum::Json(json!(["canny.safetensors"])) }),
            )
            .with_state(fake.clone());
        (fake.clone(), serve(app).await)
    }
}

async fn comfy_ws(
    State(fake): State<FakeComfy>,
    Query(q): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    let client = q.get("clientId").cloned().unwrap_or_default();
    ws.on_upgrade(move |mut socket: WebSocket| async move {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        fake.state
            .lock()
            .unwrap()
            .sockets
            .insert(client.clone(), tx);
        let _ = socket
            .send(Message::Text(
                json!({ "type": "status", "data": { "sid": client } })
                    .to_string()
                    .into(),
            ))
            .await;
        while let Some(text) = rx.recv().await {
            if socket.send(Message::Text(text.into())).await.is_err() {
                return;
            }
        }
    })
}

async fn comfy_prompt(
    State(fake): State<FakeComfy>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let prompt_id = uuid::Uuid::now_v7().to_string();
    let graph = body["prompt"].clone();
    let client = body["client_id"].as_str().unwrap_or_default().to_owned();
    let mut st = fake.state.lock().unwrap();
    st.prompts.push(body.clone());
    // As ComfyUI validates a prompt before it queues it.
    if let Err(e) = comfy_info::check_prompt(&graph, &st.uploads) {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            axum::Json(
                json!({ "error": { "type": "prompt_outputs_failed_validation",
                                          "message": e }, "node_errors": {} }),
            ),
        )
            .into_response();
    }
    // The size of the output: the empty latent's, or the loaded image's
    // (scaled for ImageScaleBy).
    let nodes = graph.as_object().cloned().unwrap_or_default();
    let of = |class: &str| nodes.values().find(|n| n["class_type"] == class).cloned();
    let loaded = of("LoadImage").and_then(|n| {
        st.files
            .get(n["inputs"]["image"].as_str()?)
            .map(|b| dims(b))
    });
    let (w, h, count) = if let Some(l) = of("EmptyLatentImage") {
        let i = &l["inputs"];
        (
            i["width"].as_u64().unwrap() as u32,
            i["height"].as_u64().unwrap() as u32,
            i["batch_size"].as_u64().unwrap_or(1),
        )
    } else if let Some(s) = of("ImageScaleBy") {
        let k = s["inputs"]["scale_by"].as_f64().unwrap();
        let (w, h) = loaded.expect("upscale input");
        ((w as f64 * k) as u32, (h as f64 * k) as u32, 1)
    } else {
        let (w, h) = loaded.expect("an input image");
        (w, h, 1)
    };
    let steps = of("KSampler")
        .and_then(|k| k["inputs"]["steps"].as_u64())
        .unwrap_or(1);
    let mut images = Vec::new();
    for i in 0..count {
        let name = format!("pingvas_{prompt_id}_{i}.png");
        st.files.insert(name.clone(), png(w, h, 40 * i as u8));
        images.push(json!({ "filename": name, "subfolder": "", "type": "output" }));
    }
    st.history.insert(
        prompt_id.clone(),
        json!({ "outputs": { "save": { "images": images } }, "status": { "status_str": "success", "completed": true } }),
    );
    let tx = st.sockets.get(&client).cloned();
    drop(st);
    if let Some(tx) = tx {
        let id = prompt_id.clone();
        tokio::spawn(async move {
            let _ = tx.send(
                json!({ "type": "execution_start", "data": { "prompt_id": id } }).to_string(),
            );
            for v in 1..=steps {
                let _ = tx.send(json!({ "type": "progress", "data": { "value": v, "max": steps, "prompt_id": id, "node": "sampler" } }).to_string());
            }
            let _ = tx.send(
                json!({ "type": "executing", "data": { "node": null, "prompt_id": id } })
                    .to_string(),
            );
        });
    }
    axum::Json(json!({ "prompt_id": prompt_id, "number": 1, "node_errors": {} })).into_response()
}

async fn comfy_history(State(fake): State<FakeComfy>, Path(id): Path<String>) -> Response {
    let st = fake.state.lock().unwrap();
    let mut out = serde_json::Map::new();
    if let Some(h) = st.history.get(&id) {
        out.insert(id, h.clone());
    }
    axum::Json(Value::Object(out)).into_response()
}

async fn comfy_view(
    State(fake): State<FakeComfy>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let st = fake.state.lock().unwrap();
    match q.get("filename").and_then(|f| st.files.get(f)) {
        Some(bytes) => ([("content-type", "image/png")], bytes.clone()).into_response(),
        None => axum::http::StatusCode::NOT_FOUND.into_response(),
    }
}

async fn comfy_upload(State(fake): State<FakeComfy>, form: Multipart) -> Response {
    let (name, bytes) = read_upload(form, "image").await;
    let mut st = fake.state.lock().unwrap();
    st.uploads.push(name.clone());
    st.files.insert(name.clone(), bytes);
    axum::Json(json!({ "name": name, "subfolder": "", "type": "input" })).into_response()
}

// ---- InvokeAI ------------------------------------------------------------

/// A queue item: session graph, seed, times polled, output size.
type Item = (Value, Option<u64>, u32, (u32, u32));

#[derive(Default)]
pub struct InvokeState {
    /// Every `enqueue_batch` body.
    pub batches: Vec<Value>,
    pub uploads: usize,
    /// `GET …/queue/default/i/{id}` reads.
    pub item_reads: usize,
    /// socket.io clients subscribed to the queue (Engine.IO text frames).
    subscribers: Vec<mpsc::UnboundedSender<String>>,
    images: HashMap<String, Vec<u8>>,
    items: HashMap<i64, Item>,
    next_item: i64,
}

#[derive(Clone, Default)]
pub struct FakeInvoke {
    pub state: Arc<Mutex<InvokeState>>,
    /// The models it lists (by default SD 1.5, SDXL, the `add_detail`
    /// LoRA and the `canny` ControlNet).
    pub models: Arc<Vec<&'static str>>,
    /// Whether it speaks socket.io at `/ws/socket.io/` (6.x does).
    pub socket_io: bool,
}

impl InvokeState {
    /// The bytes of an uploaded or rendered image.
    pub fn image(&self, name: &str) -> Vec<u8> {
        self.images[name].clone()
    }
}

impl FakeInvoke {
    pub async fn start() -> (Self, String) {
        Self::with_models(&[
            "stable-diffusion-1.5",
            "stable-diffusion-xl",
            "add_detail",
            "canny",
        ])
        .await
    }

    /// A fake that has only `models`.
    pub async fn with_models(models: &[&'static str]) -> (Self, String) {
        Self::serving(models, true).await
    }

    /// A fake of an InvokeAI without a socket.io feed.
    pub async fn without_socket_io() -> (Self, String) {
        Self::serving(&["stable-diffusion-1.5"], false).await
    }

    async fn serving(models: &[&'static str], socket_io: bool) -> (Self, String) {
        let fake = FakeInvoke {
            models: Arc::new(models.to_vec()),
            socket_io,
            ..FakeInvoke::default()
        };
        let mut app = Router::new()
            .route("/api/v2/models/", get(invoke_models))
            .route("/api/v1/images/upload", post(invoke_upload))
            .route("/api/v1/queue/{queue}/enqueue_batch", post(invoke_enqueue))
            .route("/api/v1/queue/{queue}/i/{id}", get(invoke_item))
            .route(
                "/api/v1/queue/{queue}/i/{id}/cancel",
                put(|| async { "{}" }),
            )
            .route("/api/v1/images/i/{name}/full", get(invoke_full));
        if socket_io {
            app = app.route("/ws/socket.io/", get(invoke_socket_io));
        }
        (fake.clone(), serve(app.with_state(fake.clone())).await)
    }
}

/// socket.io over a WebSocket, as InvokeAI 6.14 speaks it: the Engine.IO
/// open packet, `40` answered with the namespace's `40{sid}`, then a
/// `subscribe_queue` event; from then on the client hears the queue's
/// events.
async fn invoke_socket_io(State(fake): State<FakeInvoke>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |mut socket: WebSocket| async move {
        let open = r#"0{"sid":"fake","upgrades":[],"pingTimeout":20000,"pingInterval":25000,"maxPayload":1000000}"#;
        if socket.send(Message::Text(open.into())).await.is_err() {
            return;
        }
        while let Some(Ok(msg)) = socket.recv().await {
            let Message::Text(text) = msg else { continue };
            if text.as_str() == "40" {
                let _ = socket.send(Message::Text(r#"40{"sid":"ns"}"#.into())).await;
            } else if text.starts_with("42[\"subscribe_queue\"") {
                break;
            }
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        fake.state.lock().unwrap().subscribers.push(tx);
        while let Some(frame) = rx.recv().await {
            if socket.send(Message::Text(frame.into())).await.is_err() {
                return;
            }
        }
    })
}

/// `GET /api/v2/models/`: every model, or those of `model_name` and
/// `model_type`. The catalogue's LoRAs (`add_detail`, `detail-tweaker`)
/// and ControlNet (`canny`) are of those types, the rest main models.
async fn invoke_models(
    State(fake): State<FakeInvoke>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let kind_of = |n: &str| match n {
        "add_detail" | "detail-tweaker" => "lora",
        "canny" => "controlnet",
        _ => "main",
    };
    let name = q.get("model_name");
    let kind = q.get("model_type");
    let models: Vec<Value> = fake
        .models
        .iter()
        .filter(|n| name.is_none_or(|want| *n == want))
        .filter(|n| kind.is_none_or(|want| kind_of(n) == want))
        .map(|n| {
            let base = if n.ends_with("xl") { "sdxl" } else { "sd-1" };
            json!({ "key": format!("key-{n}"), "hash": format!("blake3:{n}"), "name": n,
                    "base": base, "type": kind_of(n) })
        })
        .collect();
    axum::Json(json!({ "models": models })).into_response()
}

async fn invoke_upload(State(fake): State<FakeInvoke>, form: Multipart) -> Response {
    let (_, bytes) = read_upload(form, "file").await;
    let mut st = fake.state.lock().unwrap();
    st.uploads += 1;
    let name = format!("upload-{}.png", st.uploads);
    st.images.insert(name.clone(), bytes);
    axum::Json(json!({ "image_name": name, "image_url": "", "width": 0, "height": 0 }))
        .into_response()
}

async fn invoke_enqueue(
    State(fake): State<FakeInvoke>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let mut st = fake.state.lock().unwrap();
    st.batches.push(body.clone());
    let batch = &body["batch"];
    let graph = batch["graph"].clone();
    let nodes = graph["nodes"].as_object().cloned().unwrap_or_default();
    let size = if let Some(n) = nodes.get("noise") {
        (
            n["width"].as_u64().unwrap() as u32,
            n["height"].as_u64().unwrap() as u32,
        )
    } else {
        let scale = nodes["output"]["scale_factor"].as_f64().unwrap();
        let src = nodes["output"]["image"]["image_name"].as_str().unwrap();
        let (w, h) = dims(&st.images[src]);
        ((w as f64 * scale) as u32, (h as f64 * scale) as u32)
    };
    let seeds: Vec<Option<u64>> = match batch["data"][0][0]["items"].as_array() {
        Some(items) => items.iter().map(Value::as_u64).collect(),
        None => vec![None],
    };
    let mut ids = Vec::new();
    let batch_id = format!("batch-{}", st.batches.len());
    for seed in seeds {
        st.next_item += 1;
        let id = st.next_item;
        st.items.insert(id, (graph.clone(), seed, 0, size));
        ids.push(id);
        // A denoise's steps as 6.14 tells them: a percentage per step.
        let mut events = Vec::new();
        if nodes.contains_key("denoise") {
            for pct in [0.0, 0.5] {
                events.push(json!(["invocation_progress", { "queue_id": "default", "item_id": id, "batch_id": batch_id,
                    "invocation_source_id": "denoise", "message": "Denoising", "percentage": pct }]));
            }
        }
        // With a feed, the item runs now: its output node's image, then
        // its end (a poll still sees it run once, then end).
        if fake.socket_io {
            let name = render(&mut st, id);
            events.push(
                json!(["invocation_complete", { "queue_id": "default", "item_id": id,
                "batch_id": batch_id, "invocation_source_id": "output",
                "result": { "type": "image_output", "image": { "image_name": name },
                            "width": size.0, "height": size.1 } }]),
            );
            events.push(
                json!(["queue_item_status_changed", { "queue_id": "default", "item_id": id,
                "batch_id": batch_id, "status": "completed", "error_type": null, "error_message": null }]),
            );
        }
        for event in events {
            st.subscribers
                .retain(|tx| tx.send(format!("42{event}")).is_ok());
        }
    }
    axum::Json(
        json!({ "queue_id": "default", "enqueued": ids.len(), "requested": ids.len(),
        "batch": { "batch_id": batch_id, "graph": batch["graph"], "runs": 1 },
        "priority": 0, "item_ids": ids }),
    )
    .into_response()
}

async fn invoke_item(
    State(fake): State<FakeInvoke>,
    Path((_, id)): Path<(String, i64)>,
) -> Response {
    let mut st = fake.state.lock().unwrap();
    let Some((graph, _, polled, (w, h))) = st.items.get(&id).cloned() else {
        return axum::http::StatusCode::NOT_FOUND.into_response();
    };
    st.items.get_mut(&id).unwrap().2 += 1;
    st.item_reads += 1;
    let node_ids: Vec<String> = graph["nodes"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    // First poll: running, half the nodes done; then completed.
    let (status, executed) = if polled == 0 {
        ("in_progress", node_ids[..node_ids.len() / 2].to_vec())
    } else {
        ("completed", node_ids.clone())
    };
    let mut results = serde_json::Map::new();
    if status == "completed" {
        let name = render(&mut st, id);
        results.insert("prepared-output".into(), json!({ "type": "image_output", "image": { "image_name": name }, "width": w, "height": h }));
    }
    axum::Json(json!({
        "item_id": id, "status": status, "priority": 0, "batch_id": "b", "queue_id": "default",
        "session_id": format!("s{id}"), "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
        "session": { "id": format!("s{id}"), "graph": graph, "executed": executed,
                     "results": results, "source_prepared_mapping": { "output": ["prepared-output"] } },
    }))
    .into_response()
}

/// Renders item `id`'s output image (flat, from its seed); its name.
fn render(st: &mut InvokeState, id: i64) -> String {
    let (_, seed, _, (w, h)) = st.items[&id].clone();
    let name = format!("out-{id}.png");
    st.images
        .insert(name.clone(), png(w, h, (seed.unwrap_or(0) % 200) as u8));
    name
}

async fn invoke_full(State(fake): State<FakeInvoke>, Path(name): Path<String>) -> Response {
    let st = fake.state.lock().unwrap();
    match st.images.get(&name) {
        Some(b) => ([("content-type", "image/png")], b.clone()).into_response(),
        None => axum::http::StatusCode::NOT_FOUND.into_response(),
    }
}
