//! What the benchmarks share.

use std::path::PathBuf;

/// Where `scripts/test` builds the guest plugins: `$PINGVAS_PLUGIN_DIR`,
/// else `$CARGO_TARGET_DIR/wasm32-wasip2/release`, else the workspace's.
pub fn plugin_dir() -> PathBuf {
    std::env::var_os("PINGVAS_PLUGIN_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(|t| PathBuf::from(t).join("wasm32-wasip2/release"))
        })
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/release")
        })
}
