//! The multishot receive SQE, in one place: plain or bundle, with or without a byte
//! limit per arming.
//!
//! Owns [`multishot_recv`], which builds the `IORING_OP_RECV` with
//! `IORING_RECV_MULTISHOT` (and `IORING_RECVSEND_BUNDLE`) that every connection is
//! armed with, and [`set_total_limit`], which writes the per-arming byte limit
//! (`mshot_total_len`, Linux 6.16) that the `io-uring` crate does not expose. With a
//! limit, the kernel ends the multishot without `IORING_CQE_F_MORE` once that many
//! bytes arrived (a bundle never goes past it; a plain recv may overshoot by the rest
//! of its one buffer), and the owner re-arms when it wants more.
//!
//! It must never be used to send a non-zero limit to a kernel that did not pass the
//! probe ([`UringProbe::recv_limit`](crate::UringProbe::recv_limit)): older kernels
//! reject the SQE with `EINVAL`.

use io_uring::opcode;
use io_uring::squeue::Entry;
use io_uring::types::Fd;

/// Byte offset of the `optlen` field in `struct io_uring_sqe` (uapi
/// `linux/io_uring.h`): the `u32` union of `splice_fd_in`, `file_index`, `optlen`
/// and `addr_len`/`__pad3`, after `personality` (u16 at 42).
const SQE_OPTLEN_OFFSET: usize = 44;
/// `struct io_uring_sqe` is 64 bytes (the 128-byte variant is a separate type).
const SQE_SIZE: usize = 64;
const _: () = assert!(std::mem::size_of::<Entry>() == SQE_SIZE);
const _: () = assert!(std::mem::align_of::<Entry>() >= 4);
const _: () = assert!(SQE_OPTLEN_OFFSET + 4 <= SQE_SIZE);

/// A multishot receive on `fd` into buffer group `bgid`: a bundle receive when
/// `bundle` (6.10+), and ending after `total_limit` bytes when non-zero (6.16+;
/// 0 = no limit, the multishot runs until cancelled, EOF, an error or `ENOBUFS`).
pub fn multishot_recv(fd: i32, bgid: u16, bundle: bool, total_limit: u32) -> Entry {
    let mut entry = if bundle {
        opcode::RecvMultiBundle::new(Fd(fd), bgid).build()
    } else {
        opcode::RecvMulti::new(Fd(fd), bgid).build()
    };
    if total_limit > 0 {
        set_total_limit(&mut entry, total_limit);
    }
    entry
}

/// Writes the overall byte limit of a multishot `IORING_OP_RECV` (`sqe->optlen`,
/// read by the kernel as `mshot_total_len`).
pub fn set_total_limit(entry: &mut Entry, bytes: u32) {
    // SAFETY: `squeue::Entry` is `#[repr(C)] struct Entry(io_uring_sqe)`, 64 bytes and
    // at least 4-aligned (asserted above), so bytes 44..48 lie inside it and are
    // 4-aligned. In the kernel ABI (include/uapi/linux/io_uring.h) those bytes are
    // the u32 union {splice_fd_in, file_index, optlen, addr_len}, which the recv
    // builders leave at zero and which IORING_OP_RECV reads as `optlen`. Writing a
    // plain u32 there cannot make the Rust value invalid (the SQE is plain data).
    unsafe {
        (entry as *mut Entry).cast::<u8>().add(SQE_OPTLEN_OFFSET).cast::<u32>().write(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(entry: &Entry) -> [u8; SQE_SIZE] {
        // SAFETY: Entry is 64 bytes of plain data (asserted above).
        unsafe { std::mem::transmute_copy(entry) }
    }

    #[test]
    fn limit_lands_in_optlen_and_nowhere_else() {
        let plain = bytes(&multishot_recv(7, 3, true, 0));
        let limited = bytes(&multishot_recv(7, 3, true, 0x0102_0304));
        assert_eq!(&limited[SQE_OPTLEN_OFFSET..SQE_OPTLEN_OFFSET + 4], &0x0102_0304u32.to_ne_bytes());
        assert_eq!(&plain[SQE_OPTLEN_OFFSET..SQE_OPTLEN_OFFSET + 4], &[0; 4]);
        for (i, (a, b)) in plain.iter().zip(limited.iter()).enumerate() {
            if !(SQE_OPTLEN_OFFSET..SQE_OPTLEN_OFFSET + 4).contains(&i) {
                assert_eq!(a, b, "byte {i} changed");
            }
        }
        // Cross-check the layout against fields the crate does set: opcode at 0
        // (IORING_OP_RECV = 27), fd at 4, buf_group (u16) at 40.
        assert_eq!(limited[0], 27);
        assert_eq!(i32::from_ne_bytes(limited[4..8].try_into().unwrap()), 7);
        assert_eq!(u16::from_ne_bytes(limited[40..42].try_into().unwrap()), 3);
    }
}
