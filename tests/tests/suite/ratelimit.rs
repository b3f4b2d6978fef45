//! Per-tier rate limits (the spec's Rate Limiting section), black-box.

use pingvas_tests::{TestServer, assert_error, small_job};
use reqwest::StatusCode;

fn header(r: &reqwest::Response, name: &str) -> i64 {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name}"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn me(srv: &TestServer, token: &str) -> reqwest::Response {
    me_at(srv, &srv.base, token).await
}

/// `GET /users/me` on the host at `base`.
async fn me_at(srv: &TestServer, base: &str, token: &str) -> reqwest::Response {
    srv.client
        .get(format!("{base}/api/v1/users/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn each_tier_has_its_requests_per_minute_with_exact_headers() {
    let srv = TestServer::start_with(|c| c.rate_limits_enabled = true).await;
    let free = srv.signup("free@example.com").await;
    let pro = srv.signup("pro@example.com").await;
    srv.set_tier("pro@example.com", "pro").await;

    // Free: 30 a minute, one every 2 s.
    let now = chrono::Utc::now().timestamp();
    let r = me(&srv, &free.access).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "x-ratelimit-limit"), 30);
    assert_eq!(header(&r, "x-ratelimit-remaining"), 29);
    let reset = header(&r, "x-ratelimit-reset");
    assert!((now + 2..=now + 3).contains(&reset), "{reset} vs {now}");
    for left in (0..29).rev() {
        let r = me(&srv, &free.access).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "x-ratelimit-remaining"), left);
    }
    let r = me(&srv, &free.access).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait = header(&r, "retry-after");
    assert!((1..=2).contains(&wait), "{wait}");
    assert_eq!(header(&r, "x-ratelimit-remaining"), 0);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "RATE_LIMITED");
    assert_eq!(body["error"]["details"]["per_minute"], 30);

    // Pro: 120, its own allowance.
    let r = me(&srv, &pro.access).await;
    assert_eq!(
        (
            header(&r, "x-ratelimit-limit"),
            header(&r, "x-ratelimit-remaining")
        ),
        (120, 119)
    );

    // No bearer, no limit headers (the route answers 401 itself).
    let r = srv.client.get(srv.url("/users/me")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("x-ratelimit-limit").is_none());
    // Health is never limited.
    let r = srv
        .client
        .get(format!("{}/healthz", srv.base))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("x-ratelimit-limit").is_none());
}

#[tokio::test]
async fn generations_have_their_own_per_minute_limit() {
    let srv = TestServer::start_with(|c| {
        c.rate_limits_enabled = true;
        c.worker_paused = true;
    })
    .await;
    let free = srv.signup("free@example.com").await;
    srv.set_credits(&free.user_id, 1000).await;
    // Free: 2 generations a minute; their headers tell that bucket.
    let generate = |prompt: &str| {
        srv.client
            .post(srv.url("/generate/text-to-image"))
            .bearer_auth(&free.access)
            .json(&small_job(prompt))
            .send()
    };
    for left in [1, 0] {
        let r = generate("p").await.unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(header(&r, "x-ratelimit-limit"), 2);
        assert_eq!(header(&r, "x-ratelimit-remaining"), left);
    }
    let r = generate("p3").await.unwrap();
    assert_eq!(header(&r, "x-ratelimit-limit"), 2);
    assert_eq!(header(&r, "x-ratelimit-remaining"), 0);
    assert!(header(&r, "retry-after") >= 1);
    let refused = (r.status(), r.json().await.unwrap());
    let e = assert_error(&refused, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    assert_eq!(e["details"]["limit"], "generations");
    assert_eq!(e["details"]["per_minute"], 2);
    // Other requests still go through.
    assert_eq!(me(&srv, &free.access).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn limits_off_add_no_headers() {
    let srv = TestServer::start().await;
    let u = srv.signup("u@example.com").await;
    let r = me(&srv, &u.access).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("x-ratelimit-limit").is_none());
}

/// Two hosts on one Redis share each user's allowance (run with
/// `TEST_REDIS_URL`, as `.ci/run`'s PostgreSQL + Redis pass does; without
/// Redis each host limits alone and there is nothing shared to test).
#[tokio::test]
async fn two_hosts_on_one_redis_share_the_limits() {
    if std::env::var("TEST_REDIS_URL").map_or(true, |u| u.is_empty()) {
        eprintln!("skipped: TEST_REDIS_URL is not set");
        return;
    }
    let srv = TestServer::start_with(|c| c.rate_limits_enabled = true).await;
    assert!(srv.state.rate_limits.redis().is_some());
    let other = srv.another_host().await;
    let u = srv.signup("shared@example.com").await;
    // 30 a minute for free: 15 on each host use it up.
    for i in 0..15 {
        let a = me(&srv, &u.access).await;
        assert_eq!(header(&a, "x-ratelimit-remaining"), 29 - 2 * i);
        let b = me_at(&srv, &other.base, &u.access).await;
        assert_eq!(b.status(), StatusCode::OK);
        assert_eq!(header(&b, "x-ratelimit-remaining"), 28 - 2 * i);
    }
    let refused = me_at(&srv, &other.base, &u.access).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        me(&srv, &u.access).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let (status, ready) = srv.get("/readyz", None).await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["data"]["redis"], "ok");
}

#[tokio::test]
async fn auth_routes_are_limited_per_client_address() {
    // Loopback is a trusted proxy here, so X-Forwarded-For names clients.
    let srv = TestServer::start_with(|c| {
        c.rate_limits_enabled = true;
        c.trusted_proxies = vec!["127.0.0.0/8".into()];
    })
    .await;
    let login = |client: &'static str| {
        srv.client
            .post(srv.url("/auth/login"))
            .header("x-forwarded-for", format!("{client}, 127.0.0.1"))
            .json(&serde_json::json!({ "email": "nobody@example.com", "password": "wrong-password-1" }))
            .send()
    };
    // The default tier's 30 a minute, per client address.
    for left in (0..30).rev() {
        let r = login("203.0.113.7").await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(header(&r, "x-ratelimit-remaining"), left);
    }
    let r = login("203.0.113.7").await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(header(&r, "retry-after") >= 1);
    // Another client is not affected.
    let r = login("198.51.100.2").await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&r, "x-ratelimit-remaining"), 29);
}

#[tokio::test]
async fn an_untrusted_peer_cannot_choose_its_address() {
    let srv = TestServer::start_with(|c| c.rate_limits_enabled = true).await;
    let mut last = 30;
    for i in 0..3 {
        // A different forwarded address each time: ignored, the peer counts.
        let r = srv
            .client
            .post(srv.url("/auth/login"))
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .json(&serde_json::json!({ "email": "x@example.com", "password": "wrong-password-1" }))
            .send()
            .await
            .unwrap();
        let left = header(&r, "x-ratelimit-remaining");
        assert_eq!(left, last - 1);
        last = left;
    }
}

#[tokio::test]
async fn a_subscription_change_applies_its_limits_at_once() {
    // Billing servers run with the default configuration: limits on.
    let (srv, fake, _dir, _path) = pingvas_tests::billing::ls_server().await;
    let user = srv.signup("upgrade@example.com").await;
    assert_eq!(
        header(&me(&srv, &user.access).await, "x-ratelimit-limit"),
        30
    );

    let mut events = srv.events(&user.access, None).await;
    let sub = fake.subscribe(&user.user_id, pingvas_tests::billing::PRO_MONTHLY);
    pingvas_tests::billing::ls_deliver(
        &srv,
        &fake.subscription_event("subscription_created", &sub),
    )
    .await;
    events.until_type("subscription.updated").await;
    // The tier the limiter had cached is dropped with the change, well
    // before its 10 s lifetime.
    assert_eq!(
        header(&me(&srv, &user.access).await, "x-ratelimit-limit"),
        120
    );
    srv.stop().await;
}
