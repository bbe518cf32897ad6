//! cargo-fuzz target: see `paste_rt_fuzz::http` (fuzz/harness/http.rs) for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| paste_rt_fuzz::http::run(data));
