//! A local OAuth 2.0 provider in the shape Google and Discord document:
//! an authorization endpoint that sends the browser back with `code` and
//! `state`, a token endpoint (form-encoded `authorization_code` grant with
//! the client's credentials in the body and PKCE S256 checked) and a
//! profile endpoint behind the bearer token. What the profile says —
//! Google's userinfo or Discord's `/users/@me` — is the test's to give.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::serve;

pub const CLIENT_ID: &str = "pingvas-test-client";
pub const CLIENT_SECRET: &str = "pingvas-test-secret";

struct Grant {
    redirect_uri: String,
    challenge: String,
    profile: Value,
}

#[derive(Default)]
pub struct OAuthState {
    /// The profile of whoever "signs in" at the next authorization.
    next_profile: Option<Value>,
    /// The next authorization is refused (`error=access_denied`).
    pub deny_next: bool,
    /// The token endpoint answers this status and body instead.
    pub token_failure: Option<(u16, Value)>,
    /// The token endpoint waits this long first.
    pub token_delay: Option<Duration>,
    /// Every authorization request's query.
    pub authorizations: Vec<HashMap<String, String>>,
    /// Every token request's form.
    pub token_requests: Vec<HashMap<String, String>>,
    codes: HashMap<String, Grant>,
    tokens: HashMap<String, Value>,
}

#[derive(Clone, Default)]
pub struct FakeOAuth {
    pub state: Arc<Mutex<OAuthState>>,
    pub base: String,
}

impl FakeOAuth {
    pub async fn start() -> Self {
        let mut fake = FakeOAuth::default();
        let app = Router::new()
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/userinfo", get(userinfo))
            .with_state(fake.clone());
        fake.base = serve(app).await;
        fake
    }

    /// Sets `{provider}_client_id/_secret/_auth_url/_token_url/_userinfo_url`.
    pub fn configure(&self, c: &mut pingvas_host::config::Config, provider: &str) {
        let (auth, token, info) = (
            format!("{}/authorize", self.base),
            format!("{}/token", self.base),
            format!("{}/userinfo", self.base),
        );
        match provider {
            "google" => {
                c.google_client_id = Some(CLIENT_ID.into());
                c.google_client_secret = Some(CLIENT_SECRET.to_owned().into());
                (c.google_auth_url, c.google_token_url, c.google_userinfo_url) =
                    (auth, token, info);
            }
            "discord" => {
                c.discord_client_id = Some(CLIENT_ID.into());
                c.discord_client_secret = Some(CLIENT_SECRET.to_owned().into());
                (
                    c.discord_auth_url,
                    c.discord_token_url,
                    c.discord_userinfo_url,
                ) = (auth, token, info);
            }
            other => panic!("no provider {other}"),
        }
    }

    /// Whoever signs in next has this profile.
    pub fn sign_in_as(&self, profile: Value) {
        self.state.lock().unwrap().next_profile = Some(profile);
    }
}

fn random() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

async fn authorize(
    State(fake): State<FakeOAuth>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut st = fake.state.lock().unwrap();
    st.authorizations.push(q.clone());
    let field = |k: &str| q.get(k).cloned().unwrap_or_default();
    if field("client_id") != CLIENT_ID
        || field("response_type") != "code"
        || field("code_challenge_method") != "S256"
        || field("code_challenge").is_empty()
    {
        return (StatusCode::BAD_REQUEST, "invalid_request").into_response();
    }
    let redirect_uri = field("redirect_uri");
    let state = field("state");
    let back = |params: &[(&str, &str)]| {
        let mut url = reqwest::Url::parse(&redirect_uri).expect("redirect_uri");
        url.query_pairs_mut().extend_pairs(params);
        Redirect::to(url.as_str()).into_response()
    };
    if std::mem::take(&mut st.deny_next) {
        return back(&[("error", "access_denied"), ("state", &state)]);
    }
    let profile = st
        .next_profile
        .clone()
        .expect("sign_in_as before authorizing");
    let code = random();
    st.codes.insert(
        code.clone(),
        Grant {
            redirect_uri: redirect_uri.clone(),
            challenge: field("code_challenge"),
            profile,
        },
    );
    back(&[("code", &code), ("state", &state)])
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (status, axum::Json(json!({ "error": error }))).into_response()
}

async fn token(State(fake): State<FakeOAuth>, body: String) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let delay = {
        let mut st = fake.state.lock().unwrap();
        st.token_requests.push(form.clone());
        st.token_delay
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let mut st = fake.state.lock().unwrap();
    if let Some((status, body)) = st.token_failure.clone() {
        return (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
    }
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    if field("client_id") != CLIENT_ID || field("client_secret") != CLIENT_SECRET {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    if field("grant_type") != "authorization_code" {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    // A code works once.
    let Some(grant) = st.codes.remove(&field("code")) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    };
    let verifier_hash = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(field("code_verifier").as_bytes()));
    if grant.redirect_uri != field("redirect_uri") || verifier_hash != grant.challenge {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    let access = random();
    st.tokens.insert(access.clone(), grant.profile);
    axum::Json(json!({
        "access_token": access, "token_type": "Bearer", "expires_in": 3599,
        "scope": "openid email profile"
    }))
    .into_response()
}

async fn userinfo(State(fake): State<FakeOAuth>, headers: HeaderMap) -> Response {
    let st = fake.state.lock().unwrap();
    let profile = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| st.tokens.get(t));
    match profile {
        Some(p) => axum::Json(p.clone()).into_response(),
        None => oauth_error(StatusCode::UNAUTHORIZED, "invalid_token"),
    }
}
