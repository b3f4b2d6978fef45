//! Sign-in through Google and Discord against local fakes of the
//! providers: the browser's part (redirects, the state cookie) is played by
//! a client that follows nothing by itself.

use std::collections::HashMap;
use std::time::Duration;

use pingvas_tests::fakes::{FakeOAuth, SmtpSink};
use pingvas_tests::{PASSWORD, TestServer, assert_error};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

const PUBLIC: &str = "https://api.studio.test";
const FRONT: &str = "https://studio.test/app";

/// A server with both providers served by one fake.
async fn start(
    fake: &FakeOAuth,
    tweak: impl FnOnce(&mut pingvas_host::config::Config),
) -> TestServer {
    let fake = fake.clone();
    TestServer::start_with(move |c| {
        c.public_url = Some(PUBLIC.into());
        c.frontend_url = Some(FRONT.into());
        fake.configure(c, "google");
        fake.configure(c, "discord");
        tweak(c);
    })
    .await
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(LOCATION)
        .expect("a Location")
        .to_str()
        .unwrap()
        .to_owned()
}

/// The browser's trip: start at the host, consent at the provider, come
/// back to the callback. Returns the start's state cookie and the
/// callback URL the provider sent the browser to (on the test server).
async fn go_to_provider(srv: &TestServer, provider: &str) -> (String, String) {
    let b = browser();
    let start = b
        .get(srv.url(&format!("/auth/{provider}")))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::FOUND);
    let cookie = start
        .headers()
        .get(SET_COOKIE)
        .expect("a state cookie")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Secure")
    );
    assert!(cookie.contains(&format!("Path=/api/v1/auth/{provider}/callback")));
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let consent = b.get(location(&start)).send().await.unwrap();
    assert_eq!(
        consent.status(),
        StatusCode::SEE_OTHER,
        "the fake sends the browser back"
    );
    let back = location(&consent);
    let expected = format!("{PUBLIC}/api/v1/auth/{provider}/callback?");
    assert!(back.starts_with(&expected), "{back}");
    // The public URL is this test server.
    let on_server = format!(
        "{}/api/v1/auth/{provider}/callback?{}",
        srv.base,
        &back[expected.len()..]
    );
    (cookie, on_server)
}

/// Calls the callback with `cookie`; the fragment of where it sends the
/// browser on.
async fn call_back(callback: &str, cookie: Option<&str>) -> HashMap<String, String> {
    let mut req = browser().get(callback);
    if let Some(c) = cookie {
        req = req.header(COOKIE, c);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    let to = location(&resp);
    assert!(to.starts_with(&format!("{FRONT}#")), "{to}");
    // Nothing in the query: tokens stay out of logs.
    assert!(!to.contains('?'), "{to}");
    let cleared = resp.headers().get(SET_COOKIE).unwrap().to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"));
    let fragment = to.split_once('#').unwrap().1;
    form_urlencoded::parse(fragment.as_bytes())
        .into_owned()
        .collect()
}

async fn sign_in(srv: &TestServer, provider: &str) -> HashMap<String, String> {
    let (cookie, back) = go_to_provider(srv, provider).await;
    call_back(&back, Some(&cookie)).await
}

fn google(sub: &str, email: &str, verified: bool) -> Value {
    json!({ "sub": sub, "email": email, "email_verified": verified, "name": "김구글",
            "picture": "https://lh3.googleusercontent.com/a/photo.png", "given_name": "구글" })
}

fn discord(id: &str, email: &str, verified: bool) -> Value {
    json!({ "id": id, "username": "nelly", "global_name": "Nelly", "discriminator": "0",
            "avatar": "8342729096ea3675442027381ff50dfe", "email": email, "verified": verified,
            "mfa_enabled": false, "locale": "en-US" })
}

async fn me(srv: &TestServer, access: &str) -> Value {
    let (s, body) = srv.get("/users/me", Some(access)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body["data"].clone()
}

#[tokio::test]
async fn a_first_google_sign_in_makes_the_account_and_a_later_one_opens_it() {
    let fake = FakeOAuth::start().await;
    let srv = start(&fake, |_| {}).await;
    fake.sign_in_as(google("g-1001", "Kim@Example.com", true));
    let f = sign_in(&srv, "google").await;
    assert_eq!(f["new_user"], "true");
    assert_eq!(f["token_type"], "Bearer");
    assert_eq!(f["provider"], "google");
    let user = me(&srv, &f["access_token"]).await;
    assert_eq!(user["email"], "kim@example.com");
    assert_eq!(user["email_verified"], true);
    assert_eq!(user["name"], "김구글");
    assert_eq!(
        user["avatar_url"],
        "https://lh3.googleusercontent.com/a/photo.png"
    );
    assert_eq!(user["tier"], "free");
    assert!(user["credits"].as_i64().unwrap() > 0, "the signup grant");

    // The refresh token rotates like any other.
    let (s, body) = srv
        .post(
            "/auth/refresh",
            None,
            json!({ "refresh_token": f["refresh_token"] }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");

    // What the host sent the provider: PKCE S256 and the redirect URI,
    // then the verifier and client credentials at the token endpoint.
    {
        let st = fake.state.lock().unwrap();
        let auth = &st.authorizations[0];
        assert_eq!(auth["scope"], "openid email profile");
        assert_eq!(
            auth["redirect_uri"],
            format!("{PUBLIC}/api/v1/auth/google/callback")
        );
        let tok = &st.token_requests[0];
        assert_eq!(tok["grant_type"], "authorization_code");
        assert!(tok["code_verifier"].len() >= 43);
    }

    fake.sign_in_as(google("g-1001", "kim@example.com", true));
    let again = sign_in(&srv, "google").await;
    assert_eq!(again["new_user"], "false");
    assert_eq!(me(&srv, &again["access_token"]).await["id"], user["id"]);
    srv.stop().await;
}

#[tokio::test]
async fn a_verified_provider_email_links_to_the_existing_account() {
    let fake = FakeOAuth::start().await;
    let srv = start(&fake, |_| {}).await;
    let session = srv.signup("linked@example.com").await;
    // The account verified its address (as the mailed link would).
    srv.sql("UPDATE users SET email_verified = TRUE WHERE email = 'linked@example.com'")
        .await;

    fake.sign_in_as(discord("d-77", "linked@example.com", true));
    let f = sign_in(&srv, "discord").await;
    assert_eq!(f["new_user"], "false");
    assert_eq!(me(&srv, &f["access_token"]).await["id"], session.user_id);
    // The password still works, and so does the earlier session.
    srv.login("linked@example.com").await;
    let (s, _) = srv.get("/users/me", Some(&session.access)).await;
    assert_eq!(s, StatusCode::OK);

    // The provider's name on the second sign-in opens the same account
    // even after its address there changed.
    fake.sign_in_as(discord("d-77", "other@example.com", true));
    let f2 = sign_in(&srv, "discord").await;
    assert_eq!(me(&srv, &f2["access_token"]).await["id"], session.user_id);
    srv.stop().await;
}

#[tokio::test]
async fn claiming_an_unverified_account_removes_the_password_it_was_registered_with() {
    let fake = FakeOAuth::start().await;
    let srv = start(&fake, |_| {}).await;
    // Someone registered the address without owning it.
    let squatter = srv.signup("owner@example.com").await;
    fake.sign_in_as(google("g-owner", "owner@example.com", true));
    let f = sign_in(&srv, "google").await;
    let user = me(&srv, &f["access_token"]).await;
    assert_eq!(user["id"], squatter.user_id);
    assert_eq!(user["email_verified"], true);
    // The squatter's password and session are gone.
    let (s, body) = srv
        .post(
            "/auth/login",
            None,
            json!({ "email": "owner@example.com", "password": PASSWORD }),
        )
        .await;
    assert_error(&(s, body), StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let (s, body) = srv
        .post(
            "/auth/refresh",
            None,
            json!({ "refresh_token": squatter.refresh }),
        )
        .await;
    assert_error(&(s, body), StatusCode::UNAUTHORIZED, "INVALID_TOKEN");
    // … and so is the access token the squatter holds, at once.
    assert_error(
        &srv.get("/users/me", Some(&squatter.access)).await,
        StatusCode::UNAUTHORIZED,
        "INVALID_TOKEN",
    );
    // The owner's own session, issued right after, works.
    assert_eq!(me(&srv, &f["access_token"]).await["id"], squatter.user_id);
    srv.stop().await;
}

#[tokio::test]
async fn an_unverified_provider_email_neither_makes_nor_takes_over_an_account() {
    let fake = FakeOAuth::start().await;
    let srv = start(&fake, |_| {}).await;
    let owner = srv.signup("victim@example.com").await;

    fake.sign_in_as(discord("d-evil", "victim@example.com", false));
    let f = sign_in(&srv, "discord").await;
    assert_eq!(f["error"], "email_not_verified");
    assert!(!f.contains_key("access_token"));
    assert_eq!(srv.count("SELECT COUNT(*) FROM user_identities").await, 0);
    // The owner's password and session are untouched.
    srv.login("victim@example.com").await;
    let (s, _) = srv.get("/users/me", Some(&owner.access)).await;
    assert_eq!(s, StatusCode::OK);

    // A new address that the provider has not verified makes no account:
    // whoever holds it may not own it, and the owner would later verify
    // or reset their way into an account the provider account opens.
    fake.sign_in_as(discord("d-new", "fresh@example.com", false));
    let f = sign_in(&srv, "discord").await;
    assert_eq!(f["error"], "email_not_verified");
    assert!(!f.contains_key("access_token"));
    assert_eq!(srv.count("SELECT COUNT(*) FROM users").await, 1);
    assert_eq!(srv.count("SELECT COUNT(*) FROM user_identities").await, 0);
    let outbox = srv.db.data_dir.join("outbox");
    let mails = std::fs::read_dir(&outbox).unwrap().count();
    assert_eq!(mails, 1, "only the owner's verification mail");

    // A profile without an address cannot make an account.
    fake.sign_in_as(json!({ "id": "d-noemail", "username": "ghost", "verified": false }));
    assert_eq!(sign_in(&srv, "discord").await["error"], "email_missing");
    srv.stop().await;
}

#[tokio::test]
async fn a_state_works_once_in_the_browser_that_started_it_and_for_its_provider() {
    let fake = FakeOAuth::start().await;
    let srv = start(&fake, |_| {}).await;
    fake.sign_in_as(google("g-2", "state@example.com", true));

    // No state, or one never issued.
    let bare = format!("{}/api/v1/auth/google/callback?code=x", srv.base);
    assert_eq!(call_back(&bare, None).await["error"], "invalid_state");
    let forged = format!(
        "{}/api/v1/auth/google/callback?code=x&state=forged",
        srv.base
    );
    assert_eq!(
        call_back(&forged, Some("pingvas_oauth_state=forged")).await["error"],
        "invalid_state"
    );

    // A callback link opened in another browser (no cookie): refused, and
    // the state is spent.
    let (cookie, back) = go_to_provider(&srv, "google").await;
    assert_eq!(call_back(&back, None).await["error"], "invalid_state");
    assert_eq!(
        call_back(&back, Some(&cookie)).await["error"],
        "invalid_state"
    );

    // Used once, then never again.
    let (cookie, back) = go_to_provider(&srv, "google").await;
    assert!(
        call_back(&back, Some(&cookie))
            .await
            .contains_key("access_token")
    );
    assert_eq!(
        call_back(&back, Some(&cookie)).await["error"],
        "invalid_state"
    );

    // Google's state on Discord's callback.
    let (cookie, back) = go_to_provider(&srv, "google").await;
    let crossed = back.replace("/auth/google/", "/auth/discord/");
    assert_eq!(
        call_back(&crossed, Some(&cookie)).await["error"],
        "invalid_state"
    );

    // Expired: older than ten minutes.
    let (cookie, back) = go_to_provider(&srv, "google").await;
    srv.sql("UPDATE oauth_states SET expires_at = created_at")
        .await;
    assert_eq!(
        call_back(&back, Some(&cookie)).await["error"],
        "state_expired"
    );
    srv.stop().await;
}

#[tokio::test]
async fn provider_refusals_errors_and_timeouts_come_back_as_error_redirects() {
    let fake = FakeOAuth::start().await;
    let srv = start(&fake, |c| c.oauth_timeout_secs = 1).await;
    fake.sign_in_as(google("g-3", "err@example.com", true));

    // The user said no at the provider.
    fake.state.lock().unwrap().deny_next = true;
    let f = sign_in(&srv, "google").await;
    assert_eq!(f["error"], "access_denied");

    // The token endpoint refuses the code.
    fake.state.lock().unwrap().token_failure = Some((
        400,
        json!({ "error": "invalid_grant", "error_description": "Bad Request" }),
    ));
    let f = sign_in(&srv, "google").await;
    assert_eq!(f["error"], "token_exchange_failed");
    assert!(f["error_description"].contains("invalid_grant"), "{f:?}");

    // … or falls over.
    fake.state.lock().unwrap().token_failure = Some((500, json!({})));
    assert_eq!(
        sign_in(&srv, "google").await["error"],
        "token_exchange_failed"
    );

    // … or does not answer in time.
    {
        let mut st = fake.state.lock().unwrap();
        st.token_failure = None;
        st.token_delay = Some(Duration::from_secs(5));
    }
    assert_eq!(sign_in(&srv, "google").await["error"], "provider_timeout");

    // No account was made by any of it.
    assert_eq!(srv.count("SELECT COUNT(*) FROM users").await, 0);
    srv.stop().await;
}

#[tokio::test]
async fn an_unconfigured_provider_is_unavailable_with_the_reason() {
    let fake = FakeOAuth::start().await;
    // Google only; and a second server without public_url.
    let srv = TestServer::start_with({
        let fake = fake.clone();
        move |c| {
            c.public_url = Some(PUBLIC.into());
            fake.configure(c, "google");
        }
    })
    .await;
    let resp = browser()
        .get(srv.url("/auth/discord"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = resp.json().await.unwrap();
    let error = assert_error(
        &(StatusCode::SERVICE_UNAVAILABLE, body),
        StatusCode::SERVICE_UNAVAILABLE,
        "SERVICE_UNAVAILABLE",
    );
    assert!(
        error["details"]["reason"]
            .as_str()
            .unwrap()
            .contains("discord_client_id")
    );
    let (s, body) = srv.get("/auth/discord/callback?code=a&state=b", None).await;
    assert_error(
        &(s, body),
        StatusCode::SERVICE_UNAVAILABLE,
        "SERVICE_UNAVAILABLE",
    );
    srv.stop().await;

    let srv = TestServer::start_with(move |c| fake.configure(c, "google")).await;
    let (s, body) = srv.get("/auth/google", None).await;
    let error = assert_error(
        &(s, body),
        StatusCode::SERVICE_UNAVAILABLE,
        "SERVICE_UNAVAILABLE",
    );
    assert!(
        error["details"]["reason"]
            .as_str()
            .unwrap()
            .contains("public_url")
    );
    srv.stop().await;
}

/// An account with a Discord identity linked on an address Discord had not
/// verified, as sign-ins before that was refused left them: the attacker
/// who linked it can still sign in. Returns the account's session and the
/// attacker's sign-in.
async fn with_an_identity_linked_on_an_unverified_address(
    srv: &TestServer,
    fake: &FakeOAuth,
    sink: &SmtpSink,
) -> (pingvas_tests::Session, String, HashMap<String, String>) {
    let account = srv.signup("victim@example.com").await;
    let verify = sink.next().await.token("/verify-email");
    srv.sql(&format!(
        "INSERT INTO user_identities \
           (id, provider, subject, user_id, email, email_verified, created_at, last_login_at) \
         VALUES ('legacy-1', 'discord', 'd-evil', '{}', 'victim@example.com', FALSE, \
                 CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        account.user_id
    ))
    .await;
    fake.sign_in_as(discord("d-evil", "victim@example.com", false));
    let attacker = sign_in(srv, "discord").await;
    assert_eq!(
        me(srv, &attacker["access_token"]).await["id"],
        account.user_id
    );
    (account, verify, attacker)
}

/// What the attacker is left with once the owner has proved the address:
/// no access token, no session, no sign-in; the identity is gone.
async fn assert_locked_out(srv: &TestServer, fake: &FakeOAuth, attacker: &HashMap<String, String>) {
    assert_error(
        &srv.get("/users/me", Some(&attacker["access_token"])).await,
        StatusCode::UNAUTHORIZED,
        "INVALID_TOKEN",
    );
    let (s, body) = srv
        .post(
            "/auth/refresh",
            None,
            json!({ "refresh_token": attacker["refresh_token"] }),
        )
        .await;
    assert_error(&(s, body), StatusCode::UNAUTHORIZED, "INVALID_TOKEN");
    fake.sign_in_as(discord("d-evil", "victim@example.com", false));
    let again = sign_in(srv, "discord").await;
    assert_eq!(again["error"], "email_not_verified", "{again:?}");
    assert!(!again.contains_key("access_token"));
    assert_eq!(srv.count("SELECT COUNT(*) FROM user_identities").await, 0);
    assert_eq!(srv.count("SELECT COUNT(*) FROM users").await, 1);
}

async fn start_with_mail(fake: &FakeOAuth, sink: &SmtpSink) -> TestServer {
    let url = sink.url.clone();
    start(fake, move |c| c.smtp_url = Some(url.into())).await
}

#[tokio::test]
async fn a_password_reset_unlinks_a_discord_identity_linked_on_an_unverified_address() {
    let fake = FakeOAuth::start().await;
    let sink = SmtpSink::start().await;
    let srv = start_with_mail(&fake, &sink).await;
    let (account, _, attacker) =
        with_an_identity_linked_on_an_unverified_address(&srv, &fake, &sink).await;

    // The owner of the address resets the password by the mailed link.
    let new_password = "OwnersOwnPass456!";
    sink.reset_password(&srv, "victim@example.com", new_password)
        .await;

    assert_locked_out(&srv, &fake, &attacker).await;
    // The owner alone is in the account.
    let (s, body) = srv
        .post(
            "/auth/login",
            None,
            json!({ "email": "victim@example.com", "password": new_password }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let owner = me(&srv, body["data"]["access_token"].as_str().unwrap()).await;
    assert_eq!(owner["id"], account.user_id);
    assert_eq!(owner["email_verified"], true);
    srv.stop().await;
}

#[tokio::test]
async fn verifying_the_address_unlinks_a_discord_identity_linked_on_an_unverified_one() {
    let fake = FakeOAuth::start().await;
    let sink = SmtpSink::start().await;
    let srv = start_with_mail(&fake, &sink).await;
    let (account, verify, attacker) =
        with_an_identity_linked_on_an_unverified_address(&srv, &fake, &sink).await;

    // The owner follows the verification link that went to the address.
    let (s, body) = srv
        .post("/auth/verify-email", None, json!({ "token": verify }))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");

    assert_locked_out(&srv, &fake, &attacker).await;
    let owner = srv.login("victim@example.com").await;
    assert_eq!(me(&srv, &owner.access).await["id"], account.user_id);
    srv.stop().await;
}

#[tokio::test]
async fn a_verified_link_survives_a_password_reset() {
    let fake = FakeOAuth::start().await;
    let sink = SmtpSink::start().await;
    let srv = start_with_mail(&fake, &sink).await;
    fake.sign_in_as(google("g-keep", "keep@example.com", true));
    let first = sign_in(&srv, "google").await;
    assert_eq!(first["new_user"], "true");
    sink.reset_password(&srv, "keep@example.com", "KeepItSafe456!")
        .await;
    // The sessions ended, the identity stays: Google opens the account.
    assert_error(
        &srv.get("/users/me", Some(&first["access_token"])).await,
        StatusCode::UNAUTHORIZED,
        "INVALID_TOKEN",
    );
    fake.sign_in_as(google("g-keep", "keep@example.com", true));
    let again = sign_in(&srv, "google").await;
    assert_eq!(again["new_user"], "false");
    let user = me(&srv, &again["access_token"]).await;
    assert_eq!(user["email"], "keep@example.com");
    srv.stop().await;
}
