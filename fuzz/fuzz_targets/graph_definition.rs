#![no_main]

// The body lives in `pingvas_fuzz::graph_definition` (fuzz/targets), shared with the
// replay test (tests/replay.rs) that runs the corpus and regressions on stable.
libfuzzer_sys::fuzz_target!(init: pingvas_fuzz::prepare("graph_definition"), |data: &[u8]| {
    pingvas_fuzz::graph_definition(data);
});
