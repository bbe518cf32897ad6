//! netmap ioctl numbers (computed from the `_IOWR`/`_IO` encoding) and the three
//! ioctl calls the PASTE backend makes, each wrapped once.
//!
//! Owns the request numbers and the raw `ioctl(2)` calls; it must never interpret a
//! request's contents (that is `request`'s job) or retry on its own.

use std::io;
use std::os::fd::RawFd;

use super::abi::NmreqHeader;

const IOC_NRBITS: u32 = 8;
const IOC_TYPEBITS: u32 = 8;
const IOC_SIZEBITS: u32 = 14;
const IOC_NRSHIFT: u32 = 0;
const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;
const IOC_NONE: u32 = 0;
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

/// Linux `_IOC(dir, type, nr, size)`.
pub const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
    (dir << IOC_DIRSHIFT) | ((size as u32) << IOC_SIZESHIFT) | ((ty as u32) << IOC_TYPESHIFT) | (nr as u32)
}

/// Linux `_IOWR(type, nr, size)`.
pub const fn iowr(ty: u8, nr: u8, size: usize) -> u32 {
    ioc(IOC_READ | IOC_WRITE, ty, nr, size)
}

/// Linux `_IO(type, nr)`.
pub const fn io(ty: u8, nr: u8) -> u32 {
    ioc(IOC_NONE, ty, nr, 0)
}

/// `NIOCCTRL = _IOWR('i', 151, struct nmreq_header)`.
pub const NIOCCTRL: u32 = iowr(b'i', 151, size_of::<NmreqHeader>());
/// `NIOCTXSYNC = _IO('i', 148)`.
pub const NIOCTXSYNC: u32 = io(b'i', 148);
/// `NIOCRXSYNC = _IO('i', 149)`.
pub const NIOCRXSYNC: u32 = io(b'i', 149);

const _: () = assert!(NIOCCTRL == 0xC058_6997);
const _: () = assert!(NIOCTXSYNC == 0x6994);
const _: () = assert!(NIOCRXSYNC == 0x6995);

/// `ioctl(fd, NIOCCTRL, hdr)`: one control request.
///
/// # Safety
/// `hdr` must point to a header whose `nr_body` and `nr_options` are valid pointers to
/// the request body and option chain (as built by `sys::request`), all writable and
/// alive for the duration of the call.
pub unsafe fn nioc_ctrl(fd: RawFd, hdr: *mut NmreqHeader) -> io::Result<()> {
    // SAFETY: the caller guarantees the request memory is valid; the kernel reads and
    // writes only inside it.
    let ret = unsafe { libc::ioctl(fd, NIOCCTRL as _, hdr) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `ioctl(fd, NIOCTXSYNC)`: hand the filled TX slots to the kernel, without blocking.
pub fn txsync(fd: RawFd) -> io::Result<()> {
    // SAFETY: the request takes no argument.
    let ret = unsafe { libc::ioctl(fd, NIOCTXSYNC as _) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `ioctl(fd, NIOCRXSYNC)`: release consumed RX slots and collect new ones, without
/// blocking.
pub fn rxsync(fd: RawFd) -> io::Result<()> {
    // SAFETY: the request takes no argument.
    let ret = unsafe { libc::ioctl(fd, NIOCRXSYNC as _) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
