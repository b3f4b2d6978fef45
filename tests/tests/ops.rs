//! Operations: health, readiness, metrics, request ids, CORS, OpenAPI, docs.

use pingvas_tests::TestServer;
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

    // With the database gone, readiness says so (and liveness does not).
    srv.state.db.close().await;
    let (s, body) = srv.get("/readyz", None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], json!("SERVICE_UNAVAILABLE"));
    assert_eq!(srv.get("/healthz", None).await.0, StatusCode::OK);
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
