//! Stripe as a Pingvas billing adapter (`pingvas:plugin@0.3.0`).
//!
//! Settings (`[billing_settings]`): `api_base` (default
//! `https://api.stripe.com`), `success_url`, `cancel_url`, and
//! `price.<plan>.<cycle>` = the Price id of each plan and cycle sold.
//! Secrets: `api_key` (`sk_…`), `webhook_secret` (`whsec_…`).
//!
//! Webhooks: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]`, the hex
//! HMAC-SHA256 of `<t>.<body>` under the whole secret; any `v1` may match
//! (secret rolls), other schemes are ignored, and a timestamp more than
//! 300 s old is refused (replays). The user id travels in the
//! subscription's `metadata.user_id`, set at checkout.
//!
//! An invoice's `billing_reason` says what it pays: `subscription_create`
//! and `subscription_cycle` a period from its start, `subscription_update`
//! a plan change (prorated: `proration_behavior=always_invoice`), anything
//! else (`manual`, `subscription_threshold` …) no credits. Endpoints must
//! send API version 2018-10-31 or later: older ones call a first invoice
//! `subscription_update`.

// wit-bindgen lifts `billing-event` (8 fields) through one function.
#![allow(clippy::too_many_arguments)]
wit_bindgen::generate!({ path: "../../wit/plugin@0.3.0", world: "billing-adapter" });

use billing_common as common;
use pingvas::plugin::billing_types::{ChangeTiming, EventKind, InvoiceReason};
use pingvas::plugin::{config, http};
use serde_json::Value;

/// Oldest signature timestamp taken, as stripe-node's default.
const TOLERANCE_SECS: i64 = 300;

struct Stripe;

fn failed(m: impl Into<String>) -> PluginError {
    PluginError::Failed(m.into())
}

fn setting(key: &str) -> Result<String, PluginError> {
    config::get(key).ok_or_else(|| PluginError::InvalidInput(format!("setting `{key}` is not set")))
}

fn api_base() -> String {
    config::get("api_base")
        .unwrap_or_else(|| "https://api.stripe.com".into())
        .trim_end_matches('/')
        .to_owned()
}

/// One API call with form-encoded parameters; the JSON of a 2xx answer.
fn call(method: &str, path: &str, form: &[(&str, &str)]) -> Result<Value, PluginError> {
    let key = config::secret("api_key")
        .ok_or_else(|| PluginError::InvalidInput("secret `api_key` is not set".into()))?;
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let req = http::Request {
        method: method.into(),
        url: format!("{}{path}", api_base()),
        headers: vec![
            ("authorization".into(), format!("Bearer {key}")),
            (
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            ),
        ],
        body: body.into_bytes(),
    };
    let resp = http::send(&req).map_err(|e| match e {
        http::HttpError::Denied(m) => failed(format!("denied: {m}")),
        http::HttpError::Timeout => failed("Stripe did not answer in time"),
        http::HttpError::Failed(m) => failed(m),
    })?;
    let json: Value = serde_json::from_slice(&resp.body)
        .map_err(|e| failed(format!("Stripe's answer is not JSON: {e}")))?;
    if !(200..300).contains(&resp.status) {
        let message = json["error"]["message"].as_str().unwrap_or_default();
        return Err(failed(format!(
            "Stripe answered {} {path}: {message}",
            resp.status
        )));
    }
    Ok(json)
}

fn unix(v: &Value) -> Option<String> {
    v.as_i64().and_then(common::unix_rfc3339)
}

/// Stripe's statuses in the host's words.
fn status(s: &str, deleted: bool) -> String {
    match s {
        _ if deleted => "expired",
        "trialing" => "on_trial",
        "canceled" => "cancelled",
        "incomplete_expired" => "expired",
        // The first payment is not done: nothing is granted yet.
        "incomplete" => "unpaid",
        other => other,
    }
    .to_owned()
}

/// A Subscription object as the host's state; `updated_at` is when Stripe
/// said so (the event's `created`, or now for an API answer).
fn subscription_state(
    sub: &Value,
    updated_at: String,
    deleted: bool,
) -> Result<SubscriptionState, PluginError> {
    let item = &sub["items"]["data"][0];
    let price = item["price"]["id"].as_str().or(sub["plan"]["id"].as_str());
    let (plan, cycle) = match price.and_then(|p| common::plan_of(config::get, "price", p)) {
        Some((p, c)) => (Some(p), Some(c)),
        None => (None, None),
    };
    // Newer API versions keep the period on the item.
    let start = unix(&sub["current_period_start"]).or_else(|| unix(&item["current_period_start"]));
    let end = unix(&sub["current_period_end"]).or_else(|| unix(&item["current_period_end"]));
    let card = &sub["default_payment_method"]["card"];
    Ok(SubscriptionState {
        subscription_id: common::text(&sub["id"])
            .ok_or_else(|| failed("subscription without an id"))?,
        customer_id: common::text(&sub["customer"]),
        plan,
        billing_cycle: cycle,
        status: status(sub["status"].as_str().unwrap_or("active"), deleted),
        current_period_start: start,
        current_period_end: end,
        cancel_at_period_end: sub["cancel_at_period_end"].as_bool().unwrap_or(false),
        card_brand: common::text(&card["brand"]),
        card_last_four: common::text(&card["last4"]),
        updated_at,
    })
}

/// The subscription an Invoice paid (older API versions: `subscription`;
/// newer: `parent.subscription_details.subscription`).
fn invoice_state(invoice: &Value, updated_at: String) -> Option<SubscriptionState> {
    let id = common::text(&invoice["subscription"])
        .or_else(|| common::text(&invoice["parent"]["subscription_details"]["subscription"]))?;
    Some(SubscriptionState {
        subscription_id: id,
        customer_id: common::text(&invoice["customer"]),
        plan: None,
        billing_cycle: None,
        status: invoice["status"].as_str().unwrap_or("paid").to_owned(),
        current_period_start: None,
        current_period_end: None,
        cancel_at_period_end: false,
        card_brand: None,
        card_last_four: None,
        updated_at,
    })
}

/// Why Stripe raised an invoice.
fn invoice_reason(invoice: &Value) -> InvoiceReason {
    match common::InvoicePays::stripe(invoice["billing_reason"].as_str()) {
        common::InvoicePays::PeriodStart => InvoiceReason::PeriodStart,
        common::InvoicePays::PlanChange => InvoiceReason::PlanChange,
        common::InvoicePays::Other => InvoiceReason::Other,
    }
}

fn now() -> String {
    common::unix_rfc3339(common::now_unix()).unwrap_or_default()
}

impl Guest for Stripe {
    fn verify_webhook(hook: Webhook) -> Result<(), PluginError> {
        let secret = config::secret("webhook_secret").ok_or_else(|| {
            PluginError::InvalidInput("secret `webhook_secret` is not set".into())
        })?;
        let header = common::header(&hook.headers, "stripe-signature")
            .ok_or_else(|| PluginError::Rejected("no Stripe-Signature header".into()))?;
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for part in header.split(',') {
            match part.trim().split_once('=') {
                Some(("t", t)) => timestamp = Some(t),
                Some(("v1", s)) => signatures.push(s),
                _ => {}
            }
        }
        let t = timestamp
            .ok_or_else(|| PluginError::Rejected("no timestamp in Stripe-Signature".into()))?;
        let secs: i64 = t
            .parse()
            .map_err(|_| PluginError::Rejected("bad timestamp".into()))?;
        if !signatures.iter().any(|s| {
            common::hmac_sha256_matches(secret.as_bytes(), &[t.as_bytes(), b".", &hook.body], s)
        }) {
            return Err(PluginError::Rejected("no v1 signature matches".into()));
        }
        if common::now_unix() - secs > TOLERANCE_SECS {
            return Err(PluginError::Rejected(format!(
                "timestamp older than {TOLERANCE_SECS} s"
            )));
        }
        Ok(())
    }

    fn normalise_event(hook: Webhook) -> Result<BillingEvent, PluginError> {
        let event: Value = serde_json::from_slice(&hook.body)
            .map_err(|e| PluginError::InvalidInput(format!("not JSON: {e}")))?;
        let name = event["type"]
            .as_str()
            .ok_or_else(|| PluginError::InvalidInput("no type".into()))?
            .to_owned();
        let id =
            common::text(&event["id"]).ok_or_else(|| PluginError::InvalidInput("no id".into()))?;
        let created = unix(&event["created"])
            .ok_or_else(|| PluginError::InvalidInput("no created".into()))?;
        let object = &event["data"]["object"];
        let (kind, subscription, invoice_id, user_id) = match name.as_str() {
            "customer.subscription.created"
            | "customer.subscription.updated"
            | "customer.subscription.deleted" => {
                let deleted = name.ends_with("deleted");
                let kind = match name.as_str() {
                    "customer.subscription.created" => EventKind::SubscriptionCreated,
                    _ if deleted => EventKind::SubscriptionExpired,
                    _ => EventKind::SubscriptionUpdated,
                };
                (
                    kind,
                    Some(subscription_state(object, created, deleted)?),
                    None,
                    common::text(&object["metadata"]["user_id"]),
                )
            }
            "invoice.paid" | "invoice.payment_succeeded" => (
                EventKind::PaymentSucceeded,
                invoice_state(object, created),
                common::text(&object["id"]),
                None,
            ),
            "invoice.payment_failed" => (
                EventKind::PaymentFailed,
                invoice_state(object, created),
                common::text(&object["id"]),
                None,
            ),
            "charge.refunded" => (EventKind::Refunded, None, None, None),
            // The subscription's own events carry what the host needs.
            _ => (
                EventKind::Other,
                None,
                None,
                common::text(&object["client_reference_id"])
                    .or_else(|| common::text(&object["metadata"]["user_id"])),
            ),
        };
        Ok(BillingEvent {
            kind,
            provider_event: name,
            event_id: id,
            user_id,
            invoice_reason: invoice_id.as_ref().map(|_| invoice_reason(object)),
            invoice_id,
            subscription,
        })
    }

    fn create_checkout(req: CheckoutRequest) -> Result<Checkout, PluginError> {
        let price = setting(&format!("price.{}.{}", req.plan, req.billing_cycle))?;
        let success = setting("success_url")?;
        let cancel = config::get("cancel_url").unwrap_or_else(|| success.clone());
        let session = call(
            "POST",
            "/v1/checkout/sessions",
            &[
                ("mode", "subscription"),
                ("line_items[0][price]", &price),
                ("line_items[0][quantity]", "1"),
                ("success_url", &success),
                ("cancel_url", &cancel),
                ("customer_email", &req.email),
                ("client_reference_id", &req.user_id),
                ("metadata[user_id]", &req.user_id),
                ("subscription_data[metadata][user_id]", &req.user_id),
            ],
        )?;
        Ok(Checkout {
            url: session["url"]
                .as_str()
                .ok_or_else(|| failed("session without a url"))?
                .to_owned(),
            expires_at: unix(&session["expires_at"]),
        })
    }

    fn change_plan(req: PlanChange) -> Result<SubscriptionState, PluginError> {
        let price = setting(&format!("price.{}.{}", req.plan, req.billing_cycle))?;
        let path = format!("/v1/subscriptions/{}", req.subscription_id);
        let current = call("GET", &path, &[])?;
        let item = current["items"]["data"][0]["id"]
            .as_str()
            .ok_or_else(|| failed("subscription without items"))?
            .to_owned();
        let proration = match req.effective {
            ChangeTiming::Immediately => "always_invoice",
            ChangeTiming::AtPeriodEnd => "none",
        };
        let sub = call(
            "POST",
            &path,
            &[
                ("items[0][id]", &item),
                ("items[0][price]", &price),
                ("proration_behavior", proration),
            ],
        )?;
        subscription_state(&sub, now(), false)
    }

    fn cancel(
        subscription_id: String,
        at_period_end: bool,
    ) -> Result<SubscriptionState, PluginError> {
        let path = format!("/v1/subscriptions/{subscription_id}");
        if at_period_end {
            let sub = call("POST", &path, &[("cancel_at_period_end", "true")])?;
            subscription_state(&sub, now(), false)
        } else {
            let sub = call("DELETE", &path, &[])?;
            subscription_state(&sub, now(), true)
        }
    }

    fn resume(subscription_id: String) -> Result<SubscriptionState, PluginError> {
        let sub = call(
            "POST",
            &format!("/v1/subscriptions/{subscription_id}"),
            &[("cancel_at_period_end", "false")],
        )?;
        subscription_state(&sub, now(), false)
    }
}

export!(Stripe);
