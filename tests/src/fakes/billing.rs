//! Fake Lemon Squeezy and Stripe APIs: the endpoints the billing adapters
//! call, answering in the providers' documented shapes
//! (`shared/fixtures/billing/`), keeping the subscriptions they manage and
//! the invoices a plan change billed at once, and writing webhook bodies
//! for them signed the providers' ways (invoices from the templates in
//! `tests/fixtures/billing/`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Duration, Months, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::serve;

/// Lowercase hex HMAC-SHA256 of `message` under `secret`.
pub fn hmac_hex(secret: &str, message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// A `Stripe-Signature` header for `body` signed at unix time `t`.
pub fn stripe_signature(secret: &str, t: i64, body: &[u8]) -> String {
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    format!("t={t},v1={}", hmac_hex(secret, &signed))
}

/// The invoice webhook templates (see `tests/fixtures/billing/README.md`).
const STRIPE_INVOICE: &str =
    include_str!("../../fixtures/billing/stripe/invoice.paid.subscription_update.json");
const LS_INVOICE: &str =
    include_str!("../../fixtures/billing/lemon-squeezy/subscription_payment_success.updated.json");

/// An invoice a fake provider raised for a plan change billed at once
/// (Stripe `always_invoice`, Lemon Squeezy `invoice_immediately`): what a
/// test delivers as paid, failed, or never.
#[derive(Debug, Clone, PartialEq)]
pub struct RaisedInvoice {
    pub id: String,
    pub subscription: String,
    /// The provider's `billing_reason`.
    pub reason: String,
}

fn ls_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// One call the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub body: String,
}

fn record(log: &Mutex<Vec<Call>>, method: &str, path: &str, headers: &HeaderMap, body: &str) {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    log.lock().unwrap().push(Call {
        method: method.into(),
        path: path.into(),
        authorization: h("authorization"),
        content_type: h("content-type"),
        body: body.into(),
    });
}

fn bearer_ok(headers: &HeaderMap, key: &str) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {key}"))
}

// ---- Lemon Squeezy ---------------------------------------------------------

/// A subscription as the fake Lemon Squeezy holds it.
#[derive(Debug, Clone)]
pub struct LsSubscription {
    pub id: String,
    pub user_id: String,
    pub variant_id: u64,
    pub status: String,
    pub cancelled: bool,
    pub renews_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Default)]
pub struct LsState {
    pub subscriptions: HashMap<String, LsSubscription>,
    /// Invoices raised by plan changes, oldest first.
    pub invoices: Vec<RaisedInvoice>,
    next_id: u64,
    /// The fake's clock for `updated_at`: one second later each change.
    clock: Option<DateTime<Utc>>,
}

impl LsState {
    fn tick(&mut self) -> DateTime<Utc> {
        let t = self
            .clock
            .map_or_else(Utc::now, |c| c + Duration::seconds(1));
        self.clock = Some(t);
        t
    }
}

#[derive(Clone)]
pub struct FakeLemonSqueezy {
    pub state: Arc<Mutex<LsState>>,
    pub api_key: String,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl FakeLemonSqueezy {
    /// Starts the fake; returns it and its base URL.
    pub async fn start(api_key: &str) -> (Self, String) {
        let fake = FakeLemonSqueezy {
            state: Arc::default(),
            api_key: api_key.to_owned(),
            calls: Arc::default(),
        };
        let app = Router::new()
            .route("/v1/checkouts", post(ls_checkout))
            .route(
                "/v1/subscriptions/{id}",
                get(ls_get).patch(ls_patch).delete(ls_delete),
            )
            .with_state(fake.clone());
        (fake.clone(), serve(app).await)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// What a completed checkout makes: an active subscription.
    pub fn subscribe(&self, user_id: &str, variant_id: u64) -> String {
        let mut s = self.state.lock().unwrap();
        s.next_id += 1;
        let id = (1000 + s.next_id).to_string();
        let now = s.tick();
        s.subscriptions.insert(
            id.clone(),
            LsSubscription {
                id: id.clone(),
                user_id: user_id.into(),
                variant_id,
                status: "active".into(),
                cancelled: false,
                renews_at: now.checked_add_months(Months::new(1)).unwrap(),
                ends_at: None,
                updated_at: now,
            },
        );
        id
    }

    /// Changes a subscription as the provider would on its own (renewal,
    /// failed payment, expiry …).
    pub fn update(&self, id: &str, change: impl FnOnce(&mut LsSubscription)) {
        let mut s = self.state.lock().unwrap();
        let now = s.tick();
        let sub = s.subscriptions.get_mut(id).expect("subscription");
        change(sub);
        sub.updated_at = now;
    }

    /// Starts the subscription's next period: `renews_at` a month on.
    pub fn renew(&self, id: &str) {
        self.update(id, |s| {
            s.renews_at = s
                .renews_at
                .checked_add_months(chrono::Months::new(1))
                .unwrap()
        });
    }

    pub fn subscription(&self, id: &str) -> LsSubscription {
        self.state.lock().unwrap().subscriptions[id].clone()
    }

    /// The `subscriptions` resource, as in the docs' example.
    fn resource(sub: &LsSubscription) -> Value {
        json!({
            "type": "subscriptions",
            "id": sub.id,
            "attributes": {
                "store_id": 12345,
                "customer_id": 67890,
                "order_id": 2,
                "order_item_id": 2,
                "product_id": 2,
                "variant_id": sub.variant_id,
                "product_name": "Pingvas",
                "variant_name": "Default",
                "user_name": "Dan R",
                "user_email": "dan@lemonsqueezy.com",
                "status": sub.status,
                "status_formatted": sub.status,
                "card_brand": "visa",
                "card_last_four": "4242",
                "pause": null,
                "cancelled": sub.cancelled,
                "trial_ends_at": null,
                "billing_anchor": 24,
                "urls": {
                    "update_payment_method": "https://my-store.lemonsqueezy.com/subscription/1/payment-details",
                    "customer_portal": "https://my-store.lemonsqueezy.com/billing"
                },
                "renews_at": ls_time(sub.renews_at),
                "ends_at": sub.ends_at.map(ls_time),
                "created_at": ls_time(sub.updated_at),
                "updated_at": ls_time(sub.updated_at),
                "test_mode": true
            },
            "relationships": {
                "store": { "links": { "related": format!("https://api.lemonsqueezy.com/v1/subscriptions/{}/store", sub.id) } }
            },
            "links": { "self": format!("https://api.lemonsqueezy.com/v1/subscriptions/{}", sub.id) }
        })
    }

    /// A `subscription_*` webhook body for the subscription as it is now.
    pub fn subscription_event(&self, event: &str, id: &str) -> Vec<u8> {
        let sub = self.subscription(id);
        serde_json::to_vec(&json!({
            "meta": { "event_name": event, "custom_data": { "user_id": sub.user_id } },
            "data": Self::resource(&sub),
        }))
        .unwrap()
    }

    /// A `subscription_payment_*` webhook body for invoice `invoice_id`
    /// raised for `reason` (`billing_reason`: initial, renewal, updated).
    pub fn invoice_event(&self, event: &str, id: &str, invoice_id: u64, reason: &str) -> Vec<u8> {
        let sub = self.subscription(id);
        let now = ls_time(self.state.lock().unwrap().tick());
        let mut body: Value = serde_json::from_str(LS_INVOICE).expect("the template is JSON");
        body["meta"]["event_name"] = json!(event);
        body["meta"]["custom_data"]["user_id"] = json!(sub.user_id);
        let data = &mut body["data"];
        data["id"] = json!(invoice_id.to_string());
        data["links"]["self"] = json!(format!(
            "https://api.lemonsqueezy.com/v1/subscription-invoices/{invoice_id}"
        ));
        let a = &mut data["attributes"];
        a["subscription_id"] = json!(sub.id.parse::<u64>().unwrap());
        a["billing_reason"] = json!(reason);
        a["status"] = json!(if event.ends_with("failed") {
            "pending"
        } else {
            "paid"
        });
        a["status_formatted"] = json!(if event.ends_with("failed") {
            "Pending"
        } else {
            "Paid"
        });
        if reason != "updated" {
            // A period's whole price.
            for k in ["subtotal", "total", "subtotal_usd", "total_usd"] {
                a[k] = json!(7500);
            }
            a["subtotal_formatted"] = json!("$75.00");
            a["total_formatted"] = json!("$75.00");
        }
        a["created_at"] = json!(now);
        a["updated_at"] = json!(now);
        serde_json::to_vec(&body).unwrap()
    }

    /// The invoices plan changes raised, oldest first.
    pub fn invoices(&self) -> Vec<RaisedInvoice> {
        self.state.lock().unwrap().invoices.clone()
    }
}

fn ls_error(status: StatusCode, detail: &str) -> Response {
    (
        status,
        axum::Json(json!({ "jsonapi": { "version": "1.0" }, "errors": [{ "detail": detail, "status": status.as_str() }] })),
    )
        .into_response()
}

fn ls_check(fake: &FakeLemonSqueezy, headers: &HeaderMap) -> Option<Response> {
    if !bearer_ok(headers, &fake.api_key) {
        return Some(ls_error(StatusCode::UNAUTHORIZED, "Unauthenticated."));
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/vnd.api+json")
    {
        return Some(ls_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type",
        ));
    }
    None
}

async fn ls_checkout(
    State(fake): State<FakeLemonSqueezy>,
    headers: HeaderMap,
    body: String,
) -> Response {
    record(&fake.calls, "POST", "/v1/checkouts", &headers, &body);
    if let Some(r) = ls_check(&fake, &headers) {
        return r;
    }
    let req: Value = serde_json::from_str(&body).unwrap_or_default();
    let rel = &req["data"]["relationships"];
    if req["data"]["type"] != "checkouts"
        || !rel["store"]["data"]["id"].is_string()
        || !rel["variant"]["data"]["id"].is_string()
    {
        return ls_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "The store and variant relationships are required.",
        );
    }
    let id = uuid::Uuid::new_v4().to_string();
    let attributes = &req["data"]["attributes"];
    let answer = json!({
        "jsonapi": { "version": "1.0" },
        "links": { "self": format!("https://api.lemonsqueezy.com/v1/checkouts/{id}") },
        "data": {
            "type": "checkouts",
            "id": id,
            "attributes": {
                "store_id": rel["store"]["data"]["id"].as_str().unwrap().parse::<u64>().unwrap_or(0),
                "variant_id": rel["variant"]["data"]["id"].as_str().unwrap().parse::<u64>().unwrap_or(0),
                "custom_price": null,
                "product_options": attributes["product_options"].clone(),
                "checkout_data": attributes["checkout_data"].clone(),
                "preview": false,
                "expires_at": null,
                "created_at": ls_time(Utc::now()),
                "updated_at": ls_time(Utc::now()),
                "test_mode": true,
                "url": format!("https://pingvas.lemonsqueezy.com/checkout/custom/{id}?signature=720d8c43")
            }
        }
    });
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}

fn ls_answer(sub: &LsSubscription) -> Response {
    axum::Json(json!({
        "jsonapi": { "version": "1.0" },
        "data": FakeLemonSqueezy::resource(sub),
    }))
    .into_response()
}

async fn ls_get(
    State(fake): State<FakeLemonSqueezy>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    record(
        &fake.calls,
        "GET",
        &format!("/v1/subscriptions/{id}"),
        &headers,
        "",
    );
    if !bearer_ok(&headers, &fake.api_key) {
        return ls_error(StatusCode::UNAUTHORIZED, "Unauthenticated.");
    }
    match fake.state.lock().unwrap().subscriptions.get(&id) {
        Some(sub) => ls_answer(sub),
        None => ls_error(StatusCode::NOT_FOUND, "Not found"),
    }
}

async fn ls_patch(
    State(fake): State<FakeLemonSqueezy>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    record(
        &fake.calls,
        "PATCH",
        &format!("/v1/subscriptions/{id}"),
        &headers,
        &body,
    );
    if let Some(r) = ls_check(&fake, &headers) {
        return r;
    }
    let req: Value = serde_json::from_str(&body).unwrap_or_default();
    if req["data"]["id"].as_str() != Some(id.as_str()) {
        return ls_error(StatusCode::CONFLICT, "The id does not match the URL.");
    }
    if !fake.state.lock().unwrap().subscriptions.contains_key(&id) {
        return ls_error(StatusCode::NOT_FOUND, "Not found");
    }
    let a = req["data"]["attributes"].clone();
    let before = fake.subscription(&id).variant_id;
    if a["invoice_immediately"] == json!(true)
        && a["variant_id"].as_u64().is_some_and(|v| v != before)
    {
        // The prorated difference is billed now, in an invoice of its own.
        let mut state = fake.state.lock().unwrap();
        let n = 5000 + state.invoices.len();
        state.invoices.push(RaisedInvoice {
            id: n.to_string(),
            subscription: id.clone(),
            reason: "updated".into(),
        });
    }
    fake.update(&id, |sub| {
        if let Some(v) = a["variant_id"].as_u64() {
            sub.variant_id = v;
        }
        if a["cancelled"] == json!(false) {
            sub.cancelled = false;
            sub.status = "active".into();
            sub.ends_at = None;
        }
    });
    ls_answer(&fake.subscription(&id))
}

async fn ls_delete(
    State(fake): State<FakeLemonSqueezy>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    record(
        &fake.calls,
        "DELETE",
        &format!("/v1/subscriptions/{id}"),
        &headers,
        "",
    );
    if !bearer_ok(&headers, &fake.api_key) {
        return ls_error(StatusCode::UNAUTHORIZED, "Unauthenticated.");
    }
    if !fake.state.lock().unwrap().subscriptions.contains_key(&id) {
        return ls_error(StatusCode::NOT_FOUND, "Not found");
    }
    fake.update(&id, |sub| {
        sub.cancelled = true;
        sub.status = "cancelled".into();
        sub.ends_at = Some(sub.renews_at);
    });
    ls_answer(&fake.subscription(&id))
}

// ---- Stripe ----------------------------------------------------------------

/// A subscription as the fake Stripe holds it.
#[derive(Debug, Clone)]
pub struct StripeSubscription {
    pub id: String,
    pub user_id: String,
    pub price: String,
    pub status: String,
    pub cancel_at_period_end: bool,
    pub period_start: i64,
    pub period_end: i64,
}

#[derive(Clone)]
pub struct FakeStripe {
    pub api_key: String,
    pub subscriptions: Arc<Mutex<HashMap<String, StripeSubscription>>>,
    /// Invoices raised by plan changes, oldest first.
    invoices: Arc<Mutex<Vec<RaisedInvoice>>>,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl FakeStripe {
    pub async fn start(api_key: &str) -> (Self, String) {
        let fake = FakeStripe {
            api_key: api_key.to_owned(),
            subscriptions: Arc::default(),
            invoices: Arc::default(),
            calls: Arc::default(),
        };
        let app = Router::new()
            .route("/v1/checkout/sessions", post(stripe_checkout))
            .route(
                "/v1/subscriptions/{id}",
                get(stripe_get).post(stripe_update).delete(stripe_delete),
            )
            .with_state(fake.clone());
        (fake.clone(), serve(app).await)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// What a completed Checkout Session makes: an active subscription.
    pub fn subscribe(&self, user_id: &str, price: &str) -> String {
        let id = format!("sub_{}", uuid::Uuid::new_v4().simple());
        let now = Utc::now();
        self.subscriptions.lock().unwrap().insert(
            id.clone(),
            StripeSubscription {
                id: id.clone(),
                user_id: user_id.into(),
                price: price.into(),
                status: "active".into(),
                cancel_at_period_end: false,
                period_start: now.timestamp(),
                period_end: now.checked_add_months(Months::new(1)).unwrap().timestamp(),
            },
        );
        id
    }

    /// The Subscription object (API version 2020-03-02, as the fixture).
    fn object(sub: &StripeSubscription) -> Value {
        json!({
            "id": sub.id,
            "object": "subscription",
            "billing_cycle_anchor": sub.period_start,
            "cancel_at_period_end": sub.cancel_at_period_end,
            "collection_method": "charge_automatically",
            "created": sub.period_start,
            "current_period_start": sub.period_start,
            "current_period_end": sub.period_end,
            "customer": "cus_IhGfebO16cMIGN",
            "items": {
                "object": "list",
                "data": [{
                    "id": format!("si_{}", &sub.id[4..]),
                    "object": "subscription_item",
                    "price": { "id": sub.price, "object": "price", "recurring": { "interval": "month" } },
                    "quantity": 1,
                    "subscription": sub.id
                }]
            },
            "livemode": false,
            "metadata": { "user_id": sub.user_id },
            "plan": { "id": sub.price, "object": "plan" },
            "status": sub.status
        })
    }

    /// A signed-shape event body (`created` = `created`) about `object`.
    pub fn event(&self, kind: &str, object: Value, created: i64) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "id": format!("evt_{}", uuid::Uuid::new_v4().simple()),
            "object": "event",
            "api_version": "2020-03-02",
            "created": created,
            "data": { "object": object },
            "livemode": false,
            "pending_webhooks": 1,
            "request": { "id": null, "idempotency_key": null },
            "type": kind
        }))
        .unwrap()
    }

    pub fn subscription_event(&self, kind: &str, id: &str, created: i64) -> Vec<u8> {
        let sub = self.subscriptions.lock().unwrap()[id].clone();
        self.event(kind, Self::object(&sub), created)
    }

    /// An `invoice.*` event for invoice `invoice` of subscription `id`,
    /// raised for `reason` (`billing_reason`: subscription_create,
    /// subscription_cycle, subscription_update …), in the newer invoice
    /// shape (the subscription under `parent.subscription_details`).
    pub fn invoice_event(
        &self,
        kind: &str,
        id: &str,
        invoice: &str,
        reason: &str,
        created: i64,
    ) -> Vec<u8> {
        let sub = self.subscriptions.lock().unwrap()[id].clone();
        let template: Value = serde_json::from_str(STRIPE_INVOICE).expect("the template is JSON");
        let mut object = template["data"]["object"].clone();
        let failed = kind.ends_with("failed");
        object["id"] = json!(invoice);
        object["billing_reason"] = json!(reason);
        object["created"] = json!(created);
        object["parent"]["subscription_details"]["subscription"] = json!(sub.id);
        object["status"] = json!(if failed { "open" } else { "paid" });
        object["status_transitions"]["paid_at"] = if failed { Value::Null } else { json!(created) };
        if failed {
            object["amount_paid"] = json!(0);
            object["amount_remaining"] = object["amount_due"].clone();
        }
        let item = format!("si_{}", &sub.id[4..]);
        let mut lines = object["lines"]["data"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if reason != "subscription_update" {
            // A period's whole price: one line, no proration.
            lines.truncate(1);
            let line = &mut lines[0];
            line["amount"] = json!(7500);
            line["description"] = json!("1 × Pingvas (at $75.00 / month)");
            line["parent"]["subscription_item_details"]["proration"] = json!(false);
            line["parent"]["subscription_item_details"]["invoice_item"] = Value::Null;
            line["pricing"]["price_details"]["price"] = json!(sub.price);
            line["period"] = json!({ "start": sub.period_start, "end": sub.period_end });
            for k in ["amount_due", "amount_paid", "subtotal", "total"] {
                object[k] = json!(if failed && k == "amount_paid" {
                    0
                } else {
                    7500
                });
            }
        } else {
            // The new price from now to the period's end.
            lines[1]["pricing"]["price_details"]["price"] = json!(sub.price);
        }
        for line in &mut lines {
            line["invoice"] = json!(invoice);
            line["parent"]["subscription_item_details"]["subscription"] = json!(sub.id);
            line["parent"]["subscription_item_details"]["subscription_item"] = json!(item);
        }
        object["lines"]["total_count"] = json!(lines.len());
        object["lines"]["data"] = Value::Array(lines);
        object["lines"]["url"] = json!(format!("/v1/invoices/{invoice}/lines"));
        self.event(kind, object, created)
    }

    /// The invoices plan changes raised, oldest first.
    pub fn invoices(&self) -> Vec<RaisedInvoice> {
        self.invoices.lock().unwrap().clone()
    }
}

fn stripe_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": { "message": message, "type": "invalid_request_error" } })),
    )
        .into_response()
}

fn form(body: &str) -> HashMap<String, String> {
    form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

async fn stripe_checkout(
    State(fake): State<FakeStripe>,
    headers: HeaderMap,
    body: String,
) -> Response {
    record(
        &fake.calls,
        "POST",
        "/v1/checkout/sessions",
        &headers,
        &body,
    );
    if !bearer_ok(&headers, &fake.api_key) {
        return stripe_error(StatusCode::UNAUTHORIZED, "Invalid API Key provided");
    }
    let f = form(&body);
    for key in ["mode", "line_items[0][price]", "success_url"] {
        if !f.contains_key(key) {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                &format!("Missing required param: {key}."),
            );
        }
    }
    let id = format!("cs_test_{}", uuid::Uuid::new_v4().simple());
    let expires = Utc::now().timestamp() + 86_400;
    axum::Json(json!({
        "id": id,
        "object": "checkout.session",
        "client_reference_id": f.get("client_reference_id"),
        "customer_email": f.get("customer_email"),
        "expires_at": expires,
        "metadata": { "user_id": f.get("metadata[user_id]") },
        "mode": f["mode"],
        "payment_status": "unpaid",
        "status": "open",
        "success_url": f["success_url"],
        "url": format!("https://checkout.stripe.com/c/pay/{id}")
    }))
    .into_response()
}

async fn stripe_get(
    State(fake): State<FakeStripe>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    record(
        &fake.calls,
        "GET",
        &format!("/v1/subscriptions/{id}"),
        &headers,
        "",
    );
    if !bearer_ok(&headers, &fake.api_key) {
        return stripe_error(StatusCode::UNAUTHORIZED, "Invalid API Key provided");
    }
    match fake.subscriptions.lock().unwrap().get(&id) {
        Some(sub) => axum::Json(FakeStripe::object(sub)).into_response(),
        None => stripe_error(StatusCode::NOT_FOUND, "No such subscription"),
    }
}

async fn stripe_update(
    State(fake): State<FakeStripe>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    record(
        &fake.calls,
        "POST",
        &format!("/v1/subscriptions/{id}"),
        &headers,
        &body,
    );
    if !bearer_ok(&headers, &fake.api_key) {
        return stripe_error(StatusCode::UNAUTHORIZED, "Invalid API Key provided");
    }
    let f = form(&body);
    let mut subs = fake.subscriptions.lock().unwrap();
    let Some(sub) = subs.get_mut(&id) else {
        return stripe_error(StatusCode::NOT_FOUND, "No such subscription");
    };
    if let Some(p) = f.get("items[0][price]") {
        if *p != sub.price
            && f.get("proration_behavior").map(String::as_str) == Some("always_invoice")
        {
            // The prorated difference is invoiced (and charged) now.
            fake.invoices.lock().unwrap().push(RaisedInvoice {
                id: format!("in_{}", uuid::Uuid::new_v4().simple()),
                subscription: id.clone(),
                reason: "subscription_update".into(),
            });
        }
        sub.price = p.clone();
    }
    if let Some(c) = f.get("cancel_at_period_end") {
        sub.cancel_at_period_end = c == "true";
    }
    axum::Json(FakeStripe::object(sub)).into_response()
}

async fn stripe_delete(
    State(fake): State<FakeStripe>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    record(
        &fake.calls,
        "DELETE",
        &format!("/v1/subscriptions/{id}"),
        &headers,
        "",
    );
    let mut subs = fake.subscriptions.lock().unwrap();
    let Some(sub) = subs.get_mut(&id) else {
        return stripe_error(StatusCode::NOT_FOUND, "No such subscription");
    };
    sub.status = "canceled".into();
    axum::Json(FakeStripe::object(sub)).into_response()
}
