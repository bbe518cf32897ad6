//! The backend conformance kit (`paste_rt_core::conformance`) run on the io_uring backend.

use paste_rt_core::conformance::Expect;
use paste_rt_core::PoolConfig;
use paste_rt_uring::{UringBackend, UringConfig};

fn make(pool: PoolConfig) -> UringBackend {
    UringBackend::new(&UringConfig { pool, ..UringConfig::default() }).expect("the io_uring backend starts")
}

/// One enter per poll; per echoed request one send SQE (receives are multishot) and
/// two CQEs (the receive and the send), with a little slack for re-arms.
const EXPECT: Expect =
    Expect { one_syscall_per_poll: true, max_submissions_per_request: 1.1, max_completions_per_request: 2.1 };

paste_rt_core::conformance_tests!(make, EXPECT);
