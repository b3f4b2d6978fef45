//! 큐 관리 API: cancel with exact refunds, reservations under concurrency,
//! quotas, fair dispatch, failing nodes, and a worker killed mid-job.

use futures::future::join_all;
use pingvas_tests::pingvas_host::queue::job::credits_for;
use pingvas_tests::{TestServer, WORKER_TOKEN, assert_error, small_job};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn cancelling_a_queued_job_refunds_everything() {
    let srv = TestServer::start_with(|c| c.worker_paused = true).await;
    let alice = srv.signup("alice@example.com").await;
    let before = srv.credits(&alice.user_id).await;
    let mut events = srv.events(&alice.access, None).await;
    let (s, b) = srv
        .generate("text-to-image", &alice.access, small_job("wait"))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let id = b["data"]["job_id"].as_str().unwrap().to_owned();
    let est = b["data"]["estimated_credits"].as_i64().unwrap();
    let held = srv.credits(&alice.user_id).await;
    assert_eq!(held, (before.0, est, before.2 - est), "reserved at enqueue");

    let (s, status) = srv.get("/queue/status", Some(&alice.access)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(status["data"]["queued_jobs"], 1);
    assert_eq!(status["data"]["queued"][0]["job_id"], id.as_str());
    assert_eq!(status["data"]["queued"][0]["position"], 1);
    let (_, items) = srv
        .get("/queue/items?status=queued", Some(&alice.access))
        .await;
    assert_eq!(items["meta"]["total"], 1);

    let (s, c) = srv.cancel(&alice.access, &id).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(
        c["data"],
        json!({ "job_id": id, "status": "cancelled", "credits_refunded": est, "credits_used": 0 })
    );
    assert_eq!(srv.credits(&alice.user_id).await, before);
    let e = events.until("job.cancelled", &id).await;
    assert_eq!(e["data"]["credits_refunded"], est);
    let again = srv.cancel(&alice.access, &id).await;
    assert_error(&again, StatusCode::CONFLICT, "CONFLICT");
    let bob = srv.signup("bob@example.com").await;
    let theirs = srv.cancel(&bob.access, &id).await;
    assert_error(&theirs, StatusCode::NOT_FOUND, "NOT_FOUND");
    let (_, items) = srv
        .get("/queue/items?status=cancelled", Some(&alice.access))
        .await;
    assert_eq!(items["data"][0]["credits_refunded"], est);
    assert_error(
        &srv.get("/queue/items?status=lost", Some(&alice.access))
            .await,
        StatusCode::BAD_REQUEST,
        "INVALID_PARAMETERS",
    );
}

#[tokio::test]
async fn cancelling_a_running_job_charges_the_gpu_time_used() {
    let srv = TestServer::start().await;
    let alice = srv.signup("alice@example.com").await;
    let before = srv.credits(&alice.user_id).await;
    let mut events = srv.events(&alice.access, None).await;
    let big = json!({ "prompt": "a long one", "model": "stable-diffusion-1.5",
                      "width": 1024, "height": 1024, "steps": 150, "seed": 1 });
    let (s, b) = srv.generate("text-to-image", &alice.access, big).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let id = b["data"]["job_id"].as_str().unwrap().to_owned();
    let est = b["data"]["estimated_credits"].as_i64().unwrap();
    events.until("job.progress", &id).await;

    let (s, c) = srv.cancel(&alice.access, &id).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let used = c["data"]["credits_used"].as_i64().unwrap();
    let refunded = c["data"]["credits_refunded"].as_i64().unwrap();
    assert!(used >= 1, "a running job pays for its GPU time: {c}");
    assert_eq!(used + refunded, est);
    assert_eq!(
        srv.credits(&alice.user_id).await,
        (before.0 - used, 0, before.2 - used)
    );
    let job = srv.job(&alice.access, &id).await;
    assert_eq!(job["status"], "cancelled");
    assert_eq!(job["credits_used"], used);
    assert!(job["result"].is_null());
    // The worker stops and takes the next job.
    let (_, b) = srv
        .generate("text-to-image", &alice.access, small_job("next"))
        .await;
    let next = b["data"]["job_id"].as_str().unwrap().to_owned();
    assert_eq!(events.until_end(&next).await["type"], "job.completed");
    assert_eq!(srv.job(&alice.access, &id).await["status"], "cancelled");
    assert_eq!(
        srv.state.ledger.log_sum(&alice.user_id).await.unwrap(),
        srv.credits(&alice.user_id).await.0
    );
}

#[tokio::test]
async fn forty_concurrent_enqueues_with_credits_for_ten() {
    let srv = TestServer::start_with(|c| c.worker_paused = true).await;
    let alice = srv.signup("alice@example.com").await;
    srv.set_tier("alice@example.com", "studio").await;
    let (s, first) = srv
        .generate("text-to-image", &alice.access, small_job("probe"))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let est = first["data"]["estimated_credits"].as_i64().unwrap();
    let id = first["data"]["job_id"].as_str().unwrap();
    srv.cancel(&alice.access, id).await;
    srv.set_credits(&alice.user_id, 10 * est).await;

    let results = join_all((0..40).map(|i| {
        srv.generate(
            "text-to-image",
            &alice.access,
            small_job(&format!("job {i}")),
        )
    }))
    .await;
    let accepted = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::ACCEPTED)
        .count();
    assert_eq!(accepted, 10, "{results:?}");
    for r in results.iter().filter(|(s, _)| *s != StatusCode::ACCEPTED) {
        let e = assert_error(r, StatusCode::PAYMENT_REQUIRED, "INSUFFICIENT_CREDITS");
        assert_eq!(e["details"]["required"], est);
        assert_eq!(e["details"]["available"], 0);
    }
    let (balance, reserved, available) = srv.credits(&alice.user_id).await;
    assert_eq!((reserved, available), (10 * est, 0));
    assert_eq!(balance, 10 * est);
    let mut positions: Vec<i64> = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::ACCEPTED)
        .map(|(_, b)| b["data"]["queue_position"].as_i64().unwrap())
        .collect();
    positions.sort();
    assert_eq!(positions, (1..=10).collect::<Vec<_>>());
    srv.assert_queue_counters().await;
}

#[tokio::test]
async fn queue_caps_answer_quota_exceeded_and_queue_full() {
    let srv = TestServer::start_with(|c| {
        c.worker_paused = true;
        c.queue_max_queued = 12;
        c.queue_tier_headroom = 0.0;
    })
    .await;
    let free = srv.signup("free@example.com").await;
    let plan_cap = srv.state.plans.tier("free").max_queued as usize;
    for i in 0..plan_cap {
        let (s, b) = srv
            .generate("text-to-image", &free.access, small_job(&format!("{i}")))
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    }
    let before = srv.credits(&free.user_id).await;
    let e = assert_error(
        &srv.generate("text-to-image", &free.access, small_job("one more"))
            .await,
        StatusCode::TOO_MANY_REQUESTS,
        "QUOTA_EXCEEDED",
    );
    assert_eq!(e["details"]["max_queued"], plan_cap);
    assert_eq!(
        srv.credits(&free.user_id).await,
        before,
        "a refused job reserves nothing"
    );
    let other = srv.signup("other@example.com").await;
    srv.set_tier("other@example.com", "studio").await;
    for i in plan_cap..12 {
        let (s, b) = srv
            .generate("text-to-image", &other.access, small_job(&format!("{i}")))
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    }
    let e = assert_error(
        &srv.generate("text-to-image", &other.access, small_job("full"))
            .await,
        StatusCode::TOO_MANY_REQUESTS,
        "QUEUE_FULL",
    );
    assert_eq!(e["details"]["max_queued"], 12);
    srv.assert_queue_counters().await;
}

#[tokio::test]
async fn a_flood_from_the_free_tier_leaves_room_for_paying_users() {
    // 20 queued jobs in all; free may fill half, studio 17, enterprise all.
    let srv = TestServer::start_with(|c| {
        c.worker_paused = true;
        c.queue_max_queued = 20;
        c.queue_tier_headroom = 0.5;
    })
    .await;
    let mut flooders = Vec::new();
    for i in 0..2 {
        flooders.push(srv.signup(&format!("flood{i}@example.com")).await);
    }
    let mut accepted = 0;
    let mut refused = Vec::new();
    for f in &flooders {
        for i in 0..10 {
            let got = srv
                .generate("text-to-image", &f.access, small_job(&format!("{i}")))
                .await;
            match got.0 {
                StatusCode::ACCEPTED => accepted += 1,
                _ => refused.push(got),
            }
        }
    }
    assert_eq!(accepted, 10, "the free tier fills its half");
    for r in &refused {
        let e = assert_error(r, StatusCode::TOO_MANY_REQUESTS, "QUEUE_FULL");
        assert_eq!(e["details"]["max_queued"], 10);
    }
    let studio = srv.signup("studio@example.com").await;
    srv.set_tier("studio@example.com", "studio").await;
    for i in 0..7 {
        let (s, b) = srv
            .generate("text-to-image", &studio.access, small_job(&format!("s{i}")))
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "studio job {i}: {b}");
    }
    let e = assert_error(
        &srv.generate("text-to-image", &studio.access, small_job("s7"))
            .await,
        StatusCode::TOO_MANY_REQUESTS,
        "QUEUE_FULL",
    );
    assert_eq!(e["details"]["max_queued"], 17);
    let top = srv.signup("enterprise@example.com").await;
    srv.set_tier("enterprise@example.com", "enterprise").await;
    for i in 0..3 {
        let (s, b) = srv
            .generate("text-to-image", &top.access, small_job(&format!("e{i}")))
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "enterprise job {i}: {b}");
    }
    assert_error(
        &srv.generate("text-to-image", &top.access, small_job("e3"))
            .await,
        StatusCode::TOO_MANY_REQUESTS,
        "QUEUE_FULL",
    );
    srv.assert_queue_counters().await;
}

/// Enqueues arriving together share a transaction (group commit); every
/// cap must hold as if each came alone: each user's own cap and credits
/// (the queue's room per tier: `a_flood_from_the_free_tier…`).
#[tokio::test]
async fn concurrent_enqueues_of_many_users_keep_every_cap() {
    let srv = TestServer::start_with(|c| {
        c.worker_paused = true;
    })
    .await;
    let plan_cap = srv.state.plans.tier("free").max_queued as i64;
    // Three free users: one with credits for 2 jobs, two with plenty
    // (capped by the plan); one studio user with credits for 9.
    let (s, probe) = {
        let p = srv.signup("probe@example.com").await;
        srv.generate("text-to-image", &p.access, small_job("probe"))
            .await
    };
    assert_eq!(s, StatusCode::ACCEPTED, "{probe}");
    let est = probe["data"]["estimated_credits"].as_i64().unwrap();
    let mut users = Vec::new();
    for (email, tier, credits) in [
        ("poor@example.com", "free", 2 * est),
        ("rich1@example.com", "free", 100 * est),
        ("rich2@example.com", "free", 100 * est),
        ("studio@example.com", "studio", 9 * est),
    ] {
        let u = srv.signup(email).await;
        srv.set_tier(email, tier).await;
        srv.set_credits(&u.user_id, credits).await;
        users.push(u);
    }
    let srv = &srv;
    let requests = users.iter().flat_map(|u| {
        (0..12).map(move |i| async move {
            (
                u.user_id.clone(),
                srv.generate("text-to-image", &u.access, small_job(&format!("{i}")))
                    .await,
            )
        })
    });
    let results = join_all(requests).await;
    let accepted_of = |user: &str| {
        results
            .iter()
            .filter(|(u, (s, _))| u == user && *s == StatusCode::ACCEPTED)
            .count() as i64
    };
    let expected = [2, plan_cap, plan_cap, 9];
    for (u, want) in users.iter().zip(expected) {
        assert_eq!(accepted_of(&u.user_id), want, "{}", u.user_id);
        let (_, reserved, _) = srv.credits(&u.user_id).await;
        assert_eq!(reserved, want * est, "reserved exactly the accepted jobs");
    }
    for (user, got) in &results {
        if got.0 == StatusCode::ACCEPTED {
            continue;
        }
        let code = got.1["error"]["code"].as_str().unwrap_or_default();
        let want = if *user == users[1].user_id || *user == users[2].user_id {
            "QUOTA_EXCEEDED"
        } else {
            "INSUFFICIENT_CREDITS"
        };
        assert_eq!(code, want, "{user}: {}", got.1);
    }
    let (_, status) = srv.get("/queue/status", Some(&users[3].access)).await;
    assert_eq!(status["data"]["queued_jobs"], 9, "{status}");
    srv.assert_queue_counters().await;
    assert_eq!(
        srv.count("SELECT COUNT(*) FROM credit_holds WHERE state = 'pending'")
            .await,
        1 + 2 + 2 * plan_cap + 9
    );
}

/// A worker speaking the internal API by hand.
async fn lease(srv: &TestServer, worker: &str, wait_ms: u64) -> (StatusCode, Value) {
    let resp = srv
        .client
        .post(format!("{}/internal/v1/lease", srv.base))
        .bearer_auth(WORKER_TOKEN)
        .json(&json!({ "worker_id": worker, "name": worker, "backend": "manual", "models": null, "wait_ms": wait_ms, "worker_key": format!("key-of-{worker}") }))
        .send()
        .await
        .unwrap();
    let s = resp.status();
    (s, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn one_users_backlog_does_not_starve_another() {
    let srv = TestServer::start_with(|c| {
        c.worker_enabled = false;
        c.worker_token = Some(WORKER_TOKEN.to_owned().into());
    })
    .await;
    // Registers the worker (nothing to lease yet).
    assert_eq!(lease(&srv, "w1", 0).await.0, StatusCode::NO_CONTENT);
    let a = srv.signup("a@example.com").await;
    let b = srv.signup("b@example.com").await;
    for email in ["a@example.com", "b@example.com"] {
        srv.set_tier(email, "studio").await;
    }
    srv.set_credits(&a.user_id, 1000).await;
    for i in 0..50 {
        let (s, body) = srv
            .generate("text-to-image", &a.access, small_job(&format!("a{i}")))
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    }
    let (s, body) = srv
        .generate("text-to-image", &b.access, small_job("b"))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let b_job = body["data"]["job_id"].as_str().unwrap().to_owned();
    assert!(
        body["data"]["queue_position"].as_i64().unwrap() <= 2,
        "{body}"
    );
    let mut dispatched = Vec::new();
    for _ in 0..2 {
        let (s, l) = lease(&srv, "w1", 0).await;
        assert_eq!(s, StatusCode::OK, "{l}");
        dispatched.push(l["data"]["user_id"].as_str().unwrap().to_owned());
        if l["data"]["job_id"] == b_job.as_str() {
            break;
        }
    }
    assert!(
        dispatched.contains(&b.user_id),
        "B waited behind A: {dispatched:?}"
    );
    // Unauthenticated workers get nothing.
    let resp = srv
        .client
        .post(format!("{}/internal/v1/lease", srv.base))
        .bearer_auth("wrong")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn nodes_run_inside_the_job_and_a_failing_one_is_charged() {
    let srv = TestServer::start().await;
    let alice = srv.signup_admin("alice@example.com").await;
    srv.publish_node(&alice.access, "prompt-style", "prompt-style")
        .await;
    srv.publish_node(&alice.access, "watermark", "watermark")
        .await;
    let before = srv.credits(&alice.user_id).await;
    let mut events = srv.events(&alice.access, None).await;

    let mut body = small_job("a castle");
    body["pre_nodes"] = json!([{ "name": "prompt-style", "parameters": { "style": "cinematic" } }]);
    body["post_nodes"] = json!([{ "name": "watermark", "parameters": { "text": "PV" } }]);
    let (s, b) = srv.generate("text-to-image", &alice.access, body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let id = b["data"]["job_id"].as_str().unwrap().to_owned();
    let end = events.until_end(&id).await;
    assert_eq!(end["type"], "job.completed", "{end}");
    let job = srv.job(&alice.access, &id).await;
    assert_eq!(job["params"]["pre_nodes"][0]["version"], "0.1.0");
    let row = pingvas_tests::pingvas_host::store::images::get(
        &srv.state.db,
        job["result"]["image_id"].as_str().unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    let meta: Value = serde_json::from_str(&row.metadata).unwrap();
    assert_ne!(
        meta["prompt"], "a castle",
        "the pre-node rewrote the prompt: {meta}"
    );

    // A post-node that refuses its parameters fails the job after
    // inference: the user chose that code, so the work is charged, exactly
    // what was used and no more than reserved.
    let mid = srv.credits(&alice.user_id).await;
    let mut bad = small_job("a castle");
    bad["post_nodes"] = json!([{ "name": "watermark", "parameters": { "opacity": "opaque" } }]);
    let (s, b) = srv.generate("text-to-image", &alice.access, bad).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let id = b["data"]["job_id"].as_str().unwrap().to_owned();
    let estimated = b["data"]["estimated_credits"].as_i64().unwrap();
    let end = events.until_end(&id).await;
    assert_eq!(end["type"], "job.failed", "{end}");
    let error = &end["data"]["error"];
    assert_eq!(error["code"], "PLUGIN_FAILED");
    assert_eq!(error["message"], "플러그인 노드 실행에 실패했습니다.");
    assert!(
        error["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("watermark: ") && r.chars().count() <= 256),
        "{end}"
    );
    let used = end["data"]["credits_used"].as_i64().unwrap();
    assert!(used >= 1, "the GPU time was charged: {end}");
    assert_eq!(
        used + end["data"]["credits_refunded"].as_i64().unwrap(),
        estimated
    );
    let after = srv.credits(&alice.user_id).await;
    assert_eq!(after, (mid.0 - used, 0, mid.0 - used), "ledger-exact");
    assert_eq!(
        srv.state.ledger.log_sum(&alice.user_id).await.unwrap(),
        after.0
    );
    let job = srv.job(&alice.access, &id).await;
    assert_eq!(
        (job["status"].as_str(), job["credits_used"].as_i64()),
        (Some("failed"), Some(used))
    );
    assert!(before.0 >= mid.0);
    // A pre-node given where a post-node belongs is refused up front.
    let mut wrong = small_job("x");
    wrong["post_nodes"] = json!([{ "name": "prompt-style" }]);
    let e = assert_error(
        &srv.generate("text-to-image", &alice.access, wrong).await,
        StatusCode::BAD_REQUEST,
        "INVALID_PARAMETERS",
    );
    assert_eq!(e["details"]["field"], "post_nodes[0].name");
}

/// A hand-driven worker leases `user`'s next job and reports it failed
/// with `code` after `seconds` of work; the job as the owner sees it.
async fn fail_by_hand(srv: &TestServer, token: &str, code: &str, seconds: f64) -> Value {
    let (s, l) = lease(srv, "manual", 5_000).await;
    assert_eq!(s, StatusCode::OK, "{l}");
    let job_id = l["data"]["job_id"].as_str().unwrap().to_owned();
    let resp = srv
        .client
        .post(format!("{}/internal/v1/jobs/{job_id}/fail", srv.base))
        .bearer_auth(WORKER_TOKEN)
        .json(
            &json!({ "lease_token": l["data"]["lease_token"], "code": code,
                       "reason": "x: trap\nsecret pixels", "worker_seconds": seconds }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    srv.job(token, &job_id).await
}

#[tokio::test]
async fn users_own_failures_are_charged_and_the_backends_refunded_to_the_credit() {
    let srv = TestServer::start_with(|c| {
        c.worker_enabled = false;
        c.worker_token = Some(WORKER_TOKEN.to_owned().into());
    })
    .await;
    assert_eq!(lease(&srv, "manual", 0).await.0, StatusCode::NO_CONTENT);
    let alice = srv.signup("alice@example.com").await;
    srv.set_credits(&alice.user_id, 1000).await;
    let model = srv
        .state
        .models
        .get("stable-diffusion-1.5")
        .unwrap()
        .clone();
    let mut body = small_job("big");
    body["width"] = json!(1024);
    body["height"] = json!(1024);
    body["steps"] = json!(50);

    // The user's node failed after 3.5 s of GPU and node time: charged.
    let (s, b) = srv
        .generate("text-to-image", &alice.access, body.clone())
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let estimated = b["data"]["estimated_credits"].as_i64().unwrap();
    let job = fail_by_hand(&srv, &alice.access, "PLUGIN_FAILED", 3.5).await;
    let expected = credits_for(3.5, &model).min(estimated);
    assert_eq!(job["credits_used"].as_i64(), Some(expected), "{job}");
    assert_eq!(job["credits_refunded"].as_i64(), Some(estimated - expected));
    assert_eq!(
        job["error"]["reason"], "x: trap secret pixels",
        "one clean line"
    );
    assert_eq!(
        srv.credits(&alice.user_id).await,
        (1000 - expected, 0, 1000 - expected)
    );

    // The backend failed after as long: nothing charged, whatever the
    // worker claims.
    let (s, b) = srv.generate("text-to-image", &alice.access, body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let job = fail_by_hand(&srv, &alice.access, "INFERENCE_FAILED", 3.5).await;
    assert_eq!(job["credits_used"].as_i64(), Some(0), "{job}");
    assert_eq!(
        srv.credits(&alice.user_id).await,
        (1000 - expected, 0, 1000 - expected)
    );
    assert_eq!(
        srv.state.ledger.log_sum(&alice.user_id).await.unwrap(),
        1000 - expected
    );
}

#[tokio::test]
async fn events_need_a_token_and_resume_from_the_last_id() {
    let srv = TestServer::start().await;
    let alice = srv.signup("alice@example.com").await;
    let resp = srv
        .client
        .get(format!("{}/api/v1/ws", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let url = format!(
        "{}/api/v1/ws?token=nope",
        srv.base.replacen("http", "ws", 1)
    );
    assert!(tokio_tungstenite::connect_async(url).await.is_err());

    // The token may come as a sub-protocol.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("{}/api/v1/ws", srv.base.replacen("http", "ws", 1))
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        format!("pingvas.v1, bearer.{}", alice.access)
            .parse()
            .unwrap(),
    );
    let (_ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("protocol auth");
    assert_eq!(resp.headers()["sec-websocket-protocol"], "pingvas.v1");

    let mut first = srv.events(&alice.access, None).await;
    let (_, b) = srv
        .generate("text-to-image", &alice.access, small_job("one"))
        .await;
    let one = b["data"]["job_id"].as_str().unwrap().to_owned();
    let queued = first.until("job.queued", &one).await;
    let resume_from = queued["id"].as_str().unwrap().to_owned();
    first.until_end(&one).await;
    drop(first);
    // Reconnect from the queued event: everything after it, in order.
    let mut again = srv.events(&alice.access, Some(&resume_from)).await;
    assert_eq!(again.hello.as_ref().unwrap()["complete"], true);
    let replayed = again.until_end(&one).await;
    assert_eq!(replayed["type"], "job.completed");
    let kinds = again.kinds_of(&one);
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("job.started"),
        "{kinds:?}"
    );
    assert!(!kinds.contains(&"job.queued".to_owned()));
}

#[tokio::test]
async fn a_node_that_loops_or_hoards_memory_fails_only_its_job() {
    let srv = TestServer::start_with(|c| {
        c.plugin_limits.insert(
            "hostile".into(),
            pingvas_tests::pingvas_host::plugins::limits::LimitsOverride {
                timeout_ms: Some(300),
                memory_mib: Some(32),
                ..Default::default()
            },
        );
    })
    .await;
    let alice = srv.signup("alice@example.com").await;
    srv.publish_node(&alice.access, "hostile", "hostile-node")
        .await;
    let before = srv.credits(&alice.user_id).await;
    let mut events = srv.events(&alice.access, None).await;
    let mut charged = 0;
    for (mode, cause) in [
        ("loop", "timeout"),
        ("memory", "memory_limit"),
        ("panic", "trap"),
    ] {
        let mut body = small_job(mode);
        body["pre_nodes"] = json!([{ "name": "hostile", "parameters": { "mode": mode } }]);
        let (s, b) = srv.generate("text-to-image", &alice.access, body).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        let end = events
            .until_end(b["data"]["job_id"].as_str().unwrap())
            .await;
        assert_eq!(end["type"], "job.failed", "{mode}: {end}");
        let error = &end["data"]["error"];
        assert_eq!(error["code"], "PLUGIN_FAILED", "{mode}: {end}");
        // The cause, never the guest's own text (the panic message).
        assert_eq!(
            error["reason"],
            format!("hostile: {cause}"),
            "{mode}: {end}"
        );
        assert!(!end.to_string().contains("on purpose"), "{end}");
        // The node's wall time occupied the worker: charged.
        charged += end["data"]["credits_used"].as_i64().unwrap();
    }
    assert!(charged >= 3, "each failing node's time was charged");
    let after = srv.credits(&alice.user_id).await;
    assert_eq!(after, (before.0 - charged, 0, before.0 - charged));
    // The worker keeps serving.
    let (_, b) = srv
        .generate("text-to-image", &alice.access, small_job("fine"))
        .await;
    let end = events
        .until_end(b["data"]["job_id"].as_str().unwrap())
        .await;
    assert_eq!(end["type"], "job.completed");
}

#[tokio::test]
async fn event_sockets_are_capped_per_user_small_and_end_with_the_token() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let srv = TestServer::start_with(|c| {
        c.ws_max_per_user = 2;
        c.access_token_ttl_secs = 2;
    })
    .await;
    let alice = srv.signup("alice@example.com").await;
    let url = format!(
        "{}/api/v1/ws?token={}",
        srv.base.replacen("http", "ws", 1),
        alice.access
    );
    let (mut one, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let (_two, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    // A third socket of the same user is refused before the upgrade.
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS)
        }
        other => panic!("a third socket: {other:?}"),
    }
    // Another user is not affected.
    let bob = srv.signup("bob@example.com").await;
    srv.events(&bob.access, None).await;

    // A message past the cap closes that socket.
    let hello = one.next().await.unwrap().unwrap();
    assert!(hello.to_text().unwrap().contains("connected"));
    let _ = one.send(Message::text("x".repeat(64 << 10))).await;
    let mut closed = false;
    while let Ok(Some(msg)) =
        tokio::time::timeout(std::time::Duration::from_secs(10), one.next()).await
    {
        if matches!(msg, Err(_) | Ok(Message::Close(_))) {
            closed = true;
            break;
        }
    }
    assert!(closed, "an oversized message ends the socket");

    // The socket of a token that expires is closed with 4001 when it does.
    let (mut short, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let mut code = None;
    while let Ok(Some(Ok(msg))) =
        tokio::time::timeout(std::time::Duration::from_secs(30), short.next()).await
    {
        if let Message::Close(frame) = msg {
            code = frame.map(|f| u16::from(f.code));
            break;
        }
    }
    assert_eq!(code, Some(4001), "closed when the token expired");
}

#[tokio::test]
async fn a_worker_fetches_only_its_jobs_plugins_and_unregisters_only_itself() {
    let srv = TestServer::start_with(|c| {
        c.worker_enabled = false;
        c.worker_token = Some(WORKER_TOKEN.to_owned().into());
    })
    .await;
    let alice = srv.signup_admin("alice@example.com").await;
    srv.publish_node(&alice.access, "watermark", "watermark")
        .await;
    srv.publish_node(&alice.access, "grayscale", "grayscale")
        .await;
    assert_eq!(lease(&srv, "w1", 0).await.0, StatusCode::NO_CONTENT);
    let mut body = small_job("pinned");
    body["post_nodes"] = json!([{ "name": "watermark" }]);
    let (s, b) = srv.generate("text-to-image", &alice.access, body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let (_, l) = lease(&srv, "w1", 5_000).await;
    let job = l["data"]["job_id"].as_str().unwrap();
    let token = l["data"]["lease_token"].as_str().unwrap();
    let fetch = |name: &str, token: &str| {
        srv.client
            .get(format!(
                "{}/internal/v1/jobs/{job}/plugins/{name}/0.1.0",
                srv.base
            ))
            .bearer_auth(WORKER_TOKEN)
            .header("x-lease-token", token)
            .send()
    };
    let ok = fetch("watermark", token).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(
        ok.bytes().await.unwrap().to_vec(),
        pingvas_tests::plugin_wasm("watermark")
    );
    // Not pinned by the job, or not this worker's lease: refused.
    assert_eq!(
        fetch("grayscale", token).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        fetch("watermark", "guessed").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );

    // Unregistering takes the worker's own key.
    let goodbye = |key: &str| {
        srv.client
            .delete(format!("{}/internal/v1/workers/w1", srv.base))
            .bearer_auth(WORKER_TOKEN)
            .header("x-worker-key", key)
            .send()
    };
    assert_eq!(
        goodbye("not-mine").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    // Nor can another process take over the id.
    let resp = srv
        .client
        .post(format!("{}/internal/v1/lease", srv.base))
        .bearer_auth(WORKER_TOKEN)
        .json(
            &json!({ "worker_id": "w1", "name": "impostor", "backend": "manual",
                       "models": null, "worker_key": "another-key" }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(goodbye("key-of-w1").await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn nodes_of_both_abi_versions_run_in_one_job() {
    let srv = TestServer::start().await;
    let alice = srv.signup_admin("alice@example.com").await;
    let mut abi = Vec::new();
    for name in ["watermark", "grayscale"] {
        let (s, b) = srv
            .publish(
                &alice.access,
                pingvas_tests::manifest(name, "0.1.0", "node", "public"),
                pingvas_tests::plugin_wasm(name),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        abi.push(b["data"]["version"]["abi_version"].clone());
    }
    assert_eq!(
        abi,
        [json!("0.1.0"), json!("0.2.0")],
        "watermark speaks 0.1.0, grayscale 0.2.0"
    );
    let mut events = srv.events(&alice.access, None).await;
    let mut body = small_job("a harbour");
    body["post_nodes"] =
        json!([{ "name": "watermark", "parameters": { "text": "PV" } }, { "name": "grayscale" }]);
    let (s, b) = srv.generate("text-to-image", &alice.access, body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let id = b["data"]["job_id"].as_str().unwrap().to_owned();
    let end = events.until_end(&id).await;
    assert_eq!(end["type"], "job.completed", "{end}");
    let url = srv.url_of(end["data"]["images"][0]["image_url"].as_str().unwrap());
    let png = srv
        .client
        .get(url)
        .bearer_auth(&alice.access)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let img = image::load_from_memory(&png).unwrap().to_rgba8();
    assert!(
        img.pixels().all(|p| p[0] == p[1] && p[1] == p[2]),
        "the 0.2.0 node ran last: every pixel is grey"
    );
}
