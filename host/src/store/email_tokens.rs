//! Single-use tokens sent by mail (email verification, password reset);
//! only their SHA-256 is stored.

use chrono::{DateTime, Utc};

use super::{Db, StoreResult, Tx};
use crate::{exec, on_db, on_tx};

/// What a token is for (`email_tokens.purpose`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    VerifyEmail,
    ResetPassword,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::VerifyEmail => "verify_email",
            Purpose::ResetPassword => "reset_password",
        }
    }
}

pub async fn insert(
    tx: &mut Tx,
    token_hash: &str,
    user_id: &str,
    purpose: Purpose,
    email: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> StoreResult<()> {
    on_tx!(tx, c => exec!(c, sqlx::query(
        "INSERT INTO email_tokens (token_hash, user_id, purpose, email, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(token_hash)
    .bind(user_id)
    .bind(purpose.as_str())
    .bind(email)
    .bind(now)
    .bind(expires_at)))?;
    Ok(())
}

/// When the user was last sent a token for `purpose`.
pub async fn last_sent(
    db: &Db,
    user_id: &str,
    purpose: Purpose,
) -> StoreResult<Option<DateTime<Utc>>> {
    let row: Option<(DateTime<Utc>,)> = on_db!(db, p => sqlx::query_as(
        "SELECT created_at FROM email_tokens WHERE user_id = $1 AND purpose = $2 \
         ORDER BY created_at DESC LIMIT 1",
    )
    .bind(user_id)
    .bind(purpose.as_str())
    .fetch_optional(p)
    .await)?;
    Ok(row.map(|r| r.0))
}

/// The address an unspent token of `purpose` went to.
pub async fn email_of_unspent(
    db: &Db,
    token_hash: &str,
    purpose: Purpose,
) -> StoreResult<Option<String>> {
    let row: Option<(String,)> = on_db!(db, p => sqlx::query_as(
        "SELECT email FROM email_tokens \
         WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL",
    )
    .bind(token_hash)
    .bind(purpose.as_str())
    .fetch_optional(p)
    .await)?;
    Ok(row.map(|r| r.0))
}

/// A token as it was when it was spent.
#[derive(Debug, sqlx::FromRow)]
pub struct SpentToken {
    pub user_id: String,
    pub email: String,
    pub expires_at: DateTime<Utc>,
}

/// Spends an unused token: the one caller that gets it is the only one
/// ever to. The caller checks `expires_at`.
pub async fn spend(
    tx: &mut Tx,
    token_hash: &str,
    purpose: Purpose,
    now: DateTime<Utc>,
) -> StoreResult<Option<SpentToken>> {
    Ok(on_tx!(tx, c => sqlx::query_as(
        "UPDATE email_tokens SET used_at = $3 \
         WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL \
         RETURNING user_id, email, expires_at",
    )
    .bind(token_hash)
    .bind(purpose.as_str())
    .bind(now)
    .fetch_optional(c)
    .await)?)
}

/// Spends every unused token of a user for `purpose` (a reset voids the
/// other reset links).
pub async fn spend_all(
    tx: &mut Tx,
    user_id: &str,
    purpose: Purpose,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    on_tx!(tx, c => exec!(c, sqlx::query(
        "UPDATE email_tokens SET used_at = $3 \
         WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL",
    )
    .bind(user_id)
    .bind(purpose.as_str())
    .bind(now)))?;
    Ok(())
}
