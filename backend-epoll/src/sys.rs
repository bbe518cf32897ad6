//! Every system call the epoll backend makes, wrapped once and counted.
//!
//! Each wrapper bumps `Stats::syscalls`, so the stats counters are the complete
//! list of what the backend asked of the kernel. Nothing here keeps state.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use paste_rt_core::Stats;
pub use rustix::io::Errno;

/// Turns a `-1` return into the thread's errno.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn check_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// `epoll_create1(EPOLL_CLOEXEC)`.
pub fn epoll_create(stats: &Stats) -> io::Result<OwnedFd> {
    stats.syscall();
    // SAFETY: plain syscall without pointers.
    let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    // SAFETY: the kernel just returned this fd; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `epoll_ctl(ADD)` with the given interest and user data.
pub fn epoll_add(stats: &Stats, epfd: &OwnedFd, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
    stats.syscall();
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: `ev` is a valid epoll_event for the duration of the call.
    check(unsafe { libc::epoll_ctl(epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })?;
    Ok(())
}

/// `epoll_wait`; returns how many entries of `events` were filled.
pub fn epoll_wait(
    stats: &Stats,
    epfd: &OwnedFd,
    events: &mut [libc::epoll_event],
    timeout_ms: i32,
) -> io::Result<usize> {
    stats.syscall();
    Stats::add(&stats.waits, 1);
    // SAFETY: `events` is valid writable memory for `events.len()` entries.
    let n = unsafe { libc::epoll_wait(epfd.as_raw_fd(), events.as_mut_ptr(), events.len() as i32, timeout_ms) };
    match check(n) {
        Ok(n) => Ok(n as usize),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(e) => Err(e),
    }
}

/// `eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)`.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall without pointers.
    let fd = check(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
    // SAFETY: the kernel just returned this fd; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)`: the clock of
/// `std::time::Instant`.
pub fn timerfd(stats: &Stats) -> io::Result<OwnedFd> {
    use rustix::time::{timerfd_create, TimerfdClockId, TimerfdFlags};
    stats.syscall();
    Ok(timerfd_create(TimerfdClockId::Monotonic, TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC)?)
}

/// `timerfd_settime`: one expiry `after` from now (at least a nanosecond: a zero
/// would disarm the timer), no interval. Replaces whatever the timer was set to.
pub fn timerfd_arm(stats: &Stats, fd: &OwnedFd, after: Duration) -> io::Result<()> {
    use rustix::time::{timerfd_settime, Itimerspec, TimerfdTimerFlags, Timespec};
    stats.syscall();
    let after = after.max(Duration::from_nanos(1));
    let value = Timespec {
        tv_sec: i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(after.subsec_nanos()),
    };
    let spec = Itimerspec { it_interval: Timespec { tv_sec: 0, tv_nsec: 0 }, it_value: value };
    timerfd_settime(fd, TimerfdTimerFlags::empty(), &spec)?;
    Ok(())
}

/// Adds one to an eventfd counter (called from other threads; not counted in the
/// runtime thread's stats).
pub fn eventfd_signal(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a valid u64. EAGAIN (counter saturated) still
    // leaves the fd readable, which is all a wake needs, so the result is ignored.
    let _ = unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

/// `read(2)` into raw memory. The error is rustix's `Errno` (a plain number: nothing
/// to build or drop on the per-request path). Not counted here: the caller's walk
/// counts its reads together (`Stats::syscalls`).
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes.
#[inline]
pub unsafe fn read(fd: RawFd, ptr: *mut u8, len: usize) -> Result<usize, Errno> {
    // SAFETY: the caller guarantees `ptr..ptr+len` is writable (and not read or
    // written by anyone else during the call); `fd` is open for the call.
    let (fd, buf) =
        unsafe { (BorrowedFd::borrow_raw(fd), std::slice::from_raw_parts_mut(ptr.cast::<MaybeUninit<u8>>(), len)) };
    // rustix makes the system call directly: no libc cancellation-point wrapper on
    // the per-request path.
    rustix::io::read(fd, buf).map(|(filled, _)| filled.len())
}

/// `sendmsg(2)` of gathered buffers with `MSG_NOSIGNAL` (a write to a reset
/// connection returns `EPIPE`; the process's SIGPIPE disposition is left alone).
/// Not counted here: the caller's walk counts its writes together.
pub fn sendv(fd: RawFd, iov: &[libc::iovec]) -> Result<usize, Errno> {
    // SAFETY: msghdr is plain data; all-zero is a valid (empty) value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = iov.len() as _;
    // SAFETY: every iovec points into memory owned by the send queue for the whole
    // call (the caller built them from live SendData); msg lives for the call.
    check_size(unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) })
        .map_err(|e| Errno::from_raw_os_error(e.raw_os_error().unwrap_or(libc::EIO)))
}

/// `send(2)` with `MSG_NOSIGNAL`, for a single buffer. Not counted here: the
/// caller's walk counts its writes together.
#[inline]
pub fn send(fd: RawFd, data: &[u8]) -> Result<usize, Errno> {
    // SAFETY: `fd` is open for the call (the caller owns it).
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    rustix::net::send(fd, data, rustix::net::SendFlags::NOSIGNAL)
}

/// `accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)`.
pub fn accept(stats: &Stats, fd: RawFd) -> io::Result<RawFd> {
    stats.syscall();
    // SAFETY: null address pointers are allowed (peer address not wanted).
    check(unsafe {
        libc::accept4(fd, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
    })
}

/// `connect(2)` on a nonblocking socket; `Ok(false)` means in progress.
pub fn connect(stats: &Stats, fd: RawFd, addr: &std::net::SocketAddr) -> io::Result<bool> {
    stats.syscall();
    let (storage, len) = paste_rt_core::sockaddr::encode(addr);
    // SAFETY: storage holds a valid sockaddr of `len` bytes.
    match check(unsafe { libc::connect(fd, (&storage as *const libc::sockaddr_storage).cast(), len) }) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `getsockopt(SO_ERROR)`: the pending error of a socket, 0 if none.
pub fn take_socket_error(stats: &Stats, fd: RawFd) -> i32 {
    stats.syscall();
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: err/len are valid out-parameters of the sizes given.
    let r = unsafe {
        libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_ERROR, (&mut err as *mut libc::c_int).cast(), &mut len)
    };
    if r < 0 {
        io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
    } else {
        err
    }
}

/// `shutdown(2)`.
pub fn shutdown(stats: &Stats, fd: RawFd, how: libc::c_int) -> io::Result<()> {
    stats.syscall();
    // SAFETY: plain syscall without pointers.
    check(unsafe { libc::shutdown(fd, how) })?;
    Ok(())
}

/// Closes an fd the backend owns, counting the syscall.
pub fn close(stats: &Stats, fd: OwnedFd) {
    stats.syscall();
    drop(fd);
}

/// `recvfrom(2)` with `MSG_TRUNC` into raw memory: returns the datagram's full
/// length (more than `len` when it was truncated) and its source address.
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes.
pub unsafe fn recvfrom(
    stats: &Stats,
    fd: RawFd,
    ptr: *mut u8,
    len: usize,
) -> io::Result<(usize, Option<std::net::SocketAddr>)> {
    stats.syscall();
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut addr_len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: the caller guarantees `ptr..ptr+len` is writable; storage/addr_len are
    // valid out-parameters of the sizes given.
    let n = check_size(unsafe {
        libc::recvfrom(
            fd,
            ptr.cast(),
            len,
            libc::MSG_TRUNC,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut addr_len,
        )
    })?;
    Ok((n, paste_rt_core::sockaddr::read(&storage, addr_len)))
}

/// `sendto(2)` of one datagram with `MSG_NOSIGNAL`.
pub fn sendto(stats: &Stats, fd: RawFd, data: &[u8], addr: &std::net::SocketAddr) -> io::Result<usize> {
    stats.syscall();
    let (storage, len) = paste_rt_core::sockaddr::encode(addr);
    // SAFETY: `data` is a valid slice and storage a valid sockaddr of `len` bytes,
    // both alive for the call.
    check_size(unsafe {
        libc::sendto(
            fd,
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_NOSIGNAL,
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        )
    })
}
