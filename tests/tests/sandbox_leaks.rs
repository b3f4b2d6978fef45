//! Memory returns to its baseline over 1000 failing plugin runs. A test
//! binary of its own, so no other test shares the process's memory.

use std::time::Duration;

use pingvas_host::plugins::engine::EngineOptions;
use pingvas_host::plugins::limits::Limits;
use pingvas_host::plugins::runtime::Params;
use pingvas_host::plugins::{PluginKind, PluginRuntime};
use pingvas_tests::plugin_wasm;

fn params() -> Params {
    Params {
        prompt: "x".into(),
        ..Params::default()
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_failing_runs_leak_nothing() {
    let rt = PluginRuntime::new(&EngineOptions::default(), None).unwrap();
    let plugin = rt
        .load(
            "hostile",
            &plugin_wasm("hostile-node"),
            Some(PluginKind::Node),
        )
        .await
        .unwrap();
    let limits = Limits {
        timeout: Duration::from_secs(5),
        memory_bytes: 16 << 20,
        ..Limits::for_kind(PluginKind::Node)
    };
    let modes = ["panic", "memory", "recursion", "file", "ok"];
    let run = |i: usize| {
        let (rt, plugin) = (&rt, &plugin);
        async move {
            rt.run_pre("hostile", plugin, limits, params(), modes[i % modes.len()])
                .await
        }
    };
    // Warm up past the pool's size so every slot has been used once.
    for i in 0..200 {
        let _ = run(i).await;
    }
    let baseline = rss_bytes();
    for i in 0..1000 {
        let r = run(i).await;
        assert_eq!(r.is_ok(), modes[i % modes.len()] == "ok", "{r:?}");
    }
    let grown = rss_bytes().saturating_sub(baseline);
    assert!(
        grown < 24 << 20,
        "RSS grew by {} MiB over 1000 runs",
        grown >> 20
    );
}
