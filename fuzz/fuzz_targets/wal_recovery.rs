//! cargo-fuzz target: see `paste_rt_fuzz::wal` (fuzz/harness/wal.rs) for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| paste_rt_fuzz::wal::run(data));
