//! The plugin sandbox on real components: the example nodes do their job,
//! and each hostile plugin fails with the right typed error within its
//! limit, leaving the host able to go on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pingvas_host::plugins::engine::EngineOptions;
use pingvas_host::plugins::image_handle::ImageHandle;
use pingvas_host::plugins::limits::Limits;
use pingvas_host::plugins::runtime::{
    BillingAnswer, BillingCall, CheckoutRequest, Params, WebhookError,
};
use pingvas_host::plugins::state::Grants;
use pingvas_host::plugins::{PluginError, PluginKind, PluginRuntime};
use pingvas_tests::plugin_wasm;

fn runtime() -> PluginRuntime {
    PluginRuntime::new(&EngineOptions::default(), None).unwrap()
}

fn params(prompt: &str) -> Params {
    Params {
        prompt: prompt.into(),
        seed: 42,
        ..Params::default()
    }
}

fn node_limits() -> Limits {
    Limits::for_kind(PluginKind::Node)
}

fn checker(w: u32, h: u32) -> ImageHandle {
    let mut px = Vec::with_capacity((w * h * 4) as usize);
    for y in 0..h {
        for x in 0..w {
            let v = if (x / 8 + y / 8) % 2 == 0 { 200 } else { 40 };
            px.extend_from_slice(&[v, 255 - v, (x % 256) as u8, 255]);
        }
    }
    ImageHandle::new(w, h, px).unwrap()
}

#[tokio::test]
async fn example_nodes_describe_themselves() {
    let rt = runtime();
    for (name, kind) in [
        ("prompt-style", "pre"),
        ("safety-filter", "pre"),
        ("watermark", "post"),
        ("grayscale", "post"),
    ] {
        let p = rt.load(name, &plugin_wasm(name), None).await.unwrap();
        assert_eq!(p.kind, PluginKind::Node, "{name}");
        let d = rt.describe(name, &p, node_limits()).await.unwrap().output;
        assert_eq!((d.name.as_str(), d.kind.as_str()), (name, kind));
        assert!(
            serde_json::from_str::<serde_json::Value>(&d.parameters_schema)
                .unwrap()
                .is_object()
        );
    }
}

#[tokio::test]
async fn prompt_style_and_safety_filter() {
    let rt = runtime();
    let style = rt
        .load(
            "prompt-style",
            &plugin_wasm("prompt-style"),
            Some(PluginKind::Node),
        )
        .await
        .unwrap();
    let out = rt
        .run_pre(
            "prompt-style",
            &style,
            node_limits(),
            params("a red fox"),
            r#"{"style":"cinematic"}"#,
        )
        .await
        .unwrap()
        .output;
    assert_eq!(
        out.prompt,
        "cinematic film still of a red fox, shallow depth of field, film grain, dramatic lighting"
    );
    assert_eq!(out.negative_prompt, "cartoon, illustration, flat colors");
    assert_eq!(out.seed, 42, "untouched fields pass through");
    let err = rt
        .run_pre(
            "prompt-style",
            &style,
            node_limits(),
            params("x"),
            r#"{"style":"baroque"}"#,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PluginError::InvalidInput { message, .. } if message.contains("baroque")),
        "{err}"
    );

    let filter = rt
        .load(
            "safety-filter",
            &plugin_wasm("safety-filter"),
            Some(PluginKind::Node),
        )
        .await
        .unwrap();
    let cfg = r#"{"words":["forbidden fruit","zombie"]}"#;
    let ok = rt
        .run_pre(
            "safety-filter",
            &filter,
            node_limits(),
            params("a classy zombieland poster"),
            cfg,
        )
        .await;
    assert!(ok.is_ok(), "whole words only: {ok:?}");
    let err = rt
        .run_pre(
            "safety-filter",
            &filter,
            node_limits(),
            params("the Forbidden  FRUIT, still life"),
            cfg,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PluginError::Rejected { message, .. } if message.contains("forbidden fruit")),
        "{err}"
    );
}

#[tokio::test]
async fn watermark_marks_only_its_corner_and_grayscale_grays() {
    let rt = runtime();
    let wm = rt
        .load(
            "watermark",
            &plugin_wasm("watermark"),
            Some(PluginKind::Node),
        )
        .await
        .unwrap();
    let src = checker(256, 128);
    let cfg = r#"{"text":"PV","corner":"bottom-right","opacity":1.0,"scale":2,"color":[255,0,0]}"#;
    let out = rt
        .run_post(
            "watermark",
            &wm,
            node_limits(),
            params("x"),
            vec![src.clone()],
            cfg,
        )
        .await
        .unwrap()
        .output;
    assert_eq!(out.len(), 1);
    let (a, b) = (src.rgba.as_slice(), out[0].rgba.as_slice());
    let changed: Vec<(u32, u32)> = (0..128u32)
        .flat_map(|y| (0..256u32).map(move |x| (x, y)))
        .filter(|(x, y)| {
            let i = ((y * 256 + x) * 4) as usize;
            a[i..i + 4] != b[i..i + 4]
        })
        .collect();
    assert!(!changed.is_empty(), "the mark is drawn");
    assert!(
        changed.iter().all(|(x, y)| *x >= 128 && *y >= 64),
        "only the bottom-right corner changes"
    );
    assert!(
        out[0]
            .metadata
            .iter()
            .any(|(k, v)| k == "postprocess.watermark" && v == "PV")
    );

    let gray = rt
        .load(
            "grayscale",
            &plugin_wasm("grayscale"),
            Some(PluginKind::Node),
        )
        .await
        .unwrap();
    let out = rt
        .run_post(
            "grayscale",
            &gray,
            node_limits(),
            params("x"),
            vec![src.clone(), checker(16, 16)],
            "{}",
        )
        .await
        .unwrap()
        .output;
    assert_eq!(out.len(), 2);
    for px in out[0].rgba.chunks_exact(4) {
        assert!(px[0] == px[1] && px[1] == px[2] && px[3] == 255);
    }
}

async fn hostile(
    rt: &PluginRuntime,
    mode: &str,
    limits: Limits,
) -> (Result<Params, PluginError>, Duration) {
    let p = rt
        .load(
            "hostile",
            &plugin_wasm("hostile-node"),
            Some(PluginKind::Node),
        )
        .await
        .unwrap();
    let t = Instant::now();
    let r = rt
        .run_pre("hostile", &p, limits, params("x"), mode)
        .await
        .map(|r| r.output);
    (r, t.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_fail_with_typed_errors_within_their_limits() {
    let rt = runtime();
    let limits = Limits {
        timeout: Duration::from_millis(300),
        memory_bytes: 32 << 20,
        ..node_limits()
    };

    let (r, t) = hostile(&rt, "loop", limits).await;
    assert!(matches!(r, Err(PluginError::Timeout { .. })), "{r:?}");
    assert!(t < Duration::from_millis(1500), "stopped at {t:?}");

    let (r, _) = hostile(&rt, "memory", limits).await;
    assert!(
        matches!(r, Err(PluginError::MemoryLimit { limit_bytes, .. }) if limit_bytes == 32 << 20),
        "{r:?}"
    );

    let (r, _) = hostile(&rt, "recursion", limits).await;
    assert!(matches!(r, Err(PluginError::StackOverflow { .. })), "{r:?}");

    let (r, _) = hostile(
        &rt,
        "huge-output",
        Limits {
            memory_bytes: 128 << 20,
            ..limits
        },
    )
    .await;
    assert!(matches!(r, Err(PluginError::BadOutput { .. })), "{r:?}");

    let (r, _) = hostile(&rt, "file", limits).await;
    assert!(
        matches!(&r, Err(PluginError::Failed { message, .. }) if message.starts_with("file:")),
        "{r:?}"
    );

    let (r, _) = hostile(&rt, "socket", limits).await;
    assert!(
        matches!(&r, Err(PluginError::Failed { message, .. }) if message.starts_with("socket:")),
        "{r:?}"
    );

    let (r, _) = hostile(&rt, "panic", limits).await;
    assert!(
        matches!(&r, Err(PluginError::Trapped { stderr, .. }) if stderr.contains("panics on purpose")),
        "{r:?}"
    );

    // Flooding stdout is capped, not fatal.
    let (r, _) = hostile(
        &rt,
        "stdout-flood",
        Limits {
            timeout: Duration::from_secs(20),
            ..limits
        },
    )
    .await;
    assert!(r.is_ok(), "{r:?}");

    // After all that, the same runtime runs a well-behaved call.
    let (r, _) = hostile(&rt, "ok", limits).await;
    assert_eq!(r.unwrap().prompt, "x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_plugin_does_not_starve_other_tasks() {
    let rt = Arc::new(runtime());
    let limits = Limits {
        timeout: Duration::from_millis(800),
        ..node_limits()
    };
    let looping = {
        let rt = rt.clone();
        tokio::spawn(async move { hostile(&rt, "loop", limits).await })
    };
    // While the guest spins, timers on the same runtime keep firing.
    let mut ticks = 0;
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(400) {
        tokio::time::sleep(Duration::from_millis(10)).await;
        ticks += 1;
    }
    assert!(ticks >= 10, "only {ticks} timer ticks while a guest looped");
    let (r, _) = looping.await.unwrap();
    assert!(matches!(r, Err(PluginError::Timeout { .. })));
}

#[tokio::test]
async fn billing_http_is_limited_to_the_allow_list() {
    let rt = runtime();
    let p = rt
        .load("hostile-billing", &plugin_wasm("hostile-billing"), None)
        .await
        .unwrap();
    assert_eq!(p.kind, PluginKind::Billing);
    let limits = Limits::for_kind(PluginKind::Billing);
    let req = || CheckoutRequest {
        user_id: "u".into(),
        email: "a@example.com".into(),
        plan: "pro".into(),
        billing_cycle: "monthly".into(),
    };

    let grants = Arc::new(Grants {
        http_allow: vec!["api.lemonsqueezy.com".into()],
        ..Grants::default()
    });
    let err = rt
        .billing_call(
            "hostile-billing",
            &p,
            limits,
            grants,
            BillingCall::Checkout(req()),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, WebhookError::Adapter(PluginError::Failed { message, .. }) if message.contains("denied") && message.contains("evil.example.net")),
        "{err}"
    );

    // An allowed host is reached for real.
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/checkout",
            axum::routing::post(|| async { (axum::http::StatusCode::CREATED, "ok") }),
        );
        axum::serve(server, app).await.unwrap();
    });
    let mut settings = std::collections::HashMap::new();
    settings.insert("target".to_owned(), format!("http://{addr}/checkout"));
    let grants = Arc::new(Grants {
        http_allow: vec![addr.to_string()],
        settings,
        ..Grants::default()
    });
    let answer = rt
        .billing_call(
            "hostile-billing",
            &p,
            limits,
            grants,
            BillingCall::Checkout(req()),
        )
        .await
        .unwrap();
    assert!(
        matches!(&answer, BillingAnswer::Checkout(c) if c.url == "status 201"),
        "{answer:?}"
    );
}

#[tokio::test]
async fn components_are_checked_against_their_world() {
    let rt = runtime();
    let billing = plugin_wasm("hostile-billing");
    let err = rt
        .load("x", &billing, Some(PluginKind::Node))
        .await
        .unwrap_err();
    assert!(matches!(err, PluginError::WrongWorld { .. }), "{err}");
    let err = rt.load("x", b"\0asm\x01\0\0\0", None).await.unwrap_err();
    assert!(
        matches!(err, PluginError::InvalidComponent { .. }),
        "core module: {err}"
    );
    let err = rt
        .load("x", b"definitely not wasm", None)
        .await
        .unwrap_err();
    assert!(matches!(err, PluginError::InvalidComponent { .. }), "{err}");
    let mut truncated = plugin_wasm("grayscale");
    truncated.truncate(truncated.len() / 2);
    let err = rt.load("x", &truncated, None).await.unwrap_err();
    assert!(matches!(err, PluginError::InvalidComponent { .. }), "{err}");
}
