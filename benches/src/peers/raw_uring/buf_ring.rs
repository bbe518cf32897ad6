//! The provided-buffer ring of the raw-uring loop.
//!
//! Owns the buffers the kernel receives into and the ring that hands them over
//! (`IORING_REGISTER_PBUF_RING`): buffer `bid` is bytes `bid * BUF_SIZE ..` of one
//! allocation; a buffer goes back into the ring as soon as its bytes have been
//! handled, and the new tail is published once per loop iteration.
//!
//! It must never free the ring or the buffers: the kernel may write into them until the
//! ring is torn down, which happens after the process (or thread) is gone. Both are
//! leaked on purpose; a server makes exactly one.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::Submitter;

/// Bytes per buffer (paste-rt's default pool buffer, as netmap's).
pub(super) const BUF_SIZE: usize = 2048;
/// Buffers in the ring (a power of two, at most 32 768).
pub(super) const BUF_COUNT: u16 = 4096;

/// A registered provided-buffer ring.
#[derive(Debug)]
pub(super) struct BufRing {
    /// `BUF_COUNT` ring entries, page-aligned, leaked.
    entries: *mut BufRingEntry,
    /// `BUF_COUNT * BUF_SIZE` bytes of buffers, leaked.
    bufs: *mut u8,
    /// Our tail (published with [`publish`](Self::publish)).
    tail: u16,
    bgid: u16,
}

impl BufRing {
    /// Allocates the ring and its buffers, fills the ring and registers it as buffer
    /// group `bgid`.
    pub(super) fn register(submitter: &Submitter<'_>, bgid: u16) -> io::Result<BufRing> {
        let ring_bytes = usize::from(BUF_COUNT) * std::mem::size_of::<BufRingEntry>();
        // SAFETY: a fresh anonymous private mapping; no existing memory is affected.
        let ring = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ring == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let bufs: &'static mut [u8] = Box::leak(vec![0u8; usize::from(BUF_COUNT) * BUF_SIZE].into_boxed_slice());
        let mut ring = BufRing { entries: ring.cast(), bufs: bufs.as_mut_ptr(), tail: 0, bgid };
        for bid in 0..BUF_COUNT {
            ring.push(bid);
        }
        ring.publish();
        // SAFETY: `entries` is a page-aligned mapping of `BUF_COUNT` entries that is
        // never unmapped (leaked), as the registration requires.
        unsafe { submitter.register_buf_ring_with_flags(ring.entries as u64, BUF_COUNT, bgid, 0)? };
        Ok(ring)
    }

    /// The buffer group id to receive with.
    pub(super) fn bgid(&self) -> u16 {
        self.bgid
    }

    /// The first `len` bytes of buffer `bid`, as the kernel filled them.
    pub(super) fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        assert!(bid < BUF_COUNT && len <= BUF_SIZE, "buffer {bid}/{len} out of range");
        // SAFETY: buffer `bid` lies inside the leaked allocation (asserted); the kernel
        // handed it to us in a completion and does not touch it until it is pushed back
        // into the ring, which happens only after this borrow of `self` ends.
        unsafe { std::slice::from_raw_parts(self.bufs.add(usize::from(bid) * BUF_SIZE), len) }
    }

    /// Gives buffer `bid` back to the kernel (visible after [`publish`](Self::publish)).
    pub(super) fn push(&mut self, bid: u16) {
        let slot = usize::from(self.tail & (BUF_COUNT - 1));
        // SAFETY: `slot < BUF_COUNT`, inside the ring mapping; the kernel only reads
        // entries between its head and our published tail, and this slot is past the
        // published tail until `publish`.
        let entry = unsafe { &mut *self.entries.add(slot) };
        // SAFETY: `bid < BUF_COUNT` (callers pass ids the kernel gave or the initial
        // range), so the address is inside the leaked buffer allocation.
        let addr = unsafe { self.bufs.add(usize::from(bid) * BUF_SIZE) };
        entry.set_addr(addr as u64);
        entry.set_len(BUF_SIZE as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes the buffers pushed since the last call.
    pub(super) fn publish(&self) {
        // SAFETY: `entries` is the ring base; `tail` returns the address of the shared
        // tail field inside the first entry, a valid, aligned u16 that the kernel reads
        // concurrently, hence the atomic store.
        let tail = unsafe { &*BufRingEntry::tail(self.entries).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }
}
