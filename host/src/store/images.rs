//! The `images`, `boards` and `board_images` tables (the gallery API is
//! built on them; generation writes them).

use chrono::{DateTime, Utc};

use super::profiles::Part;
use super::{Db, Page, StoreResult, Tx, Writer};
use crate::{exec, on_db, on_tx, on_write};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ImageRow {
    pub id: String,
    pub user_id: String,
    pub job_id: Option<String>,
    pub blob_key: String,
    pub thumb_key: String,
    pub width: i64,
    pub height: i64,
    pub file_size: i64,
    pub mime_type: String,
    pub is_starred: bool,
    pub is_public: bool,
    pub share_token: Option<String>,
    pub metadata: String,
    pub created_at: DateTime<Utc>,
    pub thumb_size: i64,
    pub share_expires_at: Option<DateTime<Utc>>,
}

impl ImageRow {
    /// Bytes the image holds in storage: original and thumbnail.
    pub fn stored_bytes(&self) -> i64 {
        self.file_size + self.thumb_size
    }

    /// The share token while the share has not expired.
    pub fn live_share(&self, now: DateTime<Utc>) -> Option<&str> {
        self.share_token
            .as_deref()
            .filter(|_| self.share_expires_at.is_none_or(|t| t > now))
    }
}

const IMAGE_COLUMNS: &str = "id, user_id, job_id, blob_key, thumb_key, width, height, file_size, \
     mime_type, is_starred, is_public, share_token, metadata, created_at, thumb_size, share_expires_at";

pub async fn insert(tx: &mut Tx, i: &ImageRow) -> StoreResult<()> {
    on_tx!(tx, c => exec!(c, sqlx::query(
        "INSERT INTO images (id, user_id, job_id, blob_key, thumb_key, width, height, file_size, \
         mime_type, is_starred, is_public, share_token, metadata, created_at, thumb_size) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(&i.id)
    .bind(&i.user_id)
    .bind(&i.job_id)
    .bind(&i.blob_key)
    .bind(&i.thumb_key)
    .bind(i.width)
    .bind(i.height)
    .bind(i.file_size)
    .bind(&i.mime_type)
    .bind(i.is_starred)
    .bind(i.is_public)
    .bind(&i.share_token)
    .bind(&i.metadata)
    .bind(i.created_at)
    .bind(i.thumb_size)))?;
    add_storage(
        tx,
        &i.user_id,
        StoredBytes {
            image_bytes: i.stored_bytes(),
            ..StoredBytes::default()
        },
    )
    .await
}

pub async fn get(db: &Db, id: &str) -> StoreResult<Option<ImageRow>> {
    let sql = format!("SELECT {IMAGE_COLUMNS} FROM images WHERE id = $1");
    Ok(on_db!(db, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await)?)
}

pub async fn of_job(db: &Db, job_id: &str) -> StoreResult<Vec<ImageRow>> {
    let sql = format!("SELECT {IMAGE_COLUMNS} FROM images WHERE job_id = $1 ORDER BY id");
    Ok(on_db!(db, p => sqlx::query_as(&sql).bind(job_id).fetch_all(p).await)?)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BoardRow {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const BOARD_COLUMNS: &str = "id, user_id, name, description, created_at, updated_at";

pub async fn insert_board(w: &Writer<'_>, b: &BoardRow) -> StoreResult<()> {
    on_write!(w, p => exec!(p, sqlx::query(
        "INSERT INTO boards (id, user_id, name, description, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&b.id)
    .bind(&b.user_id)
    .bind(&b.name)
    .bind(&b.description)
    .bind(b.created_at)
    .bind(b.updated_at)))?;
    Ok(())
}

pub async fn get_board(db: &Db, id: &str) -> StoreResult<Option<BoardRow>> {
    let sql = format!("SELECT {BOARD_COLUMNS} FROM boards WHERE id = $1");
    Ok(on_db!(db, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await)?)
}

/// A board with how many images it holds and its newest image's thumbnail.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BoardSummary {
    #[sqlx(flatten)]
    pub board: BoardRow,
    pub image_count: i64,
    pub cover_thumb_key: Option<String>,
}

pub async fn count_boards(db: &Db, user_id: &str) -> StoreResult<i64> {
    Ok(
        on_db!(db, p => sqlx::query_scalar("SELECT COUNT(*) FROM boards WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(p)
        .await)?,
    )
}

/// A page of a user's boards, oldest first, with the total.
pub async fn list_boards(
    db: &Db,
    user_id: &str,
    page: Page,
) -> StoreResult<(Vec<BoardSummary>, i64)> {
    let rows = on_db!(db, p => sqlx::query_as(&format!(
        "{BOARD_SUMMARY} WHERE b.user_id = $1 ORDER BY b.created_at, b.id LIMIT $2 OFFSET $3",
    ))
    .bind(user_id)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(p)
    .await)?;
    Ok((rows, count_boards(db, user_id).await?))
}

/// A board with its image count and cover (the image added last).
const BOARD_SUMMARY: &str = "SELECT b.id, b.user_id, b.name, b.description, b.created_at, b.updated_at, \
     (SELECT COUNT(*) FROM board_images bi WHERE bi.board_id = b.id) AS image_count, \
     (SELECT i.thumb_key FROM board_images bi JOIN images i ON i.id = bi.image_id \
      WHERE bi.board_id = b.id ORDER BY bi.added_at DESC, bi.image_id DESC LIMIT 1) AS cover_thumb_key \
     FROM boards b";

/// One board's summary.
pub async fn board_summary(db: &Db, id: &str) -> StoreResult<Option<BoardSummary>> {
    Ok(
        on_db!(db, p => sqlx::query_as(&format!("{BOARD_SUMMARY} WHERE b.id = $1"))
        .bind(id)
        .fetch_optional(p)
        .await)?,
    )
}

pub async fn update_board(w: &Writer<'_>, b: &BoardRow) -> StoreResult<()> {
    on_write!(w, p => exec!(p, sqlx::query(
        "UPDATE boards SET name = $2, description = $3, updated_at = $4 WHERE id = $1",
    )
    .bind(&b.id)
    .bind(&b.name)
    .bind(&b.description)
    .bind(b.updated_at)))?;
    Ok(())
}

/// Deletes a board; its images stay.
pub async fn delete_board(w: &Writer<'_>, id: &str) -> StoreResult<()> {
    on_write!(w, p => exec!(p, sqlx::query("DELETE FROM boards WHERE id = $1").bind(id)))?;
    Ok(())
}

/// How many of `ids` are images of `user_id`.
pub async fn count_owned_in(tx: &mut Tx, user_id: &str, ids: &[String]) -> StoreResult<usize> {
    let mut n = 0;
    for id in ids {
        let owned: Option<String> = on_tx!(tx, c => sqlx::query_scalar(
            "SELECT id FROM images WHERE id = $1 AND user_id = $2",
        )
        .bind(id)
        .bind(user_id)
        .fetch_optional(c)
        .await)?;
        n += usize::from(owned.is_some());
    }
    Ok(n)
}

/// Removes an image from a board; false when it was not on it.
pub async fn remove_from_board(
    w: &Writer<'_>,
    board_id: &str,
    image_id: &str,
) -> StoreResult<bool> {
    Ok(on_write!(w, p => crate::exec_one!(p, sqlx::query(
        "DELETE FROM board_images WHERE board_id = $1 AND image_id = $2",
    )
    .bind(board_id)
    .bind(image_id)))?)
}

/// Adds an image to a board if the board still exists.
pub async fn add_to_board(
    tx: &mut Tx,
    board_id: &str,
    image_id: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    on_tx!(tx, c => exec!(c, sqlx::query(
        "INSERT INTO board_images (board_id, image_id, added_at) \
         SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM boards WHERE id = $1) \
         ON CONFLICT (board_id, image_id) DO NOTHING",
    )
    .bind(board_id)
    .bind(image_id)
    .bind(now)))?;
    Ok(())
}

pub async fn board_image_ids(db: &Db, board_id: &str) -> StoreResult<Vec<String>> {
    Ok(on_db!(db, p => sqlx::query_scalar(
        "SELECT image_id FROM board_images WHERE board_id = $1 ORDER BY added_at, image_id",
    )
    .bind(board_id)
    .fetch_all(p)
    .await)?)
}

/// Adds (or, negative, removes) bytes to a user's storage counter, in the
/// transaction that stores or deletes them.
/// Bytes a user stores, by what holds them (`storage_usage`), or a change
/// of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredBytes {
    /// Originals and thumbnails of gallery images.
    pub image_bytes: i64,
    /// Workflow definitions.
    pub workflow_bytes: i64,
    /// Inputs of generation requests.
    pub other_bytes: i64,
}

impl StoredBytes {
    pub fn total(&self) -> i64 {
        self.image_bytes + self.workflow_bytes + self.other_bytes
    }
}

/// Adds `delta` (parts may be negative) to the user's counter.
pub async fn add_storage(tx: &mut Tx, user_id: &str, delta: StoredBytes) -> StoreResult<()> {
    tx.profile_changed(Part::Storage, user_id);
    // A negative delta only ever updates: an upsert's insert row would
    // fail the counter's CHECK before the conflict is seen.
    let grows = delta.image_bytes >= 0 && delta.workflow_bytes >= 0 && delta.other_bytes >= 0;
    let sql = if grows {
        "INSERT INTO storage_usage (user_id, image_bytes, other_bytes, workflow_bytes) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (user_id) DO UPDATE SET \
         image_bytes = storage_usage.image_bytes + $2, other_bytes = storage_usage.other_bytes + $3, \
         workflow_bytes = storage_usage.workflow_bytes + $4"
    } else {
        "UPDATE storage_usage SET image_bytes = image_bytes + $2, other_bytes = other_bytes + $3, \
         workflow_bytes = workflow_bytes + $4 WHERE user_id = $1"
    };
    on_tx!(tx, c => exec!(c, sqlx::query(sql)
        .bind(user_id)
        .bind(delta.image_bytes)
        .bind(delta.other_bytes)
        .bind(delta.workflow_bytes)))?;
    Ok(())
}

/// The bytes a user stores.
pub async fn storage_of_user(db: &Db, user_id: &str) -> StoreResult<StoredBytes> {
    Ok(on_db!(db, p => sqlx::query_as(
        "SELECT image_bytes, workflow_bytes, other_bytes FROM storage_usage WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(p)
    .await)?
    .unwrap_or_default())
}

/// The image bytes a user's rows add up to (what the counter must equal).
pub async fn summed_image_bytes(db: &Db, user_id: &str) -> StoreResult<i64> {
    Ok(on_db!(db, p => sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(file_size + thumb_size), 0) AS BIGINT) FROM images WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_one(p)
    .await)?)
}

/// How the gallery is listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    CreatedAt,
    FileSize,
}

#[derive(Debug, Clone)]
pub struct ImageFilter<'a> {
    pub user_id: &'a str,
    pub board_id: Option<&'a str>,
    pub starred: Option<bool>,
    pub sort: SortBy,
    pub descending: bool,
}

/// A page of a user's images and how many match.
pub async fn list(db: &Db, f: &ImageFilter<'_>, page: Page) -> StoreResult<(Vec<ImageRow>, i64)> {
    let column = match f.sort {
        SortBy::CreatedAt => "created_at",
        SortBy::FileSize => "file_size",
    };
    let dir = if f.descending { "DESC" } else { "ASC" };
    let mut filter = String::from("i.user_id = $1");
    if f.board_id.is_some() {
        filter.push_str(" AND EXISTS (SELECT 1 FROM board_images b WHERE b.board_id = $2 AND b.image_id = i.id)");
    } else {
        filter.push_str(" AND $2 = ''");
    }
    if f.starred.is_some() {
        filter.push_str(" AND i.is_starred = $3");
    } else {
        filter.push_str(" AND $3 = $3");
    }
    let columns = IMAGE_COLUMNS
        .split(", ")
        .map(|c| format!("i.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    // The page's ids come from the index alone; only they are read whole.
    let sql = format!(
        "SELECT {columns} FROM images i JOIN (SELECT i.id FROM images i WHERE {filter} \
         ORDER BY i.{column} {dir}, i.id {dir} LIMIT $4 OFFSET $5) p ON p.id = i.id \
         ORDER BY i.{column} {dir}, i.id {dir}"
    );
    let count = format!("SELECT COUNT(*) FROM images i WHERE {filter}");
    let board = f.board_id.unwrap_or("");
    let starred = f.starred.unwrap_or(false);
    let rows = on_db!(db, p => sqlx::query_as(&sql)
        .bind(f.user_id)
        .bind(board)
        .bind(starred)
        .bind(page.limit())
        .bind(page.offset())
        .fetch_all(p)
        .await)?;
    let total: i64 = on_db!(db, p => sqlx::query_scalar(&count)
        .bind(f.user_id)
        .bind(board)
        .bind(starred)
        .fetch_one(p)
        .await)?;
    Ok((rows, total))
}

/// The image, locked for the transaction (PostgreSQL).
pub async fn get_in(tx: &mut Tx, id: &str) -> StoreResult<Option<ImageRow>> {
    let lock = tx.row_lock();
    let sql = format!("SELECT {IMAGE_COLUMNS} FROM images WHERE id = $1{lock}");
    Ok(on_tx!(tx, c => sqlx::query_as(&sql).bind(id).fetch_optional(c).await)?)
}

/// Deletes the row (its board links go with it) and gives its bytes back.
pub async fn delete_in(tx: &mut Tx, row: &ImageRow) -> StoreResult<()> {
    on_tx!(tx, c => exec!(c, sqlx::query("DELETE FROM images WHERE id = $1").bind(&row.id)))?;
    add_storage(
        tx,
        &row.user_id,
        StoredBytes {
            image_bytes: -row.stored_bytes(),
            ..StoredBytes::default()
        },
    )
    .await
}

pub async fn set_starred(w: &Writer<'_>, id: &str, starred: bool) -> StoreResult<()> {
    on_write!(w, p => exec!(p, sqlx::query("UPDATE images SET is_starred = $2 WHERE id = $1")
        .bind(id)
        .bind(starred)))?;
    Ok(())
}

/// Shares (a token) or unshares (`None`) an image.
pub async fn set_share(
    w: &Writer<'_>,
    id: &str,
    token: Option<&str>,
    expires_at: Option<DateTime<Utc>>,
) -> StoreResult<()> {
    on_write!(w, p => exec!(p, sqlx::query(
        "UPDATE images SET share_token = $2, is_public = $3, share_expires_at = $4 WHERE id = $1",
    )
    .bind(id)
    .bind(token)
    .bind(token.is_some())
    .bind(expires_at)))?;
    Ok(())
}

pub async fn by_share_token(db: &Db, token: &str) -> StoreResult<Option<ImageRow>> {
    let sql = format!("SELECT {IMAGE_COLUMNS} FROM images WHERE share_token = $1");
    Ok(on_db!(db, p => sqlx::query_as(&sql).bind(token).fetch_optional(p).await)?)
}

/// The boards (id, name) an image is on.
pub async fn boards_of_image(db: &Db, image_id: &str) -> StoreResult<Vec<(String, String)>> {
    Ok(on_db!(db, p => sqlx::query_as(
        "SELECT b.id, b.name FROM boards b JOIN board_images bi ON bi.board_id = b.id \
         WHERE bi.image_id = $1 ORDER BY b.created_at, b.id",
    )
    .bind(image_id)
    .fetch_all(p)
    .await)?)
}

/// The stored parameters of every job that has not ended.
pub async fn live_job_params(db: &Db) -> StoreResult<Vec<String>> {
    Ok(on_db!(db, p => sqlx::query_scalar(
        "SELECT params FROM jobs WHERE status IN ('queued', 'processing')",
    )
    .fetch_all(p)
    .await)?)
}

/// Every file key (originals and thumbnails) of a user's rows.
pub async fn keys_of_user(db: &Db, user_id: &str) -> StoreResult<Vec<String>> {
    let rows: Vec<(String, String)> = on_db!(db, p => sqlx::query_as(
        "SELECT blob_key, thumb_key FROM images WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_all(p)
    .await)?;
    Ok(rows.into_iter().flat_map(|(a, b)| [a, b]).collect())
}

/// Takes swept input bytes off a user's counter (never below zero: inputs
/// of a host that died before counting them were never added).
pub async fn release_other_bytes(tx: &mut Tx, user_id: &str, bytes: i64) -> StoreResult<()> {
    tx.profile_changed(Part::Storage, user_id);
    on_tx!(tx, c => exec!(c, sqlx::query(
        "UPDATE storage_usage SET other_bytes = CASE WHEN other_bytes >= $2 THEN other_bytes - $2 \
         ELSE 0 END WHERE user_id = $1",
    )
    .bind(user_id)
    .bind(bytes)))?;
    Ok(())
}

/// True when a job that has not ended uses `key` as an input.
pub async fn used_by_live_job(db: &Db, key: &str) -> StoreResult<bool> {
    let pattern = format!("%\"{key}\"%");
    let n: i64 = on_db!(db, p => sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'processing') AND params LIKE $1",
    )
    .bind(pattern)
    .fetch_one(p)
    .await)?;
    Ok(n > 0)
}
