//! Operator actions on accounts, shared by the CLI (`pingvas admin …`) and,
//! later, admin endpoints.

use chrono::Utc;

use crate::auth::email;
use crate::billing::ledger::{Ledger, Posted, TxKind};
use crate::billing::plans::Catalogue;
use crate::store::Db;
use crate::store::users::{self as user_store, OperatorColumn, UserRow};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no account with email {0}")]
    NoSuchUser(String),
    #[error("unknown tier `{0}` (the plan catalogue has: {1})")]
    UnknownTier(String, String),
    #[error("role must be `admin` or `user`")]
    BadRole,
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

async fn user_by_email(db: &Db, raw: &str) -> Result<UserRow, AdminError> {
    let normalised = email::normalise(raw).ok_or_else(|| AdminError::NoSuchUser(raw.to_owned()))?;
    user_store::find_by_email(db, &normalised)
        .await
        .map_err(anyhow::Error::from)?
        .ok_or(AdminError::NoSuchUser(normalised))
}

/// Adds (or, negative, removes) credits as an `admin_adjustment`.
pub async fn grant_credits(
    db: &Db,
    email: &str,
    amount: i64,
    reason: Option<&str>,
) -> Result<Posted, AdminError> {
    let user = user_by_email(db, email).await?;
    let description = reason.unwrap_or("운영자 조정");
    Ledger::new(db.clone())
        .credit(&user.id, amount, TxKind::AdminAdjustment, description, None)
        .await
        .map_err(|e| AdminError::Other(e.into()))
}

pub async fn set_tier(
    db: &Db,
    plans: &Catalogue,
    email: &str,
    tier: &str,
) -> Result<String, AdminError> {
    if plans.get(tier).is_none() {
        let names: Vec<_> = plans.all().iter().map(|p| p.name.clone()).collect();
        return Err(AdminError::UnknownTier(tier.to_owned(), names.join(", ")));
    }
    let user = user_by_email(db, email).await?;
    user_store::set_operator_column(
        &db.write().await,
        &user.id,
        OperatorColumn::Tier,
        tier,
        Utc::now(),
    )
    .await
    .map_err(anyhow::Error::from)?;
    Ok(user.id)
}

pub async fn set_role(db: &Db, email: &str, role: &str) -> Result<(), AdminError> {
    if !matches!(role, "admin" | "user") {
        return Err(AdminError::BadRole);
    }
    let user = user_by_email(db, email).await?;
    user_store::set_operator_column(
        &db.write().await,
        &user.id,
        OperatorColumn::Role,
        role,
        Utc::now(),
    )
    .await
    .map_err(anyhow::Error::from)?;
    Ok(())
}
