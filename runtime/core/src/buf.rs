//! Buffer handles lent to the application.
//!
//! [`RxBuf`] is received data sitting in a pool buffer (zero copy: the backend
//! received straight into it); [`TxBuf`] is a pool buffer the application fills and
//! hands to `send`. Dropping either returns the buffer to its pool — to the backend's
//! receive ring directly when it wants buffers, else to the free list — with no
//! system call and no allocation. Neither holds a reference count: a handle is a
//! pointer to its pool plus the buffer's index and range (see the pool's module docs
//! for why the pointer stays valid). [`RxBuf::keep`] takes a buffer out of circulation as a [`KeptBuf`], a
//! plain `(index, offset, len)` reference that survives a restart when the pool is
//! file-backed.
//!
//! The bridge to the `bytes` crate: [`RxBuf::into_bytes`] (and `From<RxBuf> for
//! Bytes`) lends the buffer on as a [`Bytes`] without copying, `RxBuf` implements
//! [`bytes::Buf`] and `TxBuf` implements [`bytes::BufMut`], so parsers and encoders
//! written against those traits work on pool buffers in place.

use std::fmt;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use bytes::buf::UninitSlice;
use bytes::{Buf, BufMut, Bytes};

use crate::lent_bytes::LentBytes;
use crate::pool::{BufPool, PoolInner};

/// Received bytes in a pool buffer, lent to the application.
///
/// ```
/// # use paste_rt_core::{BufPool, PoolConfig};
/// let pool = BufPool::new(&PoolConfig::default(), 0).unwrap();
/// let mut tx = pool.tx_buf().unwrap();
/// tx.extend_from_slice(b"GET / HTTP/1.1\r\n");
/// let (index, len) = tx.into_raw();
/// // A backend lends what it received:
/// // SAFETY: the index was just allocated and is handed over once.
/// let mut rx = unsafe { pool.lend_rx(index, 0, len) };
/// rx.advance(4);
/// assert_eq!(&rx[..], b"/ HTTP/1.1\r\n");
/// drop(rx); // back on the free list
/// assert_eq!(pool.in_use(), 0);
/// ```
pub struct RxBuf {
    pool: NonNull<PoolInner>,
    index: u32,
    off: u32,
    len: u32,
}

impl RxBuf {
    #[inline]
    pub(crate) fn from_parts(pool: NonNull<PoolInner>, index: u32, off: u32, len: u32) -> RxBuf {
        RxBuf { pool, index, off, len }
    }

    #[inline]
    pub(crate) fn inner(&self) -> &PoolInner {
        // SAFETY: the pool state lives while any of its buffers is lent (pool docs).
        unsafe { self.pool.as_ref() }
    }

    #[inline]
    pub(crate) fn pool_ptr(&self) -> NonNull<PoolInner> {
        self.pool
    }

    /// The pool index of the buffer.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Offset of the first byte inside the buffer.
    pub fn offset(&self) -> u32 {
        self.off
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether no bytes remain.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drops the first `n` bytes (at most all of them).
    pub fn advance(&mut self, n: usize) {
        let n = n.min(self.len as usize) as u32;
        self.off += n;
        self.len -= n;
    }

    /// Keeps only the first `n` bytes.
    pub fn truncate(&mut self, n: usize) {
        self.len = self.len.min(n as u32);
    }

    /// Takes the buffer out of circulation: it will not be received into again until
    /// [`BufPool::release_kept`] is called with the returned reference. With a
    /// file-backed pool the reference stays meaningful across restarts (list its
    /// index in [`PoolConfig::kept`](crate::PoolConfig::kept) when reopening).
    pub fn keep(self) -> KeptBuf {
        let me = ManuallyDrop::new(self);
        me.inner().keep(me.index);
        let kept = KeptBuf { index: me.index, offset: me.off, len: me.len };
        // SAFETY: `me` is not used again; a kept buffer no longer counts as lent, so
        // this may have been the last thing keeping the pool state alive.
        unsafe { PoolInner::free_if_unused(me.pool) };
        kept
    }

    /// Gives up the handle without returning the buffer: `(index, offset, len)`.
    /// The caller becomes responsible for [`BufPool::release`] (through an owner
    /// handle, which keeps the pool alive).
    pub fn into_raw(self) -> (u32, u32, u32) {
        let me = ManuallyDrop::new(self);
        (me.index, me.off, me.len)
    }

    /// Whether this buffer belongs to `pool`.
    pub fn is_from(&self, pool: &BufPool) -> bool {
        pool.inner_ptr() == self.pool
    }

    /// Lends the buffer on as a [`Bytes`], without copying: the bytes stay in the
    /// pool buffer, which returns to its pool when the last clone or slice of the
    /// `Bytes` drops. Slicing and cloning the `Bytes` copy nothing either.
    ///
    /// Cost: one small allocation (the shared owner record `Bytes::from_owner`
    /// makes) and one atomic reference count increment; an empty buffer becomes
    /// `Bytes::new()` and goes back at once. The receiving path of `RxBuf`s and
    /// `TxBuf`s pays nothing for this; only a `Bytes` does.
    ///
    /// A `Bytes` is `Send + Sync` and may drop on any thread:
    /// * on the pool's own thread, its buffer comes back at once, as when an `RxBuf`
    ///   drops;
    /// * on another thread, the buffer goes onto the pool's lock-free return list
    ///   and the runtime takes it back at its next tick (the first return onto an
    ///   empty list interrupts the runtime's wait);
    /// * after the pool's runtime has gone, the buffer is never reused: the pool's
    ///   memory is freed when the last such `Bytes` drops.
    ///
    /// Until it comes back, the buffer counts as lent ([`BufPool::in_use`],
    /// [`BufPool::lent_as_bytes`]): held `Bytes` drain the pool like held `RxBuf`s,
    /// and a dry pool pauses receiving until buffers return — nothing is lost.
    ///
    /// ```
    /// # use paste_rt_core::{BufPool, PoolConfig};
    /// # let pool = BufPool::new(&PoolConfig::default(), 0).unwrap();
    /// # let mut tx = pool.tx_buf().unwrap();
    /// # tx.extend_from_slice(b"GET /index.html HTTP/1.1\r\n");
    /// # let (index, len) = tx.into_raw();
    /// // SAFETY: (stands in for a backend) the index was just allocated, handed over once.
    /// let rx = unsafe { pool.lend_rx(index, 0, len) };
    /// let at = rx.as_ptr();
    /// let line = rx.into_bytes();
    /// let path = line.slice(4..15); // zero copy: same memory
    /// assert_eq!((&path[..], path.as_ptr()), (&b"/index.html"[..], at.wrapping_add(4)));
    /// assert_eq!(pool.lent_as_bytes(), 1);
    /// let elsewhere = std::thread::spawn(move || path.len()); // Send + 'static
    /// drop(line);
    /// assert_eq!(elsewhere.join().unwrap(), 11);
    /// pool.reclaim_returned(); // what the runtime does at every tick
    /// assert_eq!((pool.lent_as_bytes(), pool.in_use()), (0, 0));
    /// ```
    pub fn into_bytes(self) -> Bytes {
        if self.is_empty() {
            return Bytes::new();
        }
        let me = ManuallyDrop::new(self);
        let shared = me.inner().lend_as_bytes();
        let bytes: &[u8] = &me;
        // SAFETY: the buffer is lent to this handle, which gives it up here (`me` is
        // never dropped) and was counted as lent as Bytes above; the range is the
        // handle's own, inside the buffer.
        let owner = unsafe { LentBytes::new(shared, me.index, bytes.as_ptr(), bytes.len()) };
        Bytes::from_owner(owner)
    }
}

impl From<RxBuf> for Bytes {
    /// [`RxBuf::into_bytes`]: zero copy.
    ///
    /// ```
    /// # use paste_rt_core::{BufPool, PoolConfig};
    /// # let pool = BufPool::new(&PoolConfig::default(), 0).unwrap();
    /// # let mut tx = pool.tx_buf().unwrap();
    /// # tx.extend_from_slice(b"hello");
    /// # let (index, len) = tx.into_raw();
    /// # // SAFETY: the index was just allocated and is handed over once.
    /// # let rx = unsafe { pool.lend_rx(index, 0, len) };
    /// let body: bytes::Bytes = rx.into();
    /// assert_eq!(body, "hello");
    /// ```
    fn from(buf: RxBuf) -> Bytes {
        buf.into_bytes()
    }
}

/// Received bytes as a [`bytes::Buf`], read in place (one chunk: the buffer).
/// `advance` past the end stops at the end, as [`RxBuf::advance`] does;
/// `copy_to_bytes` copies (use [`RxBuf::into_bytes`] to keep the whole buffer
/// without a copy).
///
/// ```
/// use bytes::Buf;
/// # use paste_rt_core::{BufPool, PoolConfig};
/// # let pool = BufPool::new(&PoolConfig::default(), 0).unwrap();
/// # let mut tx = pool.tx_buf().unwrap();
/// # tx.extend_from_slice(&[0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o']);
/// # let (index, len) = tx.into_raw();
/// # // SAFETY: the index was just allocated and is handed over once.
/// let mut rx = unsafe { pool.lend_rx(index, 0, len) };
/// let n = rx.get_u32() as usize; // a length-prefixed frame, parsed in place
/// assert_eq!((n, rx.chunk()), (5, &b"hello"[..]));
/// ```
impl Buf for RxBuf {
    #[inline]
    fn remaining(&self) -> usize {
        self.len()
    }

    #[inline]
    fn chunk(&self) -> &[u8] {
        self
    }

    #[inline]
    fn advance(&mut self, cnt: usize) {
        RxBuf::advance(self, cnt);
    }
}

impl Deref for RxBuf {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: the buffer is lent to this handle (nobody writes to it while the
        // handle lives) and off + len <= buf_size (lend_rx's contract, maintained
        // by advance/truncate which only shrink the range).
        unsafe {
            std::slice::from_raw_parts(self.inner().base_of(self.index).add(self.off as usize), self.len as usize)
        }
    }
}

impl AsRef<[u8]> for RxBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Drop for RxBuf {
    #[inline]
    fn drop(&mut self) {
        self.inner().release(self.index);
        release_tail(self.pool);
    }
}

/// After a buffer handle returned its buffer: frees the pool state if that was the
/// last thing keeping it (its owners are gone). Out of line: rare.
#[inline]
fn release_tail(pool: NonNull<PoolInner>) {
    // SAFETY: the handle just returned its buffer, so the state is still live here.
    if unsafe { pool.as_ref() }.has_no_owner() {
        // SAFETY: live (above); nothing uses `pool` after this call.
        unsafe { PoolInner::free_if_unused(pool) };
    }
}

impl fmt::Debug for RxBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RxBuf").field("index", &self.index).field("off", &self.off).field("len", &self.len).finish()
    }
}

/// A pool buffer the application fills, then passes to `send`: the backend sends
/// straight from it (zero copy) and returns it to the pool afterwards. (PASTE
/// copies a buffer of at most 512 bytes into its TX slot instead: cheaper than
/// swapping the buffer in.)
///
/// The first [`BufPool::tx_headroom`] bytes are reserved for the backend (PASTE
/// writes the TCP/IP headers there); `TxBuf` only exposes what follows.
pub struct TxBuf {
    pool: NonNull<PoolInner>,
    /// Where the payload starts (the buffer's address plus the headroom): worked
    /// out once, when the buffer is taken, so that writing a reply piece reads no
    /// pool geometry.
    data: NonNull<u8>,
    index: u32,
    len: u32,
    /// Most payload bytes the buffer carries ([`BufPool::tx_capacity`] when taken).
    cap: u32,
}

impl TxBuf {
    #[inline]
    pub(crate) fn from_parts(pool: NonNull<PoolInner>, index: u32, len: u32) -> TxBuf {
        // SAFETY: the pool state lives while any of its buffers is lent (pool docs),
        // and this one is being lent.
        let inner = unsafe { pool.as_ref() };
        let (headroom, cap) = (inner.tx_headroom(), inner.tx_capacity());
        debug_assert!(len <= cap && cap <= inner.buf_size() - headroom);
        // SAFETY: `index` is one of the pool's buffers (its caller took it from the
        // pool), so its address plus the headroom (below the buffer size) is inside
        // the pool's memory, and not null.
        let data = unsafe { NonNull::new_unchecked(inner.base_of(index).add(headroom as usize)) };
        TxBuf { pool, data, index, len, cap }
    }

    #[inline]
    fn inner(&self) -> &PoolInner {
        // SAFETY: the pool state lives while any of its buffers is lent (pool docs).
        unsafe { self.pool.as_ref() }
    }

    /// The pool index of the buffer.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most bytes this buffer can carry.
    pub fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// Bytes still free.
    pub fn remaining(&self) -> usize {
        self.capacity() - self.len as usize
    }

    /// Appends as much of `data` as fits; returns how many bytes were taken.
    #[inline]
    pub fn put(&mut self, data: &[u8]) -> usize {
        // (No slice of the free room built and bounds-checked: this is the
        // per-reply-piece path of every server writing into pool buffers.)
        let (free, room) = self.free_room();
        let n = data.len().min(room);
        // SAFETY: `free` starts `room` writable bytes this handle owns exclusively
        // (`free_room`), n <= room, and `data` is another object (a shared borrow,
        // while this buffer is borrowed mutably), so the two do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), free, n) };
        self.len += n as u32;
        n
    }

    /// Appends all of `data` when it fits with room to spare (the buffer does not
    /// fill up), and says whether it did; takes nothing otherwise. One look at the
    /// buffer's geometry for the test and the copy: the per-reply path of servers
    /// that write many short replies into one buffer (pipelined answers, memcached
    /// replies).
    #[inline]
    pub fn put_within(&mut self, data: &[u8]) -> bool {
        let (free, room) = self.free_room();
        if data.len() >= room {
            return false;
        }
        // The length first, the copy last: nothing is left to do after the copy, so
        // a caller that returns next can leave to `memcpy` with no frame of its own.
        self.len += data.len() as u32;
        // SAFETY: `free` starts `room` writable bytes this handle owns exclusively
        // (`free_room`), data.len() < room, and `data` is another object (a shared
        // borrow, while this buffer is borrowed mutably), so the two do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), free, data.len()) };
        true
    }

    /// Appends all of `data`.
    ///
    /// # Panics
    /// If `data` does not fit; use [`put`](Self::put) to copy what fits.
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        assert!(data.len() <= self.remaining(), "TxBuf overflow: {} bytes into {}", data.len(), self.remaining());
        self.put(data);
    }

    /// The unwritten part of the buffer, to fill in place; then call
    /// [`set_len`](Self::set_len).
    pub fn spare_mut(&mut self) -> &mut [u8] {
        let (free, room) = self.free_room();
        // SAFETY: `free` starts `room` bytes this handle owns exclusively
        // (`free_room`), borrowed mutably with `self`.
        unsafe { std::slice::from_raw_parts_mut(free, room) }
    }

    /// Where the unwritten part of the buffer starts, and its length: the pool's
    /// geometry read once. The handle owns the buffer exclusively (nobody else reads
    /// or writes it until it is sent or dropped).
    #[inline]
    fn free_room(&self) -> (*mut u8, usize) {
        // SAFETY: len <= cap (`set_len` and `put` keep len within the capacity), so
        // the offset stays inside this buffer's payload.
        let free = unsafe { self.data.as_ptr().add(self.len as usize) };
        (free, (self.cap - self.len) as usize)
    }

    /// Sets the number of bytes written.
    ///
    /// # Panics
    /// If `len` exceeds the capacity.
    pub fn set_len(&mut self, len: usize) {
        assert!(len <= self.capacity());
        self.len = len as u32;
    }

    /// Discards the contents.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Whether this buffer belongs to `pool`.
    pub fn is_from(&self, pool: &BufPool) -> bool {
        pool.inner_ptr() == self.pool
    }

    /// Gives up the handle without returning the buffer: `(index, len)`; the data
    /// starts at `tx_headroom` in the buffer. The caller (a backend) becomes
    /// responsible for [`BufPool::release`] (through an owner handle, which keeps the
    /// pool alive).
    pub fn into_raw(self) -> (u32, u32) {
        let me = ManuallyDrop::new(self);
        (me.index, me.len)
    }
}

impl Deref for TxBuf {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: exclusive ownership as in spare_mut; the payload's first `len`
        // bytes (len <= cap) are inside the buffer and written.
        unsafe { std::slice::from_raw_parts(self.data.as_ptr(), self.len as usize) }
    }
}

impl DerefMut for TxBuf {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in Deref, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.data.as_ptr(), self.len as usize) }
    }
}

impl Drop for TxBuf {
    #[inline]
    fn drop(&mut self) {
        self.inner().release(self.index);
        release_tail(self.pool);
    }
}

/// A pool buffer as a [`bytes::BufMut`]: encoders write into it in place, up to its
/// capacity (`remaining_mut` is what is left; writing more panics, as with any
/// fixed-size `BufMut`). The inherent [`TxBuf::put`] (copy what fits of a slice)
/// takes precedence over `BufMut::put` in method syntax; call `BufMut::put_slice`
/// or `BufMut::put` by path for the trait's.
///
/// ```
/// use bytes::BufMut;
/// # use paste_rt_core::{BufPool, PoolConfig};
/// # let pool = BufPool::new(&PoolConfig::default(), 0).unwrap();
/// let mut tx = pool.tx_buf().unwrap();
/// tx.put_u32(5);
/// tx.put_slice(b"hello");
/// assert_eq!(&tx[..], &[0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o']);
/// assert_eq!(tx.remaining_mut(), tx.capacity() - 9);
/// ```
// SAFETY: `chunk_mut` is the buffer's unwritten part, which this handle owns
// exclusively; `advance_mut` only moves `len` within the capacity (checked), over
// bytes the caller initialised (BufMut's contract).
unsafe impl BufMut for TxBuf {
    #[inline]
    fn remaining_mut(&self) -> usize {
        self.remaining()
    }

    #[inline]
    unsafe fn advance_mut(&mut self, cnt: usize) {
        let len = self.len().checked_add(cnt).filter(|&l| l <= self.capacity());
        let len = len.unwrap_or_else(|| panic!("TxBuf: advance_mut({cnt}) past the end ({} free)", self.remaining()));
        self.len = len as u32;
    }

    #[inline]
    fn chunk_mut(&mut self) -> &mut UninitSlice {
        UninitSlice::new(self.spare_mut())
    }
}

impl fmt::Debug for TxBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxBuf").field("index", &self.index).field("len", &self.len).finish()
    }
}

/// A buffer kept out of circulation ([`RxBuf::keep`]): plain data, valid across
/// restarts of a file-backed pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeptBuf {
    /// Pool index.
    pub index: u32,
    /// Offset of the data inside the buffer.
    pub offset: u32,
    /// Length of the data.
    pub len: u32,
}
