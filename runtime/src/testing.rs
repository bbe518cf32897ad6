//! Support for `#[paste_rt::test]` and `#[paste_rt::test_each_backend]`.
//!
//! [`each_backend`] runs one test body once per backend that can start on this
//! machine, printing why any other was skipped. Two environment variables steer it:
//! `PASTE_RT_TEST_REQUIRE=epoll,uring,…` makes a listed backend that cannot start a
//! test failure (CI uses it so that skipped backends cannot hide), and
//! `PASTE_RT_TEST_BACKENDS=…` restricts the run to the listed backends.

use std::fmt::Debug;
use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use paste_rt_core::BackendKind;

use crate::runtime::Builder;
use crate::select::BackendChoice;

/// Backends a CI run requires to start (comma-separated names).
pub const REQUIRE_ENV: &str = "PASTE_RT_TEST_REQUIRE";
/// Restricts `each_backend` to these backends (comma-separated names).
pub const ONLY_ENV: &str = "PASTE_RT_TEST_BACKENDS";

/// What a test body may return: `()` or `Result<(), E>`; an `Err` fails the test.
pub trait TestOutcome {
    /// Panics if the outcome is a failure.
    fn check(self);
}

impl TestOutcome for () {
    fn check(self) {}
}

impl<E: Debug> TestOutcome for Result<(), E> {
    fn check(self) {
        if let Err(e) = self {
            panic!("test returned an error: {e:?}");
        }
    }
}

fn listed(var: &str) -> Option<Vec<BackendKind>> {
    let v = std::env::var(var).ok()?;
    Some(v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
}

/// Runs `body` once on every backend that starts here (paste, paste-emu, uring,
/// epoll), each on a fresh runtime. Fails if the body fails on any of them, or if
/// a backend listed in `PASTE_RT_TEST_REQUIRE` cannot start.
pub fn each_backend<F, Fut>(test_name: &'static str, body: F)
where
    F: Fn() -> Fut,
    Fut: Future + 'static,
    Fut::Output: TestOutcome,
{
    let required = listed(REQUIRE_ENV).unwrap_or_default();
    let only = listed(ONLY_ENV);
    let mut ran = 0;
    let mut failures = Vec::new();
    for kind in BackendKind::ALL {
        if only.as_ref().is_some_and(|o| !o.contains(&kind)) {
            continue;
        }
        let rt = match Builder::new().ignore_env().backend_choice(BackendChoice::Only(kind)).quiet().build() {
            Ok(rt) => rt,
            Err(e) => {
                if required.contains(&kind) {
                    failures.push(format!("{kind}: required by {REQUIRE_ENV} but {e}"));
                } else {
                    eprintln!("[{test_name}] skipped on {kind}: {}", e.reason);
                }
                continue;
            }
        };
        ran += 1;
        eprintln!("[{test_name}] running on {kind}");
        let result = catch_unwind(AssertUnwindSafe(|| rt.block_on(body()).check()));
        drop(rt);
        if let Err(panic) = result {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{kind}: {msg}"));
        }
    }
    if !failures.is_empty() {
        panic!("[{test_name}] failed on: {}", failures.join("; "));
    }
    assert!(ran > 0, "[{test_name}] no backend could start on this machine");
}

/// Runs `body` on one runtime: the named backend (environment ignored), or when
/// `backend` is `None` the one `PASTE_RT_BACKEND`/`auto` picks.
pub fn run_test<F, Fut>(test_name: &'static str, backend: Option<&str>, body: F)
where
    F: Fn() -> Fut,
    Fut: Future + 'static,
    Fut::Output: TestOutcome,
{
    let builder = match backend {
        Some(name) => Builder::new().ignore_env().backend(name),
        None => Builder::new(),
    };
    let rt = builder.quiet().build().unwrap_or_else(|e| panic!("[{test_name}] {e}"));
    match catch_unwind(AssertUnwindSafe(|| rt.block_on(body()).check())) {
        Ok(()) => {}
        Err(panic) => {
            drop(rt);
            resume_unwind(panic)
        }
    }
}
