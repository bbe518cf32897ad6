//! The raw task: one allocation holding a header, the future (stored once) and its
//! output, and the `Waker` that schedules it.
//!
//! Owns the task's memory layout, its reference count and its state machine. The
//! split between the two kinds of state is what makes the per-request path cheap:
//!
//! * **owner-thread state** (`state`, plain `Cell`s): scheduled, running, complete.
//!   Only the runtime thread that owns the task touches it, so a wake-up on that thread
//!   is a load, a store and a queue push — no atomic instruction;
//! * **shared state** (atomics): the reference count, cancellation, and the hand-over
//!   of the output to a [`JoinHandle`](super::JoinHandle) that may live on another
//!   thread.
//!
//! A waker fired on another thread never touches the owner-thread state: it takes a
//! reference and hands the task to the owner's injection queue, which schedules it on
//! the owner thread. The future is only ever polled or dropped on the owner thread: a
//! task is registered with its runtime until it completes or is cancelled, and that
//! registration holds a reference, so the last reference dropped elsewhere only frees
//! memory whose future is already gone.
//!
//! It never allocates after the spawn and never blocks.

use std::cell::{Cell, UnsafeCell};
use std::future::Future;
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::ptr;
use std::sync::atomic::{fence, AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use atomic_waker::AtomicWaker;

use super::JoinError;
use crate::context;
use crate::runtime::{Injected, Shared};

/// Owner-thread state bits.
pub(crate) mod state {
    /// In the run queue (or about to run again).
    pub const SCHEDULED: u8 = 1 << 0;
    /// Being polled right now.
    pub const RUNNING: u8 = 1 << 1;
    /// The future is gone (finished, panicked or cancelled).
    pub const COMPLETE: u8 = 1 << 2;
    /// Linked in its runtime's registry.
    pub const REGISTERED: u8 = 1 << 3;
}

/// Shared state bits.
pub(crate) mod sync {
    /// Cancellation was asked for (`abort`).
    pub const CANCEL: u8 = 1 << 0;
    /// The join handle is gone.
    pub const JOIN_DROPPED: u8 = 1 << 1;
    /// The output is stored and may be taken by the join handle.
    pub const OUTPUT_READY: u8 = 1 << 2;
    /// Spawned from another thread (counted in `Shared::remote_tasks`).
    pub const REMOTE: u8 = 1 << 3;
}

/// What a task's type knows and its header does not.
pub(crate) struct VTable {
    /// Polls the future; on completion (or a panic) drops it, stores the output and
    /// returns `true`.
    poll: unsafe fn(*const Header, &mut Context<'_>) -> bool,
    /// Drops the future and stores `Err(Cancelled)`.
    cancel: unsafe fn(*const Header),
    /// Drops a stored output that nobody will take.
    drop_output: unsafe fn(*const Header),
    /// Frees the allocation (the future is gone, the output taken or dropped).
    dealloc: unsafe fn(*const Header),
}

/// The part of a task every piece of the runtime can use without its type.
///
/// It is part of every task's allocation, so it is kept small: the two state bytes
/// and a 32-bit reference count share a word, and the owner runtime is found
/// through `shared` rather than kept a second time.
pub(crate) struct Header {
    state: Cell<u8>,
    sync: AtomicU8,
    /// References: the registration, the join handle, wakers, queued wakes. Far
    /// below `u32::MAX` (see [`retain`]).
    refs: AtomicU32,
    vtable: &'static VTable,
    /// The runtime that owns the task (kept alive for late cross-thread wakes).
    shared: Arc<Shared>,
    /// Run-queue link.
    pub(crate) next: Cell<*const Header>,
    /// Registry links.
    pub(crate) prev_all: Cell<*const Header>,
    pub(crate) next_all: Cell<*const Header>,
    join_waker: AtomicWaker,
}

/// The header followed by the output: the output's place depends only on its type,
/// so a join handle reaches it without knowing the future's type.
#[repr(C)]
struct OutputCell<T> {
    header: Header,
    output: UnsafeCell<Option<Result<T, JoinError>>>,
}

/// A whole task: header, output, then the future (stored once).
#[repr(C)]
struct TaskCell<F: Future> {
    head: OutputCell<F::Output>,
    future: UnsafeCell<ManuallyDrop<F>>,
}

/// A counted pointer to a task, handed between queues. Dropping it releases the
/// reference.
pub(crate) struct TaskRef(pub(crate) *const Header);

// SAFETY: a TaskRef only moves between threads inside the injection queue; the
// owner thread is the only one that schedules, polls or cancels through it, and the
// reference count it carries is atomic.
unsafe impl Send for TaskRef {}

impl Drop for TaskRef {
    fn drop(&mut self) {
        // SAFETY: the ref holds one reference.
        unsafe { release(self.0) };
    }
}

impl TaskRef {
    /// Gives up the pointer without releasing its reference.
    pub(crate) fn into_raw(self) -> *const Header {
        let p = self.0;
        std::mem::forget(self);
        p
    }
}

/// Allocates a task for `future`, owned by `shared`'s runtime, with two references
/// (its registration, and the join handle).
pub(crate) fn allocate<F>(future: F, shared: Arc<Shared>, remote: bool) -> *const Header
where
    F: Future + 'static,
    F::Output: 'static,
{
    let cell = Box::new(TaskCell::<F> {
        head: OutputCell {
            header: Header {
                state: Cell::new(0),
                sync: AtomicU8::new(if remote { sync::REMOTE } else { 0 }),
                refs: AtomicU32::new(2),
                vtable: vtable::<F>(),
                shared,
                next: Cell::new(ptr::null()),
                prev_all: Cell::new(ptr::null()),
                next_all: Cell::new(ptr::null()),
                join_waker: AtomicWaker::new(),
            },
            output: UnsafeCell::new(None),
        },
        future: UnsafeCell::new(ManuallyDrop::new(future)),
    });
    Box::into_raw(cell) as *const Header
}

fn vtable<F>() -> &'static VTable
where
    F: Future + 'static,
    F::Output: 'static,
{
    struct Of<F>(F);
    impl<F: Future + 'static> Of<F> {
        const VTABLE: VTable = VTable {
            poll: poll_future::<F>,
            cancel: cancel_future::<F>,
            drop_output: drop_output::<F::Output>,
            dealloc: dealloc::<F>,
        };
    }
    &Of::<F>::VTABLE
}

/// Releases one reference; frees the task when it was the last.
///
/// # Safety
/// `h` must be a live task and the caller must own the reference it releases.
#[inline]
pub(crate) unsafe fn release(h: *const Header) {
    // SAFETY: live by the caller's contract.
    let header = unsafe { &*h };
    if header.refs.fetch_sub(1, Ordering::Release) == 1 {
        fence(Ordering::Acquire);
        // SAFETY: no reference is left; the future is gone (a registration, which
        // holds a reference, lasts until it is) and so is the output (taken by the
        // join handle, or dropped when it went).
        unsafe { (header.vtable.dealloc)(h) };
    }
}

/// Takes one more reference.
///
/// # Safety
/// `h` must be live.
#[inline]
pub(crate) unsafe fn retain(h: *const Header) {
    // SAFETY: live by the caller's contract.
    let old = unsafe { &*h }.refs.fetch_add(1, Ordering::Relaxed);
    if old > u32::MAX / 2 {
        // Only leaked wakers (billions of them) get here: stop before the count
        // wraps and frees a task still referenced.
        std::process::abort();
    }
}

impl Header {
    #[inline]
    pub(crate) fn state(&self) -> u8 {
        self.state.get()
    }

    #[inline]
    pub(crate) fn set_state(&self, s: u8) {
        self.state.set(s);
    }

    /// Whether the future is gone (the task only waits to be retired).
    #[inline]
    pub(crate) fn is_complete(&self) -> bool {
        self.state.get() & state::COMPLETE != 0
    }

    /// Whether the task sits in the run queue.
    #[inline]
    pub(crate) fn is_scheduled(&self) -> bool {
        self.state.get() & state::SCHEDULED != 0
    }

    #[inline]
    pub(crate) fn sync_bits(&self) -> u8 {
        self.sync.load(Ordering::Acquire)
    }

    /// Asks for cancellation (from any thread).
    pub(crate) fn request_cancel(&self) {
        self.sync.fetch_or(sync::CANCEL, Ordering::AcqRel);
    }
}

/// Schedules `h` on its owner thread, if it is not scheduled or finished already.
///
/// # Safety
/// Must run on `h`'s owner thread, inside its runtime; `h` must be live.
#[inline]
pub(crate) unsafe fn schedule_local(h: *const Header) {
    // SAFETY: live by contract.
    let header = unsafe { &*h };
    let s = header.state.get();
    if s & (state::SCHEDULED | state::COMPLETE) != 0 {
        return;
    }
    header.state.set(s | state::SCHEDULED);
    context::push_task(h);
}

/// Wakes `h` from wherever this runs: on its owner thread by scheduling it at once;
/// anywhere else through its runtime's injection queue (taking a reference for the
/// trip).
///
/// # Safety
/// `h` must be live.
#[inline]
pub(crate) unsafe fn wake(h: *const Header) {
    // SAFETY: live by contract.
    let header = unsafe { &*h };
    if context::is_current(header.shared.id()) {
        // SAFETY: on the owner thread, inside its runtime (is_current).
        unsafe { schedule_local(h) };
        return;
    }
    // SAFETY: live; this reference travels with the queued wake.
    unsafe { retain(h) };
    header.shared.inject(Injected::Wake(TaskRef(h)));
}

/// Polls `h` once (the runtime's run step). Returns `true` when the task completed
/// (its output stored, its registration to be dropped by the caller).
///
/// # Safety
/// Must run on `h`'s owner thread; `h` must be live, registered and scheduled.
#[inline]
pub(crate) unsafe fn run(h: *const Header) -> bool {
    // SAFETY: live by contract.
    let header = unsafe { &*h };
    let s = header.state.get();
    debug_assert!(s & state::SCHEDULED != 0 && s & state::COMPLETE == 0);
    header.state.set((s & !state::SCHEDULED) | state::RUNNING);
    if header.sync.load(Ordering::Acquire) & sync::CANCEL != 0 {
        // SAFETY: owner thread, future present (not complete).
        unsafe { (header.vtable.cancel)(h) };
        return true;
    }
    let waker = ManuallyDrop::new(
        // SAFETY: the vtable's functions uphold RawWaker's contract for a task pointer;
        // this waker borrows the caller's reference (ManuallyDrop: never dropped).
        unsafe { Waker::from_raw(RawWaker::new(h.cast(), &WAKER_VTABLE)) },
    );
    let mut cx = Context::from_waker(&waker);
    // SAFETY: owner thread, future present.
    let done = unsafe { (header.vtable.poll)(h, &mut cx) };
    if !done {
        header.state.set(header.state.get() & !state::RUNNING);
    }
    done
}

/// Cancels `h` (runtime shutdown): drops its future on this, the owner, thread.
///
/// # Safety
/// As for [`run`], without the scheduled requirement; `h` must not be complete.
pub(crate) unsafe fn cancel(h: *const Header) {
    // SAFETY: live, owner thread, not complete (caller's contract).
    unsafe { ((*h).vtable.cancel)(h) };
}

/// Finishes a task whose output was just stored: marks it complete, hands the
/// output to the join handle (or drops it if the handle is gone) and wakes the
/// joiner. The caller then unlinks it and releases the registration.
///
/// # Safety
/// Owner thread; `h` live, its future just dropped and its output stored.
unsafe fn complete(h: *const Header) {
    // SAFETY: live by contract.
    let header = unsafe { &*h };
    // SCHEDULED stays if the task woke itself during its last poll: it is in the run
    // queue then, and the runtime retires it when it comes out (see `is_complete`).
    header.state.set((header.state.get() & !state::RUNNING) | state::COMPLETE);
    let prev = header.sync.fetch_or(sync::OUTPUT_READY, Ordering::AcqRel);
    if prev & sync::JOIN_DROPPED != 0 {
        // SAFETY: nobody will take the output; it is dropped here, on the owner
        // thread, where the task's output type is at home.
        unsafe { (header.vtable.drop_output)(h) };
    }
    header.join_waker.wake();
    let shared = &header.shared;
    shared.task_finished(prev & sync::REMOTE != 0);
}

unsafe fn poll_future<F: Future>(h: *const Header, cx: &mut Context<'_>) -> bool {
    // SAFETY: `h` is the header of a TaskCell<F> (this vtable is F's).
    let cell = unsafe { &*(h as *const TaskCell<F>) };
    // SAFETY: owner thread (nobody else touches the future), the future is present
    // (not complete), and it never moves: the allocation is fixed until dealloc.
    let fut = unsafe { Pin::new_unchecked(&mut **cell.future.get()) };
    let result = match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
        Ok(Poll::Pending) => return false,
        Ok(Poll::Ready(v)) => Ok(v),
        Err(payload) => Err(JoinError::Panicked(payload)),
    };
    // SAFETY: the future finished: dropped once, here; it is never touched again.
    let _ = catch_unwind(AssertUnwindSafe(|| unsafe { ManuallyDrop::drop(&mut *cell.future.get()) }));
    // SAFETY: owner thread; the join handle reads the output only after OUTPUT_READY,
    // which `complete` sets after this write.
    unsafe { *cell.head.output.get() = Some(result) };
    // SAFETY: as the contract of this function.
    unsafe { complete(h) };
    true
}

unsafe fn cancel_future<F: Future>(h: *const Header) {
    // SAFETY: as in poll_future.
    let cell = unsafe { &*(h as *const TaskCell<F>) };
    // SAFETY: the future is present and dropped exactly once, here.
    let _ = catch_unwind(AssertUnwindSafe(|| unsafe { ManuallyDrop::drop(&mut *cell.future.get()) }));
    // SAFETY: as in poll_future.
    unsafe { *cell.head.output.get() = Some(Err(JoinError::Cancelled)) };
    // SAFETY: as the contract of this function.
    unsafe { complete(h) };
}

unsafe fn drop_output<T>(h: *const Header) {
    // SAFETY: the output cell's place depends only on T (repr(C)); the caller owns it.
    let cell = unsafe { &*(h as *const OutputCell<T>) };
    // SAFETY: exclusive access (see callers).
    drop(unsafe { (*cell.output.get()).take() });
}

unsafe fn dealloc<F: Future>(h: *const Header) {
    // SAFETY: allocated by `allocate::<F>` as a Box<TaskCell<F>>; the last reference is
    // gone. The future is ManuallyDrop (already dropped), the output None.
    drop(unsafe { Box::from_raw(h as *mut TaskCell<F>) });
}

/// Takes the output (the join handle, after seeing `OUTPUT_READY`).
///
/// # Safety
/// `h` must be a task with output type `T`, OUTPUT_READY must have been observed
/// (Acquire) and the caller must be its only taker.
pub(crate) unsafe fn take_output<T>(h: *const Header) -> Option<Result<T, JoinError>> {
    // SAFETY: see drop_output.
    let cell = unsafe { &*(h as *const OutputCell<T>) };
    // SAFETY: exclusive by contract.
    unsafe { (*cell.output.get()).take() }
}

/// The join handle is gone (from any thread): if the output is ready it is dropped
/// here (the handle's thread may hold `T`), else the owner drops it at completion.
///
/// # Safety
/// `h` must be a task with output type `T`; called once, by its join handle.
pub(crate) unsafe fn join_dropped<T>(h: *const Header) {
    // SAFETY: live (the handle's reference).
    let header = unsafe { &*h };
    let prev = header.sync.fetch_or(sync::JOIN_DROPPED, Ordering::AcqRel);
    if prev & sync::OUTPUT_READY != 0 {
        // SAFETY: ready and the owner will not touch it again (it saw no
        // JOIN_DROPPED); this is the only taker.
        drop(unsafe { take_output::<T>(h) });
    }
}

/// Registers the joiner's waker.
///
/// # Safety
/// `h` must be live.
pub(crate) unsafe fn register_join_waker(h: *const Header, waker: &Waker) {
    // SAFETY: live by contract.
    unsafe { &*h }.join_waker.register(waker);
}

static WAKER_VTABLE: RawWakerVTable = RawWakerVTable::new(waker_clone, waker_wake, waker_wake_by_ref, waker_drop);

unsafe fn waker_clone(p: *const ()) -> RawWaker {
    // SAFETY: a waker holds (or borrows) a reference, so the task is live.
    unsafe { retain(p.cast()) };
    RawWaker::new(p, &WAKER_VTABLE)
}

unsafe fn waker_wake(p: *const ()) {
    // SAFETY: this waker owns a reference: the task is live until it is released.
    unsafe {
        wake(p.cast());
        release(p.cast());
    }
}

unsafe fn waker_wake_by_ref(p: *const ()) {
    // SAFETY: a waker holds (or borrows) a reference.
    unsafe { wake(p.cast()) };
}

unsafe fn waker_drop(p: *const ()) {
    // SAFETY: this waker owns a reference.
    unsafe { release(p.cast()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_header_stays_within_nine_words() {
        // Part of every task's allocation (a connection's, in a server): 88 bytes
        // with a word-sized count and the owner's id kept twice.
        let size = std::mem::size_of::<Header>();
        assert!(size <= 72, "the task header is {size} bytes (at most 72 expected)");
    }
}
