//! What the kernel provider asks a socket itself, through its options: a pending
//! error (`SO_ERROR`, how a reset shows, since kernel PASTE gives a reset no slot)
//! and its send buffer (`SO_SNDBUF`, the ring driver's send budget).

use std::io;
use std::os::fd::RawFd;

use crate::kernel::with_socket;

/// What `poll` said about a watched socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketFault {
    /// Nothing wrong.
    None,
    /// Hang-up without error: both directions are done (our FIN and the peer's).
    HangUp,
    /// The socket failed (`SO_ERROR`): a reset (`ECONNRESET`), a timeout, ...
    Error(i32),
}

/// Reads `SO_ERROR` (clearing it), 0 if there is none.
pub fn take_socket_error(fd: RawFd) -> i32 {
    let errno = |e: io::Error| e.raw_os_error().unwrap_or(libc::EIO);
    match with_socket(fd, |s| s.take_error()) {
        Ok(None) => 0,
        Ok(Some(e)) | Err(e) => errno(e),
    }
}

/// Classifies a watched socket's `revents`: `POLLERR` or `POLLHUP` make it read
/// `SO_ERROR` (one system call); an error is a fault, a clean hang-up is not. A reset
/// socket shows `POLLERR|POLLHUP` and `SO_ERROR == ECONNRESET` (docs/paste-abi.md §10).
pub fn classify(fd: RawFd, revents: i16) -> SocketFault {
    if revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) == 0 {
        return SocketFault::None;
    }
    if revents & libc::POLLNVAL != 0 {
        return SocketFault::Error(libc::EBADF);
    }
    match take_socket_error(fd) {
        0 if revents & libc::POLLERR != 0 => SocketFault::Error(libc::ECONNRESET),
        0 => SocketFault::HangUp,
        e => SocketFault::Error(e),
    }
}

/// Reads `SO_SNDBUF`: the socket's send buffer as the kernel accounts it.
pub fn send_buffer_size(fd: RawFd) -> io::Result<u32> {
    with_socket(fd, |s| s.send_buffer_size()).map(|n| u32::try_from(n).unwrap_or(u32::MAX))
}

/// Asks for a send buffer of `bytes` (`SO_SNDBUF`; the kernel clamps the request to
/// `net.core.wmem_max` and doubles it) and reads back what the socket got.
pub fn raise_send_buffer(fd: RawFd, bytes: u32) -> io::Result<u32> {
    with_socket(fd, |s| s.set_send_buffer_size(bytes as usize / 2))?;
    send_buffer_size(fd)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    use super::*;
    use crate::test_sockets::tcp_pair;

    /// A send buffer to ask for (the provider asks for this much).
    const ASKED: u32 = 256 * 1024;

    fn poll_one(fd: RawFd, events: i16) -> i16 {
        let mut p = libc::pollfd { fd, events, revents: 0 };
        // SAFETY: one valid pollfd for the call; bounded wait.
        let n = unsafe { libc::poll(&mut p, 1, 2000) };
        assert!(n >= 0);
        p.revents
    }

    #[test]
    fn a_reset_shows_as_an_error_a_fin_does_not() {
        // FIN: a watched socket (no events requested) stays quiet.
        let (c, s) = tcp_pair();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut p = libc::pollfd { fd: s.as_raw_fd(), events: 0, revents: 0 };
        // SAFETY: one valid pollfd; zero timeout.
        assert_eq!(unsafe { libc::poll(&mut p, 1, 50) }, 0, "FIN alone raises nothing: {:#x}", p.revents);
        assert_eq!(classify(s.as_raw_fd(), p.revents), SocketFault::None);

        // RST: POLLERR|POLLHUP and SO_ERROR = ECONNRESET, read once.
        let (c, s) = tcp_pair();
        socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO)).unwrap();
        drop(c);
        let rev = poll_one(s.as_raw_fd(), 0);
        assert!(rev & libc::POLLERR != 0 && rev & libc::POLLHUP != 0, "revents {rev:#x}");
        assert_eq!(classify(s.as_raw_fd(), rev), SocketFault::Error(libc::ECONNRESET));
        assert_eq!(take_socket_error(s.as_raw_fd()), 0, "SO_ERROR reads once");
    }

    #[test]
    fn the_send_buffer_is_read_from_the_socket() {
        let (_c, s) = tcp_pair();
        let n = send_buffer_size(s.as_raw_fd()).unwrap();
        assert!(n >= 4096, "SO_SNDBUF {n}");
        socket2::SockRef::from(&s).set_send_buffer_size(65536).unwrap();
        assert_eq!(send_buffer_size(s.as_raw_fd()).unwrap(), 2 * 65536, "the kernel doubles what is set");
        assert!(send_buffer_size(-1).is_err());
    }

    #[test]
    fn the_send_buffer_is_raised_as_far_as_the_system_allows() {
        let (_c, s) = tcp_pair();
        let before = send_buffer_size(s.as_raw_fd()).unwrap();
        let got = raise_send_buffer(s.as_raw_fd(), ASKED).unwrap();
        let wmem_max: u32 = std::fs::read_to_string("/proc/sys/net/core/wmem_max")
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        if wmem_max >= ASKED / 2 {
            assert_eq!(got, ASKED, "asked for half: the kernel doubles it");
        } else {
            assert!(got >= before.min(2 * wmem_max), "clamped by wmem_max {wmem_max}: {got}");
        }
        assert_eq!(send_buffer_size(s.as_raw_fd()).unwrap(), got);
        assert!(raise_send_buffer(-1, ASKED).is_err());
    }

    #[test]
    fn both_sides_done_is_a_clean_hang_up() {
        let (mut c, s) = tcp_pair();
        c.write_all(b"x").unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        // SAFETY: plain shutdown of our own socket.
        unsafe { libc::shutdown(s.as_raw_fd(), libc::SHUT_WR) };
        let rev = poll_one(s.as_raw_fd(), 0);
        assert!(rev & libc::POLLHUP != 0, "revents {rev:#x}");
        assert_eq!(classify(s.as_raw_fd(), rev), SocketFault::HangUp);
    }
}
