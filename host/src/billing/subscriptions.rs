//! Subscriptions: checkout, plan changes, cancel and resume through the
//! adapter, and the one place a provider's subscription state becomes the
//! user's tier and monthly credits (`merge`), shared by webhooks and the
//! API's own calls.

use std::sync::Arc;

use chrono::{DateTime, Months, Utc};
use serde::Serialize;

use super::adapter::{Adapter, AdapterError, Adapters};
use super::event::{Reason, Subscription};
use super::ledger::{self, LedgerError, TxKind};
use super::plans::{Catalogue, DEFAULT_TIER, Plan};
use crate::hourly::HourlyAllowance;
use crate::plugins::PluginError;
use crate::plugins::runtime::{
    BillingAnswer, BillingCall, ChangeTiming, Checkout, CheckoutRequest, PlanChange, WebhookError,
};
use crate::store::billing::{self as q, SubscriptionRow, UpgradeRow, UpgradeStatus};
use crate::store::users::{self as user_store, OperatorColumn};
use crate::store::{Db, StoreError, Tx, new_id};

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
        checkouts_per_hour: u32,
    ) -> Self {
        Self {
            checkouts: HourlyAllowance::new(checkouts_per_hour),
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

    /// Saves the provider's answer to a change of `sub` (and a pending
    /// plan) and returns the row as it is now.
    async fn apply_state(
        &self,
        sub: &SubscriptionRow,
        state: &Subscription,
        pending: Option<&str>,
    ) -> Result<SubscriptionRow, BillingError> {
        let mut tx = self.db.begin().await?;
        if pending.is_some() {
            // Set before merging: the lower plan takes over when the
            // provider starts a new period, even if it reports it already.
            set_pending_plan(&mut tx, sub, pending).await?;
        }
        let mut notices = self
            .merge(
                &mut tx,
                &sub.provider,
                Some(&sub.user_id),
                state,
                Utc::now(),
            )
            .await
            .map_err(apply_to_billing)?
            .notices;
        let row = q::find_subscription_in(&mut tx, &sub.provider, &sub.provider_subscription_id)
            .await?
            .unwrap_or_else(|| sub.clone());
        let tier = user_store::find_access_in(&mut tx, &sub.user_id)
            .await?
            .map_or_else(|| DEFAULT_TIER.to_owned(), |(t, _)| t);
        tx.commit().await?;
        notices.retain(|n| matches!(n, Notice::Credits { .. }));
        notices.push(Notice::Subscription {
            user_id: row.user_id.clone(),
            update: SubscriptionUpdated::of(&row, tier),
        });
        self.tell(notices);
        Ok(row)
    }

    /// Folds a provider's state of a subscription into the row, unless the
    /// row already holds a newer one, and sets the owner's tier. The one
    /// place subscription state changes: a higher plan within the period
    /// (through the API or at the provider) is recorded as an upgrade whose
    /// invoice is to be paid, and a new period lapses the unpaid ones.
    pub(super) async fn merge(
        &self,
        tx: &mut Tx,
        provider: &str,
        user_hint: Option<&str>,
        state: &Subscription,
        now: DateTime<Utc>,
    ) -> Result<Merged, ApplyError> {
        let existing = q::find_subscription_in(tx, provider, &state.id).await?;
        if let Some(row) = &existing
            && state.updated_at < row.provider_updated_at
        {
            tracing::info!(provider, subscription = %state.id, "older subscription state ignored");
            return Ok(Merged::default());
        }
        let user_id = match (&existing, user_hint) {
            (Some(row), _) => row.user_id.clone(),
            (None, Some(u)) => u.to_owned(),
            (None, None) => {
                return Err(ApplyError::Unusable(format!(
                    "subscription {} names no user",
                    state.id
                )));
            }
        };
        // A stored subscription's user exists (the row goes with them).
        if existing.is_none() && user_store::find_access_in(tx, &user_id).await?.is_none() {
            return Err(ApplyError::Unusable(format!("no user {user_id}")));
        }
        let provider_plan = state
            .plan
            .clone()
            .or_else(|| existing.as_ref().map(|r| r.plan.clone()))
            .ok_or_else(|| ApplyError::Unusable(format!("subscription {}: no plan", state.id)))?;
        if self.plans.get(&provider_plan).is_none() {
            return Err(ApplyError::Unusable(format!(
                "subscription {}: unknown plan `{provider_plan}`",
                state.id
            )));
        }
        let mut row = existing.clone().unwrap_or_else(|| SubscriptionRow {
            id: new_id(),
            user_id: user_id.clone(),
            provider: provider.to_owned(),
            provider_subscription_id: state.id.clone(),
            customer_id: None,
            plan: provider_plan.clone(),
            billing_cycle: "monthly".into(),
            status: state.status.clone(),
            current_period_start: None,
            current_period_end: None,
            cancel_at_period_end: false,
            pending_plan: None,
            card_brand: None,
            card_last_four: None,
            provider_updated_at: state.updated_at,
            created_at: now,
            updated_at: now,
        });
        let new_period =
            state.period_start.is_some() && state.period_start != row.current_period_start;
        // A downgrade waits for the next period; the provider may already
        // report the lower plan.
        match &row.pending_plan {
            Some(p) if *p == provider_plan && !new_period && existing.is_some() => {}
            Some(p) if *p == provider_plan => {
                row.plan = provider_plan;
                row.pending_plan = None;
            }
            _ => row.plan = provider_plan,
        }
        if let Some(c) = &state.billing_cycle {
            row.billing_cycle = c.clone();
        }
        row.customer_id = state.customer_id.clone().or(row.customer_id);
        row.status = state.status.clone();
        row.current_period_start = state.period_start.or(row.current_period_start);
        row.current_period_end = state.period_end.or(row.current_period_end);
        row.cancel_at_period_end = state.cancel_at_period_end;
        row.card_brand = state.card_brand.clone().or(row.card_brand);
        row.card_last_four = state.card_last_four.clone().or(row.card_last_four);
        row.provider_updated_at = state.updated_at;
        row.updated_at = now;
        if existing.as_ref() == Some(&row) {
            return Ok(Merged::default());
        }
        q::save_subscription_in(tx, &row).await?;
        let mut upgrade = None;
        if let Some(before) = &existing {
            if new_period {
                q::lapse_upgrades_in(tx, &row.id, now).await?;
            } else if self.plans.tier(&row.plan).rank > self.plans.tier(&before.plan).rank {
                upgrade = Some(self.record_upgrade(tx, before, &row, now).await?);
            }
        }
        let tier = self.settle_tier(tx, &user_id, now).await?;
        Ok(Merged {
            notices: vec![Notice::Subscription {
                user_id,
                update: SubscriptionUpdated::of(&row, tier),
            }],
            upgrade,
        })
    }

    /// Records `before` → `after` (a higher plan, the same period) as an
    /// upgrade awaiting its invoice. It is to grant the higher plan's
    /// monthly credits less what the period already has or may still get:
    /// the plan it had, or a higher one an earlier upgrade of the period
    /// reached (a downgrade and a return within one period grant nothing
    /// more).
    async fn record_upgrade(
        &self,
        tx: &mut Tx,
        before: &SubscriptionRow,
        after: &SubscriptionRow,
        now: DateTime<Utc>,
    ) -> Result<UpgradeRow, ApplyError> {
        let period = after.current_period_start;
        let reached = q::upgrades_in(tx, &after.id)
            .await?
            .into_iter()
            .filter(|u| u.counts() && u.period_start == period)
            .map(|u| self.plans.tier(&u.to_plan).credits)
            .max()
            .unwrap_or(0);
        let had = self.plans.tier(&before.plan).credits.max(reached);
        let upgrade = UpgradeRow {
            id: new_id(),
            subscription_id: after.id.clone(),
            from_plan: before.plan.clone(),
            to_plan: after.plan.clone(),
            period_start: period,
            credits: (self.plans.tier(&after.plan).credits - had).max(0),
            status: UpgradeStatus::AwaitingPayment.as_str().to_owned(),
            invoice_id: None,
            created_at: now,
            settled_at: None,
        };
        q::insert_upgrade_in(tx, &upgrade).await?;
        tracing::info!(
            subscription = %after.provider_subscription_id,
            from = %upgrade.from_plan,
            to = %upgrade.to_plan,
            credits = upgrade.credits,
            "upgrade recorded: its credits wait for the paid invoice"
        );
        Ok(upgrade)
    }

    /// Sets the user's tier to the best plan their subscriptions grant at
    /// `now` (free when none does); returns it.
    pub(super) async fn settle_tier(
        &self,
        tx: &mut Tx,
        user_id: &str,
        now: DateTime<Utc>,
    ) -> Result<String, ApplyError> {
        let subs = q::user_subscriptions_in(tx, user_id).await?;
        let tier = subs
            .iter()
            .filter(|s| row_grants_tier(s, now))
            .filter_map(|s| self.plans.get(&s.plan))
            .max_by_key(|p| p.rank)
            .map_or(DEFAULT_TIER, |p| p.name.as_str())
            .to_owned();
        user_store::set_operator_column_in(tx, user_id, OperatorColumn::Tier, &tier, now).await?;
        Ok(tier)
    }

    /// What a paid invoice of `row` grants, by why it was raised: a
    /// period's start, the month's credits (plan of the row) once per
    /// invoice; a plan change, the difference of the upgrade it pays;
    /// anything else, nothing.
    pub(super) async fn grant_paid_invoice(
        &self,
        tx: &mut Tx,
        row: &SubscriptionRow,
        invoice_id: &str,
        reason: Reason,
    ) -> Result<Vec<Notice>, ApplyError> {
        match reason {
            Reason::PeriodStart => {
                let plan = self.plans.tier(&row.plan);
                if plan.credits == 0 {
                    return Ok(Vec::new());
                }
                let key = GrantKey::Invoice {
                    provider: &row.provider,
                    invoice: invoice_id,
                };
                let description = format!("{} plan: monthly credits", plan.display_name);
                Ok(grant_once(tx, &row.user_id, plan.credits, &key, &description).await?)
            }
            Reason::PlanChange => self.settle_upgrade(tx, row, invoice_id).await,
            Reason::Other => {
                tracing::info!(provider = %row.provider, invoice = invoice_id, "paid invoice neither starts a period nor changes the plan: no credits");
                Ok(Vec::new())
            }
        }
    }

    /// A paid plan-change invoice pays the subscription's oldest upgrade
    /// awaiting payment, whose difference is granted once (key per
    /// upgrade). An invoice that paid an upgrade already pays no other; one
    /// with no upgrade awaiting is not applied yet (its upgrade may still
    /// be on its way) and is retried, then left for an operator.
    async fn settle_upgrade(
        &self,
        tx: &mut Tx,
        row: &SubscriptionRow,
        invoice_id: &str,
    ) -> Result<Vec<Notice>, ApplyError> {
        let upgrades = q::upgrades_in(tx, &row.id).await?;
        if upgrades
            .iter()
            .any(|u| u.invoice_id.as_deref() == Some(invoice_id))
        {
            return Ok(Vec::new());
        }
        let Some(upgrade) = upgrades
            .into_iter()
            .find(|u| u.status == UpgradeStatus::AwaitingPayment.as_str())
        else {
            return Err(ApplyError::Unusable(format!(
                "invoice {invoice_id} pays a plan change, but no upgrade of subscription {} awaits payment",
                row.provider_subscription_id
            )));
        };
        if !q::settle_upgrade_in(tx, &upgrade.id, invoice_id, Utc::now()).await? {
            return Err(ApplyError::Unusable(format!(
                "upgrade {} was settled meanwhile",
                upgrade.id
            )));
        }
        if upgrade.credits == 0 {
            return Ok(Vec::new());
        }
        let plan = self.plans.tier(&upgrade.to_plan);
        let description = format!("{} upgrade: monthly credits difference", plan.display_name);
        let key = GrantKey::Upgrade { id: &upgrade.id };
        Ok(grant_once(tx, &row.user_id, upgrade.credits, &key, &description).await?)
    }

    /// Monthly credits of yearly subscriptions for the months of the paid
    /// period that have begun (the first month comes with the invoice), and
    /// tiers of subscriptions whose paid period ran out. Run periodically.
    pub async fn maintain(&self, now: DateTime<Utc>) -> Result<(), ApplyError> {
        for row in q::yearly_in_good_standing(&self.db).await? {
            let Some(start) = row.current_period_start else {
                continue;
            };
            let plan = self.plans.tier(&row.plan);
            if plan.credits == 0 {
                continue;
            }
            for month in 1..12u32 {
                let Some(begins) = start.checked_add_months(Months::new(month)) else {
                    break;
                };
                if begins > now || row.current_period_end.is_some_and(|end| begins >= end) {
                    break;
                }
                let key = GrantKey::YearlyMonth {
                    provider: &row.provider,
                    subscription: &row.provider_subscription_id,
                    period_start: start,
                    month,
                };
                let description = format!(
                    "{} plan (yearly): credits of month {}",
                    plan.display_name,
                    month + 1
                );
                let mut tx = self.db.begin().await?;
                let notices =
                    grant_once(&mut tx, &row.user_id, plan.credits, &key, &description).await?;
                tx.commit().await?;
                self.tell(notices);
            }
        }
        for row in q::lapsed(&self.db, now).await? {
            let mut tx = self.db.begin().await?;
            let before = user_store::find_access_in(&mut tx, &row.user_id)
                .await?
                .map(|(t, _)| t);
            let tier = self.settle_tier(&mut tx, &row.user_id, now).await?;
            tx.commit().await?;
            if before.as_deref() != Some(tier.as_str()) {
                self.tell(vec![Notice::Subscription {
                    user_id: row.user_id.clone(),
                    update: SubscriptionUpdated::of(&row, tier),
                }]);
            }
        }
        Ok(())
    }
}

/// Records the plan a subscription moves to when its next period starts
/// (`None`: no change waits).
async fn set_pending_plan(
    tx: &mut Tx,
    sub: &SubscriptionRow,
    pending: Option<&str>,
) -> Result<(), StoreError> {
    if let Some(mut row) =
        q::find_subscription_in(tx, &sub.provider, &sub.provider_subscription_id).await?
        && row.pending_plan.as_deref() != pending
    {
        row.pending_plan = pending.map(str::to_owned);
        q::save_subscription_in(tx, &row).await?;
    }
    Ok(())
}

/// Grants subscription credits once under `key`; a notice unless they were
/// granted before.
async fn grant_once(
    tx: &mut Tx,
    user_id: &str,
    amount: i64,
    key: &GrantKey<'_>,
    description: &str,
) -> Result<Vec<Notice>, LedgerError> {
    let posted = ledger::credit_in(
        tx,
        user_id,
        amount,
        TxKind::SubscriptionGrant,
        description,
        Some(&key.to_string()),
    )
    .await?;
    Ok(if posted.replayed {
        Vec::new()
    } else {
        vec![Notice::Credits {
            user_id: user_id.to_owned(),
        }]
    })
}

fn apply_to_billing(e: ApplyError) -> BillingError {
    match e {
        ApplyError::Store(e) => BillingError::Store(e),
        ApplyError::Ledger(e) => BillingError::Ledger(e),
        ApplyError::Unusable(reason) => BillingError::Provider(PluginError::BadOutput {
            plugin: "billing".into(),
            reason,
        }),
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
