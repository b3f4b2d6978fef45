//! Subscriptions: checkout, plan changes, cancel and resume through the
//! adapter, and the one place a provider's subscription state becomes the
//! user's tier and monthly credits (`merge`, in `apply`), shared by
//! webhooks and the API's own calls.

use std::sync::Arc;

mod apply;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::adapter::{Adapter, AdapterError, Adapters};
use super::event::Subscription;
use super::ledger::LedgerError;
use super::plans::{Catalogue, Plan};
use crate::hourly::HourlyAllowance;
use crate::plugins::PluginError;
use crate::plugins::runtime::{
    BillingAnswer, BillingCall, ChangeTiming, Checkout, CheckoutRequest, PlanChange, WebhookError,
};
use crate::store::billing::{self as q, SubscriptionRow, UpgradeRow};
use crate::store::{Db, StoreError};
use apply::{apply_to_billing, set_pending_plan};

pub const CYCLES: [&str; 2] = ["monthly", "yearly"];

/// What the user is told after their subscription changed.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SubscriptionUpdated {
    pub plan: String,
    pub status: String,
    pub billing_cycle: String,
    pub current_period_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
    pub pending_plan: Option<String>,
    /// The tier the account has now.
    pub tier: String,
}

impl SubscriptionUpdated {
    pub fn of(row: &SubscriptionRow, tier: String) -> Self {
        SubscriptionUpdated {
            plan: row.plan.clone(),
            status: row.status.clone(),
            billing_cycle: row.billing_cycle.clone(),
            current_period_end: row.current_period_end,
            cancel_at_period_end: row.cancel_at_period_end,
            pending_plan: row.pending_plan.clone(),
            tier,
        }
    }
}

/// A change a user should hear about.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    Credits {
        user_id: String,
    },
    Subscription {
        user_id: String,
        update: SubscriptionUpdated,
    },
}

/// Delivers notices (the queue's event bus); billing knows nothing of it.
pub trait Notify: Send + Sync {
    fn notify(&self, notice: Notice);
}

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("billing is not configured")]
    NotConfigured,
    #[error("no paid subscription")]
    NoSubscription,
    #[error("already subscribed to {0}")]
    AlreadySubscribed(String),
    /// The last payment failed: nothing more is sold until it is collected.
    #[error("the subscription's last payment failed")]
    PastDue,
    #[error("too many checkouts; try again in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("the payment provider failed: {0}")]
    Provider(PluginError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl From<WebhookError> for BillingError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Signature(e) | WebhookError::Adapter(e) => BillingError::Provider(e),
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> BillingError {
    BillingError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Why a provider state could not be applied (kept with the event).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    Unusable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// Does this status keep the plan's tier at `now`?
pub fn grants_tier(status: &str, period_end: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    match status {
        "active" | "on_trial" | "past_due" => true,
        // Cancelled but paid to the period's end.
        "cancelled" => period_end.is_some_and(|end| end > now),
        _ => false,
    }
}

fn row_grants_tier(row: &SubscriptionRow, now: DateTime<Utc>) -> bool {
    grants_tier(&row.status, row.current_period_end, now)
        && !(row.cancel_at_period_end && row.current_period_end.is_some_and(|end| end <= now))
}

pub struct Upgraded {
    pub previous_plan: String,
    pub new_plan: String,
    /// The difference in monthly credits, granted once the provider is paid
    /// the change's prorated invoice.
    pub credits_pending: i64,
}

/// What folding a provider's state into a subscription did.
#[derive(Debug, Default)]
pub(super) struct Merged {
    pub notices: Vec<Notice>,
    /// An upgrade within the period, recorded to be paid.
    pub upgrade: Option<UpgradeRow>,
}

/// The ledger's idempotency key of each reason a subscription grants
/// credits: one key per grant, so a replay never grants twice.
enum GrantKey<'a> {
    /// An invoice that starts a paid period: the month's credits.
    Invoice { provider: &'a str, invoice: &'a str },
    /// An upgrade's difference, once its invoice is paid.
    Upgrade { id: &'a str },
    /// A month of a yearly period (the first comes with the invoice).
    YearlyMonth {
        provider: &'a str,
        subscription: &'a str,
        period_start: DateTime<Utc>,
        month: u32,
    },
}

impl std::fmt::Display for GrantKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GrantKey::Invoice { provider, invoice } => write!(f, "invoice:{provider}:{invoice}"),
            GrantKey::Upgrade { id } => write!(f, "upgrade:{id}"),
            GrantKey::YearlyMonth {
                provider,
                subscription,
                period_start,
                month,
            } => write!(
                f,
                "month:{provider}:{subscription}:{}:{month}",
                period_start.to_rfc3339()
            ),
        }
    }
}

pub struct Billing {
    db: Db,
    plans: Catalogue,
    pub adapters: Adapters,
    notify: Arc<dyn Notify>,
    /// Checkouts per user and hour: each is a call to the provider.
    checkouts: HourlyAllowance,
    /// Stored webhooks are applied by one task at a time.
    pub(super) applying: tokio::sync::Mutex<()>,
}

impl Billing {
    pub fn new(
        db: Db,
        plans: Catalogue,
        adapters: Adapters,
        notify: Arc<dyn Notify>,
        checkouts: HourlyAllowance,
    ) -> Self {
        Self {
            checkouts,
            db,
            plans,
            adapters,
            notify,
            applying: tokio::sync::Mutex::new(()),
        }
    }

    pub fn plans(&self) -> &Catalogue {
        &self.plans
    }

    pub(super) fn db(&self) -> &Db {
        &self.db
    }

    pub(super) fn tell(&self, notices: Vec<Notice>) {
        for n in notices {
            self.notify.notify(n);
        }
    }

    /// The adapter, or `NotConfigured`.
    fn adapter(&self) -> Result<Arc<Adapter>, BillingError> {
        self.adapters.current().ok_or(BillingError::NotConfigured)
    }

    /// The user's subscription that has not ended, if any.
    pub async fn current(&self, user_id: &str) -> Result<Option<SubscriptionRow>, BillingError> {
        Ok(q::current_subscription(&self.db, user_id).await?)
    }

    /// A plan that can be bought for `cycle`.
    fn sellable(
        &self,
        field: &'static str,
        name: &str,
        cycle: &str,
    ) -> Result<&Plan, BillingError> {
        let plan = self
            .plans
            .get(name)
            .ok_or_else(|| invalid(field, format!("unknown plan `{name}`")))?;
        let price = match cycle {
            "yearly" => plan.yearly_price,
            _ => plan.monthly_price,
        };
        match price {
            Some(p) if p > 0.0 => Ok(plan),
            Some(_) => Err(invalid(field, "the free plan is not sold")),
            None => Err(invalid(field, "sold by contract: contact sales")),
        }
    }

    fn cycle(cycle: &str) -> Result<(), BillingError> {
        if CYCLES.contains(&cycle) {
            Ok(())
        } else {
            Err(invalid("billing_cycle", "monthly or yearly"))
        }
    }

    /// A checkout for `plan`, paid by the `cycle`.
    pub async fn checkout(
        &self,
        user_id: &str,
        email: &str,
        plan: &str,
        cycle: &str,
    ) -> Result<Checkout, BillingError> {
        Self::cycle(cycle)?;
        self.sellable("plan", plan, cycle)?;
        let adapter = self.adapter()?;
        if let Some(sub) = self.current(user_id).await?
            && row_grants_tier(&sub, Utc::now())
        {
            return Err(BillingError::AlreadySubscribed(sub.plan));
        }
        self.checkouts
            .take(user_id)
            .await
            .map_err(|retry_after_secs| BillingError::RateLimited { retry_after_secs })?;
        let req = CheckoutRequest {
            user_id: user_id.to_owned(),
            email: email.to_owned(),
            plan: plan.to_owned(),
            billing_cycle: cycle.to_owned(),
        };
        match self
            .adapters
            .call(&adapter, BillingCall::Checkout(req))
            .await?
        {
            BillingAnswer::Checkout(c) => Ok(c),
            other => Err(unexpected(&adapter, &other)),
        }
    }

    /// The user's paid subscription with its plan, for a change.
    async fn paid(&self, user_id: &str) -> Result<(SubscriptionRow, &Plan), BillingError> {
        let sub = self
            .current(user_id)
            .await?
            .filter(|s| row_grants_tier(s, Utc::now()))
            .ok_or(BillingError::NoSubscription)?;
        let plan = self.plans.tier(&sub.plan);
        Ok((sub, plan))
    }

    /// Calls the adapter for `sub` and returns the provider's new state.
    async fn change(
        &self,
        sub: &SubscriptionRow,
        call: BillingCall,
    ) -> Result<Subscription, BillingError> {
        let adapter = self.adapter()?;
        if adapter.provider != sub.provider {
            return Err(BillingError::Provider(PluginError::Failed {
                plugin: adapter.name.clone(),
                message: format!("the subscription is billed by {}", sub.provider),
            }));
        }
        match self.adapters.call(&adapter, call).await? {
            BillingAnswer::State(s) => Subscription::try_from(s).map_err(|reason| {
                BillingError::Provider(PluginError::BadOutput {
                    plugin: adapter.name.clone(),
                    reason,
                })
            }),
            other => Err(unexpected(&adapter, &other)),
        }
    }

    /// Moves to a higher plan at once. The difference in monthly credits
    /// is granted when the provider is paid the change's prorated invoice
    /// (see `settle_upgrade`), never before; a subscription whose last
    /// payment failed is not upgraded.
    pub async fn upgrade(&self, user_id: &str, target: &str) -> Result<Upgraded, BillingError> {
        if self.plans.get(target).is_none() {
            return Err(invalid("target_plan", format!("unknown plan `{target}`")));
        }
        let (sub, current) = self.paid(user_id).await?;
        let plan = self.sellable("target_plan", target, &sub.billing_cycle)?;
        if plan.rank <= current.rank {
            return Err(invalid(
                "target_plan",
                format!("not higher than the current plan `{}`", current.name),
            ));
        }
        if sub.status == "past_due" {
            return Err(BillingError::PastDue);
        }
        let mut state = self
            .change(
                &sub,
                BillingCall::ChangePlan(PlanChange {
                    subscription_id: sub.provider_subscription_id.clone(),
                    plan: target.to_owned(),
                    billing_cycle: sub.billing_cycle.clone(),
                    effective: ChangeTiming::Immediately,
                }),
            )
            .await?;
        state.plan = Some(target.to_owned());
        let mut tx = self.db.begin().await?;
        // An upgrade replaces a downgrade that was waiting.
        set_pending_plan(&mut tx, &sub, None).await?;
        let merged = self
            .merge(&mut tx, &sub.provider, Some(user_id), &state, Utc::now())
            .await
            .map_err(apply_to_billing)?;
        tx.commit().await?;
        self.tell(merged.notices);
        Ok(Upgraded {
            previous_plan: current.name.clone(),
            new_plan: target.to_owned(),
            credits_pending: merged.upgrade.map_or(0, |u| u.credits),
        })
    }

    /// Moves to a lower plan when the paid period ends.
    pub async fn downgrade(
        &self,
        user_id: &str,
        target: &str,
    ) -> Result<SubscriptionRow, BillingError> {
        if self.plans.get(target).is_none() {
            return Err(invalid("target_plan", format!("unknown plan `{target}`")));
        }
        let (sub, current) = self.paid(user_id).await?;
        let plan = self.sellable("target_plan", target, &sub.billing_cycle)?;
        if plan.rank >= current.rank {
            return Err(invalid(
                "target_plan",
                format!("not lower than the current plan `{}`", current.name),
            ));
        }
        let state = self
            .change(
                &sub,
                BillingCall::ChangePlan(PlanChange {
                    subscription_id: sub.provider_subscription_id.clone(),
                    plan: target.to_owned(),
                    billing_cycle: sub.billing_cycle.clone(),
                    effective: ChangeTiming::AtPeriodEnd,
                }),
            )
            .await?;
        self.apply_state(&sub, &state, Some(target)).await
    }

    /// Cancels at the end of the paid period.
    pub async fn cancel(&self, user_id: &str) -> Result<SubscriptionRow, BillingError> {
        let (sub, _) = self.paid(user_id).await?;
        let state = self
            .change(
                &sub,
                BillingCall::Cancel {
                    subscription_id: sub.provider_subscription_id.clone(),
                    at_period_end: true,
                },
            )
            .await?;
        self.apply_state(&sub, &state, None).await
    }

    /// Undoes a pending cancel.
    pub async fn resume(&self, user_id: &str) -> Result<SubscriptionRow, BillingError> {
        let (sub, _) = self.paid(user_id).await?;
        if !sub.cancel_at_period_end && sub.status != "cancelled" {
            return Err(invalid("subscription", "not cancelled"));
        }
        let state = self
            .change(
                &sub,
                BillingCall::Resume(sub.provider_subscription_id.clone()),
            )
            .await?;
        self.apply_state(&sub, &state, None).await
    }
}

fn unexpected(adapter: &Adapter, answer: &BillingAnswer) -> BillingError {
    BillingError::Provider(PluginError::BadOutput {
        plugin: adapter.name.clone(),
        reason: format!("unexpected answer {answer:?}"),
    })
}

impl From<AdapterError> for BillingError {
    fn from(e: AdapterError) -> Self {
        match e {
            AdapterError::Plugin(p) => BillingError::Provider(p),
            other => BillingError::Provider(PluginError::Host {
                plugin: "billing".into(),
                reason: other.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn statuses_that_keep_the_tier() {
        let now = at("2025-11-15T00:00:00Z");
        let later = Some(at("2025-12-01T00:00:00Z"));
        let earlier = Some(at("2025-11-01T00:00:00Z"));
        for s in ["active", "on_trial", "past_due"] {
            assert!(grants_tier(s, None, now), "{s}");
        }
        for s in ["unpaid", "expired", "paused"] {
            assert!(!grants_tier(s, later, now), "{s}");
        }
        assert!(grants_tier("cancelled", later, now));
        assert!(!grants_tier("cancelled", earlier, now));
        assert!(!grants_tier("cancelled", None, now));
    }

    #[test]
    fn grant_keys_keep_their_text() {
        // Keys of grants already in ledgers: a replay after an upgrade of
        // the host must find them.
        let invoice = GrantKey::Invoice {
            provider: "stripe",
            invoice: "in_1",
        };
        assert_eq!(invoice.to_string(), "invoice:stripe:in_1");
        let month = GrantKey::YearlyMonth {
            provider: "lemon-squeezy",
            subscription: "1001",
            period_start: at("2025-11-01T00:00:00Z"),
            month: 3,
        };
        assert_eq!(
            month.to_string(),
            "month:lemon-squeezy:1001:2025-11-01T00:00:00+00:00:3"
        );
        assert_eq!(GrantKey::Upgrade { id: "u1" }.to_string(), "upgrade:u1");
    }
}
