//! 인증 API: register, login, refresh, logout, and every auth error.

use pingvas_tests::{PASSWORD, TestServer, assert_error};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn register_login_me_refresh_logout() {
    let srv = TestServer::start().await;
    let (s, body) = srv
        .post(
            "/auth/register",
            None,
            json!({ "email": " Hong@Example.COM ", "password": PASSWORD, "name": "홍길동" }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["success"], json!(true));
    let d = &body["data"];
    assert_eq!(d["email"], json!("hong@example.com"));
    assert_eq!(d["name"], json!("홍길동"));
    assert_eq!(d["email_verified"], json!(false));
    assert!(uuid::Uuid::parse_str(d["id"].as_str().unwrap()).is_ok());

    let (s, body) = srv
        .post(
            "/auth/login",
            None,
            json!({ "email": "HONG@example.com", "password": PASSWORD }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let d = &body["data"];
    assert_eq!(d["token_type"], json!("Bearer"));
    assert_eq!(d["expires_in"], json!(3600));
    assert_eq!(d["user"]["tier"], json!("free"));
    assert_eq!(d["user"]["credits"], json!(100));
    let access = d["access_token"].as_str().unwrap().to_owned();
    let refresh = d["refresh_token"].as_str().unwrap().to_owned();

    let (s, me) = srv.get("/users/me", Some(&access)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me["data"]["email"], json!("hong@example.com"));

    let (s, body) = srv
        .post("/auth/refresh", None, json!({ "refresh_token": refresh }))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let new_access = body["data"]["access_token"].as_str().unwrap().to_owned();
    let new_refresh = body["data"]["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(body["data"]["expires_in"], json!(3600));
    assert_ne!(new_refresh, refresh, "refresh tokens rotate");
    assert_eq!(
        srv.get("/users/me", Some(&new_access)).await.0,
        StatusCode::OK
    );

    let (s, _) = srv
        .post(
            "/auth/logout",
            None,
            json!({ "refresh_token": new_refresh }),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let after = srv
        .post(
            "/auth/refresh",
            None,
            json!({ "refresh_token": new_refresh }),
        )
        .await;
    assert_error(&after, StatusCode::UNAUTHORIZED, "INVALID_TOKEN");
}

#[tokio::test]
async fn refresh_token_reuse_revokes_the_family() {
    let srv = TestServer::start().await;
    let first = srv.signup("reuse@example.com").await;
    let (_, b) = srv
        .post(
            "/auth/refresh",
            None,
            json!({ "refresh_token": first.refresh }),
        )
        .await;
    let second = b["data"]["refresh_token"].as_str().unwrap().to_owned();

    // An attacker replays the spent token: refused, and the family dies...
    let replay = srv
        .post(
            "/auth/refresh",
            None,
            json!({ "refresh_token": first.refresh }),
        )
        .await;
    assert_error(&replay, StatusCode::UNAUTHORIZED, "INVALID_TOKEN");
    // ...so the legitimate newest token no longer works either.
    let legit = srv
        .post("/auth/refresh", None, json!({ "refresh_token": second }))
        .await;
    assert_error(&legit, StatusCode::UNAUTHORIZED, "INVALID_TOKEN");

    // Another login (another family) is unaffected.
    let other = srv.login("reuse@example.com").await;
    let (s, _) = srv
        .post(
            "/auth/refresh",
            None,
            json!({ "refresh_token": other.refresh }),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn register_errors() {
    let srv = TestServer::start().await;
    srv.signup("taken@example.com").await;
    let dup = srv
        .post(
            "/auth/register",
            None,
            json!({ "email": "TAKEN@example.com", "password": PASSWORD }),
        )
        .await;
    assert_error(&dup, StatusCode::CONFLICT, "EMAIL_EXISTS");

    for bad in [
        "",
        "no-at-sign",
        "a@localhost",
        "two@@example.com",
        "spa ce@example.com",
    ] {
        let r = srv
            .post(
                "/auth/register",
                None,
                json!({ "email": bad, "password": PASSWORD }),
            )
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_EMAIL");
    }

    let long = "Ab1!".repeat(40);
    for (password, rule) in [
        ("Ab1!", "min_length"),
        (long.as_str(), "max_length"),
        ("alllowercase1", "character_classes"),
        ("Weak.Person", "matches_email"),
    ] {
        let r = srv
            .post(
                "/auth/register",
                None,
                json!({ "email": "weak.person@example.com", "password": password }),
            )
            .await;
        let err = assert_error(&r, StatusCode::BAD_REQUEST, "WEAK_PASSWORD");
        assert_eq!(err["details"]["rule"], json!(rule), "{password}");
    }

    let r = srv
        .post(
            "/auth/register",
            None,
            json!({ "email": "n@example.com", "password": PASSWORD, "name": "  " }),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    // Nothing of the failed attempts was stored.
    let r = srv
        .post(
            "/auth/login",
            None,
            json!({ "email": "weak.person@example.com", "password": "Ab1!" }),
        )
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
}

#[tokio::test]
async fn login_failures_do_not_say_which_part_was_wrong() {
    let srv = TestServer::start().await;
    srv.signup("known@example.com").await;
    let wrong_password = srv
        .post(
            "/auth/login",
            None,
            json!({ "email": "known@example.com", "password": "Wrong-Pass-1" }),
        )
        .await;
    let unknown_email = srv
        .post(
            "/auth/login",
            None,
            json!({ "email": "nobody@example.com", "password": PASSWORD }),
        )
        .await;
    let bad_email = srv
        .post(
            "/auth/login",
            None,
            json!({ "email": "not-an-email", "password": PASSWORD }),
        )
        .await;
    let a = assert_error(&wrong_password, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let b = assert_error(&unknown_email, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let c = assert_error(&bad_email, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert_eq!(a, b);
    assert_eq!(b, c);
}

#[tokio::test]
async fn access_token_errors() {
    let srv = TestServer::start().await;
    let user = srv.signup("tok@example.com").await;

    assert_error(
        &srv.get("/users/me", None).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    );
    assert_error(
        &srv.get("/users/me", Some("garbage")).await,
        StatusCode::UNAUTHORIZED,
        "INVALID_TOKEN",
    );

    // Signed with another key.
    let forged = {
        let mut parts: Vec<String> = user.access.split('.').map(str::to_owned).collect();
        parts[2] = "c2lnbmF0dXJlLWZvcmdlZA".into();
        parts.join(".")
    };
    assert_error(
        &srv.get("/users/me", Some(&forged)).await,
        StatusCode::UNAUTHORIZED,
        "INVALID_TOKEN",
    );

    // Expired: issued two hours ago with a one-hour lifetime.
    let old = srv
        .state
        .auth
        .access
        .issue_at(&user.user_id, chrono_now() - 7200);
    assert_error(
        &srv.get("/users/me", Some(&old)).await,
        StatusCode::UNAUTHORIZED,
        "TOKEN_EXPIRED",
    );

    // Wrong scheme.
    let r = srv
        .client
        .get(srv.url("/users/me"))
        .header("authorization", format!("Basic {}", user.access))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], json!("INVALID_TOKEN"));

    // Unknown or malformed refresh token.
    let r = srv
        .post("/auth/refresh", None, json!({ "refresh_token": "nope" }))
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "INVALID_TOKEN");
    let r = srv
        .post("/auth/logout", None, json!({ "refresh_token": "nope" }))
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "INVALID_TOKEN");
}

#[tokio::test]
async fn expired_refresh_token_is_refused() {
    let srv = TestServer::start_with(|c| c.refresh_token_ttl_days = 0).await;
    let user = srv.signup("short@example.com").await;
    let r = srv
        .post(
            "/auth/refresh",
            None,
            json!({ "refresh_token": user.refresh }),
        )
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "TOKEN_EXPIRED");
}

#[tokio::test]
async fn tokens_survive_a_restart_with_the_generated_secret() {
    let srv = TestServer::start().await;
    // Hosts that may share a database (PostgreSQL, or `cluster = true`)
    // generate no secret: without one they refuse to start, naming the key.
    let refused = |mut config: pingvas_host::config::Config| async move {
        config.jwt_secret = None;
        let refused = pingvas_host::app::AppState::build(config).await.err();
        let message = refused.expect("a host without jwt_secret").to_string();
        assert!(message.contains("jwt_secret"), "{message}");
    };
    if srv.state.config.multi_host() {
        refused(srv.state.config.clone()).await;
        return;
    }
    let mut cluster = srv.state.config.clone();
    cluster.cluster = true;
    refused(cluster).await;
    let user = srv.signup("restart@example.com").await;
    let secret_file = srv.db.data_dir.join("jwt_secret");
    assert!(secret_file.exists(), "secret kept in the data dir");
    // A second server over the same data dir and database reads the same secret.
    let config = srv.state.config.clone();
    let again = pingvas_host::app::AppState::build(config).await.unwrap();
    assert_eq!(
        again.auth.access.validate(&user.access).unwrap().sub,
        user.user_id
    );
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn repeated_wrong_passwords_slow_the_account_down() {
    let srv = TestServer::start().await;
    srv.signup("target@example.com").await;
    let wrong = json!({ "email": "target@example.com", "password": "Wrong-pass-1" });
    for _ in 0..5 {
        let r = srv.post("/auth/login", None, wrong.clone()).await;
        assert_error(&r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }
    // In the back-off even the right password gets the same answer, so an
    // attacker learns nothing; other accounts are unaffected.
    let right = json!({ "email": "target@example.com", "password": PASSWORD });
    let r = srv.post("/auth/login", None, right).await;
    let e = assert_error(&r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert_eq!(e["details"], Value::Null);
    srv.signup("bystander@example.com").await;
}

#[tokio::test]
async fn a_flood_of_logins_is_turned_away_with_retry_after_not_queued() {
    // One hash at a time and one waiting: most of a burst is refused at
    // once with 503 and Retry-After instead of piling up.
    let srv = TestServer::start_with(|c| {
        c.password_hash_threads = Some(1);
        c.password_hash_queue = 1;
    })
    .await;
    let body = json!({ "email": "nobody@example.com", "password": "Wrong-pass-1" });
    let calls = (0..24).map(|_| {
        let req = srv.client.post(srv.url("/auth/login")).json(&body).send();
        async move {
            let r = req.await.unwrap();
            let retry = r.headers().get("retry-after").cloned();
            let status = r.status();
            let v: Value = r.json().await.unwrap();
            (status, v, retry)
        }
    });
    let answers = futures::future::join_all(calls).await;
    let busy: Vec<_> = answers
        .iter()
        .filter(|(s, _, _)| *s == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(!busy.is_empty(), "some of the burst was turned away");
    for (s, v, retry) in &busy {
        assert_error(
            &(*s, v.clone()),
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
        );
        assert_eq!(retry.as_ref().and_then(|h| h.to_str().ok()), Some("1"));
    }
    assert!(
        answers.iter().all(
            |(s, _, _)| *s == StatusCode::UNAUTHORIZED || *s == StatusCode::SERVICE_UNAVAILABLE
        ),
        "every answer is one of the two"
    );
    // Health never waits behind the hashing.
    assert_eq!(srv.get("/healthz", None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_bearer_of_a_deleted_account_on_auth_routes_is_limited_like_no_bearer() {
    let srv = TestServer::start_with(|c| c.rate_limits_enabled = true).await;
    // A valid signature for an account that is not there (any more).
    let ghost = srv
        .state
        .auth
        .access
        .issue("0192d1c4-dead-7000-8000-000000000000");
    let login = |bearer: Option<String>| {
        let mut req = srv
            .client
            .post(srv.url("/auth/login"))
            .json(&json!({ "email": "nobody@example.com", "password": "wrong-password-1" }));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        req.send()
    };
    let remaining = |r: &reqwest::Response| {
        r.headers()
            .get("x-ratelimit-remaining")
            .map(|v| v.to_str().unwrap().parse::<i64>().unwrap())
    };
    let first = login(None).await.unwrap();
    assert_eq!(first.status(), StatusCode::UNAUTHORIZED);
    let left = remaining(&first).expect("limited per client address");
    // The ghost's requests count against the same client allowance.
    let r = login(Some(ghost.clone())).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(remaining(&r), Some(left - 1), "the ghost is limited");
    for _ in 0..left {
        login(Some(ghost.clone())).await.unwrap();
    }
    let refused = login(Some(ghost)).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        login(None).await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}
