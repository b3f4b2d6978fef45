//! Application state: everything a request handler or a CLI command needs,
//! built once from the `Config`.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use secrecy::ExposeSecret;

use crate::auth::AuthService;
use crate::auth::email_links::MailLinks;
use crate::auth::passwords::HashGate;
use crate::auth::tokens::{AccessTokens, new_secret};
use crate::billing::adapter::Adapters;
use crate::billing::ledger::Ledger;
use crate::billing::plans::Catalogue;
use crate::billing::subscriptions::Billing;
use crate::blobs::Blobs;
use crate::blobs::signed::FileLinks;
use crate::config::Config;
use crate::events::Events;
use crate::gallery::Gallery;
use crate::generation::Generator;
use crate::hourly::HourlyAllowance;
use crate::http::page_cache::PageCache;
use crate::metrics::HttpMetrics;
use crate::models::ModelCatalogue;
use crate::plugins::PluginRuntime;
use crate::plugins::engine::EngineOptions;
use crate::plugins::registry::{Registry, RegistrySettings};
use crate::queue::{BillingNotices, Queue, QueueParts, QueueSettings, WorkerInfo};
use crate::revisions::Revisions;
use crate::store::Db;
use crate::workflows::Workflows;

pub struct AppState {
    pub config: Config,
    pub db: Db,
    pub auth: AuthService,
    /// Sign-in through Google and Discord.
    pub oauth: crate::auth::oauth::OAuth,
    pub ledger: Ledger,
    pub plans: Catalogue,
    pub models: ModelCatalogue,
    pub metrics: HttpMetrics,
    pub registry: Arc<Registry>,
    pub events: Arc<Events>,
    pub queue: Arc<Queue>,
    pub queue_settings: QueueSettings,
    pub blobs: Blobs,
    /// Signs links to stored files.
    pub links: FileLinks,
    pub generator: Arc<Generator>,
    pub workflows: Workflows,
    /// Subscriptions through the payment-provider adapter.
    pub billing: Arc<Billing>,
    /// Images, boards and storage.
    pub gallery: Gallery,
    /// Rendered `GET /images` pages (`http::page_cache`).
    pub image_pages: PageCache,
    /// Files each client address is reading now (`file_reads_per_client`).
    pub file_readers: crate::http::files::Readers,
    /// Per-tier request limits.
    pub rate_limits: crate::ratelimit::RateLimits,
    /// `trusted_proxies`, parsed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Signs and checks content credentials.
    pub credentials: Arc<crate::provenance::Credentials>,
    /// Cancelled when the server begins to shut down (ends WebSockets).
    pub shutdown: tokio_util::sync::CancellationToken,
}

pub type SharedState = Arc<AppState>;

/// The shortest worker token the host accepts: it guards the internal API.
pub const MIN_WORKER_TOKEN_BYTES: usize = 32;

/// Per-user "not before" times of access tokens: shared through Redis when
/// `redis_url` is set, else this host's own.
async fn session_cutoffs(config: &Config) -> anyhow::Result<crate::auth::cutoffs::SessionCutoffs> {
    use crate::auth::cutoffs::SessionCutoffs;
    Ok(match &config.redis_url {
        Some(url) => SessionCutoffs::shared(
            url.expose_secret(),
            &config.redis_prefix,
            config.access_token_ttl_secs,
        )
        .await
        .context("connecting to redis_url (session cutoffs)")?,
        None => SessionCutoffs::local(config.access_token_ttl_secs),
    })
}

async fn login_backoff(config: &Config) -> anyhow::Result<crate::auth::throttle::LoginBackoff> {
    use crate::auth::throttle::{LoginBackoff, SharedThrottle};
    Ok(match &config.redis_url {
        Some(url) => LoginBackoff::shared(
            SharedThrottle::connect(url.expose_secret(), &config.redis_prefix)
                .await
                .context("connecting to redis_url (login back-off)")?,
        ),
        None => LoginBackoff::default(),
    })
}

/// Connects to the database and runs the migrations.
pub async fn open_database(config: &Config) -> anyhow::Result<Db> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let db = Db::connect(&config.database_url(), config.db_max_connections())
        .await
        .context("connecting to the database")?;
    db.migrate().await.context("running migrations")?;
    Ok(db)
}

impl AppState {
    pub async fn build(config: Config) -> anyhow::Result<SharedState> {
        let config = config.clamped();
        if let Some(token) = &config.worker_token {
            anyhow::ensure!(
                token.expose_secret().len() >= MIN_WORKER_TOKEN_BYTES,
                "worker_token must be at least {MIN_WORKER_TOKEN_BYTES} bytes"
            );
        }
        let db = open_database(&config).await?;
        if let Some(url) = &config.redis_url {
            // Every host hears of the profile writes of every other.
            crate::revisions::redis::share(
                db.profile_revisions(),
                url.expose_secret(),
                format!("{}revisions:profile", config.redis_prefix),
            )
            .await
            .context("connecting to redis_url (profile revisions)")?;
        }
        let secret = jwt_secret(&config)?;
        check_shared_services(&config)?;
        let access = AccessTokens::new(
            secret.as_bytes(),
            &config.jwt_issuer,
            &config.jwt_audience,
            config.access_token_ttl_secs,
        );
        let metrics = HttpMetrics::new();
        let mailer = Arc::new(crate::mail::Mailer::from_config(
            &config,
            metrics.mail_sent.clone(),
            metrics.mail_failed.clone(),
        )?);
        let auth = AuthService::new(
            db.clone(),
            access,
            config.refresh_token_ttl_days,
            config.signup_grant_credits,
            HashGate::new(
                config.password_hash_concurrency(),
                config.password_hash_queue,
            ),
            MailLinks::new(db.clone(), mailer, &config.frontend_base()),
            session_cutoffs(&config).await?,
        )
        .with_login_backoff(login_backoff(&config).await?);
        let oauth = crate::auth::oauth::OAuth::from_config(db.clone(), &config)?;
        let plans = Catalogue::load(config.plans_file.as_deref())?;
        let models = ModelCatalogue::load(config.models_file.as_deref(), &plans)?;
        tokio::task::spawn_blocking(crate::auth::passwords::warm_up).await?;
        let runtime = plugin_runtime(&config)?;
        let plan_names = plans.all().iter().map(|p| p.name.clone()).collect();
        let adapters = Adapters::start(runtime.clone(), plan_names, &config)
            .await
            .context("loading the billing adapter")?;
        // Limits and allowances every host shares, with Redis.
        let shared_limits = match &config.redis_url {
            Some(url) => Some(Arc::new(
                crate::ratelimit::SharedLimits::connect(
                    url.expose_secret(),
                    &config.redis_prefix,
                    metrics.ratelimit_redis_errors.clone(),
                )
                .await
                .context("connecting to redis_url")?,
            )),
            None => None,
        };
        let blobs = crate::blobs::open(&config)?;
        let registry = Arc::new(Registry::new(
            db.clone(),
            blobs.clone(),
            runtime,
            RegistrySettings {
                max_bytes: config.plugin_max_bytes,
                overrides: config.plugin_limits.clone(),
                concurrent_checks: 1,
                publishes_per_hour: config.plugin_publishes_per_hour,
            },
            shared_limits.clone(),
        ));
        let events = Arc::new(match &config.redis_url {
            // Every host's sockets hear every event of their user, and a
            // client resumes on any host.
            Some(url) => Events::shared(url.expose_secret(), &config.redis_prefix)
                .await
                .context("connecting to redis_url (events)")?,
            None => Events::local(),
        });
        let links = FileLinks::with_ttl(
            secret.as_bytes(),
            config.public_url.as_deref(),
            config.file_link_ttl_secs,
        );
        let revisions = Revisions::default();
        if let Some(url) = &config.redis_url {
            // A gallery change through any host makes every host's cached
            // list pages of that user a miss.
            crate::revisions::redis::share(
                &revisions,
                url.expose_secret(),
                format!("{}revisions:gallery", config.redis_prefix),
            )
            .await
            .context("connecting to redis_url (gallery revisions)")?;
        }
        let credentials = Arc::new(
            crate::provenance::Credentials::from_config(&config).context("content credentials")?,
        );
        let queue_settings = QueueSettings::from(&config);
        let queue = Arc::new(Queue::new(
            QueueParts {
                db: db.clone(),
                plans: plans.clone(),
                models: models.clone(),
                events: events.clone(),
                blobs: blobs.clone(),
                links: links.clone(),
                revisions: revisions.clone(),
                credentials: credentials.clone(),
            },
            queue_settings.clone(),
        ));
        queue
            .hear_other_hosts()
            .await
            .context("listening for other hosts' queue changes")?;
        // One gate for every decode of outside bytes: inputs and uploads.
        let decode_gate = crate::imaging::DecodeGate::for_cores();
        let generator = Arc::new(Generator {
            db: db.clone(),
            models: models.clone(),
            plans: plans.clone(),
            registry: registry.clone(),
            blobs: blobs.clone(),
            queue: queue.clone(),
            plugin_limits: config.plugin_limits.clone(),
            decoding: decode_gate.semaphore(),
        });
        let workflows = Workflows::new(db.clone(), generator.clone());
        let billing = Arc::new(Billing::new(
            db.clone(),
            plans.clone(),
            adapters,
            Arc::new(BillingNotices {
                queue: queue.clone(),
            }),
            HourlyAllowance::new(config.billing_checkouts_per_hour)
                .shared("checkouts", shared_limits.clone()),
        ));
        let trusted_proxies = config
            .trusted_proxies
            .iter()
            .map(|p| {
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .with_context(|| format!("trusted_proxies: {p} is no address or CIDR range"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let rate_limits = match &shared_limits {
            Some(limits) => crate::ratelimit::RateLimits::shared(limits.clone()),
            None => crate::ratelimit::RateLimits::local(),
        };
        let gallery = Gallery::new(db.clone(), blobs.clone(), plans.clone(), revisions)
            .with_uploads(decode_gate, config.upload_max_side);
        Ok(Arc::new(AppState {
            billing,
            gallery,
            image_pages: PageCache::new(config.gallery_page_cache_mib << 20),
            file_readers: crate::http::files::Readers::new(config.file_reads_per_client),
            rate_limits,
            trusted_proxies,
            credentials,
            shutdown: tokio_util::sync::CancellationToken::new(),
            generator,
            workflows,
            ledger: Ledger::new(db.clone()),
            metrics,
            registry,
            events,
            queue,
            queue_settings,
            blobs,
            links,
            models,
            config,
            db,
            auth,
            oauth,
            plans,
        }))
    }
}

impl AppState {
    /// The in-process worker's identity and the models it serves.
    pub fn local_worker_info(&self) -> WorkerInfo {
        WorkerInfo {
            paused: self.config.worker_paused,
            ..WorkerInfo::new(
                "local",
                "in-process".into(),
                self.config.worker_backend.clone(),
                self.config.worker_model_list(),
            )
        }
    }
}

/// The plugin runtime, with compiled components cached in the data dir.
pub fn plugin_runtime(config: &Config) -> anyhow::Result<Arc<PluginRuntime>> {
    let opts = EngineOptions {
        pool_instances: config.plugin_pool_instances,
        fuel: config.plugin_fuel,
        ..EngineOptions::default()
    };
    Ok(Arc::new(PluginRuntime::new(
        &opts,
        Some(config.data_dir.join("plugin-cache")),
    )?))
}

/// With `cluster = true`, hosts must share Redis (events, limits) and a
/// bucket (files): refuse to start without them. A PostgreSQL database
/// alone may be one host: warn.
fn check_shared_services(config: &Config) -> anyhow::Result<()> {
    let missing: Vec<&str> = [
        ("redis_url", config.redis_url.is_none()),
        ("blob_url", config.blob_url.is_none()),
    ]
    .into_iter()
    .filter_map(|(key, unset)| unset.then_some(key))
    .collect();
    if missing.is_empty() || !config.multi_host() {
        return Ok(());
    }
    anyhow::ensure!(
        !config.cluster,
        "cluster = true but {} not set: every host must share Redis and the bucket",
        missing.join(" and ")
    );
    tracing::warn!(
        missing = %missing.join(", "),
        "a PostgreSQL database without these: fine for one host; several hosts would not share events, limits or files"
    );
    Ok(())
}

/// The configured JWT secret, or, on a single host, the one kept in the
/// data dir (generated on first start), so tokens survive restarts.
fn jwt_secret(config: &Config) -> anyhow::Result<String> {
    if let Some(s) = &config.jwt_secret {
        anyhow::ensure!(
            s.expose_secret().len() >= 32,
            "jwt_secret must be at least 32 bytes"
        );
        return Ok(s.expose_secret().to_owned());
    }
    // Each host would sign with its own key: a token or file link from
    // one would be refused by the others.
    anyhow::ensure!(
        !config.multi_host(),
        "jwt_secret is not set: with several hosts (a PostgreSQL database_url, or cluster = true) \
         give every host the same one (PINGVAS_JWT_SECRET or PINGVAS_JWT_SECRET_FILE, at least 32 bytes)"
    );
    let path = config.data_dir.join("jwt_secret");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_owned();
        anyhow::ensure!(existing.len() >= 32, "{} is too short", path.display());
        return Ok(existing);
    }
    let secret = new_secret();
    write_private(&path, &secret)?;
    tracing::warn!(
        path = %path.display(),
        "no JWT secret configured: generated one and saved it in the data dir; \
         set PINGVAS_JWT_SECRET(_FILE) to manage it yourself"
    );
    Ok(secret)
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}
