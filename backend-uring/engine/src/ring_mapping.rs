//! [`RingMapping`]: the memory of one registered provided-buffer ring
//! (`IORING_REGISTER_PBUF_RING`), shared by [`BufRing`](crate::buf_ring::BufRing) and
//! [`PoolRing`](crate::pool_ring::PoolRing).
//!
//! It maps the ring's descriptors (`struct io_uring_buf`, 16 bytes each; the shared
//! tail is the last two bytes of the first) as zeroed, page-aligned private memory,
//! registers them under a buffer group id, and never unmaps them while the kernel may
//! read them: unmapped on drop only once unregistered, leaked otherwise (the kernel
//! reads the ring until the io_uring fd is closed). Its owner writes the descriptors
//! and the tail.

use std::io;
use std::ptr::NonNull;

use io_uring::Submitter;

/// Bytes per descriptor (`struct io_uring_buf`: addr, len, bid, and the tail's room):
/// the layout the pool's recycle ring writes, so core's constant.
pub const DESC_SIZE: usize = paste_rt_core::RECYCLE_DESC_SIZE;

// The kernel's layout, as the io_uring crate declares it.
const _: () = assert!(std::mem::size_of::<io_uring::types::BufRingEntry>() == DESC_SIZE);

/// Most descriptors the kernel accepts in one buffer ring.
pub const MAX_ENTRIES: u32 = 32768;

const PAGE: usize = 4096;

/// The mapped, registered memory of one provided-buffer ring; see the module docs.
#[derive(Debug)]
pub struct RingMapping {
    mem: NonNull<u8>,
    map_len: usize,
    entries: u32,
    bgid: u16,
    registered: bool,
}

impl RingMapping {
    /// Maps `entries` zeroed descriptors (a power of two, at most [`MAX_ENTRIES`]: the
    /// kernel checks) and registers them under group `bgid`. Nothing is left mapped when
    /// registration fails.
    pub fn register(submitter: &Submitter<'_>, bgid: u16, entries: u32) -> io::Result<RingMapping> {
        let map_len = (entries as usize * DESC_SIZE).div_ceil(PAGE) * PAGE;
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
        // Unregistered until the kernel says yes: a failure below unmaps in `Drop`.
        let mut map = RingMapping { mem, map_len, entries, bgid, registered: false };
        // SAFETY: the mapping is page aligned, zeroed (tail 0) and lives until `Drop`,
        // which unmaps it only when it is not registered.
        unsafe { submitter.register_buf_ring_with_flags(mem.as_ptr() as u64, entries as u16, bgid, 0) }?;
        map.registered = true;
        Ok(map)
    }

    /// The first descriptor; `entries() * DESC_SIZE` bytes are mapped from here.
    #[inline(always)]
    pub fn base(&self) -> *mut u8 {
        self.mem.as_ptr()
    }

    /// Descriptors in the ring.
    pub fn entries(&self) -> u32 {
        self.entries
    }

    /// The buffer group id.
    pub fn bgid(&self) -> u16 {
        self.bgid
    }

    /// Whether the kernel may still take buffers from the ring.
    pub fn is_registered(&self) -> bool {
        self.registered
    }

    /// Unregisters the group: the kernel takes no more buffers from it. Returns whether
    /// this call did it (`false`: it was not registered). On an error the ring stays
    /// registered, so its memory is leaked rather than freed under the kernel.
    pub fn unregister(&mut self, submitter: &Submitter<'_>) -> io::Result<bool> {
        if !self.registered {
            return Ok(false);
        }
        submitter.unregister_buf_ring(self.bgid)?;
        self.registered = false;
        Ok(true)
    }
}

impl Drop for RingMapping {
    fn drop(&mut self) {
        if self.registered {
            // Still registered: the kernel may read the ring until the io_uring fd is
            // closed, so leak the mapping rather than free it under it.
            return;
        }
        // SAFETY: mapped in `register`, not registered (never, or no longer), unmapped
        // exactly once.
        unsafe { libc::munmap(self.mem.as_ptr().cast(), self.map_len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use io_uring::IoUring;

    #[test]
    fn registers_once_per_group_and_unregisters_once() {
        let uring = IoUring::new(8).unwrap();
        let submitter = uring.submitter();
        let mut map = RingMapping::register(&submitter, 7, 8).unwrap();
        assert!(map.is_registered());
        assert_eq!((map.bgid(), map.entries()), (7, 8));
        // The group is taken: a second ring under it is refused (and unmapped).
        assert!(RingMapping::register(&submitter, 7, 8).is_err());
        assert!(map.unregister(&submitter).unwrap());
        assert!(!map.is_registered());
        assert!(!map.unregister(&submitter).unwrap(), "the second call has nothing to do");
        // The group is free again.
        let again = RingMapping::register(&submitter, 7, 8).unwrap();
        drop(again); // still registered: leaked, not unmapped under the kernel
    }

    #[test]
    fn a_size_the_kernel_refuses_is_an_error() {
        let uring = IoUring::new(8).unwrap();
        // Not a power of two.
        assert!(RingMapping::register(&uring.submitter(), 1, 3).is_err());
    }

    #[test]
    fn the_mapping_is_zeroed_and_covers_every_descriptor() {
        let uring = IoUring::new(8).unwrap();
        let mut map = RingMapping::register(&uring.submitter(), 2, 512).unwrap();
        // SAFETY: `entries * DESC_SIZE` bytes are mapped from `base`, and nothing else
        // writes them (no buffer was offered, the tail stays 0).
        let bytes = unsafe { std::slice::from_raw_parts(map.base(), 512 * DESC_SIZE) };
        assert!(bytes.iter().all(|&b| b == 0));
        map.unregister(&uring.submitter()).unwrap();
    }
}
