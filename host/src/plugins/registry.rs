//! Published plugins: publish (with full validation), list, look up, yank,
//! and resolve a runnable version for a job. Component bytes are stored
//! content-addressed (`plugins/<sha256>.wasm`); a user can run public
//! plugins and their own private ones, nobody else's.

use std::collections::HashMap;
use std::sync::Arc;

use crate::hourly::HourlyAllowance;
use chrono::Utc;
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::limits::{self, LimitsOverride};
use super::runtime::Compiled;
use super::runtime::NodeDescriptor;
use super::{LoadedPlugin, PluginError, PluginKind, PluginRuntime};
use crate::blobs::Blobs;
use crate::store::plugins::{self as q, NewVersion, PluginRow, VersionRow};
use crate::store::{Db, Page, StoreError, new_id};
use crate::users::Caller;

/// How publishing is bounded, from the configuration.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    /// Largest component accepted.
    pub max_bytes: usize,
    pub overrides: HashMap<String, LimitsOverride>,
    /// Compiles and `describe()` calls of publishes at once.
    pub concurrent_checks: usize,
    /// Publishes one user may make in an hour.
    pub publishes_per_hour: u32,
}

/// What a publisher says about the component they upload.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub kind: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "private")]
    pub visibility: String,
}

fn private() -> String {
    "private".into()
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("component larger than {max} bytes")]
    TooLarge { max: usize },
    #[error(transparent)]
    Component(PluginError),
    #[error("the component disagrees with the manifest: {0}")]
    Mismatch(String),
    #[error("the plugin name belongs to another publisher")]
    NameTaken,
    #[error("this version is already published")]
    VersionExists,
    #[error("no such plugin or version")]
    NotFound,
    #[error("only the publisher may do this")]
    Forbidden,
    #[error("the version is yanked")]
    Yanked,
    #[error("too many publishes; try again in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> Self {
        RegistryError::Internal(e.into())
    }
}

pub type RegistryResult<T> = Result<T, RegistryError>;

/// What validation learned about a component, compiled but not cached.
pub struct Checked {
    pub compiled: Compiled,
    pub descriptor: Option<NodeDescriptor>,
}

/// A plugin version a user may run now.
pub struct Runnable {
    pub plugin: PluginRow,
    pub version: VersionRow,
    pub loaded: Arc<LoadedPlugin>,
}

pub struct Registry {
    db: Db,
    blobs: Blobs,
    pub runtime: Arc<PluginRuntime>,
    pub max_bytes: usize,
    pub overrides: HashMap<String, LimitsOverride>,
    /// Compiles and `describe()` calls of publishes running at once.
    checking: Semaphore,
    /// Publishes per user and hour.
    publishes: HourlyAllowance,
}

/// The names of the plugins that ship with the studio: only admins
/// publish under them.
pub const RESERVED_NAMES: &[&str] = &["prompt-style", "safety-filter", "watermark", "grayscale"];

/// The checks of publish that need no database: size, really a component,
/// the world of `kind` (read from the component; detected when `None`),
/// compiles and links, and for nodes `describe()` within limits.
pub async fn check_component(
    runtime: &PluginRuntime,
    name: &str,
    kind: Option<PluginKind>,
    bytes: &[u8],
    max_bytes: usize,
    limits: impl Fn(PluginKind) -> limits::Limits,
) -> RegistryResult<Checked> {
    if bytes.len() > max_bytes {
        return Err(RegistryError::TooLarge { max: max_bytes });
    }
    let compiled = runtime
        .check(name, bytes, kind)
        .await
        .map_err(RegistryError::Component)?;
    let plugin = &compiled.plugin;
    let descriptor = match plugin.kind {
        PluginKind::Node => Some(
            runtime
                .describe(name, plugin, limits(plugin.kind))
                .await
                .map_err(RegistryError::Component)?
                .output,
        ),
        _ => None,
    };
    Ok(Checked {
        compiled,
        descriptor,
    })
}

fn check_name(name: &str) -> RegistryResult<()> {
    let ok = (2..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(RegistryError::Invalid {
            field: "name",
            reason: "2-64 of a-z, 0-9 and '-', starting with a letter".into(),
        })
    }
}

impl Registry {
    pub fn new(
        db: Db,
        blobs: Blobs,
        runtime: Arc<PluginRuntime>,
        settings: RegistrySettings,
        shared_limits: Option<Arc<crate::ratelimit::SharedLimits>>,
    ) -> Self {
        Self {
            db,
            blobs,
            runtime,
            max_bytes: settings.max_bytes,
            overrides: settings.overrides,
            checking: Semaphore::new(settings.concurrent_checks.max(1)),
            publishes: HourlyAllowance::new(settings.publishes_per_hour)
                .shared("publishes", shared_limits),
        }
    }

    /// Compiles and `describe()`s a component on a blocking thread of its
    /// own, so a hostile guest's run never occupies the threads that serve
    /// requests.
    async fn check_off_the_request_threads(
        &self,
        name: &str,
        kind: PluginKind,
        bytes: &[u8],
    ) -> RegistryResult<Checked> {
        let runtime = self.runtime.clone();
        let (name, bytes) = (name.to_owned(), bytes.to_vec());
        let (max_bytes, overrides) = (self.max_bytes, self.overrides.clone());
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            handle.block_on(async move {
                let limits = |k: PluginKind| limits::resolve(k, &name, &overrides);
                check_component(&runtime, &name, Some(kind), &bytes, max_bytes, limits).await
            })
        })
        .await
        .map_err(anyhow::Error::from)?
    }

    /// Publishes a version: the cheap checks first (rate, manifest, who may
    /// use the name and kind), then compile and `describe()` on a bounded
    /// pool, then the name/version transaction; the component is stored and
    /// cached only for a version that was recorded.
    pub async fn publish(
        &self,
        caller: &Caller,
        m: &Manifest,
        bytes: &[u8],
    ) -> RegistryResult<(PluginRow, VersionRow)> {
        let owner = caller.id.as_str();
        if let Err(retry_after_secs) = self.publishes.take(&caller.id).await {
            return Err(RegistryError::RateLimited { retry_after_secs });
        }
        check_name(&m.name)?;
        semver::Version::parse(&m.version).map_err(|e| RegistryError::Invalid {
            field: "version",
            reason: format!("not semver: {e}"),
        })?;
        let kind = PluginKind::parse(&m.kind).ok_or_else(|| RegistryError::Invalid {
            field: "kind",
            reason: "node, workflow or billing".into(),
        })?;
        if !matches!(m.visibility.as_str(), "public" | "private") {
            return Err(RegistryError::Invalid {
                field: "visibility",
                reason: "public or private".into(),
            });
        }
        if m.description.chars().count() > 1000 {
            return Err(RegistryError::Invalid {
                field: "description",
                reason: "at most 1000 characters".into(),
            });
        }
        let admin = caller.role == "admin";
        if kind == PluginKind::Billing && !admin {
            return Err(RegistryError::Forbidden);
        }
        // A reserved name, or one that is someone else's (public or
        // private), answers alike.
        if RESERVED_NAMES.contains(&m.name.as_str()) && !admin {
            return Err(RegistryError::NameTaken);
        }
        if q::find_by_name(&self.db, &m.name)
            .await?
            .is_some_and(|p| p.owner_id != owner)
        {
            return Err(RegistryError::NameTaken);
        }
        let checked = {
            let _turn = self.checking.acquire().await.map_err(anyhow::Error::from)?;
            self.check_off_the_request_threads(&m.name, kind, bytes)
                .await?
        };
        if let Some(d) = &checked.descriptor
            && (d.name != m.name || d.version != m.version)
        {
            return Err(RegistryError::Mismatch(format!(
                "describe() says {}@{}, the manifest {}@{}",
                d.name, d.version, m.name, m.version
            )));
        }
        let sha256 = checked.compiled.plugin.sha256.clone();
        let now = Utc::now();
        let mut tx = self.db.begin().await?;
        let plugin = match q::find_by_name_in(&mut tx, &m.name).await? {
            Some(p) if p.owner_id != owner => return Err(RegistryError::NameTaken),
            Some(p) if p.kind != kind.as_str() => {
                return Err(RegistryError::Invalid {
                    field: "kind",
                    reason: format!("{} is a {} plugin", p.name, p.kind),
                });
            }
            Some(p) => {
                q::update_plugin(&mut tx, &p.id, &m.description, &m.visibility, now).await?;
                p
            }
            None => {
                let row = PluginRow {
                    id: new_id(),
                    name: m.name.clone(),
                    owner_id: owner.to_owned(),
                    kind: kind.as_str().to_owned(),
                    description: m.description.clone(),
                    visibility: m.visibility.clone(),
                    created_at: now,
                    updated_at: now,
                    latest_version: None,
                };
                match q::insert_plugin(&mut tx, &row).await {
                    Err(e) if e.is_unique_violation() => return Err(RegistryError::NameTaken),
                    other => other?,
                }
                row
            }
        };
        let new = NewVersion {
            version: &m.version,
            sha256: &sha256,
            size_bytes: bytes.len() as i64,
            abi_version: checked.compiled.plugin.shape.abi_version(),
            node_kind: checked.descriptor.as_ref().map(|d| d.kind.as_str()),
            parameters_schema: checked
                .descriptor
                .as_ref()
                .map(|d| d.parameters_schema.as_str()),
        };
        match q::insert_version(&mut tx, &plugin.id, &new, now).await {
            Err(e) if e.is_unique_violation() => return Err(RegistryError::VersionExists),
            other => other?,
        }
        // The bytes go to storage inside the transaction, so a version is
        // never recorded without them, and removed again if it is not.
        let key = format!("plugins/{sha256}.wasm");
        let created = self
            .blobs
            .put_new(&key, bytes.to_vec())
            .await
            .map_err(anyhow::Error::from)?;
        if let Err(e) = tx.commit().await {
            if created {
                let _ = self.blobs.delete(&key).await;
            }
            return Err(e.into());
        }
        self.runtime.keep(checked.compiled).await;
        let plugin = q::find_by_name(&self.db, &m.name)
            .await?
            .ok_or(RegistryError::NotFound)?;
        let version = q::version(&self.db, &plugin.id, &m.version)
            .await?
            .ok_or(RegistryError::NotFound)?;
        Ok((plugin, version))
    }

    pub async fn list(
        &self,
        viewer: &str,
        kind: Option<PluginKind>,
        page: Page,
    ) -> RegistryResult<(Vec<PluginRow>, i64)> {
        Ok(q::list_visible(&self.db, viewer, kind.map(PluginKind::as_str), page).await?)
    }

    /// A plugin the viewer may see (public, or their own).
    pub async fn get(&self, viewer: &str, name: &str) -> RegistryResult<PluginRow> {
        match q::find_by_name(&self.db, name).await? {
            Some(p) if p.visibility == "public" || p.owner_id == viewer => Ok(p),
            _ => Err(RegistryError::NotFound),
        }
    }

    pub async fn versions(
        &self,
        viewer: &str,
        name: &str,
    ) -> RegistryResult<(PluginRow, Vec<VersionRow>)> {
        let plugin = self.get(viewer, name).await?;
        let versions = q::versions(&self.db, &plugin.id).await?;
        Ok((plugin, versions))
    }

    /// Yanks a version: jobs that already picked it keep running it; new
    /// jobs cannot pick it.
    pub async fn yank(&self, viewer: &str, name: &str, version: &str) -> RegistryResult<()> {
        let plugin = self.get(viewer, name).await?;
        if plugin.owner_id != viewer {
            return Err(RegistryError::Forbidden);
        }
        if !q::yank(&self.db.write().await, &plugin.id, version, Utc::now()).await? {
            return Err(RegistryError::NotFound);
        }
        Ok(())
    }

    /// The version of `name` a new job of `viewer` may run: `version`, or
    /// the newest one not yanked.
    pub async fn resolve(
        &self,
        viewer: &str,
        name: &str,
        version: Option<&str>,
    ) -> RegistryResult<Runnable> {
        let plugin = self.get(viewer, name).await?;
        let wanted = match version {
            Some(v) => v.to_owned(),
            None => plugin
                .latest_version
                .clone()
                .ok_or(RegistryError::NotFound)?,
        };
        let row = q::version(&self.db, &plugin.id, &wanted)
            .await?
            .ok_or(RegistryError::NotFound)?;
        if row.yanked_at.is_some() {
            return Err(RegistryError::Yanked);
        }
        let loaded = self.load_version(&plugin, &row).await?;
        Ok(Runnable {
            plugin,
            version: row,
            loaded,
        })
    }

    /// A version pinned by a job at enqueue, whoever may see it now and
    /// yanked or not (the job's owner could run it when it was queued).
    pub async fn load_pinned(
        &self,
        name: &str,
        version: &str,
    ) -> RegistryResult<Arc<LoadedPlugin>> {
        let (plugin, row) = self.pinned(name, version).await?;
        self.load_version(&plugin, &row).await
    }

    async fn pinned(&self, name: &str, version: &str) -> RegistryResult<(PluginRow, VersionRow)> {
        q::pinned(&self.db, name, version)
            .await?
            .ok_or(RegistryError::NotFound)
    }

    /// The stored component bytes of a pinned version (remote workers
    /// fetch them to compile locally).
    pub async fn component_bytes(&self, name: &str, version: &str) -> RegistryResult<Vec<u8>> {
        let (_, row) = self.pinned(name, version).await?;
        let key = format!("plugins/{}.wasm", row.sha256);
        Ok(self
            .blobs
            .get(&key)
            .await
            .map_err(|e| anyhow::anyhow!("reading plugin blob: {e}"))?)
    }

    /// Loads a stored version (yanked or not: jobs that picked it before
    /// the yank keep working).
    pub async fn load_version(
        &self,
        plugin: &PluginRow,
        row: &VersionRow,
    ) -> RegistryResult<Arc<LoadedPlugin>> {
        let kind = PluginKind::parse(&plugin.kind)
            .ok_or_else(|| anyhow::anyhow!("stored kind {}", plugin.kind))?;
        let key = format!("plugins/{}.wasm", row.sha256);
        let bytes = self
            .blobs
            .get(&key)
            .await
            .map_err(|e| anyhow::anyhow!("reading plugin blob: {e}"))?;
        self.runtime
            .load(&plugin.name, &bytes, Some(kind))
            .await
            .map_err(RegistryError::Component)
    }
}
