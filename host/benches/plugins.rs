//! Plugin runtime benchmarks (figures in BENCHMARKS.md):
//! - instantiate + `describe()` of a small node (InstancePre + pooling),
//! - one 1024×1024 RGBA image through the grayscale node vs the same
//!   algorithm compiled natively into this benchmark,
//! - how long an infinite-loop plugin with a 100 ms deadline runs.
//!
//! Needs the guest plugins built (`scripts/test` builds them), then:
//! `cargo bench -p pingvas-host --bench plugins`

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use pingvas_host::plugins::check::sample_image;
use pingvas_host::plugins::engine::EngineOptions;
use pingvas_host::plugins::limits::Limits;
use pingvas_host::plugins::runtime::Params;
use pingvas_host::plugins::{PluginKind, PluginRuntime};

mod common;

#[path = "../../plugins/grayscale/src/algo.rs"]
mod native_grayscale;

fn wasm(name: &str) -> Vec<u8> {
    std::fs::read(common::plugin_dir().join(format!("{name}.wasm")))
        .expect("build the plugins first (scripts/test)")
}

fn params() -> Params {
    Params {
        prompt: "x".into(),
        ..Params::default()
    }
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let runtime = PluginRuntime::new(&EngineOptions::default(), None).unwrap();
    let limits = Limits::for_kind(PluginKind::Node);
    let style = rt
        .block_on(runtime.load(
            "prompt-style",
            &wasm("prompt_style"),
            Some(PluginKind::Node),
        ))
        .unwrap();
    let gray = rt
        .block_on(runtime.load("grayscale", &wasm("grayscale"), Some(PluginKind::Node)))
        .unwrap();
    let hostile = rt
        .block_on(runtime.load("hostile", &wasm("hostile_node"), Some(PluginKind::Node)))
        .unwrap();

    c.bench_function("instantiate+describe (prompt-style)", |b| {
        b.to_async(&rt).iter(|| async {
            runtime
                .describe("prompt-style", &style, limits)
                .await
                .unwrap()
        })
    });

    let image = sample_image(1024, 1024);
    let mut group = c.benchmark_group("grayscale 1024x1024");
    group.sample_size(30);
    group.bench_function("native", |b| {
        b.iter_batched(
            || image.rgba.as_ref().clone(),
            |mut px| {
                native_grayscale::grayscale_rgba(&mut px);
                px
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.bench_function("wasm node (instantiate, copy in, process, copy out)", |b| {
        b.to_async(&rt).iter(|| async {
            runtime
                .run_post(
                    "grayscale",
                    &gray,
                    limits,
                    params(),
                    vec![image.clone()],
                    "{}",
                )
                .await
                .unwrap()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("deadline");
    group.sample_size(10);
    let deadline = Limits {
        timeout: Duration::from_millis(100),
        ..limits
    };
    group.bench_function("infinite loop, 100 ms deadline", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (runtime, hostile) = (&runtime, &hostile);
            async move {
                let mut total = Duration::ZERO;
                let mut worst = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    let r = runtime
                        .run_pre("hostile", hostile, deadline, params(), "loop")
                        .await;
                    let took = t.elapsed();
                    assert!(r.is_err());
                    worst = worst.max(took);
                    total += took;
                }
                eprintln!(
                    "  worst stop over {iters} runs: {:.1} ms",
                    worst.as_secs_f64() * 1e3
                );
                total
            }
        })
    });
    group.finish();
}

criterion_group!(plugin_benches, benches);
criterion_main!(plugin_benches);
