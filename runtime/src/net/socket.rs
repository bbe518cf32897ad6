//! Creating sockets: the control-path system calls the runtime makes itself before
//! handing an fd to its backend. Nothing here touches the data path.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, IntoRawFd, RawFd};

use socket2::{Domain, SockRef, Socket, Type};

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
    // SAFETY: the fd stays open while the connection's slot lives (the backend
    // closes it only after the handle submitted Close), and the handle calling this
    // is alive for the duration of `f`.
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
