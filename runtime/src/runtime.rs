//! The runtime: one thread, one backend, and the tick (docs/architecture.md, the tick)
//! in [`Runtime::block_on`].
//!
//! Owns the task queues (the local run queue, the registry of live tasks, and the
//! injection queue other threads push to), the timer queue and the driver. The
//! tick is the only place that blocks; it makes no system call of its own —
//! waiting is the backend's `poll`, and completions land in their records (and wake
//! their tasks) inside it.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use paste_rt_core::{BackendKind, RemoteWake, StatsSnapshot, Wait};

use crate::context;
use crate::driver::Driver;
use crate::select::Selection;
use crate::task::queue::{Registry, RunQueue, MAX_LIFO_POLLS};
use crate::task::raw::{self, TaskRef};
use crate::task::JoinHandle;
use crate::time::{SweepClock, Timers};

pub use crate::build_error::BuildError;
pub use crate::builder::{Builder, BACKEND_ENV};

/// Most tasks run in one tick before I/O is polled again.
const TASK_BUDGET: usize = 256;

static NEXT_RUNTIME_ID: AtomicU64 = AtomicU64::new(1);

/// What other threads hand a runtime through its injection queue.
pub(crate) enum Injected {
    /// Wake this task (the reference travelled with it).
    Wake(TaskRef),
    /// A task spawned from another thread: register and schedule it (the reference
    /// becomes its registration).
    Spawn(TaskRef),
}

/// The part of a runtime other threads can reach: its injection queue and the
/// means to interrupt its wait.
pub(crate) struct Shared {
    id: u64,
    injected: Mutex<Vec<Injected>>,
    has_injected: AtomicBool,
    remote: Arc<dyn RemoteWake>,
    /// Set (under the injection lock) when the runtime is gone: late hand-overs are
    /// dropped.
    closed: AtomicBool,
    /// Tasks spawned through a `Handle` that have not finished.
    pub(crate) remote_tasks: AtomicUsize,
    /// Every task (local or remote) that has not finished.
    pub(crate) live_tasks: AtomicUsize,
}

impl Shared {
    /// The runtime's id (tasks compare it with the current thread's).
    #[inline]
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Hands `item` to the runtime from any thread and interrupts its wait. Once the
    /// runtime is gone the item is dropped here: a woken task's reference is
    /// released (its future was dropped at shutdown), a spawned task is cancelled.
    pub(crate) fn inject(&self, item: Injected) {
        let mut q = self.injected.lock().unwrap_or_else(|e| e.into_inner());
        if self.closed.load(Ordering::Acquire) {
            drop(q);
            drop_injected(item);
            return;
        }
        q.push(item);
        drop(q);
        self.has_injected.store(true, Ordering::Release);
        self.remote.wake();
    }

    /// A task finished (counted).
    pub(crate) fn task_finished(&self, remote: bool) {
        self.live_tasks.fetch_sub(1, Ordering::AcqRel);
        if remote {
            self.remote_tasks.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Drops a hand-over that no runtime will take.
fn drop_injected(item: Injected) {
    match item {
        Injected::Wake(t) => drop(t),
        Injected::Spawn(t) => {
            // Never registered: its future is `Send` (it came from another thread), so
            // cancelling it here is fine. Its registration reference goes with `t`.
            // SAFETY: live (t's reference), not complete, never polled.
            unsafe { raw::cancel(t.0) };
        }
    }
}

/// A runtime's state, owned by its thread.
pub(crate) struct Inner {
    pub(crate) id: u64,
    pub(crate) queue: RunQueue,
    registry: Registry,
    pub(crate) shared: Arc<Shared>,
    pub(crate) driver: RefCell<Driver>,
    /// The backend's pool (an owner handle, reachable without borrowing the driver).
    pub(crate) pool: paste_rt_core::BufPool,
    pub(crate) timers: RefCell<Timers>,
    pub(crate) selection: Selection,
    /// Number of sibling runtimes started together (thread-per-core).
    pub(crate) threads: usize,
    /// When receive deadlines are next checked (every `SweepClock::PERIOD` while
    /// any is set).
    sweep: SweepClock,
    /// Inside block_on already (nesting is refused).
    running: Cell<bool>,
    /// Graceful shutdown was requested; `shutdown_requested()` waiters.
    shutting_down: Cell<bool>,
    shutdown_waiters: RefCell<slab::Slab<Waker>>,
    /// The batch servers, whose handlers the tick calls.
    pub(crate) batch: crate::batch::BatchServers,
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
        self.shared.live_tasks.fetch_add(1, Ordering::AcqRel);
        let h = raw::allocate(future, self.shared.clone(), false);
        self.adopt(h);
        JoinHandle::from_task(h)
    }

    /// Registers a new task (its registration reference stays with the registry) and
    /// queues it.
    fn adopt(&self, h: *const raw::Header) {
        self.registry.link(h);
        // SAFETY: a new task, owned by this runtime, on its thread.
        let header = unsafe { &*h };
        header.set_state(header.state() | raw::state::REGISTERED | raw::state::SCHEDULED);
        self.queue.push_back(h);
    }

    /// Step 1: runs up to `TASK_BUDGET` ready tasks, the LIFO slot first (at most
    /// `MAX_LIFO_POLLS` in a row). Returns whether any remain.
    #[inline]
    fn run_tasks(&self) -> bool {
        // A tick with nothing queued (a batch server's, whose one future is polled
        // on its own) costs one look.
        !self.queue.is_empty() && self.run_queued_tasks()
    }

    /// [`run_tasks`](Self::run_tasks) once something is queued.
    #[inline(never)]
    fn run_queued_tasks(&self) -> bool {
        let q = &self.queue;
        let mut lifo_streak = 0;
        for _ in 0..TASK_BUDGET {
            let h = match q.take_lifo() {
                Some(h) if lifo_streak < MAX_LIFO_POLLS => {
                    lifo_streak += 1;
                    h
                }
                Some(h) => {
                    q.push_back(h);
                    lifo_streak = 0;
                    match q.pop() {
                        Some(h) => h,
                        None => return false,
                    }
                }
                None => {
                    lifo_streak = 0;
                    match q.pop() {
                        Some(h) => h,
                        None => return false,
                    }
                }
            };
            // SAFETY: queued tasks are registered (live): a registration lasts until
            // the task is retired, and a queued task is retired only once it is out.
            let header = unsafe { &*h };
            if header.is_complete() {
                // It woke itself while finishing: it was left queued to be retired here.
                self.retire(h);
                continue;
            }
            q.set_running(h);
            // SAFETY: registered (live), scheduled, owned by this runtime, whose thread
            // this is.
            let done = unsafe { raw::run(h) };
            q.set_running(std::ptr::null());
            if done && !header.is_scheduled() {
                self.retire(h);
            }
        }
        !q.is_empty()
    }

    /// A task completed (and is not queued): unlinks it and releases its
    /// registration.
    fn retire(&self, h: *const raw::Header) {
        self.registry.unlink(h);
        // SAFETY: the registration's reference, released once.
        unsafe { raw::release(h) };
    }

    /// Moves what other threads handed over into the run queue.
    #[inline]
    fn take_injected(&self) {
        // One load when nothing was handed over (the common tick); the swap only when
        // something was.
        if self.shared.has_injected.load(Ordering::Acquire) {
            self.take_injected_now();
        }
    }

    /// [`take_injected`](Self::take_injected) once the flag is seen set.
    #[inline(never)]
    fn take_injected_now(&self) {
        if !self.shared.has_injected.swap(false, Ordering::AcqRel) {
            return;
        }
        let items = std::mem::take(&mut *self.shared.injected.lock().unwrap_or_else(|e| e.into_inner()));
        for item in items {
            match item {
                Injected::Wake(t) => {
                    // SAFETY: this runtime owns the task and this is its thread.
                    unsafe { raw::schedule_local(t.0) };
                }
                Injected::Spawn(t) => self.adopt(t.into_raw()),
            }
        }
    }

    /// Cancels every live task on this thread (shutdown), until none is left.
    fn cancel_all(&self) {
        loop {
            self.take_injected();
            self.queue.clear();
            let Some(h) = self.registry.first() else { break };
            // SAFETY: registered (live), owned by this runtime, on its thread. A
            // complete one only waited to be retired (the queue was cleared above).
            if !unsafe { &*h }.is_complete() {
                // SAFETY: as above, and not complete.
                unsafe { raw::cancel(h) };
            }
            self.retire(h);
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
            injected: Mutex::new(Vec::new()),
            has_injected: AtomicBool::new(false),
            remote: driver.remote_waker(),
            closed: AtomicBool::new(false),
            remote_tasks: AtomicUsize::new(0),
            live_tasks: AtomicUsize::new(0),
        });
        let now = Instant::now();
        Runtime {
            inner: Rc::new(Inner {
                id,
                queue: RunQueue::new(),
                registry: Registry::new(),
                shared,
                pool: driver.pool().clone(),
                driver: RefCell::new(driver),
                timers: RefCell::new(Timers::default()),
                selection,
                threads,
                sweep: SweepClock::new(now),
                running: Cell::new(false),
                shutting_down: Cell::new(false),
                shutdown_waiters: RefCell::new(slab::Slab::new()),
                batch: Default::default(),
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
    /// connection of the runtime meanwhile. This is the tick loop (docs/architecture.md, the tick).
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
        let _tick_now = RestoreTickNow(crate::time::set_tick_now(Some(Instant::now())));

        loop {
            // 0. The future given to block_on, whenever it was woken.
            if main_wake.woken.swap(false, Ordering::AcqRel) {
                if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                    return out;
                }
            }

            // 1. Run ready tasks, with a budget so I/O is never starved.
            let more_tasks = inner.run_tasks();

            // 2. Flush + wait: the backend's one poll. No wait if work is ready; never
            //    past the next timer, nor past the next deadline sweep.
            let ready = more_tasks
                || !inner.queue.is_empty()
                || main_wake.woken.load(Ordering::Acquire)
                || inner.batch.news_left();
            let wait = if ready { Wait::Poll } else { inner.wait_limit() };
            // 3. Completions land in their records and wake their tasks, inside poll.
            if let Err(e) = inner.driver.borrow_mut().poll(wait) {
                panic!("paste-rt: the {} backend's poll failed: {e}", inner.selection.kind);
            }
            inner.take_injected();

            // 4. Timers, and receive deadlines (coarse).
            let now = Instant::now();
            crate::time::set_tick_now(Some(now));
            inner.timers.borrow_mut().fire_due(now);
            inner.sweep_deadlines(now);

            // 5. Batch servers with news: their handlers run here, on the tick's
            //    clock, with no task in between; replies leave at the next poll.
            inner.batch.run(&inner.driver);
        }
    }
}

impl Inner {
    /// How long the tick may wait: until the next timer, and while receive deadlines
    /// are set, until the next sweep; the wait names that instant, so a backend can
    /// keep one kernel timer for it across ticks ([`Wait::Until`]). Only a timer reads
    /// the clock: the sweep is coarse, so the tick's clock (`coarse_now`, read after
    /// the last wait) serves.
    #[inline(always)] // once a tick, into block_on
    fn wait_limit(&self) -> Wait {
        let sweep = self.driver.borrow().has_deadlines();
        match (self.timers.borrow_mut().next_deadline(), sweep) {
            (Some(timer), sweep) => {
                let now = Instant::now();
                let to_timer = Wait::until(timer, timer.saturating_duration_since(now));
                if sweep {
                    to_timer.earlier(self.sweep.wait(now))
                } else {
                    to_timer
                }
            }
            (None, true) => self.sweep.wait(crate::time::coarse_now()),
            (None, false) => Wait::Forever,
        }
    }

    /// Fails the receives whose deadline passed, at most every `SweepClock::PERIOD`.
    #[inline]
    fn sweep_deadlines(&self, now: Instant) {
        if self.sweep.is_due(now) {
            self.sweep_deadlines_now(now);
        }
    }

    /// [`sweep_deadlines`](Self::sweep_deadlines) once a sweep is due.
    #[inline(never)]
    fn sweep_deadlines_now(&self, now: Instant) {
        self.sweep.swept(now);
        if let Ok(mut d) = self.driver.try_borrow_mut() {
            d.expire(now);
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let inner = &self.inner;
        let _enter = context::enter(inner.clone());
        // Close every connection and listener; their wakers go with them.
        inner.driver.borrow_mut().close_all();
        let _ = inner.driver.borrow_mut().poll(Wait::Poll);
        // Cancel every task on this thread (their futures are dropped here).
        inner.cancel_all();
        inner.batch.clear();
        *inner.timers.borrow_mut() = Timers::default();
        {
            let _q = inner.shared.injected.lock().unwrap_or_else(|e| e.into_inner());
            inner.shared.closed.store(true, Ordering::Release);
        }
        inner.cancel_all();
        let late = std::mem::take(&mut *inner.shared.injected.lock().unwrap_or_else(|e| e.into_inner()));
        for item in late {
            drop_injected(item);
        }
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("backend", &self.backend()).finish()
    }
}

pub(crate) fn snapshot(inner: &Inner) -> StatsSnapshot {
    inner.driver.borrow().snapshot()
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
    context::current().driver.borrow().pool().clone()
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
    shared.remote_tasks.fetch_add(1, Ordering::AcqRel);
    shared.live_tasks.fetch_add(1, Ordering::AcqRel);
    let h = raw::allocate(future, shared.clone(), true);
    // The allocation's registration reference travels with the hand-over.
    shared.inject(Injected::Spawn(TaskRef(h)));
    JoinHandle::from_task(h)
}

/// Asks the current runtime's tasks to wind down: every
/// [`shutdown_requested`] future completes. Accept loops should stop accepting and
/// connection tasks finish the request in hand, then exit.
///
/// # Panics
/// Outside a paste-rt runtime.
pub fn request_shutdown() {
    let inner = context::current();
    if !inner.shutting_down.replace(true) {
        tracing::info!(target: "paste_rt::shutdown", backend = %inner.selection.kind, "graceful shutdown requested");
    }
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
