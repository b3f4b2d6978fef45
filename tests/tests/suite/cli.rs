//! The operator CLI (`pingvas migrate`, `pingvas admin …`) against the same
//! database a running server uses.

use std::process::Command;

use pingvas_tests::{TestServer, pingvas_bin};
use reqwest::StatusCode;
use serde_json::json;

fn pingvas(srv: &TestServer, args: &[&str]) -> (bool, String) {
    let out = Command::new(pingvas_bin())
        .args(args)
        .env("DATABASE_URL", &srv.db.url)
        .env("PINGVAS_DATA_DIR", &srv.db.data_dir)
        .env_remove("PINGVAS_CONFIG")
        .output()
        .expect("run pingvas");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn admin_commands_change_what_the_api_shows() {
    let srv = TestServer::start().await;
    let u = srv.signup("op@example.com").await;

    let (ok, out) = pingvas(
        &srv,
        &[
            "admin",
            "grant-credits",
            "OP@example.com",
            "250",
            "--reason",
            "보상",
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("balance now 350"), "{out}");
    let (ok, out) = pingvas(&srv, &["admin", "grant-credits", "op@example.com", "-50"]);
    assert!(ok, "{out}");
    let (ok, _) = pingvas(&srv, &["admin", "set-tier", "op@example.com", "studio"]);
    assert!(ok);
    let (ok, _) = pingvas(&srv, &["admin", "set-role", "op@example.com", "admin"]);
    assert!(ok);

    let (s, me) = srv.get("/users/me", Some(&u.access)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me["data"]["credits"], json!(300));
    assert_eq!(me["data"]["tier"], json!("studio"));
    assert_eq!(me["data"]["role"], json!("admin"));
    let (_, credits) = srv
        .get("/users/me/credits?type=admin_adjustment", Some(&u.access))
        .await;
    assert_eq!(credits["meta"]["total"], json!(2));
    assert_eq!(
        credits["data"]["transactions"][1]["description"],
        json!("보상")
    );

    for bad in [
        vec!["admin", "set-tier", "op@example.com", "platinum"],
        vec!["admin", "set-role", "op@example.com", "root"],
        vec!["admin", "grant-credits", "ghost@example.com", "10"],
        vec!["admin", "grant-credits", "op@example.com", "-100000"],
    ] {
        let (ok, out) = pingvas(&srv, &bad);
        assert!(!ok, "{bad:?} should fail: {out}");
    }
    let (_, me) = srv.get("/users/me", Some(&u.access)).await;
    assert_eq!(
        (me["data"]["credits"].clone(), me["data"]["tier"].clone()),
        (json!(300), json!("studio"))
    );
}

#[tokio::test]
async fn migrate_is_idempotent() {
    let srv = TestServer::start().await;
    for _ in 0..2 {
        let (ok, out) = pingvas(&srv, &["migrate"]);
        assert!(ok, "{out}");
    }
}

/// `pingvas plugin check` on the bundled component `wasm` (written to
/// `dir`), with `--input` when given.
fn plugin_check(dir: &std::path::Path, wasm: &str, input: Option<&str>) -> std::process::Output {
    let file = dir.join(format!("{}.wasm", wasm.replace('-', "_")));
    std::fs::write(&file, pingvas_tests::plugin_wasm(wasm)).unwrap();
    let mut cmd = Command::new(pingvas_bin());
    cmd.args(["plugin", "check"]).arg(&file).current_dir(dir);
    if let Some(input) = input {
        cmd.args(["--input", input]);
    }
    cmd.output().unwrap()
}

/// The output of a check that must succeed.
fn passed(out: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn plugin_check_validates_and_runs_the_author_template() {
    let dir = tempfile::tempdir().unwrap();
    let out = plugin_check(
        dir.path(),
        "plugin-template",
        Some(r#"{"prompt":"a red fox","config":{"tags":["4k","bokeh"]}}"#),
    );
    let text = passed(&out);
    assert!(text.contains("world `node`"), "{text}");
    assert!(text.contains("plugin-template@0.1.0 (pre-node)"), "{text}");
    assert!(text.contains(r#"prompt: "a red fox, 4k, bokeh""#), "{text}");
    assert!(text.contains("process() ok in"), "{text}");

    // A hostile run fails with its cause and a non-zero exit.
    let out = plugin_check(dir.path(), "hostile-node", Some(r#"{"config":"panic"}"#));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("trapped") && err.contains("panics on purpose"),
        "{err}"
    );

    // Without --input the sample config comes from the node's schema:
    // prompt-style requires `style`, whose first value is used.
    let text = passed(&plugin_check(dir.path(), "prompt-style", None));
    assert!(
        text.contains(r#"sample config (from the schema): {"style":"#),
        "{text}"
    );
    assert!(text.contains("process() ok in"), "{text}");

    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm").unwrap();
    let out = Command::new(pingvas_bin())
        .args(["plugin", "check"])
        .arg(&junk)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid component"));
}
