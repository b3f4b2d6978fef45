//! 사용자 API: profile, profile changes, credit history.

use pingvas_host::billing::ledger::TxKind;
use pingvas_tests::{TestServer, assert_error};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn me_has_every_field_of_the_spec() {
    let srv = TestServer::start().await;
    let u = srv.signup("me@example.com").await;
    let (s, body) = srv.get("/users/me", Some(&u.access)).await;
    assert_eq!(s, StatusCode::OK);
    let d = &body["data"];
    for key in [
        "id",
        "email",
        "name",
        "avatar_url",
        "tier",
        "credits",
        "storage_used",
        "storage_quota",
        "subscription",
        "features",
        "created_at",
    ] {
        assert!(d.get(key).is_some(), "missing {key} in {d}");
    }
    assert_eq!(d["tier"], json!("free"));
    assert_eq!(d["credits"], json!(100));
    assert_eq!(d["storage_quota"], json!(2u64 * 1024 * 1024 * 1024));
    assert_eq!(d["features"]["queue_count"], json!(1));
    assert_eq!(d["features"]["flux_model"], json!(false));
    assert!(chrono::DateTime::parse_from_rfc3339(d["created_at"].as_str().unwrap()).is_ok());
}

#[tokio::test]
async fn tier_changes_show_in_features_and_quota() {
    let srv = TestServer::start().await;
    let u = srv.signup("pro@example.com").await;
    pingvas_host::admin::set_tier(&srv.state.db, &srv.state.plans, "pro@example.com", "pro")
        .await
        .unwrap();
    let (_, body) = srv.get("/users/me", Some(&u.access)).await;
    assert_eq!(body["data"]["tier"], json!("pro"));
    assert_eq!(body["data"]["features"]["flux_model"], json!(true));
    assert_eq!(body["data"]["storage_quota"], json!(107374182400u64));
}

#[tokio::test]
async fn patch_me_changes_only_what_is_sent() {
    let srv = TestServer::start().await;
    let u = srv.signup("patch@example.com").await;
    let (s, body) = srv
        .call(
            Method::PATCH,
            "/users/me",
            Some(&u.access),
            Some(json!({ "name": "김철수", "avatar_url": "https://cdn.example.com/a.png" })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["name"], json!("김철수"));
    assert_eq!(
        body["data"]["avatar_url"],
        json!("https://cdn.example.com/a.png")
    );

    // Only the name: the avatar stays.
    let (_, body) = srv
        .call(
            Method::PATCH,
            "/users/me",
            Some(&u.access),
            Some(json!({ "name": "이영희" })),
        )
        .await;
    assert_eq!(
        body["data"]["avatar_url"],
        json!("https://cdn.example.com/a.png")
    );
    // null removes the avatar.
    let (_, body) = srv
        .call(
            Method::PATCH,
            "/users/me",
            Some(&u.access),
            Some(json!({ "avatar_url": null })),
        )
        .await;
    assert_eq!(body["data"]["avatar_url"], json!(null));
    assert_eq!(body["data"]["name"], json!("이영희"));
    let (_, me) = srv.get("/users/me", Some(&u.access)).await;
    assert_eq!(me["data"]["name"], json!("이영희"));
}

#[tokio::test]
async fn patch_me_rejects_unknown_and_invalid_fields() {
    let srv = TestServer::start().await;
    let u = srv.signup("strict@example.com").await;
    for body in [
        json!({ "email": "x@example.com" }),
        json!({ "tier": "studio" }),
        json!({ "name": "" }),
        json!({ "name": "x".repeat(101) }),
        json!({ "name": 42 }),
        json!({ "avatar_url": "javascript:alert(1)" }),
        json!({ "avatar_url": "not a url" }),
    ] {
        let r = srv
            .call(
                Method::PATCH,
                "/users/me",
                Some(&u.access),
                Some(body.clone()),
            )
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    }
    let (_, me) = srv.get("/users/me", Some(&u.access)).await;
    assert_eq!(me["data"]["tier"], json!("free"));
    assert_eq!(me["data"]["name"], json!("테스터"));
}

#[tokio::test]
async fn credits_history_pages_and_filters() {
    let srv = TestServer::start().await;
    let u = srv.signup("ledger@example.com").await;
    for i in 0..25 {
        srv.state
            .ledger
            .credit(&u.user_id, 10 + i, TxKind::AdminAdjustment, "보정", None)
            .await
            .unwrap();
    }
    let (s, body) = srv.get("/users/me/credits", Some(&u.access)).await;
    assert_eq!(s, StatusCode::OK);
    let expected_balance = 100 + (10..35).sum::<i64>();
    assert_eq!(body["data"]["balance"], json!(expected_balance));
    assert_eq!(body["data"]["reserved"], json!(0));
    assert_eq!(body["data"]["available"], json!(expected_balance));
    assert_eq!(
        body["meta"],
        json!({ "page": 1, "per_page": 20, "total": 26 })
    );
    let txs = body["data"]["transactions"].as_array().unwrap();
    assert_eq!(txs.len(), 20);
    assert_eq!(txs[0]["amount"], json!(34), "newest first");
    assert_eq!(txs[0]["balance_after"], json!(expected_balance));
    for key in [
        "id",
        "type",
        "amount",
        "description",
        "balance_after",
        "created_at",
    ] {
        assert!(txs[0].get(key).is_some(), "{key}");
    }

    let (_, p2) = srv
        .get("/users/me/credits?page=2&per_page=20", Some(&u.access))
        .await;
    assert_eq!(p2["data"]["transactions"].as_array().unwrap().len(), 6);

    let (_, grants) = srv
        .get("/users/me/credits?type=signup_grant", Some(&u.access))
        .await;
    assert_eq!(grants["meta"]["total"], json!(1));
    assert_eq!(grants["data"]["transactions"][0]["amount"], json!(100));

    for q in [
        "per_page=0",
        "per_page=101",
        "page=0",
        "page=-1",
        "page=abc",
        "type=bogus",
    ] {
        let r = srv
            .get(&format!("/users/me/credits?{q}"), Some(&u.access))
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_PARAMETERS");
    }
    assert_eq!(
        srv.get("/users/me/credits?per_page=100", Some(&u.access))
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn users_see_only_their_own_ledger() {
    let srv = TestServer::start().await;
    let a = srv.signup("a@example.com").await;
    let b = srv.signup("b@example.com").await;
    srv.state
        .ledger
        .credit(&a.user_id, 500, TxKind::AdminAdjustment, "a only", None)
        .await
        .unwrap();
    let (_, body) = srv.get("/users/me/credits", Some(&b.access)).await;
    assert_eq!(body["data"]["balance"], json!(100));
    assert_eq!(body["meta"]["total"], json!(1));
}

#[tokio::test]
async fn usage_counts_generations_credits_and_images_of_the_period() {
    let srv = TestServer::start().await;
    let alice = srv.signup("alice@example.com").await;
    let (s, empty) = srv.get("/users/me/usage", Some(&alice.access)).await;
    assert_eq!(s, StatusCode::OK, "{empty}");
    assert_eq!(empty["data"]["period"], "month");
    assert_eq!(empty["data"]["summary"]["total_generations"], 0);
    let mut events = srv.events(&alice.access, None).await;
    let mut used = 0;
    for batch in [1, 2] {
        let mut body = pingvas_tests::small_job("usage");
        body["batch_size"] = serde_json::json!(batch);
        let (s, b) = srv.generate("text-to-image", &alice.access, body).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        let end = events
            .until_end(b["data"]["job_id"].as_str().unwrap())
            .await;
        assert_eq!(end["type"], "job.completed");
        used += end["data"]["credits_used"].as_i64().unwrap();
    }
    let (s, u) = srv
        .get("/users/me/usage?period=day", Some(&alice.access))
        .await;
    assert_eq!(s, StatusCode::OK, "{u}");
    let d = &u["data"];
    assert_eq!(d["period"], "day");
    assert_eq!(d["start_date"], d["end_date"]);
    let sum = &d["summary"];
    assert_eq!(
        (
            sum["total_generations"].as_i64(),
            sum["total_images_created"].as_i64()
        ),
        (Some(2), Some(3))
    );
    assert_eq!(sum["total_credits_used"].as_i64(), Some(used));
    assert_eq!(sum["api_calls"], 2);
    assert!(sum["storage_used_bytes"].as_i64().unwrap() > 0);
    assert_eq!(d["daily"][0]["generations"], 2);
    assert_eq!(d["by_model"][0]["model"], "stable-diffusion-1.5");
    assert_eq!(d["by_model"][0]["credits_used"].as_i64(), Some(used));
    let bad = srv
        .get("/users/me/usage?period=year", Some(&alice.access))
        .await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "INVALID_PARAMETERS");
}

/// `GET /users/me` is served from a cache; every write of what it shows
/// must be seen by the next read, through each of the store's write paths.
#[tokio::test]
async fn the_profile_shows_every_write_at_once() {
    let srv = TestServer::start().await;
    let u = srv.signup("cached@example.com").await;
    let me = || async {
        let (s, body) = srv.get("/users/me", Some(&u.access)).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        body["data"].clone()
    };
    let first = me().await;
    assert_eq!(me().await, first, "nothing changed: the same answer");

    // The user row, through a single-statement write.
    let (s, _) = srv
        .call(
            Method::PATCH,
            "/users/me",
            Some(&u.access),
            Some(json!({ "name": "새 이름" })),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me().await["name"], json!("새 이름"));

    // The balance: a job reserves, then settles in the worker.
    let mut events = srv.events(&u.access, None).await;
    let (s, b) = srv
        .generate(
            "text-to-image",
            &u.access,
            pingvas_tests::small_job("cache"),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let job = b["data"]["job_id"].as_str().unwrap().to_owned();
    assert_eq!(events.until_end(&job).await["type"], "job.completed");
    let (balance, _, _) = srv.credits(&u.user_id).await;
    assert!(balance < 100, "the job was charged: {balance}");
    let after_job = me().await;
    assert_eq!(after_job["credits"], json!(balance));

    // Storage: the job's image, then an upload.
    assert!(
        after_job["storage_used"].as_u64().unwrap() > 0,
        "{after_job}"
    );
    srv.upload_png(&u.access).await;
    assert!(me().await["storage_used"].as_u64() > after_job["storage_used"].as_u64());

    // The balance through the ledger's grant, the tier through the
    // operator's write.
    srv.set_credits(&u.user_id, 7).await;
    assert_eq!(me().await["credits"], json!(7));
    srv.set_tier("cached@example.com", "pro").await;
    let pro = me().await;
    assert_eq!(pro["tier"], json!("pro"));
    assert_eq!(pro["features"]["flux_model"], json!(true));
}

/// With Redis, a profile write on one host reaches the other hosts'
/// revisions (the profile cache's invalidation across hosts).
#[tokio::test]
async fn profile_revisions_travel_between_hosts_through_redis() {
    use pingvas_host::revisions::{Revisions, redis::share};
    let Ok(url) = std::env::var("TEST_REDIS_URL") else {
        eprintln!("TEST_REDIS_URL unset: skipped");
        return;
    };
    let channel = format!("pingvas-test-{}:revisions", uuid::Uuid::now_v7().simple());
    let (a, b) = (Revisions::default(), Revisions::default());
    share(&a, &url, channel.clone()).await.unwrap();
    share(&b, &url, channel).await.unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let subscribed = |r: &Revisions| r.of("alice").is_some();
    while !(subscribed(&a) && subscribed(&b)) {
        assert!(tokio::time::Instant::now() < deadline, "never subscribed");
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (before, here) = (b.of("alice").unwrap(), a.of("alice").unwrap());
    a.bump("alice");
    assert_ne!(a.of("alice"), Some(here), "bumped here at once");
    while b.of("alice") == Some(before) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bump never arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(b.of("alice").is_some(), "still subscribed");
}
