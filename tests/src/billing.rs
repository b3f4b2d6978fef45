//! Billing test set-up shared by the test binaries: provider keys, the
//! configuration files that name an adapter, and webhook delivery.

use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::TestServer;
use crate::fakes::{FakeLemonSqueezy, FakeStripe, hmac_hex, stripe_signature};
use crate::plugin_path;

pub const LS_KEY: &str = "ls-test-api-key";
pub const LS_SECRET: &str = "ls-signing-secret";
pub const STRIPE_KEY: &str = "sk_test_4eC39HqLyjWDarjtT1zdp7dc";
pub const STRIPE_SECRET: &str = "whsec_test_secret";
pub const PRO_MONTHLY: u64 = 149091;
pub const STUDIO_MONTHLY: u64 = 149093;

fn host_of(base: &str) -> String {
    base.trim_start_matches("http://").to_owned()
}

pub fn ls_toml(base: &str, adapter: &Path) -> String {
    format!(
        r#"billing_adapter = "{adapter}"
billing_provider = "lemon-squeezy"
billing_http_allow = "{host}"
billing_api_key = "{LS_KEY}"
billing_webhook_secret = "{LS_SECRET}"

[billing_settings]
store_id = "12345"
api_base = "{base}"
redirect_url = "https://studio.example/billing/done"
"variant.starter.monthly" = "149090"
"variant.pro.monthly" = "{PRO_MONTHLY}"
"variant.pro.yearly" = "149092"
"variant.studio.monthly" = "{STUDIO_MONTHLY}"
"#,
        adapter = adapter.display(),
        host = host_of(base),
    )
}

pub fn stripe_toml(base: &str, adapter: &Path) -> String {
    format!(
        r#"billing_adapter = "{adapter}"
billing_provider = "stripe"
billing_http_allow = "{host}"
billing_api_key = "{STRIPE_KEY}"
billing_webhook_secret = "{STRIPE_SECRET}"

[billing_settings]
api_base = "{base}"
success_url = "https://studio.example/billing/done"
"price.pro.monthly" = "price_pro_monthly"
"price.studio.monthly" = "price_studio_monthly"
"#,
        adapter = adapter.display(),
        host = host_of(base),
    )
}

/// A server whose configuration file is `toml` (kept in a temp dir).
pub async fn server_with(toml: &str) -> (TestServer, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pingvas.toml");
    std::fs::write(&path, toml).unwrap();
    let srv = TestServer::start_from_file(&path).await;
    (srv, dir, path)
}

pub async fn ls_server() -> (TestServer, FakeLemonSqueezy, tempfile::TempDir, PathBuf) {
    let (fake, base) = FakeLemonSqueezy::start(LS_KEY).await;
    let (srv, dir, path) = server_with(&ls_toml(&base, &plugin_path("lemon-squeezy"))).await;
    (srv, fake, dir, path)
}

pub async fn stripe_server() -> (TestServer, FakeStripe, tempfile::TempDir, PathBuf) {
    let (fake, base) = FakeStripe::start(STRIPE_KEY).await;
    let (srv, dir, path) = server_with(&stripe_toml(&base, &plugin_path("stripe"))).await;
    (srv, fake, dir, path)
}

/// The user's balance, once every delivered webhook is applied, checked
/// against the sum of their ledger.
pub async fn settled_balance(srv: &TestServer, user_id: &str) -> i64 {
    srv.state
        .billing
        .drain()
        .await
        .expect("apply the stored webhooks");
    let balance = srv.credits(user_id).await.0;
    assert_eq!(
        srv.state.ledger.log_sum(user_id).await.unwrap(),
        balance,
        "the balance is the sum of the ledger"
    );
    balance
}

pub async fn deliver(
    srv: &TestServer,
    provider: &str,
    header: Option<(&str, String)>,
    body: &[u8],
) -> (StatusCode, Value) {
    let mut req = srv
        .client
        .post(srv.url(&format!("/webhooks/{provider}")))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some((k, v)) = header {
        req = req.header(k, v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

pub async fn ls_deliver(srv: &TestServer, body: &[u8]) {
    let got = deliver(
        srv,
        "lemon-squeezy",
        Some(("X-Signature", hmac_hex(LS_SECRET, body))),
        body,
    )
    .await;
    assert_eq!(got, (StatusCode::OK, json!({ "success": true })));
}

pub async fn stripe_deliver(srv: &TestServer, body: &[u8]) -> (StatusCode, Value) {
    let t = chrono::Utc::now().timestamp();
    deliver(
        srv,
        "stripe",
        Some(("Stripe-Signature", stripe_signature(STRIPE_SECRET, t, body))),
        body,
    )
    .await
}
