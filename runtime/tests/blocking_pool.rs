//! The blocking pool is bounded: with more blocked jobs than threads, exactly
//! `MAX_THREADS` run at once and the rest wait their turn, then all complete.
//! Alone in its test binary, so no other test holds pool threads meanwhile.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use paste_rt::blocking::{pool_threads, MAX_THREADS};

#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cond: Condvar,
}

#[paste_rt::test]
async fn at_most_max_threads_jobs_run_at_once() {
    const JOBS: usize = MAX_THREADS * 2 + 5;
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Gate::default());
    let handles: Vec<_> = (0..JOBS)
        .map(|i| {
            let (running, most, gate) = (running.clone(), most.clone(), gate.clone());
            paste_rt::spawn_blocking(move || {
                let now = running.fetch_add(1, Ordering::AcqRel) + 1;
                most.fetch_max(now, Ordering::AcqRel);
                let mut open = gate.open.lock().unwrap();
                while !*open {
                    open = gate.cond.wait(open).unwrap();
                }
                drop(open);
                running.fetch_sub(1, Ordering::AcqRel);
                i
            })
        })
        .collect();
    // Up to 10 s for the pool to fill.
    for _ in 0..10_000 {
        if running.load(Ordering::Acquire) == MAX_THREADS {
            break;
        }
        paste_rt::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(running.load(Ordering::Acquire), MAX_THREADS, "the pool never filled");
    assert_eq!(pool_threads(), MAX_THREADS);
    *gate.open.lock().unwrap() = true;
    gate.cond.notify_all();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.await.unwrap(), i);
    }
    assert_eq!(most.load(Ordering::Acquire), MAX_THREADS, "more jobs ran at once than the pool has threads");
    assert!(pool_threads() <= MAX_THREADS);
}
