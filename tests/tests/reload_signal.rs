//! SIGHUP reloads the billing adapter. Its own test binary: the signal goes
//! to the whole process, and no other test server may be in it.

#![cfg(unix)]

use std::time::Duration;

use pingvas_tests::billing::*;
use pingvas_tests::fakes::{FakeLemonSqueezy, FakeStripe};
use pingvas_tests::plugin_path;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn sighup_swaps_the_billing_adapter() {
    let (_ls, ls_base) = FakeLemonSqueezy::start(LS_KEY).await;
    let (stripe, stripe_base) = FakeStripe::start(STRIPE_KEY).await;
    let (srv, _dir, path) = server_with(&ls_toml(&ls_base, &plugin_path("lemon-squeezy"))).await;
    let user = srv.signup("hup@example.com").await;
    let sub = stripe.subscribe(&user.user_id, "price_pro_monthly");
    let body = stripe.subscription_event(
        "customer.subscription.created",
        &sub,
        chrono::Utc::now().timestamp(),
    );
    assert_eq!(
        stripe_deliver(&srv, &body).await.0,
        StatusCode::NOT_FOUND,
        "not the provider yet"
    );

    std::fs::write(&path, stripe_toml(&stripe_base, &plugin_path("stripe"))).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The reload runs on the server's own task; poll until it took.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = stripe_deliver(&srv, &body).await;
        if got.0 == StatusCode::OK {
            assert_eq!(got.1, json!({ "success": true }));
            break;
        }
        assert_eq!(got.0, StatusCode::NOT_FOUND, "{got:?}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "SIGHUP did not swap the adapter"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
