//! Workers: remote `pingvas worker` processes over the internal API (one
//! killed mid-job), lease expiry and retry limits, and the `comfyui` and
//! `invokeai` backends against fakes of those servers.

use pingvas_tests::fakes::{FakeComfy, FakeInvoke};
use pingvas_tests::pingvas_host::store::jobs;
use pingvas_tests::{
    Session, TestServer, WORKER_TOKEN, WorkerProcess, assert_error, png_base64, small_job,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn remote_only(ttl: u64, attempts: u32) -> TestServer {
    TestServer::start_with(|c| {
        c.worker_enabled = false;
        c.worker_token = Some(WORKER_TOKEN.to_owned().into());
        c.lease_ttl_secs = ttl;
        c.job_max_attempts = attempts;
    })
    .await
}

#[tokio::test]
async fn a_killed_worker_s_job_completes_on_another_and_is_charged_once() {
    let srv = remote_only(2, 3).await;
    let mut first = WorkerProcess::start(&srv);
    let alice = srv.signup("alice@example.com").await;
    let before = srv.credits(&alice.user_id).await;
    let mut events = srv.events(&alice.access, None).await;
    let body = json!({ "prompt": "slow", "model": "stable-diffusion-1.5", "width": 512, "height": 512, "steps": 60, "seed": 5 });
    // The worker registers on its first poll; until then nobody serves.
    let (s, b) = loop {
        let r = srv
            .generate("text-to-image", &alice.access, body.clone())
            .await;
        if r.0 != StatusCode::SERVICE_UNAVAILABLE {
            break r;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let id = b["data"]["job_id"].as_str().unwrap().to_owned();
    events.until("job.progress", &id).await;
    first.kill9();
    let _second = WorkerProcess::start(&srv);
    let requeued = events.until("job.requeued", &id).await;
    assert_eq!(requeued["data"]["attempt"], 1);
    let end = events.until_end(&id).await;
    assert_eq!(end["type"], "job.completed", "{end}");

    let job = srv.job(&alice.access, &id).await;
    assert_eq!(job["attempts"], 2);
    let used = job["credits_used"].as_i64().unwrap();
    assert_eq!(
        srv.credits(&alice.user_id).await,
        (before.0 - used, 0, before.2 - used)
    );
    let row = jobs::get(&srv.state.db, &id).await.unwrap().unwrap();
    let charges: Vec<(String, i64)> = srv
        .state
        .ledger
        .history(
            &alice.user_id,
            None,
            pingvas_tests::pingvas_host::store::Page {
                page: 1,
                per_page: 100,
            },
        )
        .await
        .unwrap()
        .0
        .into_iter()
        .filter(|t| t.hold_id.as_deref() == Some(row.hold_id.as_str()))
        .map(|t| (t.kind, t.amount))
        .collect();
    assert_eq!(
        charges,
        vec![("generation_use".to_owned(), -used)],
        "settled exactly once"
    );
}

#[tokio::test]
async fn an_abandoned_lease_past_the_retry_limit_fails_with_a_refund() {
    let srv = remote_only(1, 1).await;
    let alice = srv.signup("alice@example.com").await;
    let before = srv.credits(&alice.user_id).await;
    let lease = |wait: u64| {
        srv.client
            .post(format!("{}/internal/v1/lease", srv.base))
            .bearer_auth(WORKER_TOKEN)
            .json(&json!({ "worker_id": "w", "name": "w", "backend": "manual", "models": null, "wait_ms": wait, "worker_key": "k" }))
            .send()
    };
    assert_eq!(lease(0).await.unwrap().status(), StatusCode::NO_CONTENT);
    let mut events = srv.events(&alice.access, None).await;
    let (s, b) = srv
        .generate("text-to-image", &alice.access, small_job("abandoned"))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let id = b["data"]["job_id"].as_str().unwrap().to_owned();
    let leased: Value = lease(5000).await.unwrap().json().await.unwrap();
    assert_eq!(leased["data"]["job_id"], id.as_str());
    let token = leased["data"]["lease_token"].as_str().unwrap().to_owned();
    // The worker goes silent; the lease expires; one attempt was allowed.
    let end = events.until_end(&id).await;
    assert_eq!(end["type"], "job.failed", "{end}");
    assert_eq!(end["data"]["error"]["code"], "WORKER_LOST");
    assert_eq!(srv.credits(&alice.user_id).await, before);
    // A report from the lost worker is refused and changes nothing.
    let late = srv
        .client
        .post(format!("{}/internal/v1/jobs/{id}/complete", srv.base))
        .bearer_auth(WORKER_TOKEN)
        .json(&json!({ "lease_token": token, "images": [png_base64(64, 64, [1, 1, 1])], "gpu_seconds": 1.0,
                       "gpu_started_at": null, "gpu_finished_at": null, "backend": "manual", "effective": null }))
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), StatusCode::CONFLICT);
    assert_eq!(srv.credits(&alice.user_id).await, before);
    assert_eq!(srv.job(&alice.access, &id).await["status"], "failed");
}

async fn run_one(srv: &TestServer, token: &str, kind: &str, body: Value) -> Value {
    run_traced(srv, token, kind, body).await.0
}

/// Runs a job to completion; the job and its `job.progress` events' data.
async fn run_traced(srv: &TestServer, token: &str, kind: &str, body: Value) -> (Value, Vec<Value>) {
    let mut events = srv.events(token, None).await;
    let (s, b) = srv.generate(kind, token, body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let id = b["data"]["job_id"].as_str().unwrap().to_owned();
    let end = events.until_end(&id).await;
    assert_eq!(end["type"], "job.completed", "{end}");
    let progress: Vec<Value> = events
        .seen
        .iter()
        .filter(|e| e["type"] == "job.progress" && e["data"]["job_id"] == id.as_str())
        .map(|e| e["data"].clone())
        .collect();
    assert!(
        !progress.is_empty(),
        "{kind} progress events: {:?}",
        events.kinds_of(&id)
    );
    (srv.job(token, &id).await, progress)
}

async fn image_size(srv: &TestServer, job: &Value, i: usize) -> (u32, u32) {
    let bytes = srv
        .download(job["result"]["images"][i]["image_url"].as_str().unwrap())
        .await;
    let img = image::load_from_memory(&bytes).unwrap();
    (img.width(), img.height())
}

#[tokio::test]
async fn the_comfyui_backend_drives_comfyui() {
    let (fake, url) = FakeComfy::start().await;
    let srv = TestServer::start_with(|c| {
        c.worker_backend = "comfyui".into();
        c.worker_backend_url = Some(url);
        c.worker_models = "stable-diffusion-1.5,real-esrgan".into();
    })
    .await;
    let alice = srv.signup("alice@example.com").await;
    let mut body = small_job("a harbour");
    body["batch_size"] = json!(2);
    body["negative_prompt"] = json!("fog");
    let job = run_one(&srv, &alice.access, "text-to-image", body).await;
    assert_eq!(job["result"]["images"].as_array().unwrap().len(), 2);
    assert_eq!(image_size(&srv, &job, 1).await, (64, 64));
    let sent = fake.state.lock().unwrap().prompts[0].clone();
    let nodes: Vec<&Value> = sent["prompt"].as_object().unwrap().values().collect();
    let node =
        |class: &str| nodes.iter().find(|n| n["class_type"] == class).unwrap()["inputs"].clone();
    assert_eq!(
        node("CheckpointLoaderSimple")["ckpt_name"],
        "stable-diffusion-1.5.safetensors"
    );
    let k = node("KSampler");
    assert_eq!(
        (k["steps"].as_u64(), k["seed"].as_u64()),
        (Some(4), Some(42))
    );
    assert_eq!(k["sampler_name"], "euler_ancestral");
    assert_eq!(node("EmptyLatentImage")["batch_size"], 2);
    assert!(
        nodes
            .iter()
            .any(|n| n["class_type"] == "CLIPTextEncode" && n["inputs"]["text"] == "fog")
    );
    assert!(sent["client_id"].is_string());

    let up = run_one(
        &srv,
        &alice.access,
        "upscale",
        json!({ "image": png_base64(40, 24, [9, 9, 9]), "scale": 2 }),
    )
    .await;
    assert_eq!(image_size(&srv, &up, 0).await, (80, 48));
    assert_eq!(fake.state.lock().unwrap().uploads.len(), 1);
    let row = pingvas_tests::pingvas_host::store::images::get(
        &srv.state.db,
        up["result"]["image_id"].as_str().unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(row.metadata.contains("\"backend\":\"comfyui\""));
}

#[tokio::test]
async fn the_invokeai_backend_drives_the_session_queue() {
    let (fake, url) = FakeInvoke::start().await;
    let srv = TestServer::start_with(|c| {
        c.worker_backend = "invokeai".into();
        c.worker_backend_url = Some(url);
        c.worker_models = "stable-diffusion-1.5,real-esrgan".into();
    })
    .await;
    let alice = srv.signup("alice@example.com").await;
    let mut body = small_job("a lantern");
    body["batch_size"] = json!(2);
    body["width"] = json!(96);
    let (job, progress) = run_traced(&srv, &alice.access, "text-to-image", body).await;
    // Steps from the socket.io feed: 4 a denoise, two images.
    for p in &progress {
        assert_eq!(p["total_steps"], 8, "{progress:?}");
    }
    assert_eq!(progress.last().unwrap()["step"], 8, "{progress:?}");
    assert_eq!(image_size(&srv, &job, 0).await, (96, 64));
    assert_eq!(job["result"]["images"].as_array().unwrap().len(), 2);
    // The output images and the items' ends came from the feed: each item
    // was read at most once (before its end was heard), not polled to it.
    let reads = fake.state.lock().unwrap().item_reads;
    assert!(reads <= 2, "{reads} queue item reads for two items");
    let batch = fake.state.lock().unwrap().batches[0]["batch"].clone();
    let nodes = &batch["graph"]["nodes"];
    assert_eq!(nodes["loader"]["type"], "main_model_loader");
    assert_eq!(nodes["loader"]["model"]["key"], "key-stable-diffusion-1.5");
    assert_eq!(nodes["denoise"]["steps"], 4);
    assert_eq!(nodes["denoise"]["scheduler"], "euler_a");
    assert_eq!(nodes["positive"]["prompt"], "a lantern");
    assert_eq!(nodes["output"]["type"], "l2i");
    assert_eq!(batch["data"][0][0]["items"], json!([42, 43]));
    assert!(
        batch["graph"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["destination"]["field"] == "noise")
    );

    let up = run_one(
        &srv,
        &alice.access,
        "upscale",
        json!({ "image": png_base64(30, 20, [9, 9, 9]), "scale": 3 }),
    )
    .await;
    assert_eq!(image_size(&srv, &up, 0).await, (90, 60));
    let second = fake.state.lock().unwrap().batches[1]["batch"]["graph"]["nodes"]["output"].clone();
    assert_eq!(second["type"], "img_scale");
    assert_eq!(second["resample_mode"], "lanczos");
}

/// `GET /models`' `can_run_now` of each model, by name.
async fn can_run_now(srv: &TestServer, s: &Session) -> impl Fn(&str) -> Value {
    let (_, models) = srv.get("/models", Some(&s.access)).await;
    move |name: &str| {
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .map(|m| m["can_run_now"].clone())
            .unwrap_or_else(|| panic!("no model {name}"))
    }
}

/// An SDXL text-to-image with the catalogue's SDXL LoRA and ControlNet.
fn adapted_job(prompt: &str) -> Value {
    let mut body = small_job(prompt);
    body["model"] = json!("stable-diffusion-xl");
    body["loras"] = json!([{ "name": "add_detail", "weight": 0.8 }]);
    body["controlnet"] =
        json!({ "model": "canny", "image": png_base64(32, 32, [250, 250, 250]), "weight": 1.2 });
    body
}

/// A server whose worker drives `backend` at `url`, and a Pro user.
async fn adapter_server(backend: &str, url: String) -> (TestServer, Session) {
    let srv = TestServer::start_with(|c| {
        c.worker_backend = backend.into();
        c.worker_backend_url = Some(url);
        c.worker_models = "stable-diffusion-xl,add_detail,canny".into();
    })
    .await;
    let alice = srv.signup("alice@example.com").await;
    srv.set_tier("alice@example.com", "pro").await;
    (srv, alice)
}

#[tokio::test]
async fn comfyui_applies_loras_and_controlnet() {
    let (fake, url) = FakeComfy::start().await;
    let (srv, alice) = adapter_server("comfyui", url).await;
    let job = run_one(&srv, &alice.access, "text-to-image", adapted_job("a gate")).await;
    assert_eq!(image_size(&srv, &job, 0).await, (64, 64));
    let (sent, uploads) = {
        let st = fake.state.lock().unwrap();
        (st.prompts[0]["prompt"].clone(), st.uploads.clone())
    };
    let lora = &sent["lora0"]["inputs"];
    assert_eq!(sent["lora0"]["class_type"], "LoraLoader");
    assert_eq!(lora["lora_name"], "add_detail.safetensors");
    assert_eq!(
        (
            lora["strength_model"].as_f64(),
            lora["strength_clip"].as_f64()
        ),
        (Some(0.8), Some(0.8))
    );
    assert_eq!(lora["model"], json!(["ckpt", 0]));
    assert_eq!(sent["sampler"]["inputs"]["model"], json!(["lora0", 0]));
    assert_eq!(sent["positive"]["inputs"]["clip"], json!(["lora0", 1]));
    assert_eq!(
        sent["control_model"]["inputs"]["control_net_name"],
        "canny.safetensors"
    );
    let control = &sent["control"];
    assert_eq!(control["class_type"], "ControlNetApplyAdvanced");
    assert_eq!(control["inputs"]["strength"].as_f64(), Some(1.2));
    assert_eq!(control["inputs"]["positive"], json!(["positive", 0]));
    assert_eq!(sent["sampler"]["inputs"]["positive"], json!(["control", 0]));
    assert_eq!(sent["sampler"]["inputs"]["negative"], json!(["control", 1]));
    // The guide went up as an image and the loader reads that upload.
    assert_eq!(uploads.len(), 1);
    assert_eq!(sent["control_image"]["inputs"]["image"], json!(uploads[0]));

    // An inpaint with the LoRA passes ComfyUI's shapes too (the fake
    // checks every prompt against its object_info).
    let mut inpaint = adapted_job("a door");
    let o = inpaint.as_object_mut().unwrap();
    for key in ["width", "height", "controlnet"] {
        o.remove(key);
    }
    inpaint["source_image"] = json!(png_base64(64, 64, [10, 20, 30]));
    inpaint["mask_image"] = json!(png_base64(64, 64, [255, 255, 255]));
    run_one(&srv, &alice.access, "inpaint", inpaint).await;
    let sent = fake.state.lock().unwrap().prompts[1]["prompt"].clone();
    assert_eq!(sent["latent"]["class_type"], "VAEEncodeForInpaint");
    assert_eq!(sent["sampler"]["inputs"]["model"], json!(["lora0", 0]));
}

#[tokio::test]
async fn invokeai_applies_loras_and_controlnet() {
    let (fake, url) = FakeInvoke::start().await;
    let (srv, alice) = adapter_server("invokeai", url).await;
    let job = run_one(&srv, &alice.access, "text-to-image", adapted_job("a gate")).await;
    assert_eq!(image_size(&srv, &job, 0).await, (64, 64));
    let graph = fake.state.lock().unwrap().batches[0]["batch"]["graph"].clone();
    let nodes = &graph["nodes"];
    assert_eq!(nodes["loader"]["type"], "sdxl_model_loader");
    assert_eq!(nodes["lora0"]["type"], "sdxl_lora_loader");
    assert_eq!(nodes["lora0"]["lora"]["key"], "key-add_detail");
    assert_eq!(nodes["lora0"]["lora"]["type"], "lora");
    assert_eq!(nodes["lora0"]["weight"].as_f64(), Some(0.8));
    assert_eq!(nodes["control"]["type"], "controlnet");
    assert_eq!(nodes["control"]["control_model"]["key"], "key-canny");
    assert_eq!(nodes["control"]["control_weight"].as_f64(), Some(1.2));
    assert_eq!(nodes["control"]["image"]["image_name"], "upload-1.png");
    let into = |node: &str, field: &str| {
        graph["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["destination"]["node_id"] == node && e["destination"]["field"] == field)
            .map(|e| e["source"]["node_id"].clone())
    };
    assert_eq!(into("denoise", "unet"), Some(json!("lora0")));
    assert_eq!(into("positive", "clip2"), Some(json!("lora0")));
    assert_eq!(into("denoise", "control"), Some(json!("control")));
}

#[tokio::test]
async fn cpu_reference_applies_loras_and_controlnet_visibly() {
    let srv = TestServer::start().await;
    let alice = srv.signup("alice@example.com").await;
    srv.set_tier("alice@example.com", "pro").await;
    let mut plain = adapted_job("a gate");
    plain.as_object_mut().unwrap().remove("loras");
    plain.as_object_mut().unwrap().remove("controlnet");
    let mut lora_only = adapted_job("a gate");
    lora_only.as_object_mut().unwrap().remove("controlnet");
    let mut pixels = Vec::new();
    for body in [plain, lora_only, adapted_job("a gate")] {
        let job = run_one(&srv, &alice.access, "text-to-image", body).await;
        let bytes = srv
            .download(job["result"]["images"][0]["image_url"].as_str().unwrap())
            .await;
        pixels.push(
            image::load_from_memory(&bytes)
                .unwrap()
                .to_rgba8()
                .into_raw(),
        );
    }
    let distance = |a: &[u8], b: &[u8]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| u64::from(x.abs_diff(*y)))
            .sum::<u64>() as f64
            / a.len() as f64
    };
    assert!(distance(&pixels[0], &pixels[1]) > 3.0, "the LoRA shows");
    assert!(
        distance(&pixels[1], &pixels[2]) > 3.0,
        "the ControlNet shows"
    );
}

#[tokio::test]
async fn a_lora_or_controlnet_no_worker_has_is_refused_at_enqueue() {
    // This InvokeAI has SDXL and the ControlNet, not the LoRA.
    let (_fake, url) = FakeInvoke::with_models(&["stable-diffusion-xl", "canny"]).await;
    let (srv, alice) = adapter_server("invokeai", url).await;
    let can_run = can_run_now(&srv, &alice).await;
    assert_eq!(can_run("add_detail"), json!(false));
    assert_eq!(can_run("canny"), json!(true));
    let before = srv.credits(&alice.user_id).await;
    let r = srv
        .generate("text-to-image", &alice.access, adapted_job("refused"))
        .await;
    let e = assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE");
    assert!(e.to_string().contains("add_detail"), "names the LoRA: {e}");
    assert_eq!(
        srv.credits(&alice.user_id).await,
        before,
        "nothing reserved"
    );
    let mut no_lora = adapted_job("runs");
    no_lora.as_object_mut().unwrap().remove("loras");
    run_one(&srv, &alice.access, "text-to-image", no_lora).await;
}

#[tokio::test]
async fn without_a_socket_io_feed_invokeai_progress_counts_nodes() {
    let (_fake, url) = FakeInvoke::without_socket_io().await;
    let srv = TestServer::start_with(|c| {
        c.worker_backend = "invokeai".into();
        c.worker_backend_url = Some(url);
        c.worker_models = "stable-diffusion-1.5".into();
    })
    .await;
    let alice = srv.signup("alice@example.com").await;
    let (_, progress) = run_traced(&srv, &alice.access, "text-to-image", small_job("a")).await;
    // The session's nodes: loader, two prompts, noise, denoise, output.
    assert_eq!(progress.last().unwrap()["total_steps"], 6, "{progress:?}");
}

#[tokio::test]
async fn invokeai_inpaints_as_its_canvas_does_at_whole_latents() {
    let (fake, url) = FakeInvoke::start().await;
    let srv = TestServer::start_with(|c| {
        c.worker_backend = "invokeai".into();
        c.worker_backend_url = Some(url);
        c.worker_models = "stable-diffusion-1.5".into();
    })
    .await;
    let alice = srv.signup("alice@example.com").await;
    // 100×70 is no whole number of latents: run at 96×64, back to 100×70.
    let mask = image::RgbaImage::from_fn(100, 70, |x, _| {
        image::Rgba(if x < 50 {
            [0, 0, 0, 255]
        } else {
            [255, 255, 255, 255]
        })
    });
    let mut png = Vec::new();
    mask.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    use base64::Engine as _;
    let mut body = small_job("a door");
    let o = body.as_object_mut().unwrap();
    o.remove("width");
    o.remove("height");
    body["source_image"] = json!(png_base64(100, 70, [10, 20, 30]));
    body["mask_image"] = json!(base64::engine::general_purpose::STANDARD.encode(&png));
    let job = run_one(&srv, &alice.access, "inpaint", body).await;
    assert_eq!(image_size(&srv, &job, 0).await, (100, 70));
    let (graph, mask_upload) = {
        let st = fake.state.lock().unwrap();
        let graph = st.batches[0]["batch"]["graph"].clone();
        let name = graph["nodes"]["mask"]["mask"]["image_name"]
            .as_str()
            .unwrap()
            .to_owned();
        (graph, st.image(&name))
    };
    let nodes = &graph["nodes"];
    assert_eq!(nodes["mask"]["type"], "create_gradient_mask");
    assert_eq!(nodes["output"]["type"], "invokeai_img_blend");
    assert_eq!(nodes["noise"]["width"], 96);
    assert_eq!(nodes["noise"]["height"], 64);
    assert_eq!(
        nodes["output"]["layer_base"]["image_name"],
        nodes["i2l"]["image"]["image_name"]
    );
    // Our white (repaint) is InvokeAI's black.
    let uploaded = image::load_from_memory(&mask_upload).unwrap().to_rgba8();
    assert_eq!(uploaded.dimensions(), (96, 64));
    assert_eq!(uploaded.get_pixel(90, 30).0, [0, 0, 0, 255]);
    assert_eq!(uploaded.get_pixel(5, 30).0, [255, 255, 255, 255]);
    for node in nodes.as_object().unwrap().values() {
        assert_eq!(node["use_cache"], false, "{node}");
    }
}

/// The rig's tiny SD-1 model, LoRA and ControlNet (`scripts/invokeai-rig`)
/// as a catalogue, with the upscaler.
const RIG_MODELS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../scripts/invokeai_rig/models.toml"
);

/// InvokeAI's queue item our job became: the newest one.
async fn newest_item(client: &reqwest::Client, url: &str) -> Value {
    let ids: Value = client
        .get(format!("{url}/api/v1/queue/default/item_ids"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let newest = ids["item_ids"]
        .as_array()
        .or(ids.as_array())
        .and_then(|a| a.iter().filter_map(Value::as_i64).max())
        .unwrap_or_else(|| panic!("no queue items: {ids}"));
    client
        .get(format!("{url}/api/v1/queue/default/i/{newest}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// InvokeAI's time stamps (`2026-12-03 08:08:36.484`, UTC).
fn invoke_time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    let text = v.as_str().unwrap_or_else(|| panic!("a time: {v}"));
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .and_utc()
}

/// Every operation the API charges for, through our worker, against a
/// real InvokeAI 6.14 running the rig's tiny SD-1 model, LoRA and
/// ControlNet on CPU: `scripts/invokeai-rig start` prints the URL, then
/// `INVOKEAI_URL=<url> cargo test -p pingvas-tests --test suite --
/// --ignored --nocapture workers::real_invokeai`.
#[tokio::test]
#[ignore = "needs the rig's InvokeAI at INVOKEAI_URL (scripts/invokeai-rig)"]
async fn real_invokeai() {
    let url = std::env::var("INVOKEAI_URL").expect("INVOKEAI_URL");
    let models = std::path::PathBuf::from(RIG_MODELS);
    let backend_url = url.clone();
    let srv = TestServer::start_with(move |c| {
        c.models_file = Some(models);
        c.worker_backend = "invokeai".into();
        c.worker_backend_url = Some(backend_url);
        c.worker_models = "rig-sd1,rig-sd1-lora,rig-sd1-controlnet,real-esrgan".into();
    })
    .await;
    let alice = srv.signup("alice@example.com").await;
    srv.set_credits(&alice.user_id, 10_000).await;
    let client = reqwest::Client::new();
    let base = |prompt: &str| {
        json!({ "prompt": prompt, "model": "rig-sd1", "width": 64, "height": 64,
                "steps": 4, "seed": 7 })
    };
    let mut lora = base("a red cat");
    lora["loras"] = json!([{ "name": "rig-sd1-lora", "weight": 1.0 }]);
    let mut control = base("a red cat");
    control["controlnet"] = json!({ "model": "rig-sd1-controlnet", "image": png_base64(64, 64, [250, 250, 250]), "weight": 1.0 });
    let source = png_base64(64, 64, [200, 40, 40]);
    let mut i2i = base("a red cat");
    i2i["source_image"] = json!(source);
    i2i["strength"] = json!(0.6);
    let mut inpaint = base("a red cat");
    let o = inpaint.as_object_mut().unwrap();
    o.remove("width");
    o.remove("height");
    inpaint["source_image"] = json!(png_base64(96, 64, [200, 40, 40]));
    inpaint["mask_image"] = json!(png_base64(96, 64, [255, 255, 255]));
    let cases = [
        (
            "text-to-image",
            "text-to-image",
            base("a red cat"),
            (64, 64),
            &[][..],
        ),
        (
            "+LoRA",
            "text-to-image",
            lora,
            (64, 64),
            &["lora_loader"][..],
        ),
        (
            "image-to-image",
            "image-to-image",
            i2i,
            (64, 64),
            &["i2l"][..],
        ),
        (
            "inpaint",
            "inpaint",
            inpaint,
            (96, 64),
            &["create_gradient_mask", "invokeai_img_blend"][..],
        ),
        (
            "+ControlNet",
            "text-to-image",
            control,
            (64, 64),
            &["controlnet"][..],
        ),
        (
            "upscale",
            "upscale",
            json!({ "image": source, "scale": 2 }),
            (128, 128),
            &["img_scale"][..],
        ),
    ];
    println!("| job | steps seen | InvokeAI time | lease → enqueue | done → stored | overhead |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, kind, body, size, must_run) in cases {
        let (job, progress) = run_traced(&srv, &alice.access, kind, body).await;
        assert_eq!(image_size(&srv, &job, 0).await, size, "{name}");
        let last = progress.last().unwrap();
        assert_eq!(last["step"], last["total_steps"], "{name}: {progress:?}");
        if kind != "upscale" {
            assert_eq!(
                last["total_steps"], 4,
                "{name}: steps, not nodes: {progress:?}"
            );
        }
        let item = newest_item(&client, &url).await;
        assert_eq!(item["status"], "completed", "{name}: {item}");
        let ran: Vec<&str> = item["session"]["graph"]["nodes"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(|n| n["type"].as_str())
            .collect();
        for kind in must_run {
            assert!(ran.contains(kind), "{name}: {kind} not in {ran:?}");
        }
        let executed = item["session"]["executed"].as_array().unwrap().len();
        assert!(
            executed >= ran.len(),
            "{name}: {executed} of {} ran",
            ran.len()
        );
        // Our worker's own time around InvokeAI's.
        let time = |v: &Value| {
            chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
                .unwrap()
                .to_utc()
        };
        let ms = |d: chrono::TimeDelta| d.num_microseconds().unwrap() as f64 / 1e3;
        let before = ms(invoke_time(&item["created_at"]) - time(&job["started_at"]));
        let after = ms(time(&job["completed_at"]) - invoke_time(&item["completed_at"]));
        let invoke = ms(invoke_time(&item["completed_at"]) - invoke_time(&item["created_at"]));
        println!(
            "| {name} | {}/{} | {invoke:.0} ms | {before:.1} ms | {after:.1} ms | {:.1} ms |",
            last["step"],
            last["total_steps"],
            before + after
        );
    }
}

#[tokio::test]
async fn only_models_the_backend_has_are_accepted() {
    // This InvokeAI has SD 1.5 but not SDXL; the worker would serve both.
    let (_fake, url) = FakeInvoke::with_models(&["stable-diffusion-1.5"]).await;
    let srv = TestServer::start_with(|c| {
        c.worker_backend = "invokeai".into();
        c.worker_backend_url = Some(url);
        c.worker_models = "stable-diffusion-1.5,stable-diffusion-xl,real-esrgan".into();
    })
    .await;
    let alice = srv.signup("alice@example.com").await;
    srv.set_tier("alice@example.com", "pro").await;
    let can_run = can_run_now(&srv, &alice).await;
    assert_eq!(can_run("stable-diffusion-1.5"), json!(true));
    assert_eq!(can_run("stable-diffusion-xl"), json!(false));
    assert_eq!(
        can_run("real-esrgan"),
        json!(true),
        "upscaling needs no weights"
    );
    assert_eq!(
        can_run("add_detail"),
        json!(false),
        "a LoRA it does not have"
    );

    let before = srv.credits(&alice.user_id).await;
    let mut sdxl = small_job("refused");
    sdxl["model"] = json!("stable-diffusion-xl");
    let r = srv.generate("text-to-image", &alice.access, sdxl).await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE");
    assert_eq!(
        srv.credits(&alice.user_id).await,
        before,
        "nothing reserved"
    );
    let job = run_one(&srv, &alice.access, "text-to-image", small_job("runs")).await;
    assert_eq!(job["status"], "completed", "{job}");
}
