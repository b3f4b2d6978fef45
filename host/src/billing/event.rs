//! A provider's event and subscription in the host's terms: parsed and
//! checked from what an adapter returned, stored as JSON with the webhook
//! so applying it later needs no adapter.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::plugins::runtime::{BillingEvent, EventKind, InvoiceReason, SubscriptionState};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    SubscriptionCreated,
    SubscriptionUpdated,
    SubscriptionRenewed,
    SubscriptionCancelled,
    SubscriptionExpired,
    PaymentSucceeded,
    PaymentFailed,
    Refunded,
    Other,
}

impl From<EventKind> for Kind {
    fn from(k: EventKind) -> Self {
        match k {
            EventKind::SubscriptionCreated => Kind::SubscriptionCreated,
            EventKind::SubscriptionUpdated => Kind::SubscriptionUpdated,
            EventKind::SubscriptionRenewed => Kind::SubscriptionRenewed,
            EventKind::SubscriptionCancelled => Kind::SubscriptionCancelled,
            EventKind::SubscriptionExpired => Kind::SubscriptionExpired,
            EventKind::PaymentSucceeded => Kind::PaymentSucceeded,
            EventKind::PaymentFailed => Kind::PaymentFailed,
            EventKind::Refunded => Kind::Refunded,
            EventKind::Other => Kind::Other,
        }
    }
}

/// Why a paid invoice was raised: what it grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A subscription's first invoice or a renewal: the plan's monthly
    /// credits, once per invoice.
    PeriodStart,
    /// A plan change within the period, billed prorated: the difference of
    /// the upgrade it pays, once per upgrade.
    PlanChange,
    /// Anything else: no credits.
    Other,
}

impl From<InvoiceReason> for Reason {
    fn from(r: InvoiceReason) -> Self {
        match r {
            InvoiceReason::PeriodStart => Reason::PeriodStart,
            InvoiceReason::PlanChange => Reason::PlanChange,
            InvoiceReason::Other => Reason::Other,
        }
    }
}

/// The provider's state of one subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub customer_id: Option<String>,
    pub plan: Option<String>,
    pub billing_cycle: Option<String>,
    pub status: String,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
    pub card_brand: Option<String>,
    pub card_last_four: Option<String>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub kind: Kind,
    pub provider_event: String,
    pub event_id: String,
    pub user_id: Option<String>,
    pub invoice_id: Option<String>,
    /// Why the invoice was raised; `None` from 0.2.x adapters (and in
    /// events stored before 0.3.0), which is taken as a period's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice_reason: Option<Reason>,
    pub subscription: Option<Subscription>,
}

impl Event {
    /// What a paid invoice of this event grants.
    pub fn reason(&self) -> Reason {
        self.invoice_reason.unwrap_or(Reason::PeriodStart)
    }
}

/// Longest id or name taken from an adapter.
const MAX_FIELD: usize = 256;

fn field(name: &str, v: String) -> Result<String, String> {
    if v.len() > MAX_FIELD || v.chars().any(char::is_control) {
        return Err(format!(
            "{name}: at most {MAX_FIELD} bytes, no control characters"
        ));
    }
    Ok(v)
}

fn opt_field(name: &str, v: Option<String>) -> Result<Option<String>, String> {
    v.filter(|s| !s.is_empty())
        .map(|s| field(name, s))
        .transpose()
}

fn time(name: &str, v: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{name}: not RFC 3339 ({e})"))
}

fn opt_time(name: &str, v: Option<String>) -> Result<Option<DateTime<Utc>>, String> {
    v.filter(|s| !s.is_empty())
        .map(|s| time(name, &s))
        .transpose()
}

impl TryFrom<SubscriptionState> for Subscription {
    type Error = String;

    fn try_from(s: SubscriptionState) -> Result<Self, String> {
        let id = field("subscription-id", s.subscription_id)?;
        if id.is_empty() {
            return Err("subscription-id: empty".into());
        }
        Ok(Subscription {
            id,
            customer_id: opt_field("customer-id", s.customer_id)?,
            plan: opt_field("plan", s.plan)?,
            billing_cycle: opt_field("billing-cycle", s.billing_cycle)?,
            status: field("status", s.status)?,
            period_start: opt_time("current-period-start", s.current_period_start)?,
            period_end: opt_time("current-period-end", s.current_period_end)?,
            cancel_at_period_end: s.cancel_at_period_end,
            card_brand: opt_field("card-brand", s.card_brand)?,
            card_last_four: opt_field("card-last-four", s.card_last_four)?,
            updated_at: time("updated-at", &s.updated_at)?,
        })
    }
}

impl TryFrom<BillingEvent> for Event {
    type Error = String;

    fn try_from(e: BillingEvent) -> Result<Self, String> {
        let event_id = field("event-id", e.event_id)?;
        if event_id.is_empty() {
            return Err("event-id: empty".into());
        }
        Ok(Event {
            kind: e.kind.into(),
            provider_event: field("provider-event", e.provider_event)?,
            event_id,
            user_id: opt_field("user-id", e.user_id)?,
            invoice_id: opt_field("invoice-id", e.invoice_id)?,
            invoice_reason: e.invoice_reason.map(Reason::from),
            subscription: e.subscription.map(Subscription::try_from).transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_stored_without_a_reason_start_a_period() {
        // As 0.2.x adapters' events, and all stored before 0.3.0, read.
        let stored = r#"{"kind":"payment_succeeded","provider_event":"invoice.paid","event_id":"evt_1","user_id":null,"invoice_id":"in_1","subscription":null}"#;
        let e: Event = serde_json::from_str(stored).unwrap();
        assert_eq!((e.invoice_reason, e.reason()), (None, Reason::PeriodStart));
        let change = Event {
            invoice_reason: Some(Reason::PlanChange),
            ..e
        };
        let json = serde_json::to_string(&change).unwrap();
        assert!(json.contains(r#""invoice_reason":"plan_change""#), "{json}");
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back.reason(), Reason::PlanChange);
    }
}
