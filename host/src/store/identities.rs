//! OAuth sign-ins: the provider accounts linked to users
//! (`user_identities`) and the sign-ins in progress (`oauth_states`).

use chrono::{DateTime, Utc};

use super::{Db, StoreResult, Tx, Writer};
use crate::{exec, on_db, on_tx, on_write};

/// What a provider says about the account that signed in.
pub struct IdentityFacts<'a> {
    pub provider: &'a str,
    pub subject: &'a str,
    pub email: Option<&'a str>,
    pub email_verified: bool,
}

/// The user a provider account is linked to.
pub async fn find_user(db: &Db, provider: &str, subject: &str) -> StoreResult<Option<String>> {
    let row: Option<(String,)> = on_db!(db, p => sqlx::query_as(
        "SELECT user_id FROM user_identities WHERE provider = $1 AND subject = $2",
    )
    .bind(provider)
    .bind(subject)
    .fetch_optional(p)
    .await)?;
    Ok(row.map(|r| r.0))
}

/// Links a provider account to `user_id`; a unique violation when the
/// account is linked already (a concurrent first sign-in). Whether the
/// provider had verified the address is kept as it was at linking
/// (`linked_verified`; later sign-ins do not change it).
pub async fn link(
    tx: &mut Tx,
    id: &str,
    user_id: &str,
    facts: &IdentityFacts<'_>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    on_tx!(tx, c => exec!(c, sqlx::query(
        "INSERT INTO user_identities \
           (id, provider, subject, user_id, email, email_verified, linked_verified, \
            created_at, last_login_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $7)",
    )
    .bind(id)
    .bind(facts.provider)
    .bind(facts.subject)
    .bind(user_id)
    .bind(facts.email)
    .bind(facts.email_verified)
    .bind(now)))?;
    Ok(())
}

/// Unlinks every provider account of `user_id` whose address the provider
/// had not verified when it was linked (it may not be the owner's); how
/// many there were.
pub async fn unlink_never_verified(tx: &mut Tx, user_id: &str) -> StoreResult<u64> {
    Ok(on_tx!(tx, c => sqlx::query(
        "DELETE FROM user_identities WHERE user_id = $1 AND NOT linked_verified",
    )
    .bind(user_id)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?)
}

/// Records a later sign-in with what the provider says now.
pub async fn touch(
    w: &Writer<'_>,
    facts: &IdentityFacts<'_>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    on_write!(w, p => exec!(p, sqlx::query(
        "UPDATE user_identities SET email = $3, email_verified = $4, last_login_at = $5 \
         WHERE provider = $1 AND subject = $2",
    )
    .bind(facts.provider)
    .bind(facts.subject)
    .bind(facts.email)
    .bind(facts.email_verified)
    .bind(now)))?;
    Ok(())
}

/// The providers a user can sign in with.
pub async fn providers_of(db: &Db, user_id: &str) -> StoreResult<Vec<String>> {
    let rows: Vec<(String,)> = on_db!(db, p => sqlx::query_as(
        "SELECT provider FROM user_identities WHERE user_id = $1 ORDER BY provider",
    )
    .bind(user_id)
    .fetch_all(p)
    .await)?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Remembers a sign-in in progress; drops the ones that expired.
pub async fn save_state(
    w: &Writer<'_>,
    state_hash: &str,
    provider: &str,
    pkce_verifier: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> StoreResult<()> {
    on_write!(w, p => exec!(p, sqlx::query("DELETE FROM oauth_states WHERE expires_at < $1").bind(now)))?;
    on_write!(w, p => exec!(p, sqlx::query(
        "INSERT INTO oauth_states (state_hash, provider, pkce_verifier, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(state_hash)
    .bind(provider)
    .bind(pkce_verifier)
    .bind(now)
    .bind(expires_at)))?;
    Ok(())
}

/// A sign-in in progress, as the callback finds it.
#[derive(Debug, sqlx::FromRow)]
pub struct PendingSignIn {
    pub provider: String,
    pub pkce_verifier: String,
    pub expires_at: DateTime<Utc>,
}

/// Takes a sign-in in progress: the one caller that gets it is the only
/// one ever to.
pub async fn take_state(w: &Writer<'_>, state_hash: &str) -> StoreResult<Option<PendingSignIn>> {
    Ok(on_write!(w, p => sqlx::query_as(
        "DELETE FROM oauth_states WHERE state_hash = $1 \
         RETURNING provider, pkce_verifier, expires_at",
    )
    .bind(state_hash)
    .fetch_optional(p)
    .await)?)
}
