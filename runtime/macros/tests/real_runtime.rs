//! The three attributes expanded against the real `paste_rt` API and run: proves the generated
//! calls (`Builder::run_main`, `testing::run_test`, `testing::each_backend`) match the runtime
//! and that options reach it.

use std::sync::atomic::{AtomicUsize, Ordering};

use paste_rt::BackendKind;

/// How many times `app::main`'s body ran; only `main_runs_the_body_once_per_thread` touches it.
static MAIN_BODY_RUNS: AtomicUsize = AtomicUsize::new(0);

mod app {
    use std::sync::atomic::Ordering;

    #[paste_rt::main(backend = "epoll", threads = 2)]
    pub async fn main() -> Result<Option<paste_rt::BackendKind>, String> {
        super::MAIN_BODY_RUNS.fetch_add(1, Ordering::SeqCst);
        paste_rt::yield_now().await;
        Ok(paste_rt::current_backend())
    }

    #[paste_rt::main(flavor = "current_thread")]
    pub async fn single() -> u32 {
        paste_rt::yield_now().await;
        7
    }
}

#[test]
fn main_runs_the_body_once_per_thread_and_returns_thread_zeros_output() {
    assert_eq!(app::main(), Ok(Some(BackendKind::Epoll)));
    assert_eq!(MAIN_BODY_RUNS.load(Ordering::SeqCst), 2);
    assert_eq!(app::single(), 7);
}

#[paste_rt::test(backend = "epoll")]
async fn test_runs_on_the_named_backend() {
    paste_rt::yield_now().await;
    assert_eq!(paste_rt::current_backend(), Some(BackendKind::Epoll));
}

#[paste_rt::test(flavor = "current_thread")]
async fn question_mark_in_a_result_test() -> Result<(), std::num::ParseIntError> {
    let n: u32 = "42".parse()?;
    assert_eq!(n, 42);
    Ok(())
}

#[paste_rt::test(backend = "epoll")]
#[should_panic(expected = "test returned an error")]
async fn err_fails_the_test() -> Result<(), std::num::ParseIntError> {
    "not a number".parse::<u32>()?;
    Ok(())
}

#[paste_rt::test(backend = "epoll")]
#[should_panic(expected = "diverged")]
async fn a_body_that_never_returns_compiles() {
    panic!("diverged")
}

#[paste_rt::test_each_backend]
async fn each_backend_gives_the_body_a_runtime() -> Result<(), String> {
    paste_rt::yield_now().await;
    paste_rt::current_backend().map(drop).ok_or_else(|| "no runtime around the body".to_string())
}

#[test]
fn rejected_attributes_fail_to_compile_with_precise_errors() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
