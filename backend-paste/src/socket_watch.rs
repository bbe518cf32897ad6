//! [`SocketWatch`]: the epoll set through which the kernel provider learns of its
//! registered sockets' rare events — the peer's FIN, a reset, a hang-up — without
//! listing every socket in each sync's `poll()`.
//!
//! Kernel PASTE moves a socket's data through the port's rings, but a reset produces
//! no slot and a FIN riding on the last data segment produces none either, so each
//! registered socket must still be watched. Listing them all in every sync's poll set
//! costs the application O(connections) per sync and the kernel the same again; this
//! set costs one entry in the poll set (its epoll fd, readable when some socket has
//! news) and one `epoll_wait` on the syncs that have news, which come per connection
//! (its end), never per request.
//!
//! Each socket is added once, edge-triggered, for `EPOLLRDHUP` (`EPOLLERR` and
//! `EPOLLHUP` are always reported). Once its FIN was seen the caller narrows it to
//! errors and hang-ups ([`SocketWatch::peer_fin_seen`]), so that the socket's later
//! wake-ups (ACKs of our own sends) do not report the same FIN again; a socket that
//! failed or hung up is removed. A socket leaves the set before its fd is closed or
//! replaced, so a later socket on the same number starts clean.
//!
//! Owns the epoll fd and a reusable event buffer; never reads, writes or closes a
//! watched socket.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Events taken per `epoll_wait` (more are taken by calling again).
const EVENTS_PER_WAIT: usize = 64;

/// The epoll set of watched sockets (see the module docs).
#[derive(Debug)]
pub struct SocketWatch {
    epoll: OwnedFd,
    events: Vec<libc::epoll_event>,
}

impl SocketWatch {
    /// A new, empty set.
    pub fn new() -> io::Result<SocketWatch> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh epoll fd nobody else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(SocketWatch { epoll, events: Vec::with_capacity(EVENTS_PER_WAIT) })
    }

    /// The fd to put in a poll set (`POLLIN`: some watched socket has news).
    pub fn fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: fd as u64 };
        // SAFETY: `ev` is a valid epoll_event for the call (ignored by DEL); `fd` is
        // the caller's socket, which the call does not take over.
        if unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Starts watching `fd` for the peer's FIN, errors and hang-ups. A FIN or an
    /// error already there is reported at the next [`drain`](Self::drain).
    pub fn add(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, (libc::EPOLLRDHUP | libc::EPOLLET) as u32)
    }

    /// `fd`'s FIN was seen: from now on only errors and hang-ups are reported.
    pub fn peer_fin_seen(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, libc::EPOLLET as u32)
    }

    /// Stops watching `fd` (before it is closed or replaced).
    pub fn remove(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0)
    }

    /// Takes every pending event without waiting and hands each to `on_event` as
    /// `(fd, revents)`, the revents in `poll`'s bits (`POLLRDHUP`, `POLLERR`,
    /// `POLLHUP`: epoll's have the same values). Returns the system calls made.
    pub fn drain(&mut self, mut on_event: impl FnMut(RawFd, i16)) -> io::Result<u64> {
        let mut calls = 0;
        loop {
            self.events.clear();
            calls += 1;
            // SAFETY: the buffer has room for EVENTS_PER_WAIT events; the kernel
            // writes at most that many and returns how many.
            let n = unsafe {
                libc::epoll_wait(self.epoll.as_raw_fd(), self.events.as_mut_ptr(), EVENTS_PER_WAIT as libc::c_int, 0)
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            // SAFETY: the kernel initialized the first n (<= capacity) events.
            unsafe { self.events.set_len(n as usize) };
            for ev in &self.events {
                // The bits asked for and reported all lie in the low 16 (POLLRDHUP is
                // 0x2000), where poll's and epoll's values agree.
                let (fd, bits) = (ev.u64 as RawFd, ev.events);
                on_event(fd, (bits & 0x7fff) as i16);
            }
            if (n as usize) < EVENTS_PER_WAIT {
                return Ok(calls);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_sockets::tcp_pair;
    use std::io::Write;
    use std::net::{Shutdown, TcpStream};
    use std::time::Duration;

    /// Waits (2 s at most) until the set has news, then drains it.
    fn news(w: &mut SocketWatch) -> Vec<(RawFd, i16)> {
        let mut p = libc::pollfd { fd: w.fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd for the call; bounded wait.
        unsafe { libc::poll(&mut p, 1, 2000) };
        let mut got = vec![];
        w.drain(|fd, rev| got.push((fd, rev))).unwrap();
        got
    }

    #[test]
    fn a_fin_is_reported_once_and_not_again_after_it_was_seen() {
        let mut w = SocketWatch::new().unwrap();
        let (c, s) = tcp_pair();
        let fd = s.as_raw_fd();
        w.add(fd).unwrap();
        let mut none = vec![];
        w.drain(|fd, rev| none.push((fd, rev))).unwrap();
        assert!(none.is_empty(), "nothing happened yet: {none:?}");
        c.shutdown(Shutdown::Write).unwrap();
        let got = news(&mut w);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, fd);
        assert!(got[0].1 & libc::POLLRDHUP != 0 && got[0].1 & (libc::POLLERR | libc::POLLHUP) == 0, "{got:?}");
        w.peer_fin_seen(fd).unwrap();
        // Our own traffic wakes the socket up again: the FIN is not reported twice.
        (&s).write_all(b"answer").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let mut again = vec![];
        w.drain(|fd, rev| again.push((fd, rev))).unwrap();
        assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn a_reset_reports_an_error_even_after_the_fin_was_seen() {
        let mut w = SocketWatch::new().unwrap();
        let (c, s) = tcp_pair();
        w.add(s.as_raw_fd()).unwrap();
        w.peer_fin_seen(s.as_raw_fd()).unwrap();
        socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO)).unwrap();
        drop(c);
        let got = news(&mut w);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].1 & libc::POLLERR != 0 && got[0].1 & libc::POLLHUP != 0, "{got:?}");
    }

    #[test]
    fn a_fin_before_the_socket_was_added_is_reported() {
        let mut w = SocketWatch::new().unwrap();
        let (c, s) = tcp_pair();
        c.shutdown(Shutdown::Write).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        w.add(s.as_raw_fd()).unwrap();
        let got = news(&mut w);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].1 & libc::POLLRDHUP != 0, "{got:?}");
    }

    #[test]
    fn a_removed_socket_reports_nothing_and_many_events_are_all_taken() {
        let mut w = SocketWatch::new().unwrap();
        let (c, s) = tcp_pair();
        w.add(s.as_raw_fd()).unwrap();
        w.remove(s.as_raw_fd()).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let mut got = vec![];
        assert_eq!(w.drain(|fd, rev| got.push((fd, rev))).unwrap(), 1, "one call when there is nothing");
        assert!(got.is_empty(), "{got:?}");
        assert!(w.remove(s.as_raw_fd()).is_err(), "not watched any more");

        // More sockets with news than one epoll_wait takes: every one is reported.
        let pairs: Vec<(TcpStream, TcpStream)> = (0..EVENTS_PER_WAIT + 6).map(|_| tcp_pair()).collect();
        for (_, s) in &pairs {
            w.add(s.as_raw_fd()).unwrap();
        }
        for (c, _) in &pairs {
            c.shutdown(Shutdown::Write).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
        let mut seen = vec![];
        let calls = w.drain(|fd, _| seen.push(fd)).unwrap();
        seen.sort_unstable();
        let mut want: Vec<RawFd> = pairs.iter().map(|(_, s)| s.as_raw_fd()).collect();
        want.sort_unstable();
        assert_eq!(seen, want);
        assert_eq!(calls, 2);
    }
}
