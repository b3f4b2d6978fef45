//! 모델 API: the catalogue, its filters, and availability by tier.

use pingvas_tests::{TestServer, assert_error};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn available(body: &Value, name: &str) -> bool {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == json!(name))
        .unwrap()["is_available"]
        .as_bool()
        .unwrap()
}

#[tokio::test]
async fn availability_follows_the_callers_tier() {
    let srv = TestServer::start().await;
    let u = srv.signup("models@example.com").await;
    let (s, free) = srv.get("/models", Some(&u.access)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(available(&free, "stable-diffusion-1.5"));
    assert!(!available(&free, "stable-diffusion-xl"));
    assert!(!available(&free, "flux-dev"));
    let first = &free["data"][0];
    for key in [
        "id",
        "name",
        "display_name",
        "type",
        "base",
        "description",
        "thumbnail_url",
        "min_tier",
        "is_available",
    ] {
        assert!(first.get(key).is_some(), "{key}");
    }

    pingvas_host::admin::set_tier(&srv.state.db, &srv.state.plans, "models@example.com", "pro")
        .await
        .unwrap();
    let (_, pro) = srv.get("/models", Some(&u.access)).await;
    assert!(available(&pro, "stable-diffusion-xl"));
    assert!(available(&pro, "flux-dev"));
}

#[tokio::test]
async fn filters_by_type_and_base() {
    let srv = TestServer::start().await;
    let u = srv.signup("filters@example.com").await;
    let names = |v: &Value| {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let (_, main_flux) = srv
        .get("/models?type=main&base=flux", Some(&u.access))
        .await;
    assert_eq!(names(&main_flux), ["flux-dev"]);
    let (_, loras) = srv.get("/models?type=lora", Some(&u.access)).await;
    assert_eq!(names(&loras), ["add_detail", "detail-tweaker"]);
    let (_, sdxl) = srv.get("/models?base=sdxl", Some(&u.access)).await;
    assert_eq!(names(&sdxl).len(), 4);
    assert_error(
        &srv.get("/models?type=gan", Some(&u.access)).await,
        StatusCode::BAD_REQUEST,
        "INVALID_PARAMETERS",
    );
    assert_error(
        &srv.get("/models?base=sd-9", Some(&u.access)).await,
        StatusCode::BAD_REQUEST,
        "INVALID_PARAMETERS",
    );
    assert_error(
        &srv.get("/models", None).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    );
}

#[tokio::test]
async fn operators_replace_the_catalogue_without_recompiling() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("models.toml");
    std::fs::write(
        &file,
        r#"
[[models]]
id = "model-house"
name = "house-style"
display_name = "House Style"
type = "main"
base = "sdxl"
min_tier = "studio"
"#,
    )
    .unwrap();
    let srv = TestServer::start_with(|c| c.models_file = Some(file.clone())).await;
    let u = srv.signup("operator@example.com").await;
    let (_, body) = srv.get("/models", Some(&u.access)).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["data"][0]["name"], json!("house-style"));
    assert_eq!(body["data"][0]["is_available"], json!(false));
}

#[tokio::test]
async fn a_model_that_needs_a_plan_feature_is_feature_locked_below_it() {
    let dir = tempfile::tempdir().unwrap();
    let plan = |name: &str, rank: u32, flux: bool, controlnet: bool| {
        format!(
            "[[plans]]\nname = \"{name}\"\ndisplay_name = \"{name}\"\nrank = {rank}\n\
             monthly_price = 0.0\nyearly_price = 0.0\ncredits = 100\nstorage_gb = 2\n\
             queue_count = 1\nmax_queued = 10\nrequests_per_min = 30\ngenerations_per_min = 30\n\
             [plans.features]\nsd_models = true\nflux_model = {flux}\nnano_banana_api = false\n\
             lora_training = false\ncontrolnet = {controlnet}\n"
        )
    };
    let plans = dir.path().join("plans.toml");
    std::fs::write(
        &plans,
        [
            plan("free", 0, false, false),
            plan("starter", 1, false, true),
            plan("pro", 2, true, true),
        ]
        .join("\n"),
    )
    .unwrap();
    let model = |name: &str, kind: &str, base: &str, feature: &str| {
        format!(
            "[[models]]\nid = \"{name}\"\nname = \"{name}\"\ndisplay_name = \"{name}\"\n\
             type = \"{kind}\"\nbase = \"{base}\"\nmin_tier = \"free\"\n{feature}\n"
        )
    };
    let models = dir.path().join("models.toml");
    std::fs::write(
        &models,
        [
            model("house-sd", "main", "sd-1", ""),
            model("house-flux", "main", "flux", "feature = \"flux_model\""),
            model(
                "house-canny",
                "controlnet",
                "sd-1",
                "feature = \"controlnet\"",
            ),
        ]
        .join("\n"),
    )
    .unwrap();
    let srv = TestServer::start_with(|c| {
        c.plans_file = Some(plans.clone());
        c.models_file = Some(models.clone());
        c.worker_paused = true;
    })
    .await;
    let u = srv.signup("u@example.com").await;
    srv.set_credits(&u.user_id, 1000).await;
    let job = |model: &str, control: bool| {
        let mut b = json!({ "prompt": "x", "model": model, "width": 64, "height": 64, "steps": 2 });
        if control {
            b["controlnet"] = json!({ "model": "house-canny",
                "image": pingvas_tests::png_base64(64, 64, [9, 9, 9]), "weight": 1.0 });
        }
        b
    };

    // Free: neither FLUX nor the ControlNet; each names its feature and
    // the lowest plan with it. GET /models agrees.
    let locked = |got: &(StatusCode, Value)| {
        let e = assert_error(got, StatusCode::FORBIDDEN, "FEATURE_LOCKED");
        (
            e["details"]["feature"].as_str().unwrap().to_owned(),
            e["details"]["required_plan"].as_str().unwrap().to_owned(),
        )
    };
    let got = srv
        .generate("text-to-image", &u.access, job("house-flux", false))
        .await;
    assert_eq!(locked(&got), ("flux_model".into(), "pro".into()));
    let got = srv
        .generate("text-to-image", &u.access, job("house-sd", true))
        .await;
    assert_eq!(locked(&got), ("controlnet".into(), "starter".into()));
    let (_, listed) = srv.get("/models", Some(&u.access)).await;
    let listed_available = |name: &str| {
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap()["is_available"]
            .clone()
    };
    assert_eq!(listed_available("house-flux"), json!(false));
    assert_eq!(listed_available("house-sd"), json!(true));
    assert_eq!(srv.credits(&u.user_id).await.1, 0, "nothing reserved");

    // Starter has the ControlNet feature, not FLUX's.
    srv.set_tier("u@example.com", "starter").await;
    let (s, b) = srv
        .generate("text-to-image", &u.access, job("house-sd", true))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let got = srv
        .generate("text-to-image", &u.access, job("house-flux", false))
        .await;
    assert_eq!(locked(&got).0, "flux_model");
}
