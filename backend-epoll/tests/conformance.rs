//! The backend conformance kit (`paste_rt_core::conformance`) run on the epoll backend.

use paste_rt_core::conformance::{self, Expect};
use paste_rt_core::PoolConfig;
use paste_rt_epoll::{EpollBackend, EpollConfig};

fn make(pool: PoolConfig) -> EpollBackend {
    EpollBackend::new(EpollConfig { pool, ..EpollConfig::default() }).expect("the epoll backend starts")
}

/// Per echoed request one read and one write, each counted once.
const EXPECT: Expect =
    Expect { one_syscall_per_poll: false, max_submissions_per_request: 2.1, max_completions_per_request: 2.1 };

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
