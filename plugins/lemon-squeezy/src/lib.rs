//! Lemon Squeezy as a Pingvas billing adapter (`pingvas:plugin@0.3.0`).
//!
//! Settings (`[billing_settings]`): `store_id`, `api_base` (default
//! `https://api.lemonsqueezy.com`), `redirect_url`, and
//! `variant.<plan>.<cycle>` = the variant id of each plan and cycle sold.
//! Secrets: `api_key`, `webhook_secret` (the signing secret).
//!
//! Webhooks: `X-Signature` is the hex HMAC-SHA256 of the raw body (the
//! spec writes `sha256=<hex>`: both are accepted). Bodies carry no event
//! id, so the event id is the body's SHA-256: a retried delivery is the
//! same event.
//!
//! A subscription invoice's `billing_reason` says what it pays: `initial`
//! and `renewal` a period from its start, `updated` a plan change billed at
//! once (`invoice_immediately`), anything else no credits.

// wit-bindgen lifts `billing-event` (8 fields) through one function.
#![allow(clippy::too_many_arguments)]
wit_bindgen::generate!({ path: "../../wit/plugin@0.3.0", world: "billing-adapter" });

use billing_common as common;
use pingvas::plugin::billing_types::{ChangeTiming, EventKind, InvoiceReason};
use pingvas::plugin::{config, http};
use serde_json::{Value, json};

struct LemonSqueezy;

fn failed(m: impl Into<String>) -> PluginError {
    PluginError::Failed(m.into())
}

fn setting(key: &str) -> Result<String, PluginError> {
    config::get(key).ok_or_else(|| PluginError::InvalidInput(format!("setting `{key}` is not set")))
}

fn api_base() -> String {
    config::get("api_base")
        .unwrap_or_else(|| "https://api.lemonsqueezy.com".into())
        .trim_end_matches('/')
        .to_owned()
}

/// One JSON:API call; the parsed body of a 2xx answer.
fn call(method: &str, path: &str, body: Option<Value>) -> Result<Value, PluginError> {
    let key = config::secret("api_key")
        .ok_or_else(|| PluginError::InvalidInput("secret `api_key` is not set".into()))?;
    let req = http::Request {
        method: method.into(),
        url: format!("{}{path}", api_base()),
        headers: vec![
            ("accept".into(), "application/vnd.api+json".into()),
            ("content-type".into(), "application/vnd.api+json".into()),
            ("authorization".into(), format!("Bearer {key}")),
        ],
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
    };
    let resp = http::send(&req).map_err(|e| match e {
        http::HttpError::Denied(m) => failed(format!("denied: {m}")),
        http::HttpError::Timeout => failed("Lemon Squeezy did not answer in time"),
        http::HttpError::Failed(m) => failed(m),
    })?;
    if !(200..300).contains(&resp.status) {
        let detail = serde_json::from_slice::<Value>(&resp.body)
            .ok()
            .and_then(|v| v["errors"][0]["detail"].as_str().map(str::to_owned))
            .unwrap_or_default();
        return Err(failed(format!(
            "Lemon Squeezy answered {} {path}: {detail}",
            resp.status
        )));
    }
    serde_json::from_slice(&resp.body)
        .map_err(|e| failed(format!("Lemon Squeezy's answer is not JSON: {e}")))
}

/// The host's plan and cycle of a variant id.
fn plan_of_variant(variant: &Value) -> Option<(String, String)> {
    common::plan_of(config::get, "variant", &common::text(variant)?)
}

fn time(v: &Value) -> Option<String> {
    v.as_str().and_then(common::parse_time).map(common::rfc3339)
}

/// A `subscriptions` resource as the host's state.
fn subscription_state(data: &Value) -> Result<SubscriptionState, PluginError> {
    let a = &data["attributes"];
    let id = common::text(&data["id"]).ok_or_else(|| failed("subscription without an id"))?;
    let (plan, cycle) = match plan_of_variant(&a["variant_id"]) {
        Some((p, c)) => (Some(p), Some(c)),
        None => (None, None),
    };
    let cancelled = a["cancelled"].as_bool().unwrap_or(false);
    // `renews_at` is the end of the paid period; a cancelled one ends at `ends_at`.
    let end = a["renews_at"]
        .as_str()
        .or(a["ends_at"].as_str())
        .and_then(common::parse_time);
    let start = end.and_then(|e| common::period_start(e, cycle.as_deref().unwrap_or("monthly")));
    let updated_at =
        time(&a["updated_at"]).ok_or_else(|| failed("subscription without updated_at"))?;
    Ok(SubscriptionState {
        subscription_id: id,
        customer_id: common::text(&a["customer_id"]),
        plan,
        billing_cycle: cycle,
        status: a["status"].as_str().unwrap_or("active").to_owned(),
        current_period_start: start.map(common::rfc3339),
        current_period_end: end.map(common::rfc3339),
        cancel_at_period_end: cancelled,
        card_brand: common::text(&a["card_brand"]),
        card_last_four: common::text(&a["card_last_four"]),
        updated_at,
    })
}

/// A `subscription-invoices` resource: which subscription it paid.
fn invoice_state(data: &Value) -> Result<SubscriptionState, PluginError> {
    let a = &data["attributes"];
    Ok(SubscriptionState {
        subscription_id: common::text(&a["subscription_id"])
            .ok_or_else(|| failed("invoice without subscription_id"))?,
        customer_id: common::text(&a["customer_id"]),
        plan: None,
        billing_cycle: None,
        status: a["status"].as_str().unwrap_or("paid").to_owned(),
        current_period_start: None,
        current_period_end: None,
        cancel_at_period_end: false,
        card_brand: common::text(&a["card_brand"]),
        card_last_four: common::text(&a["card_last_four"]),
        updated_at: time(&a["updated_at"]).ok_or_else(|| failed("invoice without updated_at"))?,
    })
}

/// Why Lemon Squeezy raised a subscription invoice.
fn invoice_reason(invoice: &Value) -> InvoiceReason {
    match common::InvoicePays::lemon_squeezy(invoice["attributes"]["billing_reason"].as_str()) {
        common::InvoicePays::PeriodStart => InvoiceReason::PeriodStart,
        common::InvoicePays::PlanChange => InvoiceReason::PlanChange,
        common::InvoicePays::Other => InvoiceReason::Other,
    }
}

fn kind_of(event: &str) -> EventKind {
    match event {
        "subscription_created" => EventKind::SubscriptionCreated,
        "subscription_updated"
        | "subscription_resumed"
        | "subscription_paused"
        | "subscription_unpaused"
        | "subscription_plan_changed" => EventKind::SubscriptionUpdated,
        "subscription_cancelled" => EventKind::SubscriptionCancelled,
        "subscription_expired" => EventKind::SubscriptionExpired,
        "subscription_payment_success" | "subscription_payment_recovered" => {
            EventKind::PaymentSucceeded
        }
        "subscription_payment_failed" => EventKind::PaymentFailed,
        "order_refunded" | "subscription_payment_refunded" => EventKind::Refunded,
        _ => EventKind::Other,
    }
}

impl Guest for LemonSqueezy {
    fn verify_webhook(hook: Webhook) -> Result<(), PluginError> {
        let secret = config::secret("webhook_secret").ok_or_else(|| {
            PluginError::InvalidInput("secret `webhook_secret` is not set".into())
        })?;
        let given = common::header(&hook.headers, "x-signature")
            .ok_or_else(|| PluginError::Rejected("no X-Signature header".into()))?;
        let hex = given.strip_prefix("sha256=").unwrap_or(given);
        if common::hmac_sha256_matches(secret.as_bytes(), &[&hook.body], hex) {
            Ok(())
        } else {
            Err(PluginError::Rejected(
                "X-Signature does not match the body".into(),
            ))
        }
    }

    fn normalise_event(hook: Webhook) -> Result<BillingEvent, PluginError> {
        let body: Value = serde_json::from_slice(&hook.body)
            .map_err(|e| PluginError::InvalidInput(format!("not JSON: {e}")))?;
        let name = body["meta"]["event_name"]
            .as_str()
            .or_else(|| common::header(&hook.headers, "x-event-name"))
            .ok_or_else(|| PluginError::InvalidInput("no meta.event_name".into()))?
            .to_owned();
        let data = &body["data"];
        let kind = kind_of(&name);
        let (subscription, invoice_id, reason) = match data["type"].as_str() {
            Some("subscriptions") => (Some(subscription_state(data)?), None, None),
            Some("subscription-invoices") => (
                Some(invoice_state(data)?),
                common::text(&data["id"]),
                Some(invoice_reason(data)),
            ),
            _ => (None, None, None),
        };
        Ok(BillingEvent {
            kind,
            provider_event: name,
            event_id: common::sha256_hex(&hook.body),
            user_id: common::text(&body["meta"]["custom_data"]["user_id"]),
            invoice_id,
            invoice_reason: reason,
            subscription,
        })
    }

    fn create_checkout(req: CheckoutRequest) -> Result<Checkout, PluginError> {
        let variant = setting(&format!("variant.{}.{}", req.plan, req.billing_cycle))?;
        let store = setting("store_id")?;
        let mut attributes = json!({
            "checkout_data": {
                "email": req.email,
                "custom": { "user_id": req.user_id },
            },
        });
        if let Some(url) = config::get("redirect_url") {
            attributes["product_options"] = json!({ "redirect_url": url });
        }
        let body = json!({
            "data": {
                "type": "checkouts",
                "attributes": attributes,
                "relationships": {
                    "store": { "data": { "type": "stores", "id": store } },
                    "variant": { "data": { "type": "variants", "id": variant } },
                },
            },
        });
        let resp = call("POST", "/v1/checkouts", Some(body))?;
        let a = &resp["data"]["attributes"];
        Ok(Checkout {
            url: a["url"]
                .as_str()
                .ok_or_else(|| failed("checkout without a url"))?
                .to_owned(),
            expires_at: time(&a["expires_at"]),
        })
    }

    fn change_plan(req: PlanChange) -> Result<SubscriptionState, PluginError> {
        let variant = setting(&format!("variant.{}.{}", req.plan, req.billing_cycle))?;
        let variant: Value = variant
            .parse::<u64>()
            .map_or(Value::String(variant), Value::from);
        let mut attributes = json!({ "variant_id": variant });
        match req.effective {
            // Charge the prorated difference now.
            ChangeTiming::Immediately => attributes["invoice_immediately"] = json!(true),
            // The next renewal bills the new price; nothing is charged now.
            ChangeTiming::AtPeriodEnd => attributes["disable_prorations"] = json!(true),
        }
        let body = json!({ "data": { "type": "subscriptions", "id": req.subscription_id, "attributes": attributes } });
        let resp = call(
            "PATCH",
            &format!("/v1/subscriptions/{}", req.subscription_id),
            Some(body),
        )?;
        subscription_state(&resp["data"])
    }

    fn cancel(
        subscription_id: String,
        at_period_end: bool,
    ) -> Result<SubscriptionState, PluginError> {
        if !at_period_end {
            return Err(PluginError::InvalidInput(
                "Lemon Squeezy cancels at the end of the period only".into(),
            ));
        }
        let resp = call(
            "DELETE",
            &format!("/v1/subscriptions/{subscription_id}"),
            None,
        )?;
        subscription_state(&resp["data"])
    }

    fn resume(subscription_id: String) -> Result<SubscriptionState, PluginError> {
        let body = json!({ "data": { "type": "subscriptions", "id": subscription_id, "attributes": { "cancelled": false } } });
        let resp = call(
            "PATCH",
            &format!("/v1/subscriptions/{subscription_id}"),
            Some(body),
        )?;
        subscription_state(&resp["data"])
    }
}

export!(LemonSqueezy);
