//! The `images`, `boards` and `board_images` tables (the gallery API is
//! built on them; generation writes them).

use chrono::{DateTime, Utc};

use super::{Db, StoreResult, Tx, Writer};
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
}

const IMAGE_COLUMNS: &str = "id, user_id, job_id, blob_key, thumb_key, width, height, file_size, \
     mime_type, is_starred, is_public, share_token, metadata, created_at";

pub async fn insert(tx: &mut Tx, i: &ImageRow) -> StoreResult<()> {
    on_tx!(tx, c => exec!(c, sqlx::query(
        "INSERT INTO images (id, user_id, job_id, blob_key, thumb_key, width, height, file_size, \
         mime_type, is_starred, is_public, share_token, metadata, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
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
    .bind(i.created_at)))?;
    Ok(())
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
    pub created_at: DateTime<Utc>,
}

pub async fn insert_board(w: &Writer<'_>, b: &BoardRow) -> StoreResult<()> {
    on_write!(w, p => exec!(p, sqlx::query(
        "INSERT INTO boards (id, user_id, name, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
    )
    .bind(&b.id)
    .bind(&b.user_id)
    .bind(&b.name)
    .bind(b.created_at)))?;
    Ok(())
}

pub async fn get_board(db: &Db, id: &str) -> StoreResult<Option<BoardRow>> {
    Ok(on_db!(db, p => sqlx::query_as(
        "SELECT id, user_id, name, created_at FROM boards WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(p)
    .await)?)
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
         SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM boards WHERE id = $1)",
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

/// Bytes of a user's stored images.
pub async fn bytes_of_user(db: &Db, user_id: &str) -> StoreResult<i64> {
    Ok(on_db!(db, p => sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(file_size), 0) AS BIGINT) FROM images WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_one(p)
    .await)?)
}
