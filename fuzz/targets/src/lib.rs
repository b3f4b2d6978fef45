//! The bodies of the fuzz targets, shared by the libFuzzer binaries
//! (`fuzz_targets/*.rs`, nightly, `cargo fuzz run <target>`) and by the
//! replay test (`tests/replay.rs`, stable `cargo test`) that runs every
//! seed and every recorded crash through the same functions.
//!
//! Each target drives the host's own code, never a copy of it: the billing
//! adapters as WASM components through `billing::adapter::Adapters`, the
//! workflow definition parser and checks, the InvokeAI importer, the
//! generation validator (`generation::Generator`) on a real `AppState`
//! over a throwaway SQLite database, PNG chunk handling and content
//! credentials (`provenance`), and `POST /images/upload` through the
//! server's whole router.
//!
//! Errors are fine; a panic is a finding. Some targets also check
//! properties the host relies on (a stored definition parses again, a
//! webhook with a bad signature is never taken, ...): each assertion says
//! which.

use std::cell::Cell;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once, OnceLock};

use serde_json::Value;

use pingvas_host::app::{AppState, SharedState};
use pingvas_host::billing::adapter::Adapters;
use pingvas_host::billing::event::Event;
use pingvas_host::billing::plans::Catalogue;
use pingvas_host::billing::webhooks::MAX_WEBHOOK_BYTES;
use pingvas_host::config::Config;
use pingvas_host::generation::GenerationError;
use pingvas_host::generation::inputs;
use pingvas_host::generation::validate::{Generator, Prepared};
use pingvas_host::models::ModelCatalogue;
use pingvas_host::plugins::PluginRuntime;
use pingvas_host::plugins::engine::EngineOptions;
use pingvas_host::plugins::runtime::{BillingAnswer, BillingCall, Webhook, WebhookError};
use pingvas_host::provenance::{self, Credentials, GenerationRecord, png};
use pingvas_host::queue::job::{JobSpec, estimate_credits};
use pingvas_host::users::Caller;
use pingvas_host::workflows::definition::{self, Checked, Definition, Graph, NodeOp, PluginSide};
use pingvas_host::workflows::invokeai;

mod generation;
mod graphs;
mod multipart;
mod png_chunks;
mod webhooks;

use generation::app;
pub use generation::generation_request;
use graphs::catalogue;
pub use graphs::{graph_definition, invokeai_import};
pub use multipart::multipart_upload;
use png_chunks::credentials;
pub use png_chunks::{png_chunks, signed_png};
use webhooks::adapters;
pub use webhooks::{Provider, adapter_wasm, webhook_lemonsqueezy, webhook_stripe};

/// A target's body: one input.
pub type Body = fn(&[u8]);

/// The fuzz targets by name, as `fuzz_targets/` and the replay test know
/// them.
pub const TARGETS: &[(&str, Body)] = &[
    ("webhook_lemonsqueezy", webhook_lemonsqueezy),
    ("webhook_stripe", webhook_stripe),
    ("graph_definition", graph_definition),
    ("invokeai_import", invokeai_import),
    ("generation_request", generation_request),
    ("png_chunks", png_chunks),
    ("multipart_upload", multipart_upload),
];

/// The body of the target `name`.
pub fn target(name: &str) -> Option<Body> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// Builds what the target `name` needs (adapters, the app state, the
/// signer) before the first input, so a missing plugin or a broken set-up
/// stops the fuzzer at once instead of showing as a crash of some input.
pub fn prepare(name: &str) {
    match name {
        "webhook_lemonsqueezy" => {
            let _ = adapters(Provider::LemonSqueezy);
        }
        "webhook_stripe" => {
            let _ = adapters(Provider::Stripe);
        }
        "invokeai_import" => {
            let _ = catalogue();
        }
        "generation_request" | "multipart_upload" => {
            let _ = app();
        }
        "png_chunks" => {
            let _ = credentials();
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// Shared set-up: one tokio runtime, scratch directories, fixtures built once.

/// The runtime every async host call runs on. Never call `block_on` on it
/// from inside it: fixtures are fetched before entering.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// An empty scratch directory of this process (`$TMPDIR/pingvas-fuzz-<pid>-<name>`).
/// Left behind at exit: `rm -rf /tmp/pingvas-fuzz-*` clears them.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pingvas-fuzz-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// The workspace root (the directory above `fuzz/`).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Seed directories outside the project, read-only: the public provider
/// and InvokeAI examples in `../shared/fixtures` (which is not copied into
/// the project), when that checkout is there.
pub fn shared_seed_dirs(target: &str) -> Vec<PathBuf> {
    let shared = workspace_root().join("../shared/fixtures");
    let dirs: &[&str] = match target {
        "webhook_lemonsqueezy" => &["billing/lemon-squeezy/webhooks"],
        "webhook_stripe" => &["billing/stripe/webhooks"],
        "invokeai_import" => &["invokeai/workflows"],
        _ => &[],
    };
    dirs.iter()
        .map(|d| shared.join(d))
        .filter(|d| d.is_dir())
        .collect()
}

thread_local! {
    static TOLERATING: Cell<bool> = const { Cell::new(false) };
}

/// Whether panics inside third-party code the host shields (see
/// `tolerate`) count as crashes too: `PINGVAS_FUZZ_STRICT=1`.
fn strict() -> bool {
    static STRICT: OnceLock<bool> = OnceLock::new();
    *STRICT.get_or_init(|| std::env::var_os("PINGVAS_FUZZ_STRICT").is_some_and(|v| v != "0"))
}

/// Runs `f` as the host runs the c2pa crate: on the blocking pool, where a
/// panic becomes an error (`http::images::check_credentials`,
/// `queue::credentials::with_credentials`). Such a panic is not a crash
/// here either (`None`), unless `PINGVAS_FUZZ_STRICT` is set. The host's
/// own code that runs first (PNG chunks) is called outside, strictly.
///
/// libFuzzer's panic hook aborts before unwinding; it is wrapped (once) so
/// that it stays silent while a tolerated call runs on this thread. Needs
/// `panic = "unwind"` (cargo-fuzz's default).
fn tolerate<T>(f: impl FnOnce() -> T) -> Option<T> {
    if strict() {
        return Some(f());
    }
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if TOLERATING.with(Cell::get) {
                return;
            }
            previous(info);
        }));
    });
    TOLERATING.with(|t| t.set(true));
    let result = std::panic::catch_unwind(AssertUnwindSafe(f));
    TOLERATING.with(|t| t.set(false));
    result.ok()
}

// ---------------------------------------------------------------------------
// 1. Webhooks through the billing adapters.
