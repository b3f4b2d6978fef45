//! Proves the wasm32-wasip2 toolchain builds a component; replaced by the
//! real nodes once the plugin ABI lands in `wit/`.

#[unsafe(no_mangle)]
pub extern "C" fn answer() -> i32 {
    42
}
