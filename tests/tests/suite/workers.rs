//! Workers: remote `pingvas worker` processes over the internal API (one
//! killed mid-job), lease expiry and retry limits, and the `comfyui` and
//! `invokeai` backends against fakes of those servers.

use pingvas_tests::fakes::{FakeComfy, FakeInvoke};
use pingvas_tests::pingvas_host::store::jobs;
use pingvas_tests::{TestServer, WORKER_TOKEN, WorkerProcess, assert_error, png_base64, small_job};
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
    let mut events = srv.events(token, None).await;
    let (s, b) = srv.generate(kind, token, body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let id = b["data"]["job_id"].as_str().unwrap().to_owned();
    let end = events.until_end(&id).await;
    assert_eq!(end["type"], "job.completed", "{end}");
    let progress = events
        .seen
        .iter()
        .filter(|e| e["type"] == "job.progress")
        .count();
    assert!(
        progress >= 1,
        "{kind} progress events: {:?}",
        events.kinds_of(&id)
    );
    srv.job(token, &id).await
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
    let job = run_one(&srv, &alice.access, "text-to-image", body).await;
    assert_eq!(image_size(&srv, &job, 0).await, (96, 64));
    assert_eq!(job["result"]["images"].as_array().unwrap().len(), 2);
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

/// Against a real InvokeAI server (6.14 runs on CPU; `img_scale` needs no
/// model): `INVOKEAI_URL=http://127.0.0.1:9090 cargo test -p pingvas-tests
/// --test suite -- --ignored workers::real_invokeai`.
#[tokio::test]
#[ignore = "needs a running InvokeAI server at INVOKEAI_URL"]
async fn real_invokeai_upscales() {
    let url = std::env::var("INVOKEAI_URL").expect("INVOKEAI_URL");
    let srv = TestServer::start_with(|c| {
        c.worker_backend = "invokeai".into();
        c.worker_backend_url = Some(url);
        c.worker_models = "real-esrgan".into();
    })
    .await;
    let alice = srv.signup("alice@example.com").await;
    let up = run_one(
        &srv,
        &alice.access,
        "upscale",
        json!({ "image": png_base64(48, 32, [200, 40, 40]), "scale": 2 }),
    )
    .await;
    assert_eq!(image_size(&srv, &up, 0).await, (96, 64));
    let url = srv.url_of(up["result"]["image_url"].as_str().unwrap());
    let bytes = srv
        .client
        .get(url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let img = image::load_from_memory(&bytes).unwrap().to_rgba8();
    assert_eq!(
        img.get_pixel(48, 32).0,
        [200, 40, 40, 255],
        "a flat image stays flat when scaled"
    );
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
    let (_, models) = srv.get("/models", Some(&alice.access)).await;
    let can_run = |name: &str| {
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .map(|m| m["can_run_now"].clone())
            .unwrap()
    };
    assert_eq!(can_run("stable-diffusion-1.5"), json!(true));
    assert_eq!(can_run("stable-diffusion-xl"), json!(false));
    assert_eq!(
        can_run("real-esrgan"),
        json!(true),
        "upscaling needs no weights"
    );
    assert_eq!(
        can_run("add_detail"),
        Value::Null,
        "a LoRA is not run on its own"
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
