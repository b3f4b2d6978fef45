//! 이미지 생성 API and the queue, end to end: enqueue → events → image
//! rows and files → credits settled by the measured GPU time.

use pingvas_tests::pingvas_host::queue::job::credits_for;
use pingvas_tests::{TestServer, assert_error, png_base64, small_job};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn text_to_image_runs_and_charges_the_measured_gpu_time() {
    let srv = TestServer::start().await;
    let alice = srv.signup("alice@example.com").await;
    let before = srv.credits(&alice.user_id).await;
    let mut events = srv.events(&alice.access, None).await;

    let (s, body) = srv
        .generate(
            "text-to-image",
            &alice.access,
            json!({
                "prompt": "a lighthouse at dusk", "negative_prompt": "blurry",
                "model": "stable-diffusion-1.5", "width": 128, "height": 64, "steps": 6,
                "cfg_scale": 6.5, "sampler": "euler", "seed": -1, "batch_size": 2,
            }),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let d = &body["data"];
    let job_id = d["job_id"].as_str().unwrap().to_owned();
    assert_eq!(d["status"], "queued");
    assert_eq!(d["queue_position"], 1);
    assert_eq!(d["websocket_channel"], format!("user_{}", alice.user_id));
    let estimated = d["estimated_credits"].as_i64().unwrap();
    assert!(estimated >= 1);
    assert!(d["estimated_wait_seconds"].is_u64());

    let done = events.until_end(&job_id).await;
    assert_eq!(done["type"], "job.completed", "{done}");
    let kinds = events.kinds_of(&job_id);
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("job.queued"),
        "{kinds:?}"
    );
    assert!(kinds.contains(&"job.started".to_owned()), "{kinds:?}");
    let progress: Vec<&Value> = events
        .seen
        .iter()
        .filter(|e| e["type"] == "job.progress" && e["data"]["job_id"] == job_id.as_str())
        .collect();
    assert!(!progress.is_empty(), "no progress events: {kinds:?}");
    let last = progress.last().unwrap();
    assert_eq!(last["data"]["total_steps"], 6);
    assert!(last["data"]["percent"].as_i64().unwrap() <= 100);
    let ids: Vec<u64> = events
        .seen
        .iter()
        .filter_map(|e| e["id"].as_str()?.parse().ok())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "event ids must grow: {ids:?}"
    );
    assert!(events.seen.iter().all(|e| e["timestamp"].is_string()));
    assert_eq!(done["data"]["images"].as_array().unwrap().len(), 2);

    let job = srv.job(&alice.access, &job_id).await;
    assert_eq!(job["status"], "completed");
    assert_eq!(job["job_type"], "text_to_image");
    assert_eq!(job["params"]["prompt"], "a lighthouse at dusk");
    let seed = job["params"]["seed"].as_u64().unwrap();
    let gpu = job["gpu_seconds"].as_f64().unwrap();
    assert!(gpu > 0.0);
    let model = srv.state.models.get("stable-diffusion-1.5").unwrap();
    let used = job["credits_used"].as_i64().unwrap();
    assert_eq!(used, credits_for(gpu, model).min(estimated));
    assert_eq!(job["credits_refunded"].as_i64().unwrap(), estimated - used);
    let after = srv.credits(&alice.user_id).await;
    assert_eq!(after, (before.0 - used, 0, before.2 - used));
    assert_eq!(
        srv.state.ledger.log_sum(&alice.user_id).await.unwrap(),
        after.0
    );

    // The result: image rows with the generation metadata, files behind
    // signed links, a thumbnail.
    let result = &job["result"];
    let images = result["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    assert_eq!(result["image_id"], images[0]["image_id"]);
    let row = pingvas_tests::pingvas_host::store::images::get(
        &srv.state.db,
        result["image_id"].as_str().unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!((row.width, row.height), (128, 64));
    let meta: Value = serde_json::from_str(&row.metadata).unwrap();
    assert_eq!(meta["model"], "stable-diffusion-1.5");
    assert_eq!(meta["model_hash"], model.hash.as_str());
    assert_eq!(meta["negative_prompt"], "blurry");
    assert_eq!(meta["seed"].as_u64(), Some(seed));
    assert_eq!(meta["sampler"], "euler");
    assert_eq!(meta["steps"], 6);
    assert_eq!(meta["backend"], "cpu-reference");
    let url = srv.url_of(result["image_url"].as_str().unwrap());
    let resp = srv.client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "image/png");
    let png = image::load_from_memory(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!((png.width(), png.height()), (128, 64));
    let thumb = srv
        .client
        .get(srv.url_of(images[0]["thumbnail_url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(thumb.headers()["content-type"], "image/jpeg");
    let tampered = url.replace("sig=", "sig=00");
    assert_eq!(
        srv.client.get(&tampered).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );

    // Nobody else sees the job.
    let bob = srv.signup("bob@example.com").await;
    let other = srv
        .get(&format!("/queue/items/{job_id}"), Some(&bob.access))
        .await;
    assert_error(&other, StatusCode::NOT_FOUND, "NOT_FOUND");
}

#[tokio::test]
async fn same_seed_same_picture_and_other_types_run() {
    let srv = TestServer::start().await;
    let alice = srv.signup("alice@example.com").await;
    srv.set_tier("alice@example.com", "pro").await;
    srv.set_credits(&alice.user_id, 1000).await;
    let mut events = srv.events(&alice.access, None).await;
    let mut run = async |kind: &str, body: Value| -> Value {
        let (s, b) = srv.generate(kind, &alice.access, body).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{kind}: {b}");
        let id = b["data"]["job_id"].as_str().unwrap().to_owned();
        let end = events.until_end(&id).await;
        assert_eq!(end["type"], "job.completed", "{kind}: {end}");
        srv.job(&alice.access, &id).await
    };
    let a = run("text-to-image", small_job("a red fox")).await;
    let b = run("text-to-image", small_job("a red fox")).await;
    let fetch = async |job: &Value| {
        srv.download(job["result"]["image_url"].as_str().unwrap())
            .await
    };
    // Each file carries its own credentials (ids, times, signature); the
    // pictures are the same.
    let pixels = |bytes: &[u8]| image::load_from_memory(bytes).unwrap().to_rgba8();
    assert_eq!(
        pixels(&fetch(&a).await),
        pixels(&fetch(&b).await),
        "same inputs, same picture"
    );

    // Image-to-image from an image id of ours; upscale really doubles.
    let source_id = a["result"]["image_id"].as_str().unwrap();
    let i2i = run(
        "image-to-image",
        json!({
            "prompt": "a blue fox", "model": "stable-diffusion-1.5", "source_image": source_id,
            "strength": 0.5, "steps": 3,
        }),
    )
    .await;
    assert_eq!(i2i["params"]["strength"], 0.5);
    let up = run("upscale", json!({ "image": source_id, "scale": 2 })).await;
    let png = image::load_from_memory(
        &srv.download(up["result"]["image_url"].as_str().unwrap())
            .await,
    )
    .unwrap();
    assert_eq!((png.width(), png.height()), (128, 128));
    let inpaint = run(
        "inpaint",
        json!({
            "prompt": "a window", "model": "stable-diffusion-1.5", "steps": 3,
            "source_image": png_base64(64, 64, [200, 10, 10]),
            "mask_image": format!("data:image/png;base64,{}", png_base64(64, 64, [0, 0, 0])),
        }),
    )
    .await;
    // A black mask keeps the source everywhere.
    let png = image::load_from_memory(
        &srv.download(inpaint["result"]["image_url"].as_str().unwrap())
            .await,
    )
    .unwrap()
    .to_rgba8();
    assert_eq!(png.get_pixel(10, 10).0, [200, 10, 10, 255]);
}

#[tokio::test]
async fn save_to_board_adds_the_images_to_the_board() {
    use pingvas_tests::pingvas_host::store::images as img;
    let srv = TestServer::start().await;
    let alice = srv.signup("alice@example.com").await;
    let bob = srv.signup("bob@example.com").await;
    let (status, created) = srv
        .post(
            "/boards",
            Some(&alice.access),
            json!({ "name": "favourites" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let board_id = created["data"]["id"].as_str().unwrap().to_owned();
    let mut body = small_job("a boat");
    body["save_to_board"] = json!(board_id);
    let refused = srv
        .generate("text-to-image", &bob.access, body.clone())
        .await;
    let e = assert_error(&refused, StatusCode::BAD_REQUEST, "INVALID_PARAMETERS");
    assert_eq!(e["details"]["field"], "save_to_board");
    let mut events = srv.events(&alice.access, None).await;
    let (s, b) = srv.generate("text-to-image", &alice.access, body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let id = b["data"]["job_id"].as_str().unwrap();
    let done = events.until_end(id).await;
    assert_eq!(done["type"], "job.completed");
    let on_board = img::board_image_ids(&srv.state.db, &board_id)
        .await
        .unwrap();
    assert_eq!(
        on_board,
        vec![
            done["data"]["images"][0]["image_id"]
                .as_str()
                .unwrap()
                .to_owned()
        ]
    );
}

#[tokio::test]
async fn every_invalid_parameter_is_named() {
    let srv = TestServer::start().await;
    let alice = srv.signup("alice@example.com").await;
    let bob = srv.signup("bob@example.com").await;
    let mut events = srv.events(&bob.access, None).await;
    let (_, b) = srv
        .generate("text-to-image", &bob.access, small_job("bob's"))
        .await;
    let bobs_job = b["data"]["job_id"].as_str().unwrap().to_owned();
    let end = events.until_end(&bobs_job).await;
    let bobs_image = end["data"]["images"][0]["image_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let with = |patch: Value| {
        let mut body = small_job("x");
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        body
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        ("text-to-image", with(json!({ "width": 1001 })), "width"),
        ("text-to-image", with(json!({ "height": 56 })), "height"),
        ("text-to-image", with(json!({ "width": 2056 })), "width"),
        ("text-to-image", with(json!({ "width": "wide" })), "width"),
        ("text-to-image", with(json!({ "steps": 0 })), "steps"),
        ("text-to-image", with(json!({ "steps": 151 })), "steps"),
        (
            "text-to-image",
            with(json!({ "cfg_scale": 30.5 })),
            "cfg_scale",
        ),
        (
            "text-to-image",
            with(json!({ "cfg_scale": -1 })),
            "cfg_scale",
        ),
        (
            "text-to-image",
            with(json!({ "sampler": "warp_drive" })),
            "sampler",
        ),
        (
            "text-to-image",
            with(json!({ "batch_size": 9 })),
            "batch_size",
        ),
        (
            "text-to-image",
            with(json!({ "batch_size": 0 })),
            "batch_size",
        ),
        ("text-to-image", with(json!({ "seed": -2 })), "seed"),
        ("text-to-image", with(json!({ "prompt": "   " })), "prompt"),
        ("text-to-image", with(json!({ "prompt": null })), "body"),
        (
            "text-to-image",
            with(json!({ "model": "no-such-model" })),
            "model",
        ),
        (
            "text-to-image",
            with(json!({ "model": "add_detail" })),
            "model",
        ),
        (
            "text-to-image",
            with(json!({ "loras": [{ "name": "nope", "weight": 0.5 }] })),
            "loras[0].name",
        ),
        ("text-to-image", with(json!({ "stepz": 3 })), "stepz"),
        (
            "text-to-image",
            with(json!({ "pre_nodes": [{ "name": "no-such-node" }] })),
            "pre_nodes[0].name",
        ),
        (
            "image-to-image",
            json!({ "prompt": "x", "model": "stable-diffusion-1.5", "source_image": "%%%" }),
            "source_image",
        ),
        (
            "image-to-image",
            json!({ "prompt": "x", "model": "stable-diffusion-1.5", "source_image": "aGVsbG8=" }),
            "source_image",
        ),
        (
            "image-to-image",
            json!({ "prompt": "x", "model": "stable-diffusion-1.5", "source_image": bobs_image }),
            "source_image",
        ),
        (
            "image-to-image",
            json!({ "prompt": "x", "model": "stable-diffusion-1.5", "source_image": png_base64(64, 64, [1, 2, 3]), "strength": 1.5 }),
            "strength",
        ),
        (
            "upscale",
            json!({ "image": png_base64(64, 64, [1, 2, 3]), "scale": 5 }),
            "scale",
        ),
        (
            "upscale",
            json!({ "image": png_base64(64, 64, [1, 2, 3]), "model": "stable-diffusion-1.5" }),
            "model",
        ),
        (
            "upscale",
            json!({ "image": png_base64(2100, 8, [1, 2, 3]), "scale": 2 }),
            "image",
        ),
        (
            "inpaint",
            json!({ "prompt": "x", "model": "stable-diffusion-1.5", "source_image": png_base64(64, 64, [1, 2, 3]), "mask_image": png_base64(72, 64, [0, 0, 0]) }),
            "mask_image",
        ),
    ];
    let before = srv.credits(&alice.user_id).await;
    for (kind, body, field) in cases {
        let got = srv.generate(kind, &alice.access, body.clone()).await;
        let e = assert_error(&got, StatusCode::BAD_REQUEST, "INVALID_PARAMETERS");
        assert_eq!(e["details"]["field"], field, "{kind} {body}: {e}");
    }
    let not_json = srv
        .client
        .post(srv.url("/generate/text-to-image"))
        .bearer_auth(&alice.access)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
    let v: Value = not_json.json().await.unwrap();
    // Malformed JSON is the same error on every route.
    assert_eq!(v["error"]["code"], "VALIDATION_ERROR");
    assert_eq!(v["error"]["details"]["reason"], "malformed_json");
    assert_eq!(
        srv.credits(&alice.user_id).await,
        before,
        "nothing reserved"
    );
    let unauth = srv
        .generate("text-to-image", "not-a-token", small_job("x"))
        .await;
    assert_error(&unauth, StatusCode::UNAUTHORIZED, "INVALID_TOKEN");
}

#[tokio::test]
async fn models_and_loras_are_gated_by_tier() {
    let srv = TestServer::start_with(|c| c.worker_paused = true).await;
    let free = srv.signup("free@example.com").await;
    let pro = srv.signup("pro@example.com").await;
    srv.set_tier("pro@example.com", "pro").await;
    let sdxl = json!({ "prompt": "x", "model": "stable-diffusion-xl", "width": 64, "height": 64, "steps": 2 });
    let e = assert_error(
        &srv.generate("text-to-image", &free.access, sdxl.clone())
            .await,
        StatusCode::FORBIDDEN,
        "MODEL_NOT_AVAILABLE",
    );
    assert_eq!(e["details"]["required_tier"], "starter");
    let mut lora = small_job("x");
    lora["loras"] = json!([{ "name": "add_detail", "weight": 0.8 }]);
    assert_error(
        &srv.generate("text-to-image", &free.access, lora.clone())
            .await,
        StatusCode::FORBIDDEN,
        "MODEL_NOT_AVAILABLE",
    );
    // The pro user may use both, within the rules.
    let e = assert_error(
        &srv.generate("text-to-image", &pro.access, lora).await,
        StatusCode::BAD_REQUEST,
        "INVALID_PARAMETERS",
    );
    assert_eq!(
        e["details"]["field"], "loras[0].name",
        "an SDXL LoRA on SD 1.5: {e}"
    );
    let mut heavy = sdxl.clone();
    heavy["loras"] = json!([{ "name": "add_detail", "weight": 3.0 }]);
    let e = assert_error(
        &srv.generate("text-to-image", &pro.access, heavy).await,
        StatusCode::BAD_REQUEST,
        "INVALID_PARAMETERS",
    );
    assert_eq!(e["details"]["field"], "loras[0].weight");
    let mut ok = sdxl;
    ok["loras"] = json!([{ "name": "add_detail", "weight": 0.8 }]);
    let (s, b) = srv.generate("text-to-image", &pro.access, ok).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let flux = json!({ "prompt": "x", "model": "flux-dev", "width": 64, "height": 64, "steps": 2 });
    let (s, b) = srv.generate("text-to-image", &pro.access, flux).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
}

#[tokio::test]
async fn a_model_no_worker_serves_is_refused_not_queued() {
    let srv = TestServer::start_with(|c| c.worker_models = "stable-diffusion-1.5".into()).await;
    let alice = srv.signup("alice@example.com").await;
    srv.set_tier("alice@example.com", "starter").await;
    let before = srv.credits(&alice.user_id).await;
    let body = json!({ "prompt": "x", "model": "stable-diffusion-xl", "width": 64, "height": 64, "steps": 2 });
    let e = assert_error(
        &srv.generate("text-to-image", &alice.access, body).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "SERVICE_UNAVAILABLE",
    );
    assert_eq!(e["details"]["model"], "stable-diffusion-xl");
    assert_eq!(srv.credits(&alice.user_id).await, before);
    let (s, _) = srv
        .generate("text-to-image", &alice.access, small_job("served"))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
}

/// A PNG whose header claims `width`×`height` but whose data is `idat`.
fn png_claiming(width: u32, height: u32, idat: &[u8]) -> String {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for b in bytes {
            crc ^= u32::from(*b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]); // 8-bit RGBA
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", idat);
    chunk(&mut png, b"IEND", &[]);
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(png)
}

async fn stored_inputs(srv: &TestServer) -> usize {
    srv.state.blobs.list("inputs").await.unwrap().len()
}

#[tokio::test]
async fn oversized_and_bomb_images_are_refused_before_anything_is_reserved_or_stored() {
    let srv = TestServer::start().await;
    let alice = srv.signup("alice@example.com").await;
    let before = srv.credits(&alice.user_id).await;
    let cases = [
        // A decompression bomb: 60 000² pixels claimed by a tiny file.
        (
            "bomb",
            png_claiming(
                60_000,
                60_000,
                &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
            ),
        ),
        // Larger than the API takes for a source (2048²).
        (
            "oversized",
            png_claiming(
                3000,
                1000,
                &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
            ),
        ),
        // A plausible header over pixels that do not decode.
        ("broken", png_claiming(64, 64, b"not zlib at all")),
    ];
    for (case, image) in cases {
        for (kind, field, body) in [
            (
                "image-to-image",
                "source_image",
                json!({ "prompt": "p", "model": "stable-diffusion-1.5", "source_image": image }),
            ),
            ("upscale", "image", json!({ "image": image })),
        ] {
            let r = srv.generate(kind, &alice.access, body).await;
            let e = assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_PARAMETERS");
            assert_eq!(e["details"]["field"], field, "{case} {kind}: {e}");
        }
    }
    assert_eq!(
        srv.credits(&alice.user_id).await,
        before,
        "nothing reserved"
    );
    assert_eq!(stored_inputs(&srv).await, 0, "nothing stored");

    // A refused job keeps no upload either: too few credits for the job.
    srv.set_credits(&alice.user_id, 0).await;
    let body = json!({ "prompt": "p", "model": "stable-diffusion-1.5",
                       "source_image": png_base64(64, 64, [1, 2, 3]) });
    let r = srv.generate("image-to-image", &alice.access, body).await;
    assert_error(&r, StatusCode::PAYMENT_REQUIRED, "INSUFFICIENT_CREDITS");
    assert_eq!(stored_inputs(&srv).await, 0);
    // An accepted one stores its input.
    srv.set_credits(&alice.user_id, 100).await;
    let body = json!({ "prompt": "p", "model": "stable-diffusion-1.5",
                       "source_image": png_base64(64, 64, [1, 2, 3]) });
    let (s, b) = srv.generate("image-to-image", &alice.access, body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(stored_inputs(&srv).await, 1);
}
