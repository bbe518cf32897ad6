//! [`EpollBackend`]: the epoll backend's state (its sockets, what the runtime asked
//! between ticks, the lists a tick walks), its tick ([`Backend::flush_and_wait`]) and
//! the readiness events that drive it.
//!
//! Accepting, reading and writing are the walks of a tick, one child module each
//! (`accept`, `read`, `write`); they share this module's state.

mod accept;
mod read;
mod write;

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use paste_rt_core::{
    Backend, BackendKind, BufPool, Capabilities, IoTable, RecordKind, RemoteWake, SendStep, StartError, Stats, Token,
    Wait,
};

use crate::config::EpollConfig;
use crate::sys;
use crate::wake_timer::WakeTimer;

/// How long a listener that hit `EMFILE`/`ENFILE` waits before trying again when no
/// fd was closed meanwhile.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// epoll user data of the wake-up eventfd.
const WAKE_DATA: u64 = u64::MAX;
/// epoll user data of the wake-up timer ([`WakeTimer`]). Tokens are `u32`, so any
/// user data above `u32::MAX` is one of these two.
const TIMER_DATA: u64 = u64::MAX - 1;
/// Most buffers gathered into one `sendmsg`.
const MAX_IOV: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Free,
    Listener,
    Stream,
    Dgram,
}

bitflags::bitflags! {
    /// A socket's yes/no state, one word, so that the per-event and per-flush tests
    /// of several flags are one mask test each.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct SockFlags: u16 {
        /// The socket may hold unread data (edge seen, not yet drained).
        const READABLE = 1 << 0;
        /// The peer's FIN or an error was seen in the event mask.
        const HUP = 1 << 1;
        /// Receiving is paused (the record's queue is long).
        const PAUSED = 1 << 2;
        /// No more reads: EOF or an error was reported.
        const RX_DONE = 1 << 3;
        /// A write hit EAGAIN; wait for EPOLLOUT.
        const WRITE_BLOCKED = 1 << 4;
        /// Listed in `to_read`.
        const READ_LISTED = 1 << 5;
        /// Listed in `to_flush`.
        const FLUSH_LISTED = 1 << 6;
        /// A connect is in progress.
        const CONNECTING = 1 << 7;
        /// Listener: more connections may be waiting (budget ran out, or edge seen).
        const ACCEPT_READY = 1 << 8;
    }
}

/// The epoll side of one socket (its data is in the runtime's record): its fd, its
/// role and its state flags.
#[derive(Debug)]
struct Sock {
    fd: RawFd,
    role: Role,
    flags: SockFlags,
}

impl Sock {
    const FREE: Sock = Sock { fd: -1, role: Role::Free, flags: SockFlags::empty() };

    fn new(role: Role, fd: RawFd) -> Sock {
        Sock { role, fd, ..Sock::FREE }
    }

    /// Whether the socket may be read now: readable, not paused, not done.
    #[inline(always)]
    fn can_read(&self) -> bool {
        self.flags & (SockFlags::READABLE | SockFlags::PAUSED | SockFlags::RX_DONE) == SockFlags::READABLE
    }
}

/// What the runtime asked between ticks that needs a system call.
#[derive(Debug)]
enum Pending {
    Listen(Token),
    Register(Token),
    Connect(Token, SocketAddr),
    BindDgram(Token),
    Close(Token),
}

/// Counts of one walk over a list of sockets (reads or writes), added to [`Stats`]
/// once at its end rather than once per system call.
#[derive(Default)]
struct Tally {
    /// Reads or writes made (system calls: counted together at the end of a walk).
    ops: u64,
    /// Writes: those the kernel took bytes from. Reads: buffers delivered.
    done: u64,
    /// Bytes moved.
    bytes: u64,
}

/// The epoll backend. See the crate docs.
pub struct EpollBackend {
    epfd: OwnedFd,
    waker: Arc<EventFdWaker>,
    /// Ends waits at the runtime's next timer or deadline sweep.
    timer: WakeTimer,
    pool: BufPool,
    stats: Stats,
    config: EpollConfig,
    socks: Vec<Sock>,
    pending: Vec<Pending>,
    events: Vec<libc::epoll_event>,
    /// Sockets with data to read this tick.
    to_read: Vec<Token>,
    /// Sockets with sends to write this tick.
    to_flush: Vec<Token>,
    /// Listeners to accept from this tick.
    to_accept: Vec<Token>,
    /// Tokens closed this tick, released at its end (after this tick's events).
    to_release: Vec<Token>,
    /// An fd was closed this tick: starved listeners may accept again.
    fd_freed: bool,
    /// Listeners whose accept failed for lack of fds, with the time of the last
    /// failure: retried after a close or after `ACCEPT_RETRY`. Usually empty.
    starved: Vec<(Token, Instant)>,
}

impl EpollBackend {
    /// Creates the epoll instance, the wake-up eventfd and the buffer pool.
    pub fn new(config: EpollConfig) -> Result<EpollBackend, StartError> {
        let fail = |what: &str, e: io::Error| StartError::os(BackendKind::Epoll, what, &e);
        let stats = Stats::default();
        let epfd = sys::epoll_create(&stats).map_err(|e| fail("epoll_create1", e))?;
        let efd = sys::eventfd().map_err(|e| fail("eventfd", e))?;
        sys::epoll_add(&stats, &epfd, efd.as_raw_fd(), (libc::EPOLLIN | libc::EPOLLET) as u32, WAKE_DATA)
            .map_err(|e| fail("epoll_ctl(eventfd)", e))?;
        let timer = WakeTimer::new(&stats, &epfd, TIMER_DATA).map_err(|e| fail("timerfd", e))?;
        let pool = BufPool::new(&config.pool, 0).map_err(|e| fail("buffer pool", e))?;
        Ok(EpollBackend {
            epfd,
            waker: Arc::new(EventFdWaker { fd: efd, pending: AtomicBool::new(false) }),
            timer,
            pool,
            stats,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; config.max_events.max(1)],
            config,
            socks: Vec::new(),
            pending: Vec::with_capacity(64),
            to_read: Vec::with_capacity(256),
            to_flush: Vec::with_capacity(256),
            to_accept: Vec::new(),
            to_release: Vec::new(),
            fd_freed: false,
            starved: Vec::new(),
        })
    }

    fn sock(&mut self, token: Token) -> Option<&mut Sock> {
        self.socks.get_mut(token.index()).filter(|s| s.role != Role::Free)
    }

    fn open(&mut self, token: Token, role: Role, fd: RawFd) {
        let i = token.index();
        if self.socks.len() <= i {
            self.socks.resize_with(i + 1, || Sock::FREE);
        }
        debug_assert_eq!(self.socks[i].role, Role::Free, "token {i} reused before its release");
        self.socks[i] = Sock::new(role, fd);
    }

    /// Applies what the runtime asked since the last tick, in order.
    fn apply_pending(&mut self, io: &mut IoTable) {
        if self.pending.is_empty() {
            return;
        }
        let mut pending = std::mem::take(&mut self.pending);
        for p in pending.drain(..) {
            match p {
                Pending::Listen(t) => self.start_listener(io, t),
                Pending::Register(t) => self.watch_stream(io, t, false),
                Pending::Connect(t, addr) => self.start_connect(io, t, addr),
                Pending::BindDgram(t) => self.watch_dgram(io, t),
                Pending::Close(t) => self.close_now(io, t),
            }
        }
        self.pending = pending;
    }

    fn start_listener(&mut self, io: &mut IoTable, t: Token) {
        let fd = io.get(t).fd();
        self.open(t, Role::Listener, fd);
        let ev = (libc::EPOLLIN | libc::EPOLLET) as u32;
        if let Err(e) = sys::epoll_add(&self.stats, &self.epfd, fd, ev, t.0 as u64) {
            io.accept_failed(t, errno(&e));
        }
        self.socks[t.index()].flags.set(SockFlags::ACCEPT_READY, true);
        self.to_accept.push(t);
    }

    /// Registers a connection for reads, writes and hang-ups, edge-triggered, once:
    /// no `epoll_ctl(MOD)` is ever needed afterwards.
    fn watch_stream(&mut self, io: &mut IoTable, t: Token, connecting: bool) {
        let fd = io.get(t).fd();
        self.open(t, Role::Stream, fd);
        self.socks[t.index()].flags.set(SockFlags::CONNECTING, connecting);
        let ev = libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET;
        if let Err(e) = sys::epoll_add(&self.stats, &self.epfd, fd, ev as u32, t.0 as u64) {
            self.fail_stream(io, t, errno(&e));
        }
    }

    fn start_connect(&mut self, io: &mut IoTable, t: Token, addr: SocketAddr) {
        let fd = io.get(t).fd();
        match sys::connect(&self.stats, fd, &addr) {
            Ok(done) => {
                self.watch_stream(io, t, !done);
                if done {
                    self.connected(io, t, 0);
                }
            }
            Err(e) => {
                self.open(t, Role::Stream, fd);
                self.connected(io, t, errno(&e));
            }
        }
    }

    fn watch_dgram(&mut self, io: &mut IoTable, t: Token) {
        let fd = io.get(t).fd();
        self.open(t, Role::Dgram, fd);
        let ev = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLET) as u32;
        if let Err(e) = sys::epoll_add(&self.stats, &self.epfd, fd, ev, t.0 as u64) {
            self.socks[t.index()].flags.set(SockFlags::RX_DONE, true);
            io.dgram_failed(t, errno(&e));
        }
    }

    // Off the per-request path: out of line, so the hot loops that reach it keep
    // their registers.
    #[inline(never)]
    fn connected(&mut self, io: &mut IoTable, t: Token, err: i32) {
        if let Some(s) = self.sock(t) {
            s.flags.set(SockFlags::CONNECTING, false);
            if err != 0 {
                s.flags.set(SockFlags::RX_DONE, true);
            }
        }
        let step = io.connected(t, err);
        self.follow(io, t, step);
    }

    /// Applies the table's answer on `t`'s send path.
    fn follow(&mut self, io: &mut IoTable, t: Token, step: SendStep) {
        match step {
            SendStep::Data | SendStep::Shutdown(_) => self.list_flush(t),
            SendStep::Idle | SendStep::Wait => {}
            SendStep::Close => self.close_now(io, t),
        }
    }

    // Off the per-request path: out of line, so the hot loops that reach it keep
    // their registers.
    #[inline(never)]
    fn fail_stream(&mut self, io: &mut IoTable, t: Token, err: i32) {
        if let Some(s) = self.sock(t) {
            if s.flags.contains(SockFlags::RX_DONE) {
                return;
            }
            s.flags.set(SockFlags::RX_DONE, true);
        }
        let step = io.rx_failed(t, err);
        self.follow(io, t, step);
    }

    /// Closes `t`'s socket now (inside the tick) and releases the token at the end of
    /// the tick.
    // Off the per-request path: out of line, so the hot loops that reach it keep
    // their registers.
    #[inline(never)]
    fn close_now(&mut self, _io: &mut IoTable, t: Token) {
        let Some(s) = self.socks.get_mut(t.index()).filter(|s| s.role != Role::Free) else { return };
        let fd = std::mem::replace(&mut s.fd, -1);
        if s.role == Role::Listener {
            self.starved.retain(|&(l, _)| l != t);
        }
        *s = Sock::FREE;
        if fd >= 0 {
            // SAFETY: the backend owns this fd (handed over with its record) and
            // closes it exactly once (its slot was cleared above).
            sys::close(&self.stats, unsafe { OwnedFd::from_raw_fd(fd) });
        }
        self.fd_freed = true;
        self.to_release.push(t);
    }

    /// Applies one event: a readable socket is read at once (the common case: one
    /// request, one short read) and listed only when it may hold more; a listener is
    /// listed for accepting; a socket whose writes waited for room is listed for
    /// writing.
    fn handle_event(&mut self, io: &mut IoTable, data: u64, events: u32, tally: &mut Tally) {
        if data > u64::from(u32::MAX) {
            return self.own_fd_event(data);
        }
        let t = Token(data as u32);
        let ev = events as i32;
        // One lookup for the common case; the socket and the lists are disjoint
        // fields, so they are updated side by side.
        let Some(s) = self.socks.get_mut(t.index()).filter(|s| s.role != Role::Free) else { return };
        if s.role == Role::Listener {
            return self.listener_ready(t);
        }
        let s = if s.flags.contains(SockFlags::CONNECTING)
            && ev & (libc::EPOLLOUT | libc::EPOLLERR | libc::EPOLLHUP) != 0
        {
            self.connect_done(io, t);
            let Some(s) = self.socks.get_mut(t.index()) else { return };
            s
        } else {
            s
        };
        let readable = match s.role {
            Role::Stream => libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR,
            Role::Dgram => libc::EPOLLIN | libc::EPOLLERR,
            Role::Listener | Role::Free => return,
        };
        if ev & libc::EPOLLOUT != 0 && s.flags.contains(SockFlags::WRITE_BLOCKED) {
            s.flags.set(SockFlags::WRITE_BLOCKED, false);
            if !s.flags.contains(SockFlags::FLUSH_LISTED) {
                s.flags.set(SockFlags::FLUSH_LISTED, true);
                self.to_flush.push(t);
            }
        }
        if ev & readable != 0 && !s.flags.contains(SockFlags::RX_DONE) {
            s.flags.set(SockFlags::READABLE, true);
            if s.role == Role::Stream && ev & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) != 0 {
                s.flags.set(SockFlags::HUP, true);
            }
            // A listed socket is read by the list walk; a paused one when it resumes.
            if !s.flags.intersects(SockFlags::READ_LISTED | SockFlags::PAUSED) && self.read_now(io, t, tally) {
                if let Some(s) = self.socks.get_mut(t.index()) {
                    s.flags.set(SockFlags::READ_LISTED, true);
                    self.to_read.push(t);
                }
            }
        }
    }

    /// A connect in progress on `t` finished: its result is the socket's pending
    /// error. Out of line: once per connection.
    #[inline(never)]
    fn connect_done(&mut self, io: &mut IoTable, t: Token) {
        let Some(s) = self.socks.get_mut(t.index()) else { return };
        let err = sys::take_socket_error(&self.stats, s.fd);
        self.connected(io, t, err);
    }

    /// An event of the backend's own eventfd or timer (edge-triggered, so neither is
    /// read: every write or expiry is a new edge, and a read would be a system call
    /// per wake-up).
    #[cold]
    fn own_fd_event(&mut self, data: u64) {
        if data == WAKE_DATA {
            Stats::add(&self.stats.remote_wakeups, 1);
        } else {
            debug_assert_eq!(data, TIMER_DATA);
            self.timer.expired();
        }
    }

    /// The `epoll_wait` timeout of this tick's wait: none while the wake-up timer
    /// stands armed for the runtime's next instant ([`WakeTimer`]); the wait's own
    /// limit when it is short, or capped for a listener short of fds.
    #[inline]
    fn wait_ms(&mut self, wait: Wait) -> i32 {
        match wait {
            Wait::Until { at, left } if self.starved.is_empty() => self.timer.timeout_ms(&self.stats, at, left),
            wait => paste_rt_core::wait_millis(self.cap_for_retries(wait.timeout())),
        }
    }

    /// The longest the wait may last given starved listeners.
    fn cap_for_retries(&self, timeout: Option<Duration>) -> Option<Duration> {
        match (!self.starved.is_empty(), timeout) {
            (false, t) => t,
            (true, None) => Some(ACCEPT_RETRY),
            (true, Some(t)) => Some(t.min(ACCEPT_RETRY)),
        }
    }
}

impl Backend for EpollBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Epoll
    }

    fn describe(&self) -> String {
        format!(
            "epoll (edge-triggered; {} buffers of {} B; read budget {} buffers/conn/tick)",
            self.pool.capacity(),
            self.pool.buf_size(),
            self.config.read_budget
        )
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { datagrams: true, unix_streams: true }
    }

    fn pool(&self) -> &BufPool {
        &self.pool
    }

    fn stats(&self) -> &Stats {
        &self.stats
    }

    fn listen(&mut self, _io: &mut IoTable, token: Token) {
        self.pending.push(Pending::Listen(token));
    }

    fn register(&mut self, _io: &mut IoTable, token: Token) {
        self.pending.push(Pending::Register(token));
    }

    fn connect(&mut self, _io: &mut IoTable, token: Token, addr: SocketAddr) {
        self.pending.push(Pending::Connect(token, addr));
    }

    fn bind_dgram(&mut self, _io: &mut IoTable, token: Token) {
        self.pending.push(Pending::BindDgram(token));
    }

    fn resume_recv(&mut self, _io: &mut IoTable, token: Token) {
        let Some(s) = self.sock(token) else { return };
        s.flags.set(SockFlags::PAUSED, false);
        if s.flags.contains(SockFlags::READABLE) && !s.flags.contains(SockFlags::READ_LISTED) {
            s.flags.set(SockFlags::READ_LISTED, true);
            self.to_read.push(token);
        }
    }

    #[inline]
    fn send(&mut self, io: &mut IoTable, token: Token) {
        // One lookup: the socket and the flush list are disjoint fields.
        match self.socks.get_mut(token.index()).filter(|s| s.role != Role::Free) {
            Some(s) if !s.flags.contains(SockFlags::FLUSH_LISTED) => {
                s.flags.set(SockFlags::FLUSH_LISTED, true);
                self.to_flush.push(token);
            }
            Some(_) => {}
            // Registered at the next tick: flushed then (the record stays engaged).
            None if io.get(token).kind() != RecordKind::Free => self.to_flush.push(token),
            None => {}
        }
    }

    /// `token`'s send path just engaged (it was idle, so it is on no list): listed
    /// for the flush without a look at the socket. The flush skips a socket that
    /// cannot write yet, and a second listing by [`send`](Backend::send) finds
    /// the send path idle.
    #[inline]
    fn send_queued_data(&mut self, _io: &mut IoTable, token: Token) {
        self.to_flush.push(token);
    }

    fn close(&mut self, _io: &mut IoTable, token: Token) {
        self.pending.push(Pending::Close(token));
    }

    /// The tick: what the runtime asked, writes, accepts, reads, the wait, its
    /// events, then writes, accepts and reads again (what became ready in the wait).
    fn flush_and_wait(&mut self, io: &mut IoTable, wait: Wait) -> io::Result<()> {
        let wakes = io.wakes();
        self.apply_pending(io);
        self.flush_writes(io);
        self.accept_ready(io);
        let mut rx = self.read_ready(io);

        // Never block when this tick already woke a task (a write that made room, a
        // read, an accept), or can do more right away.
        let busy = io.wakes() != wakes
            || rx > 0
            || !self.to_accept.is_empty()
            || self.can_read_now()
            || !self.to_release.is_empty();
        let ms = if busy { 0 } else { self.wait_ms(wait) };
        let mut events = std::mem::take(&mut self.events);
        let n = sys::epoll_wait(&self.stats, &self.epfd, &mut events, ms);
        self.waker.pending.store(false, Ordering::Release);
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                self.events = events;
                return Err(e);
            }
        };
        let mut tally = Tally::default();
        for ev in &events[..n] {
            let (data, mask) = (ev.u64, ev.events);
            self.handle_event(io, data, mask, &mut tally);
        }
        self.events = events;
        self.count_reads(&tally);
        rx += tally.done;
        self.flush_writes(io);
        self.accept_ready(io);
        rx += self.read_ready(io);

        if rx > 0 {
            Stats::add(&self.stats.rx_buffers, rx);
            Stats::add(&self.stats.rx_batches, 1);
        }
        for t in self.to_release.drain(..) {
            io.release(t);
        }
        Ok(())
    }

    fn remote_waker(&self) -> Arc<dyn RemoteWake> {
        self.waker.clone()
    }
}

impl Drop for EpollBackend {
    fn drop(&mut self) {
        for s in self.socks.iter_mut() {
            if s.role != Role::Free && s.fd >= 0 {
                // SAFETY: the backend owns every fd still in a slot; each is closed
                // once (the slot is cleared).
                drop(unsafe { OwnedFd::from_raw_fd(std::mem::replace(&mut s.fd, -1)) });
            }
        }
    }
}

/// Interrupts `epoll_wait` from another thread by writing the eventfd.
struct EventFdWaker {
    fd: OwnedFd,
    /// A write is already on its way; further wakes before the next wait are free.
    pending: AtomicBool,
}

impl RemoteWake for EventFdWaker {
    fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            sys::eventfd_signal(self.fd.as_raw_fd());
        }
    }
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_costs_the_backend_eight_bytes() {
        // fd, role and the packed flags: kept per connection, so idle memory counts it.
        assert_eq!(std::mem::size_of::<Sock>(), 8);
    }

    #[test]
    fn a_socket_can_be_read_only_when_readable_and_neither_paused_nor_done() {
        let mut s = Sock::new(Role::Stream, 3);
        assert!(!s.can_read());
        s.flags.set(SockFlags::READABLE, true);
        assert!(s.can_read());
        s.flags.set(SockFlags::PAUSED, true);
        assert!(!s.can_read());
        s.flags.set(SockFlags::PAUSED, false);
        s.flags.set(SockFlags::RX_DONE, true);
        assert!(!s.can_read());
        assert!(
            s.flags.contains(SockFlags::READABLE | SockFlags::RX_DONE)
                && !s.flags.intersects(SockFlags::PAUSED | SockFlags::HUP)
        );
    }
}
