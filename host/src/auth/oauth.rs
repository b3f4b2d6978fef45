//! Sign-in through Google and Discord: the authorization-code flow with
//! PKCE (S256; both providers take it) and a single-use `state`, stored
//! hashed for ten minutes and bound to the browser that started the flow
//! by a cookie (so a callback link made by someone else cannot sign a
//! victim into the sender's account). Token exchange through the `oauth2`
//! crate and the profile fetch both go over one reqwest client that never
//! follows redirects and gives up after `oauth_timeout_secs`.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, HttpClientError,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, TokenResponse,
    TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::email;
use super::tokens::{hash_opaque_token, new_opaque_token};
use crate::config::Config;
use crate::store::{Db, identities};

/// How long a started sign-in may take to come back.
pub const STATE_TTL_MINUTES: i64 = 10;
/// Largest profile answer read from a provider.
const MAX_PROFILE_BYTES: usize = 64 * 1024;

/// One OAuth provider's settings, as the config gives them.
struct OAuthSettings {
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    auth_url: String,
    token_url: String,
    userinfo_url: String,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, strum::EnumString, strum::IntoStaticStr, strum::Display,
)]
#[strum(serialize_all = "lowercase")]
pub enum Provider {
    Google,
    Discord,
}

impl Provider {
    pub const ALL: [Provider; 2] = [Provider::Google, Provider::Discord];

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The provider's settings in `config`; client id and secret only
    /// when set to something.
    fn settings(self, config: &Config) -> OAuthSettings {
        let non_empty = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        let secret =
            |v: &Option<SecretString>| v.clone().filter(|s| !s.expose_secret().trim().is_empty());
        match self {
            Provider::Google => OAuthSettings {
                client_id: non_empty(&config.google_client_id),
                client_secret: secret(&config.google_client_secret),
                auth_url: config.google_auth_url.clone(),
                token_url: config.google_token_url.clone(),
                userinfo_url: config.google_userinfo_url.clone(),
            },
            Provider::Discord => OAuthSettings {
                client_id: non_empty(&config.discord_client_id),
                client_secret: secret(&config.discord_client_secret),
                auth_url: config.discord_auth_url.clone(),
                token_url: config.discord_token_url.clone(),
                userinfo_url: config.discord_userinfo_url.clone(),
            },
        }
    }

    fn scopes(self) -> &'static [&'static str] {
        match self {
            Provider::Google => &["openid", "email", "profile"],
            Provider::Discord => &["identify", "email"],
        }
    }

    /// The account a provider's profile answer describes: Google's OpenID
    /// userinfo (`sub`, `email`, `email_verified`, `name`, `picture`) or
    /// Discord's `GET /users/@me` (`id`, `email`, `verified`,
    /// `global_name`/`username`, `avatar` hash).
    pub fn parse_profile(self, v: &Value) -> Option<Profile> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let flag = |k: &str| match v.get(k) {
            Some(Value::Bool(b)) => *b,
            // Some Google answers carry it as a string.
            Some(Value::String(s)) => s == "true",
            _ => false,
        };
        let (subject, verified, name, avatar) = match self {
            Provider::Google => (
                text("sub")?,
                flag("email_verified"),
                text("name"),
                text("picture"),
            ),
            Provider::Discord => {
                let id = text("id")?;
                let avatar = text("avatar")
                    .filter(|h| h.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                    .map(|h| format!("https://cdn.discordapp.com/avatars/{id}/{h}.png"));
                let name = text("global_name").or_else(|| text("username"));
                (id, flag("verified"), name, avatar)
            }
        };
        if subject.is_empty() || subject.len() > 255 {
            return None;
        }
        let email = text("email").and_then(|e| email::normalise(&e));
        Some(Profile {
            subject,
            email_verified: verified && email.is_some(),
            email,
            name,
            avatar_url: avatar,
        })
    }
}

/// Who signed in, as the provider tells it.
#[derive(Debug, Clone)]
pub struct Profile {
    pub subject: String,
    /// Normalised; `None` when missing or not a valid address.
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub avatar_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("{0}")]
    NotConfigured(String),
    #[error("the sign-in state is missing, unknown, already used or from another browser")]
    InvalidState,
    #[error("the sign-in took longer than {STATE_TTL_MINUTES} minutes")]
    StateExpired,
    #[error("the provider refused: {0}")]
    Denied(String),
    #[error("the provider did not exchange the code: {0}")]
    TokenExchange(String),
    #[error("the provider did not answer in time")]
    Timeout,
    #[error("the provider's profile could not be read: {0}")]
    Profile(String),
    #[error("the provider shares no email address")]
    NoEmail,
    #[error("an account with this email exists, and the provider has not verified the address")]
    EmailNotVerified,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl OAuthError {
    /// The `error` put in the redirect to the front end.
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::NotConfigured(_) => "not_configured",
            OAuthError::InvalidState => "invalid_state",
            OAuthError::StateExpired => "state_expired",
            OAuthError::Denied(_) => "access_denied",
            OAuthError::TokenExchange(_) => "token_exchange_failed",
            OAuthError::Timeout => "provider_timeout",
            OAuthError::Profile(_) => "profile_failed",
            OAuthError::NoEmail => "email_missing",
            OAuthError::EmailNotVerified => "email_not_verified",
            OAuthError::Internal(_) => "server_error",
        }
    }
}

impl From<crate::store::StoreError> for OAuthError {
    fn from(e: crate::store::StoreError) -> Self {
        OAuthError::Internal(e.into())
    }
}

/// An `oauth2` client with its authorization and token endpoints set.
type CodeClient = BasicClient<
    oauth2::EndpointSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

struct ProviderConfig {
    client_id: String,
    client_secret: SecretString,
    auth_url: AuthUrl,
    token_url: TokenUrl,
    userinfo_url: url::Url,
}

/// What the callback was given (its query string).
#[derive(Debug, Default)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
}

impl Callback {
    pub fn parse(query: &str) -> Self {
        let mut cb = Callback::default();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match k.as_ref() {
                "code" => &mut cb.code,
                "state" => &mut cb.state,
                "error" => &mut cb.error,
                _ => continue,
            };
            slot.get_or_insert_with(|| v.into_owned());
        }
        cb
    }
}

/// A started sign-in: where to send the browser, and the `state` to keep
/// in its cookie.
pub struct Started {
    pub url: String,
    pub state: String,
}

pub struct OAuth {
    db: Db,
    http: reqwest::Client,
    providers: HashMap<Provider, ProviderConfig>,
    /// The API's public base (`public_url`): redirect URIs hang off it.
    public_url: Option<String>,
}

impl OAuth {
    /// Reads the providers' settings; a provider is configured when its
    /// client id and secret are both set. A malformed endpoint URL stops
    /// start-up.
    pub fn from_config(db: Db, config: &Config) -> anyhow::Result<Self> {
        let mut providers = HashMap::new();
        for p in Provider::ALL {
            let s = p.settings(config);
            let (Some(id), Some(secret)) = (s.client_id, s.client_secret) else {
                continue;
            };
            let name = p.as_str();
            providers.insert(
                p,
                ProviderConfig {
                    client_id: id,
                    client_secret: secret,
                    auth_url: AuthUrl::new(s.auth_url)
                        .with_context(|| format!("{name}_auth_url"))?,
                    token_url: TokenUrl::new(s.token_url)
                        .with_context(|| format!("{name}_token_url"))?,
                    userinfo_url: url::Url::parse(&s.userinfo_url)
                        .with_context(|| format!("{name}_userinfo_url"))?,
                },
            );
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(config.oauth_timeout_secs.max(1)))
            .user_agent("pingvas-host")
            .build()
            .context("building the OAuth HTTP client")?;
        Ok(Self {
            db,
            http,
            providers,
            public_url: config
                .public_url
                .as_deref()
                .map(|u| u.trim_end_matches('/').to_owned()),
        })
    }

    fn client(&self, p: Provider) -> Result<(CodeClient, &ProviderConfig), OAuthError> {
        let name = p.as_str();
        let cfg = self.providers.get(&p).ok_or_else(|| {
            OAuthError::NotConfigured(format!(
                "{name} sign-in is not configured ({name}_client_id and {name}_client_secret)"
            ))
        })?;
        let base = self.public_url.as_deref().ok_or_else(|| {
            OAuthError::NotConfigured("public_url is not set: no redirect URI to give".into())
        })?;
        let redirect = RedirectUrl::new(format!("{base}/api/v1/auth/{name}/callback"))
            .map_err(|e| OAuthError::NotConfigured(format!("public_url: {e}")))?;
        let client = BasicClient::new(ClientId::new(cfg.client_id.clone()))
            .set_client_secret(ClientSecret::new(
                cfg.client_secret.expose_secret().to_owned(),
            ))
            .set_auth_uri(cfg.auth_url.clone())
            .set_token_uri(cfg.token_url.clone())
            .set_redirect_uri(redirect)
            // Both providers document the credentials in the form body.
            .set_auth_type(AuthType::RequestBody);
        Ok((client, cfg))
    }

    /// Whether `p` can be used (for the reason when not, call `begin`).
    pub fn is_configured(&self, p: Provider) -> bool {
        self.providers.contains_key(&p) && self.public_url.is_some()
    }

    /// Starts a sign-in: remembers its state and PKCE verifier, and says
    /// where to send the browser.
    pub async fn begin(&self, p: Provider) -> Result<Started, OAuthError> {
        let (client, _) = self.client(p)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state) = client
            .authorize_url(|| CsrfToken::new(new_opaque_token()))
            .add_scopes(p.scopes().iter().map(|s| Scope::new((*s).to_owned())))
            .set_pkce_challenge(challenge)
            .url();
        let now = Utc::now();
        let w = self.db.write().await;
        identities::save_state(
            &w,
            &hash_opaque_token(state.secret()),
            p.as_str(),
            verifier.secret(),
            now,
            now + chrono::Duration::minutes(STATE_TTL_MINUTES),
        )
        .await?;
        Ok(Started {
            url: url.to_string(),
            state: state.secret().clone(),
        })
    }

    /// Ends a sign-in: checks the state (against the browser's cookie
    /// too), exchanges the code and reads the profile.
    pub async fn finish(
        &self,
        p: Provider,
        cb: &Callback,
        cookie_state: Option<&str>,
    ) -> Result<Profile, OAuthError> {
        let (client, cfg) = self.client(p)?;
        let state = cb.state.as_deref().ok_or(OAuthError::InvalidState)?;
        // The state is spent even when the provider reports an error: a
        // flow ends once, either way.
        let pending = {
            let w = self.db.write().await;
            identities::take_state(&w, &hash_opaque_token(state)).await?
        };
        let pending = pending
            .filter(|s| s.provider == p.as_str())
            .ok_or(OAuthError::InvalidState)?;
        if cookie_state != Some(state) {
            return Err(OAuthError::InvalidState);
        }
        if pending.expires_at <= Utc::now() {
            return Err(OAuthError::StateExpired);
        }
        if let Some(error) = &cb.error {
            return Err(OAuthError::Denied(error.chars().take(100).collect()));
        }
        let code = cb
            .code
            .as_deref()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| OAuthError::Denied("no code".into()))?;
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier))
            .request_async(&self.http)
            .await
            .map_err(exchange_error)?;
        let resp = self
            .http
            .get(cfg.userinfo_url.clone())
            .bearer_auth(token.access_token().secret())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(request_error)?;
        if !resp.status().is_success() {
            return Err(OAuthError::Profile(format!("HTTP {}", resp.status())));
        }
        let body = read_capped(resp, MAX_PROFILE_BYTES).await?;
        let json: Value =
            serde_json::from_slice(&body).map_err(|_| OAuthError::Profile("not JSON".into()))?;
        p.parse_profile(&json)
            .ok_or_else(|| OAuthError::Profile("no account id".into()))
    }
}

async fn read_capped(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, OAuthError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(request_error)? {
        if body.len() + chunk.len() > max {
            return Err(OAuthError::Profile("answer too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn request_error(e: reqwest::Error) -> OAuthError {
    if e.is_timeout() {
        OAuthError::Timeout
    } else {
        OAuthError::Profile(without_url(&e))
    }
}

/// A reqwest error's text without the URL (it may carry a code).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<url>");
    }
    text
}

fn exchange_error<TE: oauth2::ErrorResponse>(
    e: RequestTokenError<HttpClientError<reqwest::Error>, TE>,
) -> OAuthError {
    match e {
        RequestTokenError::ServerResponse(r) => {
            OAuthError::TokenExchange(r.to_string().chars().take(200).collect())
        }
        RequestTokenError::Request(HttpClientError::Reqwest(e)) if e.is_timeout() => {
            OAuthError::Timeout
        }
        RequestTokenError::Request(HttpClientError::Reqwest(e)) => {
            OAuthError::TokenExchange(without_url(&e))
        }
        RequestTokenError::Request(e) => OAuthError::TokenExchange(e.to_string()),
        RequestTokenError::Parse(_, _) => {
            OAuthError::TokenExchange("unreadable token answer".into())
        }
        RequestTokenError::Other(s) => OAuthError::TokenExchange(s.chars().take(200).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn profiles_of_both_providers() {
        let g = Provider::Google
            .parse_profile(
                &json!({ "sub": "1081", "email": "Kim@Example.com", "email_verified": true,
                                    "name": "김철수", "picture": "https://lh3.example/a.png" }),
            )
            .unwrap();
        assert_eq!(g.subject, "1081");
        assert_eq!(g.email.as_deref(), Some("kim@example.com"));
        assert!(g.email_verified);
        assert_eq!(g.name.as_deref(), Some("김철수"));

        let d = Provider::Discord
            .parse_profile(&json!({ "id": "80351110224678912", "username": "nelly", "global_name": null,
                                    "avatar": "8342729096ea3675442027381ff50dfe", "email": "nelly@discord.com", "verified": false }))
            .unwrap();
        assert_eq!(d.name.as_deref(), Some("nelly"));
        assert!(!d.email_verified);
        assert_eq!(
            d.avatar_url.as_deref(),
            Some(
                "https://cdn.discordapp.com/avatars/80351110224678912/8342729096ea3675442027381ff50dfe.png"
            )
        );
        // No id, no account; a bad address is no address (and not verified).
        assert!(
            Provider::Discord
                .parse_profile(&json!({ "username": "x" }))
                .is_none()
        );
        let bad = Provider::Google
            .parse_profile(&json!({ "sub": "1", "email": "nope", "email_verified": true }))
            .unwrap();
        assert_eq!((bad.email, bad.email_verified), (None, false));
    }

    #[test]
    fn callback_query_takes_the_first_of_each() {
        let cb = Callback::parse("state=a%2Bb&code=c1&code=c2&error=access_denied&x=1");
        assert_eq!(cb.state.as_deref(), Some("a+b"));
        assert_eq!(cb.code.as_deref(), Some("c1"));
        assert_eq!(cb.error.as_deref(), Some("access_denied"));
    }
}
