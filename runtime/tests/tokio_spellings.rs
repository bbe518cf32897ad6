//! tokio's attribute spellings accepted by paste-rt's macros, run for real:
//! `flavor = "current_thread"`, `worker_threads = N` (N runtime threads, each
//! running the body) and `crate = "…"` (a re-exported runtime). The spellings that
//! are rejected, with their messages, are the macros crate's trybuild tests.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The runtime re-exported under another path, as an application might.
mod reexport {
    pub use paste_rt as rt;
}

static WORKER_BODY_RUNS: AtomicUsize = AtomicUsize::new(0);

#[paste_rt::main(flavor = "current_thread", backend = "epoll")]
async fn current_thread() -> Option<paste_rt::BackendKind> {
    paste_rt::yield_now().await;
    paste_rt::current_backend()
}

#[paste_rt::main(worker_threads = 3, backend = "epoll")]
async fn three_workers() {
    WORKER_BODY_RUNS.fetch_add(1, Ordering::SeqCst);
    paste_rt::yield_now().await;
}

#[paste_rt::main(crate = "crate::reexport::rt", backend = "epoll")]
async fn through_a_reexport() -> u32 {
    reexport::rt::spawn(async { 41 + 1 }).await.unwrap()
}

#[test]
fn tokio_spellings_of_main_run() {
    assert_eq!(current_thread(), Some(paste_rt::BackendKind::Epoll));
    three_workers();
    assert_eq!(WORKER_BODY_RUNS.load(Ordering::SeqCst), 3, "worker_threads = 3 runs the body on 3 threads");
    assert_eq!(through_a_reexport(), 42);
}

#[paste_rt::test(flavor = "current_thread", crate = "crate::reexport::rt")]
async fn tokio_spellings_of_test_run() {
    assert_eq!(reexport::rt::spawn(async { 7 }).await.unwrap(), 7);
}
