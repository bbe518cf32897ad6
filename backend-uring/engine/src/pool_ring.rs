//! [`PoolRing`]: the kernel side of a pool's recycle ring — the provided-buffer ring
//! (`IORING_REGISTER_PBUF_RING`) whose descriptors the pool itself writes.
//!
//! Owns the ring's page-aligned memory and its registration. Attaching it to a
//! [`BufPool`] makes buffer id = pool index: a dropped `RxBuf` is written straight
//! back to the ring's tail by the pool (no refill pass), and a completion's buffer id
//! is lent out with [`BufPool::recycle_take`]. It never frees the memory while the
//! kernel may read it: [`PoolRing::unregister`] first, or leak.

use std::io;
use std::ptr::NonNull;

use io_uring::Submitter;
use paste_rt_core::{BufPool, RECYCLE_DESC_SIZE};

/// Most entries the kernel accepts in one buffer ring.
pub const MAX_ENTRIES: u32 = 32768;

/// A registered provided-buffer ring attached to a pool; see the module docs.
pub struct PoolRing {
    mem: NonNull<u8>,
    map_len: usize,
    entries: u32,
    bgid: u16,
    pool: BufPool,
    registered: bool,
}

impl PoolRing {
    /// Maps and registers a ring of `entries` (rounded up to a power of two, at most
    /// [`MAX_ENTRIES`]) under group `bgid`, and attaches it to `pool`, which fills it
    /// up to `target` buffers. Each buffer is offered whole. The pool's indices must
    /// fit 16 bits (at most 65536 buffers).
    pub fn new(
        submitter: &Submitter<'_>,
        pool: &BufPool,
        bgid: u16,
        entries: u32,
        target: u32,
    ) -> io::Result<PoolRing> {
        let entries = entries.clamp(1, MAX_ENTRIES).next_power_of_two();
        if pool.index_limit() > 1 << 16 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a buffer ring over a pool of {} buffers: io_uring buffer ids are 16-bit (at most 65536)",
                    pool.index_limit()
                ),
            ));
        }
        let page = 4096;
        let map_len = (entries as usize * RECYCLE_DESC_SIZE).div_ceil(page) * page;
        // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mem = NonNull::new(raw.cast::<u8>()).expect("mmap returned NULL without MAP_FIXED");
        let mut ring = PoolRing { mem, map_len, entries, bgid, pool: pool.clone(), registered: false };
        // SAFETY: the mapping is page aligned, zeroed (tail 0) and lives until `Drop`,
        // which unmaps it only after unregistering (or when registration failed).
        unsafe { submitter.register_buf_ring_with_flags(mem.as_ptr() as u64, entries as u16, bgid, 0) }?;
        ring.registered = true;
        // SAFETY: the mapping holds `entries` zeroed descriptors, is page aligned, and
        // stays mapped until after `detach_recycle_ring` (see unregister / Drop).
        let attached = unsafe { pool.attach_recycle_ring(mem.as_ptr(), entries, 0, pool.buf_size(), target) };
        if !attached {
            let _ = ring.unregister(submitter);
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "the pool already has a recycle ring"));
        }
        Ok(ring)
    }

    /// The buffer group id to put in receive SQEs.
    pub fn bgid(&self) -> u16 {
        self.bgid
    }

    /// Descriptors in the ring.
    pub fn entries(&self) -> u32 {
        self.entries
    }

    /// Unregisters the ring and gives every buffer it held back to the pool's free
    /// list. Call once no receive can take buffers any more.
    pub fn unregister(&mut self, submitter: &Submitter<'_>) -> io::Result<()> {
        if self.registered {
            submitter.unregister_buf_ring(self.bgid)?;
            self.registered = false;
            // SAFETY: unregistered: the kernel takes no more buffers from the ring.
            unsafe { self.pool.detach_recycle_ring() };
        }
        Ok(())
    }
}

impl Drop for PoolRing {
    fn drop(&mut self) {
        if self.registered {
            // Still registered: the kernel may read the ring until the io_uring fd is
            // closed, so leak the mapping rather than free it under it.
            return;
        }
        // SAFETY: mapped in `new`, no longer registered (and detached from the pool),
        // unmapped exactly once.
        unsafe { libc::munmap(self.mem.as_ptr().cast(), self.map_len) };
    }
}
