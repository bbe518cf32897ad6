//! The backend conformance kit (`paste_rt_core::conformance`) run on the epoll backend.

use paste_rt_core::conformance::Expect;
use paste_rt_core::PoolConfig;
use paste_rt_epoll::{EpollBackend, EpollConfig};

fn make(pool: PoolConfig) -> EpollBackend {
    EpollBackend::new(EpollConfig { pool, ..EpollConfig::default() }).expect("the epoll backend starts")
}

/// Per echoed request one read and one write, each counted once.
const EXPECT: Expect =
    Expect { one_syscall_per_poll: false, max_submissions_per_request: 2.1, max_completions_per_request: 2.1 };

paste_rt_core::conformance_tests!(make, EXPECT);
