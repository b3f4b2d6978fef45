//! Email verification and password reset through real mail: the host
//! talks SMTP to a local sink, and the tests follow the link in the mail.

use pingvas_tests::fakes::SmtpSink;
use pingvas_tests::{PASSWORD, TestServer, assert_error, small_job};
use reqwest::StatusCode;
use serde_json::{Value, json};

const FRONT: &str = "https://studio.test";

async fn start(
    sink: &SmtpSink,
    tweak: impl FnOnce(&mut pingvas_host::config::Config),
) -> TestServer {
    let url = sink.url.clone();
    TestServer::start_with(move |c| {
        c.smtp_url = Some(url.into());
        c.mail_from = "Pingvas Studio <no-reply@studio.test>".into();
        c.frontend_url = Some(FRONT.into());
        tweak(c);
    })
    .await
}

async fn register(srv: &TestServer, email: &str, lang: &str) -> (StatusCode, Value) {
    let resp = srv
        .client
        .post(srv.url("/auth/register"))
        .header("accept-language", lang)
        .json(&json!({ "email": email, "password": PASSWORD, "name": "홍길동" }))
        .send()
        .await
        .unwrap();
    (resp.status(), resp.json().await.unwrap())
}

#[tokio::test]
async fn registration_mails_a_link_that_verifies_the_address_once() {
    let sink = SmtpSink::start().await;
    let srv = start(&sink, |_| {}).await;
    let (s, body) = register(&srv, "Hong@Example.com", "ko-KR").await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["message"], "인증 이메일이 발송되었습니다.");
    assert_eq!(body["data"]["email_verified"], false);

    let mail = sink.next().await;
    assert_eq!(mail.envelope_to, vec!["hong@example.com".to_owned()]);
    assert_eq!(mail.envelope_from, "no-reply@studio.test");
    assert_eq!(mail.subject, "[Pingvas Studio] 이메일 주소를 인증해 주세요");
    assert!(mail.text.contains("홍길동님"));
    assert!(
        mail.link("/verify-email")
            .starts_with(&format!("{FRONT}/verify-email?token="))
    );
    assert!(
        mail.html.contains(&mail.link("/verify-email")),
        "the HTML part has the link too"
    );
    let token = mail.token("/verify-email");

    let (s, body) = srv
        .post("/auth/verify-email", None, json!({ "token": token }))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"],
        json!({ "email": "hong@example.com", "email_verified": true })
    );
    let me = srv.login("hong@example.com").await;
    let (_, profile) = srv.get("/users/me", Some(&me.access)).await;
    assert_eq!(profile["data"]["email_verified"], true);

    // Once only; a made-up token is no better.
    let again = srv
        .post("/auth/verify-email", None, json!({ "token": token }))
        .await;
    assert_error(&again, StatusCode::UNAUTHORIZED, "INVALID_TOKEN");
    let made_up = srv
        .post(
            "/auth/verify-email",
            None,
            json!({ "token": "x".repeat(43) }),
        )
        .await;
    assert_error(&made_up, StatusCode::UNAUTHORIZED, "INVALID_TOKEN");
    // Nothing to resend now.
    let (s, body) = srv
        .post("/auth/resend-verification", Some(&me.access), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"],
        json!({ "sent": false, "email_verified": true })
    );
    srv.stop().await;
}

#[tokio::test]
async fn english_clients_get_english_mail_and_resends_wait_a_minute() {
    let sink = SmtpSink::start().await;
    let srv = start(&sink, |_| {}).await;
    let (s, body) = register(&srv, "en@example.com", "en-US,en;q=0.9").await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(body["message"], "A verification email has been sent.");
    let first = sink.next().await;
    assert_eq!(
        first.subject,
        "[Pingvas Studio] Please verify your email address"
    );
    assert!(first.text.starts_with("Hello 홍길동,"));

    let me = srv.login("en@example.com").await;
    let soon = srv
        .post("/auth/resend-verification", Some(&me.access), json!({}))
        .await;
    let error = assert_error(&soon, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    assert!(error["details"]["retry_after"].as_u64().unwrap() <= 60);

    // A minute later (the first mail's time moved back), a new link.
    srv.sql("UPDATE email_tokens SET created_at = '2020-01-01T00:00:00+00:00'")
        .await;
    let (s, body) = srv
        .post("/auth/resend-verification", Some(&me.access), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["sent"], true);
    let second = sink.next().await;
    let (t1, t2) = (first.token("/verify-email"), second.token("/verify-email"));
    assert_ne!(t1, t2);
    // Both links work until one is used (each proves the same address).
    let (s, _) = srv
        .post("/auth/verify-email", None, json!({ "token": t2 }))
        .await;
    assert_eq!(s, StatusCode::OK);

    let anonymous = srv.post("/auth/resend-verification", None, json!({})).await;
    assert_error(&anonymous, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    srv.stop().await;
}

#[tokio::test]
async fn an_expired_link_says_so() {
    let sink = SmtpSink::start().await;
    let srv = start(&sink, |_| {}).await;
    register(&srv, "late@example.com", "ko").await;
    let token = sink.next().await.token("/verify-email");
    srv.sql("UPDATE email_tokens SET expires_at = created_at")
        .await;
    let late = srv
        .post("/auth/verify-email", None, json!({ "token": token }))
        .await;
    assert_error(&late, StatusCode::UNAUTHORIZED, "TOKEN_EXPIRED");
    srv.stop().await;
}

#[tokio::test]
async fn a_password_reset_link_sets_the_password_and_ends_every_session() {
    let sink = SmtpSink::start().await;
    let srv = start(&sink, |_| {}).await;
    register(&srv, "reset@example.com", "ko").await;
    sink.next().await; // the verification mail
    let laptop = srv.login("reset@example.com").await;
    let phone = srv.login("reset@example.com").await;

    // An address without an account gets the same answer and no mail; the
    // next mail the sink sees is the real account's.
    let (s1, unknown) = srv
        .post(
            "/auth/password-reset",
            None,
            json!({ "email": "nobody@example.com" }),
        )
        .await;
    let (s2, known) = srv
        .post(
            "/auth/password-reset",
            None,
            json!({ "email": "Reset@Example.com" }),
        )
        .await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    assert_eq!(unknown, known);
    let mail = sink.next().await;
    assert_eq!(mail.envelope_to, vec!["reset@example.com".to_owned()]);
    assert_eq!(mail.subject, "[Pingvas Studio] 비밀번호 재설정");
    assert!(
        mail.link("/reset-password")
            .starts_with(&format!("{FRONT}/reset-password?token="))
    );
    let token = mail.token("/reset-password");

    // A weak password is refused and leaves the link usable.
    let weak = srv
        .post(
            "/auth/password-reset/confirm",
            None,
            json!({ "token": token, "new_password": "short" }),
        )
        .await;
    assert_error(&weak, StatusCode::BAD_REQUEST, "WEAK_PASSWORD");
    let new_password = "BrandNewPass456!";
    let (s, body) = srv
        .post(
            "/auth/password-reset/confirm",
            None,
            json!({ "token": token, "new_password": new_password }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"],
        json!({ "password_reset": true, "sessions_revoked": true })
    );

    // Every session is over; the old password no longer works; the new one
    // does; the link is spent; the address counts as verified.
    for session in [&laptop, &phone] {
        let r = srv
            .post(
                "/auth/refresh",
                None,
                json!({ "refresh_token": session.refresh }),
            )
            .await;
        assert_error(&r, StatusCode::UNAUTHORIZED, "INVALID_TOKEN");
    }
    let old = srv
        .post(
            "/auth/login",
            None,
            json!({ "email": "reset@example.com", "password": PASSWORD }),
        )
        .await;
    assert_error(&old, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let (s, body) = srv
        .post(
            "/auth/login",
            None,
            json!({ "email": "reset@example.com", "password": new_password }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let access = body["data"]["access_token"].as_str().unwrap().to_owned();
    let (_, me) = srv.get("/users/me", Some(&access)).await;
    assert_eq!(me["data"]["email_verified"], true);
    let reused = srv
        .post(
            "/auth/password-reset/confirm",
            None,
            json!({ "token": token, "new_password": "AnotherPass789!" }),
        )
        .await;
    assert_error(&reused, StatusCode::UNAUTHORIZED, "INVALID_TOKEN");

    // Bad bodies get the envelope.
    let bad = srv
        .post("/auth/password-reset", None, json!({ "mail": "x" }))
        .await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    srv.stop().await;
}

#[tokio::test]
async fn with_require_verified_email_only_a_verified_address_generates() {
    let sink = SmtpSink::start().await;
    let srv = start(&sink, |c| c.require_verified_email = true).await;
    register(&srv, "gen@example.com", "ko").await;
    let token = sink.next().await.token("/verify-email");
    let me = srv.login("gen@example.com").await;

    let refused = srv
        .generate("text-to-image", &me.access, small_job("a fox"))
        .await;
    let error = assert_error(&refused, StatusCode::FORBIDDEN, "FORBIDDEN");
    assert_eq!(error["details"]["code"], "EMAIL_NOT_VERIFIED");

    srv.post("/auth/verify-email", None, json!({ "token": token }))
        .await;
    let (s, body) = srv
        .generate("text-to-image", &me.access, small_job("a fox"))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    srv.stop().await;
}

#[tokio::test]
async fn without_smtp_mail_is_written_to_the_outbox() {
    let srv = TestServer::start().await;
    srv.signup("outbox@example.com").await;
    let outbox = srv.db.data_dir.join("outbox");
    let files: Vec<_> = std::fs::read_dir(&outbox)
        .expect("the outbox")
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].extension().unwrap(), "eml");
    let raw = std::fs::read_to_string(&files[0]).unwrap();
    assert!(raw.contains("To: outbox@example.com"), "{raw}");
    srv.stop().await;
}

/// `GET /users/me` with `token` at `base` (this host or another).
async fn me_status(srv: &TestServer, base: &str, token: &str) -> (StatusCode, Value) {
    let r = srv
        .client
        .get(format!("{base}/api/v1/users/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_password_reset_ends_earlier_access_tokens_at_once_on_every_host() {
    let sink = SmtpSink::start().await;
    let srv = start(&sink, |_| {}).await;
    // With Redis a second host shares what ended; without, each host is
    // alone (and this one is checked).
    let other = match srv.state.config.redis_url {
        Some(_) => Some(srv.another_host().await),
        None => None,
    };
    register(&srv, "stolen@example.com", "en").await;
    sink.next().await;
    let stolen = srv.login("stolen@example.com").await;
    for base in std::iter::once(&srv.base).chain(other.as_ref().map(|o| &o.base)) {
        assert_eq!(
            me_status(&srv, base, &stolen.access).await.0,
            StatusCode::OK
        );
    }

    srv.post(
        "/auth/password-reset",
        None,
        json!({ "email": "stolen@example.com" }),
    )
    .await;
    let token = sink.next().await.token("/reset-password");
    // Issued in the very second of the reset, just before it.
    let same_second = srv.state.auth.access.issue(&stolen.user_id);
    let (s, body) = srv
        .post(
            "/auth/password-reset/confirm",
            None,
            json!({ "token": token, "new_password": "FreshStart456!" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");

    for old in [&stolen.access, &same_second] {
        assert_error(
            &me_status(&srv, &srv.base, old).await,
            StatusCode::UNAUTHORIZED,
            "INVALID_TOKEN",
        );
    }
    if let Some(other) = &other {
        // The other host hears of it through Redis within moments.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let got = me_status(&srv, &other.base, &stolen.access).await;
            if got.0 == StatusCode::UNAUTHORIZED {
                assert_error(&got, StatusCode::UNAUTHORIZED, "INVALID_TOKEN");
                break;
            }
            assert_eq!(got.0, StatusCode::OK, "{}", got.1);
            assert!(
                std::time::Instant::now() < deadline,
                "the other host still takes the old token"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    // The session opened right after works everywhere.
    let (s, body) = srv
        .post(
            "/auth/login",
            None,
            json!({ "email": "stolen@example.com", "password": "FreshStart456!" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let fresh = body["data"]["access_token"].as_str().unwrap().to_owned();
    for base in std::iter::once(&srv.base).chain(other.as_ref().map(|o| &o.base)) {
        assert_eq!(me_status(&srv, base, &fresh).await.0, StatusCode::OK);
    }
    srv.stop().await;
}
