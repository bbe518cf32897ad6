//! Shared protocol code of the paste-rt examples.

pub mod http;
pub mod memcache;
