#![no_main]

// The body lives in `pingvas_fuzz::invokeai_import` (fuzz/targets), shared with the
// replay test (tests/replay.rs) that runs the corpus and regressions on stable.
libfuzzer_sys::fuzz_target!(init: pingvas_fuzz::prepare("invokeai_import"), |data: &[u8]| {
    pingvas_fuzz::invokeai_import(data);
});
