//! The runtime: one thread, one backend, and the tick of DESIGN.md §2 in
//! [`Runtime::block_on`].
//!
//! Owns the task queues (local, and the injection queue other threads push to),
//! the timer queue and the driver. The tick is the only place that blocks; it makes
//! no system call of its own — waiting is the backend's `poll`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use async_task::Runnable;
use paste_rt_core::{BackendKind, RemoteWake, StatsSnapshot};

use crate::context;
use crate::driver::Driver;
use crate::select::Selection;
use crate::task::{CatchUnwind, JoinHandle};
use crate::time::Timers;

pub use crate::builder::{Builder, BACKEND_ENV};

/// Most tasks run in one tick before I/O is polled again.
const TASK_BUDGET: usize = 256;

static NEXT_RUNTIME_ID: AtomicU64 = AtomicU64::new(1);

/// The part of a runtime other threads can reach: its injection queue and the
/// means to interrupt its wait.
pub(crate) struct Shared {
    id: u64,
    injected: Mutex<VecDeque<Runnable>>,
    has_injected: AtomicBool,
    remote: Arc<dyn RemoteWake>,
    /// Set when the runtime is gone: late wake-ups are dropped.
    closed: AtomicBool,
    /// Tasks spawned through a `Handle` that have not finished.
    pub(crate) remote_tasks: std::sync::atomic::AtomicUsize,
    /// Every task (local or remote) that has not finished.
    pub(crate) live_tasks: std::sync::atomic::AtomicUsize,
}

impl Shared {
    /// Schedules a task: on the runtime's own thread into the local queue, from
    /// anywhere else into the injection queue, interrupting the wait.
    fn schedule(&self, runnable: Runnable) {
        let runnable = match context::push_local(self.id, runnable) {
            Ok(()) => return,
            Err(runnable) => runnable,
        };
        if self.closed.load(Ordering::Acquire) {
            // The runtime is gone; running or dropping the task here would be on
            // the wrong thread. The task's memory is leaked (shutdown races only).
            std::mem::forget(runnable);
            return;
        }
        self.injected.lock().unwrap_or_else(|e| e.into_inner()).push_back(runnable);
        self.has_injected.store(true, Ordering::Release);
        self.remote.wake();
    }
}

/// A runtime's state, owned by its thread.
pub(crate) struct Inner {
    pub(crate) id: u64,
    pub(crate) queue: RefCell<VecDeque<Runnable>>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) driver: RefCell<Driver>,
    pub(crate) timers: RefCell<Timers>,
    pub(crate) selection: Selection,
    /// Number of sibling runtimes started together (thread-per-core).
    pub(crate) threads: usize,
    /// Inside block_on already (nesting is refused).
    running: Cell<bool>,
    /// Graceful shutdown was requested; `shutdown_requested()` waiters.
    shutting_down: Cell<bool>,
    shutdown_waiters: RefCell<slab::Slab<Waker>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("id", &self.id).field("backend", &self.selection.kind).finish()
    }
}

impl Inner {
    pub(crate) fn spawn_local<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let shared = self.shared.clone();
        shared.live_tasks.fetch_add(1, Ordering::AcqRel);
        let counted = LiveTask(shared.clone());
        let future = async move {
            let _counted = counted;
            future.await
        };
        let (runnable, task) = async_task::spawn_local(CatchUnwind(future), move |r| shared.schedule(r));
        runnable.schedule();
        JoinHandle::new(task)
    }

    /// Step 1: runs up to `TASK_BUDGET` ready tasks. Returns whether any remain.
    fn run_tasks(&self) -> bool {
        for _ in 0..TASK_BUDGET {
            let next = self.queue.borrow_mut().pop_front();
            match next {
                Some(runnable) => {
                    runnable.run();
                }
                None => return false,
            }
        }
        !self.queue.borrow().is_empty()
    }

    /// Moves tasks woken by other threads into the local queue.
    fn take_injected(&self) {
        if self.shared.has_injected.swap(false, Ordering::AcqRel) {
            let mut injected = self.shared.injected.lock().unwrap_or_else(|e| e.into_inner());
            self.queue.borrow_mut().extend(injected.drain(..));
        }
    }
}

/// A paste-rt runtime: one thread, one backend. Build one with [`Builder`].
///
/// ```
/// use paste_rt::runtime::Builder;
/// let rt = Builder::new().backend("epoll").build().unwrap();
/// let answer = rt.block_on(async { paste_rt::spawn(async { 6 * 7 }).await.unwrap() });
/// assert_eq!(answer, 42);
/// assert_eq!(rt.backend().name(), "epoll");
/// ```
pub struct Runtime {
    inner: Rc<Inner>,
}

impl Runtime {
    pub(crate) fn from_parts(driver: Driver, selection: Selection, threads: usize) -> Runtime {
        let id = NEXT_RUNTIME_ID.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(Shared {
            id,
            injected: Mutex::new(VecDeque::new()),
            has_injected: AtomicBool::new(false),
            remote: driver.backend.remote_waker(),
            closed: AtomicBool::new(false),
            remote_tasks: std::sync::atomic::AtomicUsize::new(0),
            live_tasks: std::sync::atomic::AtomicUsize::new(0),
        });
        Runtime {
            inner: Rc::new(Inner {
                id,
                queue: RefCell::new(VecDeque::with_capacity(1024)),
                shared,
                driver: RefCell::new(driver),
                timers: RefCell::new(Timers::default()),
                selection,
                threads,
                running: Cell::new(false),
                shutting_down: Cell::new(false),
                shutdown_waiters: RefCell::new(slab::Slab::new()),
            }),
        }
    }

    /// The backend this runtime runs on.
    pub fn backend(&self) -> BackendKind {
        self.inner.selection.kind
    }

    /// How the backend was chosen and what it probed (one line when displayed).
    pub fn selection(&self) -> &Selection {
        &self.inner.selection
    }

    /// The backend's counters now, with the pool's buffers in use.
    pub fn stats(&self) -> StatsSnapshot {
        snapshot(&self.inner)
    }

    /// A `Send` handle for spawning onto this runtime from other threads.
    pub fn handle(&self) -> crate::Handle {
        crate::Handle::new(self.inner.shared.clone())
    }

    /// Spawns a task onto this runtime (it runs when the runtime does).
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        self.inner.spawn_local(future)
    }

    /// Runs `future` to completion on this thread, driving every task, timer and
    /// connection of the runtime meanwhile. This is the tick loop (DESIGN.md §2).
    ///
    /// # Panics
    /// When called inside a runtime (nested `block_on`), or if the backend's wait
    /// fails for good (its kernel object is gone).
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        let inner = &self.inner;
        assert!(!inner.running.replace(true), "block_on called inside block_on");
        let _enter = context::enter(inner.clone());
        let _running = Reset(&inner.running);
        let main_wake = Arc::new(MainWake { woken: AtomicBool::new(true), shared: inner.shared.clone() });
        let main_waker = Waker::from(main_wake.clone());
        let mut cx = Context::from_waker(&main_waker);
        let mut future = pin!(future);
        // The tick's clock (`time::coarse_now`), read once per tick after the wait.
        let mut now = Instant::now();
        let _tick_now = RestoreTickNow(crate::time::set_tick_now(Some(now)));

        loop {
            // 0. The future given to block_on, whenever it was woken.
            if main_wake.woken.swap(false, Ordering::AcqRel) {
                if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                    return out;
                }
            }

            // 1. Run ready tasks, with a budget so I/O is never starved.
            let more_tasks = inner.run_tasks();

            // 2. Flush + wait: the backend's one poll. No wait if work is ready.
            let ready = more_tasks || !inner.queue.borrow().is_empty() || main_wake.woken.load(Ordering::Acquire);
            let timeout = if ready {
                Some(Duration::ZERO)
            } else {
                // The wait ends at the next timer or the next receive-deadline
                // sweep. A sweep alone is measured from the tick's clock (it is
                // coarse anyway): no extra clock read while only deadlines are armed.
                let timer = inner.timers.borrow_mut().next_deadline();
                let sweep = inner.driver.borrow().next_sweep();
                match (timer, sweep) {
                    (Some(t), s) => Some(s.map_or(t, |s| t.min(s)).saturating_duration_since(Instant::now())),
                    (None, Some(s)) => Some(s.saturating_duration_since(now)),
                    (None, None) => None,
                }
            };
            // 3. Dispatch: completions wake their tasks (inside Driver::poll).
            if let Err(e) = inner.driver.borrow_mut().poll(timeout) {
                panic!("paste-rt: the {} backend's poll failed: {e}", inner.selection.kind);
            }
            inner.take_injected();

            // 4. Timers and receive deadlines, on the clock read once for this tick.
            now = Instant::now();
            crate::time::set_tick_now(Some(now));
            inner.driver.borrow_mut().sweep_deadlines(now);
            inner.timers.borrow_mut().fire_due(now);
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let inner = &self.inner;
        let _enter = context::enter(inner.clone());
        // Close every connection and listener; their wakers go with them.
        inner.driver.borrow_mut().close_all();
        let _ = inner.driver.borrow_mut().poll(Some(Duration::ZERO));
        // Drop queued tasks on this thread (cancelling them), until none are left.
        loop {
            inner.take_injected();
            let drained: Vec<Runnable> = inner.queue.borrow_mut().drain(..).collect();
            if drained.is_empty() {
                break;
            }
            drop(drained);
        }
        *inner.timers.borrow_mut() = Timers::default();
        inner.shared.closed.store(true, Ordering::Release);
        inner.take_injected();
        inner.queue.borrow_mut().clear();
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("backend", &self.backend()).finish()
    }
}

pub(crate) fn snapshot(inner: &Inner) -> StatsSnapshot {
    let driver = inner.driver.borrow();
    let mut s = driver.backend.stats().snapshot();
    s.pool_in_use = driver.pool.in_use() as u64;
    s
}

/// The counters of the current thread's runtime.
///
/// # Panics
/// Outside a paste-rt runtime.
pub fn stats() -> StatsSnapshot {
    snapshot(&context::current())
}

/// The buffer pool of the current thread's runtime (to read kept buffers, or to
/// take `TxBuf`s outside a connection).
///
/// # Panics
/// Outside a paste-rt runtime.
pub fn pool() -> paste_rt_core::BufPool {
    context::current().driver.borrow().pool.clone()
}

/// How the current thread's runtime chose its backend and what it probed, if any.
pub fn current_selection() -> Option<Selection> {
    context::try_current().map(|i| i.selection.clone())
}

/// Which backend the current thread's runtime runs on, if any.
pub fn current_backend() -> Option<BackendKind> {
    context::with_current(|i| i.selection.kind)
}

/// The waker of the future given to `block_on`: sets a flag, and interrupts the
/// wait when fired from another thread.
struct MainWake {
    woken: AtomicBool,
    shared: Arc<Shared>,
}

impl Wake for MainWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.woken.swap(true, Ordering::AcqRel) && !context::is_current(self.shared.id) {
            self.shared.remote.wake();
        }
    }
}

/// Restores the thread's tick clock when `block_on` returns.
struct RestoreTickNow(Option<Instant>);
impl Drop for RestoreTickNow {
    fn drop(&mut self) {
        crate::time::set_tick_now(self.0);
    }
}

struct Reset<'a>(&'a Cell<bool>);
impl Drop for Reset<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

pub(crate) fn spawn_remote<F>(shared: &Arc<Shared>, future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let s = shared.clone();
    shared.remote_tasks.fetch_add(1, Ordering::AcqRel);
    shared.live_tasks.fetch_add(1, Ordering::AcqRel);
    let counter = (CountedTask(shared.clone()), LiveTask(shared.clone()));
    let future = async move {
        let _counted = counter;
        future.await
    };
    let (runnable, task) = async_task::spawn(CatchUnwind(future), move |r| s.schedule(r));
    runnable.schedule();
    JoinHandle::new(task)
}

/// Decrements the count of handle-spawned tasks when the task ends (or is dropped).
struct CountedTask(Arc<Shared>);

impl Drop for CountedTask {
    fn drop(&mut self) {
        self.0.remote_tasks.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Decrements the count of live tasks when the task ends (or is dropped).
struct LiveTask(Arc<Shared>);

impl Drop for LiveTask {
    fn drop(&mut self) {
        self.0.live_tasks.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Asks the current runtime's tasks to wind down: every
/// [`shutdown_requested`] future completes. Accept loops should stop accepting and
/// connection tasks finish the request in hand, then exit.
///
/// # Panics
/// Outside a paste-rt runtime.
pub fn request_shutdown() {
    let inner = context::current();
    inner.shutting_down.set(true);
    let waiters: Vec<Waker> = inner.shutdown_waiters.borrow_mut().drain().collect();
    for w in waiters {
        w.wake();
    }
    // Tasks waiting to receive are woken too, so an idle connection can notice
    // `is_shutting_down()` without holding a `shutdown_requested()` future.
    inner.driver.borrow_mut().wake_receivers();
}

/// Completes when graceful shutdown of the current runtime is requested (by
/// [`request_shutdown`], `RuntimeThread::shutdown`, or Ctrl-C handling in the
/// application). Use it in `select!` beside `accept()`: polling it repeatedly keeps
/// one waker slot, released when the future is dropped.
///
/// # Panics
/// Outside a paste-rt runtime.
pub fn shutdown_requested() -> ShutdownRequested {
    ShutdownRequested { inner: context::current(), slot: None }
}

/// The future of [`shutdown_requested`].
#[must_use = "futures do nothing unless awaited"]
pub struct ShutdownRequested {
    inner: Rc<Inner>,
    slot: Option<usize>,
}

impl std::fmt::Debug for ShutdownRequested {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShutdownRequested").field("requested", &self.inner.shutting_down.get()).finish()
    }
}

impl Future for ShutdownRequested {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.inner.shutting_down.get() {
            return Poll::Ready(());
        }
        let this = &mut *self;
        let mut waiters = this.inner.shutdown_waiters.borrow_mut();
        match this.slot.and_then(|k| waiters.get_mut(k)) {
            Some(w) if w.will_wake(cx.waker()) => {}
            Some(w) => *w = cx.waker().clone(),
            None => this.slot = Some(waiters.insert(cx.waker().clone())),
        }
        Poll::Pending
    }
}

impl Drop for ShutdownRequested {
    fn drop(&mut self) {
        if let Some(k) = self.slot.take() {
            if let Ok(mut waiters) = self.inner.shutdown_waiters.try_borrow_mut() {
                waiters.try_remove(k);
            }
        }
    }
}

/// Whether graceful shutdown of the current runtime was requested. Tasks blocked
/// in `recv` are woken when it is, so a connection loop may simply check this flag
/// whenever its receive is pending.
pub fn is_shutting_down() -> bool {
    context::with_current(|i| i.shutting_down.get()).unwrap_or(false)
}

/// Tasks of the current runtime that have not finished (the caller included).
pub fn live_tasks() -> usize {
    context::current().shared.live_tasks.load(Ordering::Acquire)
}
