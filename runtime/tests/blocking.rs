//! `spawn_blocking`: results wake the runtime on every backend, a panic becomes
//! `JoinError::Panicked`, jobs run off the runtime thread, and handles work from
//! outside a runtime too.

use std::sync::mpsc;
use std::time::Duration;

use paste_rt::{spawn_blocking, JoinError};

/// The runtime has no timer and no I/O while the job runs: it waits in the
/// backend's poll with no timeout, and only the job's completion can wake it.
#[paste_rt::test_each_backend]
async fn a_result_interrupts_an_idle_wait() {
    let (started_tx, started_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let job = spawn_blocking(move || {
        started_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        std::thread::current().name().map(str::to_owned)
    });
    // Released from a third thread once the job runs, while this runtime waits.
    std::thread::spawn(move || {
        started_rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        go_tx.send(()).unwrap();
    });
    let thread = job.await.unwrap();
    assert_eq!(thread.as_deref(), Some("paste-rt-blocking"));
}

#[paste_rt::test_each_backend]
async fn a_panic_is_a_join_error_and_the_pool_lives_on() {
    let err = spawn_blocking(|| -> u32 { panic!("blocking job exploded") }).await.unwrap_err();
    assert!(err.is_panic());
    assert!(matches!(err, JoinError::Panicked(_)));
    assert_eq!(err.to_string(), "task panicked: blocking job exploded");
    // The pool thread that caught it still takes work.
    assert_eq!(spawn_blocking(|| 6 * 7).await.unwrap(), 42);
}

#[paste_rt::test]
async fn many_jobs_all_complete_in_their_handles() {
    let handles: Vec<_> = (0..100u64).map(|i| spawn_blocking(move || i * i)).collect();
    let mut sum = 0;
    for (i, h) in handles.into_iter().enumerate() {
        let v = h.await.unwrap();
        assert_eq!(v, (i * i) as u64);
        sum += v;
    }
    assert_eq!(sum, (0..100u64).map(|i| i * i).sum());
}

#[test]
fn usable_without_a_runtime() {
    let h = spawn_blocking(|| "plain thread");
    let rt = paste_rt::runtime::Builder::new().ignore_env().backend("epoll").build().unwrap();
    assert_eq!(rt.block_on(h).unwrap(), "plain thread");
}
