#![no_main]

// The body lives in `pingvas_fuzz::webhook_lemonsqueezy` (fuzz/targets), shared with the
// replay test (tests/replay.rs) that runs the corpus and regressions on stable.
libfuzzer_sys::fuzz_target!(init: pingvas_fuzz::prepare("webhook_lemonsqueezy"), |data: &[u8]| {
    pingvas_fuzz::webhook_lemonsqueezy(data);
});
