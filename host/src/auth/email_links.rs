//! The single-use links the host mails: one that verifies an address
//! (24 hours) and one that sets a new password (1 hour). The token is in
//! the link; only its SHA-256 is stored, with the address it went to.

use std::sync::Arc;

use chrono::{Duration, Utc};

use super::tokens::{hash_opaque_token, new_opaque_token};
use crate::i18n::Lang;
use crate::mail::{Mailer, templates};
use crate::store::email_tokens::{self, Purpose};
use crate::store::users::{self as user_store, UserRow};
use crate::store::{Db, StoreResult};

pub const VERIFY_TTL: Duration = Duration::hours(24);
pub const RESET_TTL: Duration = Duration::hours(1);
/// A user is sent at most one mail of a kind in this long.
pub const RESEND_INTERVAL: Duration = Duration::seconds(60);

#[derive(Clone)]
pub struct MailLinks {
    db: Db,
    mailer: Arc<Mailer>,
    /// Where the links point: the front end's base URL.
    frontend: String,
}

impl MailLinks {
    pub fn new(db: Db, mailer: Arc<Mailer>, frontend: &str) -> Self {
        Self {
            db,
            mailer,
            frontend: frontend.trim_end_matches('/').to_owned(),
        }
    }

    fn ttl(purpose: Purpose) -> Duration {
        match purpose {
            Purpose::VerifyEmail => VERIFY_TTL,
            Purpose::ResetPassword => RESET_TTL,
        }
    }

    /// Stores a new token for `user` and returns the link that carries it.
    async fn issue(&self, user: &UserRow, purpose: Purpose) -> StoreResult<String> {
        let token = new_opaque_token();
        let now = Utc::now();
        let mut tx = self.db.begin().await?;
        email_tokens::insert(
            &mut tx,
            &hash_opaque_token(&token),
            &user.id,
            purpose,
            &user.email,
            now,
            now + Self::ttl(purpose),
        )
        .await?;
        tx.commit().await?;
        let page = match purpose {
            Purpose::VerifyEmail => "verify-email",
            Purpose::ResetPassword => "reset-password",
        };
        Ok(format!("{}/{page}?token={token}", self.frontend))
    }

    /// How long until `user` may be sent another mail for `purpose`.
    pub async fn wait_before_sending(
        &self,
        user_id: &str,
        purpose: Purpose,
    ) -> StoreResult<Option<u64>> {
        let Some(last) = email_tokens::last_sent(&self.db, user_id, purpose).await? else {
            return Ok(None);
        };
        let left = (last + RESEND_INTERVAL - Utc::now()).num_seconds();
        Ok((left > 0).then_some(left as u64))
    }

    /// Mails `user` a link that verifies their address.
    pub async fn send_verification(&self, user: &UserRow, lang: Lang) -> StoreResult<()> {
        let link = self.issue(user, Purpose::VerifyEmail).await?;
        self.mailer
            .dispatch(templates::verify_email(
                lang,
                &user.email,
                &user.name,
                &link,
            ))
            .await;
        Ok(())
    }

    /// Mails the account of `email`, if there is one and it was not sent a
    /// reset link just now, a link that sets a new password. Runs apart
    /// from the request, so the answer (and its timing) says nothing about
    /// whether the account exists.
    pub fn send_reset_in_background(&self, email: String, lang: Lang) {
        let links = self.clone();
        tokio::spawn(async move {
            if let Err(e) = links.send_reset(&email, lang).await {
                tracing::error!(error = %e, "password reset mail not sent");
            }
        });
    }

    async fn send_reset(&self, email: &str, lang: Lang) -> StoreResult<()> {
        let Some(user) = user_store::find_by_email(&self.db, email).await? else {
            return Ok(());
        };
        if self
            .wait_before_sending(&user.id, Purpose::ResetPassword)
            .await?
            .is_some()
        {
            tracing::info!(user = %user.id, "password reset asked again within a minute: not sent");
            return Ok(());
        }
        let link = self.issue(&user, Purpose::ResetPassword).await?;
        self.mailer
            .deliver(&templates::password_reset(
                lang,
                &user.email,
                &user.name,
                &link,
            ))
            .await;
        Ok(())
    }
}
