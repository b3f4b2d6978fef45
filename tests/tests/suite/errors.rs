//! The error envelope: every kind of bad request answers
//! `{"success":false,"error":{code,message,details}}` with the spec's code
//! and status, in Korean by default and English on request.

use pingvas_tests::{TestServer, assert_error};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn raw(
    srv: &TestServer,
    method: reqwest::Method,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (StatusCode, Value) {
    let mut req = srv
        .client
        .request(method, srv.url(path))
        .body(body.to_owned());
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        ct.starts_with("application/json"),
        "{path}: content-type {ct}"
    );
    (status, resp.json().await.unwrap())
}

#[tokio::test]
async fn malformed_bodies_of_every_kind() {
    let srv = TestServer::start_with(|c| c.body_limit_bytes = 4096).await;
    use reqwest::Method;
    let json_ct = Some("application/json");
    let cases: Vec<(&str, Option<&str>, String, StatusCode, &str)> = vec![
        (
            "syntax",
            json_ct,
            "{\"email\": ".into(),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        ),
        (
            "not json at all",
            json_ct,
            "email=a&password=b".into(),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        ),
        (
            "empty body",
            json_ct,
            String::new(),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        ),
        (
            "missing field",
            json_ct,
            "{\"email\":\"a@example.com\"}".into(),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        ),
        (
            "wrong type",
            json_ct,
            "{\"email\":1,\"password\":2}".into(),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        ),
        (
            "array",
            json_ct,
            "[]".into(),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        ),
        (
            "unknown field",
            json_ct,
            "{\"email\":\"a@example.com\",\"password\":\"SecurePass123!\",\"admin\":true}".into(),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        ),
        (
            "no content type",
            None,
            "{\"email\":\"a@example.com\",\"password\":\"x\"}".into(),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        ),
        (
            "wrong content type",
            Some("text/plain"),
            "{}".into(),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        ),
        (
            "invalid utf-8 escapes",
            json_ct,
            "{\"email\":\"\\ud800\",\"password\":\"x\"}".into(),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        ),
        (
            "too large",
            json_ct,
            format!("{{\"email\":\"{}\",\"password\":\"x\"}}", "a".repeat(8192)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
        ),
    ];
    for (name, ct, body, status, code) in cases {
        let got = raw(&srv, Method::POST, "/auth/register", ct, &body).await;
        assert_eq!(got.0, status, "{name}: {}", got.1);
        assert_error(&got, status, code);
    }
    // Nothing was registered by any of them.
    let r = srv
        .post(
            "/auth/login",
            None,
            json!({ "email": "a@example.com", "password": "SecurePass123!" }),
        )
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
}

#[tokio::test]
async fn malformed_json_is_one_error_on_every_route() {
    let srv = TestServer::start().await;
    let alice = srv.signup("alice@example.com").await;
    for path in [
        "/generate/text-to-image",
        "/generate/inpaint",
        "/generate/workflow",
        "/boards",
        "/workflows",
        "/auth/login",
    ] {
        let res = srv
            .client
            .post(srv.url(path))
            .bearer_auth(&alice.access)
            .header("content-type", "application/json")
            .body("{,")
            .send()
            .await
            .unwrap();
        let got = (res.status(), res.json().await.unwrap_or_default());
        let e = assert_error(&got, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
        assert_eq!(e["details"]["reason"], "malformed_json", "{path}: {e}");
    }
}

/// What the API document promises of bodies and lists, as schemathesis
/// reads it: a body is an object (serde alone would read a struct from an
/// array of its fields), a whole number written `1.0` is an integer, pages
/// stop where the document says, and an avatar URL is what its pattern
/// says.
#[tokio::test]
async fn bodies_and_pages_are_read_as_the_document_states() {
    let srv = TestServer::start().await;
    let alice = srv.signup("alice@example.com").await;
    let t = Some(alice.access.as_str());
    // An array of the fields is not the object.
    for (method, path) in [
        (reqwest::Method::PATCH, "/users/me"),
        (reqwest::Method::POST, "/generate/text-to-image"),
        (reqwest::Method::POST, "/boards"),
    ] {
        let got = srv.call(method, path, t, Some(json!([null, null]))).await;
        let e = assert_error(&got, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
        assert_eq!(e["details"]["reason"], "invalid_body", "{path}: {e}");
    }
    let (_, me) = srv.get("/users/me", t).await;
    assert_eq!(me["data"]["name"], "테스터");

    // 2.0 is the integer 2.
    let image = srv.upload_png(&alice.access).await;
    let (s, shared) = srv
        .post(
            &format!("/images/{image}/share"),
            t,
            json!({ "expires_in_hours": 2.0 }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{shared}");
    let got = srv
        .post(
            &format!("/images/{image}/share"),
            t,
            json!({ "expires_in_hours": 2.5 }),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");

    // Pages: from 1 to 100 000, as documented.
    for (query, status) in [
        ("page=100000", StatusCode::OK),
        ("page=100001", StatusCode::BAD_REQUEST),
        ("page=0", StatusCode::BAD_REQUEST),
    ] {
        let (s, body) = srv.get(&format!("/boards?{query}"), t).await;
        assert_eq!(s, status, "{query}: {body}");
    }

    // The avatar URL's pattern is the server's rule.
    for (url, ok) in [
        ("https://cdn.example.com/a.png", true),
        ("https://cdn.example.com:8443/a b.png", false),
        ("https://cdn_example.com/a.png", false),
        (" https://cdn.example.com/a.png", false),
    ] {
        let got = srv
            .call(
                reqwest::Method::PATCH,
                "/users/me",
                t,
                Some(json!({ "avatar_url": url })),
            )
            .await;
        assert_eq!(got.0.is_success(), ok, "{url}: {}", got.1);
    }
}

#[tokio::test]
async fn a_body_of_too_many_json_values_is_refused_before_it_is_parsed() {
    use reqwest::Method;
    let srv = TestServer::start().await;
    let alice = srv.signup("alice@example.com").await;
    // ~200 KB of zeros: 100 001 values, each tens of bytes once parsed (20
    // MiB of them took 780 MiB and seconds of a runtime thread).
    let zeros = |n: usize| format!("{{\"nodes\":[{}]}}", vec!["0"; n].join(","));
    let many = zeros(100_001);
    for (path, token) in [
        ("/workflows/import/invokeai", Some(alice.access.as_str())),
        ("/auth/register", None),
    ] {
        let req = srv
            .client
            .request(Method::POST, srv.url(path))
            .header("content-type", "application/json")
            .body(many.clone());
        let req = match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let res = req.send().await.unwrap();
        let got = (res.status(), res.json().await.unwrap_or_default());
        let e = assert_error(&got, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
        assert!(
            e["details"]["reason"]
                .as_str()
                .unwrap()
                .contains("100000 JSON values"),
            "{path}: {e}"
        );
    }
    // Within the bound, the route's own answer.
    let res = srv
        .client
        .post(srv.url("/workflows/import/invokeai"))
        .bearer_auth(&alice.access)
        .header("content-type", "application/json")
        .body(zeros(99_000))
        .send()
        .await
        .unwrap();
    let got = (res.status(), res.json().await.unwrap_or_default());
    assert_error(&got, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods() {
    let srv = TestServer::start().await;
    use reqwest::Method;
    assert_error(
        &raw(&srv, Method::GET, "/no/such/route", None, "").await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    assert_error(
        &raw(&srv, Method::GET, "/nothing-here", None, "").await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    assert_error(
        &raw(&srv, Method::GET, "/auth/login", None, "").await,
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
    );
    assert_error(
        &raw(&srv, Method::DELETE, "/users/me", None, "").await,
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
    );
    assert_error(
        &raw(&srv, Method::POST, "/healthz", None, "").await,
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
    );
}

#[tokio::test]
async fn messages_follow_accept_language() {
    let srv = TestServer::start().await;
    let ask = |lang: Option<&'static str>| {
        let mut req = srv.client.get(srv.url("/users/me"));
        if let Some(l) = lang {
            req = req.header("accept-language", l);
        }
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let ko = ask(None).await;
    let en = ask(Some("en-US,en;q=0.9")).await;
    let ko_pref = ask(Some("ko-KR,en;q=0.5")).await;
    assert_eq!(ko["error"]["message"], json!("인증이 필요합니다."));
    assert_eq!(en["error"]["message"], json!("Authentication required."));
    assert_eq!(ko_pref["error"]["message"], ko["error"]["message"]);
    assert_eq!(en["error"]["code"], ko["error"]["code"]);

    // Errors raised outside the handlers (router fallback, body parsing) too.
    let r: Value = srv
        .client
        .post(srv.url("/auth/login"))
        .header("accept-language", "en")
        .body("{")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["error"]["message"], json!("Validation failed."));
    let r: Value = srv
        .client
        .get(srv.url("/nope"))
        .header("accept-language", "en")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["error"]["message"], json!("Resource not found."));
}
