//! The kernel provider (`paste`): the sync of a live PASTE port and the socket chores
//! around it.
//!
//! Owns the [`KernelPort`], a wake-up eventfd, a [`SocketWatch`], and one `KSock`
//! per fd handed over. A sync is **one `poll()`** over the port fd (`POLLIN`: txsync
//! and rxsync), the eventfd, the socket watch's epoll fd, the listening sockets,
//! connecting sockets (`POLLOUT`) and the few registered sockets whose send space the
//! ring driver waits for. Every registered socket is in the socket watch instead of
//! the poll set: a peer RST produces no slot (docs/paste-abi.md §10), so its
//! `EPOLLERR`/`EPOLLHUP` is how a reset is seen, and its `EPOLLRDHUP` how a FIN
//! without a slot is (below). So a sync's cost does not grow with the connections it
//! holds: the watch's fd is readable only when some socket has such news, and one
//! `epoll_wait` then takes it (an extra system call per connection's end, never per
//! request). A registered socket's `POLLOUT` is asked for only while the ring driver
//! wants send space for it ([`RingDriver::tx_space_waiters`]: out of send credit with
//! data queued, or holding slots the kernel did not take); the port fd comes first in
//! the set, so the socket's answer describes it after this poll's txsync, and a
//! writable one is reported to the backend, which hands it to the ring driver
//! ([`RingDriver::tx_writable`]). Each socket's send buffer (`SO_SNDBUF`) is read
//! once, at registration: the driver's send budget for it. It is raised there to at
//! least [`MIN_SEND_BUFFER`] (256 KiB, as far as `net.core.wmem_max` allows), because
//! the budget is coarse: every slot is charged a fresh skb's overhead (about 2 KiB)
//! on top of its payload, and `POLLOUT` proves only a third of the buffer free. With
//! Linux's initial 16 KiB a connection answering small requests ran out of credit
//! every two or three answers and waited a sync for `POLLOUT` each time; with 256 KiB
//! it runs about forty answers on one `POLLOUT`. (Setting `SO_SNDBUF` turns the
//! kernel's send-buffer autotuning off for the socket: bulk senders on long fat
//! links get 256 KiB, not up to `tcp_wmem`'s maximum.) So a congested
//! connection never puts a slot on the shared TX ring that its socket would refuse
//! (which would stall every other connection's slots behind it, §10.1 point 5), and
//! the data path makes no system call besides the poll.
//!
//! End of stream: kernel PASTE turns a FIN that arrives alone into a zero-payload
//! slot, but a FIN riding on the last data segment (a client that writes and shuts
//! down at once) produces no slot at all — seen on the live kernel, where such a
//! connection then sat in CLOSE_WAIT forever. So registered sockets are also watched
//! for `EPOLLRDHUP` until it is seen, and the backend reports end of stream for such a
//! socket once everything received before the FIN
//! has been walked, if no EOF slot came first. A socket
//! found reset is reported (`Event::RecvError`) and closed abortively at once, before
//! the next sync, so that its TX slots cannot stall the ring for everyone (§10.2); its
//! fd number stays taken (a `/dev/null` placeholder) until the application's `Close`.
//!
//! Other rules it keeps: `SO_LINGER {1, 0}` on listeners (accepted sockets inherit
//! it: no slow teardown racing a new registration of the same fd number, §2.3),
//! `PST_FD_REG` per accepted or connected socket and never a `read()` on one, SIGPIPE
//! ignored while the port lives (§10.1, done by [`KernelPort`]), accept with plain
//! `accept4` inside the sync, and a wait capped at [`ACK_WAIT_CAP`] while sockets are
//! registered: the kernel sends ACKs and other packets of its own only at syncs
//! (§4.2), so a long sleep would delay them. A graceful close waits until the
//! kernel has taken every TX slot, shuts the write side down, and closes abortively
//! once the peer is done (EOF slot or `POLLHUP`) or after [`CLOSE_LINGER`].
//!
//! Receiving cannot be paused per socket: kernel PASTE moves every registered
//! socket's data into the RX ring. `PauseRecv` is therefore a no-op here; the bound
//! is the pool (when it runs dry the walk stops, the ring fills, and the kernel keeps
//! the rest in its per-fd table).
//!
//! It must never `read()` a registered socket or touch ring slots (the ring driver's).
//!
//! The poll set's layout is in the `poll_set` module, and what it asks a socket
//! through its options (`SO_ERROR`, `SO_SNDBUF`) in `socket_options`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use paste_rt_core::{BackendKind, RemoteWake, Shutdown, StartError, Stats, Wait};

use crate::kernel::{set_linger_zero, KernelConfig, KernelPort};
use crate::provider_event::Event;
use crate::ring::{DriverConfig, RingDriver};
use crate::socket_watch::SocketWatch;

mod poll_set;
mod socket_options;

use poll_set::poll_millis;
pub use poll_set::{add_wanted_to_poll_set, build_fixed_poll_set, PollRole};
pub use socket_options::{classify, raise_send_buffer, send_buffer_size, take_socket_error, SocketFault};

/// Longest wait of a sync while sockets are registered (kernel ACKs ride syncs).
pub const ACK_WAIT_CAP: Duration = Duration::from_millis(1);
/// Send buffer a registered socket gets at least (`SO_SNDBUF`, as far as
/// `net.core.wmem_max` allows; see the module docs): the ring driver's send budget.
pub const MIN_SEND_BUFFER: u32 = 256 * 1024;
/// How long a closing socket waits for its peer before it is closed anyway.
pub const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// How long a listener waits after `EMFILE` and the like, unless an fd is freed.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// Most connections accepted from one listener per sync.
const ACCEPT_BUDGET: u32 = 64;

/// The state of one socket, as far as the poll set cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SockState {
    /// Listening; `starved` while backing off after `EMFILE`.
    Listener {
        /// Backing off: not polled.
        starved: bool,
    },
    /// Connect in progress.
    Connecting,
    /// Registered; `hup` once a hang-up without error was seen (out of the socket
    /// watch and not polled again, or `poll` would return at once forever); `fin`
    /// once the peer's FIN was seen (`EPOLLRDHUP`, not asked for again).
    Registered {
        /// A hang-up was seen.
        hup: bool,
        /// The peer's FIN was seen.
        fin: bool,
    },
    /// Closing, waiting for the peer.
    Closing {
        /// The write side was shut down (then the socket is watched).
        shut: bool,
    },
    /// Reset, replaced by a placeholder: nothing to watch.
    Dead,
}

#[derive(Debug)]
struct KSock {
    state: SockState,
    /// Listener: an accept error was reported and none succeeded since.
    accept_error_reported: bool,
    /// Listener: when to try again after an accept error.
    retry_at: Option<Instant>,
    /// Closing: give up waiting for the peer at this time.
    deadline: Option<Instant>,
    /// Closing: the peer's EOF slot arrived.
    peer_done: bool,
    /// Registered: the socket's send buffer, read at registration.
    send_buffer: Option<u32>,
    /// In the [`SocketWatch`] (taken out before the fd is closed or replaced).
    watched: bool,
}

impl KSock {
    fn new(state: SockState) -> KSock {
        KSock {
            state,
            accept_error_reported: false,
            retry_at: None,
            deadline: None,
            peer_done: false,
            send_buffer: None,
            watched: false,
        }
    }
}

/// The other threads' side of the wake-up eventfd.
#[derive(Debug)]
struct EventfdWake {
    fd: OwnedFd,
    pending: AtomicBool,
}

impl RemoteWake for EventfdWake {
    fn wake(&self) {
        if self.pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
}

/// The kernel provider (see the module docs).
pub(crate) struct KernelProvider {
    port: Option<KernelPort>,
    waker: Arc<EventfdWake>,
    /// `/dev/null`, dup'ed over reset sockets to keep their fd numbers taken.
    placeholder: OwnedFd,
    /// By fd.
    socks: Vec<Option<KSock>>,
    /// The registered sockets' FINs, errors and hang-ups (see the module docs).
    watch: SocketWatch,
    /// Listening fds (backing off or not).
    listeners: Vec<RawFd>,
    /// Fds whose connect is in progress.
    connecting: Vec<RawFd>,
    /// Registered fds the application closed, waiting to be shut down and closed.
    closing: Vec<RawFd>,
    /// The sync's poll set: its fixed part (`fixed_polls` entries, rebuilt when
    /// `fixed_polls_stale`), then what this sync wants.
    pollfds: Vec<libc::pollfd>,
    roles: Vec<PollRole>,
    fixed_polls: usize,
    fixed_polls_stale: bool,
    /// Some listener backs off after an accept error.
    any_starved: bool,
    fd_freed: bool,
    /// Registered fds whose peer's FIN was seen and not yet reported
    /// ([`peer_fins`](Self::peer_fins)).
    fins: Vec<RawFd>,
    /// The RX ring was full after the last sync's rxsync.
    rx_full_at_sync: bool,
    /// Scratch list of the socket watch's news of one sync (reused).
    watch_news: Vec<(RawFd, i16)>,
    /// What the ring driver did with a persistent pool's kept buffers at start.
    kept: crate::ring::KeptReport,
}

fn start_error(reason: String, errno: Option<i32>) -> StartError {
    StartError { backend: BackendKind::Paste, reason, errno }
}

fn last_errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

impl KernelProvider {
    /// Opens the port ([`KernelPort::open`]: the error names what is missing) and
    /// builds the ring driver over it.
    pub(crate) fn open(cfg: &KernelConfig) -> Result<(KernelProvider, RingDriver), StartError> {
        let port = KernelPort::open(cfg)?;
        let (driver, kept) = port.ring_driver_with_report(DriverConfig::default())?;
        // SAFETY: plain syscall; the result is checked.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            let e = io::Error::last_os_error();
            return Err(start_error(format!("eventfd for remote wake-ups: {e}"), e.raw_os_error()));
        }
        // SAFETY: a fresh eventfd nobody else owns.
        let efd = unsafe { OwnedFd::from_raw_fd(efd) };
        let null = std::fs::OpenOptions::new().read(true).open("/dev/null").map_err(|e| {
            start_error(format!("open /dev/null (placeholder for reset sockets): {e}"), e.raw_os_error())
        })?;
        let watch = SocketWatch::new().map_err(|e| {
            start_error(format!("epoll_create1 for the sockets' resets and FINs: {e}"), e.raw_os_error())
        })?;
        Ok((
            KernelProvider {
                port: Some(port),
                waker: Arc::new(EventfdWake { fd: efd, pending: AtomicBool::new(false) }),
                placeholder: null.into(),
                socks: Vec::new(),
                watch,
                listeners: Vec::new(),
                connecting: Vec::new(),
                closing: Vec::new(),
                pollfds: Vec::new(),
                roles: Vec::new(),
                fixed_polls: 0,
                fixed_polls_stale: true,
                any_starved: false,
                fd_freed: false,
                fins: Vec::new(),
                rx_full_at_sync: false,
                watch_news: Vec::new(),
                kept,
            },
            driver,
        ))
    }

    pub(crate) fn describe(&self) -> String {
        let port = self.port.as_ref().map_or_else(String::new, |p| p.describe());
        let kept = if self.kept == crate::ring::KeptReport::default() {
            String::new()
        } else {
            format!(
                "; kept buffers reclaimed: {} from the extra list, {} from ring slots",
                self.kept.from_extra_list, self.kept.from_ring_slots
            )
        };
        format!("{port}{kept}; one poll() per sync over the port, the listeners and an epoll set of the sockets' resets and FINs")
    }

    pub(crate) fn remote_waker(&self) -> Arc<dyn RemoteWake> {
        self.waker.clone()
    }

    fn sock(&mut self, fd: RawFd) -> Option<&mut KSock> {
        usize::try_from(fd).ok().and_then(|i| self.socks.get_mut(i)).and_then(Option::as_mut)
    }

    fn set(&mut self, fd: RawFd, s: KSock) {
        let Ok(i) = usize::try_from(fd) else { return };
        if self.socks.len() <= i {
            self.socks.resize_with(i + 1, || None);
        }
        self.socks[i] = Some(s);
    }

    /// Takes `fd` out of the socket watch, if it is there (before its fd is closed or
    /// replaced).
    fn unwatch(&mut self, fd: RawFd, stats: &Stats) {
        let Some(s) = usize::try_from(fd).ok().and_then(|i| self.socks.get_mut(i)).and_then(Option::as_mut) else {
            return;
        };
        if s.watched {
            s.watched = false;
            stats.syscall();
            let _ = self.watch.remove(fd);
        }
    }

    fn close_fd(&mut self, fd: RawFd, stats: &Stats, events: &mut Vec<Event>) {
        self.unwatch(fd, stats);
        if self.listeners.contains(&fd) {
            self.listeners.retain(|&l| l != fd);
            self.fixed_polls_stale = true;
        }
        self.connecting.retain(|&c| c != fd);
        self.closing.retain(|&c| c != fd);
        if let Some(port) = &mut self.port {
            if port.is_registered(fd) {
                stats.syscall();
                let _ = port.close_socket(fd);
                self.after_close(fd, events);
                return;
            }
        }
        stats.syscall();
        // SAFETY: the backend owns `fd` (a listener, an unregistered socket, or a
        // placeholder) and closes it once: its entry goes right after.
        unsafe { libc::close(fd) };
        self.after_close(fd, events);
    }

    fn after_close(&mut self, fd: RawFd, events: &mut Vec<Event>) {
        if let Some(slot) = usize::try_from(fd).ok().and_then(|i| self.socks.get_mut(i)) {
            *slot = None;
        }
        self.fd_freed = true;
        events.push(Event::Closed { fd });
    }

    pub(crate) fn listen(&mut self, fd: RawFd, stats: &Stats) {
        stats.syscall();
        // Accepted sockets inherit it: abortive closes, no LAST_ACK limbo (§2.3).
        let _ = set_linger_zero(fd);
        self.set(fd, KSock::new(SockState::Listener { starved: false }));
        self.listeners.push(fd);
        self.fixed_polls_stale = true;
    }

    /// Into the socket watch, `PST_FD_REG` (with `SO_LINGER {1, 0}`), and the socket's
    /// send buffer read (and raised to [`MIN_SEND_BUFFER`] when below) for its send
    /// budget ([`send_budget`](Self::send_budget)): four to six system calls, once per
    /// connection.
    pub(crate) fn register(&mut self, fd: RawFd, stats: &Stats) -> Result<(), i32> {
        let Some(port) = &mut self.port else { return Err(libc::EBADF) };
        stats.syscall();
        self.watch.add(fd).map_err(|e| e.raw_os_error().unwrap_or(libc::EINVAL))?;
        stats.syscall();
        stats.syscall();
        if let Err(e) = port.register_socket(fd) {
            stats.syscall();
            let _ = self.watch.remove(fd);
            return Err(e.raw_os_error().unwrap_or(libc::EINVAL));
        }
        stats.syscall();
        // Without it the fd's slots are not held back (as before budgets existed).
        let mut send_buffer = send_buffer_size(fd).ok();
        if send_buffer.is_some_and(|b| b < MIN_SEND_BUFFER) {
            stats.syscall();
            stats.syscall();
            send_buffer = raise_send_buffer(fd, MIN_SEND_BUFFER).ok().or(send_buffer);
        }
        let mut s = KSock::new(SockState::Registered { hup: false, fin: false });
        s.send_buffer = send_buffer;
        s.watched = true;
        self.set(fd, s);
        Ok(())
    }

    /// The send buffer of registered `fd`, read at its registration: the ring
    /// driver's send budget for it ([`RingDriver::tx_set_budget`]).
    pub(crate) fn send_budget(&self, fd: RawFd) -> Option<u32> {
        usize::try_from(fd).ok().and_then(|i| self.socks.get(i)).and_then(Option::as_ref).and_then(|s| s.send_buffer)
    }

    pub(crate) fn connect(&mut self, fd: RawFd, addr: SocketAddr, stats: &Stats, events: &mut Vec<Event>) {
        let (storage, len) = paste_rt_core::sockaddr::encode(&addr);
        stats.syscall();
        // SAFETY: storage holds a valid sockaddr of `len` bytes for the call.
        let r = unsafe { libc::connect(fd, (&storage as *const libc::sockaddr_storage).cast(), len) };
        if r == 0 {
            self.connected(fd, stats, events);
            return;
        }
        match last_errno() {
            libc::EINPROGRESS | libc::EINTR => {
                self.set(fd, KSock::new(SockState::Connecting));
                self.connecting.push(fd);
            }
            errno => {
                self.set(fd, KSock::new(SockState::Dead));
                events.push(Event::Connected { fd, errno });
            }
        }
    }

    fn connected(&mut self, fd: RawFd, stats: &Stats, events: &mut Vec<Event>) {
        self.connecting.retain(|&c| c != fd);
        match self.register(fd, stats) {
            Ok(()) => events.push(Event::Connected { fd, errno: 0 }),
            Err(errno) => {
                self.set(fd, KSock::new(SockState::Dead));
                events.push(Event::Connected { fd, errno: 0 });
                events.push(Event::RecvError { fd, errno });
            }
        }
    }

    /// Kernel PASTE has no per-socket receive stop (see the module docs).
    pub(crate) fn pause(&mut self, _fd: RawFd) {}

    /// See [`pause`](Self::pause).
    pub(crate) fn resume(&mut self, _fd: RawFd) {}

    /// The data is in the socket (the kernel took every slot): shut down now.
    pub(crate) fn shutdown(&mut self, fd: RawFd, how: Shutdown, stats: &Stats) {
        let how = match how {
            Shutdown::Write => libc::SHUT_WR,
            Shutdown::Read => libc::SHUT_RD,
            Shutdown::Both => libc::SHUT_RDWR,
        };
        if matches!(self.sock(fd).map(|s| s.state), Some(SockState::Registered { .. })) {
            stats.syscall();
            // SAFETY: plain syscall on a socket the backend owns.
            unsafe { libc::shutdown(fd, how) };
        }
    }

    pub(crate) fn close_listener(&mut self, fd: RawFd, stats: &Stats, events: &mut Vec<Event>) {
        self.close_fd(fd, stats, events);
    }

    /// Registered sockets close gracefully (see the module docs); others at once.
    pub(crate) fn close_stream(&mut self, fd: RawFd, stats: &Stats, events: &mut Vec<Event>) {
        match self.sock(fd) {
            Some(s) if matches!(s.state, SockState::Registered { .. }) => {
                // A FIN or hang-up seen already is not reported again (the watch is
                // edge-triggered): the peer is done now.
                s.peer_done |= matches!(s.state, SockState::Registered { fin: true, .. });
                s.state = SockState::Closing { shut: false };
                s.deadline = Some(Instant::now() + CLOSE_LINGER);
                self.closing.push(fd);
            }
            _ => self.close_fd(fd, stats, events),
        }
    }

    pub(crate) fn close_stray(&mut self, fd: RawFd, stats: &Stats) {
        stats.syscall();
        // SAFETY: an accepted fd nobody owns; closed once.
        unsafe { libc::close(fd) };
        self.fd_freed = true;
    }

    /// The EOF slot of a closing socket: the peer is done.
    pub(crate) fn peer_closed(&mut self, fd: RawFd) {
        if let Some(s) = self.sock(fd) {
            s.peer_done = true;
        }
    }

    /// One sync: one `poll()` (see the module docs), then accepts, connects, faults
    /// and closes.
    pub(crate) fn sync(
        &mut self,
        driver: &RingDriver,
        wait: Wait,
        stats: &Stats,
        events: &mut Vec<Event>,
    ) -> io::Result<()> {
        let Some(port_fd) = self.port.as_ref().map(|p| p.as_raw_fd()) else { return Ok(()) };
        let freed = std::mem::take(&mut self.fd_freed);
        // The wait's cap in poll(2)'s milliseconds (u32::MAX: none), so that capping
        // is one `min` per tick rather than `Duration` arithmetic.
        let mut cap_ms = u32::MAX;
        // Listeners backing off after an accept error come back when their time is up
        // or an fd was freed.
        if self.any_starved {
            if let Some(retry) = self.retry_starved(freed) {
                cap_ms = poll_millis(Some(retry));
            }
        }
        let has_sockets = self.port.as_ref().is_some_and(|p| p.registered_count() > 0) || !self.connecting.is_empty();
        if has_sockets {
            cap_ms = cap_ms.min(poll_millis(Some(ACK_WAIT_CAP)));
        }
        let socks = &self.socks;
        let state_of = |fd: RawFd| usize::try_from(fd).ok().and_then(|i| socks.get(i)).and_then(Option::as_ref);
        if self.fixed_polls_stale {
            let listening = self
                .listeners
                .iter()
                .copied()
                .filter(|&fd| state_of(fd).is_some_and(|s| s.state == SockState::Listener { starved: false }));
            build_fixed_poll_set(
                port_fd,
                self.waker.fd.as_raw_fd(),
                self.watch.fd(),
                listening,
                &mut self.pollfds,
                &mut self.roles,
            );
            self.fixed_polls = self.pollfds.len();
            self.fixed_polls_stale = false;
        } else {
            self.pollfds.truncate(self.fixed_polls);
            self.roles.truncate(self.fixed_polls);
        }
        if !self.connecting.is_empty() || driver.tx_any_space_waiter() {
            let space_wanted = driver.tx_space_waiters().filter(|&fd| {
                state_of(fd).is_some_and(|s| matches!(s.state, SockState::Registered { hup: false, .. }))
            });
            add_wanted_to_poll_set(self.connecting.iter().copied(), space_wanted, &mut self.pollfds, &mut self.roles);
        }

        // (`wait_millis` rounds up, so the smaller of two rounded limits is the
        // smaller limit rounded; -1, no limit, is u32::MAX here.)
        let ms = poll_millis(wait.timeout()).min(cap_ms) as i32;
        stats.syscall();
        if ms != 0 {
            Stats::add(&stats.waits, 1);
        }
        // SAFETY: pollfds is a valid array of `len` pollfd structs for the call.
        let n = unsafe { libc::poll(self.pollfds.as_mut_ptr(), self.pollfds.len() as libc::nfds_t, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(io::Error::new(e.kind(), format!("poll on the PASTE port: {e}")));
            }
        }

        // `poll` counts the entries with news: the walk stops after the last (most
        // syncs have news on the port alone, the first entry).
        let mut news = n.max(0);
        for k in 0..self.pollfds.len() {
            if news == 0 {
                break;
            }
            let (p, role) = (self.pollfds[k], self.roles[k]);
            if p.revents == 0 {
                continue;
            }
            news -= 1;
            match role {
                PollRole::Port => {}
                PollRole::Wake => {
                    let mut v: u64 = 0;
                    stats.syscall();
                    // SAFETY: reads 8 bytes into a live u64 from our nonblocking eventfd.
                    unsafe { libc::read(p.fd, (&mut v as *mut u64).cast(), 8) };
                    self.waker.pending.store(false, Ordering::Release);
                    Stats::add(&stats.remote_wakeups, 1);
                }
                PollRole::Listener => self.accept_from(p.fd, stats, events),
                PollRole::Connecting => {
                    stats.syscall();
                    let errno = take_socket_error(p.fd);
                    if errno == 0 {
                        self.connected(p.fd, stats, events);
                    } else {
                        self.set(p.fd, KSock::new(SockState::Dead));
                        events.push(Event::Connected { fd: p.fd, errno });
                    }
                }
                PollRole::Watch => self.take_watched_news(stats, events)?,
                PollRole::Space => {
                    // Its errors and hang-ups come through the watch (taken above, as
                    // the watch comes first in the set): a socket that failed is not
                    // reported writable.
                    let registered = matches!(self.sock(p.fd).map(|s| s.state), Some(SockState::Registered { .. }));
                    if p.revents & libc::POLLOUT != 0 && registered {
                        events.push(Event::Writable { fd: p.fd, free: None });
                    }
                }
            }
        }
        self.advance_closes(driver, stats, events);
        // Whether rxsync left received data in the kernel (the RX ring was full):
        // asked only by `peer_fins`, so read only while some FIN waits.
        self.rx_full_at_sync = !self.fins.is_empty() && driver.rx_ready() >= driver.rx_capacity();
        Ok(())
    }

    /// Takes what the socket watch holds: FINs, errors and hang-ups of registered and
    /// closing sockets.
    fn take_watched_news(&mut self, stats: &Stats, events: &mut Vec<Event>) -> io::Result<()> {
        let mut news = std::mem::take(&mut self.watch_news);
        news.clear();
        let calls = self.watch.drain(|fd, revents| news.push((fd, revents)));
        for &(fd, revents) in &news {
            if revents & libc::POLLRDHUP != 0 {
                self.on_peer_fin(fd, stats);
            }
            if revents & (libc::POLLERR | libc::POLLHUP) != 0 {
                // classify reads SO_ERROR.
                stats.syscall();
                let fault = classify(fd, revents);
                self.on_fault(fd, fault, stats, events);
            }
        }
        self.watch_news = news;
        let calls = calls.map_err(|e| io::Error::new(e.kind(), format!("epoll_wait on the socket watch: {e}")))?;
        stats.syscalls(calls);
        Ok(())
    }

    /// Listeners backing off whose time is up (or any, when an fd was freed) come back
    /// into the poll set. Returns how long the sync may wait for the next one's time.
    fn retry_starved(&mut self, freed: bool) -> Option<Duration> {
        let now = Instant::now();
        let (mut cap, mut starved) = (None, false);
        for &fd in &self.listeners {
            let Some(s) = usize::try_from(fd).ok().and_then(|i| self.socks.get_mut(i)).and_then(Option::as_mut) else {
                continue;
            };
            let SockState::Listener { starved: true } = s.state else { continue };
            match s.retry_at {
                Some(at) if !freed && now < at => {
                    let left = at - now;
                    cap = Some(cap.map_or(left, |c: Duration| c.min(left)));
                    starved = true;
                }
                _ => {
                    s.state = SockState::Listener { starved: false };
                    s.retry_at = None;
                    self.fixed_polls_stale = true;
                }
            }
        }
        self.any_starved = starved;
        cap
    }

    /// The peer's FIN, seen on the socket (see the module docs): a closing socket's
    /// peer is done; a registered one's end of stream is due once its data is walked.
    fn on_peer_fin(&mut self, fd: RawFd, stats: &Stats) {
        let Some(s) = self.sock(fd) else { return };
        match s.state {
            SockState::Registered { hup, fin: false } => {
                s.state = SockState::Registered { hup, fin: true };
                let watched = s.watched;
                self.fins.push(fd);
                if watched {
                    // Only errors and hang-ups from now on (the socket's later wake-ups
                    // would report the FIN again).
                    stats.syscall();
                    let _ = self.watch.peer_fin_seen(fd);
                }
            }
            SockState::Closing { .. } => s.peer_done = true,
            _ => {}
        }
    }

    /// After the backend's RX walk: the fds whose peer's FIN was seen on the socket,
    /// now that every byte received before it has been walked (the ring was neither
    /// full at the sync nor left with slots), go to `out` — each once. Kernel PASTE
    /// puts a zero-payload EOF slot in the ring for a FIN that comes alone, but none
    /// for a FIN that rides on the last data segment (seen on the live kernel); the
    /// backend reports end of stream for whichever comes first.
    pub(crate) fn peer_fins(&mut self, driver: &RingDriver, out: &mut Vec<RawFd>) {
        if self.fins.is_empty() || self.rx_full_at_sync || driver.rx_ready() > 0 {
            return;
        }
        for fd in std::mem::take(&mut self.fins) {
            if matches!(self.sock(fd).map(|s| s.state), Some(SockState::Registered { fin: true, .. })) {
                out.push(fd);
            }
        }
    }

    fn on_fault(&mut self, fd: RawFd, fault: SocketFault, stats: &Stats, events: &mut Vec<Event>) {
        let Some(s) = self.sock(fd) else { return };
        match (fault, s.state) {
            (SocketFault::None, _) => {}
            (SocketFault::HangUp, SockState::Registered { fin, .. }) => {
                // Both directions are done: the peer's FIN came too. Nothing more can
                // happen on it: out of the watch.
                s.state = SockState::Registered { hup: true, fin: true };
                if !fin {
                    self.fins.push(fd);
                }
                self.unwatch(fd, stats);
            }
            (SocketFault::Error(errno), SockState::Registered { .. }) => {
                s.state = SockState::Dead;
                self.unwatch(fd, stats);
                // Closed before the next sync so its slots cannot stall the ring.
                if let Some(port) = &mut self.port {
                    stats.syscall();
                    let _ = port.kill_socket(fd, self.placeholder.as_raw_fd());
                }
                events.push(Event::RecvError { fd, errno });
            }
            (_, SockState::Closing { .. }) => {
                s.peer_done = true;
            }
            _ => {}
        }
    }

    fn accept_from(&mut self, lfd: RawFd, stats: &Stats, events: &mut Vec<Event>) {
        for _ in 0..ACCEPT_BUDGET {
            stats.syscall();
            // SAFETY: plain accept4 on a listening socket we own; no address wanted.
            let fd = unsafe {
                libc::accept4(lfd, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            };
            if fd >= 0 {
                if let Some(s) = self.sock(lfd) {
                    s.accept_error_reported = false;
                }
                events.push(Event::Accepted { listener: lfd, fd });
                continue;
            }
            match last_errno() {
                libc::EAGAIN => return,
                libc::EINTR | libc::ECONNABORTED | libc::EPROTO => continue,
                errno => {
                    let Some(s) = self.sock(lfd) else { return };
                    if !s.accept_error_reported {
                        s.accept_error_reported = true;
                        events.push(Event::AcceptError { listener: lfd, errno });
                    }
                    s.state = SockState::Listener { starved: true };
                    s.retry_at = Some(Instant::now() + ACCEPT_RETRY);
                    self.any_starved = true;
                    self.fixed_polls_stale = true;
                    return;
                }
            }
        }
    }

    /// Closing sockets: shut down once the kernel has taken every TX slot, close once
    /// the peer is done or the linger time passed.
    fn advance_closes(&mut self, driver: &RingDriver, stats: &Stats, events: &mut Vec<Event>) {
        if self.closing.is_empty() {
            return;
        }
        let all_taken = driver.tx_all_taken();
        let now = Instant::now();
        let mut i = 0;
        while i < self.closing.len() {
            let fd = self.closing[i];
            let Some(s) = usize::try_from(fd).ok().and_then(|i| self.socks.get_mut(i)).and_then(Option::as_mut) else {
                self.closing.swap_remove(i);
                continue;
            };
            let SockState::Closing { shut } = s.state else {
                self.closing.swap_remove(i);
                continue;
            };
            let late = s.deadline.is_some_and(|d| now >= d);
            if !shut && (all_taken || late) {
                stats.syscall();
                // SAFETY: plain syscall on a socket we own.
                unsafe { libc::shutdown(fd, libc::SHUT_WR) };
                s.state = SockState::Closing { shut: true };
            } else if shut && (s.peer_done || late) {
                // close_fd takes it out of `closing`.
                self.close_fd(fd, stats, events);
                continue;
            }
            i += 1;
        }
    }

    /// Drop (§10.3): every registered socket closed abortively, the driver's free
    /// buffers relinked onto the extra list, then the port released; the other fds
    /// (listeners, placeholders, connecting sockets) closed.
    pub(crate) fn release(&mut self, driver: &mut RingDriver, fds: &[RawFd]) {
        let Some(port) = self.port.take() else { return };
        let registered: Vec<RawFd> = port.registered().collect();
        port.release(Some(driver));
        for &fd in fds {
            if !registered.contains(&fd) {
                // SAFETY: the backend owns these fds; registered ones were closed by
                // the port just above, every other one is closed here once.
                unsafe { libc::close(fd) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_limits_combine_in_milliseconds_rounded_up() {
        let ms = |d: Option<Duration>, cap: u32| poll_millis(d).min(cap) as i32;
        assert_eq!(ms(None, u32::MAX), -1, "no limit, no cap: poll waits for ever");
        assert_eq!(ms(None, poll_millis(Some(ACK_WAIT_CAP))), 1, "the ACK cap alone");
        assert_eq!(ms(Some(Duration::from_micros(1500)), u32::MAX), 2, "rounded up");
        assert_eq!(ms(Some(Duration::from_millis(40)), poll_millis(Some(ACK_WAIT_CAP))), 1);
        assert_eq!(ms(Some(Duration::ZERO), poll_millis(Some(ACK_WAIT_CAP))), 0, "no wait");
        assert_eq!(ms(Some(Duration::from_millis(3)), poll_millis(Some(Duration::from_micros(4100)))), 3);
    }

    #[test]
    fn kernel_backend_without_netmap_names_what_is_missing() {
        // A control device that does not exist, as on a machine without netmap (so
        // the test runs on one with netmap too).
        let device = std::env::temp_dir().join(format!("paste-rt-no-netmap-provider-{}", std::process::id()));
        let cfg = KernelConfig { ifname: "eth0".into(), device: device.clone(), ..KernelConfig::default() };
        let err = match KernelProvider::open(&cfg) {
            Err(e) => e,
            Ok(_) => panic!("opened a PASTE port without /dev/netmap"),
        };
        assert_eq!(err.backend, BackendKind::Paste);
        let text = err.to_string();
        for needle in
            [&*device.to_string_lossy(), "--enable-paste", "6.0", "native netmap", "checksum", "PASTE_RT_PASTE_IF"]
        {
            assert!(text.contains(needle), "{needle:?} missing from: {text}");
        }
    }
}
