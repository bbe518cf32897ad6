//! The buffer pool: fixed-size buffers addressed by index.
//!
//! Owns the memory every backend receives into and sends from, the free list, one
//! small metadata record per index (its lending state and the link used by
//! [`RxQueue`](crate::RxQueue)), and optionally a *recycle ring*: the descriptor ring
//! a kernel takes receive buffers from (io_uring's provided-buffer ring). It never
//! makes a system call after construction and never allocates after construction:
//! `alloc` and `release` are a pop and a push on a preallocated stack, or a write of
//! one ring descriptor.
//!
//! Indices are what PASTE's netmap rings carry, so the pool addresses buffers the way
//! `NETMAP_BUF(ring, idx)` does: `base + idx * buf_size`. A pool built by paste-rt
//! owns indices `0..count`; a pool built over a netmap region owns whatever indices
//! the kernel handed out (see [`BufPool::external`]).
//!
//! ## Handles and lifetime
//!
//! [`BufPool`] is the owners' handle (the runtime, its backend); cloning it counts an
//! owner. The buffer handles [`RxBuf`] and [`TxBuf`] hold a plain pointer to the pool
//! instead: making and dropping one touches no reference count. The pool's state is
//! freed when the last owner is gone *and* no buffer is lent any more, whichever
//! happens last — so a buffer the application keeps after its runtime shut down stays
//! valid, and returning it frees the pool.
//!
//! A buffer lent as a [`bytes::Bytes`] ([`RxBuf::into_bytes`]) may outlive even that:
//! the pool's memory is held by its thread-safe part (`PoolShared`, see the
//! `lent_bytes` module), which a `Bytes` keeps through an `Arc`. Such a buffer counts
//! as lent ([`BufPool::in_use`], [`BufPool::lent_as_bytes`]) until it comes back —
//! directly when the `Bytes` drops on the pool's thread, else through the return list
//! that [`BufPool::reclaim_returned`] takes back at the runtime's tick — but it does
//! not keep the pool *state* alive: once every owner is gone and nothing else is lent,
//! the state is freed, and a `Bytes` dropped later only releases the memory with the
//! last one. Lending and returning `RxBuf`s and `TxBuf`s never touches the shared
//! part.
//!
//! ## The recycle ring
//!
//! With a ring attached ([`BufPool::attach_recycle_ring`]), a released buffer goes
//! straight back to the ring's tail while the ring holds fewer than its target,
//! instead of onto the free list: buffer id = pool index, so there is no refill pass
//! and no lookup. The consumer (the kernel) takes buffers from the ring's head; the
//! owner reports what it took with [`BufPool::recycle_take`], which lends them out as
//! [`RxBuf`]s. The ring's layout is the 16-byte descriptor of io_uring's provided
//! buffer rings (`struct io_uring_buf { u64 addr; u32 len; u16 bid; u16 resv; }`, the
//! ring's tail in the `resv` field of entry 0); the memory and its registration with
//! the kernel belong to whoever attaches it.

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use crate::buf::{KeptBuf, RxBuf, TxBuf};
use crate::lent_bytes::PoolShared;
use crate::remote_wake::RemoteWake;

/// Default buffer size, as netmap's (2048 bytes).
pub const DEFAULT_BUF_SIZE: u32 = 2048;

/// Bytes of one recycle-ring descriptor (`struct io_uring_buf`).
pub const RECYCLE_DESC_SIZE: usize = 16;

/// Where a pool's memory comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PoolMemory {
    /// Anonymous, zero-filled memory; gone when the process exits.
    #[default]
    Anonymous,
    /// A shared mapping of this file, created or grown to `count * buf_size`
    /// bytes. Buffer `i` lives at byte `i * buf_size` of the file, so buffers kept
    /// with [`RxBuf::keep`] survive a restart.
    File(PathBuf),
}

/// How to build a [`BufPool`].
///
/// ```
/// use paste_rt_core::{BufPool, PoolConfig};
/// let pool = BufPool::new(&PoolConfig { count: 64, ..PoolConfig::default() }, 0).unwrap();
/// assert_eq!(pool.free_count(), 64);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Bytes per buffer.
    pub buf_size: u32,
    /// Number of buffers.
    pub count: u32,
    /// Anonymous or file-backed memory.
    pub memory: PoolMemory,
    /// Indices that start out kept (not on the free list): buffers a previous run
    /// kept in a file-backed pool and that the application still references.
    pub kept: Vec<u32>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig { buf_size: DEFAULT_BUF_SIZE, count: 4096, memory: PoolMemory::Anonymous, kept: Vec::new() }
    }
}

/// What [`BufPool::swap_foreign`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForeignSwap {
    /// This free buffer left the pool in exchange; the foreign one is lent now.
    Swapped(u32),
    /// The free list is empty: nothing changed.
    Exhausted,
    /// The index is out of range or already the pool's: nothing changed.
    NotForeign,
}

/// Lending state of one index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BufState {
    /// Not the pool's: a netmap ring slot or kernel-held buffer, or out of range.
    Foreign,
    /// On the free list.
    Free,
    /// Lent: to the application, to a backend, or linked in an `RxQueue`.
    Lent,
    /// In the recycle ring, offered to its consumer; `Meta::next` holds its ring
    /// position.
    Ring,
    /// Kept by the application ([`RxBuf::keep`]); released explicitly.
    Kept,
}

/// Per-index metadata; `next`/`off`/`len` are meaningful while the buffer is linked
/// in an `RxQueue` (`next` is the ring position while it is in the recycle ring).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Meta {
    pub(crate) state: BufState,
    pub(crate) next: u32,
    pub(crate) off: u32,
    pub(crate) len: u32,
}

pub(crate) const NO_INDEX: u32 = u32::MAX;

/// The recycle ring's state (see the module docs). `descs` is null while none is
/// attached.
struct RecycleRing {
    descs: Cell<*mut u8>,
    mask: Cell<u32>,
    /// Descriptors pushed (our tail), published to the consumer at every push.
    tail: Cell<u16>,
    /// Buffers pushed and not yet reported taken.
    queued: Cell<u32>,
    /// Released buffers go to the ring while `queued < target`.
    target: Cell<u32>,
    /// Where data starts inside each buffer offered, and how many bytes are offered.
    addr_offset: Cell<u32>,
    buf_len: Cell<u32>,
}

impl RecycleRing {
    fn detached() -> RecycleRing {
        RecycleRing {
            descs: Cell::new(std::ptr::null_mut()),
            mask: Cell::new(0),
            tail: Cell::new(0),
            queued: Cell::new(0),
            target: Cell::new(0),
            addr_offset: Cell::new(0),
            buf_len: Cell::new(0),
        }
    }

    #[inline]
    fn wants(&self) -> bool {
        self.queued.get() < self.target.get()
    }

    /// The index pushed at ring position `pos` (masked): the buffer id of its
    /// descriptor, which only the pool writes (the consumer only reads a descriptor's
    /// id), so the ring itself maps positions to indices.
    #[inline]
    fn index_at(&self, pos: u32) -> u32 {
        debug_assert!(!self.descs.get().is_null() && pos <= self.mask.get());
        // SAFETY: a ring is attached (callers hold positions of buffers it was given)
        // and pos <= mask, so the descriptor lies inside the ring memory, which stays
        // valid until detach_recycle_ring; bytes 12..14 are its buffer id, written by
        // ring_push and never by the consumer.
        unsafe { self.descs.get().add(pos as usize * RECYCLE_DESC_SIZE + 12).cast::<u16>().read() as u32 }
    }
}

pub(crate) struct PoolInner {
    base: *mut u8,
    buf_size: u32,
    tx_headroom: u32,
    /// Most payload bytes a [`TxBuf`] carries: the buffer less the headroom, unless
    /// the backend set a lower bound ([`BufPool::limit_tx_payload`]).
    tx_capacity: Cell<u32>,
    /// Free list as a stack: `free[..free_len]`.
    free: Box<[Cell<u32>]>,
    free_len: Cell<u32>,
    /// Buffers that belong to the pool (free + lent + in the ring + kept).
    owned: Cell<u32>,
    kept: Cell<u32>,
    pub(crate) meta: Box<[Cell<Meta>]>,
    /// `BufPool` handles alive.
    owners: Cell<u32>,
    recycle: RecycleRing,
    /// Buffers lent as `Bytes` and not returned yet (they count in `in_use`, but do
    /// not keep this state alive).
    bytes_lent: Cell<u32>,
    /// The thread-safe part: keeps the memory alive (a mapping, or the external
    /// owner's guard) and holds the return list of buffers lent as `Bytes`.
    shared: Arc<PoolShared>,
}

/// A pool of fixed-size, index-addressed buffers, shared by one runtime thread and
/// its backend. Cloning is cheap (it counts an owner; see the module docs).
pub struct BufPool {
    inner: NonNull<PoolInner>,
}

impl Clone for BufPool {
    fn clone(&self) -> BufPool {
        let p = self.p();
        p.owners.set(p.owners.get() + 1);
        BufPool { inner: self.inner }
    }
}

impl Drop for BufPool {
    fn drop(&mut self) {
        let p = self.p();
        p.owners.set(p.owners.get() - 1);
        // SAFETY: the pointer is live (this handle counted as an owner until now).
        unsafe { PoolInner::free_if_unused(self.inner) };
    }
}

impl fmt::Debug for BufPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.p();
        f.debug_struct("BufPool")
            .field("buf_size", &p.buf_size)
            .field("owned", &p.owned.get())
            .field("free", &p.free_len.get())
            .field("ring", &p.recycle.queued.get())
            .field("kept", &p.kept.get())
            .finish()
    }
}

impl BufPool {
    /// Builds a pool of `config.count` buffers. `tx_headroom` is how many bytes at
    /// the start of each buffer a [`TxBuf`] leaves for the backend (PASTE writes
    /// protocol headers there); it must be smaller than `buf_size`.
    pub fn new(config: &PoolConfig, tx_headroom: u32) -> io::Result<BufPool> {
        if config.buf_size == 0 || config.count == 0 || tx_headroom >= config.buf_size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "buffer pool: invalid geometry ({} buffers of {} bytes, headroom {})",
                    config.count, config.buf_size, tx_headroom
                ),
            ));
        }
        let bytes = config.count as usize * config.buf_size as usize;
        let mut map = match &config.memory {
            PoolMemory::Anonymous => memmap2::MmapMut::map_anon(bytes)?,
            PoolMemory::File(path) => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(path)
                    .map_err(|e| with_context(e, format!("buffer pool: open {}", path.display())))?;
                if file.metadata()?.len() < bytes as u64 {
                    file.set_len(bytes as u64)
                        .map_err(|e| with_context(e, format!("buffer pool: grow {}", path.display())))?;
                }
                // SAFETY: the mapping is shared with the file; paste-rt is the only
                // writer of the pool file while the pool lives (the application
                // must not truncate or rewrite it concurrently, documented on
                // PoolMemory::File). Buffers are only reached through pool handles.
                unsafe { memmap2::MmapOptions::new().len(bytes).map_mut(&file)? }
            }
        };
        let base = map.as_mut_ptr();
        let mut kept: Vec<u32> = config.kept.iter().copied().filter(|&i| i < config.count).collect();
        kept.sort_unstable();
        let pool = PoolInner::with_capacity(base, config.buf_size, tx_headroom, config.count, Box::new(map));
        for i in (0..config.count).rev() {
            if kept.binary_search(&i).is_ok() {
                pool.adopt_kept(i);
            } else {
                pool.adopt_free(i);
            }
        }
        Ok(BufPool::from_inner(pool))
    }

    /// Builds a pool over memory someone else owns, such as a netmap region.
    ///
    /// Buffer `i` is at `base + i * buf_size` for every `i < index_limit`; the pool
    /// starts owning only the indices in `free` (for netmap, the extra buffers the
    /// kernel handed out). `guard` is kept alive as long as the pool.
    ///
    /// # Safety
    /// `base .. base + index_limit * buf_size` must be valid, writable memory for the
    /// pool's whole life, and no one else may touch the buffers in `free` while the
    /// pool owns them. The memory must stay valid as long as `guard` lives, on any
    /// thread: a buffer lent as [`bytes::Bytes`] may be the last thing holding it, and
    /// drops it wherever that `Bytes` drops (hence `Send + Sync`).
    pub unsafe fn external(
        base: *mut u8,
        buf_size: u32,
        index_limit: u32,
        free: impl IntoIterator<Item = u32>,
        tx_headroom: u32,
        guard: Box<dyn Any + Send + Sync>,
    ) -> BufPool {
        let pool = PoolInner::with_capacity(base, buf_size, tx_headroom, index_limit, guard);
        for i in free {
            if i < index_limit && pool.meta[i as usize].get().state == BufState::Foreign {
                pool.adopt_free(i);
            }
        }
        BufPool::from_inner(pool)
    }

    #[inline]
    pub(crate) fn inner_ptr(&self) -> NonNull<PoolInner> {
        self.inner
    }

    fn from_inner(inner: PoolInner) -> BufPool {
        inner.owners.set(1);
        let inner = NonNull::from(Box::leak(Box::new(inner)));
        // SAFETY: just leaked above, live.
        unsafe { inner.as_ref() }.shared.set_inner(inner);
        BufPool { inner }
    }

    #[inline]
    fn p(&self) -> &PoolInner {
        // SAFETY: an owner handle keeps the pool state alive (see free_if_unused).
        unsafe { self.inner.as_ref() }
    }

    /// Takes a buffer off the free list, for a backend to receive into or for the
    /// application to fill. `None` when the pool is exhausted.
    #[inline]
    pub fn alloc(&self) -> Option<u32> {
        self.p().alloc()
    }

    /// Returns a lent buffer to the pool (to the recycle ring if it wants one, else
    /// the free list).
    ///
    /// # Safety
    /// `index` must be lent (from [`alloc`](Self::alloc), [`TxBuf::into_raw`] or
    /// [`RxBuf::into_raw`]) and the caller must not use it afterwards.
    #[inline]
    pub unsafe fn release(&self, index: u32) {
        self.p().release(index);
    }

    /// Lends a received buffer to the application: `len` bytes at offset `off`.
    ///
    /// # Safety
    /// The caller must own `index` (it came from [`alloc`](Self::alloc) or it was
    /// just swapped out of a ring the caller controls) and give up every access to
    /// it; `off + len` must not exceed the buffer size.
    #[inline]
    pub unsafe fn lend_rx(&self, index: u32, off: u32, len: u32) -> RxBuf {
        debug_assert!(off as u64 + len as u64 <= self.p().buf_size as u64);
        self.p().set_state(index, BufState::Lent);
        RxBuf::from_parts(self.inner, index, off, len)
    }

    /// Lends a buffer the caller took with [`alloc`](Self::alloc) (already marked
    /// lent) to the application as received data: [`lend_rx`](Self::lend_rx)
    /// without marking it a second time (a backend that reads into its own
    /// allocations, epoll).
    ///
    /// # Safety
    /// `index` must come from `alloc` and not have been lent or released since; the
    /// caller gives up every access to it; `off + len` must not exceed the buffer
    /// size.
    #[inline]
    pub unsafe fn lend_allocated_rx(&self, index: u32, off: u32, len: u32) -> RxBuf {
        debug_assert!(off as u64 + len as u64 <= self.p().buf_size as u64);
        debug_assert_eq!(self.p().state(index), BufState::Lent, "buffer {index} not taken with alloc");
        RxBuf::from_parts(self.inner, index, off, len)
    }

    /// Moves a buffer that was not the pool's (a netmap ring buffer swapped out of
    /// its slot) into the pool's ownership, as lent. Returns `false` if the index is
    /// out of range or already the pool's.
    pub fn adopt_lent(&self, index: u32) -> bool {
        let p = self.p();
        match p.meta.get(index as usize).map(|m| m.get().state) {
            Some(BufState::Foreign) => {
                p.set_state(index, BufState::Lent);
                p.owned.set(p.owned.get() + 1);
                true
            }
            _ => false,
        }
    }

    /// Exchanges a free buffer for `index`, a buffer that is not the pool's (a netmap
    /// ring slot's, about to be lent): the free buffer leaves the pool — the caller
    /// puts it in the slot — and `index` joins it as lent, for
    /// [`lend_allocated_rx`](Self::lend_allocated_rx). One step for what
    /// [`alloc`](Self::alloc), [`adopt_lent`](Self::adopt_lent) and
    /// [`disown`](Self::disown) do together; the pool's capacity does not change.
    /// Nothing changes when it refuses: [`ForeignSwap::Exhausted`] when the free list
    /// is empty (checked first), [`ForeignSwap::NotForeign`] when `index` is out of
    /// range or already the pool's.
    #[inline]
    pub fn swap_foreign(&self, index: u32) -> ForeignSwap {
        self.p().swap_foreign(index)
    }

    /// Takes a buffer that is not the pool's — outside every ring, still referenced
    /// by the application from a previous run of a file-backed port — into the pool
    /// as kept. Returns `false` if the index is out of range or already the pool's.
    pub fn adopt_kept(&self, index: u32) -> bool {
        let p = self.p();
        match p.meta.get(index as usize).map(|m| m.get().state) {
            Some(BufState::Foreign) => {
                p.adopt_kept(index);
                true
            }
            _ => false,
        }
    }

    /// The opposite of [`adopt_lent`](Self::adopt_lent): a lent buffer leaves the
    /// pool (it was swapped into a netmap ring slot).
    ///
    /// # Safety
    /// As for [`release`](Self::release).
    pub unsafe fn disown(&self, index: u32) {
        let p = self.p();
        debug_assert_eq!(p.state(index), BufState::Lent);
        p.set_state(index, BufState::Foreign);
        p.owned.set(p.owned.get() - 1);
    }

    /// A buffer for the application to fill and send. `None` when exhausted.
    #[inline]
    pub fn tx_buf(&self) -> Option<TxBuf> {
        self.alloc().map(|i| TxBuf::from_parts(self.inner, i, 0))
    }

    /// Address of buffer `index`. Valid for `buf_size` bytes.
    #[inline]
    pub fn buf_ptr(&self, index: u32) -> *mut u8 {
        debug_assert!((index as usize) < self.p().meta.len());
        self.p().base_of(index)
    }

    /// The bytes of a kept buffer.
    pub fn kept_slice(&self, kept: &KeptBuf) -> Option<&[u8]> {
        let p = self.p();
        let ok = (kept.index as usize) < p.meta.len()
            && p.state(kept.index) == BufState::Kept
            && kept.offset as u64 + kept.len as u64 <= p.buf_size as u64;
        // SAFETY: the buffer is kept (nobody receives into it) and the range lies
        // inside it (checked above).
        ok.then(|| unsafe {
            std::slice::from_raw_parts(self.buf_ptr(kept.index).add(kept.offset as usize), kept.len as usize)
        })
    }

    /// Returns a kept buffer to circulation. Returns `false` (and does nothing) if
    /// the index is not currently kept.
    pub fn release_kept(&self, kept: KeptBuf) -> bool {
        let p = self.p();
        if (kept.index as usize) >= p.meta.len() || p.state(kept.index) != BufState::Kept {
            return false;
        }
        p.kept.set(p.kept.get() - 1);
        p.set_state(kept.index, BufState::Lent);
        p.release(kept.index);
        true
    }

    /// Bytes per buffer.
    pub fn buf_size(&self) -> u32 {
        self.p().buf_size
    }

    /// Bytes a [`TxBuf`] leaves free at the start of its buffer.
    pub fn tx_headroom(&self) -> u32 {
        self.p().tx_headroom
    }

    /// Most payload bytes a [`TxBuf`] taken from now on carries: the buffer size less
    /// [`tx_headroom`](Self::tx_headroom) unless a backend lowered it with
    /// [`limit_tx_payload`](Self::limit_tx_payload).
    pub fn tx_capacity(&self) -> u32 {
        self.p().tx_capacity.get()
    }

    /// Lowers what a [`TxBuf`] taken from now on carries to `max` payload bytes (never
    /// below 1, never above the buffer less the headroom). A backend whose unit of
    /// zero-copy sending is smaller than a buffer sets it, so that a full `TxBuf`
    /// still leaves whole: PASTE swaps a buffer into a TX slot only when it fits
    /// the slot (one MSS), and copies a larger one a slot at a time. Buffers already
    /// lent keep their capacity.
    pub fn limit_tx_payload(&self, max: u32) {
        let p = self.p();
        p.tx_capacity.set(max.max(1).min(p.buf_size.saturating_sub(p.tx_headroom)));
    }

    /// Buffers that belong to the pool (free, lent, in the recycle ring or kept).
    pub fn capacity(&self) -> u32 {
        self.p().owned.get()
    }

    /// Buffers on the free list.
    pub fn free_count(&self) -> u32 {
        self.p().free_len.get()
    }

    /// Buffers lent out: to the application, or to a backend (its rings included).
    pub fn in_use(&self) -> u32 {
        self.p().in_use()
    }

    /// Buffers kept by the application.
    pub fn kept_count(&self) -> u32 {
        self.p().kept.get()
    }

    /// One past the largest addressable index.
    pub fn index_limit(&self) -> u32 {
        self.p().meta.len() as u32
    }

    /// Whether `index` is currently on the free list (for tests and assertions).
    pub fn is_free(&self, index: u32) -> bool {
        (index as usize) < self.p().meta.len() && self.p().state(index) == BufState::Free
    }

    /// Whether two handles refer to the same pool.
    pub fn same_pool(&self, other: &BufPool) -> bool {
        self.inner == other.inner
    }

    /// Whether `index` is lent out (to the application, a backend, or as `Bytes`).
    pub fn is_lent(&self, index: u32) -> bool {
        (index as usize) < self.p().meta.len() && self.p().state(index) == BufState::Lent
    }

    // ---- buffers lent as `Bytes` (the `lent_bytes` module) ----

    /// Buffers lent as [`bytes::Bytes`] ([`RxBuf::into_bytes`]) and not back yet:
    /// still held, or dropped on another thread and waiting for
    /// [`reclaim_returned`](Self::reclaim_returned). They are part of
    /// [`in_use`](Self::in_use).
    pub fn lent_as_bytes(&self) -> u32 {
        self.p().bytes_lent.get()
    }

    /// Takes back the buffers that `Bytes` dropped on other threads returned (to the
    /// recycle ring or the free list, as [`release`](Self::release) does). The runtime
    /// calls it once per tick, before its backend polls; when nothing came back it
    /// costs one relaxed atomic load. Returns how many buffers came back.
    #[inline]
    pub fn reclaim_returned(&self) -> u32 {
        if !self.p().shared.has_returns() {
            return 0;
        }
        self.reclaim_returned_now()
    }

    #[cold]
    fn reclaim_returned_now(&self) -> u32 {
        let p = self.p();
        let mut n = 0;
        p.shared.take_returns(|idx| {
            p.bytes_lent.set(p.bytes_lent.get() - 1);
            p.release(idx);
            n += 1;
        });
        n
    }

    /// Sets what interrupts the owner's wait when a `Bytes` dropped on another thread
    /// returns a buffer to an empty return list (the runtime passes its backend's
    /// remote waker, so a receive paused for lack of buffers resumes at once).
    /// Returns `false`, keeping the first, if one was set before.
    pub fn set_return_wake(&self, wake: Arc<dyn RemoteWake>) -> bool {
        self.p().shared.set_wake(wake)
    }

    // ---- the recycle ring ----

    /// Attaches a recycle ring of `entries` descriptors at `descs` (see the module
    /// docs): from now on released buffers refill it up to `target`, each offered as
    /// `buf_len` bytes from `addr_offset` into the buffer, with the pool index as its
    /// buffer id. Fills it from the free list at once. Returns `false` (attaching
    /// nothing) if one is attached already, `entries` is not a power of two up to
    /// 32768, indices do not fit 16 bits, or the offer does not fit a buffer.
    ///
    /// # Safety
    /// `descs` must point to `entries * 16` zeroed, writable bytes, aligned for the
    /// ring's atomic tail, that stay valid and are only read by the consumer until
    /// [`detach_recycle_ring`](Self::detach_recycle_ring).
    pub unsafe fn attach_recycle_ring(
        &self,
        descs: *mut u8,
        entries: u32,
        addr_offset: u32,
        buf_len: u32,
        target: u32,
    ) -> bool {
        let p = self.p();
        let r = &p.recycle;
        if !r.descs.get().is_null()
            || descs.is_null()
            || !entries.is_power_of_two()
            || entries > 32768
            || p.meta.len() > 1 << 16
            || addr_offset as u64 + buf_len as u64 > p.buf_size as u64
            || buf_len == 0
        {
            return false;
        }
        r.descs.set(descs);
        r.mask.set(entries - 1);
        r.tail.set(0);
        r.queued.set(0);
        r.target.set(target.min(entries));
        r.addr_offset.set(addr_offset);
        r.buf_len.set(buf_len);
        self.recycle_fill();
        true
    }

    /// Moves free buffers into the recycle ring until it holds its target. Returns how
    /// many were moved.
    #[inline]
    pub fn recycle_fill(&self) -> u32 {
        let p = self.p();
        if !p.recycle.wants() || p.free_len.get() == 0 {
            return 0;
        }
        let mut moved = 0;
        while !p.recycle.descs.get().is_null() && p.recycle.wants() {
            let Some(idx) = p.alloc() else { break };
            p.ring_push(idx);
            moved += 1;
        }
        moved
    }

    /// Sets how many buffers the recycle ring should hold (at most its size), and
    /// fills it up to that from the free list.
    pub fn set_recycle_target(&self, target: u32) {
        let p = self.p();
        if p.recycle.descs.get().is_null() {
            return;
        }
        p.recycle.target.set(target.min(p.recycle.mask.get() + 1));
        self.recycle_fill();
    }

    /// The recycle ring's target, and how many buffers it holds now.
    pub fn recycle_state(&self) -> (u32, u32) {
        let r = &self.p().recycle;
        (r.target.get(), r.queued.get())
    }

    /// The size of the attached recycle ring (0 when none).
    pub fn recycle_capacity(&self) -> u32 {
        let r = &self.p().recycle;
        if r.descs.get().is_null() {
            0
        } else {
            r.mask.get() + 1
        }
    }

    /// Reports what the consumer took for one completion: the buffer `first` (its id,
    /// from the completion) and, when `bytes` spans several buffers (a bundle), the
    /// ones pushed right after it. Lends each out as an [`RxBuf`] holding its part of
    /// `bytes`, in data order, to `f`. Returns how many buffers were taken (0 if
    /// `first` is not in the ring).
    ///
    /// # Safety
    /// The consumer must really have taken (and finished writing) these buffers.
    #[inline]
    pub unsafe fn recycle_take(&self, first: u16, bytes: u32, mut f: impl FnMut(RxBuf)) -> u32 {
        let p = self.p();
        let r = &p.recycle;
        let idx = first as u32;
        if idx as usize >= p.meta.len() || p.state(idx) != BufState::Ring {
            return 0;
        }
        let off = r.addr_offset.get();
        let buf_len = r.buf_len.get();
        if bytes <= buf_len {
            // One buffer: the common case needs no position lookup.
            r.queued.set(r.queued.get() - 1);
            p.set_state(idx, BufState::Lent);
            f(RxBuf::from_parts(self.inner, idx, off, bytes));
            return 1;
        }
        let count = bytes.div_ceil(buf_len).min(r.queued.get());
        let start = p.meta[idx as usize].get().next;
        let mask = r.mask.get();
        let mut left = bytes;
        for i in 0..count {
            let bid = r.index_at((start + i) & mask);
            let len = left.min(buf_len);
            left -= len;
            r.queued.set(r.queued.get() - 1);
            p.set_state(bid, BufState::Lent);
            f(RxBuf::from_parts(self.inner, bid, off, len));
        }
        count
    }

    /// [`recycle_take`](Self::recycle_take) for a completion that fits one buffer
    /// (`bytes` at most the size each buffer is offered with), the common case: the
    /// buffer `id` lent out as an [`RxBuf`] of `bytes` bytes, returned rather than
    /// handed to a closure. `None` (taking nothing) when `id` is not in the ring or
    /// `bytes` does not fit one buffer (then use `recycle_take`).
    ///
    /// # Safety
    /// As for [`recycle_take`](Self::recycle_take).
    #[inline]
    pub unsafe fn recycle_take_one(&self, id: u16, bytes: u32) -> Option<RxBuf> {
        let p = self.p();
        let r = &p.recycle;
        let idx = id as u32;
        if bytes > r.buf_len.get() || idx as usize >= p.meta.len() || p.state(idx) != BufState::Ring {
            return None;
        }
        r.queued.set(r.queued.get() - 1);
        p.set_state(idx, BufState::Lent);
        Some(RxBuf::from_parts(self.inner, idx, r.addr_offset.get(), bytes))
    }

    /// The bytes each buffer of the recycle ring is offered with (0 when none is
    /// attached): a completion of at most this many bytes took one buffer.
    #[inline]
    pub fn recycle_buf_len(&self) -> u32 {
        self.p().recycle.buf_len.get()
    }

    /// Detaches the recycle ring after its consumer stopped reading it (the kernel
    /// ring was unregistered): every buffer it still held goes back to the free list.
    ///
    /// # Safety
    /// The consumer must no longer take or write any buffer of the ring.
    pub unsafe fn detach_recycle_ring(&self) {
        let p = self.p();
        let r = &p.recycle;
        if r.descs.get().is_null() {
            return;
        }
        let (tail, queued, mask) = (r.tail.get() as u32, r.queued.get(), r.mask.get());
        // Target 0 first: what is released below goes to the free list.
        r.target.set(0);
        r.queued.set(0);
        for i in 0..queued {
            let idx = r.index_at(tail.wrapping_sub(queued).wrapping_add(i) & mask);
            if p.state(idx) == BufState::Ring {
                p.set_state(idx, BufState::Lent);
                p.release(idx);
            }
        }
        r.descs.set(std::ptr::null_mut());
    }
}

impl PoolInner {
    fn with_capacity(
        base: *mut u8,
        buf_size: u32,
        tx_headroom: u32,
        limit: u32,
        memory: Box<dyn Any + Send + Sync>,
    ) -> PoolInner {
        let meta = Meta { state: BufState::Foreign, next: NO_INDEX, off: 0, len: 0 };
        PoolInner {
            base,
            buf_size,
            tx_headroom,
            tx_capacity: Cell::new(buf_size.saturating_sub(tx_headroom)),
            free: (0..limit).map(|_| Cell::new(0)).collect(),
            free_len: Cell::new(0),
            owned: Cell::new(0),
            kept: Cell::new(0),
            meta: (0..limit).map(|_| Cell::new(meta)).collect(),
            owners: Cell::new(0),
            recycle: RecycleRing::detached(),
            bytes_lent: Cell::new(0),
            shared: Arc::new(PoolShared::new(memory)),
        }
    }

    /// Frees the pool state once no owner handle and no lent buffer is left, buffers
    /// lent as `Bytes` aside (they keep only the memory, through the shared part).
    ///
    /// # Safety
    /// `inner` must be live; after this returns `true` it is dangling.
    pub(crate) unsafe fn free_if_unused(inner: NonNull<PoolInner>) -> bool {
        // SAFETY: live by the caller's contract.
        let p = unsafe { inner.as_ref() };
        if p.owners.get() != 0 || p.in_use() != p.bytes_lent.get() {
            return false;
        }
        // A `Bytes` dropped from now on no longer reaches the state.
        p.shared.clear_inner();
        // SAFETY: allocated by Box::leak in from_inner; no owner handle and no buffer
        // handle is left (every RxBuf/TxBuf is a lent buffer; a `Bytes` reaches the
        // state only through the pointer cleared above), so nobody can reach it.
        drop(unsafe { Box::from_raw(inner.as_ptr()) });
        true
    }

    /// A buffer lent to the caller is now lent as `Bytes`: counts it, and returns the
    /// shared part its owner holds.
    pub(crate) fn lend_as_bytes(&self) -> Arc<PoolShared> {
        self.shared.ensure_links(self.meta.len());
        self.bytes_lent.set(self.bytes_lent.get() + 1);
        self.shared.clone()
    }

    /// A `Bytes` dropped on the pool's thread while the state lives: returns `idx`.
    ///
    /// # Safety
    /// `inner` must be live and `idx` lent as `Bytes` by it, returned once.
    pub(crate) unsafe fn return_lent_bytes(inner: NonNull<PoolInner>, idx: u32) {
        // SAFETY: live by the caller's contract.
        let p = unsafe { inner.as_ref() };
        p.bytes_lent.set(p.bytes_lent.get() - 1);
        p.release(idx);
        if p.has_no_owner() {
            // SAFETY: live (above); nothing uses `inner` after this call.
            unsafe { PoolInner::free_if_unused(inner) };
        }
    }

    fn adopt_free(&self, idx: u32) {
        self.owned.set(self.owned.get() + 1);
        self.set_state(idx, BufState::Lent);
        self.push_free(idx);
    }

    fn adopt_kept(&self, idx: u32) {
        self.owned.set(self.owned.get() + 1);
        self.kept.set(self.kept.get() + 1);
        self.set_state(idx, BufState::Kept);
    }

    #[inline]
    fn alloc(&self) -> Option<u32> {
        let n = self.free_len.get();
        if n == 0 {
            return None;
        }
        // (Once per received buffer on epoll and PASTE.)
        Some(self.pop_free(n, BufState::Lent))
    }

    /// Takes the top of the free list, which holds `n` > 0 buffers, and marks it
    /// `state`: what `alloc` and `swap_foreign` share, without bounds checks.
    #[inline(always)]
    fn pop_free(&self, n: u32, state: BufState) -> u32 {
        debug_assert!(n > 0 && n == self.free_len.get());
        self.free_len.set(n - 1);
        // SAFETY: `free_len` never exceeds `free.len()` (push_free writes `free[n]`,
        // bounds checked, before counting it), and every index on the free list is
        // below `meta.len()` (push_free indexes `meta` with it, checked, before
        // listing it): both accesses are in bounds. (The two checks saved are a
        // fifth of a netmap RX walk's per-receive swap.)
        let idx = unsafe { self.free.get_unchecked((n - 1) as usize) }.get();
        // SAFETY: as above.
        let cell = unsafe { self.meta.get_unchecked(idx as usize) };
        let mut m = cell.get();
        m.state = state;
        cell.set(m);
        idx
    }

    #[inline]
    fn swap_foreign(&self, index: u32) -> ForeignSwap {
        let n = self.free_len.get();
        if n == 0 {
            return ForeignSwap::Exhausted;
        }
        let Some(cell) = self.meta.get(index as usize) else {
            return ForeignSwap::NotForeign;
        };
        let mut m = cell.get();
        if m.state != BufState::Foreign {
            return ForeignSwap::NotForeign;
        }
        m.state = BufState::Lent;
        cell.set(m);
        ForeignSwap::Swapped(self.pop_free(n, BufState::Foreign))
    }

    #[inline]
    pub(crate) fn has_no_owner(&self) -> bool {
        self.owners.get() == 0
    }

    pub(crate) fn in_use(&self) -> u32 {
        self.owned.get() - self.free_len.get() - self.kept.get()
    }

    #[inline]
    pub(crate) fn state(&self, idx: u32) -> BufState {
        self.meta[idx as usize].get().state
    }

    #[inline]
    pub(crate) fn set_state(&self, idx: u32, state: BufState) {
        let cell = &self.meta[idx as usize];
        let mut m = cell.get();
        m.state = state;
        cell.set(m);
    }

    /// Returns a lent buffer: to the recycle ring if it wants one, else the free list.
    #[inline]
    pub(crate) fn release(&self, idx: u32) {
        debug_assert_eq!(self.state(idx), BufState::Lent, "buffer {idx} released twice");
        if self.recycle.wants() {
            self.ring_push(idx);
        } else {
            self.push_free(idx);
        }
    }

    #[inline]
    fn push_free(&self, idx: u32) {
        // The state first: its bounds-checked index into `meta` is what keeps every
        // index on the free list below `meta.len()` (`alloc` and `swap_foreign`
        // rely on it), so an index out of range panics before it is listed.
        self.set_state(idx, BufState::Free);
        let n = self.free_len.get();
        self.free[n as usize].set(idx);
        self.free_len.set(n + 1);
    }

    /// Writes `idx` into the recycle ring's next descriptor and publishes the tail.
    #[inline]
    fn ring_push(&self, idx: u32) {
        let r = &self.recycle;
        let tail = r.tail.get();
        let pos = tail as u32 & r.mask.get();
        let descs = r.descs.get();
        let addr = self.base_of(idx) as u64 + r.addr_offset.get() as u64;
        // SAFETY: a ring is attached (wants() is false otherwise, target 0), pos <=
        // mask, so the 16-byte descriptor lies inside the ring memory given to
        // attach_recycle_ring. addr/len/bid are plain fields the consumer reads only
        // up to the published tail; bytes 14..16 of entry 0 are the shared tail,
        // written only by the release store below.
        unsafe {
            let d = descs.add(pos as usize * RECYCLE_DESC_SIZE);
            d.cast::<u64>().write(addr);
            d.add(8).cast::<u32>().write(r.buf_len.get());
            d.add(12).cast::<u16>().write(idx as u16);
            let shared_tail = &*descs.add(14).cast::<AtomicU16>();
            shared_tail.store(tail.wrapping_add(1), Ordering::Release);
        }
        r.tail.set(tail.wrapping_add(1));
        r.queued.set(r.queued.get() + 1);
        let cell = &self.meta[idx as usize];
        let mut m = cell.get();
        m.state = BufState::Ring;
        m.next = pos;
        cell.set(m);
    }

    pub(crate) fn keep(&self, idx: u32) {
        self.set_state(idx, BufState::Kept);
        self.kept.set(self.kept.get() + 1);
    }

    #[inline]
    pub(crate) fn base_of(&self, idx: u32) -> *mut u8 {
        // SAFETY: callers pass indices of this pool (< index limit), so the offset
        // stays inside the memory given at construction.
        unsafe { self.base.add(idx as usize * self.buf_size as usize) }
    }

    #[inline]
    pub(crate) fn buf_size(&self) -> u32 {
        self.buf_size
    }

    #[inline]
    pub(crate) fn tx_headroom(&self) -> u32 {
        self.tx_headroom
    }

    #[inline]
    pub(crate) fn tx_capacity(&self) -> u32 {
        self.tx_capacity.get()
    }
}

fn with_context(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pool(n: u32) -> BufPool {
        BufPool::new(&PoolConfig { count: n, buf_size: 256, ..PoolConfig::default() }, 16).unwrap()
    }

    #[test]
    fn alloc_until_exhausted_then_release() {
        let p = pool(4);
        let got: Vec<u32> = std::iter::from_fn(|| p.alloc()).collect();
        assert_eq!(got.len(), 4);
        assert_eq!(p.alloc(), None);
        assert_eq!(p.in_use(), 4);
        for i in got {
            // SAFETY: each index came from alloc above and is released once.
            unsafe { p.release(i) };
        }
        assert_eq!(p.free_count(), 4);
    }

    #[test]
    fn rejects_bad_geometry() {
        let cfg = PoolConfig { count: 1, buf_size: 64, ..PoolConfig::default() };
        assert!(BufPool::new(&cfg, 64).is_err());
    }

    #[test]
    fn a_tx_payload_limit_bounds_the_buffers_taken_after_it() {
        let cfg = PoolConfig { count: 4, buf_size: 64, ..PoolConfig::default() };
        let p = BufPool::new(&cfg, 8).unwrap();
        assert_eq!(p.tx_capacity(), 56, "the buffer less the headroom");
        let before = p.tx_buf().unwrap();
        p.limit_tx_payload(20);
        let mut after = p.tx_buf().unwrap();
        assert_eq!((before.capacity(), after.capacity(), p.tx_capacity()), (56, 20, 20));
        after.put(&[7; 20]);
        assert_eq!(after.remaining(), 0);
        // Held within [1, buffer less headroom].
        p.limit_tx_payload(0);
        assert_eq!(p.tx_capacity(), 1);
        p.limit_tx_payload(1000);
        assert_eq!(p.tx_capacity(), 56);
    }

    #[test]
    fn a_buffer_outlives_every_owner_and_frees_the_pool_when_returned() {
        let p = pool(4);
        let mut tx = p.tx_buf().unwrap();
        tx.extend_from_slice(b"still here");
        drop(p);
        assert_eq!(&tx[..], b"still here");
        drop(tx); // the last lent buffer: frees the pool (Miri/ASan would see a leak otherwise)
    }

    #[test]
    fn put_within_appends_only_while_room_is_left_after_the_bytes() {
        let p = pool(2);
        let mut tx = p.tx_buf().unwrap();
        let cap = tx.capacity();
        assert!(tx.put_within(b"head "));
        assert!(tx.put_within(b"and more"));
        assert_eq!(&tx[..], b"head and more");
        // Exactly the room left: it would fill the buffer, so nothing is taken.
        let fill = vec![b'x'; tx.remaining()];
        assert!(!tx.put_within(&fill));
        assert_eq!(tx.len(), 13);
        // One byte less fits, and leaves one byte.
        assert!(tx.put_within(&fill[1..]));
        assert_eq!((tx.len(), tx.remaining()), (cap - 1, 1));
        assert!(!tx.put_within(b"y"));
        assert_eq!(&tx[..13], b"head and more");
    }

    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot map a file")]
    fn file_pool_keeps_contents_and_kept_indices_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let cfg =
            PoolConfig { count: 8, buf_size: 128, memory: PoolMemory::File(dir.path().join("pool")), kept: vec![] };
        let kept = {
            let p = BufPool::new(&cfg, 0).unwrap();
            let mut tx = p.tx_buf().unwrap();
            tx.extend_from_slice(b"durable");
            let (idx, len) = tx.into_raw();
            // SAFETY: idx was just taken from the pool and is handed over once.
            let rx = unsafe { p.lend_rx(idx, 0, len) };
            let k = rx.keep();
            assert_eq!(p.kept_count(), 1);
            k
        };
        let cfg = PoolConfig { kept: vec![kept.index], ..cfg };
        let p = BufPool::new(&cfg, 0).unwrap();
        assert_eq!(p.kept_slice(&kept).unwrap(), b"durable");
        assert_eq!(p.free_count(), 7);
        assert!(!p.is_free(kept.index));
        assert!(p.release_kept(kept));
        assert!(!p.release_kept(kept), "a second release is refused");
        assert_eq!(p.free_count(), 8);
    }

    #[test]
    fn external_pool_owns_only_given_indices() {
        let mut mem = vec![0u8; 10 * 64];
        // SAFETY: mem outlives the pool (dropped at the end of the test, after it).
        let p = unsafe { BufPool::external(mem.as_mut_ptr(), 64, 10, [3, 5, 7], 0, Box::new(())) };
        assert_eq!(p.capacity(), 3);
        assert!(p.adopt_lent(4));
        assert!(!p.adopt_lent(5));
        // SAFETY: 4 is lent (adopted above) and not used again.
        unsafe { p.release(4) };
        assert_eq!(p.free_count(), 4);
        let i = p.alloc().unwrap();
        // SAFETY: i was just allocated.
        unsafe { p.disown(i) };
        assert_eq!(p.capacity(), 3);
        drop(p);
        drop(mem);
    }

    /// Ring memory for tests: 16-byte descriptors, 8-aligned.
    fn ring_mem(entries: usize) -> Vec<u64> {
        vec![0u64; entries * 2]
    }

    fn desc(mem: &[u64], pos: usize) -> (u64, u32, u16) {
        let lo = mem[pos * 2 + 1];
        (mem[pos * 2], lo as u32, (lo >> 32) as u16)
    }

    #[test]
    fn released_buffers_go_back_to_the_recycle_ring_by_index() {
        let p = pool(8);
        let mut mem = ring_mem(4);
        // SAFETY: mem is zeroed, 8-aligned, and outlives the attachment (detached below).
        assert!(unsafe { p.attach_recycle_ring(mem.as_mut_ptr().cast(), 4, 16, 240, 3) });
        assert_eq!(p.recycle_state(), (3, 3));
        assert_eq!(p.free_count(), 5);
        assert_eq!(p.in_use(), 3, "ring buffers count as lent to the consumer");
        let first = desc(&mem, 0).2;
        assert_eq!(desc(&mem, 0).0, p.buf_ptr(first as u32) as u64 + 16);
        assert_eq!(desc(&mem, 0).1, 240);
        // The consumer takes the first buffer, 100 bytes.
        let mut got = vec![];
        // SAFETY: test stands in for the kernel: buffer `first` was taken.
        assert_eq!(unsafe { p.recycle_take(first, 100, |b| got.push(b)) }, 1);
        assert_eq!((got[0].index(), got[0].offset(), got[0].len()), (first as u32, 16, 100));
        assert_eq!(p.recycle_state(), (3, 2));
        // Dropping it gives the same id back to the ring's tail (position 3).
        drop(got);
        assert_eq!(p.recycle_state(), (3, 3));
        assert_eq!(desc(&mem, 3).2, first);
        // SAFETY: the test consumer stopped.
        unsafe { p.detach_recycle_ring() };
        assert_eq!((p.free_count(), p.in_use()), (8, 0));
    }

    #[test]
    fn a_one_buffer_completion_is_taken_without_a_closure_and_a_larger_one_is_refused() {
        let p = pool(8);
        let mut mem = ring_mem(4);
        // SAFETY: mem is zeroed, 8-aligned, and outlives the attachment (detached below).
        assert!(unsafe { p.attach_recycle_ring(mem.as_mut_ptr().cast(), 4, 16, 240, 3) });
        assert_eq!(p.recycle_buf_len(), 240);
        let (first, second) = (desc(&mem, 0).2, desc(&mem, 1).2);
        // SAFETY: the test stands in for the kernel; a refused take takes nothing.
        assert!(unsafe { p.recycle_take_one(first, 241) }.is_none(), "two buffers' worth");
        assert_eq!(p.recycle_state(), (3, 3));
        // SAFETY: the consumer took buffer `first` with 240 bytes.
        let buf = unsafe { p.recycle_take_one(first, 240) }.expect("in the ring");
        assert_eq!((buf.index(), buf.offset(), buf.len()), (first as u32, 16, 240));
        assert_eq!(p.recycle_state(), (3, 2));
        // SAFETY: a buffer already lent out is not in the ring: refused.
        assert!(unsafe { p.recycle_take_one(first, 10) }.is_none());
        drop(buf);
        assert_eq!(p.recycle_state(), (3, 3));
        // SAFETY: the consumer took buffer `second` with 0 bytes.
        let empty = unsafe { p.recycle_take_one(second, 0) }.expect("in the ring");
        assert!(empty.is_empty());
        drop(empty);
        // SAFETY: the test consumer stopped.
        unsafe { p.detach_recycle_ring() };
        assert_eq!((p.free_count(), p.in_use()), (8, 0));
    }

    #[test]
    fn a_bundle_takes_consecutive_ring_buffers() {
        let p = pool(8);
        let mut mem = ring_mem(8);
        // SAFETY: as above.
        assert!(unsafe { p.attach_recycle_ring(mem.as_mut_ptr().cast(), 8, 0, 256, 6) });
        let first = desc(&mem, 0).2;
        // The dropped buffers go back to the ring's tail (wrapping onto position 0):
        // read the expected ids first.
        let expect: Vec<(u16, usize)> = vec![(desc(&mem, 0).2, 256), (desc(&mem, 1).2, 256), (desc(&mem, 2).2, 88)];
        let mut got = vec![];
        // SAFETY: test consumer took the first three buffers.
        assert_eq!(unsafe { p.recycle_take(first, 600, |b| got.push((b.index() as u16, b.len()))) }, 3);
        assert_eq!(got, expect);
        assert_eq!(p.recycle_state(), (6, 6), "dropped at once, back in the ring");
        // SAFETY: test consumer stopped.
        unsafe { p.detach_recycle_ring() };
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn a_foreign_buffer_is_swapped_for_a_free_one_and_refusals_change_nothing() {
        let mut mem = vec![0u8; 8 * 64];
        // SAFETY: mem outlives the pool (dropped at the end of the test, after it).
        let p = unsafe { BufPool::external(mem.as_mut_ptr(), 64, 8, [2], 0, Box::new(())) };
        assert_eq!(p.swap_foreign(2), ForeignSwap::NotForeign, "already the pool's");
        assert_eq!(p.swap_foreign(8), ForeignSwap::NotForeign, "out of range");
        assert_eq!((p.free_count(), p.capacity()), (1, 1));
        assert_eq!(p.swap_foreign(5), ForeignSwap::Swapped(2));
        assert!(p.is_lent(5) && !p.is_free(2) && !p.is_lent(2));
        assert_eq!((p.free_count(), p.in_use(), p.capacity()), (0, 1, 1));
        assert_eq!(p.swap_foreign(6), ForeignSwap::Exhausted);
        assert!(!p.is_lent(6));
        // SAFETY: 5 joined the pool as lent (swapped above) and is lent out once.
        let rx = unsafe { p.lend_allocated_rx(5, 4, 10) };
        assert_eq!((rx.index(), rx.offset(), rx.len()), (5, 4, 10));
        drop(rx);
        assert!(p.is_free(5));
        assert!(p.adopt_lent(2), "2 left the pool in the swap");
        // SAFETY: 2 is lent (adopted above) and not used again.
        unsafe { p.release(2) };
        assert_eq!(p.in_use(), 0);
        drop(p);
        drop(mem);
    }

    proptest! {
        /// Buffer conservation: under any sequence of alloc / release / keep /
        /// release_kept, with or without a recycle ring, every index is in exactly
        /// one state and the counters agree.
        #[test]
        fn conservation(ops in proptest::collection::vec(0u8..5, 0..400), ring in any::<bool>()) {
            let p = pool(16);
            let mut mem = ring_mem(8);
            if ring {
                // SAFETY: mem outlives the attachment (detached at the end).
                let attached = unsafe { p.attach_recycle_ring(mem.as_mut_ptr().cast(), 8, 0, 256, 4) };
                prop_assert!(attached);
            }
            let mut lent: Vec<u32> = vec![];
            let mut kept: Vec<KeptBuf> = vec![];
            let mut tail = 0u32;
            let mut taken = 0u32;
            for op in ops {
                match op {
                    0 => if let Some(i) = p.alloc() { lent.push(i) },
                    1 => if let Some(i) = lent.pop() {
                        // SAFETY: i is lent by this test and released once.
                        unsafe { p.release(i) }
                    },
                    2 => if let Some(i) = lent.pop() {
                        // SAFETY: i is lent by this test; lend_rx takes it over.
                        kept.push(unsafe { p.lend_rx(i, 0, 0) }.keep())
                    },
                    3 => if let Some(k) = kept.pop() { prop_assert!(p.release_kept(k)) },
                    _ => if ring && p.recycle_state().1 > 0 {
                        // The consumer takes the oldest ring buffer.
                        let bid = desc(&mem, (taken & 7) as usize).2;
                        taken += 1;
                        // SAFETY: stands in for the kernel, in ring order.
                        let n = unsafe { p.recycle_take(bid, 10, |b| lent.push(b.into_raw().0)) };
                        prop_assert_eq!(n, 1);
                    },
                }
                tail = tail.max(taken);
                let (_, queued) = p.recycle_state();
                prop_assert_eq!(p.free_count() + p.in_use() + p.kept_count(), 16);
                prop_assert_eq!(p.in_use() as usize, lent.len() + queued as usize);
                prop_assert_eq!(p.kept_count() as usize, kept.len());
                let free = (0..16).filter(|&i| p.is_free(i)).count();
                prop_assert_eq!(free, p.free_count() as usize);
            }
            let _ = tail;
            // SAFETY: the test consumer stopped.
            unsafe { p.detach_recycle_ring() };
            for i in lent {
                // SAFETY: lent by this test.
                unsafe { p.release(i) };
            }
            prop_assert_eq!(p.in_use(), 0);
        }

        /// `swap_foreign` against a model: under any mix of alloc / release /
        /// disown / adopt_lent / swap_foreign over an external pool, each index is
        /// free, lent or foreign as the model says, a swap hands out the free buffer
        /// `alloc` would have, and a refused swap changes nothing.
        #[test]
        fn swap_foreign_matches_alloc_adopt_and_disown(
            ops in proptest::collection::vec((0u8..5, 0u32..20), 0..300),
        ) {
            const LIMIT: u32 = 16;
            let mut mem = vec![0u8; LIMIT as usize * 64];
            // SAFETY: mem outlives the pool (dropped after it, at the end).
            let p = unsafe { BufPool::external(mem.as_mut_ptr(), 64, LIMIT, 0..6, 0, Box::new(())) };
            let mut free: Vec<u32> = (0..6).collect();
            let mut lent: Vec<u32> = vec![];
            for (op, idx) in ops {
                match op {
                    0 => prop_assert_eq!(p.alloc(), free.pop().inspect(|&i| lent.push(i))),
                    1 => if let Some(i) = lent.pop() {
                        // SAFETY: i is lent by this test and released once.
                        unsafe { p.release(i) };
                        free.push(i);
                    },
                    2 => if let Some(i) = lent.pop() {
                        // SAFETY: i is lent by this test and leaves the pool once.
                        unsafe { p.disown(i) };
                    },
                    3 => {
                        let foreign = idx < LIMIT && !free.contains(&idx) && !lent.contains(&idx);
                        prop_assert_eq!(p.adopt_lent(idx), foreign);
                        if foreign { lent.push(idx) }
                    },
                    _ => {
                        let foreign = idx < LIMIT && !free.contains(&idx) && !lent.contains(&idx);
                        let want = match free.last() {
                            None => ForeignSwap::Exhausted,
                            Some(_) if !foreign => ForeignSwap::NotForeign,
                            Some(&f) => ForeignSwap::Swapped(f),
                        };
                        prop_assert_eq!(p.swap_foreign(idx), want);
                        if let ForeignSwap::Swapped(_) = want {
                            free.pop();
                            lent.push(idx);
                        }
                    },
                }
                prop_assert_eq!(p.free_count() as usize, free.len());
                prop_assert_eq!(p.in_use() as usize, lent.len());
                prop_assert_eq!(p.capacity() as usize, free.len() + lent.len());
                for i in 0..LIMIT {
                    prop_assert_eq!(p.is_free(i), free.contains(&i));
                    prop_assert_eq!(p.is_lent(i), lent.contains(&i));
                }
            }
            for i in lent {
                // SAFETY: lent by this test.
                unsafe { p.release(i) };
            }
            prop_assert_eq!(p.in_use(), 0);
            drop(p);
            drop(mem);
        }
    }
}
