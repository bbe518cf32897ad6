//! [`EpollConfig`]: the epoll backend's settings.

use paste_rt_core::PoolConfig;

/// Settings of the epoll backend.
#[derive(Debug, Clone)]
pub struct EpollConfig {
    /// The buffer pool (anonymous or file-backed).
    pub pool: PoolConfig,
    /// Most events taken per `epoll_wait`.
    pub max_events: usize,
    /// Most buffers read from one connection at a time (when its readiness event is
    /// applied, or in one walk of the list of sockets that may hold more) before
    /// moving on to the others (fairness); the rest is read at the next walk.
    pub read_budget: u32,
    /// Most connections accepted from one listener per tick.
    pub accept_budget: u32,
}

impl Default for EpollConfig {
    fn default() -> Self {
        EpollConfig { pool: PoolConfig::default(), max_events: 1024, read_budget: 16, accept_budget: 64 }
    }
}
