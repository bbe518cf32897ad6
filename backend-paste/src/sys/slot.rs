//! PASTE's `slot.ptr` bit-fields and the ring index arithmetic (docs/paste-abi.md §1.5, §3).
//!
//! Owns the pure functions that read or replace one field of `ptr` (generic offset,
//! fd, data offset) and the head/tail modular arithmetic. Every setter preserves the
//! bits it does not own; nothing here touches memory.

/// Bits 8–39 of `ptr`: the socket fd (int32).
pub const FD_MASK: u64 = 0x0000_00FF_FFFF_FF00;
/// Shift of the fd field.
pub const FD_SHIFT: u32 = 8;
/// Bits 40–49 of `ptr`: the data offset (10 bits).
pub const DOFF_MASK: u64 = 0x0003_FF00_0000_0000;
/// Shift of the data-offset field.
pub const DOFF_SHIFT: u32 = 40;
/// Largest data offset the 10-bit field holds.
pub const DOFF_MAX: u16 = 1023;

/// `nm_pst_getfd`: the fd in bits 8–39.
#[inline]
pub fn get_fd(ptr: u64) -> i32 {
    ((ptr & FD_MASK) >> FD_SHIFT) as u32 as i32
}

/// `nm_pst_setfd`: replaces bits 8–39 with `fd`, keeping every other bit.
#[inline]
pub fn set_fd(ptr: u64, fd: i32) -> u64 {
    (ptr & !FD_MASK) | (((fd as u32) as u64) << FD_SHIFT)
}

/// `nm_pst_getdoff`: the data offset in bits 40–49.
#[inline]
pub fn get_doff(ptr: u64) -> u16 {
    ((ptr & DOFF_MASK) >> DOFF_SHIFT) as u16
}

/// `nm_pst_setdoff`: replaces bits 40–49 with `doff` (only its low 10 bits fit; callers
/// keep `doff <= DOFF_MAX`), keeping every other bit.
#[inline]
pub fn set_doff(ptr: u64, doff: u16) -> u64 {
    (ptr & !DOFF_MASK) | (((doff as u64) << DOFF_SHIFT) & DOFF_MASK)
}

/// `nm_pst_reset_fddoff`: clears fd and data offset, keeping the generic offset.
#[inline]
pub fn reset_fd_doff(ptr: u64) -> u64 {
    ptr & !(FD_MASK | DOFF_MASK)
}

/// `NETMAP_ROFFSET`: the generic offset, `ptr & offset_mask`.
#[inline]
pub fn generic_offset(ptr: u64, offset_mask: u64) -> u64 {
    ptr & offset_mask
}

/// `NETMAP_WOFFSET`: replaces the generic-offset bits, keeping the others.
#[inline]
pub fn set_generic_offset(ptr: u64, offset_mask: u64, off: u64) -> u64 {
    (ptr & !offset_mask) | (off & offset_mask)
}

/// `nm_ring_next`: the slot after `i`, wrapping at `num_slots`.
#[inline]
pub fn ring_next(i: u32, num_slots: u32) -> u32 {
    if i + 1 >= num_slots {
        0
    } else {
        i + 1
    }
}

/// `i + n` modulo `num_slots`.
#[inline]
pub fn ring_add(i: u32, n: u32, num_slots: u32) -> u32 {
    ((i as u64 + n as u64) % num_slots as u64) as u32
}

/// Slots from `from` up to (not including) `to`, modulo `num_slots`.
#[inline]
pub fn ring_distance(from: u32, to: u32, num_slots: u32) -> u32 {
    if to >= from {
        to - from
    } else {
        to + num_slots - from
    }
}

/// `nm_ring_space`: slots the application owns, `(tail - head) mod num_slots`.
#[inline]
pub fn ring_space(head: u32, tail: u32, num_slots: u32) -> u32 {
    ring_distance(head, tail, num_slots)
}

/// `nm_ring_empty`: the application owns no slot.
#[inline]
pub fn ring_empty(head: u32, tail: u32) -> bool {
    head == tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encodes_the_documented_example() {
        let ptr = set_doff(set_fd(64, 1234), 66);
        assert_eq!(ptr, 0x0000_4200_0004_D240);
        assert_eq!(get_fd(ptr), 1234);
        assert_eq!(get_doff(ptr), 66);
        assert_eq!(generic_offset(ptr, 0xff), 64);
    }

    #[test]
    fn decodes_the_live_kernel_slot() {
        let ptr = 0x0000_4200_0000_0540;
        assert_eq!(get_doff(ptr), 66);
        assert_eq!(get_fd(ptr), 5);
        assert_eq!(generic_offset(ptr, 0xff), 64);
        assert_eq!(reset_fd_doff(ptr), 0x40);
    }

    #[test]
    fn ring_arithmetic_wraps() {
        assert_eq!(ring_next(7, 8), 0);
        assert_eq!(ring_next(3, 8), 4);
        assert_eq!(ring_space(6, 2, 8), 4);
        assert_eq!(ring_space(2, 6, 8), 4);
        assert!(ring_empty(5, 5));
        assert_eq!(ring_add(6, 5, 8), 3);
    }

    proptest! {
        #[test]
        fn setters_preserve_other_bits(ptr: u64, fd in 0i32..=65534, doff in 0u16..=DOFF_MAX, g in 0u64..256) {
            let p = set_fd(ptr, fd);
            prop_assert_eq!(get_fd(p), fd);
            prop_assert_eq!(p & !FD_MASK, ptr & !FD_MASK);
            let q = set_doff(p, doff);
            prop_assert_eq!(get_doff(q), doff);
            prop_assert_eq!(q & !DOFF_MASK, p & !DOFF_MASK);
            let r = set_generic_offset(q, 0xff, g);
            prop_assert_eq!(generic_offset(r, 0xff), g);
            prop_assert_eq!(get_fd(r), fd);
            prop_assert_eq!(get_doff(r), doff);
        }
    }
}
