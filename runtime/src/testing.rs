//! Support for `#[paste_rt::test]` and `#[paste_rt::test_each_backend]`, and the one
//! place where tests choose backends.
//!
//! [`backends`] (and [`backends_with`], for a test that needs its own builder
//! settings) is the only way a test should decide which backends it runs on: it
//! returns every backend that starts on this machine, printing why any other was
//! skipped, and fails the test when a backend the run requires cannot start. Two
//! environment variables steer it: `PASTE_RT_TEST_REQUIRE=epoll,uring,…` makes a
//! listed backend that cannot start a test failure (CI uses it so that skipped
//! backends cannot hide), and `PASTE_RT_TEST_BACKENDS=…` restricts the run to the
//! listed backends. [`each_backend`] runs one test body once per backend it returns.
//!
//! It owns no runtime of its own beyond the one each test body runs on, and must
//! never let a test pass on fewer backends than the run requires.

use std::fmt::Debug;
use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use paste_rt_core::BackendKind;

use crate::build_error::BuildError;
use crate::runtime::Builder;
use crate::select::BackendChoice;

/// Backends a CI run requires to start (comma-separated names).
pub const REQUIRE_ENV: &str = "PASTE_RT_TEST_REQUIRE";
/// Restricts the backends tests run on (comma-separated names).
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

/// A comma-separated list of backend names from `var`; `None` when unset. A name
/// that is not a backend fails the test: a typo must not shrink what is required.
fn listed(var: &str) -> Option<Vec<BackendKind>> {
    let v = std::env::var(var).ok()?;
    let names = v.split(',').map(str::trim).filter(|s| !s.is_empty());
    Some(names.map(|name| name.parse().unwrap_or_else(|e| panic!("{var}={v:?}: {e}"))).collect())
}

/// What a test run asks of backends: which must start, which may be used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirement {
    /// Backends that must start (`PASTE_RT_TEST_REQUIRE`).
    pub required: Vec<BackendKind>,
    /// When set, the only backends used (`PASTE_RT_TEST_BACKENDS`).
    pub only: Option<Vec<BackendKind>>,
}

impl Requirement {
    /// The requirement of this run, from the environment.
    pub fn from_env() -> Requirement {
        Requirement { required: listed(REQUIRE_ENV).unwrap_or_default(), only: listed(ONLY_ENV) }
    }

    /// The backends to use, given how each one's start went (`start` is called once
    /// per backend not excluded by `only`), in [`BackendKind::ALL`] order. Skipped
    /// backends are reported on stderr. Errors: a required backend that did not
    /// start, or no backend at all.
    pub fn choose(
        &self,
        test_name: &str,
        mut start: impl FnMut(BackendKind) -> Result<(), BuildError>,
    ) -> Result<Vec<BackendKind>, String> {
        let mut chosen = Vec::new();
        let mut missing = Vec::new();
        for kind in BackendKind::ALL {
            if self.only.as_ref().is_some_and(|o| !o.contains(&kind)) {
                continue;
            }
            match start(kind) {
                Ok(()) => chosen.push(kind),
                Err(e) if self.required.contains(&kind) => missing.push(format!("{kind}: {e}")),
                Err(e) => eprintln!("[{test_name}] skipped on {kind}: {e}"),
            }
        }
        if !missing.is_empty() {
            return Err(format!("[{test_name}] required by {REQUIRE_ENV} but cannot start: {}", missing.join("; ")));
        }
        if chosen.is_empty() {
            return Err(format!("[{test_name}] no backend could start on this machine"));
        }
        Ok(chosen)
    }
}

/// The backends a test runs on: every backend that starts here with default
/// settings, honouring `PASTE_RT_TEST_REQUIRE` and `PASTE_RT_TEST_BACKENDS`.
///
/// # Panics
/// When a required backend cannot start, or none can.
pub fn backends(test_name: &str) -> Vec<BackendKind> {
    backends_with(test_name, |_| Builder::new())
}

/// Like [`backends`], probing each backend with the builder `settings(kind)` returns
/// (for a test that needs, say, a small pool); the backend choice is set here.
///
/// # Panics
/// When a required backend cannot start, or none can.
pub fn backends_with(test_name: &str, settings: impl Fn(BackendKind) -> Builder) -> Vec<BackendKind> {
    let probe = |kind| settings(kind).ignore_env().backend_choice(BackendChoice::Only(kind)).quiet().build().map(drop);
    Requirement::from_env().choose(test_name, probe).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `body` once on every backend that starts here (paste, paste-emu, uring,
/// epoll; see [`backends`]), each on a fresh runtime. Fails if the body fails on
/// any of them, or if a backend listed in `PASTE_RT_TEST_REQUIRE` cannot start.
pub fn each_backend<F, Fut>(test_name: &'static str, body: F)
where
    F: Fn() -> Fut,
    Fut: Future + 'static,
    Fut::Output: TestOutcome,
{
    let mut failures = Vec::new();
    for kind in backends(test_name) {
        let rt = match Builder::new().ignore_env().backend_choice(BackendChoice::Only(kind)).quiet().build() {
            Ok(rt) => rt,
            Err(e) => {
                failures.push(format!("{kind}: started once, then not: {e}"));
                continue;
            }
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use paste_rt_core::StartError;

    fn fails(kind: BackendKind) -> Result<(), BuildError> {
        Err(BuildError::Backend(StartError { backend: kind, reason: "denied here".into(), errno: Some(1) }))
    }

    #[test]
    fn a_required_backend_that_cannot_start_fails_the_test() {
        let req = Requirement { required: vec![BackendKind::Epoll, BackendKind::Uring], only: None };
        let e = req
            .choose("t", |k| if k == BackendKind::Uring { fails(k) } else { Ok(()) })
            .expect_err("uring is required and did not start");
        assert_eq!(e, "[t] required by PASTE_RT_TEST_REQUIRE but cannot start: uring: cannot start the uring backend: denied here");
    }

    #[test]
    fn a_backend_not_required_that_cannot_start_is_skipped() {
        let req = Requirement { required: vec![BackendKind::Epoll], only: None };
        let chosen = req.choose("t", |k| if k == BackendKind::Epoll { Ok(()) } else { fails(k) }).unwrap();
        assert_eq!(chosen, vec![BackendKind::Epoll]);
    }

    #[test]
    fn only_restricts_which_backends_are_even_tried() {
        let req = Requirement { required: vec![], only: Some(vec![BackendKind::Uring, BackendKind::Epoll]) };
        let mut tried = vec![];
        let chosen = req
            .choose("t", |k| {
                tried.push(k);
                Ok(())
            })
            .unwrap();
        assert_eq!((tried.clone(), chosen), (vec![BackendKind::Uring, BackendKind::Epoll], tried));
    }

    #[test]
    fn no_backend_at_all_fails_the_test() {
        let e = Requirement::default().choose("t", fails).unwrap_err();
        assert_eq!(e, "[t] no backend could start on this machine");
    }

    #[test]
    fn the_helper_probes_with_the_test_settings() {
        // Buffers of 0 bytes cannot make a pool on any backend: with epoll required,
        // the helper must fail rather than hand back a shorter list.
        let req = Requirement { required: vec![BackendKind::Epoll], only: Some(vec![BackendKind::Epoll]) };
        let probe = |kind| {
            Builder::new()
                .ignore_env()
                .backend_choice(BackendChoice::Only(kind))
                .buffer_size(0)
                .quiet()
                .build()
                .map(drop)
        };
        let e = req.choose("t", probe).unwrap_err();
        assert!(e.contains("required by PASTE_RT_TEST_REQUIRE but cannot start: epoll"), "{e}");
        let probe =
            |kind| Builder::new().ignore_env().backend_choice(BackendChoice::Only(kind)).quiet().build().map(drop);
        assert_eq!(req.choose("t", probe).unwrap(), vec![BackendKind::Epoll]);
    }
}
