#![no_main]

// The body lives in `pingvas_fuzz::generation_request` (fuzz/targets), shared with the
// replay test (tests/replay.rs) that runs the corpus and regressions on stable.
libfuzzer_sys::fuzz_target!(init: pingvas_fuzz::prepare("generation_request"), |data: &[u8]| {
    pingvas_fuzz::generation_request(data);
});
