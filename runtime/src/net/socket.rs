//! Creating sockets: the control-path system calls the runtime makes itself before
//! handing an fd to its backend. Nothing here touches the data path.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, IntoRawFd, RawFd};
use std::path::Path;

use paste_rt_core::Capabilities;
use socket2::{Domain, SockAddr, SockRef, Socket, Type};

use crate::runtime::Inner;

/// A bound, listening, nonblocking socket; returns its fd and actual address.
pub(crate) fn listen(addr: SocketAddr, reuse_port: bool, backlog: i32) -> io::Result<(RawFd, SocketAddr)> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking().cloexec(), None)?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    let local = socket.local_addr()?.as_socket().ok_or_else(|| io::Error::other("listener has no IP address"))?;
    Ok((socket.into_raw_fd(), local))
}

/// A fresh nonblocking socket to connect to `addr`.
pub(crate) fn for_connect(addr: SocketAddr) -> io::Result<RawFd> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking().cloexec(), None)?;
    Ok(socket.into_raw_fd())
}

/// Runs `f` on a borrowed view of an fd the backend owns (a setsockopt or
/// getsockname on the control path).
pub(crate) fn with_sock<R>(fd: RawFd, f: impl FnOnce(SockRef<'_>) -> R) -> R {
    // SAFETY: the fd stays open while the connection's record is open (the backend
    // closes it only after the handle is dropped), and the handle calling this is
    // alive for the duration of `f`.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    debug_assert!(fd.as_raw_fd() >= 0);
    f(SockRef::from(&fd))
}

/// Resolves the first address of `addr`.
pub(crate) fn resolve(addr: impl std::net::ToSocketAddrs) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "address resolved to nothing"))
}

/// A bound, nonblocking UDP socket; returns its fd and actual address.
pub(crate) fn udp_bind(addr: SocketAddr) -> io::Result<(RawFd, SocketAddr)> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM.nonblocking().cloexec(), None)?;
    socket.bind(&addr.into())?;
    let local = socket.local_addr()?.as_socket().ok_or_else(|| io::Error::other("UDP socket has no IP address"))?;
    Ok((socket.into_raw_fd(), local))
}

/// A bound, listening, nonblocking Unix stream socket at `path`.
pub(crate) fn unix_listen(path: &Path, backlog: i32) -> io::Result<RawFd> {
    let socket = Socket::new(Domain::UNIX, Type::STREAM.nonblocking().cloexec(), None)?;
    socket.bind(&SockAddr::unix(path)?)?;
    socket.listen(backlog)?;
    Ok(socket.into_raw_fd())
}

/// What a nonblocking Unix-socket connect did.
pub(crate) enum UnixConnect {
    /// Connected: the fd, ready to register.
    Done(RawFd),
    /// The listener's accept queue is full (`EAGAIN`): try again later.
    Full,
}

/// Connects a fresh nonblocking Unix stream socket to `path`. A Unix-socket connect
/// never waits for a handshake: it completes at once, or fails with `EAGAIN` when the
/// listener's accept queue is full (never `EINPROGRESS`).
pub(crate) fn unix_connect(path: &Path) -> io::Result<UnixConnect> {
    let socket = Socket::new(Domain::UNIX, Type::STREAM.nonblocking().cloexec(), None)?;
    match socket.connect(&SockAddr::unix(path)?) {
        Ok(()) => Ok(UnixConnect::Done(socket.into_raw_fd())),
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(UnixConnect::Full),
        Err(e) => Err(io::Error::new(e.kind(), format!("connect to Unix socket {}: {e}", path.display()))),
    }
}

/// Refuses `what` when the runtime's backend cannot carry it (it says so through its
/// capabilities: PASTE registers TCP sockets only). `why` completes "… is not
/// supported by the … backend (…)".
pub(crate) fn require(rt: &Inner, what: &str, has: impl FnOnce(Capabilities) -> bool, why: &str) -> io::Result<()> {
    if has(rt.driver.borrow().capabilities()) {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!("{what} is not supported by the {} backend ({why})", rt.selection.kind),
    ))
}
