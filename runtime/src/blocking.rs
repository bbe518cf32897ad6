//! [`spawn_blocking`]: run blocking code (file I/O, DNS, compression, a database
//! driver) on a small pool of helper threads, and await its result from a task.
//!
//! Owns the process-wide pool: a queue of jobs and up to [`MAX_THREADS`] threads
//! that take them, started on demand and exiting after [`KEEP_ALIVE`] idle. A job
//! is an `async_task` task whose future calls the closure, so its [`JoinHandle`]
//! is the runtime's ordinary one: the waker stored by the awaiting task is `Send`,
//! and completing the job wakes it through the runtime's injection queue, which
//! interrupts the runtime's wait. This module never runs a job on a runtime
//! thread and never blocks one.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_task::Runnable;

use crate::task::{CatchUnwind, JoinHandle};

/// Most threads the pool runs at once; further jobs wait in the queue.
pub const MAX_THREADS: usize = 16;
/// How long an idle pool thread waits for a job before it exits.
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// Runs `f` on the blocking pool and returns a handle to await its result.
///
/// Use it for anything that would stall the runtime thread — and with it every
/// connection that thread serves: blocking system calls, CPU-heavy work, blocking
/// client libraries. A panic in `f` is reported as
/// `Err(`[`JoinError::Panicked`](crate::JoinError::Panicked)`)`; dropping the
/// handle detaches the job (it still runs); [`abort`](JoinHandle::abort) drops it
/// if it has not started. It may be called from any thread, inside a runtime or
/// not.
///
/// ```
/// # paste_rt::runtime::Builder::new().backend("epoll").build().unwrap().block_on(async {
/// let len = paste_rt::spawn_blocking(|| std::fs::read("Cargo.toml").map(|b| b.len())).await.unwrap();
/// assert!(len.unwrap() > 0);
/// # });
/// ```
pub fn spawn_blocking<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (runnable, task) = async_task::spawn(CatchUnwind(async move { f() }), |r| POOL.push(r));
    runnable.schedule();
    JoinHandle::from_blocking(task)
}

/// Threads of the blocking pool alive now (busy or idle).
pub fn pool_threads() -> usize {
    POOL.lock().threads
}

static POOL: Pool = Pool {
    state: Mutex::new(State { queue: VecDeque::new(), threads: 0, idle: 0, notified: 0 }),
    cond: Condvar::new(),
};

struct Pool {
    state: Mutex<State>,
    cond: Condvar,
}

struct State {
    queue: VecDeque<Runnable>,
    /// Threads alive.
    threads: usize,
    /// Threads waiting on `cond`.
    idle: usize,
    /// Wake-ups sent to idle threads and not yet taken by one.
    notified: usize,
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A job never runs with the lock held, so a poisoned lock only means a
        // thread died between two plain field updates: the state is still whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a job: an idle thread takes it, or a new thread is started while
    /// there are fewer than `MAX_THREADS`; otherwise a busy thread takes it next.
    fn push(&'static self, job: Runnable) {
        let mut state = self.lock();
        state.queue.push_back(job);
        if state.idle > state.notified {
            state.notified += 1;
            self.cond.notify_one();
            return;
        }
        if state.threads >= MAX_THREADS {
            return;
        }
        state.threads += 1;
        let started = std::thread::Builder::new().name("paste-rt-blocking".into()).spawn(move || self.work());
        if started.is_err() {
            state.threads -= 1;
            if state.threads == 0 {
                // No thread exists to ever run the queued jobs: drop them, which
                // cancels them (their handles report `JoinError::Cancelled`).
                let orphans: Vec<Runnable> = state.queue.drain(..).collect();
                drop(state);
                drop(orphans);
            }
        }
    }

    /// A pool thread: takes jobs until none has come for `KEEP_ALIVE`.
    fn work(&self) {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.queue.pop_front() {
                drop(state);
                // The job's own future catches a panic of the closure.
                job.run();
                state = self.lock();
                continue;
            }
            state.idle += 1;
            let deadline = Instant::now() + KEEP_ALIVE;
            let timed_out = loop {
                let left = deadline.saturating_duration_since(Instant::now());
                state = self.cond.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0;
                if state.notified > 0 {
                    state.notified -= 1;
                    break false;
                }
                if Instant::now() >= deadline {
                    break true;
                }
            };
            state.idle -= 1;
            if timed_out && state.queue.is_empty() {
                state.threads -= 1;
                return;
            }
        }
    }
}
