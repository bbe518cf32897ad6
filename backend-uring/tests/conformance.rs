//! The backend conformance kit (`paste_rt_core::conformance`) run on the io_uring backend.

use paste_rt_core::conformance::{self, Expect};
use paste_rt_core::PoolConfig;
use paste_rt_uring::{UringBackend, UringConfig};

fn make(pool: PoolConfig) -> UringBackend {
    UringBackend::new(&UringConfig { pool, ..UringConfig::default() }).expect("the io_uring backend starts")
}

/// One enter per poll; per echoed request one send SQE (receives are multishot) and
/// two CQEs (the receive and the send), with a little slack for re-arms.
const EXPECT: Expect =
    Expect { one_syscall_per_poll: true, max_submissions_per_request: 1.1, max_completions_per_request: 2.1 };

#[test]
fn eof_and_reset_are_distinct() {
    conformance::eof_and_reset_are_distinct(make);
}

#[test]
fn echo_under_load_stays_within_its_counters() {
    conformance::echo_under_load(make, EXPECT);
}

#[test]
fn a_dry_pool_pauses_and_resumes() {
    conformance::a_dry_pool_pauses_and_resumes(make);
}

#[test]
fn closing_mid_operation_is_safe() {
    conformance::closing_mid_operation_is_safe(make);
}

#[test]
fn ten_thousand_churn_cycles_return_to_baseline() {
    conformance::churn_returns_to_baseline(make, 10_000);
}
