//! Pool buffers lent as [`bytes::Bytes`]: the thread-safe part of a pool and the
//! owner a `Bytes` holds.
//!
//! A pool ([`BufPool`](crate::BufPool)) is used by one thread: its state sits in
//! `Cell`s and its buffer handles ([`RxBuf`](crate::RxBuf), [`TxBuf`](crate::TxBuf))
//! are `!Send`, so lending and returning a buffer costs no atomic operation. A
//! `Bytes` is `Send + Sync` and may drop on any thread, so a buffer lent as one needs
//! a way back that any thread may take. That is this module's [`PoolShared`], one per
//! pool, made when the pool is and reached from a `Bytes` through an `Arc`:
//!
//! * it holds the pool's memory alive (the mapping, or the guard of memory someone
//!   else owns, such as a netmap region), so a `Bytes` stays readable after its
//!   runtime and its pool state are gone; the memory is freed with the last `Arc`,
//!   never reused;
//! * it holds the **return list**, a lock-free stack of buffer indices linked through
//!   a per-index array of `AtomicU32`s (allocated at the pool's first `into_bytes`). A
//!   `Bytes` dropped on the pool's own thread, while the pool state lives, returns its
//!   buffer directly (as dropping an `RxBuf` does); one dropped on any other thread
//!   pushes the index here, and the first push onto an empty list interrupts the
//!   owning runtime's wait. The owner takes the list back at its tick
//!   ([`BufPool::reclaim_returned`](crate::BufPool::reclaim_returned)). Pushes race
//!   only with other pushes and with the owner's take-all (`swap`), so the list has no
//!   ABA problem.
//!
//! Only [`RxBuf::into_bytes`](crate::RxBuf::into_bytes) pays for this (an `Arc`
//! increment, and the one allocation `Bytes::from_owner` makes); lending and
//! returning `RxBuf`s and `TxBuf`s never touches it. It must never touch the pool's
//! single-threaded state from a thread other than the pool's own.

use std::any::Any;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::ThreadId;

use crate::pool::{PoolInner, NO_INDEX};
use crate::remote_wake::RemoteWake;

thread_local! {
    /// This thread's id, read once (comparing it is the only per-drop cost of
    /// recognising the pool's own thread).
    static THIS_THREAD: ThreadId = std::thread::current().id();
}

/// The current thread's id; `None` while its thread-locals are being destroyed.
fn this_thread() -> Option<ThreadId> {
    THIS_THREAD.try_with(|id| *id).ok()
}

/// The part of a pool any thread may reach; see the module docs.
pub(crate) struct PoolShared {
    /// Keeps the pool's memory alive; dropped with the last `Arc`.
    _memory: Box<dyn Any + Send + Sync>,
    /// The thread that owns the pool state (the one that built it: pool handles are
    /// `!Send`).
    owner: ThreadId,
    /// The pool state while it lives, null once freed. Only the owning thread
    /// dereferences it (other threads only test it for null).
    inner: AtomicPtr<PoolInner>,
    /// Head of the return list: a buffer index, or `NO_INDEX`.
    returns: AtomicU32,
    /// Per index, the next link of the return list.
    links: OnceLock<Box<[AtomicU32]>>,
    /// Interrupts the owning runtime's wait (set by the runtime, once).
    wake: OnceLock<Arc<dyn RemoteWake>>,
}

impl PoolShared {
    /// The shared part of a pool being built on this thread, keeping `memory` alive.
    pub(crate) fn new(memory: Box<dyn Any + Send + Sync>) -> PoolShared {
        PoolShared {
            _memory: memory,
            owner: std::thread::current().id(),
            inner: AtomicPtr::new(std::ptr::null_mut()),
            returns: AtomicU32::new(NO_INDEX),
            links: OnceLock::new(),
            wake: OnceLock::new(),
        }
    }

    /// Records where the pool state lives (once it has its final address).
    pub(crate) fn set_inner(&self, inner: NonNull<PoolInner>) {
        self.inner.store(inner.as_ptr(), Ordering::Release);
    }

    /// The pool state is about to be freed: from now on returns are dropped.
    pub(crate) fn clear_inner(&self) {
        self.inner.store(std::ptr::null_mut(), Ordering::Release);
    }

    /// Prepares the return list for a pool of `limit` indices (before the first
    /// buffer is lent as `Bytes`; allocates once).
    pub(crate) fn ensure_links(&self, limit: usize) {
        self.links.get_or_init(|| (0..limit).map(|_| AtomicU32::new(NO_INDEX)).collect());
    }

    /// Sets what interrupts the owner's wait when a buffer comes back from another
    /// thread. Returns `false` if one was set already (it stays).
    pub(crate) fn set_wake(&self, wake: Arc<dyn RemoteWake>) -> bool {
        self.wake.set(wake).is_ok()
    }

    /// Whether a buffer waits on the return list (a relaxed load: the tick's cost
    /// when nothing came back).
    #[inline]
    pub(crate) fn has_returns(&self) -> bool {
        self.returns.load(Ordering::Relaxed) != NO_INDEX
    }

    /// Takes the whole return list (owning thread): calls `f` with each index.
    pub(crate) fn take_returns(&self, mut f: impl FnMut(u32)) {
        // Acquire: every push (a release CAS) happened before, with its link store and
        // its thread's last reads of the buffer.
        let mut idx = self.returns.swap(NO_INDEX, Ordering::Acquire);
        let Some(links) = self.links.get() else { return };
        while idx != NO_INDEX {
            let next = links[idx as usize].load(Ordering::Relaxed);
            f(idx);
            idx = next;
        }
    }

    /// A `Bytes` holding buffer `index` dropped: return it (see the module docs).
    fn give_back(&self, index: u32) {
        if this_thread() == Some(self.owner) {
            let inner = self.inner.load(Ordering::Relaxed);
            if let Some(inner) = NonNull::new(inner) {
                // SAFETY: on the owning thread the pool state is live while `inner` is
                // non-null (it is cleared, on this same thread, before the state is
                // freed), and `index` was lent as `Bytes` by it and is returned once.
                unsafe { PoolInner::return_lent_bytes(inner, index) };
            }
            // Else the pool state is gone: the buffer goes with the memory.
            return;
        }
        if self.inner.load(Ordering::Acquire).is_null() {
            return;
        }
        let Some(links) = self.links.get() else { return };
        let mut head = self.returns.load(Ordering::Relaxed);
        loop {
            links[index as usize].store(head, Ordering::Relaxed);
            // Release: the owner reuses the buffer only after it saw this push.
            match self.returns.compare_exchange_weak(head, index, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => head = now,
            }
        }
        if head == NO_INDEX {
            if let Some(wake) = self.wake.get() {
                wake.wake();
            }
        }
    }
}

/// What a `Bytes` made from a pool buffer owns: the buffer (its index) and the
/// pool's shared part; dropping it returns the buffer (see the module docs).
pub(crate) struct LentBytes {
    shared: Arc<PoolShared>,
    index: u32,
    ptr: *const u8,
    len: usize,
}

// SAFETY: the buffer is lent to this owner alone (nobody writes it until it is
// returned, which happens only in Drop), its memory stays mapped while `shared`
// lives, and returning it from any thread is what PoolShared::give_back is for.
unsafe impl Send for LentBytes {}
// SAFETY: shared access is read-only (AsRef), as above.
unsafe impl Sync for LentBytes {}

impl LentBytes {
    /// # Safety
    /// `index` must be lent by the pool of `shared` and given up by the caller (it
    /// counted it as lent as `Bytes`); `ptr .. ptr + len` must lie inside that buffer.
    pub(crate) unsafe fn new(shared: Arc<PoolShared>, index: u32, ptr: *const u8, len: usize) -> LentBytes {
        LentBytes { shared, index, ptr, len }
    }
}

impl AsRef<[u8]> for LentBytes {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the range lies in a buffer lent to this owner, whose memory the
        // Arc keeps mapped; nobody writes it while lent (see `new`'s contract).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for LentBytes {
    fn drop(&mut self) {
        self.shared.give_back(self.index);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    use bytes::{Buf, BufMut, Bytes};
    use proptest::prelude::*;

    use super::*;
    use crate::{BufPool, PoolConfig, RxBuf};

    fn pool(n: u32) -> BufPool {
        BufPool::new(&PoolConfig { count: n, buf_size: 256, ..PoolConfig::default() }, 0).unwrap()
    }

    /// A received buffer holding `data`, as a backend lends one.
    fn received(pool: &BufPool, data: &[u8]) -> RxBuf {
        let mut tx = pool.tx_buf().expect("a free buffer");
        tx.extend_from_slice(data);
        let (index, len) = tx.into_raw();
        // SAFETY: the index was just taken from the pool and is handed over once.
        unsafe { pool.lend_rx(index, 0, len) }
    }

    #[derive(Default)]
    struct CountingWake(AtomicUsize);
    impl RemoteWake for CountingWake {
        fn wake(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_bytes_keeps_its_buffer_lent_until_the_last_clone_drops() {
        let p = pool(4);
        let rx = received(&p, b"hello, world");
        let (index, at) = (rx.index(), rx.as_ptr());
        let all = rx.into_bytes();
        assert_eq!(all.as_ptr(), at, "no copy");
        let world = all.slice(7..);
        let again = all.clone();
        assert_eq!((&world[..], world.as_ptr()), (&b"world"[..], at.wrapping_add(7)));
        assert_eq!((p.lent_as_bytes(), p.in_use()), (1, 1));
        drop(all);
        drop(again);
        assert!(p.is_lent(index), "a slice still holds it");
        drop(world);
        assert_eq!((p.lent_as_bytes(), p.in_use(), p.free_count()), (0, 0, 4));
        assert!(!p.is_lent(index));
    }

    #[test]
    fn an_empty_buffer_becomes_empty_bytes_and_goes_back_at_once() {
        let p = pool(2);
        let mut rx = received(&p, b"xy");
        rx.advance(2);
        let b = rx.into_bytes();
        assert!(b.is_empty());
        assert_eq!((p.lent_as_bytes(), p.in_use()), (0, 0));
    }

    #[test]
    fn a_bytes_dropped_on_another_thread_comes_back_at_the_next_reclaim_and_wakes_the_owner_once() {
        let p = pool(4);
        let wake = Arc::new(CountingWake::default());
        assert!(p.set_return_wake(wake.clone()));
        let (a, b) = (received(&p, b"one").into_bytes(), received(&p, b"two").into_bytes());
        let (ia, ib) = (a.as_ptr(), b.as_ptr());
        std::thread::spawn(move || {
            assert_eq!((&a[..], &b[..]), (&b"one"[..], &b"two"[..]));
            drop(a);
            drop(b);
        })
        .join()
        .unwrap();
        assert_eq!(wake.0.load(Ordering::SeqCst), 1, "the first return onto an empty list wakes; the second does not");
        assert_eq!((p.lent_as_bytes(), p.in_use()), (2, 2), "not back before the owner takes them");
        assert_eq!(p.reclaim_returned(), 2);
        assert_eq!((p.lent_as_bytes(), p.in_use(), p.free_count()), (0, 0, 4));
        assert_eq!(p.reclaim_returned(), 0);
        // The buffers are reused: the same memory is lent again.
        let again: Vec<_> = (0..4).map(|_| p.tx_buf().unwrap()).collect();
        assert!(again.iter().any(|t| t.as_ptr() == ia) && again.iter().any(|t| t.as_ptr() == ib));
    }

    /// Memory someone else owns, with a guard that records when it is dropped.
    struct Guard(Arc<AtomicBool>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_bytes_outlives_its_pool_and_the_memory_goes_with_the_last_one() {
        // A Vec, not a boxed slice: moving a Box into the guard would assert it is
        // unique and void `base` (Miri's Stacked Borrows); moving a Vec does not.
        let mut mem = vec![0u8; 8 * 64];
        let base = mem.as_mut_ptr();
        let freed = Arc::new(AtomicBool::new(false));
        let guard = Guard(freed.clone());
        let memory = Box::new((mem, guard));
        // SAFETY: `memory` owns the buffers and is the pool's guard, so they live as
        // long as the pool and every Bytes lent from it.
        let p = unsafe { BufPool::external(base, 64, 8, 0..8, 0, memory) };
        let kept = received(&p, b"survivor").into_bytes();
        let early = received(&p, b"early").into_bytes();
        let rx = received(&p, b"an RxBuf");
        drop(p);
        assert!(!freed.load(Ordering::SeqCst));
        drop(early); // owning thread, the state still lives (the RxBuf holds it)
        drop(rx); // the last lent buffer other than Bytes: the pool state goes
        assert!(!freed.load(Ordering::SeqCst), "a Bytes still holds the memory");
        let read = std::thread::spawn(move || {
            let seen = kept.to_vec();
            drop(kept); // frees the memory, on this thread
            seen
        });
        assert_eq!(read.join().unwrap(), b"survivor");
        assert!(freed.load(Ordering::SeqCst), "the last Bytes freed the memory");
    }

    #[test]
    fn a_bytes_dropped_on_the_owning_thread_after_the_pool_state_is_gone_is_not_reused() {
        let freed = Arc::new(AtomicBool::new(false));
        let mut mem = vec![0u8; 4 * 64];
        let base = mem.as_mut_ptr();
        // SAFETY: as above.
        let p = unsafe { BufPool::external(base, 64, 4, 0..4, 0, Box::new((mem, Guard(freed.clone())))) };
        let b = received(&p, b"late").into_bytes();
        drop(p); // owners gone, only a Bytes lent: the state is freed now
        assert_eq!(&b[..], b"late");
        drop(b);
        assert!(freed.load(Ordering::SeqCst));
    }

    #[test]
    fn buffers_lent_as_bytes_go_back_to_the_recycle_ring() {
        let p = pool(8);
        let mut ring = vec![0u64; 8];
        // SAFETY: ring memory zeroed, aligned, outliving the attachment (detached below).
        assert!(unsafe { p.attach_recycle_ring(ring.as_mut_ptr().cast(), 4, 0, 256, 4) });
        let first = (ring[1] >> 32) as u16;
        let mut got = vec![];
        // SAFETY: stands in for the kernel, which took the first buffer.
        unsafe { p.recycle_take(first, 10, |b| got.push(b)) };
        let b = got.pop().unwrap().into_bytes();
        assert_eq!(p.recycle_state(), (4, 3));
        drop(b);
        assert_eq!(p.recycle_state(), (4, 4), "straight back to the ring's tail");
        // SAFETY: the test consumer stopped.
        unsafe { p.detach_recycle_ring() };
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn an_rxbuf_is_a_buf_and_a_txbuf_is_a_bufmut() {
        let p = pool(2);
        let mut tx = p.tx_buf().unwrap();
        tx.put_u16(0xabcd);
        tx.put_slice(b"frame");
        assert_eq!(tx.remaining_mut(), 256 - 7);
        let (index, len) = tx.into_raw();
        // SAFETY: as in `received`.
        let mut rx = unsafe { p.lend_rx(index, 0, len) };
        assert_eq!(rx.get_u16(), 0xabcd);
        assert_eq!((Buf::remaining(&rx), rx.chunk()), (5, &b"frame"[..]));
        Buf::advance(&mut rx, 99);
        assert!(!rx.has_remaining(), "advancing past the end stops at the end");
    }

    #[test]
    #[should_panic(expected = "past the end")]
    fn advancing_a_txbuf_past_its_capacity_panics_like_any_full_bufmut() {
        let p = pool(1);
        let mut tx = p.tx_buf().unwrap();
        tx.put_bytes(0, 256);
        // SAFETY: refused before any byte counts as written.
        unsafe { tx.advance_mut(1) };
    }

    proptest! {
        /// Conservation with buffers lent as `Bytes`, dropped here, on another thread
        /// or after reclaim: every buffer comes back exactly once.
        #[test]
        fn every_buffer_lent_as_bytes_comes_back_once(ops in proptest::collection::vec(0u8..5, 0..200)) {
            let p = pool(8);
            let mut held: Vec<Bytes> = vec![];
            let mut away: Vec<Bytes> = vec![];
            for op in ops {
                match op {
                    0 => if p.free_count() > 0 { held.push(received(&p, b"data").into_bytes()) },
                    1 => { held.pop(); }
                    2 => if let Some(b) = held.pop() { away.push(b) },
                    3 => { let batch = std::mem::take(&mut away); std::thread::spawn(move || drop(batch)).join().unwrap(); }
                    _ => { p.reclaim_returned(); }
                }
                prop_assert_eq!(p.free_count() + p.in_use(), 8);
                prop_assert!(p.lent_as_bytes() as usize >= held.len() + away.len());
            }
            drop(held);
            std::thread::spawn(move || drop(away)).join().unwrap();
            p.reclaim_returned();
            prop_assert_eq!((p.lent_as_bytes(), p.in_use(), p.free_count()), (0, 0, 8));
        }
    }
}
