//! The `plugins` and `plugin_versions` tables.

use chrono::{DateTime, Utc};

use super::{Db, Page, StoreResult, Tx, Writer};
use crate::{exec, exec_one, on_db, on_tx, on_write};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PluginRow {
    pub id: String,
    pub name: String,
    pub owner_id: String,
    pub kind: String,
    pub description: String,
    pub visibility: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Newest version that is not yanked.
    pub latest_version: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VersionRow {
    pub version: String,
    pub sha256: String,
    pub size_bytes: i64,
    pub abi_version: String,
    pub node_kind: Option<String>,
    pub parameters_schema: Option<String>,
    pub created_at: DateTime<Utc>,
    pub yanked_at: Option<DateTime<Utc>>,
}

pub struct NewVersion<'a> {
    pub version: &'a str,
    pub sha256: &'a str,
    pub size_bytes: i64,
    pub abi_version: &'a str,
    pub node_kind: Option<&'a str>,
    pub parameters_schema: Option<&'a str>,
}

const PLUGIN_SELECT: &str = "SELECT p.id, p.name, p.owner_id, p.kind, p.description, p.visibility, \
     p.created_at, p.updated_at, \
     (SELECT v.version FROM plugin_versions v WHERE v.plugin_id = p.id AND v.yanked_at IS NULL \
      ORDER BY v.created_at DESC, v.id DESC LIMIT 1) AS latest_version \
     FROM plugins p";

const VERSION_COLUMNS: &str =
    "version, sha256, size_bytes, abi_version, node_kind, parameters_schema, created_at, yanked_at";

pub async fn find_by_name(db: &Db, name: &str) -> StoreResult<Option<PluginRow>> {
    let sql = format!("{PLUGIN_SELECT} WHERE p.name = $1");
    Ok(on_db!(db, p => sqlx::query_as(&sql).bind(name).fetch_optional(p).await)?)
}

pub async fn find_by_name_in(tx: &mut Tx, name: &str) -> StoreResult<Option<PluginRow>> {
    let sql = format!("{PLUGIN_SELECT} WHERE p.name = $1");
    Ok(on_tx!(tx, c => sqlx::query_as(&sql).bind(name).fetch_optional(c).await)?)
}

/// Inserts a plugin; a unique violation on `plugins_name_key` when the name
/// is taken.
pub async fn insert_plugin(tx: &mut Tx, row: &PluginRow) -> StoreResult<()> {
    on_tx!(tx, c => exec!(c, sqlx::query(
        "INSERT INTO plugins (id, name, owner_id, kind, description, visibility, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(&row.id)
    .bind(&row.name)
    .bind(&row.owner_id)
    .bind(&row.kind)
    .bind(&row.description)
    .bind(&row.visibility)
    .bind(row.created_at)))?;
    Ok(())
}

pub async fn update_plugin(
    tx: &mut Tx,
    id: &str,
    description: &str,
    visibility: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    on_tx!(tx, c => exec!(c, sqlx::query("UPDATE plugins SET description = $2, visibility = $3, updated_at = $4 WHERE id = $1")
        .bind(id)
        .bind(description)
        .bind(visibility)
        .bind(now)))?;
    Ok(())
}

/// Inserts a version; a unique violation on `plugin_versions_key` when that
/// version exists.
pub async fn insert_version(
    tx: &mut Tx,
    plugin_id: &str,
    v: &NewVersion<'_>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    on_tx!(tx, c => exec!(c, sqlx::query(
        "INSERT INTO plugin_versions \
         (id, plugin_id, version, sha256, size_bytes, abi_version, node_kind, parameters_schema, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(super::new_id())
    .bind(plugin_id)
    .bind(v.version)
    .bind(v.sha256)
    .bind(v.size_bytes)
    .bind(v.abi_version)
    .bind(v.node_kind)
    .bind(v.parameters_schema)
    .bind(now)))?;
    Ok(())
}

/// Public plugins and the viewer's own, optionally of one kind; one page
/// by name, and the total.
pub async fn list_visible(
    db: &Db,
    viewer: &str,
    kind: Option<&str>,
    page: Page,
) -> StoreResult<(Vec<PluginRow>, i64)> {
    let filter =
        "WHERE (p.visibility = 'public' OR p.owner_id = $1) AND ($2 IS NULL OR p.kind = $2)";
    let list_sql = format!("{PLUGIN_SELECT} {filter} ORDER BY p.name LIMIT $3 OFFSET $4");
    let count_sql = format!("SELECT COUNT(*) FROM plugins p {filter}");
    Ok(on_db!(db, p => {
        let rows = sqlx::query_as(&list_sql).bind(viewer).bind(kind).bind(page.limit()).bind(page.offset()).fetch_all(p).await?;
        let total: i64 = sqlx::query_scalar(&count_sql).bind(viewer).bind(kind).fetch_one(p).await?;
        Ok::<_, sqlx::Error>((rows, total))
    })?)
}

pub async fn versions(db: &Db, plugin_id: &str) -> StoreResult<Vec<VersionRow>> {
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM plugin_versions WHERE plugin_id = $1 ORDER BY created_at DESC, id DESC"
    );
    Ok(on_db!(db, p => sqlx::query_as(&sql).bind(plugin_id).fetch_all(p).await)?)
}

pub async fn version(db: &Db, plugin_id: &str, version: &str) -> StoreResult<Option<VersionRow>> {
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM plugin_versions WHERE plugin_id = $1 AND version = $2"
    );
    Ok(on_db!(db, p => sqlx::query_as(&sql).bind(plugin_id).bind(version).fetch_optional(p).await)?)
}

/// Version `version` of the plugin `name`, with the plugin, yanked or not
/// (what a job pinned at enqueue).
pub async fn pinned(
    db: &Db,
    name: &str,
    version: &str,
) -> StoreResult<Option<(PluginRow, VersionRow)>> {
    let Some(plugin) = find_by_name(db, name).await? else {
        return Ok(None);
    };
    Ok(self::version(db, &plugin.id, version)
        .await?
        .map(|v| (plugin, v)))
}

/// Marks a version yanked; false when there is no such version.
pub async fn yank(
    w: &Writer<'_>,
    plugin_id: &str,
    version: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    Ok(on_write!(w, p => exec_one!(p, sqlx::query(
        "UPDATE plugin_versions SET yanked_at = COALESCE(yanked_at, $3) WHERE plugin_id = $1 AND version = $2",
    )
    .bind(plugin_id)
    .bind(version)
    .bind(now)))?)
}
