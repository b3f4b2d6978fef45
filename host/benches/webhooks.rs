//! Webhook throughput (figures in BENCHMARKS.md): Lemon Squeezy
//! `subscription_updated` events verified, stored and applied on SQLite,
//! through the `lemon-squeezy` adapter component, against the same store
//! and apply path with the signature check and normalisation done natively
//! here. Each iteration is one distinct, newer event for one subscription.
//!
//! Needs the guest plugins built (`scripts/test` builds them), then:
//! `cargo bench -p pingvas-host --bench webhooks`

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use pingvas_host::app::AppState;
use pingvas_host::billing::event::{Event, Kind, Subscription};
use pingvas_host::config::Config;
use pingvas_host::plugins::runtime::{BillingCall, Webhook};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

mod common;

const SECRET: &str = "bench-signing-secret";

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The `n`-th update of subscription 1 of `user`, shaped as the docs' example.
fn body(user: &str, n: i64) -> Vec<u8> {
    let t: DateTime<Utc> = Utc.timestamp_opt(1_700_000_000 + n, 0).unwrap();
    let stamp = t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    serde_json::to_vec(&json!({
        "meta": { "event_name": "subscription_updated", "custom_data": { "user_id": user } },
        "data": {
            "type": "subscriptions",
            "id": "1",
            "attributes": {
                "store_id": 12345, "customer_id": 67890, "order_id": 2, "product_id": 2,
                "variant_id": 149091, "product_name": "Pingvas", "variant_name": "Pro",
                "user_name": "Dan R", "user_email": "dan@lemonsqueezy.com",
                "status": if n % 2 == 0 { "active" } else { "past_due" },
                "card_brand": "visa", "card_last_four": "4242", "pause": null, "cancelled": false,
                "trial_ends_at": null, "billing_anchor": 24,
                "renews_at": "2099-01-24T12:43:48.000000Z", "ends_at": null,
                "created_at": stamp, "updated_at": stamp, "test_mode": true
            }
        }
    }))
    .unwrap()
}

fn time(v: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// What the adapter does, natively: check `X-Signature`, read the event.
fn native_normalise(signature: &str, raw: &[u8]) -> Event {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(raw);
    mac.verify_slice(&hex::decode(signature).unwrap())
        .expect("signature");
    let v: Value = serde_json::from_slice(raw).unwrap();
    let a = &v["data"]["attributes"];
    let end = time(&a["renews_at"]);
    Event {
        kind: Kind::SubscriptionUpdated,
        provider_event: v["meta"]["event_name"].as_str().unwrap().to_owned(),
        event_id: hex::encode(Sha256::digest(raw)),
        user_id: v["meta"]["custom_data"]["user_id"]
            .as_str()
            .map(str::to_owned),
        invoice_id: None,
        invoice_reason: None,
        subscription: Some(Subscription {
            id: v["data"]["id"].as_str().unwrap().to_owned(),
            customer_id: Some(a["customer_id"].to_string()),
            plan: Some("pro".into()),
            billing_cycle: Some("monthly".into()),
            status: a["status"].as_str().unwrap().to_owned(),
            period_start: end.and_then(|e| e.checked_sub_months(chrono::Months::new(1))),
            period_end: end,
            cancel_at_period_end: a["cancelled"].as_bool().unwrap(),
            card_brand: a["card_brand"].as_str().map(str::to_owned),
            card_last_four: a["card_last_four"].as_str().map(str::to_owned),
            updated_at: time(&a["updated_at"]).unwrap(),
        }),
    }
}

/// Which path runs first (`WEBHOOK_BENCH_WASM_FIRST=1` swaps them: the
/// second runs on a table the first has grown).
fn order() -> [(&'static str, bool); 2] {
    let native = ("native check", false);
    let wasm = ("wasm adapter", true);
    if std::env::var_os("WEBHOOK_BENCH_WASM_FIRST").is_some() {
        [wasm, native]
    } else {
        [native, wasm]
    }
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        worker_enabled: false,
        billing_adapter: Some(common::plugin_dir().join("lemon_squeezy.wasm")),
        billing_provider: "lemon-squeezy".into(),
        billing_webhook_secret: Some(SECRET.to_owned().into()),
        ..Config::default()
    };
    config
        .billing_settings
        .insert("variant.pro.monthly".into(), "149091".into());
    let state = rt.block_on(AppState::build(config)).expect("app state");
    let user = rt
        .block_on(state.auth.register(
            "bench@example.com",
            "SecurePass123!",
            None,
            Default::default(),
        ))
        .unwrap()
        .id;
    let billing = state.billing.clone();
    let mut n = 0i64;
    let mut events = |count: u64| -> Vec<(String, Vec<u8>)> {
        (0..count)
            .map(|_| {
                n += 1;
                let b = body(&user, n);
                (sign(&b), b)
            })
            .collect()
    };

    let mut group = c.benchmark_group("lemon-squeezy webhook: verify, store, apply");
    group.measurement_time(Duration::from_secs(10));
    for (name, wasm) in order() {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let batch = events(iters);
                let billing = billing.clone();
                async move {
                    let start = Instant::now();
                    for (sig, raw) in batch {
                        if wasm {
                            let headers = vec![("x-signature".to_owned(), sig)];
                            billing
                                .receive("lemon-squeezy", headers, &raw)
                                .await
                                .unwrap();
                        } else {
                            let event = native_normalise(&sig, &raw);
                            billing.record("lemon-squeezy", &event, &raw).await.unwrap();
                        }
                        assert_eq!(billing.drain().await.unwrap(), 1);
                    }
                    start.elapsed()
                }
            })
        });
    }
    group.finish();

    // What the adapter alone costs: instantiate, verify, normalise.
    let adapter = billing.adapters.current().expect("the adapter");
    let (sig, raw) = events(1).remove(0);
    c.bench_function(
        "lemon-squeezy adapter call alone (verify + normalise)",
        |b| {
            b.to_async(&rt).iter(|| {
                let hook = Webhook {
                    headers: vec![("x-signature".to_owned(), sig.clone())],
                    body: raw.clone(),
                };
                billing.adapters.call(&adapter, BillingCall::Webhook(hook))
            })
        },
    );
}

criterion_group!(webhook_benches, benches);
criterion_main!(webhook_benches);
