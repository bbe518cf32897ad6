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
//!
//! The ring's code is in the `recycle` child module; the tests are in `tests`.

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::buf::{KeptBuf, RxBuf, TxBuf};
use crate::lent_bytes::PoolShared;
use crate::remote_wake::RemoteWake;

mod recycle;

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
            .field("ring", &p.recycle.queued())
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
mod tests;
