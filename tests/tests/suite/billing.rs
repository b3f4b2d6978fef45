//! Subscriptions through the real Lemon Squeezy and Stripe adapter
//! components, against fake provider APIs, with webhooks signed the
//! providers' ways.

use std::time::Duration;

use pingvas_tests::billing::*;
use pingvas_tests::fakes::{FakeLemonSqueezy, FakeStripe, hmac_hex, stripe_signature};
use pingvas_tests::{Session, TestServer, assert_error, plugin_path};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn me(srv: &TestServer, s: &Session) -> Value {
    let (status, body) = srv.get("/users/me", Some(&s.access)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].clone()
}

/// Polls `check` until it holds (a background apply has no event of its
/// own when it fails); gives up after 20 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn events_with_status(srv: &TestServer, admin: &Session, status: &str) -> Vec<Value> {
    let (code, body) = srv
        .get(
            &format!("/admin/billing/events?status={status}"),
            Some(&admin.access),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn lemon_squeezy_lifecycle_from_checkout_to_expiry() {
    let (srv, fake, _dir, _path) = ls_server().await;
    let user = srv.signup("payer@example.com").await;
    let mut events = srv.events(&user.access, None).await;

    // Checkout: the adapter calls the provider's API with the user's id.
    let (status, body) = srv
        .post(
            "/subscriptions/checkout",
            Some(&user.access),
            json!({ "plan": "pro", "billing_cycle": "monthly" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let url = body["data"]["checkout_url"].as_str().unwrap();
    assert!(
        url.starts_with("https://pingvas.lemonsqueezy.com/checkout/custom/"),
        "{url}"
    );
    let call = fake.calls().pop().unwrap();
    assert_eq!(
        (call.method.as_str(), call.path.as_str()),
        ("POST", "/v1/checkouts")
    );
    assert_eq!(
        call.authorization.as_deref(),
        Some(&*format!("Bearer {LS_KEY}"))
    );
    assert_eq!(
        call.content_type.as_deref(),
        Some("application/vnd.api+json")
    );
    let sent: Value = serde_json::from_str(&call.body).unwrap();
    assert_eq!(
        sent["data"]["attributes"]["checkout_data"]["custom"]["user_id"],
        user.user_id
    );
    assert_eq!(
        sent["data"]["relationships"]["variant"]["data"]["id"],
        PRO_MONTHLY.to_string()
    );
    assert_eq!(
        sent["data"]["relationships"]["store"]["data"]["id"],
        "12345"
    );

    // The buyer pays; the provider tells us.
    let sub = fake.subscribe(&user.user_id, PRO_MONTHLY);
    ls_deliver(&srv, &fake.subscription_event("subscription_created", &sub)).await;
    let update = events.until_type("subscription.updated").await;
    assert_eq!(update["data"]["tier"], "pro");
    assert_eq!(update["data"]["status"], "active");
    let profile = me(&srv, &user).await;
    assert_eq!(profile["tier"], "pro");
    assert_eq!(profile["subscription"]["plan"], "pro");
    assert_eq!(profile["features"]["flux_model"], true);
    let (_, current) = srv.get("/subscriptions/current", Some(&user.access)).await;
    let c = &current["data"];
    assert_eq!(c["plan"], json!({ "name": "pro", "display_name": "Pro" }));
    assert_eq!(
        (c["status"].as_str(), c["billing_cycle"].as_str()),
        (Some("active"), Some("monthly"))
    );
    assert_eq!(
        c["payment_method"],
        json!({ "type": "card", "last_four": "4242", "brand": "visa" })
    );
    assert_eq!(c["cancel_at_period_end"], false);

    // The first invoice grants the month's credits, once.
    let before = srv.credits(&user.user_id).await.0;
    let paid = fake.invoice_event("subscription_payment_success", &sub, 9001, "initial");
    ls_deliver(&srv, &paid).await;
    let credits = events.until_type("credits.updated").await;
    assert_eq!(credits["data"]["balance"], before + 15000);
    ls_deliver(&srv, &paid).await; // a replay
    // Renewal: a new period and a new invoice.
    fake.renew(&sub);
    ls_deliver(&srv, &fake.subscription_event("subscription_updated", &sub)).await;
    ls_deliver(
        &srv,
        &fake.invoice_event("subscription_payment_success", &sub, 9002, "renewal"),
    )
    .await;
    let credits = events.until_type("credits.updated").await;
    assert_eq!(
        credits["data"]["balance"],
        before + 30000,
        "the replay granted nothing"
    );
    assert_eq!(srv.credits(&user.user_id).await.0, before + 30000);

    // Cancel: the plan stays until the period ends.
    let (status, body) = srv
        .post(
            "/subscriptions/cancel",
            Some(&user.access),
            json!({ "reason": "Too expensive" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["status"], "cancelling");
    let ends_at = body["data"]["ends_at"].as_str().unwrap().to_owned();
    assert!(
        body["data"]["message"].as_str().unwrap().contains("종료"),
        "{body}"
    );
    assert_eq!(fake.calls().pop().unwrap().method, "DELETE");
    assert_eq!(me(&srv, &user).await["tier"], "pro");
    let (_, current) = srv.get("/subscriptions/current", Some(&user.access)).await;
    assert_eq!(current["data"]["cancel_at_period_end"], true);
    assert_eq!(
        current["data"]["current_period_end"].as_str(),
        Some(&*ends_at)
    );
    ls_deliver(
        &srv,
        &fake.subscription_event("subscription_cancelled", &sub),
    )
    .await;

    // Resume undoes it; cancel again; then the period ends.
    let (status, body) = srv
        .post("/subscriptions/resume", Some(&user.access), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["data"]["status"].as_str(),
            body["data"]["cancel_at_period_end"].as_bool()
        ),
        (Some("active"), Some(false))
    );
    let (status, _) = srv
        .post("/subscriptions/cancel", Some(&user.access), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    fake.update(&sub, |s| s.status = "expired".into());
    ls_deliver(&srv, &fake.subscription_event("subscription_expired", &sub)).await;
    loop {
        let e = events.until_type("subscription.updated").await;
        if e["data"]["status"] == "expired" {
            assert_eq!(e["data"]["tier"], "free");
            break;
        }
    }
    let profile = me(&srv, &user).await;
    assert_eq!(
        (profile["tier"].as_str(), &profile["subscription"]),
        (Some("free"), &Value::Null)
    );
    let (_, current) = srv.get("/subscriptions/current", Some(&user.access)).await;
    assert_eq!(current["data"], Value::Null);
    assert_eq!(
        srv.credits(&user.user_id).await.0,
        before + 30000,
        "credits stay"
    );
}

#[tokio::test]
async fn upgrade_grants_the_difference_once_its_invoice_is_paid_and_downgrade_waits_for_the_period()
{
    let (srv, fake, _dir, _path) = ls_server().await;
    let user = srv.signup("upgrader@example.com").await;
    let mut events = srv.events(&user.access, None).await;
    let sub = fake.subscribe(&user.user_id, PRO_MONTHLY);
    ls_deliver(&srv, &fake.subscription_event("subscription_created", &sub)).await;
    events.until_type("subscription.updated").await;

    for (target, reason) in [
        ("pro", "not higher"),
        ("starter", "not higher"),
        ("platinum", "unknown plan"),
        ("enterprise", "contract"),
    ] {
        let got = srv
            .post(
                "/subscriptions/upgrade",
                Some(&user.access),
                json!({ "target_plan": target }),
            )
            .await;
        let details =
            assert_error(&got, StatusCode::BAD_REQUEST, "INVALID_PARAMETERS")["details"].clone();
        assert_eq!(details["field"], "target_plan", "{target}");
        assert!(
            details["reason"].as_str().unwrap().contains(reason),
            "{target}: {details}"
        );
    }

    ls_deliver(
        &srv,
        &fake.invoice_event("subscription_payment_success", &sub, 9100, "initial"),
    )
    .await;
    let before = settled_balance(&srv, &user.user_id).await;
    let (status, body) = srv
        .post(
            "/subscriptions/upgrade",
            Some(&user.access),
            json!({ "target_plan": "studio" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["previous_plan"], "pro");
    assert_eq!(body["data"]["new_plan"], "studio");
    assert_eq!(body["data"]["effective_immediately"], true);
    assert_eq!(
        (
            body["data"]["credits_granted"].as_i64(),
            body["data"]["credits_pending"].as_i64()
        ),
        (Some(0), Some(15000)),
        "studio 30000 − pro 15000, once the provider is paid"
    );
    assert_eq!(
        settled_balance(&srv, &user.user_id).await,
        before,
        "nothing before the money"
    );
    assert_eq!(me(&srv, &user).await["tier"], "studio");
    let patch: Value = serde_json::from_str(&fake.calls().pop().unwrap().body).unwrap();
    assert_eq!(
        patch["data"]["attributes"],
        json!({ "variant_id": STUDIO_MONTHLY, "invoice_immediately": true })
    );
    // The provider's webhook of the same change changes nothing more.
    ls_deliver(&srv, &fake.subscription_event("subscription_updated", &sub)).await;
    // Its prorated invoice (`billing_reason: updated`) grants the
    // difference, once.
    let [invoice] = &fake.invoices()[..] else {
        panic!("one invoice for the change: {:?}", fake.invoices())
    };
    assert_eq!(invoice.reason, "updated");
    let paid = fake.invoice_event(
        "subscription_payment_success",
        &sub,
        invoice.id.parse().unwrap(),
        "updated",
    );
    ls_deliver(&srv, &paid).await;
    assert_eq!(settled_balance(&srv, &user.user_id).await, before + 15000);
    ls_deliver(&srv, &paid).await; // a replay
    assert_eq!(settled_balance(&srv, &user.user_id).await, before + 15000);

    // Downgrade: the provider may switch the variant now; the tier waits.
    let (status, body) = srv
        .post(
            "/subscriptions/downgrade",
            Some(&user.access),
            json!({ "target_plan": "pro" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["effective_immediately"], false);
    let patch: Value = serde_json::from_str(&fake.calls().pop().unwrap().body).unwrap();
    assert_eq!(
        patch["data"]["attributes"],
        json!({ "variant_id": PRO_MONTHLY, "disable_prorations": true })
    );
    ls_deliver(&srv, &fake.subscription_event("subscription_updated", &sub)).await;
    let (_, current) = srv.get("/subscriptions/current", Some(&user.access)).await;
    assert_eq!(
        (
            current["data"]["plan"]["name"].as_str(),
            current["data"]["pending_plan"].as_str()
        ),
        (Some("studio"), Some("pro"))
    );
    assert_eq!(me(&srv, &user).await["tier"], "studio");
    // The next period starts on the lower plan.
    fake.renew(&sub);
    ls_deliver(&srv, &fake.subscription_event("subscription_updated", &sub)).await;
    loop {
        let e = events.until_type("subscription.updated").await;
        if e["data"]["tier"] == "pro" {
            assert_eq!(e["data"]["pending_plan"], Value::Null);
            break;
        }
    }

    // A downgrade that waits is replaced by an upgrade.
    let (status, _) = srv
        .post(
            "/subscriptions/downgrade",
            Some(&user.access),
            json!({ "target_plan": "starter" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, current) = srv.get("/subscriptions/current", Some(&user.access)).await;
    assert_eq!(current["data"]["pending_plan"], "starter");
    let (status, body) = srv
        .post(
            "/subscriptions/upgrade",
            Some(&user.access),
            json!({ "target_plan": "studio" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, current) = srv.get("/subscriptions/current", Some(&user.access)).await;
    assert_eq!(
        (
            current["data"]["plan"]["name"].as_str(),
            &current["data"]["pending_plan"]
        ),
        (Some("studio"), &Value::Null)
    );
    assert_eq!(me(&srv, &user).await["tier"], "studio");
}

async fn upgrade(srv: &TestServer, s: &Session, target: &str) -> Value {
    let (status, body) = srv
        .post(
            "/subscriptions/upgrade",
            Some(&s.access),
            json!({ "target_plan": target }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].clone()
}

/// A Lemon Squeezy Pro subscription whose first invoice is paid; the
/// balance then.
async fn ls_pro(srv: &TestServer, fake: &FakeLemonSqueezy, user: &Session) -> (String, i64) {
    let sub = fake.subscribe(&user.user_id, PRO_MONTHLY);
    ls_deliver(srv, &fake.subscription_event("subscription_created", &sub)).await;
    ls_deliver(
        srv,
        &fake.invoice_event("subscription_payment_success", &sub, 9200, "initial"),
    )
    .await;
    (sub, settled_balance(srv, &user.user_id).await)
}

#[tokio::test]
async fn a_stripe_upgrade_grants_the_difference_once_when_its_prorated_invoice_is_paid() {
    let (srv, fake, _dir, _path) = stripe_server().await;
    let user = srv.signup("stripe-upgrade@example.com").await;
    let sub = fake.subscribe(&user.user_id, "price_pro_monthly");
    let now = || chrono::Utc::now().timestamp();
    let created = fake.subscription_event("customer.subscription.created", &sub, now());
    assert_eq!(stripe_deliver(&srv, &created).await.0, StatusCode::OK);
    let signed_up = settled_balance(&srv, &user.user_id).await;
    let first = fake.invoice_event(
        "invoice.paid",
        &sub,
        "in_first",
        "subscription_create",
        now(),
    );
    assert_eq!(stripe_deliver(&srv, &first).await.0, StatusCode::OK);
    let before = settled_balance(&srv, &user.user_id).await;
    assert_eq!(before, signed_up + 15000, "the first invoice: Pro's month");

    // Pro → Studio: the difference waits for the prorated invoice.
    let up = upgrade(&srv, &user, "studio").await;
    assert_eq!(
        (
            up["credits_granted"].as_i64(),
            up["credits_pending"].as_i64()
        ),
        (Some(0), Some(15000))
    );
    assert_eq!(settled_balance(&srv, &user.user_id).await, before);
    assert_eq!(me(&srv, &user).await["tier"], "studio");

    // Stripe tells the change, then the invoice it raised
    // (`billing_reason: subscription_update`) is paid: the difference, once.
    let updated = fake.subscription_event("customer.subscription.updated", &sub, now());
    assert_eq!(stripe_deliver(&srv, &updated).await.0, StatusCode::OK);
    let [invoice] = &fake.invoices()[..] else {
        panic!("one invoice for the change: {:?}", fake.invoices())
    };
    assert_eq!(invoice.reason, "subscription_update");
    let paid = fake.invoice_event(
        "invoice.paid",
        &sub,
        &invoice.id,
        "subscription_update",
        now(),
    );
    assert_eq!(stripe_deliver(&srv, &paid).await.0, StatusCode::OK);
    assert_eq!(
        settled_balance(&srv, &user.user_id).await,
        before + 15000,
        "15 000, not a month of Studio on top"
    );
    // The same delivery again, and Stripe's other event of the same
    // invoice: nothing more.
    assert_eq!(stripe_deliver(&srv, &paid).await.0, StatusCode::OK);
    let succeeded = fake.invoice_event(
        "invoice.payment_succeeded",
        &sub,
        &invoice.id,
        "subscription_update",
        now(),
    );
    assert_eq!(stripe_deliver(&srv, &succeeded).await.0, StatusCode::OK);
    assert_eq!(settled_balance(&srv, &user.user_id).await, before + 15000);

    // A renewal still grants the month, Studio's now.
    {
        let mut subs = fake.subscriptions.lock().unwrap();
        let s = subs.get_mut(&sub).unwrap();
        s.period_start = s.period_end;
        s.period_end += 30 * 86_400;
    }
    let renewed = fake.subscription_event("customer.subscription.updated", &sub, now());
    assert_eq!(stripe_deliver(&srv, &renewed).await.0, StatusCode::OK);
    let cycle = fake.invoice_event(
        "invoice.paid",
        &sub,
        "in_renewal",
        "subscription_cycle",
        now(),
    );
    assert_eq!(stripe_deliver(&srv, &cycle).await.0, StatusCode::OK);
    assert_eq!(
        settled_balance(&srv, &user.user_id).await,
        before + 15000 + 30000
    );
    // An invoice for anything else (a one-off charge) grants nothing.
    let manual = fake.invoice_event("invoice.paid", &sub, "in_manual", "manual", now());
    assert_eq!(stripe_deliver(&srv, &manual).await.0, StatusCode::OK);
    assert_eq!(
        settled_balance(&srv, &user.user_id).await,
        before + 15000 + 30000
    );
}

#[tokio::test]
async fn an_upgrade_is_refused_while_the_last_payment_failed() {
    let (srv, fake, _dir, _path) = ls_server().await;
    let user = srv.signup("past-due@example.com").await;
    let (sub, before) = ls_pro(&srv, &fake, &user).await;
    fake.update(&sub, |s| s.status = "past_due".into());
    ls_deliver(&srv, &fake.subscription_event("subscription_updated", &sub)).await;
    settled_balance(&srv, &user.user_id).await;

    let calls = fake.calls().len();
    let got = srv
        .post(
            "/subscriptions/upgrade",
            Some(&user.access),
            json!({ "target_plan": "studio" }),
        )
        .await;
    let details = assert_error(&got, StatusCode::CONFLICT, "CONFLICT")["details"].clone();
    assert_eq!(details["reason"], "subscription_past_due", "{details}");
    assert_eq!(fake.calls().len(), calls, "the provider was not asked");
    assert!(fake.invoices().is_empty());
    assert_eq!(me(&srv, &user).await["tier"], "pro");
    assert_eq!(settled_balance(&srv, &user.user_id).await, before);

    // Once the payment is collected, upgrades go through again.
    fake.update(&sub, |s| s.status = "active".into());
    ls_deliver(&srv, &fake.subscription_event("subscription_updated", &sub)).await;
    settled_balance(&srv, &user.user_id).await;
    assert_eq!(
        upgrade(&srv, &user, "studio").await["credits_pending"],
        15000
    );
}

#[tokio::test]
async fn an_upgrade_whose_invoice_is_never_paid_grants_nothing() {
    let (srv, fake, _dir, _path) = ls_server().await;
    let user = srv.signup("never-paid@example.com").await;
    let (sub, before) = ls_pro(&srv, &fake, &user).await;
    assert_eq!(
        upgrade(&srv, &user, "studio").await["credits_pending"],
        15000
    );
    let [invoice] = &fake.invoices()[..] else {
        panic!("one invoice for the change: {:?}", fake.invoices())
    };
    let invoice: u64 = invoice.id.parse().unwrap();
    // Its payment fails.
    ls_deliver(
        &srv,
        &fake.invoice_event("subscription_payment_failed", &sub, invoice, "updated"),
    )
    .await;
    assert_eq!(settled_balance(&srv, &user.user_id).await, before);

    // The next period starts (on Studio) and is paid: its month only.
    fake.renew(&sub);
    ls_deliver(&srv, &fake.subscription_event("subscription_updated", &sub)).await;
    ls_deliver(
        &srv,
        &fake.invoice_event("subscription_payment_success", &sub, 9301, "renewal"),
    )
    .await;
    assert_eq!(settled_balance(&srv, &user.user_id).await, before + 30000);
    // Paid after its period ended, the change grants nothing: the period
    // it was for is over, and Studio's month is granted.
    ls_deliver(
        &srv,
        &fake.invoice_event("subscription_payment_success", &sub, invoice, "updated"),
    )
    .await;
    assert_eq!(settled_balance(&srv, &user.user_id).await, before + 30000);
}

#[tokio::test]
async fn a_return_to_a_higher_plan_within_the_period_grants_nothing_more() {
    let (srv, fake, _dir, _path) = ls_server().await;
    let user = srv.signup("yo-yo@example.com").await;
    let (sub, before) = ls_pro(&srv, &fake, &user).await;
    upgrade(&srv, &user, "studio").await;
    let paid = |fake: &FakeLemonSqueezy, n: usize| {
        let invoice = &fake.invoices()[n];
        fake.invoice_event(
            "subscription_payment_success",
            &invoice.subscription,
            invoice.id.parse().unwrap(),
            "updated",
        )
    };
    ls_deliver(&srv, &paid(&fake, 0)).await;
    assert_eq!(settled_balance(&srv, &user.user_id).await, before + 15000);

    // Back to Pro at the provider (not through the studio), then up again
    // within the same period: Studio's month is granted already.
    fake.update(&sub, |s| s.variant_id = PRO_MONTHLY);
    ls_deliver(&srv, &fake.subscription_event("subscription_updated", &sub)).await;
    settled_balance(&srv, &user.user_id).await;
    assert_eq!(me(&srv, &user).await["tier"], "pro");
    let up = upgrade(&srv, &user, "studio").await;
    assert_eq!(up["credits_pending"], 0, "{up}");
    assert_eq!(fake.invoices().len(), 2);
    ls_deliver(&srv, &paid(&fake, 1)).await;
    assert_eq!(settled_balance(&srv, &user.user_id).await, before + 15000);
    assert_eq!(me(&srv, &user).await["tier"], "studio");
}

#[tokio::test]
async fn webhooks_need_a_valid_signature_and_apply_once_in_order() {
    let (srv, fake, _dir, _path) = ls_server().await;
    let admin = srv.signup_admin("ops@example.com").await;
    let user = srv.signup("order@example.com").await;
    let sub = fake.subscribe(&user.user_id, PRO_MONTHLY);
    let created = fake.subscription_event("subscription_created", &sub);

    // Bad or missing signatures: 401 in the envelope, nothing stored.
    let wrong = hmac_hex("another-secret", &created);
    for header in [
        None,
        Some(("X-Signature", wrong)),
        Some(("X-Signature", "sha256=zz".to_owned())),
    ] {
        let got = deliver(&srv, "lemon-squeezy", header, &created).await;
        assert_error(&got, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }
    let mut tampered = created.clone();
    let at = tampered.len() - 3;
    tampered[at] = b' ';
    let got = deliver(
        &srv,
        "lemon-squeezy",
        Some(("X-Signature", hmac_hex(LS_SECRET, &created))),
        &tampered,
    )
    .await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    // Not the configured provider.
    let huge = vec![b' '; (1 << 20) + 1];
    let sig = hmac_hex(LS_SECRET, &huge);
    let got = deliver(&srv, "lemon-squeezy", Some(("X-Signature", sig)), &huge).await;
    assert_error(&got, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
    let got = deliver(
        &srv,
        "stripe",
        Some(("Stripe-Signature", "t=1,v1=00".into())),
        &created,
    )
    .await;
    assert_error(&got, StatusCode::NOT_FOUND, "NOT_FOUND");
    let (_, all) = srv.get("/admin/billing/events", Some(&admin.access)).await;
    assert_eq!(all["meta"]["total"], 0, "{all}");
    let got = srv.get("/admin/billing/events", Some(&user.access)).await;
    assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN");

    // A payment before its subscription fails, then applies once the
    // subscription is known.
    let before = srv.credits(&user.user_id).await.0;
    ls_deliver(
        &srv,
        &fake.invoice_event("subscription_payment_success", &sub, 77, "initial"),
    )
    .await;
    eventually("the early payment to fail", || async {
        events_with_status(&srv, &admin, "failed").await.len() == 1
    })
    .await;
    let failed = events_with_status(&srv, &admin, "failed").await;
    assert!(
        failed[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("not known yet"),
        "{failed:?}"
    );
    // The spec's `sha256=` form is accepted too.
    let sig = format!("sha256={}", hmac_hex(LS_SECRET, &created));
    let got = deliver(&srv, "lemon-squeezy", Some(("X-Signature", sig)), &created).await;
    assert_eq!(got.0, StatusCode::OK);
    eventually("both events applied", || async {
        events_with_status(&srv, &admin, "applied").await.len() == 2
    })
    .await;
    assert!(events_with_status(&srv, &admin, "failed").await.is_empty());
    assert_eq!(srv.credits(&user.user_id).await.0, before + 15000);

    // Out of order: a newer state (past_due) then an older one (active).
    fake.update(&sub, |s| s.status = "active".into());
    let older = fake.subscription_event("subscription_updated", &sub);
    fake.update(&sub, |s| s.status = "past_due".into());
    let newer = fake.subscription_event("subscription_updated", &sub);
    ls_deliver(&srv, &newer).await;
    ls_deliver(&srv, &older).await;
    eventually("four events applied", || async {
        events_with_status(&srv, &admin, "applied").await.len() == 4
    })
    .await;
    let (_, current) = srv.get("/subscriptions/current", Some(&user.access)).await;
    assert_eq!(
        current["data"]["status"], "past_due",
        "the older state did not win"
    );
    assert_eq!(
        me(&srv, &user).await["tier"],
        "pro",
        "past_due keeps the plan for now"
    );
    // Unpaid drops it.
    fake.update(&sub, |s| s.status = "unpaid".into());
    ls_deliver(&srv, &fake.subscription_event("subscription_updated", &sub)).await;
    eventually("the tier to drop", || async {
        me(&srv, &user).await["tier"] == "free"
    })
    .await;
}

#[tokio::test]
async fn stripe_checkout_signatures_and_lifecycle() {
    let (fake, base) = FakeStripe::start(STRIPE_KEY).await;
    let (srv, _dir, _path) = server_with(&stripe_toml(&base, &plugin_path("stripe"))).await;
    let user = srv.signup("stripe@example.com").await;
    let mut events = srv.events(&user.access, None).await;

    let (status, body) = srv
        .post(
            "/subscriptions/checkout",
            Some(&user.access),
            json!({ "plan": "pro" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["data"]["checkout_url"]
            .as_str()
            .unwrap()
            .starts_with("https://checkout.stripe.com/c/pay/cs_test_")
    );
    assert!(body["data"]["expires_at"].is_string());
    let call = fake.calls().pop().unwrap();
    let form: std::collections::HashMap<String, String> =
        form_urlencoded::parse(call.body.as_bytes())
            .into_owned()
            .collect();
    assert_eq!(form["mode"], "subscription");
    assert_eq!(form["line_items[0][price]"], "price_pro_monthly");
    assert_eq!(form["subscription_data[metadata][user_id]"], user.user_id);
    assert_eq!(
        call.authorization.as_deref(),
        Some(&*format!("Bearer {STRIPE_KEY}"))
    );

    let sub = fake.subscribe(&user.user_id, "price_pro_monthly");
    let now = chrono::Utc::now().timestamp();
    let created = fake.subscription_event("customer.subscription.created", &sub, now);
    // A stale timestamp (a replay from long ago) and a wrong secret are refused.
    for header in [
        stripe_signature(STRIPE_SECRET, now - 301, &created),
        stripe_signature("whsec_other", now, &created),
        format!("t={now}"),
    ] {
        let got = deliver(&srv, "stripe", Some(("Stripe-Signature", header)), &created).await;
        assert_error(&got, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }
    // Any v1 may match (a secret roll).
    let good = stripe_signature(STRIPE_SECRET, now, &created);
    let rolled = format!(
        "t={now},v1={},{}",
        "ab".repeat(32),
        good.split_once(',').unwrap().1
    );
    let got = deliver(&srv, "stripe", Some(("Stripe-Signature", rolled)), &created).await;
    assert_eq!(got, (StatusCode::OK, json!({ "success": true })));
    assert_eq!(
        events.until_type("subscription.updated").await["data"]["tier"],
        "pro"
    );

    let before = srv.credits(&user.user_id).await.0;
    let paid = fake.invoice_event("invoice.paid", &sub, "in_1234", "subscription_create", now);
    assert_eq!(stripe_deliver(&srv, &paid).await.0, StatusCode::OK);
    assert_eq!(
        events.until_type("credits.updated").await["data"]["balance"],
        before + 15000
    );

    let (status, body) = srv
        .post(
            "/subscriptions/upgrade",
            Some(&user.access),
            json!({ "target_plan": "studio" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let form: std::collections::HashMap<String, String> =
        form_urlencoded::parse(fake.calls().pop().unwrap().body.as_bytes())
            .into_owned()
            .collect();
    assert_eq!(
        (
            form["items[0][price]"].as_str(),
            form["proration_behavior"].as_str()
        ),
        ("price_studio_monthly", "always_invoice")
    );
    assert_eq!(me(&srv, &user).await["tier"], "studio");

    let (status, _) = srv
        .post("/subscriptions/cancel", Some(&user.access), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(fake.subscriptions.lock().unwrap()[&sub].cancel_at_period_end);
    let deleted = fake.subscription_event(
        "customer.subscription.deleted",
        &sub,
        chrono::Utc::now().timestamp() + 1,
    );
    assert_eq!(stripe_deliver(&srv, &deleted).await.0, StatusCode::OK);
    eventually("the tier to drop", || async {
        me(&srv, &user).await["tier"] == "free"
    })
    .await;
}

#[tokio::test]
async fn adapters_swap_on_a_running_server_and_a_broken_one_is_refused() {
    let (ls, ls_base) = FakeLemonSqueezy::start(LS_KEY).await;
    let (stripe, stripe_base) = FakeStripe::start(STRIPE_KEY).await;
    let (srv, dir, path) = server_with(&ls_toml(&ls_base, &plugin_path("lemon-squeezy"))).await;
    let admin = srv.signup_admin("swap-admin@example.com").await;
    let user = srv.signup("swap@example.com").await;

    let got = srv
        .post("/admin/billing/reload", Some(&user.access), json!({}))
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN");

    // A broken adapter file is refused; Lemon Squeezy keeps serving.
    let broken = dir.path().join("broken.wasm");
    std::fs::write(&broken, b"\0asm\x0d\0\x01\0 not really").unwrap();
    std::fs::write(&path, ls_toml(&ls_base, &broken)).unwrap();
    let got = srv
        .post("/admin/billing/reload", Some(&admin.access), json!({}))
        .await;
    let details =
        assert_error(&got, StatusCode::BAD_REQUEST, "VALIDATION_ERROR")["details"].clone();
    assert_eq!(details["field"], "billing_adapter");
    // A node component is no billing adapter either.
    std::fs::write(&path, ls_toml(&ls_base, &plugin_path("prompt-style"))).unwrap();
    let got = srv
        .post("/admin/billing/reload", Some(&admin.access), json!({}))
        .await;
    let details =
        assert_error(&got, StatusCode::BAD_REQUEST, "VALIDATION_ERROR")["details"].clone();
    assert_eq!(details["reason"], "wrong_world", "{details}");
    let ls_sub = ls.subscribe(&user.user_id, PRO_MONTHLY);
    ls_deliver(
        &srv,
        &ls.subscription_event("subscription_created", &ls_sub),
    )
    .await;

    // Swap to Stripe: its webhooks are taken at once.
    std::fs::write(&path, stripe_toml(&stripe_base, &plugin_path("stripe"))).unwrap();
    let (status, body) = srv
        .post("/admin/billing/reload", Some(&admin.access), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["provider"], "stripe");
    let other = srv.signup("swap2@example.com").await;
    let sub = stripe.subscribe(&other.user_id, "price_pro_monthly");
    let now = chrono::Utc::now().timestamp();
    let got = stripe_deliver(
        &srv,
        &stripe.subscription_event("customer.subscription.created", &sub, now),
    )
    .await;
    assert_eq!(got, (StatusCode::OK, json!({ "success": true })));
    eventually("the Stripe subscription", || async {
        me(&srv, &other).await["tier"] == "pro"
    })
    .await;
    // New checkouts go to Stripe.
    let (status, body) = srv
        .post(
            "/subscriptions/checkout",
            Some(&other.access),
            json!({ "plan": "studio", "billing_cycle": "monthly" }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "already subscribed: {body}");
    let third = srv.signup("swap3@example.com").await;
    let (status, body) = srv
        .post(
            "/subscriptions/checkout",
            Some(&third.access),
            json!({ "plan": "studio" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["data"]["checkout_url"]
            .as_str()
            .unwrap()
            .contains("checkout.stripe.com")
    );

    // Lemon Squeezy's retried webhooks still verify in the grace period.
    let before = srv.credits(&user.user_id).await.0;
    ls_deliver(
        &srv,
        &ls.invoice_event("subscription_payment_success", &ls_sub, 31, "initial"),
    )
    .await;
    eventually("the Lemon Squeezy payment", || async {
        srv.credits(&user.user_id).await.0 == before + 15000
    })
    .await;
}

#[tokio::test]
async fn without_an_adapter_plans_answer_and_the_rest_is_unavailable() {
    let srv = TestServer::start().await;
    let user = srv.signup("nobill@example.com").await;
    let (status, body) = srv.get("/subscriptions/plans", None).await;
    assert_eq!(status, StatusCode::OK);
    let plans = body["data"].as_array().unwrap();
    let names: Vec<_> = plans.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["free", "starter", "pro", "studio", "enterprise"]);
    assert_eq!(plans[2]["id"], "plan-pro");
    assert_eq!(
        (
            plans[2]["monthly_price"].as_f64(),
            plans[2]["credits"].as_i64()
        ),
        (Some(75.0), Some(15000))
    );
    assert_eq!(
        (&plans[4]["monthly_price"], &plans[4]["yearly_price"]),
        (&Value::Null, &Value::Null)
    );
    let (status, body) = srv.get("/subscriptions/current", Some(&user.access)).await;
    assert_eq!((status, &body["data"]), (StatusCode::OK, &Value::Null));

    // Input is checked first, then billing's absence.
    for (body, field) in [
        (json!({ "plan": "gold" }), "plan"),
        (json!({ "plan": "free" }), "plan"),
        (
            json!({ "plan": "pro", "billing_cycle": "weekly" }),
            "billing_cycle",
        ),
    ] {
        let got = srv
            .post("/subscriptions/checkout", Some(&user.access), body)
            .await;
        assert_eq!(
            assert_error(&got, StatusCode::BAD_REQUEST, "INVALID_PARAMETERS")["details"]["field"],
            field
        );
    }
    let got = srv
        .post(
            "/subscriptions/checkout",
            Some(&user.access),
            json!({ "plan": "pro" }),
        )
        .await;
    let details =
        assert_error(&got, StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE")["details"]
            .clone();
    assert_eq!(details["reason"], "billing_not_configured");
    let got = srv
        .post(
            "/subscriptions/upgrade",
            Some(&user.access),
            json!({ "target_plan": "pro" }),
        )
        .await;
    assert_eq!(
        assert_error(&got, StatusCode::CONFLICT, "CONFLICT")["details"]["reason"],
        "no_paid_subscription"
    );
    let long = json!({ "reason": "r".repeat(2001) });
    let got = srv
        .post("/subscriptions/cancel", Some(&user.access), long)
        .await;
    let e = assert_error(&got, StatusCode::BAD_REQUEST, "INVALID_PARAMETERS");
    assert_eq!(e["details"]["field"], "reason");
    let got = srv.post("/subscriptions/cancel", None, json!({})).await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let got = deliver(
        &srv,
        "lemon-squeezy",
        Some(("X-Signature", "00".into())),
        b"{}",
    )
    .await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
}

#[tokio::test]
async fn a_yearly_plan_grants_each_begun_month_once() {
    let (srv, fake, _dir, _path) = ls_server().await;
    let user = srv.signup("yearly@example.com").await;
    let mut events = srv.events(&user.access, None).await;
    let sub = fake.subscribe(&user.user_id, 149092);
    // Two months into a yearly period.
    fake.update(&sub, |s| {
        s.renews_at = chrono::Utc::now()
            .checked_add_months(chrono::Months::new(10))
            .unwrap()
    });
    ls_deliver(&srv, &fake.subscription_event("subscription_created", &sub)).await;
    let update = events.until_type("subscription.updated").await;
    assert_eq!(
        (
            update["data"]["billing_cycle"].as_str(),
            update["data"]["tier"].as_str()
        ),
        (Some("yearly"), Some("pro"))
    );
    let before = srv.credits(&user.user_id).await.0;
    ls_deliver(
        &srv,
        &fake.invoice_event("subscription_payment_success", &sub, 5, "initial"),
    )
    .await;
    assert_eq!(
        events.until_type("credits.updated").await["data"]["balance"],
        before + 15000
    );

    let billing = &srv.state.billing;
    billing.maintain(chrono::Utc::now()).await.unwrap();
    assert_eq!(
        srv.credits(&user.user_id).await.0,
        before + 3 * 15000,
        "months 2 and 3 have begun"
    );
    billing.maintain(chrono::Utc::now()).await.unwrap();
    assert_eq!(
        srv.credits(&user.user_id).await.0,
        before + 3 * 15000,
        "each month once"
    );
    let in_three_months = chrono::Utc::now()
        .checked_add_months(chrono::Months::new(3))
        .unwrap();
    billing.maintain(in_three_months).await.unwrap();
    assert_eq!(srv.credits(&user.user_id).await.0, before + 6 * 15000);
}

#[tokio::test]
async fn checkouts_are_limited_per_user_and_hour() {
    let (fake, base) = FakeLemonSqueezy::start(LS_KEY).await;
    let toml = format!(
        "billing_checkouts_per_hour = 2\n{}",
        ls_toml(&base, &plugin_path("lemon-squeezy"))
    );
    let (srv, _dir, _path) = server_with(&toml).await;
    let alice = srv.signup("many-checkouts@example.com").await;
    let bob = srv.signup("one-checkout@example.com").await;
    let body = json!({ "plan": "pro" });
    for _ in 0..2 {
        let (status, b) = srv
            .post("/subscriptions/checkout", Some(&alice.access), body.clone())
            .await;
        assert_eq!(status, StatusCode::OK, "{b}");
    }
    let r = srv
        .client
        .post(srv.url("/subscriptions/checkout"))
        .bearer_auth(&alice.access)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1800).contains(&wait), "{wait}");
    let got = (r.status(), r.json::<Value>().await.unwrap());
    assert_error(&got, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    assert_eq!(
        fake.calls().len(),
        2,
        "the refused checkout never reached the provider"
    );
    // Others keep theirs; bad input is still checked first.
    let (status, _) = srv
        .post("/subscriptions/checkout", Some(&bob.access), body)
        .await;
    assert_eq!(status, StatusCode::OK);
    let got = srv
        .post(
            "/subscriptions/checkout",
            Some(&alice.access),
            json!({ "plan": "gold" }),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "INVALID_PARAMETERS");
}
