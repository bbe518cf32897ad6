//! The buffer pool: fixed-size buffers addressed by index.
//!
//! Owns the memory every backend receives into and sends from, the free list, and
//! one small metadata record per index (its lending state and the link used by
//! [`RxQueue`](crate::RxQueue)). It never makes a system call after construction and
//! never allocates after construction: `alloc` and `release` are a pop and a push on
//! a preallocated stack.
//!
//! Indices are what PASTE's netmap rings carry, so the pool addresses buffers the way
//! `NETMAP_BUF(ring, idx)` does: `base + idx * buf_size`. A pool built by paste-rt
//! owns indices `0..count`; a pool built over a netmap region owns whatever indices
//! the kernel handed out (see [`BufPool::external`]).

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;

use crate::buf::{KeptBuf, RxBuf, TxBuf};

/// Default buffer size, as netmap's (2048 bytes).
pub const DEFAULT_BUF_SIZE: u32 = 2048;

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

/// Lending state of one index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BufState {
    /// Not the pool's: a netmap ring slot or kernel-held buffer, or out of range.
    Foreign,
    /// On the free list.
    Free,
    /// Lent: to the application, to a backend, or linked in an `RxQueue`.
    Lent,
    /// Kept by the application ([`RxBuf::keep`]); released explicitly.
    Kept,
}

/// Per-index metadata; `next`/`off`/`len` are only meaningful while the buffer is
/// linked in an `RxQueue`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Meta {
    pub(crate) state: BufState,
    pub(crate) next: u32,
    pub(crate) off: u32,
    pub(crate) len: u32,
}

pub(crate) const NO_INDEX: u32 = u32::MAX;

pub(crate) struct PoolInner {
    base: *mut u8,
    buf_size: u32,
    tx_headroom: u32,
    /// Free list as a stack: `free[..free_len]`.
    free: Box<[Cell<u32>]>,
    free_len: Cell<u32>,
    /// Buffers that belong to the pool (free + lent + kept).
    owned: Cell<u32>,
    kept: Cell<u32>,
    pub(crate) meta: Box<[Cell<Meta>]>,
    /// Keeps the memory alive (a mapping, or the external owner's guard).
    _memory: Box<dyn Any>,
}

/// A pool of fixed-size, index-addressed buffers, shared by one runtime thread and
/// its backend. Cloning is cheap (a reference count).
#[derive(Clone)]
pub struct BufPool(pub(crate) Rc<PoolInner>);

impl fmt::Debug for BufPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufPool")
            .field("buf_size", &self.0.buf_size)
            .field("owned", &self.0.owned.get())
            .field("free", &self.0.free_len.get())
            .field("kept", &self.0.kept.get())
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
                    file.set_len(bytes as u64)?;
                }
                // SAFETY: the mapping is shared with the file; paste-rt is the only
                // writer of the pool file while the pool lives (the application
                // must not truncate or rewrite it concurrently, documented on
                // PoolMemory::File). Buffers are only reached through pool handles.
                unsafe { memmap2::MmapOptions::new().len(bytes).map_mut(&file)? }
            }
        };
        let base = map.as_mut_ptr();
        let kept: Vec<u32> = config.kept.iter().copied().filter(|&i| i < config.count).collect();
        let mut pool = PoolInner::with_capacity(base, config.buf_size, tx_headroom, config.count, Box::new(map));
        for i in (0..config.count).rev() {
            if kept.contains(&i) {
                pool.adopt_kept(i);
            } else {
                pool.adopt_free(i);
            }
        }
        Ok(BufPool(Rc::new(pool)))
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
    /// pool owns them.
    pub unsafe fn external(
        base: *mut u8,
        buf_size: u32,
        index_limit: u32,
        free: impl IntoIterator<Item = u32>,
        tx_headroom: u32,
        guard: Box<dyn Any>,
    ) -> BufPool {
        let mut pool = PoolInner::with_capacity(base, buf_size, tx_headroom, index_limit, guard);
        for i in free {
            if i < index_limit && pool.meta[i as usize].get().state == BufState::Foreign {
                pool.adopt_free(i);
            }
        }
        BufPool(Rc::new(pool))
    }

    /// Takes a buffer off the free list, for a backend to receive into or for the
    /// application to fill. `None` when the pool is exhausted.
    #[inline]
    pub fn alloc(&self) -> Option<u32> {
        let p = &*self.0;
        let n = p.free_len.get();
        if n == 0 {
            return None;
        }
        p.free_len.set(n - 1);
        let idx = p.free[(n - 1) as usize].get();
        p.set_state(idx, BufState::Lent);
        Some(idx)
    }

    /// Returns a lent buffer to the free list.
    ///
    /// # Safety
    /// `index` must be lent (from [`alloc`](Self::alloc), [`TxBuf::into_raw`] or
    /// [`RxBuf::into_raw`]) and the caller must not use it afterwards.
    #[inline]
    pub unsafe fn release(&self, index: u32) {
        self.0.release(index);
    }

    /// Lends a received buffer to the application: `len` bytes at offset `off`.
    ///
    /// # Safety
    /// The caller must own `index` (it came from [`alloc`](Self::alloc) or it was
    /// just swapped out of a ring the caller controls) and give up every access to
    /// it; `off + len` must not exceed the buffer size.
    #[inline]
    pub unsafe fn lend_rx(&self, index: u32, off: u32, len: u32) -> RxBuf {
        debug_assert!(off as u64 + len as u64 <= self.0.buf_size as u64);
        self.0.set_state(index, BufState::Lent);
        RxBuf::from_parts(self.clone(), index, off, len)
    }

    /// Moves a buffer that was not the pool's (a netmap ring buffer swapped out of
    /// its slot) into the pool's ownership, as lent. Returns `false` if the index is
    /// out of range or already the pool's.
    pub fn adopt_lent(&self, index: u32) -> bool {
        let p = &*self.0;
        match p.meta.get(index as usize).map(|m| m.get().state) {
            Some(BufState::Foreign) => {
                p.set_state(index, BufState::Lent);
                p.owned.set(p.owned.get() + 1);
                true
            }
            _ => false,
        }
    }

    /// Takes a buffer that is not the pool's — outside every ring, still referenced
    /// by the application from a previous run of a file-backed port — into the pool
    /// as kept. Returns `false` if the index is out of range or already the pool's.
    pub fn adopt_kept(&self, index: u32) -> bool {
        let p = &*self.0;
        match p.meta.get(index as usize).map(|m| m.get().state) {
            Some(BufState::Foreign) => {
                p.owned.set(p.owned.get() + 1);
                p.keep(index);
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
        let p = &*self.0;
        debug_assert_eq!(p.state(index), BufState::Lent);
        p.set_state(index, BufState::Foreign);
        p.owned.set(p.owned.get() - 1);
    }

    /// A buffer for the application to fill and send. `None` when exhausted.
    #[inline]
    pub fn tx_buf(&self) -> Option<TxBuf> {
        self.alloc().map(|i| TxBuf::from_parts(self.clone(), i, 0))
    }

    /// Address of buffer `index`. Valid for `buf_size` bytes.
    #[inline]
    pub fn buf_ptr(&self, index: u32) -> *mut u8 {
        debug_assert!((index as usize) < self.0.meta.len());
        // SAFETY: index < index limit (checked in debug builds; callers got the
        // index from this pool), so the offset stays inside the mapping.
        unsafe { self.0.base.add(index as usize * self.0.buf_size as usize) }
    }

    /// The bytes of a kept buffer.
    pub fn kept_slice(&self, kept: &KeptBuf) -> Option<&[u8]> {
        let p = &*self.0;
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
        let p = &*self.0;
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
        self.0.buf_size
    }

    /// Bytes a [`TxBuf`] leaves free at the start of its buffer.
    pub fn tx_headroom(&self) -> u32 {
        self.0.tx_headroom
    }

    /// Buffers that belong to the pool (free, lent or kept).
    pub fn capacity(&self) -> u32 {
        self.0.owned.get()
    }

    /// Buffers on the free list.
    pub fn free_count(&self) -> u32 {
        self.0.free_len.get()
    }

    /// Buffers lent out (to the application or to a backend's rings).
    pub fn in_use(&self) -> u32 {
        self.0.owned.get() - self.0.free_len.get() - self.0.kept.get()
    }

    /// Buffers kept by the application.
    pub fn kept_count(&self) -> u32 {
        self.0.kept.get()
    }

    /// One past the largest addressable index.
    pub fn index_limit(&self) -> u32 {
        self.0.meta.len() as u32
    }

    /// Whether `index` is currently on the free list (for tests and assertions).
    pub fn is_free(&self, index: u32) -> bool {
        (index as usize) < self.0.meta.len() && self.0.state(index) == BufState::Free
    }

    /// Whether two handles refer to the same pool.
    pub fn same_pool(&self, other: &BufPool) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

impl PoolInner {
    fn with_capacity(base: *mut u8, buf_size: u32, tx_headroom: u32, limit: u32, memory: Box<dyn Any>) -> PoolInner {
        let meta = Meta { state: BufState::Foreign, next: NO_INDEX, off: 0, len: 0 };
        PoolInner {
            base,
            buf_size,
            tx_headroom,
            free: (0..limit).map(|_| Cell::new(0)).collect(),
            free_len: Cell::new(0),
            owned: Cell::new(0),
            kept: Cell::new(0),
            meta: (0..limit).map(|_| Cell::new(meta)).collect(),
            _memory: memory,
        }
    }

    fn adopt_free(&mut self, idx: u32) {
        self.owned.set(self.owned.get() + 1);
        self.set_state(idx, BufState::Lent);
        self.release(idx);
    }

    fn adopt_kept(&mut self, idx: u32) {
        self.owned.set(self.owned.get() + 1);
        self.kept.set(self.kept.get() + 1);
        self.set_state(idx, BufState::Kept);
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

    #[inline]
    pub(crate) fn release(&self, idx: u32) {
        debug_assert_eq!(self.state(idx), BufState::Lent, "buffer {idx} released twice");
        let n = self.free_len.get();
        self.free[n as usize].set(idx);
        self.free_len.set(n + 1);
        self.set_state(idx, BufState::Free);
    }

    pub(crate) fn keep(&self, idx: u32) {
        self.set_state(idx, BufState::Kept);
        self.kept.set(self.kept.get() + 1);
    }

    #[inline]
    pub(crate) fn base_of(&self, idx: u32) -> *mut u8 {
        // SAFETY: see BufPool::buf_ptr.
        unsafe { self.base.add(idx as usize * self.buf_size as usize) }
    }

    pub(crate) fn buf_size(&self) -> u32 {
        self.buf_size
    }

    pub(crate) fn tx_headroom(&self) -> u32 {
        self.tx_headroom
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

    proptest! {
        /// Buffer conservation: under any sequence of alloc / release / keep /
        /// release_kept, every index is in exactly one state and the counters agree.
        #[test]
        fn conservation(ops in proptest::collection::vec(0u8..4, 0..400)) {
            let p = pool(16);
            let mut lent: Vec<u32> = vec![];
            let mut kept: Vec<KeptBuf> = vec![];
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
                    _ => if let Some(k) = kept.pop() { prop_assert!(p.release_kept(k)) },
                }
                prop_assert_eq!(p.free_count() + p.in_use() + p.kept_count(), 16);
                prop_assert_eq!(p.in_use() as usize, lent.len());
                prop_assert_eq!(p.kept_count() as usize, kept.len());
                let free = (0..16).filter(|&i| p.is_free(i)).count();
                prop_assert_eq!(free, p.free_count() as usize);
            }
        }
    }
}
