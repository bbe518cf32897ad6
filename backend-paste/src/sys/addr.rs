//! Address arithmetic over a mapped netmap region (the `netmap_user.h` macros) and
//! field access to the shared `netmap_if` / `netmap_ring` / `netmap_slot` objects.
//!
//! Owns the translation from (region, offsets, indices) to pointers, with every
//! offset checked against the region bounds when a view is built. The ring fields the
//! other side writes are read and written through raw pointers and never through Rust
//! references, since the kernel (or the emulated kernel) changes them between calls:
//! `head`/`cur`/`tail`, which hand slots over, with volatile accesses; a slot with
//! plain ones — only the side that owns it (netmap's head/tail rule) touches it, and
//! it changes hands only through those fields and a sync (a system call, or a call
//! into the emulated kernel), which no access is moved across. It must never keep a
//! pointer into a *buffer* across a sync: buffer indices change under it.

use std::mem::offset_of;
use std::ptr;

use super::abi::{slotflags, NetmapIf, NetmapRing, NetmapSlot};

/// A mapped port region: `len` bytes at `base`, with the `netmap_if` at `nifp_offset`.
#[derive(Clone, Copy, Debug)]
pub struct PortRegion {
    /// Start of the mapping (the REGISTER `mmap`, the extmem mapping, or emulated memory).
    pub base: *mut u8,
    /// Bytes mapped.
    pub len: usize,
    /// `nr_offset` from REGISTER: where the `netmap_if` lives.
    pub nifp_offset: usize,
}

/// Why a region does not look like a netmap port.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("netmap region layout: {0}")]
pub struct LayoutError(pub String);

/// `NETMAP_IF(base, ofs)`.
///
/// # Safety
/// `base + ofs` must lie inside one allocation.
pub unsafe fn netmap_if(base: *mut u8, ofs: usize) -> *mut NetmapIf {
    // SAFETY: the caller guarantees the offset stays inside the allocation.
    unsafe { base.add(ofs).cast() }
}

/// `ring_ofs[i]` of a `netmap_if`.
///
/// # Safety
/// `nifp` must point to a `netmap_if` followed by at least `i + 1` ring offsets.
pub unsafe fn ring_ofs(nifp: *const NetmapIf, i: usize) -> i64 {
    // SAFETY: the caller guarantees the array has an entry `i`.
    unsafe { ptr::read_volatile(nifp.cast::<u8>().add(offset_of!(NetmapIf, ring_ofs)).cast::<i64>().add(i)) }
}

/// Writes `ring_ofs[i]` (used when laying out an emulated port).
///
/// # Safety
/// As for [`ring_ofs`], and the memory must be writable.
pub unsafe fn set_ring_ofs(nifp: *mut NetmapIf, i: usize, ofs: i64) {
    // SAFETY: as in ring_ofs.
    unsafe { ptr::write_volatile(nifp.cast::<u8>().add(offset_of!(NetmapIf, ring_ofs)).cast::<i64>().add(i), ofs) }
}

/// `NETMAP_TXRING(nifp, i)`: `nifp + ring_ofs[i]`.
///
/// # Safety
/// As for [`ring_ofs`]; the result is only meaningful if the entry is non-zero.
pub unsafe fn txring(nifp: *mut NetmapIf, i: usize) -> *mut NetmapRing {
    // SAFETY: the caller guarantees the entry exists; wrapping_offset never leaves
    // the pointer provenance in UB territory, the result is checked before use.
    unsafe { nifp.cast::<u8>().wrapping_offset(ring_ofs(nifp, i) as isize).cast() }
}

/// `NETMAP_RXRING(nifp, i)`: `nifp + ring_ofs[i + ni_tx_rings + ni_host_tx_rings]`.
///
/// # Safety
/// As for [`ring_ofs`], with the index shifted past the TX entries.
pub unsafe fn rxring(nifp: *mut NetmapIf, i: usize) -> *mut NetmapRing {
    // SAFETY: the caller guarantees nifp is a valid netmap_if; the header is read
    // with unaligned-tolerant volatile loads.
    unsafe {
        let tx = read_if_u32(nifp, offset_of!(NetmapIf, ni_tx_rings)) as usize;
        let host_tx = read_if_u32(nifp, offset_of!(NetmapIf, ni_host_tx_rings)) as usize;
        txring(nifp, i + tx + host_tx)
    }
}

/// Reads a `u32` field of a `netmap_if` by byte offset.
///
/// # Safety
/// `nifp` must point to a readable `netmap_if`; `off` must be a `u32` field offset.
pub unsafe fn read_if_u32(nifp: *const NetmapIf, off: usize) -> u32 {
    // SAFETY: the caller guarantees the field is inside the object.
    unsafe { ptr::read_volatile(nifp.cast::<u8>().add(off).cast::<u32>()) }
}

/// Writes a `u32` field of a `netmap_if` by byte offset.
///
/// # Safety
/// As for [`read_if_u32`], and the memory must be writable.
pub unsafe fn write_if_u32(nifp: *mut NetmapIf, off: usize, v: u32) {
    // SAFETY: the caller guarantees the field is inside the object.
    unsafe { ptr::write_volatile(nifp.cast::<u8>().add(off).cast::<u32>(), v) }
}

/// `NETMAP_BUF(ring, idx)`: `ring + buf_ofs + idx * nr_buf_size`.
pub fn netmap_buf(ring: *mut NetmapRing, buf_ofs: i64, buf_size: u32, idx: u32) -> *mut u8 {
    ring.cast::<u8>().wrapping_offset(buf_ofs as isize).wrapping_add(idx as usize * buf_size as usize)
}

/// `NETMAP_BUF_IDX(ring, p)`: the inverse of [`netmap_buf`].
pub fn netmap_buf_idx(ring: *mut NetmapRing, buf_ofs: i64, buf_size: u32, p: *const u8) -> u32 {
    let base = ring.cast::<u8>().wrapping_offset(buf_ofs as isize) as usize;
    ((p as usize).wrapping_sub(base) / buf_size as usize) as u32
}

/// A checked view of one `netmap_ring`: the header fields it reads once (geometry)
/// are cached, the ones the other side changes are accessed on every call.
#[derive(Clone, Copy, Debug)]
pub struct RingPtr {
    ring: *mut NetmapRing,
    num_slots: u32,
    buf_size: u32,
    buf_ofs: i64,
    offset_mask: u64,
}

/// The panic of a slot index past the ring (a bug of the caller), out of line.
#[cold]
#[inline(never)]
fn slot_out_of_range(i: u32, num_slots: u32) -> ! {
    panic!("slot {i} out of a {num_slots}-slot ring")
}

impl RingPtr {
    /// Builds a view of the ring at `ring`, checking that the ring header and its slot
    /// array lie inside `region`.
    ///
    /// # Safety
    /// `region` must describe live, writable memory for as long as the view (and any
    /// copy of it) is used.
    pub unsafe fn new(region: &PortRegion, ring: *mut NetmapRing) -> Result<RingPtr, LayoutError> {
        let start = region.base as usize;
        let end = start + region.len;
        let r = ring as usize;
        if r < start || r.saturating_add(size_of::<NetmapRing>()) > end {
            return Err(LayoutError(format!(
                "ring at offset {:#x} lies outside the {}-byte region",
                r - start,
                region.len
            )));
        }
        // SAFETY: the header lies inside the region (checked above).
        let (num_slots, buf_size, buf_ofs, offset_mask) = unsafe {
            let b = ring.cast::<u8>();
            (
                ptr::read_volatile(b.add(offset_of!(NetmapRing, num_slots)).cast::<u32>()),
                ptr::read_volatile(b.add(offset_of!(NetmapRing, nr_buf_size)).cast::<u32>()),
                ptr::read_volatile(b.add(offset_of!(NetmapRing, buf_ofs)).cast::<i64>()),
                ptr::read_volatile(b.add(offset_of!(NetmapRing, offset_mask)).cast::<u64>()),
            )
        };
        let slots_end = r + size_of::<NetmapRing>() + num_slots as usize * size_of::<NetmapSlot>();
        if num_slots < 2 || slots_end > end {
            return Err(LayoutError(format!("ring with {num_slots} slots does not fit in the region")));
        }
        if buf_size == 0 {
            return Err(LayoutError("ring reports a buffer size of 0".into()));
        }
        Ok(RingPtr { ring, num_slots, buf_size, buf_ofs, offset_mask })
    }

    /// The raw ring pointer.
    pub fn as_ptr(&self) -> *mut NetmapRing {
        self.ring
    }

    /// `num_slots`.
    #[inline]
    pub fn num_slots(&self) -> u32 {
        self.num_slots
    }

    /// `nr_buf_size`.
    #[inline]
    pub fn buf_size(&self) -> u32 {
        self.buf_size
    }

    /// `buf_ofs`.
    pub fn buf_ofs(&self) -> i64 {
        self.buf_ofs
    }

    /// `offset_mask`.
    #[inline]
    pub fn offset_mask(&self) -> u64 {
        self.offset_mask
    }

    /// Address of buffer 0 (`NETMAP_BUF(ring, 0)`), shared by every ring of one allocator.
    pub fn buf_base(&self) -> *mut u8 {
        netmap_buf(self.ring, self.buf_ofs, self.buf_size, 0)
    }

    /// `NETMAP_BUF(ring, idx)`.
    #[inline]
    pub fn buf(&self, idx: u32) -> *mut u8 {
        netmap_buf(self.ring, self.buf_ofs, self.buf_size, idx)
    }

    #[inline]
    fn field_u32(&self, off: usize) -> *mut u32 {
        // SAFETY: `off` is a field offset inside the header, which lies in the region
        // (checked in `new`).
        unsafe { self.ring.cast::<u8>().add(off).cast() }
    }

    /// `head`.
    #[inline]
    pub fn head(&self) -> u32 {
        // SAFETY: field inside the checked header.
        unsafe { ptr::read_volatile(self.field_u32(offset_of!(NetmapRing, head))) }
    }

    /// `cur`.
    #[inline]
    pub fn cur(&self) -> u32 {
        // SAFETY: field inside the checked header.
        unsafe { ptr::read_volatile(self.field_u32(offset_of!(NetmapRing, cur))) }
    }

    /// `tail`.
    #[inline]
    pub fn tail(&self) -> u32 {
        // SAFETY: field inside the checked header.
        unsafe { ptr::read_volatile(self.field_u32(offset_of!(NetmapRing, tail))) }
    }

    /// Sets `head` and `cur` together (application side).
    #[inline]
    pub fn set_head_cur(&self, v: u32) {
        // SAFETY: fields inside the checked header.
        unsafe {
            ptr::write_volatile(self.field_u32(offset_of!(NetmapRing, head)), v);
            ptr::write_volatile(self.field_u32(offset_of!(NetmapRing, cur)), v);
        }
    }

    /// Sets `tail` (kernel side only: the emulated kernel).
    #[inline]
    pub fn set_tail(&self, v: u32) {
        // SAFETY: field inside the checked header.
        unsafe { ptr::write_volatile(self.field_u32(offset_of!(NetmapRing, tail)), v) }
    }

    #[inline(always)]
    fn slot_ptr(&self, i: u32) -> *mut NetmapSlot {
        if i >= self.num_slots {
            slot_out_of_range(i, self.num_slots);
        }
        // SAFETY: i < num_slots and the slot array lies in the region (checked in `new`).
        unsafe { self.ring.cast::<u8>().add(size_of::<NetmapRing>() + i as usize * size_of::<NetmapSlot>()).cast() }
    }

    /// Reads slot `i` (`i < num_slots`; callers reduce indices modulo `num_slots`).
    #[inline(always)]
    pub fn slot(&self, i: u32) -> NetmapSlot {
        // SAFETY: slot_ptr checks the index; the slot is plain old data, and the caller
        // owns it (head/tail), so the other side does not write it meanwhile.
        unsafe { ptr::read(self.slot_ptr(i)) }
    }

    /// Writes slot `i`.
    #[inline(always)]
    pub fn set_slot(&self, i: u32, s: NetmapSlot) {
        // SAFETY: slot_ptr checks the index; the region is writable (`new`'s contract)
        // and the caller owns the slot (head/tail), so the other side does not touch it
        // until it is handed over.
        unsafe { ptr::write(self.slot_ptr(i), s) }
    }

    /// Puts buffer `idx` into slot `i` and sets its `NS_BUF_CHANGED` flag, leaving
    /// the slot's length, other flags and `ptr` alone (the swap of an RX walk: two
    /// fields written instead of the whole slot).
    #[inline(always)]
    pub fn set_buf_changed(&self, i: u32, idx: u32) {
        let p = self.slot_ptr(i);
        // SAFETY: slot_ptr checks the index; `buf_idx` and `flags` are fields of the
        // slot, which lies in the writable region (`new`'s contract), and the caller
        // owns the slot (head/tail).
        unsafe {
            ptr::addr_of_mut!((*p).buf_idx).write(idx);
            let f = ptr::addr_of_mut!((*p).flags);
            f.write(f.read() | slotflags::BUF_CHANGED);
        }
    }

    /// Clears the `mask` bits of slot `i`'s flags, leaving the rest of the slot alone.
    #[inline]
    pub fn clear_flags(&self, i: u32, mask: u16) {
        // SAFETY: slot_ptr checks the index; `flags` is a field of the slot, which lies
        // in the writable region (`new`'s contract).
        unsafe {
            let f = ptr::addr_of_mut!((*self.slot_ptr(i)).flags);
            let v = ptr::read_volatile(f);
            if v & mask != 0 {
                ptr::write_volatile(f, v & !mask);
            }
        }
    }
}
