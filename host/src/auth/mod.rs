//! Accounts and sessions: register, login, refresh-token rotation with reuse
//! detection, logout; email verification and password reset by mailed
//! links; sign-in through OAuth providers (`identity`, `oauth`); the
//! per-user "not before" of access tokens (`cutoffs`).

pub mod cutoffs;
pub mod email;
pub mod email_links;
pub mod identity;
pub mod oauth;
pub mod passwords;
pub mod throttle;
pub mod tokens;

use chrono::{Duration, Utc};
use serde_json::Value;

use crate::billing::ledger;
use crate::billing::plans::DEFAULT_TIER;
use crate::i18n::Lang;
use crate::store::email_tokens::{self, Purpose};
use crate::store::users::{NewUser, UserRow};
use crate::store::{
    Db, StoreError, Tx, identities, new_id, tokens as token_store, users as user_store,
};
use cutoffs::SessionCutoffs;
use email_links::MailLinks;
use passwords::{HashError, HashGate};
use throttle::LoginBackoff;
use tokens::{AccessTokens, Claims, TokenError};

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
    /// Another mail of this kind went out moments ago; seconds to wait.
    #[error("too soon")]
    TooSoon(u64),
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
    throttle: LoginBackoff,
    pub links: MailLinks,
    /// When each user's sessions last ended: earlier access tokens are
    /// refused.
    pub cutoffs: SessionCutoffs,
}

/// What `resend_verification` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resent {
    Sent,
    AlreadyVerified,
}

pub const MAX_NAME_CHARS: usize = 100;

/// A display name: at most 100 characters and no control characters as
/// sent (the API document's rule), not blank, stored trimmed.
pub fn clean_name(raw: &str) -> Option<String> {
    let name = raw.trim();
    (!name.is_empty() && raw.chars().count() <= MAX_NAME_CHARS).then_some(())?;
    (!raw.chars().any(char::is_control)).then(|| name.to_owned())
}

impl AuthService {
    pub fn new(
        db: Db,
        access: AccessTokens,
        refresh_ttl_days: u64,
        signup_grant: i64,
        hashing: HashGate,
        links: MailLinks,
        cutoffs: SessionCutoffs,
    ) -> Self {
        Self {
            db,
            access,
            refresh_ttl: Duration::days(refresh_ttl_days as i64),
            signup_grant,
            hashing,
            throttle: LoginBackoff::default(),
            links,
            cutoffs,
        }
    }

    /// The failed-login back-off to keep (shared through Redis, or this
    /// host's own by default).
    pub fn with_login_backoff(mut self, throttle: LoginBackoff) -> Self {
        self.throttle = throttle;
        self
    }

    /// The claims of a valid access token whose sessions were not ended
    /// after it was issued (no database read: `cutoffs`).
    pub async fn authenticate(&self, token: &str) -> Result<Claims, TokenError> {
        let claims = self.access.validate(token)?;
        if !self.cutoffs.allows(&claims.sub, claims.issued_us()).await {
            return Err(TokenError::Invalid);
        }
        Ok(claims)
    }

    /// Unlinks the provider accounts of `user_id` linked on an address the
    /// provider had not verified (they may be someone else's: account
    /// takeover through an unverified provider address); when there were
    /// any, every session of the account is revoked too. True when
    /// something was unlinked: the caller ends the access tokens after
    /// committing (`cutoffs`).
    async fn unlink_untrusted(
        tx: &mut Tx,
        user_id: &str,
        now: chrono::DateTime<Utc>,
    ) -> AuthResult<bool> {
        let unlinked = identities::unlink_never_verified(tx, user_id).await?;
        if unlinked > 0 {
            token_store::revoke_user_families(tx, user_id, "identity_unlinked", now).await?;
            tracing::warn!(user = %user_id, unlinked,
                "provider identities linked on an unverified address removed: sessions ended");
        }
        Ok(unlinked > 0)
    }

    /// Creates an account and mails it a verification link.
    pub async fn register(
        &self,
        email: &str,
        password: &str,
        name: Option<&str>,
        lang: Lang,
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
            avatar_url: None,
            email_verified: false,
            tier: DEFAULT_TIER,
            now,
        };
        match user_store::insert(&mut tx, &new).await {
            Err(e) if e.is_unique_violation() => return Err(AuthError::EmailExists),
            other => other?,
        }
        ledger::open_account_in(&mut tx, &id, self.signup_grant).await?;
        tx.commit().await?;
        let user = user_store::find_by_id(&self.db, &id)
            .await?
            .ok_or_else(|| AuthError::Internal(anyhow::anyhow!("user vanished after insert")))?;
        self.links.send_verification(&user, lang).await?;
        Ok(user)
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
        if let Some(k) = key
            && self.throttle.must_wait(k).await
        {
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
                    self.throttle.failed(k).await;
                }
                return Err(AuthError::BadCredentials);
            }
        };
        if let Some(k) = key {
            self.throttle.succeeded(k).await;
        }
        let pair = self.open_session(&user.id).await?;
        Ok((user, pair))
    }

    /// Starts a new refresh-token family for `user_id`.
    async fn open_session(&self, user_id: &str) -> AuthResult<TokenPair> {
        let family = new_id();
        let mut tx = self.db.begin().await?;
        token_store::create_family(&mut tx, &family, user_id, Utc::now()).await?;
        let refresh = self.add_refresh_token(&mut tx, &family).await?;
        tx.commit().await?;
        Ok(self.pair(user_id, refresh))
    }

    /// Mails the user a new verification link, at most once a minute.
    pub async fn resend_verification(&self, user_id: &str, lang: Lang) -> AuthResult<Resent> {
        let user = user_store::find_by_id(&self.db, user_id)
            .await?
            .ok_or(AuthError::InvalidToken)?;
        if user.email_verified {
            return Ok(Resent::AlreadyVerified);
        }
        if let Some(wait) = self
            .links
            .wait_before_sending(&user.id, Purpose::VerifyEmail)
            .await?
        {
            return Err(AuthError::TooSoon(wait));
        }
        self.links.send_verification(&user, lang).await?;
        Ok(Resent::Sent)
    }

    /// Spends a verification token: the address it was sent to is verified
    /// (if it is still the account's).
    pub async fn verify_email(&self, token: &str) -> AuthResult<UserRow> {
        let now = Utc::now();
        let mut tx = self.db.begin().await?;
        let spent = email_tokens::spend(
            &mut tx,
            &tokens::hash_opaque_token(token),
            Purpose::VerifyEmail,
            now,
        )
        .await?
        .ok_or(AuthError::InvalidToken)?;
        if spent.expires_at <= now {
            tx.commit().await?;
            return Err(AuthError::TokenExpired);
        }
        if !user_store::mark_email_verified_in(&mut tx, &spent.user_id, &spent.email, now).await? {
            return Err(AuthError::InvalidToken);
        }
        let unlinked = Self::unlink_untrusted(&mut tx, &spent.user_id, now).await?;
        tx.commit().await?;
        if unlinked {
            self.cutoffs.end_sessions(&spent.user_id).await;
        }
        user_store::find_by_id(&self.db, &spent.user_id)
            .await?
            .ok_or(AuthError::InvalidToken)
    }

    /// Mails a reset link to the account of `email`, if any; the caller
    /// learns nothing either way.
    pub fn request_password_reset(&self, email: &str, lang: Lang) {
        if let Some(email) = email::normalise(email) {
            self.links.send_reset_in_background(email, lang);
        }
    }

    /// Spends a reset token and sets the new password; every session of
    /// the account ends, its access tokens included. The link proved the
    /// address, so it is verified, and identities linked on an unverified
    /// address are unlinked.
    pub async fn reset_password(&self, token: &str, new_password: &str) -> AuthResult<()> {
        let hash = tokens::hash_opaque_token(token);
        // Checked before hashing, without spending the token: a weak
        // password leaves the link usable for a better one.
        let email = email_tokens::email_of_unspent(&self.db, &hash, Purpose::ResetPassword)
            .await?
            .ok_or(AuthError::InvalidToken)?;
        passwords::check_policy(new_password, &email).map_err(AuthError::WeakPassword)?;
        let password_hash = self.hashing.hash(new_password.to_owned()).await?;
        let now = Utc::now();
        let mut tx = self.db.begin().await?;
        let spent = email_tokens::spend(&mut tx, &hash, Purpose::ResetPassword, now)
            .await?
            .ok_or(AuthError::InvalidToken)?;
        if spent.expires_at <= now {
            tx.commit().await?;
            return Err(AuthError::TokenExpired);
        }
        if !user_store::set_password_in(&mut tx, &spent.user_id, Some(&password_hash), now).await? {
            return Err(AuthError::InvalidToken);
        }
        email_tokens::spend_all(&mut tx, &spent.user_id, Purpose::ResetPassword, now).await?;
        token_store::revoke_user_families(&mut tx, &spent.user_id, "password_reset", now).await?;
        user_store::mark_email_verified_in(&mut tx, &spent.user_id, &spent.email, now).await?;
        Self::unlink_untrusted(&mut tx, &spent.user_id, now).await?;
        tx.commit().await?;
        self.cutoffs.end_sessions(&spent.user_id).await;
        self.throttle.succeeded(&spent.email).await;
        tracing::info!(user = %spent.user_id, "password reset: every session revoked");
        Ok(())
    }

    /// Rotates a refresh token. A token that was already used revokes its
    /// whole family: whoever holds a stolen copy loses the session too.
    pub async fn refresh(&self, refresh_token: &str) -> AuthResult<TokenPair> {
        let hash = tokens::hash_opaque_token(refresh_token);
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
        let hash = tokens::hash_opaque_token(refresh_token);
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
        let token = tokens::new_opaque_token();
        let now = Utc::now();
        let hash = tokens::hash_opaque_token(&token);
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
