//! The paste-rt examples: protocol code ([`http`], [`memcache`]) and the servers
//! built on it ([`phttpd`], [`echo`], [`kv`]), as library modules so that tests and
//! the benchmark harness run them in-process; the binaries in `src/bin/` wrap them
//! in a command line ([`cli`]).

pub mod batch_outbox;
pub mod cli;
pub mod connection;
pub mod echo;
pub mod http;
pub mod hyper_server;
pub mod kv;
pub mod memcache;
pub mod outbox;
pub mod phttpd;
pub mod timeouts;
pub mod wal;
