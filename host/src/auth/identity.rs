//! Which account a provider sign-in opens. A provider account already
//! linked opens its user. Otherwise only an address the provider has
//! verified counts (`email_not_verified` else): no account with it — a new,
//! verified one; an account with it — linked. An unverified provider
//! address never makes an account nor takes one over: whoever holds it
//! may not own it, and the real owner would later verify or reset their
//! way into an account the provider account still opens.
//!
//! Linking to an account whose own address was never verified also drops
//! its password, unlinks identities linked on an unverified address and
//! ends its sessions (access tokens included): whoever registered it may
//! not have owned the address (account pre-hijacking), and the owner who
//! just proved it gets the account alone (a password comes back through
//! password reset).

use chrono::Utc;

use super::oauth::{OAuthError, Profile, Provider};
use super::{AuthService, TokenPair, clean_name};
use crate::billing::ledger;
use crate::billing::plans::DEFAULT_TIER;
use crate::store::identities::{self, IdentityFacts};
use crate::store::users::{self as user_store, NewUser, UserRow};
use crate::store::{new_id, tokens as token_store};

/// A finished provider sign-in.
pub struct SignedIn {
    pub user: UserRow,
    pub tokens: TokenPair,
    /// The account was made by this sign-in.
    pub created: bool,
}

impl From<super::AuthError> for OAuthError {
    fn from(e: super::AuthError) -> Self {
        OAuthError::Internal(anyhow::anyhow!("{e}"))
    }
}

impl AuthService {
    pub async fn sign_in_with(
        &self,
        provider: Provider,
        profile: &Profile,
    ) -> Result<SignedIn, OAuthError> {
        let facts = IdentityFacts {
            provider: provider.as_str(),
            subject: &profile.subject,
            email: profile.email.as_deref(),
            email_verified: profile.email_verified,
        };
        // Twice at most: a concurrent first sign-in (or registration) of
        // the same account makes the first try's insert collide, and the
        // second finds what the other made.
        for _ in 0..2 {
            match self.open_for(&facts, profile).await {
                Err(OAuthError::Internal(e))
                    if e.downcast_ref::<crate::store::StoreError>()
                        .is_some_and(|s| s.is_unique_violation()) =>
                {
                    continue;
                }
                other => return other,
            }
        }
        Err(OAuthError::Internal(anyhow::anyhow!(
            "sign-in kept colliding with a concurrent one"
        )))
    }

    async fn open_for(
        &self,
        facts: &IdentityFacts<'_>,
        profile: &Profile,
    ) -> Result<SignedIn, OAuthError> {
        let now = Utc::now();
        if let Some(user_id) =
            identities::find_user(&self.db, facts.provider, facts.subject).await?
        {
            identities::touch(&self.db.write().await, facts, now).await?;
            let user = user_store::find_by_id(&self.db, &user_id)
                .await?
                .ok_or_else(|| OAuthError::Internal(anyhow::anyhow!("linked user vanished")))?;
            let tokens = self.open_session(&user.id).await?;
            return Ok(SignedIn {
                user,
                tokens,
                created: false,
            });
        }
        let email = profile.email.as_deref().ok_or(OAuthError::NoEmail)?;
        if !profile.email_verified {
            return Err(OAuthError::EmailNotVerified);
        }
        let existing = user_store::find_by_email(&self.db, email).await?;
        let mut tx = self.db.begin().await?;
        let mut claimed = None;
        let (user_id, created) = match existing {
            Some(existing) => {
                if !existing.email_verified {
                    user_store::set_password_in(&mut tx, &existing.id, None, now).await?;
                    token_store::revoke_user_families(&mut tx, &existing.id, "oauth_claim", now)
                        .await?;
                    user_store::mark_email_verified_in(&mut tx, &existing.id, email, now).await?;
                    identities::unlink_never_verified(&mut tx, &existing.id).await?;
                    tracing::warn!(user = %existing.id, provider = facts.provider,
                        "unverified account claimed by a verified provider address: password removed, sessions ended");
                    claimed = Some(existing.id.clone());
                }
                (existing.id, false)
            }
            None => {
                let id = new_id();
                let name = profile
                    .name
                    .as_deref()
                    .and_then(clean_name)
                    .unwrap_or_else(|| email.split('@').next().unwrap_or_default().to_owned());
                let avatar = profile
                    .avatar_url
                    .as_deref()
                    .and_then(|u| crate::users::check_avatar_url(u).ok());
                let new = NewUser {
                    id: &id,
                    email,
                    name: &name,
                    password_hash: None,
                    avatar_url: avatar.as_deref(),
                    email_verified: true,
                    tier: DEFAULT_TIER,
                    now,
                };
                user_store::insert(&mut tx, &new).await?;
                ledger::open_account_in(&mut tx, &id, self.signup_grant)
                    .await
                    .map_err(|e| OAuthError::Internal(e.into()))?;
                (id, true)
            }
        };
        identities::link(&mut tx, &new_id(), &user_id, facts, now).await?;
        tx.commit().await?;
        if let Some(id) = claimed {
            // Before the new session: its token is issued after the cutoff.
            self.cutoffs.end_sessions(&id).await;
        }
        let user = user_store::find_by_id(&self.db, &user_id)
            .await?
            .ok_or_else(|| OAuthError::Internal(anyhow::anyhow!("user vanished after linking")))?;
        let tokens = self.open_session(&user.id).await?;
        Ok(SignedIn {
            user,
            tokens,
            created,
        })
    }
}
