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
