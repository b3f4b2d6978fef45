//! Host-call budgets on real hostile components: a node that hoards image
//! memory or handles, returns too many images, floods the log or panics
//! with the image's pixels fails (or is capped) for its one call, with a
//! typed error and no guest text for the user; host memory and the log
//! stay within stated bounds; an honest node runs next.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use pingvas_host::plugins::engine::EngineOptions;
use pingvas_host::plugins::image_handle::ImageHandle;
use pingvas_host::plugins::limits::Limits;
use pingvas_host::plugins::runtime::Params;
use pingvas_host::plugins::{LoadedPlugin, PluginError, PluginKind, PluginRuntime};
use pingvas_tests::plugin_wasm;

fn limits() -> Limits {
    // 64 MiB of guest memory, so 64 MiB of host memory for the guest.
    Limits {
        memory_bytes: 64 << 20,
        host_bytes: 64 << 20,
        ..Limits::for_kind(PluginKind::Node)
    }
}

async fn hostile(rt: &PluginRuntime) -> Arc<LoadedPlugin> {
    rt.load(
        "hostile-post",
        &plugin_wasm("hostile-post"),
        Some(PluginKind::Node),
    )
    .await
    .unwrap()
}

fn image() -> ImageHandle {
    ImageHandle::new(16, 16, vec![200; 16 * 16 * 4]).unwrap()
}

async fn run(rt: &PluginRuntime, p: &LoadedPlugin, mode: &str) -> Result<usize, PluginError> {
    rt.run_post(
        "hostile-post",
        p,
        limits(),
        Params::default(),
        vec![image()],
        &format!(r#"{{"mode":"{mode}"}}"#),
    )
    .await
    .map(|r| r.output.len())
}

/// Resident memory of this process, bytes.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[tokio::test]
async fn hoarding_images_or_handles_hits_the_host_budget() {
    let rt = PluginRuntime::new(&EngineOptions::default(), None).unwrap();
    let p = hostile(&rt).await;
    let before = rss();
    for _ in 0..5 {
        match run(&rt, &p, "hoard").await {
            Err(PluginError::ResourceLimit { budget, .. }) => assert_eq!(budget, "host memory"),
            other => panic!("hoard: {other:?}"),
        }
    }
    // Each call may hold 64 MiB on the host plus what it copies in; five
    // calls in a row leave the process far from the gigabytes an
    // unbudgeted loop of 64 MiB images would take.
    let grown = rss().saturating_sub(before);
    assert!(grown < 512 << 20, "RSS grew by {} MiB", grown >> 20);
    match run(&rt, &p, "handles").await {
        Err(e @ PluginError::ResourceLimit { .. }) => {
            assert_eq!(e.user_reason(), "hostile-post: resource_limit");
        }
        other => panic!("handles: {other:?}"),
    }
    // The next honest call works.
    assert_eq!(run(&rt, &p, "ok").await.unwrap(), 1);
}

#[tokio::test]
async fn describe_runs_with_a_tiny_budget() {
    let rt = PluginRuntime::new(&EngineOptions::default(), None).unwrap();
    let p = rt
        .load(
            "hostile-describe",
            &plugin_wasm("hostile-describe"),
            Some(PluginKind::Node),
        )
        .await
        .unwrap();
    let before = rss();
    match rt.describe("hostile-describe", &p, limits()).await {
        Err(PluginError::ResourceLimit { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(rss().saturating_sub(before) < 256 << 20);
}

#[tokio::test]
async fn a_post_node_returns_at_most_what_it_was_given() {
    let rt = PluginRuntime::new(&EngineOptions::default(), None).unwrap();
    let p = hostile(&rt).await;
    match run(&rt, &p, "outputs").await {
        Err(e @ PluginError::BadOutput { .. }) => {
            assert_eq!(e.user_reason(), "hostile-post: bad_output");
        }
        other => panic!("{other:?}"),
    }
    // An operator may allow more.
    let roomy = Limits {
        max_outputs: Some(64),
        ..limits()
    };
    let out = rt
        .run_post(
            "hostile-post",
            &p,
            roomy,
            Params::default(),
            vec![image()],
            r#"{"mode":"outputs"}"#,
        )
        .await
        .unwrap();
    assert_eq!(out.output.len(), 64);
}

#[tokio::test]
async fn a_panic_carrying_pixels_tells_the_user_only_the_cause() {
    let rt = PluginRuntime::new(&EngineOptions::default(), None).unwrap();
    let p = hostile(&rt).await;
    let e = run(&rt, &p, "panic-pixels").await.unwrap_err();
    assert!(matches!(e, PluginError::Trapped { .. }), "{e:?}");
    let reason = e.user_reason();
    assert_eq!(reason, "hostile-post: trap");
    assert!(!reason.contains("200"), "no pixels in what users see");
}

/// Counts the bytes the log receives.
#[derive(Clone, Default)]
struct CountingWriter(Arc<AtomicUsize>, Arc<Mutex<Vec<u8>>>);

impl Write for CountingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.fetch_add(buf.len(), Ordering::Relaxed);
        let mut head = self.1.lock().unwrap();
        if head.len() < 4096 {
            head.extend_from_slice(&buf[..buf.len().min(4096)]);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_log_flood_is_capped_escaped_and_counted() {
    let writer = CountingWriter::default();
    let w = writer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || w.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = PluginRuntime::new(&EngineOptions::default(), None).unwrap();
    let p = hostile(&rt).await;
    // 10 000 lines of 1 MiB: about 10 GiB asked for.
    assert_eq!(run(&rt, &p, "log-flood").await.unwrap(), 1);
    let logged = writer.0.load(Ordering::Relaxed);
    let budget = Limits::for_kind(PluginKind::Node).output_bytes;
    assert!(
        logged < 2 * budget + (64 << 10),
        "the log grew by {logged} bytes"
    );
    let head = String::from_utf8_lossy(&writer.1.lock().unwrap()).into_owned();
    assert!(
        head.contains("WARN"),
        "errors of a guest are warnings: {head}"
    );
    assert!(head.contains("\\n[fake]"), "newlines are escaped: {head}");
}

/// A component with two core instances, each with a linear memory it can
/// grow by a number of 64 KiB pages.
const TWO_MEMORIES: &str = r#"
(component
  (core module $m
    (memory 1)
    (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))
  (core instance $a (instantiate $m))
  (core instance $b (instantiate $m))
  (func (export "grow-a") (param "pages" u32) (result s32) (canon lift (core func $a "grow")))
  (func (export "grow-b") (param "pages" u32) (result s32) (canon lift (core func $b "grow")))
)
"#;

#[tokio::test]
async fn the_memory_limit_counts_every_memory_of_a_component() {
    use pingvas_host::plugins::engine::PluginEngine;
    use pingvas_host::plugins::state::PluginState;
    use wasmtime::Store;
    use wasmtime::component::{Component, Linker};

    let engine = PluginEngine::new(&EngineOptions::default()).unwrap();
    let component = Component::new(&engine.engine, TWO_MEMORIES).unwrap();
    let limits = limits();
    let mut store = Store::new(
        &engine.engine,
        PluginState::new(
            "two-memories",
            limits,
            Arc::default(),
            reqwest::Client::new(),
        ),
    );
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(1_000_000);
    let instance = Linker::<PluginState>::new(&engine.engine)
        .instantiate_async(&mut store, &component)
        .await
        .unwrap();
    let a = instance
        .get_typed_func::<(u32,), (i32,)>(&mut store, "grow-a")
        .unwrap();
    let b = instance
        .get_typed_func::<(u32,), (i32,)>(&mut store, "grow-b")
        .unwrap();
    // 40 MiB each: either alone fits the 64 MiB limit, both do not.
    let pages = (40 << 20) / 65536;
    let (first,) = a.call_async(&mut store, (pages,)).await.unwrap();
    assert_ne!(first, -1, "the first memory grows");
    let (second,) = b.call_async(&mut store, (pages,)).await.unwrap();
    assert_eq!(second, -1, "the second memory may not take the limit again");
    assert!(store.data().limiter.memory_hit);
}
