//! The sync's poll set: the fds one `poll()` of the kernel provider watches, and
//! what each of them is (see the provider's module docs). The fixed part (port,
//! wake-up, socket watch, listeners) is kept between syncs; the wanted part
//! (connecting sockets, sockets whose send space is wanted) is added per sync, so
//! the set's length follows what is asked for, never the connections held.

use std::os::fd::RawFd;
use std::time::Duration;

/// What one entry of the poll set is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollRole {
    /// The port fd: `POLLIN` runs txsync and rxsync.
    Port,
    /// The wake-up eventfd.
    Wake,
    /// The [`SocketWatch`](crate::socket_watch::SocketWatch)'s epoll fd (`POLLIN`: a registered socket's FIN, error or
    /// hang-up waits to be taken).
    Watch,
    /// A listening socket (`POLLIN`: a connection waits).
    Listener,
    /// A socket whose connect is in progress (`POLLOUT`).
    Connecting,
    /// A registered socket whose send space the ring driver waits for (`POLLOUT`).
    Space,
}

/// Builds the fixed part of the sync's poll set: port, wake-up and socket watch first
/// (so the sockets' state is read after the port's txsync and rxsync), then the
/// listeners not backing off (`POLLIN`). It changes only when a listener comes, goes,
/// backs off or comes back, so it is kept between syncs. `roles[i]` says what
/// `fds[i]` is.
pub fn build_fixed_poll_set(
    port: RawFd,
    wake: RawFd,
    watch: RawFd,
    listeners: impl IntoIterator<Item = RawFd>,
    fds: &mut Vec<libc::pollfd>,
    roles: &mut Vec<PollRole>,
) {
    fds.clear();
    roles.clear();
    let mut add = |fd: RawFd, events: i16, role: PollRole| {
        fds.push(libc::pollfd { fd, events, revents: 0 });
        roles.push(role);
    };
    add(port, libc::POLLIN, PollRole::Port);
    add(wake, libc::POLLIN, PollRole::Wake);
    add(watch, libc::POLLIN, PollRole::Watch);
    for fd in listeners {
        add(fd, libc::POLLIN, PollRole::Listener);
    }
}

/// Appends one sync's wanted part to a poll set cut back to its fixed part
/// ([`build_fixed_poll_set`]): the connecting sockets (`POLLOUT`) and the registered
/// sockets whose send space is wanted (`POLLOUT`). Its length follows what is asked
/// for, never the number of connections held.
pub fn add_wanted_to_poll_set(
    connecting: impl IntoIterator<Item = RawFd>,
    space_wanted: impl IntoIterator<Item = RawFd>,
    fds: &mut Vec<libc::pollfd>,
    roles: &mut Vec<PollRole>,
) {
    for fd in connecting {
        fds.push(libc::pollfd { fd, events: libc::POLLOUT, revents: 0 });
        roles.push(PollRole::Connecting);
    }
    for fd in space_wanted {
        fds.push(libc::pollfd { fd, events: libc::POLLOUT, revents: 0 });
        roles.push(PollRole::Space);
    }
}

/// `wait_millis` as an unsigned number, no limit (-1) being `u32::MAX`: the larger
/// the later, so limits combine with `min`.
#[inline]
pub(crate) fn poll_millis(limit: Option<Duration>) -> u32 {
    paste_rt_core::wait_millis(limit) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_poll_set_holds_what_is_asked_for_never_every_connection() {
        let (mut fds, mut roles) = (Vec::new(), Vec::new());
        build_fixed_poll_set(3, 4, 5, [10], &mut fds, &mut roles);
        let fixed = fds.len();
        add_wanted_to_poll_set([12], [18, 19], &mut fds, &mut roles);
        let got: Vec<(RawFd, i16, PollRole)> = fds.iter().zip(&roles).map(|(p, r)| (p.fd, p.events, *r)).collect();
        assert_eq!(
            got,
            vec![
                (3, libc::POLLIN, PollRole::Port),
                (4, libc::POLLIN, PollRole::Wake),
                (5, libc::POLLIN, PollRole::Watch),
                (10, libc::POLLIN, PollRole::Listener),
                (12, libc::POLLOUT, PollRole::Connecting),
                (18, libc::POLLOUT, PollRole::Space),
                (19, libc::POLLOUT, PollRole::Space),
            ]
        );
        // The next sync keeps the fixed part and asks for nothing else: a server
        // holding many idle connections polls three fds and its listener.
        fds.truncate(fixed);
        roles.truncate(fixed);
        add_wanted_to_poll_set([], [], &mut fds, &mut roles);
        assert_eq!(fds.len(), 4);
        assert_eq!(roles, [PollRole::Port, PollRole::Wake, PollRole::Watch, PollRole::Listener]);
    }
}
