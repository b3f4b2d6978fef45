//! Accounts and sessions: register, login, refresh-token rotation with reuse
//! detection, logout.

pub mod email;
pub mod passwords;
pub mod throttle;
pub mod tokens;

use std::time::Instant;

use chrono::{Duration, Utc};
use serde_json::Value;

use crate::billing::ledger;
use crate::billing::plans::DEFAULT_TIER;
use crate::store::users::{NewUser, UserRow};
use crate::store::{Db, StoreError, new_id, tokens as token_store, users as user_store};
use passwords::{HashError, HashGate};
use throttle::LoginThrottle;
use tokens::AccessTokens;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid email")]
    InvalidEmail,
    #[error("weak password")]
    WeakPassword(Value),
    #[error("invalid name")]
    InvalidName,
    #[error("email exists")]
    EmailExists,
    #[error("bad credentials")]
    BadCredentials,
    #[error("refresh token invalid")]
    InvalidToken,
    #[error("refresh token expired")]
    TokenExpired,
    /// Password hashing is saturated; try again shortly.
    #[error("busy")]
    Busy,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> Self {
        AuthError::Internal(e.into())
    }
}

impl From<ledger::LedgerError> for AuthError {
    fn from(e: ledger::LedgerError) -> Self {
        AuthError::Internal(e.into())
    }
}

impl From<HashError> for AuthError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => AuthError::Busy,
            HashError::Failed(e) => AuthError::Internal(e),
        }
    }
}

pub type AuthResult<T> = Result<T, AuthError>;

/// Tokens handed to a client after login or refresh.
#[derive(Debug, Clone)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
}

pub struct AuthService {
    db: Db,
    pub access: AccessTokens,
    refresh_ttl: Duration,
    signup_grant: i64,
    hashing: HashGate,
    throttle: LoginThrottle,
}

pub const MAX_NAME_CHARS: usize = 100;

/// A display name: trimmed, 1 to 100 characters, no control characters.
pub fn clean_name(raw: &str) -> Option<String> {
    let name = raw.trim();
    let len = name.chars().count();
    (1..=MAX_NAME_CHARS).contains(&len).then_some(())?;
    (!name.chars().any(char::is_control)).then(|| name.to_owned())
}

impl AuthService {
    pub fn new(
        db: Db,
        access: AccessTokens,
        refresh_ttl_days: u64,
        signup_grant: i64,
        hashing: HashGate,
    ) -> Self {
        Self {
            db,
            access,
            refresh_ttl: Duration::days(refresh_ttl_days as i64),
            signup_grant,
            hashing,
            throttle: LoginThrottle::default(),
        }
    }

    pub async fn register(
        &self,
        email: &str,
        password: &str,
        name: Option<&str>,
    ) -> AuthResult<UserRow> {
        let email = email::normalise(email).ok_or(AuthError::InvalidEmail)?;
        let name = match name {
            Some(n) => clean_name(n).ok_or(AuthError::InvalidName)?,
            None => email.split('@').next().unwrap_or_default().to_owned(),
        };
        passwords::check_policy(password, &email).map_err(AuthError::WeakPassword)?;
        let hash = self.hashing.hash(password.to_owned()).await?;
        let id = new_id();
        let now = Utc::now();
        let mut tx = self.db.begin().await?;
        let new = NewUser {
            id: &id,
            email: &email,
            name: &name,
            password_hash: Some(&hash),
            tier: DEFAULT_TIER,
            now,
        };
        match user_store::insert(&mut tx, &new).await {
            Err(e) if e.is_unique_violation() => return Err(AuthError::EmailExists),
            other => other?,
        }
        ledger::open_account_in(&mut tx, &id, self.signup_grant).await?;
        tx.commit().await?;
        user_store::find_by_id(&self.db, &id)
            .await?
            .ok_or_else(|| AuthError::Internal(anyhow::anyhow!("user vanished after insert")))
    }

    /// Checks credentials and opens a new refresh-token family. Unknown
    /// accounts and wrong passwords take the same time and give the same
    /// answer; so does an account in its failed-login back-off, without
    /// hashing.
    pub async fn login(&self, email: &str, password: &str) -> AuthResult<(UserRow, TokenPair)> {
        // Only real addresses are tracked: a key is never an attacker's
        // arbitrary (up to body-sized) string.
        let account = email::normalise(email);
        let key = account.as_deref();
        if key.is_some_and(|k| self.throttle.wait(k, Instant::now()).is_some()) {
            return Err(AuthError::BadCredentials);
        }
        let user = match &account {
            Some(e) => user_store::find_by_email(&self.db, e).await?,
            None => None,
        };
        let stored = user.as_ref().and_then(|u| u.password_hash.clone());
        let ok = self.hashing.verify(password.to_owned(), stored).await?;
        let user = match (ok, user) {
            (true, Some(u)) => u,
            _ => {
                if let Some(k) = key {
                    self.throttle.failed(k, Instant::now());
                }
                return Err(AuthError::BadCredentials);
            }
        };
        if let Some(k) = key {
            self.throttle.succeeded(k);
        }
        let family = new_id();
        let mut tx = self.db.begin().await?;
        token_store::create_family(&mut tx, &family, &user.id, Utc::now()).await?;
        let refresh = self.add_refresh_token(&mut tx, &family).await?;
        tx.commit().await?;
        let pair = self.pair(&user.id, refresh);
        Ok((user, pair))
    }

    /// Rotates a refresh token. A token that was already used revokes its
    /// whole family: whoever holds a stolen copy loses the session too.
    pub async fn refresh(&self, refresh_token: &str) -> AuthResult<TokenPair> {
        let hash = tokens::hash_refresh_token(refresh_token);
        let now = Utc::now();
        let mut tx = self.db.begin().await?;
        let Some(row) = token_store::find_by_hash(&mut tx, &hash).await? else {
            return Err(AuthError::InvalidToken);
        };
        if row.family_revoked_at.is_some() {
            return Err(AuthError::InvalidToken);
        }
        if row.used_at.is_some() || !token_store::mark_used(&mut tx, &row.id, now).await? {
            tracing::warn!(family = %row.family_id, user = %row.user_id, "refresh token reuse: family revoked");
            token_store::revoke_family(&mut tx, &row.family_id, "reuse", now).await?;
            tx.commit().await?;
            return Err(AuthError::InvalidToken);
        }
        if row.expires_at <= now {
            return Err(AuthError::TokenExpired);
        }
        let refresh = self.add_refresh_token(&mut tx, &row.family_id).await?;
        tx.commit().await?;
        Ok(self.pair(&row.user_id, refresh))
    }

    /// Ends the session the refresh token belongs to.
    pub async fn logout(&self, refresh_token: &str) -> AuthResult<()> {
        let hash = tokens::hash_refresh_token(refresh_token);
        let mut tx = self.db.begin().await?;
        let Some(row) = token_store::find_by_hash(&mut tx, &hash).await? else {
            return Err(AuthError::InvalidToken);
        };
        token_store::revoke_family(&mut tx, &row.family_id, "logout", Utc::now()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn add_refresh_token(
        &self,
        tx: &mut crate::store::Tx,
        family: &str,
    ) -> AuthResult<String> {
        let token = tokens::new_refresh_token();
        let now = Utc::now();
        let hash = tokens::hash_refresh_token(&token);
        token_store::insert_token(tx, &new_id(), family, &hash, now, now + self.refresh_ttl)
            .await?;
        Ok(token)
    }

    fn pair(&self, user_id: &str, refresh_token: String) -> TokenPair {
        TokenPair {
            access_token: self.access.issue(user_id),
            refresh_token,
            expires_in: self.access.ttl_secs,
        }
    }
}
