//! A test server for checking the API against its OpenAPI document from
//! outside (`scripts/contract` runs schemathesis against it).
//!
//! Starts the real server in this process on a fresh database (SQLite, or
//! PostgreSQL + Redis as the test harness reads them from the environment)
//! with the OAuth fakes configured and the worker paused, signs up an
//! admin who owns one of each thing the id-taking routes read (a board, an
//! image, a workflow, a plugin, a queued job), prints one JSON line
//! `{"url", "token", …ids}` on stdout, and serves until stdin closes.
//!
//! `cargo run -p pingvas-tests --bin contractserver`

use pingvas_tests::billing::{LS_KEY, ls_toml};
use pingvas_tests::fakes::billing::FakeLemonSqueezy;
use pingvas_tests::fakes::oauth::{CLIENT_ID, CLIENT_SECRET, FakeOAuth};
use pingvas_tests::{TestServer, manifest, plugin_path, plugin_wasm, small_job};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

#[tokio::main]
async fn main() {
    // The whole configuration in a file, as an operator's: a reload
    // (`POST /admin/billing/reload`) reads it again.
    let oauth = FakeOAuth::start().await;
    let (_ls, ls_base) = FakeLemonSqueezy::start(LS_KEY).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("pingvas.toml");
    let mut toml = String::from(
        "worker_paused = true\n\
         rate_limits_enabled = false\n\
         access_token_ttl_secs = 86400\n\
         public_url = \"http://127.0.0.1\"\n",
    );
    for provider in ["google", "discord"] {
        let base = &oauth.base;
        toml.push_str(&format!(
            "{provider}_client_id = \"{CLIENT_ID}\"\n\
             {provider}_client_secret = \"{CLIENT_SECRET}\"\n\
             {provider}_auth_url = \"{base}/authorize\"\n\
             {provider}_token_url = \"{base}/token\"\n\
             {provider}_userinfo_url = \"{base}/userinfo\"\n"
        ));
    }
    // Billing through the Lemon Squeezy adapter and its fake, every paid
    // plan sold on both cycles.
    toml.push_str(&ls_toml(&ls_base, &plugin_path("lemon-squeezy")));
    toml.push_str(
        "\"variant.starter.yearly\" = \"149100\"\n\"variant.studio.yearly\" = \"149101\"\n",
    );
    std::fs::write(&file, toml).expect("configuration file");
    let srv = TestServer::start_from_file(&file).await;
    let me = srv.signup_admin("contract@example.com").await;
    let (token, user_id) = (me.access.clone(), me.user_id.clone());
    srv.set_credits(&user_id, 1_000_000).await;

    let created = |what: &str, got: (StatusCode, Value)| -> String {
        assert!(got.0.is_success(), "{what}: {}", got.1);
        got.1["data"]["id"]
            .as_str()
            .or_else(|| got.1["data"]["job_id"].as_str())
            .unwrap_or_else(|| panic!("{what}: no id in {}", got.1))
            .to_owned()
    };
    let board = created(
        "board",
        srv.post("/boards", Some(&token), json!({ "name": "contract" }))
            .await,
    );
    let image = srv.upload_png(&token).await;
    let workflow = created(
        "workflow",
        srv.post(
            "/workflows",
            Some(&token),
            json!({ "name": "contract", "definition": pingvas_tests::graph_inpaint(4, 1) }),
        )
        .await,
    );
    let published = srv
        .publish(
            &token,
            manifest("grayscale", "0.1.0", "node", "public"),
            plugin_wasm("grayscale"),
        )
        .await;
    assert_eq!(published.0, StatusCode::CREATED, "plugin: {}", published.1);
    let plugin = "grayscale";
    let job = created(
        "job",
        srv.generate("text-to-image", &token, small_job("a contract"))
            .await,
    );

    println!(
        "{}",
        json!({
            "url": srv.base,
            "token": token,
            "user_id": user_id,
            "board_id": board,
            "image_id": image,
            "workflow_id": workflow,
            "plugin_id": plugin,
            "job_id": job,
        })
    );
    // Serve until whoever started us closes our stdin.
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    srv.stop().await;
}
