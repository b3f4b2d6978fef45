//! 플러그인 API: publish with validation, visibility, versions, yank.

use pingvas_host::plugins::registry::RegistryError;
use pingvas_tests::{TestServer, assert_error, manifest, plugin_wasm};
use reqwest::StatusCode;
use reqwest::multipart::Form;
use serde_json::{Value, json};

#[tokio::test]
async fn publish_validates_and_stores_the_component() {
    let srv = TestServer::start().await;
    let alice = srv.signup_admin("alice@example.com").await;
    let (s, body) = srv
        .publish(
            &alice.access,
            manifest("watermark", "0.1.0", "node", "public"),
            plugin_wasm("watermark"),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let d = &body["data"];
    assert_eq!(d["plugin"]["name"], json!("watermark"));
    assert_eq!(d["plugin"]["latest_version"], json!("0.1.0"));
    assert_eq!(d["plugin"]["is_owner"], json!(true));
    assert_eq!(d["version"]["node_kind"], json!("post"));
    assert_eq!(d["version"]["abi_version"], json!("0.1.0"));
    assert!(d["version"]["parameters_schema"].is_object());
    let sha = d["version"]["sha256"].as_str().unwrap();
    assert_eq!(
        srv.state
            .blobs
            .get(&format!("plugins/{sha}.wasm"))
            .await
            .unwrap(),
        plugin_wasm("watermark"),
        "stored content-addressed"
    );

    // Same name and version again.
    let again = srv
        .publish(
            &alice.access,
            manifest("watermark", "0.1.0", "node", "public"),
            plugin_wasm("watermark"),
        )
        .await;
    let err = assert_error(&again, StatusCode::CONFLICT, "CONFLICT");
    assert_eq!(err["details"]["reason"], json!("version_exists"));

    // Another publisher cannot take the name.
    let bob = srv.signup("bob@example.com").await;
    let taken = srv
        .publish(
            &bob.access,
            manifest("watermark", "0.1.0", "node", "public"),
            plugin_wasm("watermark"),
        )
        .await;
    assert_eq!(
        assert_error(&taken, StatusCode::CONFLICT, "CONFLICT")["details"]["reason"],
        json!("name_taken")
    );
}

#[tokio::test]
async fn publish_rejects_what_does_not_fit() {
    let srv = TestServer::start_with(|c| c.plugin_max_bytes = 140_000).await;
    let u = srv.signup_admin("author@example.com").await;
    let reason = |r: &(StatusCode, Value)| {
        assert_error(r, StatusCode::BAD_REQUEST, "VALIDATION_ERROR")["details"]["reason"].clone()
    };

    // Each refused for the named reason, nothing stored.
    let cases: [(&str, Value, Vec<u8>, &str); 6] = [
        // describe() says prompt-style@0.1.0; the manifest another name or version.
        (
            "other name",
            manifest("my-style", "0.1.0", "node", "public"),
            plugin_wasm("prompt-style"),
            "manifest_mismatch",
        ),
        (
            "other version",
            manifest("prompt-style", "9.9.9", "node", "public"),
            plugin_wasm("prompt-style"),
            "manifest_mismatch",
        ),
        // The kind is read from the component, not trusted from the manifest.
        (
            "node as billing",
            manifest("prompt-style", "0.1.0", "billing", "public"),
            plugin_wasm("prompt-style"),
            "wrong_world",
        ),
        (
            "billing as node",
            manifest("sneaky", "0.1.0", "node", "public"),
            plugin_wasm("hostile-billing"),
            "wrong_world",
        ),
        // Not a component at all.
        (
            "core module",
            manifest("junk", "0.1.0", "node", "public"),
            b"\0asm\x01\0\0\0".to_vec(),
            "invalid_component",
        ),
        (
            "text",
            manifest("junk", "0.1.0", "node", "public"),
            b"hello".to_vec(),
            "invalid_component",
        ),
    ];
    for (case, m, wasm, why) in cases {
        let r = srv.publish(&u.access, m, wasm).await;
        assert_eq!(reason(&r), json!(why), "{case}");
    }
    // Over the size cap (watermark is ~125 KB, the cap here 140 000 B).
    let big = vec![0u8; 150_000];
    assert_error(
        &srv.publish(&u.access, manifest("big", "0.1.0", "node", "public"), big)
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
    );
    // Bad manifests.
    for (m, field) in [
        (manifest("Bad Name", "0.1.0", "node", "public"), "name"),
        (manifest("ok-name", "one", "node", "public"), "version"),
        (manifest("ok-name", "0.1.0", "gadget", "public"), "kind"),
        (manifest("ok-name", "0.1.0", "node", "secret"), "visibility"),
    ] {
        let r = srv.publish(&u.access, m, plugin_wasm("prompt-style")).await;
        assert_eq!(
            assert_error(&r, StatusCode::BAD_REQUEST, "VALIDATION_ERROR")["details"]["field"],
            json!(field)
        );
    }
    let form = Form::new().text(
        "manifest",
        manifest("x", "0.1.0", "node", "public").to_string(),
    );
    let resp = srv
        .client
        .post(srv.url("/plugins"))
        .bearer_auth(&u.access)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // Nothing was stored by any of these.
    let (_, list) = srv.get("/plugins", Some(&u.access)).await;
    assert_eq!(list["meta"]["total"], json!(0));
    // Without a token.
    let r = srv
        .client
        .post(srv.url("/plugins"))
        .multipart(Form::new())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn visibility_listing_and_yank() {
    let srv = TestServer::start().await;
    let alice = srv.signup_admin("alice@example.com").await;
    let bob = srv.signup_admin("bob@example.com").await;
    assert_eq!(
        srv.publish(
            &alice.access,
            manifest("grayscale", "0.1.0", "node", "public"),
            plugin_wasm("grayscale")
        )
        .await
        .0,
        StatusCode::CREATED
    );
    assert_eq!(
        srv.publish(
            &alice.access,
            manifest("safety-filter", "0.1.0", "node", "private"),
            plugin_wasm("safety-filter")
        )
        .await
        .0,
        StatusCode::CREATED
    );
    assert_eq!(
        srv.publish(
            &bob.access,
            manifest("prompt-style", "0.1.0", "node", "private"),
            plugin_wasm("prompt-style")
        )
        .await
        .0,
        StatusCode::CREATED
    );

    let names = |v: &Value| {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let (_, a) = srv.get("/plugins", Some(&alice.access)).await;
    assert_eq!(names(&a), ["grayscale", "safety-filter"]);
    let (_, b) = srv
        .get("/plugins?kind=node&per_page=1", Some(&bob.access))
        .await;
    assert_eq!(b["meta"], json!({ "page": 1, "per_page": 1, "total": 2 }));
    assert_eq!(names(&b), ["grayscale"]);
    let (_, b2) = srv
        .get("/plugins?kind=node&per_page=1&page=2", Some(&bob.access))
        .await;
    assert_eq!(names(&b2), ["prompt-style"]);
    let (_, none) = srv.get("/plugins?kind=billing", Some(&bob.access)).await;
    assert_eq!(none["meta"]["total"], json!(0));
    assert_error(
        &srv.get("/plugins?kind=gadget", Some(&bob.access)).await,
        StatusCode::BAD_REQUEST,
        "INVALID_PARAMETERS",
    );

    // Alice's private plugin does not exist for Bob.
    assert_error(
        &srv.get("/plugins/safety-filter", Some(&bob.access)).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    assert_error(
        &srv.get("/plugins/safety-filter/versions", Some(&bob.access))
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    assert!(matches!(
        srv.state
            .registry
            .resolve(&bob.user_id, "safety-filter", None)
            .await,
        Err(RegistryError::NotFound)
    ));
    assert!(
        srv.state
            .registry
            .resolve(&alice.user_id, "safety-filter", None)
            .await
            .is_ok()
    );

    // A second version, then yank it.
    let (_, g) = srv.get("/plugins/grayscale", Some(&bob.access)).await;
    assert_eq!(
        (
            g["data"]["latest_version"].clone(),
            g["data"]["is_owner"].clone()
        ),
        (json!("0.1.0"), json!(false))
    );
    let yank_by_bob = srv
        .call(
            reqwest::Method::DELETE,
            "/plugins/grayscale/versions/0.1.0",
            Some(&bob.access),
            None,
        )
        .await;
    assert_error(&yank_by_bob, StatusCode::FORBIDDEN, "FORBIDDEN");
    let runnable = srv
        .state
        .registry
        .resolve(&bob.user_id, "grayscale", Some("0.1.0"))
        .await
        .ok()
        .unwrap();
    let (s, _) = srv
        .call(
            reqwest::Method::DELETE,
            "/plugins/grayscale/versions/0.1.0",
            Some(&alice.access),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_error(
        &srv.call(
            reqwest::Method::DELETE,
            "/plugins/grayscale/versions/7.0.0",
            Some(&alice.access),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    let (_, versions) = srv
        .get("/plugins/grayscale/versions", Some(&bob.access))
        .await;
    assert_eq!(versions["data"][0]["yanked"], json!(true));
    let (_, g) = srv.get("/plugins/grayscale", Some(&bob.access)).await;
    assert_eq!(g["data"]["latest_version"], json!(null));
    // New jobs cannot pick the yanked version...
    assert!(matches!(
        srv.state
            .registry
            .resolve(&bob.user_id, "grayscale", Some("0.1.0"))
            .await,
        Err(RegistryError::Yanked)
    ));
    assert!(matches!(
        srv.state
            .registry
            .resolve(&bob.user_id, "grayscale", None)
            .await,
        Err(RegistryError::NotFound)
    ));
    // ...while a job that picked it before keeps working.
    let again = srv
        .state
        .registry
        .load_version(&runnable.plugin, &runnable.version)
        .await
        .unwrap();
    assert_eq!(again.sha256, runnable.loaded.sha256);
}

#[tokio::test]
async fn compiled_components_are_cached_on_disk() {
    let srv = TestServer::start().await;
    let u = srv.signup_admin("cache@example.com").await;
    assert_eq!(
        srv.publish(
            &u.access,
            manifest("watermark", "0.1.0", "node", "public"),
            plugin_wasm("watermark")
        )
        .await
        .0,
        StatusCode::CREATED
    );
    let cached: Vec<_> = std::fs::read_dir(srv.db.data_dir.join("plugin-cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].ends_with(".cwasm"));
}

fn files_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test]
async fn publishing_is_bounded_and_names_and_kinds_are_guarded() {
    let srv = TestServer::start_with(|c| c.plugin_publishes_per_hour = 6).await;
    let admin = srv.signup_admin("admin@example.com").await;
    let mallory = srv.signup("mallory@example.com").await;
    let name_taken = |r: &(StatusCode, Value)| {
        assert_error(r, StatusCode::CONFLICT, "CONFLICT")["details"]["reason"].clone()
    };

    // The bundled plugins' names are reserved, answered like any taken name.
    let r = srv
        .publish(
            &mallory.access,
            manifest("watermark", "0.1.0", "node", "public"),
            plugin_wasm("watermark"),
        )
        .await;
    assert_eq!(name_taken(&r), json!("name_taken"));
    // Only admins publish billing adapters.
    let r = srv
        .publish(
            &mallory.access,
            manifest("evil-billing", "0.1.0", "billing", "private"),
            plugin_wasm("hostile-billing"),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "FORBIDDEN");
    // Nothing was compiled, stored or cached for the refusals.
    let stored = || async { srv.state.blobs.list("plugins").await.unwrap().len() };
    let cache = srv.db.data_dir.join("plugin-cache");
    assert_eq!((stored().await, files_in(&cache)), (0, 0));

    // Someone else's private name answers exactly like a public one.
    let r = srv
        .publish(
            &admin.access,
            manifest("watermark", "0.1.0", "node", "private"),
            plugin_wasm("watermark"),
        )
        .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    assert_eq!((stored().await, files_in(&cache)), (1, 1));
    for (name, wasm, visibility) in [
        ("hostile-post", "hostile-post", "private"),
        ("hostile", "hostile-node", "public"),
    ] {
        let r = srv
            .publish(
                &admin.access,
                manifest(name, "0.1.0", "node", visibility),
                plugin_wasm(wasm),
            )
            .await;
        assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    }
    let private_taken = srv
        .publish(
            &mallory.access,
            manifest("hostile-post", "0.2.0", "node", "public"),
            plugin_wasm("hostile-post"),
        )
        .await;
    let public_taken = srv
        .publish(
            &mallory.access,
            manifest("hostile", "0.2.0", "node", "public"),
            plugin_wasm("hostile-node"),
        )
        .await;
    assert_eq!(
        private_taken, public_taken,
        "a private name is not revealed"
    );
    assert_eq!(name_taken(&private_taken), json!("name_taken"));
    assert_eq!((stored().await, files_in(&cache)), (3, 3));
    // A refused version keeps nothing new.
    let again = srv
        .publish(
            &admin.access,
            manifest("watermark", "0.1.0", "node", "private"),
            plugin_wasm("watermark"),
        )
        .await;
    assert_eq!(name_taken(&again), json!("version_exists"));
    assert_eq!((stored().await, files_in(&cache)), (3, 3));

    // The publisher's id is shown to the publisher only.
    let mine = srv.get("/plugins/watermark", Some(&admin.access)).await;
    assert!(mine.1["data"]["owner_id"].is_string(), "{}", mine.1);
    srv.publish(
        &admin.access,
        manifest("grayscale", "0.1.0", "node", "public"),
        plugin_wasm("grayscale"),
    )
    .await;
    let theirs = srv.get("/plugins/grayscale", Some(&mallory.access)).await;
    assert_eq!(theirs.0, StatusCode::OK);
    assert!(theirs.1["data"].get("owner_id").is_none(), "{}", theirs.1);

    // Six publishes an hour: the admin has made five, the next passes,
    // the one after is rate limited before any work.
    let r = srv
        .publish(
            &admin.access,
            manifest("safety-filter", "0.1.0", "node", "public"),
            plugin_wasm("safety-filter"),
        )
        .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    let r = srv
        .publish(
            &admin.access,
            manifest("prompt-style", "0.1.0", "node", "public"),
            plugin_wasm("prompt-style"),
        )
        .await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
}
