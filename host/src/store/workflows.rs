//! The `workflows` and `workflow_tags` tables. A definition's bytes count
//! in the owner's storage counter in the transaction that stores them.

use chrono::{DateTime, Utc};

use super::images::{StoredBytes, add_storage};
use super::{Db, Page, StoreResult, Tx};
use crate::{exec, on_db, on_tx};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WorkflowRow {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub description: String,
    pub kind: String,
    pub definition: String,
    pub definition_bytes: i64,
    pub is_public: bool,
    pub copied_from: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "w.id, w.user_id, w.name, w.description, w.kind, w.definition, \
     w.definition_bytes, w.is_public, w.copied_from, w.created_at, w.updated_at";

fn workflow_bytes(delta: i64) -> StoredBytes {
    StoredBytes {
        workflow_bytes: delta,
        ..StoredBytes::default()
    }
}

/// Stores a new workflow with its tags and counts its bytes.
pub async fn insert(tx: &mut Tx, w: &WorkflowRow, tags: &[String]) -> StoreResult<()> {
    on_tx!(tx, c => exec!(c, sqlx::query(
        "INSERT INTO workflows (id, user_id, name, description, kind, definition, definition_bytes, \
         is_public, copied_from, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&w.id)
    .bind(&w.user_id)
    .bind(&w.name)
    .bind(&w.description)
    .bind(&w.kind)
    .bind(&w.definition)
    .bind(w.definition_bytes)
    .bind(w.is_public)
    .bind(&w.copied_from)
    .bind(w.created_at)
    .bind(w.updated_at)))?;
    set_tags(tx, &w.id, tags).await?;
    add_storage(tx, &w.user_id, workflow_bytes(w.definition_bytes)).await
}

/// Writes an edited workflow (`before` is the stored row it replaces) and,
/// when given, its new tags; the counter follows the definition's size.
pub async fn update(
    tx: &mut Tx,
    before: &WorkflowRow,
    w: &WorkflowRow,
    tags: Option<&[String]>,
) -> StoreResult<()> {
    on_tx!(tx, c => exec!(c, sqlx::query(
        "UPDATE workflows SET name = $2, description = $3, kind = $4, definition = $5, \
         definition_bytes = $6, is_public = $7, updated_at = $8 WHERE id = $1",
    )
    .bind(&w.id)
    .bind(&w.name)
    .bind(&w.description)
    .bind(&w.kind)
    .bind(&w.definition)
    .bind(w.definition_bytes)
    .bind(w.is_public)
    .bind(w.updated_at)))?;
    if let Some(tags) = tags {
        set_tags(tx, &w.id, tags).await?;
    }
    let delta = w.definition_bytes - before.definition_bytes;
    if delta != 0 {
        add_storage(tx, &w.user_id, workflow_bytes(delta)).await?;
    }
    Ok(())
}

async fn set_tags(tx: &mut Tx, id: &str, tags: &[String]) -> StoreResult<()> {
    on_tx!(tx, c => exec!(c, sqlx::query("DELETE FROM workflow_tags WHERE workflow_id = $1").bind(id)))?;
    for tag in tags {
        on_tx!(tx, c => exec!(c, sqlx::query(
            "INSERT INTO workflow_tags (workflow_id, tag) VALUES ($1, $2)",
        )
        .bind(id)
        .bind(tag)))?;
    }
    Ok(())
}

/// Deletes a workflow (tags go with it) and frees its bytes.
pub async fn delete(tx: &mut Tx, w: &WorkflowRow) -> StoreResult<()> {
    on_tx!(tx, c => exec!(c, sqlx::query("DELETE FROM workflows WHERE id = $1").bind(&w.id)))?;
    add_storage(tx, &w.user_id, workflow_bytes(-w.definition_bytes)).await
}

pub async fn get(db: &Db, id: &str) -> StoreResult<Option<WorkflowRow>> {
    let sql = format!("SELECT {COLUMNS} FROM workflows w WHERE w.id = $1");
    Ok(on_db!(db, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await)?)
}

/// The workflow, locked for the transaction (PostgreSQL).
pub async fn get_in(tx: &mut Tx, id: &str) -> StoreResult<Option<WorkflowRow>> {
    let lock = tx.row_lock();
    let sql = format!("SELECT {COLUMNS} FROM workflows w WHERE w.id = $1{lock}");
    Ok(on_tx!(tx, c => sqlx::query_as(&sql).bind(id).fetch_optional(c).await)?)
}

pub async fn tags_of(db: &Db, id: &str) -> StoreResult<Vec<String>> {
    Ok(on_db!(db, p => sqlx::query_scalar(
        "SELECT tag FROM workflow_tags WHERE workflow_id = $1 ORDER BY tag",
    )
    .bind(id)
    .fetch_all(p)
    .await)?)
}

pub async fn count_of_user(db: &Db, user_id: &str) -> StoreResult<i64> {
    Ok(
        on_db!(db, p => sqlx::query_scalar("SELECT COUNT(*) FROM workflows WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(p)
        .await)?,
    )
}

/// Which workflows a list shows.
#[derive(Debug, Clone, Copy)]
pub struct ListFilter<'a> {
    pub viewer: &'a str,
    /// Only the viewer's own (else own and public).
    pub mine_only: bool,
    pub tag: Option<&'a str>,
}

/// A page of the workflows a viewer sees, newest first, and how many.
pub async fn list(db: &Db, f: &ListFilter<'_>, page: Page) -> StoreResult<(Vec<WorkflowRow>, i64)> {
    let mut filter = String::from(if f.mine_only {
        "w.user_id = $1"
    } else {
        "(w.user_id = $1 OR w.is_public)"
    });
    if f.tag.is_some() {
        filter.push_str(
            " AND EXISTS (SELECT 1 FROM workflow_tags t WHERE t.workflow_id = w.id AND t.tag = $2)",
        );
    } else {
        filter.push_str(" AND $2 = ''");
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM workflows w WHERE {filter} \
         ORDER BY w.created_at DESC, w.id DESC LIMIT $3 OFFSET $4"
    );
    let count = format!("SELECT COUNT(*) FROM workflows w WHERE {filter}");
    let tag = f.tag.unwrap_or("");
    let rows = on_db!(db, p => sqlx::query_as(&sql)
        .bind(f.viewer)
        .bind(tag)
        .bind(page.limit())
        .bind(page.offset())
        .fetch_all(p)
        .await)?;
    let total = on_db!(db, p => sqlx::query_scalar(&count)
        .bind(f.viewer)
        .bind(tag)
        .fetch_one(p)
        .await)?;
    Ok((rows, total))
}
