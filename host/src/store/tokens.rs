//! Refresh tokens, grouped in families: each login starts a family, each
//! refresh adds the next token of it. Only SHA-256 hashes are stored.

use chrono::{DateTime, Utc};

use super::{StoreResult, Tx, TxConn};
use crate::{exec, exec_one, on_tx};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefreshTokenRow {
    pub id: String,
    pub family_id: String,
    pub user_id: String,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub family_revoked_at: Option<DateTime<Utc>>,
}

pub async fn create_family(
    tx: &mut Tx,
    family_id: &str,
    user_id: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    on_tx!(tx, c => exec!(c, sqlx::query(
        "INSERT INTO refresh_families (id, user_id, created_at) VALUES ($1, $2, $3)",
    )
    .bind(family_id)
    .bind(user_id)
    .bind(now)))?;
    Ok(())
}

pub async fn insert_token(
    tx: &mut Tx,
    id: &str,
    family_id: &str,
    token_hash: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> StoreResult<()> {
    on_tx!(tx, c => exec!(c, sqlx::query(
        "INSERT INTO refresh_tokens (id, family_id, token_hash, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(family_id)
    .bind(token_hash)
    .bind(now)
    .bind(expires_at)))?;
    Ok(())
}

/// The token with this hash, with its family's state; locks the row on
/// PostgreSQL so concurrent refreshes of one token serialise.
pub async fn find_by_hash(tx: &mut Tx, token_hash: &str) -> StoreResult<Option<RefreshTokenRow>> {
    const SELECT: &str = "SELECT t.id, t.family_id, f.user_id, t.expires_at, t.used_at, \
                          f.revoked_at AS family_revoked_at \
                          FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id \
                          WHERE t.token_hash = $1";
    Ok(match &mut tx.conn {
        TxConn::Sqlite(t, _) => {
            sqlx::query_as(SELECT)
                .bind(token_hash)
                .fetch_optional(&mut **t)
                .await?
        }
        TxConn::Postgres(t) => {
            let sql = format!("{SELECT} FOR UPDATE OF t");
            sqlx::query_as(&sql)
                .bind(token_hash)
                .fetch_optional(&mut **t)
                .await?
        }
    })
}

/// Marks a token used; false when it already was.
pub async fn mark_used(tx: &mut Tx, id: &str, now: DateTime<Utc>) -> StoreResult<bool> {
    Ok(on_tx!(tx, c => exec_one!(c, sqlx::query(
        "UPDATE refresh_tokens SET used_at = $2 WHERE id = $1 AND used_at IS NULL",
    )
    .bind(id)
    .bind(now)))?)
}

/// Revokes a family: none of its tokens can be used again.
pub async fn revoke_family(
    tx: &mut Tx,
    family_id: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    on_tx!(tx, c => exec!(c, sqlx::query(
        "UPDATE refresh_families SET revoked_at = $2, revoke_reason = $3 \
         WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(family_id)
    .bind(now)
    .bind(reason)))?;
    Ok(())
}

/// Revokes every open family of a user: all their sessions end.
pub async fn revoke_user_families(
    tx: &mut Tx,
    user_id: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    on_tx!(tx, c => exec!(c, sqlx::query(
        "UPDATE refresh_families SET revoked_at = $2, revoke_reason = $3 \
         WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user_id)
    .bind(now)
    .bind(reason)))?;
    Ok(())
}
