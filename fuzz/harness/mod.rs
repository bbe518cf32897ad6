//! The fuzzing harnesses, one per target: each `run(data)` drives one piece of
//! paste-rt with bytes a fuzzer (or a property test) chose and panics when a
//! property breaks. The cargo-fuzz targets in `fuzz/fuzz_targets/` and the bounded
//! property tests in `examples/tests/fuzz_properties.rs` include these same files,
//! so a stable CI run and a long libFuzzer run check the same things.
//!
//! - [`http`]: the HTTP request parser — split anywhere, it reports the same
//!   requests, bodies and error as fed whole.
//! - [`memcache`]: the memcached parser and store — split anywhere, the same
//!   commands and replies; the store stays within its memory budget.
//! - [`wal`]: the WAL record decoder and the recovery scan over crafted logs and
//!   pool files — nothing torn comes back, the buffers kept are exactly the ones
//!   referenced, and what is written after recovery is recovered again.
//! - [`ring`]: the PASTE ring driver against the emulated kernel — per-connection
//!   byte order in both directions and one owner for every buffer, after every
//!   step of any interleaving.
#![allow(dead_code, missing_docs)]

pub mod http;
pub mod input;
pub mod memcache;
pub mod ring;
pub mod wal;
