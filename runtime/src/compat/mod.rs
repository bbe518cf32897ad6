//! Adapters to other ecosystems: their runtime traits, and the `bytes` crate's
//! framing.
//!
//! tokio's and futures' I/O traits need no adapter: `net::TcpStream` implements them
//! directly (features `tokio-io` and `futures-io`, on by default). This module owns
//! what needs a type of its own: hyper 1.x's `rt` traits ([`hyper`], behind the
//! cargo feature of the same name) and a `FramedRead`-style decoder that reads the
//! received pool buffers in place instead of copying them into a `BytesMut`
//! ([`codec`]). It never contains I/O logic of its own: it forwards to `net`, `time`
//! and `spawn`.

pub mod codec;
#[cfg(feature = "hyper")]
pub mod hyper;
