//! The user's own profile: what `GET /users/me` shows and what
//! `PATCH /users/me` may change.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::clean_name;
use crate::billing::plans::Catalogue;
use crate::store::profiles;
use crate::store::users::{self as user_store, ProfileChange, ProfileRow, UserRow};
use crate::store::{Db, StoreError};

#[derive(Debug, Serialize, ToSchema)]
pub struct Features {
    pub sd_models: bool,
    pub flux_model: bool,
    pub nano_banana_api: bool,
    pub lora_training: bool,
    pub queue_count: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionSummary {
    pub plan: String,
    pub status: String,
    pub current_period_end: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Profile {
    pub id: String,
    pub email: String,
    pub name: String,
    pub avatar_url: Option<String>,
    pub email_verified: bool,
    pub role: String,
    pub tier: String,
    /// Ledger balance (reserved credits included).
    pub credits: i64,
    pub storage_used: u64,
    pub storage_quota: u64,
    /// The paid subscription, `null` while on the free tier.
    pub subscription: Option<SubscriptionSummary>,
    pub features: Features,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("no such user")]
    NotFound,
    #[error("invalid {field}: {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for ProfileError {
    fn from(e: StoreError) -> Self {
        ProfileError::Internal(e.into())
    }
}

/// Who is calling, with what authorisation decisions need (tier, role);
/// read once per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub id: String,
    pub tier: String,
    pub role: String,
    pub email_verified: bool,
}

/// The caller of `user_id` (from the cached profile); `None` when the
/// account no longer exists.
pub async fn caller(db: &Db, user_id: &str) -> Result<Option<Caller>, StoreError> {
    let row = profiles::read(db, user_id, &[profiles::Part::Account]).await?;
    Ok(row.map(|row| Caller {
        id: user_id.to_owned(),
        tier: row.user.tier.clone(),
        role: row.user.role.clone(),
        email_verified: row.user.email_verified,
    }))
}

/// `caller` read from the database now, for decisions that must see a
/// change made anywhere at once (an administrator's demotion).
pub async fn caller_now(db: &Db, user_id: &str) -> Result<Option<Caller>, StoreError> {
    Ok(user_store::find_access(db, user_id)
        .await?
        .map(|(tier, role, email_verified)| Caller {
            id: user_id.to_owned(),
            tier,
            role,
            email_verified,
        }))
}

pub const MAX_AVATAR_URL_LEN: usize = 2048;
/// An avatar URL: http(s), a plain host name or address, an optional port
/// and printable ASCII after it (the API document states the same).
pub const AVATAR_URL_PATTERN: &str = "^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[!-~]*)?$";

/// An avatar URL must be absolute http(s) and of reasonable length.
pub fn check_avatar_url(raw: &str) -> Result<String, &'static str> {
    static PATTERN: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(AVATAR_URL_PATTERN).expect("pattern"));
    if raw.len() > MAX_AVATAR_URL_LEN {
        return Err("too_long");
    }
    if !PATTERN.is_match(raw) {
        return Err("not_a_url");
    }
    // The pattern admits only http(s), a plain host and printable ASCII:
    // stored as sent (the url crate refuses some hosts the pattern allows,
    // such as a numeric last label).
    Ok(raw.to_owned())
}

/// The user's profile (cached while nothing it shows changes:
/// `store::profiles`).
pub async fn profile(db: &Db, plans: &Catalogue, user_id: &str) -> Result<Profile, ProfileError> {
    let row = profiles::profile(db, user_id)
        .await?
        .ok_or(ProfileError::NotFound)?;
    Ok(build(&row, plans))
}

/// The profile of a row, with the features of its tier's plan now.
fn build(row: &ProfileRow, plans: &Catalogue) -> Profile {
    let user = &row.user;
    let subscription = match (&row.sub_plan, &row.sub_status) {
        (Some(plan), Some(status)) => Some(SubscriptionSummary {
            plan: plan.clone(),
            status: status.clone(),
            current_period_end: row.sub_period_end,
        }),
        _ => None,
    };
    let plan = plans.tier(&user.tier);
    Profile {
        features: Features {
            sd_models: plan.features.sd_models,
            flux_model: plan.features.flux_model,
            nano_banana_api: plan.features.nano_banana_api,
            lora_training: plan.features.lora_training,
            queue_count: plan.queue_count,
        },
        storage_quota: plan.storage_quota_bytes(),
        storage_used: u64::try_from(row.storage_used).unwrap_or(0),
        subscription,
        id: user.id.clone(),
        email: user.email.clone(),
        name: user.name.clone(),
        avatar_url: user.avatar_url.clone(),
        email_verified: user.email_verified,
        role: user.role.clone(),
        tier: plan.name.clone(),
        credits: row.balance,
        created_at: user.created_at,
    }
}

/// Validates and applies a profile change; returns the updated user.
pub async fn update(
    db: &Db,
    user_id: &str,
    name: Option<&str>,
    avatar_url: Option<Option<&str>>,
) -> Result<UserRow, ProfileError> {
    let name = match name {
        Some(n) => Some(clean_name(n).ok_or(ProfileError::Invalid {
            field: "name",
            reason: "length_1_to_100",
        })?),
        None => None,
    };
    let avatar_url = match avatar_url {
        Some(Some(u)) => Some(Some(check_avatar_url(u).map_err(|reason| {
            ProfileError::Invalid {
                field: "avatar_url",
                reason,
            }
        })?)),
        Some(None) => Some(None),
        None => None,
    };
    let change = ProfileChange { name, avatar_url };
    user_store::update_profile(&db.write().await, user_id, &change, Utc::now())
        .await?
        .ok_or(ProfileError::NotFound)
}
