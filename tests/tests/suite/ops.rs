//! Operations: health, readiness, metrics, request ids, CORS, OpenAPI, docs.

use pingvas_tests::{TestServer, assert_error};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn health_and_readiness() {
    let srv = TestServer::start().await;
    let (s, body) = srv.get("/healthz", None).await;
    assert_eq!((s, &body["success"]), (StatusCode::OK, &json!(true)));
    let (s, body) = srv.get("/readyz", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        body["data"]["database"],
        json!(if srv.db.is_postgres() {
            "postgres"
        } else {
            "sqlite"
        })
    );
    let blobs = body["data"]["blobs"].as_str().unwrap();
    assert!(
        blobs.starts_with("local:") || blobs.starts_with("s3://"),
        "{blobs}"
    );

    // With the database gone, readiness says so (and liveness does not).
    srv.state.db.close().await;
    let (s, body) = srv.get("/readyz", None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], json!("SERVICE_UNAVAILABLE"));
    assert_eq!(body["error"]["details"]["database"], json!("unreachable"));
    assert_eq!(srv.get("/healthz", None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn readiness_fails_while_the_blob_store_is_unreachable() {
    // A bucket on a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let srv = TestServer::start_with(|c| {
        c.blob_url = Some("s3://nowhere/prefix".into());
        c.s3_endpoint = Some(format!("http://127.0.0.1:{port}"));
        c.s3_access_key_id = Some("k".into());
        c.s3_secret_access_key = Some("s".to_owned().into());
    })
    .await;
    let (s, body) = srv.get("/readyz", None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let blobs = &body["error"]["details"]["blobs"];
    assert!(blobs == "unreachable" || blobs == "timeout", "{body}");
    assert_eq!(body["error"]["details"]["database"], json!("ok"));
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_status() {
    let srv = TestServer::start().await;
    let u = srv.signup("metrics@example.com").await;
    for _ in 0..3 {
        srv.get("/users/me", Some(&u.access)).await;
    }
    srv.get("/users/me", None).await;
    srv.get("/definitely/not/a/route/12345", None).await;
    // A method a client made up is counted, under a fixed label.
    let made_up = reqwest::Method::from_bytes(b"BREW12345").unwrap();
    srv.call(made_up, "/healthz", None, None).await;
    let text = srv
        .client
        .get(srv.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            r#"pingvas_http_requests_total{method="GET",route="/api/v1/users/me",status="200"} 3"#
        ),
        "{text}"
    );
    assert!(text.contains(
        r#"pingvas_http_requests_total{method="GET",route="/api/v1/users/me",status="401"} 1"#
    ));
    assert!(text.contains(r#"route="unmatched",status="404""#));
    assert!(
        !text.contains("12345"),
        "raw paths and methods never become labels"
    );
    assert!(text.contains(r#"method="OTHER""#), "{text}");
    assert!(text.contains("pingvas_http_request_duration_seconds_bucket"));
}

#[tokio::test]
async fn request_ids_are_set_or_propagated() {
    let srv = TestServer::start().await;
    let r = srv.client.get(srv.url("/healthz")).send().await.unwrap();
    let id = r.headers().get("x-request-id").unwrap().to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok());
    let r = srv
        .client
        .get(srv.url("/nope"))
        .header("x-request-id", "client-chosen-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers().get("x-request-id").unwrap(), "client-chosen-1");
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let srv =
        TestServer::start_with(|c| c.cors_origins = "https://studio.example.com".into()).await;
    let preflight = |origin: &'static str| {
        srv.client
            .request(reqwest::Method::OPTIONS, srv.url("/users/me"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let ok = preflight("https://studio.example.com").await.unwrap();
    assert_eq!(
        ok.headers().get("access-control-allow-origin").unwrap(),
        "https://studio.example.com"
    );
    let other = preflight("https://evil.example.net").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    // A cross-origin page can read the limits and when to retry.
    let r = srv
        .client
        .get(srv.url("/healthz"))
        .header("origin", "https://studio.example.com")
        .send()
        .await
        .unwrap();
    let exposed = r
        .headers()
        .get("access-control-expose-headers")
        .unwrap()
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for h in [
        "x-request-id",
        "retry-after",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "idempotent-replayed",
    ] {
        assert!(exposed.contains(h), "{h} exposed: {exposed}");
    }
}

#[tokio::test]
async fn openapi_document_and_offline_docs() {
    let srv = TestServer::start().await;
    let (s, doc) = srv.get("/api/v1/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/auth/register",
        "/auth/login",
        "/auth/refresh",
        "/auth/logout",
        "/users/me",
        "/users/me/credits",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
    assert!(doc["paths"]["/users/me"].get("patch").is_some());
    assert!(doc["components"]["securitySchemes"].get("bearer").is_some());

    let html = srv.client.get(srv.url("/docs/")).send().await.unwrap();
    assert_eq!(html.status(), StatusCode::OK);
    let page = html.text().await.unwrap();
    assert!(page.contains("swagger-ui"));
    // Offline: the page loads its scripts from this server, not a CDN.
    assert!(!page.contains("https://"), "no external assets");
    let js = srv
        .client
        .get(srv.url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_connection_that_sends_half_a_header_is_closed_after_the_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = TestServer::start_with(|c| c.header_timeout_ms = 300).await;
    let addr = srv.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    // The server closes the connection (EOF, possibly after a 408); the
    // test's own bound is generous, the server's timeout is 300 ms.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut buf),
    )
    .await;
    assert!(read.is_ok(), "the connection was still open after 10 s");
    let text = String::from_utf8_lossy(&buf);
    assert!(!text.contains("200 OK"), "{text}");
    // An idle keep-alive connection is closed the same way.
    let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        idle.read_to_end(&mut buf),
    )
    .await;
    assert!(
        read.is_ok(),
        "the idle connection was still open after 10 s"
    );
    assert!(String::from_utf8_lossy(&buf).contains("200 OK"));
}

#[tokio::test]
async fn metrics_and_the_internal_api_can_move_to_their_own_listeners() {
    let srv = TestServer::start_with(|c| {
        c.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
        c.internal_addr = Some("127.0.0.1:0".parse().unwrap());
        c.worker_token = Some(pingvas_tests::WORKER_TOKEN.to_owned().into());
    })
    .await;
    // Not on the public listener any more.
    assert_eq!(srv.get("/metrics", None).await.0, StatusCode::NOT_FOUND);
    let lease = srv
        .client
        .post(format!("{}/internal/v1/lease", srv.base))
        .bearer_auth(pingvas_tests::WORKER_TOKEN)
        .json(&serde_json::json!({ "worker_id": "w", "name": "w", "backend": "manual", "models": null, "worker_key": "k" }))
        .send()
        .await
        .unwrap();
    assert_eq!(lease.status(), StatusCode::NOT_FOUND);
    // On their own.
    let metrics = srv.metrics_base.clone().unwrap();
    let r = srv
        .client
        .get(format!("{metrics}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let internal = srv.internal_base.clone().unwrap();
    let lease = srv
        .client
        .post(format!("{internal}/internal/v1/lease"))
        .bearer_auth(pingvas_tests::WORKER_TOKEN)
        .json(&serde_json::json!({ "worker_id": "w", "name": "w", "backend": "manual", "models": null, "worker_key": "k" }))
        .send()
        .await
        .unwrap();
    assert_eq!(lease.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn metrics_can_require_a_token_and_short_worker_tokens_are_refused() {
    let srv =
        TestServer::start_with(|c| c.metrics_token = Some("scrape-secret".to_owned().into())).await;
    assert_error(
        &srv.get("/metrics", None).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    );
    assert_error(
        &srv.get("/metrics", Some("wrong")).await,
        StatusCode::UNAUTHORIZED,
        "INVALID_TOKEN",
    );
    assert_eq!(
        srv.get("/metrics", Some("scrape-secret")).await.0,
        StatusCode::OK
    );

    let db = pingvas_tests::TestDatabase::create().await;
    let config = pingvas_host::config::Config {
        data_dir: db.data_dir.clone(),
        database_url: Some(db.url.clone().into()),
        worker_token: Some("too-short".to_owned().into()),
        ..Default::default()
    };
    let err = match pingvas_host::app::AppState::build(config).await {
        Ok(_) => panic!("a 9-byte worker token was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("at least 32 bytes"), "{err}");
}

#[tokio::test]
async fn files_are_never_sniffed() {
    let srv = TestServer::start().await;
    let u = srv.signup("files@example.com").await;
    let mut events = srv.events(&u.access, None).await;
    let (s, b) = srv
        .generate(
            "text-to-image",
            &u.access,
            pingvas_tests::small_job("a file"),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let end = events
        .until_end(b["data"]["job_id"].as_str().unwrap())
        .await;
    let url = srv.url_of(end["data"]["images"][0]["image_url"].as_str().unwrap());
    let r = srv.client.get(url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
}
