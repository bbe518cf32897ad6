//! [`PoolRing`]: the kernel side of a pool's recycle ring — the provided-buffer ring
//! (`IORING_REGISTER_PBUF_RING`) whose descriptors the pool itself writes.
//!
//! Owns the ring's memory and its registration (a [`RingMapping`]). Attaching it to a
//! [`BufPool`] makes buffer id = pool index: a dropped `RxBuf` is written straight
//! back to the ring's tail by the pool (no refill pass), and a completion's buffer id
//! is lent out with [`BufPool::recycle_take`]. It never frees the memory while the
//! kernel may read it: [`PoolRing::unregister`] first, or leak.

use std::io;

use io_uring::Submitter;
use paste_rt_core::BufPool;

use crate::ring_mapping::RingMapping;
pub use crate::ring_mapping::MAX_ENTRIES;

/// A registered provided-buffer ring attached to a pool; see the module docs.
pub struct PoolRing {
    /// The registered descriptors, which the pool writes.
    map: RingMapping,
    pool: BufPool,
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
        let mut map = RingMapping::register(submitter, bgid, entries)?;
        // SAFETY: the mapping holds `entries` zeroed descriptors, is page aligned, and
        // stays mapped until after `detach_recycle_ring`: `unregister` detaches before
        // the mapping may be unmapped, and a mapping still registered is never unmapped.
        let attached = unsafe { pool.attach_recycle_ring(map.base(), entries, 0, pool.buf_size(), target) };
        if !attached {
            let _ = map.unregister(submitter);
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "the pool already has a recycle ring"));
        }
        Ok(PoolRing { map, pool: pool.clone() })
    }

    /// The buffer group id to put in receive SQEs.
    pub fn bgid(&self) -> u16 {
        self.map.bgid()
    }

    /// Descriptors in the ring.
    pub fn entries(&self) -> u32 {
        self.map.entries()
    }

    /// Unregisters the ring and gives every buffer it held back to the pool's free
    /// list. Call once no receive can take buffers any more.
    pub fn unregister(&mut self, submitter: &Submitter<'_>) -> io::Result<()> {
        if self.map.unregister(submitter)? {
            // SAFETY: unregistered: the kernel takes no more buffers from the ring.
            unsafe { self.pool.detach_recycle_ring() };
        }
        Ok(())
    }
}
