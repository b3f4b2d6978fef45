//! The `users` table.

use chrono::{DateTime, Utc};

use super::profiles::Part;
use super::{Db, StoreResult, Tx, Writer};
use crate::{exec, exec_one, on_db, on_tx, on_write};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub name: String,
    pub password_hash: Option<String>,
    pub avatar_url: Option<String>,
    pub tier: String,
    pub role: String,
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub struct NewUser<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub name: &'a str,
    pub password_hash: Option<&'a str>,
    pub avatar_url: Option<&'a str>,
    pub email_verified: bool,
    pub tier: &'a str,
    pub now: DateTime<Utc>,
}

const COLUMNS: &str = "id, email, name, password_hash, avatar_url, tier, role, email_verified, created_at, updated_at";

/// Inserts a user; fails with a unique violation on `users_email_key` when
/// the email is taken.
pub async fn insert(tx: &mut Tx, u: &NewUser<'_>) -> StoreResult<()> {
    tx.profile_changed(Part::Account, u.id);
    on_tx!(tx, c => exec!(c, sqlx::query(
        "INSERT INTO users \
           (id, email, name, password_hash, avatar_url, email_verified, tier, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
    )
    .bind(u.id)
    .bind(u.email)
    .bind(u.name)
    .bind(u.password_hash)
    .bind(u.avatar_url)
    .bind(u.email_verified)
    .bind(u.tier)
    .bind(u.now)))?;
    Ok(())
}

/// Marks the user's email verified, if it is still `email` (a token
/// proves only the address it was sent to); true when it is.
pub async fn mark_email_verified_in(
    tx: &mut Tx,
    id: &str,
    email: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    tx.profile_changed(Part::Account, id);
    Ok(on_tx!(tx, c => exec_one!(c, sqlx::query(
        "UPDATE users SET email_verified = TRUE, updated_at = $3 WHERE id = $1 AND email = $2",
    )
    .bind(id)
    .bind(email)
    .bind(now)))?)
}

/// Sets (or, with `None`, removes) the user's password.
pub async fn set_password_in(
    tx: &mut Tx,
    id: &str,
    password_hash: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    Ok(on_tx!(tx, c => exec_one!(c, sqlx::query(
        "UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(password_hash)
    .bind(now)))?)
}

pub async fn find_by_email(db: &Db, email: &str) -> StoreResult<Option<UserRow>> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE email = $1");
    Ok(on_db!(db, p => sqlx::query_as(&sql).bind(email).fetch_optional(p).await)?)
}

/// What `GET /users/me` shows of a user, read in one query (its hot
/// path): the user, their credit balance, the bytes they store and their
/// current subscription, if any.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProfileRow {
    #[sqlx(flatten)]
    pub user: UserRow,
    pub balance: i64,
    pub storage_used: i64,
    pub sub_plan: Option<String>,
    pub sub_status: Option<String>,
    pub sub_period_end: Option<DateTime<Utc>>,
}

pub async fn find_profile(db: &Db, id: &str) -> StoreResult<Option<ProfileRow>> {
    // The subscription is `store::billing::current_subscription`'s: the
    // newest one that has not ended.
    let sql = format!(
        "SELECT u.id, u.email, u.name, u.password_hash, u.avatar_url, u.tier, u.role, \
         u.email_verified, u.created_at, u.updated_at, a.balance, \
         COALESCE(s.image_bytes + s.workflow_bytes + s.other_bytes, 0) AS storage_used, \
         sub.plan AS sub_plan, sub.status AS sub_status, sub.current_period_end AS sub_period_end \
         FROM users u JOIN credit_accounts a ON a.user_id = u.id \
         LEFT JOIN storage_usage s ON s.user_id = u.id \
         LEFT JOIN subscriptions sub ON sub.id = (SELECT c.id FROM subscriptions c \
           WHERE c.user_id = u.id AND c.status NOT IN {} \
           ORDER BY c.updated_at DESC, c.id DESC LIMIT 1) \
         WHERE u.id = $1",
        super::billing::ENDED
    );
    Ok(on_db!(db, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await)?)
}

/// The tier, role and whether the email is verified, of a user, read now
/// (not from the profile cache).
pub async fn find_access(db: &Db, id: &str) -> StoreResult<Option<(String, String, bool)>> {
    Ok(
        on_db!(db, p => sqlx::query_as("SELECT tier, role, email_verified FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(p)
        .await)?,
    )
}

/// The tier and role of a user, inside a transaction.
pub async fn find_access_in(tx: &mut Tx, id: &str) -> StoreResult<Option<(String, String)>> {
    Ok(
        on_tx!(tx, c => sqlx::query_as("SELECT tier, role FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(c)
        .await)?,
    )
}

pub async fn find_by_id(db: &Db, id: &str) -> StoreResult<Option<UserRow>> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1");
    Ok(on_db!(db, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await)?)
}

/// Profile fields a user may change; `None` leaves the column as it is.
#[derive(Debug, Default)]
pub struct ProfileChange {
    pub name: Option<String>,
    pub avatar_url: Option<Option<String>>,
}

pub async fn update_profile(
    w: &Writer<'_>,
    id: &str,
    change: &ProfileChange,
    now: DateTime<Utc>,
) -> StoreResult<Option<UserRow>> {
    let sql = format!(
        "UPDATE users SET \
           name = COALESCE($2, name), \
           avatar_url = CASE WHEN $3 THEN $4 ELSE avatar_url END, \
           updated_at = $5 \
         WHERE id = $1 RETURNING {COLUMNS}"
    );
    let (set_avatar, avatar) = match &change.avatar_url {
        Some(v) => (true, v.clone()),
        None => (false, None),
    };
    let row = on_write!(w, p => sqlx::query_as(&sql)
        .bind(id)
        .bind(change.name.as_deref())
        .bind(set_avatar)
        .bind(avatar.as_deref())
        .bind(now)
        .fetch_optional(p)
        .await)?;
    w.profile_changed(Part::Account, id);
    Ok(row)
}

/// The operator-managed columns of a user.
#[derive(Debug, Clone, Copy)]
pub enum OperatorColumn {
    Tier,
    Role,
}

fn operator_sql(column: OperatorColumn) -> &'static str {
    match column {
        OperatorColumn::Tier => "UPDATE users SET tier = $2, updated_at = $3 WHERE id = $1",
        OperatorColumn::Role => "UPDATE users SET role = $2, updated_at = $3 WHERE id = $1",
    }
}

/// `set_operator_column` inside a transaction.
pub async fn set_operator_column_in(
    tx: &mut Tx,
    id: &str,
    column: OperatorColumn,
    value: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    tx.profile_changed(Part::Account, id);
    Ok(
        on_tx!(tx, c => exec_one!(c, sqlx::query(operator_sql(column))
        .bind(id).bind(value).bind(now)))?,
    )
}

/// Sets an operator-managed column; false when no such user exists.
pub async fn set_operator_column(
    w: &Writer<'_>,
    id: &str,
    column: OperatorColumn,
    value: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let changed = on_write!(w, p => exec_one!(p, sqlx::query(operator_sql(column))
        .bind(id).bind(value).bind(now)))?;
    w.profile_changed(Part::Account, id);
    Ok(changed)
}
