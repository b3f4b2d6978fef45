//! The `subscriptions`, `subscription_upgrades` and `billing_events` tables.

use chrono::{DateTime, Utc};

use super::profiles::Part;
use super::{Db, Page, StoreResult, Tx, Writer};
use crate::{exec, exec_one, on_db, on_tx, on_write};

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SubscriptionRow {
    pub id: String,
    pub user_id: String,
    pub provider: String,
    pub provider_subscription_id: String,
    pub customer_id: Option<String>,
    pub plan: String,
    pub billing_cycle: String,
    pub status: String,
    pub current_period_start: Option<DateTime<Utc>>,
    pub current_period_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
    pub pending_plan: Option<String>,
    pub card_brand: Option<String>,
    pub card_last_four: Option<String>,
    pub provider_updated_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const SUB_COLUMNS: &str = "id, user_id, provider, provider_subscription_id, customer_id, plan, \
     billing_cycle, status, current_period_start, current_period_end, cancel_at_period_end, \
     pending_plan, card_brand, card_last_four, provider_updated_at, created_at, updated_at";

/// Statuses whose subscription is gone for good.
pub(super) const ENDED: &str = "('expired')";

/// The provider's subscription, locked for the transaction (PostgreSQL;
/// SQLite's write transaction holds the whole database).
pub async fn find_subscription_in(
    tx: &mut Tx,
    provider: &str,
    provider_subscription_id: &str,
) -> StoreResult<Option<SubscriptionRow>> {
    let lock = tx.row_lock();
    let sql = format!(
        "SELECT {SUB_COLUMNS} FROM subscriptions WHERE provider = $1 AND provider_subscription_id = $2{lock}"
    );
    Ok(on_tx!(tx, c => sqlx::query_as(&sql)
        .bind(provider)
        .bind(provider_subscription_id)
        .fetch_optional(c)
        .await)?)
}

/// Writes the whole row (inserting it when new).
pub async fn save_subscription_in(tx: &mut Tx, s: &SubscriptionRow) -> StoreResult<()> {
    tx.profile_changed(Part::Account, &s.user_id);
    on_tx!(tx, c => exec!(c, sqlx::query(
        "INSERT INTO subscriptions (id, user_id, provider, provider_subscription_id, customer_id, \
         plan, billing_cycle, status, current_period_start, current_period_end, \
         cancel_at_period_end, pending_plan, card_brand, card_last_four, provider_updated_at, \
         created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
         ON CONFLICT (id) DO UPDATE SET customer_id = $5, plan = $6, billing_cycle = $7, \
         status = $8, current_period_start = $9, current_period_end = $10, \
         cancel_at_period_end = $11, pending_plan = $12, card_brand = $13, \
         card_last_four = $14, provider_updated_at = $15, updated_at = $17",
    )
    .bind(&s.id)
    .bind(&s.user_id)
    .bind(&s.provider)
    .bind(&s.provider_subscription_id)
    .bind(&s.customer_id)
    .bind(&s.plan)
    .bind(&s.billing_cycle)
    .bind(&s.status)
    .bind(s.current_period_start)
    .bind(s.current_period_end)
    .bind(s.cancel_at_period_end)
    .bind(&s.pending_plan)
    .bind(&s.card_brand)
    .bind(&s.card_last_four)
    .bind(s.provider_updated_at)
    .bind(s.created_at)
    .bind(s.updated_at)))?;
    Ok(())
}

/// The user's newest subscription that has not ended.
pub async fn current_subscription(db: &Db, user_id: &str) -> StoreResult<Option<SubscriptionRow>> {
    let sql = format!(
        "SELECT {SUB_COLUMNS} FROM subscriptions WHERE user_id = $1 AND status NOT IN {ENDED} \
         ORDER BY updated_at DESC, id DESC LIMIT 1"
    );
    Ok(on_db!(db, p => sqlx::query_as(&sql).bind(user_id).fetch_optional(p).await)?)
}

/// All of a user's subscriptions (inside a transaction that changes one).
pub async fn user_subscriptions_in(
    tx: &mut Tx,
    user_id: &str,
) -> StoreResult<Vec<SubscriptionRow>> {
    let sql = format!("SELECT {SUB_COLUMNS} FROM subscriptions WHERE user_id = $1");
    Ok(on_tx!(tx, c => sqlx::query_as(&sql).bind(user_id).fetch_all(c).await)?)
}

/// Subscriptions paid by the year whose status still grants the plan.
pub async fn yearly_in_good_standing(db: &Db) -> StoreResult<Vec<SubscriptionRow>> {
    let sql = format!(
        "SELECT {SUB_COLUMNS} FROM subscriptions WHERE billing_cycle = 'yearly' \
         AND status IN ('active', 'on_trial', 'past_due', 'cancelled') \
         AND current_period_start IS NOT NULL"
    );
    Ok(on_db!(db, p => sqlx::query_as(&sql).fetch_all(p).await)?)
}

/// Subscriptions that still grant a plan though their paid period is over
/// (a cancelled one whose `expired` webhook never came).
pub async fn lapsed(db: &Db, now: DateTime<Utc>) -> StoreResult<Vec<SubscriptionRow>> {
    let sql = format!(
        "SELECT {SUB_COLUMNS} FROM subscriptions WHERE (status = 'cancelled' OR cancel_at_period_end) \
         AND status NOT IN {ENDED} AND current_period_end IS NOT NULL AND current_period_end < $1"
    );
    Ok(on_db!(db, p => sqlx::query_as(&sql).bind(now).fetch_all(p).await)?)
}

/// Where an upgrade's grant stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeStatus {
    /// Its prorated invoice is not paid yet.
    AwaitingPayment,
    /// Paid: its credits were granted.
    Granted,
    /// A new period started before it was paid: it grants nothing.
    Lapsed,
}

impl UpgradeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UpgradeStatus::AwaitingPayment => "awaiting_payment",
            UpgradeStatus::Granted => "granted",
            UpgradeStatus::Lapsed => "lapsed",
        }
    }
}

/// An upgrade within a paid period and the credits it grants once paid.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct UpgradeRow {
    pub id: String,
    /// `subscriptions.id`.
    pub subscription_id: String,
    pub from_plan: String,
    pub to_plan: String,
    pub period_start: Option<DateTime<Utc>>,
    pub credits: i64,
    pub status: String,
    pub invoice_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub settled_at: Option<DateTime<Utc>>,
}

impl UpgradeRow {
    /// Paid, or still may be.
    pub fn counts(&self) -> bool {
        self.status != UpgradeStatus::Lapsed.as_str()
    }
}

const UPGRADE_COLUMNS: &str = "id, subscription_id, from_plan, to_plan, period_start, credits, \
     status, invoice_id, created_at, settled_at";

pub async fn insert_upgrade_in(tx: &mut Tx, u: &UpgradeRow) -> StoreResult<()> {
    on_tx!(tx, c => exec!(c, sqlx::query(
        "INSERT INTO subscription_upgrades (id, subscription_id, from_plan, to_plan, period_start, \
         credits, status, invoice_id, created_at, settled_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&u.id)
    .bind(&u.subscription_id)
    .bind(&u.from_plan)
    .bind(&u.to_plan)
    .bind(u.period_start)
    .bind(u.credits)
    .bind(&u.status)
    .bind(&u.invoice_id)
    .bind(u.created_at)
    .bind(u.settled_at)))?;
    Ok(())
}

/// A subscription's upgrades, oldest first (inside the transaction that
/// holds its row).
pub async fn upgrades_in(tx: &mut Tx, subscription_id: &str) -> StoreResult<Vec<UpgradeRow>> {
    let sql = format!(
        "SELECT {UPGRADE_COLUMNS} FROM subscription_upgrades WHERE subscription_id = $1 \
         ORDER BY created_at, id"
    );
    Ok(on_tx!(tx, c => sqlx::query_as(&sql).bind(subscription_id).fetch_all(c).await)?)
}

/// Marks an upgrade awaiting payment as paid by `invoice_id`; false when
/// it was not awaiting payment.
pub async fn settle_upgrade_in(
    tx: &mut Tx,
    id: &str,
    invoice_id: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    Ok(on_tx!(tx, c => exec_one!(c, sqlx::query(
        "UPDATE subscription_upgrades SET status = $2, invoice_id = $3, settled_at = $4 \
         WHERE id = $1 AND status = $5",
    )
    .bind(id)
    .bind(UpgradeStatus::Granted.as_str())
    .bind(invoice_id)
    .bind(now)
    .bind(UpgradeStatus::AwaitingPayment.as_str())))?)
}

/// A new period started: the subscription's unpaid upgrades grant nothing.
pub async fn lapse_upgrades_in(
    tx: &mut Tx,
    subscription_id: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    on_tx!(tx, c => exec!(c, sqlx::query(
        "UPDATE subscription_upgrades SET status = $2, settled_at = $3 \
         WHERE subscription_id = $1 AND status = $4",
    )
    .bind(subscription_id)
    .bind(UpgradeStatus::Lapsed.as_str())
    .bind(now)
    .bind(UpgradeStatus::AwaitingPayment.as_str())))?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BillingEventRow {
    pub id: String,
    pub provider: String,
    pub event_id: String,
    pub event_name: String,
    pub normalised: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub received_at: DateTime<Utc>,
    pub applied_at: Option<DateTime<Utc>>,
}

pub struct NewBillingEvent<'a> {
    pub id: &'a str,
    pub provider: &'a str,
    pub event_id: &'a str,
    pub event_name: &'a str,
    pub body: &'a [u8],
    pub normalised: &'a str,
    pub now: DateTime<Utc>,
}

const EVENT_COLUMNS: &str = "id, provider, event_id, event_name, normalised, status, attempts, \
     last_error, received_at, applied_at";

/// Stores a verified event; false when `(provider, event_id)` is stored
/// already (a replay).
pub async fn insert_event(w: &Writer<'_>, e: &NewBillingEvent<'_>) -> StoreResult<bool> {
    Ok(on_write!(w, p => exec_one!(p, sqlx::query(
        "INSERT INTO billing_events (id, provider, event_id, event_name, body, normalised, received_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (provider, event_id) DO NOTHING",
    )
    .bind(e.id)
    .bind(e.provider)
    .bind(e.event_id)
    .bind(e.event_name)
    .bind(e.body)
    .bind(e.normalised)
    .bind(e.now)))?)
}

pub async fn find_event(db: &Db, id: &str) -> StoreResult<Option<BillingEventRow>> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM billing_events WHERE id = $1");
    Ok(on_db!(db, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await)?)
}

/// Marks an event applied (inside the transaction that applied it).
pub async fn mark_applied_in(tx: &mut Tx, id: &str, now: DateTime<Utc>) -> StoreResult<()> {
    on_tx!(tx, c => exec!(c, sqlx::query(
        "UPDATE billing_events SET status = 'applied', attempts = attempts + 1, last_error = NULL, \
         applied_at = $2 WHERE id = $1",
    )
    .bind(id)
    .bind(now)))?;
    Ok(())
}

pub async fn mark_failed(w: &Writer<'_>, id: &str, error: &str) -> StoreResult<()> {
    on_write!(w, p => exec!(p, sqlx::query(
        "UPDATE billing_events SET status = 'failed', attempts = attempts + 1, last_error = $2 \
         WHERE id = $1 AND status <> 'applied'",
    )
    .bind(id)
    .bind(error)))?;
    Ok(())
}

/// Events not applied yet with fewer than `max_attempts` tries, oldest
/// first (through `billing_events_status`: applied events, the bulk of the
/// table, are never read).
pub async fn pending_events(
    db: &Db,
    max_attempts: i32,
    limit: i64,
) -> StoreResult<Vec<BillingEventRow>> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM billing_events WHERE status IN ('received', 'failed') \
         AND attempts < $1 ORDER BY received_at, id LIMIT $2"
    );
    Ok(on_db!(db, p => sqlx::query_as(&sql).bind(max_attempts).bind(limit).fetch_all(p).await)?)
}

/// A page of events, newest first, optionally of one status; with the total.
pub async fn list_events(
    db: &Db,
    status: Option<&str>,
    page: Page,
) -> StoreResult<(Vec<BillingEventRow>, i64)> {
    // Without a filter, `$3` matches every status.
    let status = status.unwrap_or("");
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM billing_events WHERE ($3 = '' OR status = $3) \
         ORDER BY received_at DESC, id DESC LIMIT $1 OFFSET $2"
    );
    let rows = on_db!(db, p => sqlx::query_as(&sql)
        .bind(page.limit())
        .bind(page.offset())
        .bind(status)
        .fetch_all(p)
        .await)?;
    let total: i64 = on_db!(db, p => sqlx::query_scalar(
        "SELECT COUNT(*) FROM billing_events WHERE ($1 = '' OR status = $1)",
    )
    .bind(status)
    .fetch_one(p)
    .await)?;
    Ok((rows, total))
}
