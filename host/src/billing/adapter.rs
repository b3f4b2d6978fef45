//! The payment-provider adapter: a billing-adapter component loaded from
//! the operator's configuration, swapped atomically on reload. Calls hold
//! the adapter they started with, so in-flight calls finish on the old one;
//! a replaced adapter keeps verifying its provider's retried webhooks for a
//! grace period.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;

use crate::config::{Config, LimitsOverride, comma_list};
use crate::plugins::bindings::v0_3_0;
use crate::plugins::limits::{self, Limits};
use crate::plugins::runtime::{BillingAnswer, BillingCall, WebhookError};
use crate::plugins::state::Grants;
use crate::plugins::{LoadedPlugin, PluginError, PluginKind, PluginRuntime};

/// What the configuration says about billing.
#[derive(Debug, Clone)]
pub struct AdapterSettings {
    pub path: Option<PathBuf>,
    pub provider: String,
    pub grants: Grants,
    pub grace: Duration,
    pub limits: HashMap<String, LimitsOverride>,
}

impl AdapterSettings {
    /// The billing part of `config`; `plans` are the catalogue's plan names
    /// (the adapter maps them to the provider's products).
    pub fn of(config: &Config, plans: &[String]) -> Self {
        let mut settings = config.billing_settings.clone();
        settings.insert("plans".into(), plans.join(","));
        settings.insert("provider".into(), config.billing_provider.clone());
        let mut secrets = HashMap::new();
        for (key, value) in [
            ("api_key", &config.billing_api_key),
            ("webhook_secret", &config.billing_webhook_secret),
        ] {
            if let Some(v) = value {
                secrets.insert(key.to_owned(), v.expose_secret().to_owned());
            }
        }
        AdapterSettings {
            path: config.billing_adapter.clone(),
            provider: config.billing_provider.clone(),
            grants: Grants {
                http_allow: comma_list(&config.billing_http_allow),
                settings,
                secrets,
            },
            grace: Duration::from_secs(config.billing_grace_hours.saturating_mul(3600)),
            limits: config.plugin_limits.clone(),
        }
    }
}

/// A loaded adapter with what it was granted.
pub struct Adapter {
    pub provider: String,
    /// The file's name, as the plugin is named in logs.
    pub name: String,
    pub sha256: String,
    plugin: Arc<LoadedPlugin>,
    grants: Arc<Grants>,
    limits: Limits,
}

impl std::fmt::Debug for Adapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adapter")
            .field("provider", &self.provider)
            .field("name", &self.name)
            .field("sha256", &self.sha256)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("reading the configuration: {0:#}")]
    Config(anyhow::Error),
    #[error("reading {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("billing_provider `{0}`: lowercase letters, digits and '-' only")]
    Provider(String),
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

/// The current adapter and the ones it replaced, still in their grace.
pub struct Adapters {
    runtime: Arc<PluginRuntime>,
    plans: Vec<String>,
    current: RwLock<Option<Arc<Adapter>>>,
    retired: Mutex<Vec<(Arc<Adapter>, Instant)>>,
    /// The configuration file the server started from.
    source: Option<PathBuf>,
}

fn valid_provider(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 64
        && p.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl Adapters {
    /// Loads the configured adapter (none when `billing_adapter` is unset);
    /// a broken one stops the start.
    pub async fn start(
        runtime: Arc<PluginRuntime>,
        plans: Vec<String>,
        config: &Config,
    ) -> Result<Self, AdapterError> {
        let adapters = Adapters {
            runtime,
            current: RwLock::new(None),
            retired: Mutex::new(Vec::new()),
            source: config.source.clone(),
            plans,
        };
        let loaded = adapters
            .load(&AdapterSettings::of(config, &adapters.plans))
            .await?;
        *adapters.current.write().expect("adapter lock") = loaded;
        Ok(adapters)
    }

    async fn load(&self, settings: &AdapterSettings) -> Result<Option<Arc<Adapter>>, AdapterError> {
        let Some(path) = &settings.path else {
            return Ok(None);
        };
        if !valid_provider(&settings.provider) {
            return Err(AdapterError::Provider(settings.provider.clone()));
        }
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|error| AdapterError::Read {
                path: path.clone(),
                error,
            })?;
        let name = file_name(path);
        let plugin = self
            .runtime
            .load(&name, &bytes, Some(PluginKind::Billing))
            .await?;
        let abi = plugin.shape.abi_version();
        if abi != v0_3_0::VERSION {
            tracing::warn!(
                adapter = %name,
                abi,
                "billing adapter of pingvas:plugin@{abi}: its invoices say no reason, so each paid one grants a month of credits, a plan change's too; rebuild it against @{}",
                v0_3_0::VERSION
            );
        }
        Ok(Some(Arc::new(Adapter {
            provider: settings.provider.clone(),
            sha256: plugin.sha256.clone(),
            limits: limits::resolve(PluginKind::Billing, &name, &settings.limits),
            name,
            plugin,
            grants: Arc::new(settings.grants.clone()),
        })))
    }

    /// The adapter serving the API now.
    pub fn current(&self) -> Option<Arc<Adapter>> {
        self.current.read().expect("adapter lock").clone()
    }

    /// The adapters that may verify a webhook of `provider`: the current
    /// one if it is that provider's, then replaced ones still in grace.
    pub fn for_webhook(&self, provider: &str) -> Vec<Arc<Adapter>> {
        let mut out: Vec<Arc<Adapter>> = self
            .current()
            .into_iter()
            .filter(|a| a.provider == provider)
            .collect();
        let mut retired = self.retired.lock().expect("adapter lock");
        let now = Instant::now();
        retired.retain(|(_, until)| *until > now);
        out.extend(
            retired
                .iter()
                .rev()
                .filter(|(a, _)| a.provider == provider)
                .map(|(a, _)| a.clone()),
        );
        out
    }

    /// Re-reads the configuration file (and `_FILE` secrets), loads and
    /// links the adapter it names, and swaps it in. On any error the
    /// running adapter stays.
    pub async fn reload(&self) -> Result<Option<Arc<Adapter>>, AdapterError> {
        let config = Config::load(self.source.as_deref()).map_err(AdapterError::Config)?;
        let settings = AdapterSettings::of(&config, &self.plans);
        let next = self.load(&settings).await?;
        let previous = std::mem::replace(
            &mut *self.current.write().expect("adapter lock"),
            next.clone(),
        );
        if let Some(old) = previous
            && next.as_ref().is_none_or(|n| {
                n.sha256 != old.sha256
                    || n.provider != old.provider
                    || n.grants.secrets != old.grants.secrets
            })
        {
            self.retired
                .lock()
                .expect("adapter lock")
                .push((old, Instant::now() + settings.grace));
        }
        match &next {
            Some(a) => {
                tracing::info!(provider = %a.provider, adapter = %a.name, sha256 = %a.sha256, "billing adapter loaded")
            }
            None => tracing::info!("billing adapter removed: billing is off"),
        }
        Ok(next)
    }

    /// Runs `call` on `adapter` with its grants and limits.
    pub async fn call(
        &self,
        adapter: &Adapter,
        call: BillingCall,
    ) -> Result<BillingAnswer, WebhookError> {
        self.runtime
            .billing_call(
                &adapter.name,
                &adapter.plugin,
                adapter.limits,
                adapter.grants.clone(),
                call,
            )
            .await
    }
}

fn file_name(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("billing-adapter")
        .to_owned()
}
