//! # paste-rt-epoll — the baseline backend
//!
//! Edge-triggered epoll with one `read` per ready connection into pool buffers and
//! one `send`/`sendmsg` per connection with queued data, written at the tick
//! (docs/architecture.md, the backends). Same
//! contract as the io_uring and PASTE backends, and exactly the per-connection
//! system calls PASTE removes — which is what makes it the honest baseline of the A/B
//! comparison.
//!
//! Each connection is registered once for `IN | OUT | RDHUP`, edge-triggered, so it
//! never needs `epoll_ctl(MOD)`. A connection is read as its readiness event is
//! applied; it is listed for a later read only when its read budget ran out or the
//! pool was dry. A read that returns less than a buffer drained the socket (the
//! next arrival is a new edge), so there is no extra read to see `EAGAIN`; after a
//! hang-up is seen, reading goes on until the EOF or the error. Received buffers land
//! in the connection's record as they are read, and sends are written straight from
//! the record's queue; a partial write waits for `EPOLLOUT`. Counters are added once
//! per walk over the ready sockets, not once per call.
//!
//! The wait ends at the runtime's next timer or deadline sweep through a timerfd in
//! the epoll set, armed once per instant rather than a timeout on every
//! `epoll_wait` (`wake_timer`).
//!
//! Datagram (UDP) sockets are read with one `recvfrom` per datagram into pool
//! buffers (until `EAGAIN` or the read budget) and written with one `sendto` per
//! queued datagram.
//!
//! The backend owns every fd handed to it and closes it when its record closes. It
//! never touches the executor, and makes every system call inside
//! [`Backend::poll`] (see `sys`, where each one is
//! counted): what the runtime asks between ticks (a listener, a connect, a close)
//! is noted and done at the next tick. Sends use `MSG_NOSIGNAL`; the process's
//! SIGPIPE disposition is never changed.

mod sys;
mod wake_timer;

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use paste_rt_core::{
    max_datagram, Backend, BackendKind, BufPool, Capabilities, Delivery, IoTable, PoolConfig, RecordKind, RemoteWake,
    SendStep, Shutdown, StartError, Stats, Token, Wait,
};

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

/// Settings of the epoll backend.
#[derive(Debug, Clone)]
pub struct EpollConfig {
    /// The buffer pool (anonymous or file-backed).
    pub pool: PoolConfig,
    /// Most events taken per `epoll_wait`.
    pub max_events: usize,
    /// Most buffers read from one connection at a time (when its readiness event is
    /// applied, or in one walk of the list of sockets that may hold more) before
    /// moving on to the others (fairness); the rest is read at the next walk.
    pub read_budget: u32,
    /// Most connections accepted from one listener per tick.
    pub accept_budget: u32,
}

impl Default for EpollConfig {
    fn default() -> Self {
        EpollConfig { pool: PoolConfig::default(), max_events: 1024, read_budget: 16, accept_budget: 64 }
    }
}

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

    fn list_flush(&mut self, t: Token) {
        if let Some(s) = self.sock(t) {
            if !s.flags.contains(SockFlags::FLUSH_LISTED) {
                s.flags.set(SockFlags::FLUSH_LISTED, true);
                self.to_flush.push(t);
            }
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

    /// Writes the queued data of every socket that has some. The list is walked in
    /// place (a socket listed meanwhile is written too) and emptied; the counters are
    /// added once per walk. The test for none is inlined into the tick; the walk is
    /// not.
    #[inline(always)]
    fn flush_writes(&mut self, io: &mut IoTable) {
        if !self.to_flush.is_empty() {
            self.flush_listed(io);
        }
    }

    /// Walks the flush list (see [`flush_writes`](Self::flush_writes)).
    #[inline(never)]
    fn flush_listed(&mut self, io: &mut IoTable) {
        let mut tally = Tally::default();
        let mut i = 0;
        while let Some(&t) = self.to_flush.get(i) {
            i += 1;
            // One lookup: the socket's state and fd are read together.
            let Some(s) = self.socks.get_mut(t.index()) else { continue };
            s.flags.set(SockFlags::FLUSH_LISTED, false);
            match s.role {
                Role::Stream if !s.flags.intersects(SockFlags::WRITE_BLOCKED | SockFlags::CONNECTING) => {
                    let fd = s.fd;
                    self.flush_stream(io, t, fd, &mut tally);
                }
                Role::Dgram => self.flush_datagrams(io, t),
                _ => {}
            }
        }
        self.to_flush.clear();
        self.stats.syscalls(tally.ops);
        Stats::add(&self.stats.submissions, tally.ops);
        Stats::add(&self.stats.completions, tally.done);
        Stats::add(&self.stats.tx_bytes, tally.bytes);
    }

    /// Writes what `t`'s record has queued (`fd`: its writable, connected socket): one
    /// `send` (or `sendmsg` of up to `MAX_IOV` buffers) at a time until the socket is
    /// full or the queue empty; then a queued shutdown.
    fn flush_stream(&mut self, io: &mut IoTable, t: Token, fd: RawFd, tally: &mut Tally) {
        loop {
            let written = write_queued(io, t, fd, tally);
            // The common end first, one compare: everything went and nothing follows.
            if matches!(written, Written::Step(SendStep::Idle)) {
                return;
            }
            match written {
                Written::Step(SendStep::Data) => {}
                Written::Step(SendStep::Idle | SendStep::Wait) => return,
                Written::Step(SendStep::Close) => return self.close_now(io, t),
                Written::Step(SendStep::Shutdown(how)) => {
                    if shut_down(&self.stats, io, t, fd, how) == SendStep::Close {
                        return self.close_now(io, t);
                    }
                }
                Written::Full(step) => {
                    // The socket is full: the rest waits for EPOLLOUT.
                    self.block_writes(t);
                    if step == SendStep::Close {
                        self.close_now(io, t);
                    }
                    return;
                }
                Written::Failed(errno) => {
                    let step = io.tx_failed(t, errno);
                    return self.follow(io, t, step);
                }
            }
        }
    }

    /// `t`'s socket is full: its writes wait for `EPOLLOUT`.
    fn block_writes(&mut self, t: Token) {
        if let Some(s) = self.socks.get_mut(t.index()) {
            s.flags.set(SockFlags::WRITE_BLOCKED, true);
        }
    }

    /// Sends a datagram socket's queued datagrams, one `sendto` each, until the queue
    /// is empty or the socket buffer is full (then waits for `EPOLLOUT`). A datagram
    /// the kernel refuses is reported with its errno; the rest still go.
    // Off the per-request path: out of line, so the hot loops that reach it keep
    // their registers.
    #[inline(never)]
    fn flush_datagrams(&mut self, io: &mut IoTable, t: Token) {
        let stats = &self.stats;
        let Some(s) = self.socks.get_mut(t.index()) else { return };
        if s.flags.contains(SockFlags::WRITE_BLOCKED) {
            return;
        }
        let fd = s.fd;
        while let Some((data, addr)) = io.next_datagram(t) {
            let r = sys::sendto(stats, fd, data.as_slice(), &addr);
            Stats::add(&stats.submissions, 1);
            let err = match r {
                Ok(n) => {
                    Stats::add(&stats.tx_bytes, n as u64);
                    0
                }
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                    io.unpop_datagram(t, data, addr);
                    s.flags.set(SockFlags::WRITE_BLOCKED, true);
                    return;
                }
                Err(e) => errno(&e),
            };
            Stats::add(&stats.completions, 1);
            drop(data);
            if io.datagram_sent(t, err) == SendStep::Close {
                return self.close_now(io, t);
            }
        }
    }

    /// Accepts from every listener that is ready (or starved and due for a retry).
    /// The test for none is inlined into the tick; the walk is not.
    #[inline(always)]
    fn accept_ready(&mut self, io: &mut IoTable) {
        let freed = std::mem::take(&mut self.fd_freed);
        if !(self.to_accept.is_empty() && self.starved.is_empty()) {
            self.accept_listed(io, freed);
        }
    }

    /// Accepts from the listed listeners and the starved ones due for a retry
    /// (`freed`: an fd was closed since the last look).
    #[inline(never)]
    fn accept_listed(&mut self, io: &mut IoTable, freed: bool) {
        let mut list = std::mem::take(&mut self.to_accept);
        // Starved listeners are retried when an fd was closed or the backoff passed.
        for &(t, since) in &self.starved {
            if (freed || since.elapsed() >= ACCEPT_RETRY) && !list.contains(&t) {
                list.push(t);
            }
        }
        for t in list.drain(..) {
            self.accept_from(io, t);
        }
        // accept_from re-queues listeners whose budget ran out into the fresh list:
        // keep them (edge-triggered epoll will not report them again).
        list.append(&mut self.to_accept);
        self.to_accept = list;
    }

    fn accept_from(&mut self, io: &mut IoTable, t: Token) {
        for _ in 0..self.config.accept_budget {
            let Some(l) = self.socks.get_mut(t.index()).filter(|s| s.role == Role::Listener) else { return };
            match sys::accept(&self.stats, l.fd) {
                Ok(fd) => {
                    if !self.starved.is_empty() {
                        self.starved.retain(|&(l, _)| l != t);
                    }
                    Stats::add(&self.stats.accepts, 1);
                    match io.accepted(t, fd) {
                        Some(new) => self.watch_stream(io, new, false),
                        // SAFETY: the kernel just handed us this fd; nobody else has it.
                        None => sys::close(&self.stats, unsafe { OwnedFd::from_raw_fd(fd) }),
                    }
                }
                Err(e) => match e.raw_os_error() {
                    Some(libc::EAGAIN) => {
                        l.flags.set(SockFlags::ACCEPT_READY, false);
                        self.starved.retain(|&(l, _)| l != t);
                        return;
                    }
                    Some(libc::EINTR | libc::ECONNABORTED | libc::EPROTO) => continue,
                    Some(code) => {
                        // EMFILE, ENFILE, ENOBUFS, ENOMEM: report once per episode,
                        // then retry after a close or the backoff, never in a loop.
                        l.flags.set(SockFlags::ACCEPT_READY, true);
                        let now = Instant::now();
                        let first = match self.starved.iter_mut().find(|(l, _)| *l == t) {
                            Some((_, since)) => {
                                *since = now;
                                false
                            }
                            None => {
                                self.starved.push((t, now));
                                true
                            }
                        };
                        if first {
                            io.accept_failed(t, code);
                        }
                        return;
                    }
                    None => return,
                },
            }
        }
        // Budget used up: more may be waiting.
        if let Some(l) = self.sock(t) {
            l.flags.set(SockFlags::ACCEPT_READY, true);
        }
        self.to_accept.push(t);
    }

    /// Reads every readable, unpaused socket into pool buffers. Returns the buffers
    /// delivered. The list is walked and compacted in place: a socket that may hold
    /// more stays listed; the counters are added once per walk. The test for none is
    /// inlined into the tick; the walk is not.
    #[inline(always)]
    fn read_ready(&mut self, io: &mut IoTable) -> u64 {
        if self.to_read.is_empty() {
            return 0;
        }
        self.read_listed(io)
    }

    /// Walks the read list (see [`read_ready`](Self::read_ready)).
    #[inline(never)]
    fn read_listed(&mut self, io: &mut IoTable) -> u64 {
        let mut tally = Tally::default();
        let mut keep = 0;
        let mut i = 0;
        while let Some(&t) = self.to_read.get(i) {
            i += 1;
            if self.read_one(io, t, &mut tally) {
                // keep < i: a slot already walked.
                self.to_read[keep] = t;
                keep += 1;
            }
        }
        self.to_read.truncate(keep);
        self.count_reads(&tally);
        tally.done
    }

    /// Adds the counts of reads made.
    fn count_reads(&self, tally: &Tally) {
        self.stats.syscalls(tally.ops);
        Stats::add(&self.stats.submissions, tally.ops);
        Stats::add(&self.stats.completions, tally.ops);
        Stats::add(&self.stats.rx_bytes, tally.bytes);
    }

    /// Reads listed socket `t` if it is readable and unpaused (see
    /// [`read_now`](Self::read_now)). Returns whether it stays listed; if not, its
    /// `read_listed` is cleared.
    fn read_one(&mut self, io: &mut IoTable, t: Token, tally: &mut Tally) -> bool {
        let Some(s) = self.socks.get_mut(t.index()) else { return false };
        let more = s.can_read() && self.read_now(io, t, tally);
        if !more {
            if let Some(s) = self.socks.get_mut(t.index()) {
                s.flags.set(SockFlags::READ_LISTED, false);
            }
        }
        more
    }

    /// Reads readable, unpaused socket `t` until a short read (which drained the
    /// socket: the next arrival is a new edge), the end, a pause, a dry pool or the
    /// read budget. Returns whether it may hold more (the budget ran out or the pool
    /// is dry): the caller lists it.
    #[inline(always)]
    fn read_now(&mut self, io: &mut IoTable, t: Token, tally: &mut Tally) -> bool {
        let Some(s) = self.socks.get_mut(t.index()) else { return false };
        if s.role == Role::Dgram {
            let (more, n) = self.read_datagrams(io, t);
            tally.done += n;
            return more;
        }
        let stats = &self.stats;
        let pool = &self.pool;
        let size = pool.buf_size();
        let budget = u64::from(self.config.read_budget);
        let mut delivered = 0;
        let more = loop {
            if delivered >= budget {
                break true;
            }
            let Some(index) = pool.alloc() else {
                Stats::add(&stats.pool_exhausted, 1);
                break true;
            };
            tally.ops += 1;
            // SAFETY: `index` was just allocated, so its `size` bytes are ours.
            let r = unsafe { sys::read(s.fd, pool.buf_ptr(index), size as usize) };
            match r {
                Ok(0) => {
                    // SAFETY: the buffer was allocated above and not lent.
                    unsafe { pool.release(index) };
                    s.flags.set(SockFlags::RX_DONE, true);
                    s.flags.set(SockFlags::READABLE, false);
                    io.eof(t);
                    break false;
                }
                Ok(n) => {
                    tally.bytes += n as u64;
                    delivered += 1;
                    // SAFETY: the buffer came from `alloc` above and is handed over
                    // here; `n <= size` bytes were read.
                    let buf = unsafe { pool.lend_allocated_rx(index, 0, n as u32) };
                    if io.deliver(t, buf) == Delivery::Pause {
                        s.flags.set(SockFlags::PAUSED, true);
                    }
                    if (n as u32) < size && !s.flags.contains(SockFlags::HUP) {
                        // A short read drained the socket; the next edge says more.
                        s.flags.set(SockFlags::READABLE, false);
                        break false;
                    }
                    if s.flags.contains(SockFlags::PAUSED) {
                        break false;
                    }
                }
                Err(e) => {
                    // SAFETY: the buffer was allocated above and not lent.
                    unsafe { pool.release(index) };
                    match e {
                        sys::Errno::AGAIN => {
                            s.flags.set(SockFlags::READABLE, false);
                            break false;
                        }
                        sys::Errno::INTR => continue,
                        _ => {
                            s.flags.set(SockFlags::READABLE, false);
                            tally.done += delivered;
                            self.fail_stream(io, t, e.raw_os_error());
                            return false;
                        }
                    }
                }
            }
        };
        tally.done += delivered;
        more
    }

    /// Reads up to the read budget of datagrams of a readable, unpaused socket into
    /// pool buffers, one `recvfrom` each. Returns (still readable, buffers delivered).
    // Off the per-request path: out of line, so the hot loops that reach it keep
    // their registers.
    #[inline(never)]
    fn read_datagrams(&mut self, io: &mut IoTable, t: Token) -> (bool, u64) {
        let stats = &self.stats;
        let pool = &self.pool;
        let Some(s) = self.socks.get_mut(t.index()) else { return (false, 0) };
        let cap = max_datagram(pool.buf_size());
        let mut delivered = 0;
        while delivered < self.config.read_budget as u64 {
            let Some(index) = pool.alloc() else {
                Stats::add(&stats.pool_exhausted, 1);
                return (true, delivered);
            };
            // SAFETY: `index` was just allocated; cap <= buf_size bytes of it are ours.
            let r = unsafe { sys::recvfrom(stats, s.fd, pool.buf_ptr(index), cap as usize) };
            match r {
                Ok((n, Some(from))) => {
                    let len = (n as u32).min(cap);
                    Stats::add(&stats.rx_bytes, len as u64);
                    delivered += 1;
                    // SAFETY: the buffer is ours and `len <= cap` bytes were written.
                    let buf = unsafe { pool.lend_rx(index, 0, len) };
                    if io.deliver_datagram(t, buf, from, n as u32 > cap) == Delivery::Pause {
                        s.flags.set(SockFlags::PAUSED, true);
                        return (false, delivered);
                    }
                }
                Ok((_, None)) => {
                    // Not an IP source (cannot happen on a UDP socket): skip it.
                    // SAFETY: the buffer was allocated above and not lent.
                    unsafe { pool.release(index) };
                }
                Err(e) => {
                    // SAFETY: the buffer was allocated above and not lent.
                    unsafe { pool.release(index) };
                    match e.raw_os_error() {
                        Some(libc::EAGAIN) => {
                            s.flags.set(SockFlags::READABLE, false);
                            return (false, delivered);
                        }
                        // A pending ICMP error of an earlier send: reading consumed it.
                        Some(libc::EINTR | libc::ECONNREFUSED) => continue,
                        _ => {
                            s.flags.set(SockFlags::READABLE, false);
                            s.flags.set(SockFlags::RX_DONE, true);
                            io.dgram_failed(t, errno(&e));
                            return (false, delivered);
                        }
                    }
                }
            }
        }
        (true, delivered)
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

    /// Listener `t` has connections waiting: list it for accepting (unless it is
    /// starved: then it waits for its retry). Out of line: not per request.
    #[inline(never)]
    fn listener_ready(&mut self, t: Token) {
        let Some(l) = self.socks.get_mut(t.index()) else { return };
        l.flags.set(SockFlags::ACCEPT_READY, true);
        if !self.starved.iter().any(|&(s, _)| s == t) && !self.to_accept.contains(&t) {
            self.to_accept.push(t);
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

    /// Whether a read is possible right now without waiting.
    fn can_read_now(&self) -> bool {
        self.pool.free_count() > 0 && self.to_read.iter().any(|t| self.socks.get(t.index()).is_some_and(Sock::can_read))
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

/// How a run of writes from a stream's queue ended.
enum Written {
    /// Everything that could go went; the next step (never `Data` after a write:
    /// the loop goes on then).
    Step(SendStep),
    /// The socket took less than offered (full): the next step once it drains.
    Full(SendStep),
    /// The kernel refused with this errno.
    Failed(i32),
}

/// Writes `t`'s queue to `fd`, one `send` (or `sendmsg` of up to `MAX_IOV`
/// buffers) at a time, until the queue is done, the socket is full or a write
/// fails: one record lookup for the whole run.
#[inline(always)]
fn write_queued(io: &mut IoTable, t: Token, fd: RawFd, tally: &mut Tally) -> Written {
    let Some(mut tx) = io.stream_send(t) else { return Written::Step(SendStep::Idle) };
    let mut step = tx.step();
    while step == SendStep::Data {
        tally.ops += 1;
        let queue = tx.queue();
        let (r, want) = match queue.front() {
            // The common case, one item: a plain send, no iovec array.
            Some(front) if queue.len() == 1 => (sys::send(fd, front), front.len()),
            _ => {
                // Left uninitialised (no 1 KiB of zeroes per send): only the
                // entries `gather` fills are read.
                let mut iov = [std::mem::MaybeUninit::<libc::iovec>::uninit(); MAX_IOV];
                let mut n = 0;
                let mut want = 0;
                queue.gather(MAX_IOV, |b| {
                    iov[n].write(libc::iovec { iov_base: b.as_ptr() as *mut libc::c_void, iov_len: b.len() });
                    want += b.len();
                    n += 1;
                });
                // SAFETY: `gather` hands out at most MAX_IOV buffers and the first
                // `n` entries were written just above; MaybeUninit<iovec> has
                // iovec's layout.
                let iov = unsafe { std::slice::from_raw_parts(iov.as_ptr().cast::<libc::iovec>(), n) };
                (sys::sendv(fd, iov), want)
            }
        };
        match r {
            Ok(w) => {
                tally.done += 1;
                tally.bytes += w as u64;
                step = tx.sent(w as u64);
                if w < want {
                    return Written::Full(step);
                }
            }
            Err(sys::Errno::AGAIN) => return Written::Full(step),
            Err(sys::Errno::INTR) => {}
            Err(e) => return Written::Failed(e.raw_os_error()),
        }
    }
    Written::Step(step)
}

/// Shuts down `how` of `t`'s socket `fd` (its queue is empty) and returns the next
/// step. Out of line: once per connection at most, never per request.
#[inline(never)]
fn shut_down(stats: &Stats, io: &mut IoTable, t: Token, fd: RawFd, how: Shutdown) -> SendStep {
    let err = sys::shutdown(stats, fd, how.how()).err().map_or(0, |e| errno(&e));
    io.shutdown_done(t, err)
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
