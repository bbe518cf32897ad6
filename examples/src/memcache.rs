//! memcached's text protocol, server side: what the kv example speaks.
//!
//! Owns the protocol logic of a memcached-compatible key-value server, split by job:
//! [`CommandParser`] turns received chunks into [`Command`]s, [`Store`] executes them
//! against an in-memory table and writes memcached's exact replies into a
//! [`ResponseSink`], counting what memcached's `stats` reports ([`Counters`]).
//! Supported: `get`, `gets`, `set`, `add`, `replace`, `append`, `prepend`, `cas`,
//! `delete`, `incr`, `decr`, `touch`, `flush_all`, `version`, `stats`, `stats reset`,
//! `verbosity`, `quit`. A binary-protocol request gets the binary "unknown command"
//! error and the connection closes.
//!
//! It must never do I/O, never need a command to be contiguous in memory, and never
//! allocate to serve a `get` hit: keys and values are borrowed from the received chunk
//! when they lie in one piece, and copied into buffers the parser keeps (and reuses)
//! only when they are split across chunks.
//!
//! ```
//! use paste_rt_examples::memcache::{CommandParser, Config, Flow, Store};
//!
//! let config = Config::default();
//! let mut parser = CommandParser::new(&config);
//! let mut store = Store::new(&config);
//! let mut out = Vec::new();
//! for chunk in [&b"set k 5 0 2\r\nh"[..], b"i\r\nget k\r\n"] {
//!     let mut pos = 0;
//!     while let Some(command) = parser.next_command(chunk, &mut pos) {
//!         let command = command.expect("well-formed stream");
//!         assert_eq!(store.execute(command, &mut out), Flow::Continue);
//!     }
//! }
//! assert_eq!(out, b"STORED\r\nVALUE k 5 2\r\nhi\r\nEND\r\n");
//! ```

mod command;
mod parser;
mod response;
mod stats;
mod store;

pub use command::{ArithOp, Command, Keys, StoreOp};
pub use parser::{CommandParser, ParseError, MAX_KEY_LEN};
pub use response::{ErrorReply, ResponseSink, BINARY_UNKNOWN_COMMAND_LEN};
pub use stats::Counters;
pub use store::{Flow, Item, Store};

/// Limits and identity of a memcached-compatible server; shared by [`CommandParser`]
/// and [`Store`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Longest command line (without its newline) other than `get`/`gets`; a longer
    /// one closes the connection, as memcached does past 2048 bytes.
    pub max_line: usize,
    /// Longest `get`/`gets` line (multi-gets may name many keys).
    pub max_get_line: usize,
    /// Largest value; a larger `set` is answered `SERVER_ERROR object too large for
    /// cache` and its data is skipped.
    pub max_item_size: usize,
    /// Memory budget of the store (keys, values and a fixed per-item overhead); a
    /// store that would exceed it, even after dropping expired items, is answered
    /// `SERVER_ERROR out of memory storing object` (there is no LRU eviction).
    pub max_memory: usize,
    /// Reported by `version` and `stats`.
    pub version: &'static str,
    /// Runtime threads serving (reported by `stats`).
    pub threads: usize,
}

impl Default for Config {
    /// memcached's defaults: 2048-byte lines, 1 MiB items, 64 MiB of memory.
    fn default() -> Self {
        Config {
            max_line: 2048,
            max_get_line: 256 * 1024,
            max_item_size: 1024 * 1024,
            max_memory: 64 * 1024 * 1024,
            version: "1.6.0-paste-rt",
            threads: 1,
        }
    }
}
