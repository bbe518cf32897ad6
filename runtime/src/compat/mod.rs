//! Adapters to other ecosystems' runtime traits, each behind the cargo feature of
//! the same name.
//!
//! tokio's and futures' I/O traits need no adapter: `net::TcpStream` implements them
//! directly (features `tokio-io` and `futures-io`, on by default). This module owns
//! the traits that need a wrapper type — hyper 1.x's `rt` traits — and never
//! contains I/O logic of its own: it forwards to `net`, `time` and `spawn`.

#[cfg(feature = "hyper")]
pub mod hyper;
