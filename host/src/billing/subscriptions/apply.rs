//! Applying what a payment provider says of a subscription: its state
//! merged into the row (the one place subscription state changes), the
//! owner's tier settled, upgrades recorded and settled, paid invoices
//! granted once, and the periodic upkeep of lapsed periods.

use chrono::{DateTime, Months, Utc};

use super::{
    ApplyError, Billing, BillingError, GrantKey, Merged, Notice, SubscriptionUpdated,
    row_grants_tier,
};
use crate::billing::event::{Reason, Subscription};
use crate::billing::ledger::{self, LedgerError, TxKind};
use crate::billing::plans::DEFAULT_TIER;
use crate::plugins::PluginError;
use crate::store::billing::{self as q, SubscriptionRow, UpgradeRow, UpgradeStatus};
use crate::store::users::{self as user_store, OperatorColumn};
use crate::store::{StoreError, Tx, new_id};

impl Billing {
    /// Saves the provider's answer to a change of `sub` (and a pending
    /// plan) and returns the row as it is now.
    pub(super) async fn apply_state(
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
    pub(in crate::billing) async fn merge(
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
    pub(super) async fn record_upgrade(
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
    pub(in crate::billing) async fn settle_tier(
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
    pub(in crate::billing) async fn grant_paid_invoice(
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
    pub(super) async fn settle_upgrade(
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
pub(super) async fn set_pending_plan(
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
pub(super) async fn grant_once(
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

pub(super) fn apply_to_billing(e: ApplyError) -> BillingError {
    match e {
        ApplyError::Store(e) => BillingError::Store(e),
        ApplyError::Ledger(e) => BillingError::Ledger(e),
        ApplyError::Unusable(reason) => BillingError::Provider(PluginError::BadOutput {
            plugin: "billing".into(),
            reason,
        }),
    }
}
