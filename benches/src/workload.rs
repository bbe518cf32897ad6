//! The benchmark workloads (docs/benchmarking.md): what a client sends and what a server
//! answers. Shared by the peer servers, the paste-rt subjects and the load generator.
//!
//! Owns only names and shapes; it must never do I/O.

use std::fmt;
use std::str::FromStr;

/// One of the protocol's workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Workload {
    /// 44-byte HTTP/1.1 GET, 151-byte response (87-byte header, 64-byte body).
    Rpc,
    /// HTTP POST with a 1024-byte body, persisted before the 151-byte response.
    Wal,
    /// A 100-byte message echoed back unchanged.
    Echo,
    /// memcached text protocol: 90 % get, 10 % set.
    Kv,
}

impl Workload {
    /// Every workload, in the protocol's order.
    pub const ALL: [Workload; 4] = [Workload::Rpc, Workload::Wal, Workload::Echo, Workload::Kv];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Rpc => "rpc",
            Workload::Wal => "wal",
            Workload::Echo => "echo",
            Workload::Kv => "kv",
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Workload {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Workload::ALL
            .into_iter()
            .find(|w| w.name() == s.trim())
            .ok_or_else(|| format!("unknown workload {s:?}; one of: rpc, wal, echo, kv"))
    }
}
