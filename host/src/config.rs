//! One typed `Config`, built in layers: defaults < `pingvas.toml` <
//! `PINGVAS_*` environment. Every secret may also come from a file named by
//! `PINGVAS_<NAME>_FILE` (Docker/Kubernetes secrets).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Settings that hold secrets; each may be given as `PINGVAS_<NAME>_FILE`.
const SECRET_KEYS: &[&str] = &[
    "jwt_secret",
    "database_url",
    "worker_token",
    "metrics_token",
    "billing_api_key",
    "billing_webhook_secret",
    "s3_secret_access_key",
    "redis_url",
    "google_client_secret",
    "discord_client_secret",
    "smtp_url",
    "c2pa_private_key",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address the HTTP server listens on.
    pub addr: SocketAddr,
    /// Serve the internal worker API on its own address (e.g. a private
    /// network) instead of next to the public API.
    pub internal_addr: Option<SocketAddr>,
    /// Serve `/metrics` on its own address instead of next to the API.
    pub metrics_addr: Option<SocketAddr>,
    /// When set, `/metrics` answers only `Authorization: Bearer <token>`.
    #[serde(serialize_with = "serialize_secret_opt")]
    pub metrics_token: Option<SecretString>,
    /// A client must send a request's headers within this long; a
    /// keep-alive connection idle this long is closed.
    pub header_timeout_ms: u64,
    /// Open connections per listener at most.
    pub max_connections: usize,
    /// A connection whose client takes none of a response's bytes for this
    /// long is closed (a stalled reader holds no buffers or file for more).
    pub write_timeout_ms: u64,
    /// Directory for the SQLite file, blobs and generated secrets.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; default: `<data_dir>/pingvas.db`.
    #[serde(serialize_with = "serialize_secret_opt")]
    pub database_url: Option<SecretString>,
    /// Upper bound on pooled database connections; by default 4 on SQLite
    /// (one writer at a time; more readers only add thread switches on
    /// small machines) and 16 on PostgreSQL.
    pub db_max_connections: Option<u32>,
    /// HS256 key for access tokens; generated into the data dir if unset.
    #[serde(serialize_with = "serialize_secret_opt")]
    pub jwt_secret: Option<SecretString>,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_days: u64,
    /// Credits granted to each new account.
    pub signup_grant_credits: i64,
    /// Password hashes (argon2, 19 MiB each) computed at once; default the
    /// number of cores.
    pub password_hash_threads: Option<usize>,
    /// Logins and registrations that may wait for a hash; past that they
    /// get `SERVICE_UNAVAILABLE` with `Retry-After`.
    pub password_hash_queue: usize,
    /// Plan catalogue file; the built-in catalogue when unset.
    pub plans_file: Option<PathBuf>,
    /// Model catalogue file; the built-in catalogue when unset.
    pub models_file: Option<PathBuf>,
    /// Largest accepted request body.
    pub body_limit_bytes: usize,
    /// Event WebSockets one user may hold open at once.
    pub ws_max_per_user: usize,
    /// Comma-separated allowed CORS origins; `*` for any; empty for none.
    pub cors_origins: String,
    /// `text` or `json`.
    pub log_format: String,
    /// How long graceful shutdown waits for in-flight requests.
    pub shutdown_grace_secs: u64,
    /// Largest plugin component accepted by `POST /plugins`.
    pub plugin_max_bytes: usize,
    /// Plugin versions one user may publish in an hour (more answer
    /// `RATE_LIMITED`).
    pub plugin_publishes_per_hour: u32,
    /// Count guest instructions (fuel) on top of wall-clock deadlines.
    pub plugin_fuel: bool,
    /// Plugin instances that may run at once (pooling allocator slots).
    pub plugin_pool_instances: u32,
    /// Limit overrides by plugin kind (`node`, `workflow`, `billing`) or by
    /// plugin name: `[plugin_limits.node] timeout_ms = 5000`.
    pub plugin_limits: std::collections::HashMap<String, LimitsOverride>,
    /// Base URL put in front of image links (`https://studio.example`);
    /// links are relative to the API host when unset.
    pub public_url: Option<String>,
    /// Run a worker inside `pingvas serve`.
    pub worker_enabled: bool,
    /// The in-process worker's backend: `cpu-reference`, `invokeai` or
    /// `comfyui`.
    pub worker_backend: String,
    /// Base URL of the InvokeAI or ComfyUI server.
    pub worker_backend_url: Option<String>,
    /// Comma-separated models the in-process worker serves; empty: every
    /// model of the catalogue.
    pub worker_models: String,
    /// A paused (draining) worker is registered but takes no jobs.
    pub worker_paused: bool,
    /// Shared secret of remote workers (`pingvas worker --token`); the
    /// internal worker API is closed when unset.
    #[serde(serialize_with = "serialize_secret_opt")]
    pub worker_token: Option<SecretString>,
    /// How long a lease lives without a heartbeat.
    pub lease_ttl_secs: u64,
    /// Leases a job may get before it fails (a worker died each time).
    pub job_max_attempts: u32,
    /// Queued jobs across all users before `QUEUE_FULL`.
    pub queue_max_queued: u64,
    /// The share of `queue_max_queued` the lowest tier leaves free for
    /// higher ones (tiers between get less headroom in steps; the top tier
    /// may fill the whole queue).
    pub queue_tier_headroom: f64,
    /// A worker not heard from for this long no longer counts as serving
    /// its models; queued jobs nobody serves fail after it.
    pub worker_offline_secs: u64,
    /// Where blobs live: unset, `<data_dir>/blobs`; `s3://bucket/prefix`,
    /// an S3-compatible bucket (with the `s3_*` keys); a path, that folder.
    pub blob_url: Option<String>,
    /// The S3 API's base URL for S3-compatible servers
    /// (`http://127.0.0.1:9000`); unset: AWS.
    pub s3_endpoint: Option<String>,
    pub s3_region: String,
    pub s3_access_key_id: Option<String>,
    #[serde(serialize_with = "serialize_secret_opt")]
    pub s3_secret_access_key: Option<SecretString>,
    /// How long the signed links to image files the API hands out stay
    /// valid.
    pub file_link_ttl_secs: i64,
    /// Files (`/files/…`, `/shared/…`) one client address may be reading
    /// at once; more answer `RATE_LIMITED`.
    pub file_reads_per_client: usize,
    /// Largest side of an uploaded image, read from its header before
    /// anything is decoded (at most 8192).
    pub upload_max_side: u32,
    /// Memory for rendered gallery list pages, reused until the user's
    /// gallery changes or the link window turns; 0 turns the cache off.
    pub gallery_page_cache_mib: u64,
    /// The plan catalogue's per-tier `requests_per_min` and
    /// `generations_per_min`, per user.
    pub rate_limits_enabled: bool,
    /// Redis (`redis://…`; also plain `REDIS_URL`): rate limits shared by
    /// every host. Unset: each host limits in its own memory.
    #[serde(serialize_with = "serialize_secret_opt")]
    pub redis_url: Option<SecretString>,
    /// Prefix of every key the host writes to Redis.
    pub redis_prefix: String,
    /// Several hosts serve this studio (implied by a PostgreSQL
    /// `database_url`): every host must be given the same `jwt_secret`.
    pub cluster: bool,
    /// Proxies (addresses or CIDR ranges) whose `X-Forwarded-For` names
    /// the client, for the per-client limits of unauthenticated routes.
    pub trusted_proxies: Vec<String>,
    /// Where the web front end lives: OAuth sign-ins return there (tokens
    /// in the URL fragment) and mailed links point there
    /// (`/verify-email?token=…`, `/reset-password?token=…`). Unset:
    /// `public_url`, else this host's own address.
    pub frontend_url: Option<String>,
    /// Google sign-in (`GET /api/v1/auth/google`); on when the id and
    /// secret are set (and `public_url`, for the redirect URI).
    pub google_client_id: Option<String>,
    #[serde(serialize_with = "serialize_secret_opt")]
    pub google_client_secret: Option<SecretString>,
    pub google_auth_url: String,
    pub google_token_url: String,
    pub google_userinfo_url: String,
    /// Discord sign-in, like Google's.
    pub discord_client_id: Option<String>,
    #[serde(serialize_with = "serialize_secret_opt")]
    pub discord_client_secret: Option<SecretString>,
    pub discord_auth_url: String,
    pub discord_token_url: String,
    pub discord_userinfo_url: String,
    /// How long a call to an OAuth provider may take.
    pub oauth_timeout_secs: u64,
    /// The mail server (`smtp://user:pass@host:587?tls=required`,
    /// `smtps://…:465`). Unset: mail is written to `<data_dir>/outbox/`.
    #[serde(serialize_with = "serialize_secret_opt")]
    pub smtp_url: Option<SecretString>,
    /// The sender of the host's mail.
    pub mail_from: String,
    /// Generation needs a verified email address (`FORBIDDEN`,
    /// `details.code = EMAIL_NOT_VERIFIED` otherwise).
    pub require_verified_email: bool,
    /// Serve the web studio at `/` (off: the host is an API only).
    pub web_ui: bool,
    /// The certificate chain (PEM, signing certificate first) that signs
    /// the content credentials of every generated image; with
    /// `c2pa_private_key`. Both unset: a test CA and key generated into
    /// `<data_dir>/c2pa/` (trusted by this studio only).
    pub c2pa_cert_chain_file: Option<PathBuf>,
    /// The signing certificate's private key (PEM, PKCS#8).
    #[serde(serialize_with = "serialize_secret_opt")]
    pub c2pa_private_key: Option<SecretString>,
    /// `es256`, `es384`, `es512`, `ps256`, `ps384`, `ps512` or `ed25519`:
    /// the key's algorithm.
    pub c2pa_signing_alg: String,
    /// More trust anchors (PEM) for verifying credentials, besides the
    /// generated test CA.
    pub c2pa_trust_anchors_file: Option<PathBuf>,
    /// Path of the billing adapter component (`.wasm`, billing-adapter
    /// world, `pingvas:plugin@0.2.0`); billing is off when unset.
    pub billing_adapter: Option<PathBuf>,
    /// The adapter's provider (`lemon-squeezy`, `stripe`): its webhooks
    /// arrive at `POST /api/v1/webhooks/<provider>`.
    pub billing_provider: String,
    /// Comma-separated hosts (`api.lemonsqueezy.com`, `127.0.0.1:8089`)
    /// the adapter may call.
    pub billing_http_allow: String,
    /// The provider's API key (the adapter's `config.secret("api_key")`).
    #[serde(serialize_with = "serialize_secret_opt")]
    pub billing_api_key: Option<SecretString>,
    /// The webhook signing secret (`config.secret("webhook_secret")`).
    #[serde(serialize_with = "serialize_secret_opt")]
    pub billing_webhook_secret: Option<SecretString>,
    /// Adapter settings (TOML only): store id, API base URL, redirect URL,
    /// `variant.<plan>.<cycle>` / `price.<plan>.<cycle>` ids.
    pub billing_settings: std::collections::HashMap<String, String>,
    /// Checkouts one user may start an hour (each calls the provider).
    pub billing_checkouts_per_hour: u32,
    /// How long a replaced adapter still verifies its provider's retried
    /// webhooks.
    pub billing_grace_hours: u64,
    /// The file this configuration was read from; reloads read it again.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// Operator overrides of the plugin limits, by kind (`node`, `workflow`,
/// `billing`) or by plugin name; a plugin's own entry wins
/// (`plugins::limits::resolve`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsOverride {
    pub memory_mib: Option<usize>,
    pub timeout_ms: Option<u64>,
    pub fuel: Option<u64>,
    pub output_kib: Option<usize>,
    /// Images a post-node may return (default: as many as it was given).
    pub max_outputs: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            internal_addr: None,
            metrics_addr: None,
            metrics_token: None,
            header_timeout_ms: 10_000,
            max_connections: 1000,
            write_timeout_ms: 30_000,
            data_dir: PathBuf::from("./data"),
            database_url: None,
            db_max_connections: None,
            jwt_secret: None,
            jwt_issuer: "pingvas".into(),
            jwt_audience: "pingvas-api".into(),
            access_token_ttl_secs: 3600,
            refresh_token_ttl_days: 30,
            signup_grant_credits: 100,
            password_hash_threads: None,
            password_hash_queue: 32,
            plans_file: None,
            models_file: None,
            body_limit_bytes: 20 * 1024 * 1024,
            ws_max_per_user: 8,
            cors_origins: String::new(),
            log_format: "text".into(),
            shutdown_grace_secs: 30,
            plugin_max_bytes: 10 * 1024 * 1024,
            plugin_publishes_per_hour: 30,
            plugin_fuel: false,
            plugin_pool_instances: 64,
            plugin_limits: Default::default(),
            public_url: None,
            worker_enabled: true,
            worker_backend: "cpu-reference".into(),
            worker_backend_url: None,
            worker_models: String::new(),
            worker_paused: false,
            worker_token: None,
            lease_ttl_secs: 30,
            job_max_attempts: 3,
            queue_max_queued: 10_000,
            queue_tier_headroom: 0.2,
            worker_offline_secs: 60,
            file_link_ttl_secs: 21_600,
            file_reads_per_client: 16,
            upload_max_side: 2048,
            gallery_page_cache_mib: 64,
            rate_limits_enabled: true,
            redis_url: None,
            redis_prefix: "pingvas:".into(),
            cluster: false,
            trusted_proxies: Vec::new(),
            blob_url: None,
            s3_endpoint: None,
            s3_region: "us-east-1".into(),
            s3_access_key_id: None,
            s3_secret_access_key: None,
            frontend_url: None,
            google_client_id: None,
            google_client_secret: None,
            google_auth_url: "https://accounts.google.com/o/oauth2/v2/auth".into(),
            google_token_url: "https://oauth2.googleapis.com/token".into(),
            google_userinfo_url: "https://openidconnect.googleapis.com/v1/userinfo".into(),
            discord_client_id: None,
            discord_client_secret: None,
            discord_auth_url: "https://discord.com/oauth2/authorize".into(),
            discord_token_url: "https://discord.com/api/oauth2/token".into(),
            discord_userinfo_url: "https://discord.com/api/users/@me".into(),
            oauth_timeout_secs: 10,
            smtp_url: None,
            mail_from: "Pingvas Studio <no-reply@pingvas.local>".into(),
            require_verified_email: false,
            web_ui: true,
            c2pa_cert_chain_file: None,
            c2pa_private_key: None,
            c2pa_signing_alg: "es256".into(),
            c2pa_trust_anchors_file: None,
            billing_adapter: None,
            billing_provider: "lemon-squeezy".into(),
            billing_http_allow: String::new(),
            billing_api_key: None,
            billing_webhook_secret: None,
            billing_settings: Default::default(),
            billing_grace_hours: 72,
            billing_checkouts_per_hour: 10,
            source: None,
        }
    }
}

/// The non-empty, trimmed items of a comma-separated setting.
pub fn comma_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn serialize_secret_opt<S: serde::Serializer>(
    v: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    v.as_ref()
        .map(|x| x.expose_secret().to_owned())
        .serialize(s)
}

impl Config {
    /// Loads the layers from `file` (default `./pingvas.toml`, or the path in
    /// `PINGVAS_CONFIG`) and the process environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("PINGVAS_CONFIG").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("pingvas.toml"));
        let mut figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(&file))
            .merge(
                Env::raw()
                    .only(&["DATABASE_URL", "REDIS_URL"])
                    .map(|k| k.as_str().to_ascii_lowercase().into()),
            )
            .merge(
                Env::prefixed("PINGVAS_")
                    .filter(|k| !k.as_str().ends_with("_file") && k.as_str() != "config"),
            );
        for key in SECRET_KEYS {
            let var = format!("PINGVAS_{}_FILE", key.to_ascii_uppercase());
            if let Some(path) = std::env::var_os(&var) {
                let value = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {var}={}", Path::new(&path).display()))?;
                figment = figment.merge(Serialized::default(key, value.trim().to_owned()));
            }
        }
        let mut config: Config = figment.extract().context("invalid configuration")?;
        config.source = Some(file);
        Ok(config.clamped())
    }

    /// The configuration with values that would stop the queue raised to
    /// their least working value (applied once, when it is loaded or
    /// handed to `AppState::build`).
    pub fn clamped(mut self) -> Self {
        self.lease_ttl_secs = self.lease_ttl_secs.max(1);
        self.job_max_attempts = self.job_max_attempts.max(1);
        self.worker_offline_secs = self.worker_offline_secs.max(1);
        self
    }

    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.expose_secret().to_owned(),
            None => format!("sqlite://{}", self.data_dir.join("pingvas.db").display()),
        }
    }

    /// Whether other hosts may share this one's database: `cluster`, or
    /// a database other than SQLite.
    pub fn multi_host(&self) -> bool {
        self.cluster || !self.database_url().starts_with("sqlite:")
    }

    pub fn db_max_connections(&self) -> u32 {
        let default = if self.database_url().starts_with("sqlite:") {
            4
        } else {
            16
        };
        self.db_max_connections.unwrap_or(default)
    }

    pub fn password_hash_concurrency(&self) -> usize {
        self.password_hash_threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
        })
    }

    /// The in-process worker's models; `None` for every model.
    pub fn worker_model_list(&self) -> Option<Vec<String>> {
        let list = comma_list(&self.worker_models);
        (!list.is_empty()).then_some(list)
    }

    /// The front end's base URL, without a trailing slash.
    pub fn frontend_base(&self) -> String {
        if let Some(url) = self.frontend_url.as_ref().or(self.public_url.as_ref()) {
            return url.trim_end_matches('/').to_owned();
        }
        if self.addr.ip().is_unspecified() {
            format!("http://localhost:{}", self.addr.port())
        } else {
            format!("http://{}", self.addr)
        }
    }

    pub fn cors_origin_list(&self) -> Vec<String> {
        comma_list(&self.cors_origins)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure signature
    fn layers_file_then_env_then_secret_files() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "pingvas.toml",
                "addr = \"0.0.0.0:9000\"\nsignup_grant_credits = 5\njwt_issuer = \"file\"",
            )?;
            jail.set_env("PINGVAS_SIGNUP_GRANT_CREDITS", "7");
            jail.create_file("secret.txt", "s3cr3t\n")?;
            jail.set_env("PINGVAS_JWT_SECRET_FILE", "secret.txt");
            jail.set_env("DATABASE_URL", "postgres://x/y");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.addr.port(), 9000);
            assert_eq!(c.signup_grant_credits, 7);
            assert_eq!(c.jwt_issuer, "file");
            assert_eq!(c.jwt_secret.as_ref().unwrap().expose_secret(), "s3cr3t");
            assert_eq!(c.database_url(), "postgres://x/y");
            Ok(())
        });
    }

    #[test]
    fn zero_queue_timings_are_raised_once_at_load() {
        let c = Config {
            lease_ttl_secs: 0,
            job_max_attempts: 0,
            worker_offline_secs: 0,
            ..Config::default()
        }
        .clamped();
        assert_eq!(
            (c.lease_ttl_secs, c.job_max_attempts, c.worker_offline_secs),
            (1, 1, 1)
        );
    }

    #[test]
    fn secrets_never_print() {
        let c = Config {
            jwt_secret: Some("hunter2".into()),
            ..Config::default()
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
