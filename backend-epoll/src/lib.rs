//! # paste-rt-epoll — the baseline backend
//!
//! Edge-triggered epoll with one `read` per ready connection into pool buffers and
//! one `send`/`writev` per connection with queued data, flushed at the tick
//! (docs/architecture.md, the backends). Same contract as the io_uring and PASTE backends, and exactly the
//! per-connection system calls PASTE removes — which is what makes it the honest
//! baseline of the A/B comparison.
//!
//! Datagram (UDP) sockets (`BindDgram`) are read with one `recvfrom` per datagram
//! into pool buffers (until `EAGAIN` or the read budget) and written with one
//! `sendto` per queued datagram at the flush.
//!
//! The backend owns every fd handed to it (`Listen`, `Register`, `Connect`,
//! `BindDgram`) and closes them on `Close`. It never touches the executor, and makes every system
//! call inside [`Backend::poll`] (see `sys`, where each one is counted).

mod sys;
mod txqueue;

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use paste_rt_core::{
    max_datagram, Backend, BackendKind, BufPool, Completion, Op, PoolConfig, RemoteWake, SendData, Shutdown,
    StartError, Stats, Token,
};

use txqueue::{Flushed, TxQueue};

/// How long a listener that hit `EMFILE`/`ENFILE` waits before trying again when no
/// fd was closed meanwhile.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// epoll user data of the wake-up eventfd.
const WAKE_DATA: u64 = u64::MAX;

/// Settings of the epoll backend.
#[derive(Debug, Clone)]
pub struct EpollConfig {
    /// The buffer pool (anonymous or file-backed).
    pub pool: PoolConfig,
    /// Most events taken per `epoll_wait`.
    pub max_events: usize,
    /// Most buffers read from one connection per tick before moving on to the
    /// others (fairness); the rest is read at the next tick.
    pub read_budget: u32,
    /// Most connections accepted from one listener per tick.
    pub accept_budget: u32,
}

impl Default for EpollConfig {
    fn default() -> Self {
        EpollConfig { pool: PoolConfig::default(), max_events: 1024, read_budget: 16, accept_budget: 64 }
    }
}

/// A listener's accept state.
#[derive(Debug)]
struct Listener {
    fd: OwnedFd,
    /// More connections may be waiting (budget ran out, or edge seen).
    ready: bool,
    /// Accept failed for lack of fds (errno) at this moment; retried after a close
    /// or after `ACCEPT_RETRY`.
    starved: Option<Instant>,
}

/// A connection's state.
#[derive(Debug)]
struct Conn {
    fd: OwnedFd,
    tx: TxQueue,
    /// The socket may hold unread data (edge seen, not yet read to EAGAIN).
    readable: bool,
    /// The peer's FIN or an error was seen in the event mask.
    hup: bool,
    /// Receiving is paused by the runtime (backpressure).
    paused: bool,
    /// No more reads: EOF or an error was reported.
    rx_done: bool,
    /// `send` hit EAGAIN; wait for EPOLLOUT.
    write_blocked: bool,
    /// The connection is in the ready-to-read list already.
    listed: bool,
    /// A `Connect` is in progress.
    connecting: bool,
    /// Shut down writing once the queue drains.
    shutdown_pending: bool,
}

/// A datagram socket's state.
#[derive(Debug)]
struct Dgram {
    fd: OwnedFd,
    /// Datagrams waiting for `sendto`, oldest first (the deque is reused: no
    /// allocation per datagram once it has grown).
    txq: VecDeque<(SendData, SocketAddr)>,
    /// The socket may hold unread datagrams.
    readable: bool,
    /// Receiving is paused by the runtime (backpressure).
    paused: bool,
    /// A receive error was reported: no more reads.
    rx_done: bool,
    /// `sendto` hit EAGAIN; wait for EPOLLOUT.
    write_blocked: bool,
    /// The socket is in the ready-to-read list already.
    listed: bool,
}

#[derive(Debug)]
enum Entry {
    Listener(Listener),
    Conn(Conn),
    Dgram(Dgram),
}

/// The epoll backend. See the crate docs.
pub struct EpollBackend {
    epfd: OwnedFd,
    waker: Arc<EventFdWaker>,
    pool: BufPool,
    stats: Stats,
    config: EpollConfig,
    entries: Vec<Option<Entry>>,
    ops: Vec<Op>,
    events: Vec<libc::epoll_event>,
    /// Connections with data to read this tick.
    to_read: Vec<Token>,
    /// Connections with sends to flush this tick.
    to_flush: Vec<Token>,
    /// Listeners to accept from this tick.
    to_accept: Vec<Token>,
    /// An fd was closed this tick: starved listeners may accept again.
    fd_freed: bool,
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
        let pool = BufPool::new(&config.pool, 0).map_err(|e| fail("buffer pool", e))?;
        sys::ignore_sigpipe();
        Ok(EpollBackend {
            epfd,
            waker: Arc::new(EventFdWaker { fd: efd, pending: AtomicBool::new(false) }),
            pool,
            stats,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; config.max_events.max(1)],
            config,
            entries: Vec::new(),
            ops: Vec::with_capacity(256),
            to_read: Vec::with_capacity(256),
            to_flush: Vec::with_capacity(256),
            to_accept: Vec::new(),
            fd_freed: false,
        })
    }

    fn conn(&mut self, token: Token) -> Option<&mut Conn> {
        match self.entries.get_mut(token.0 as usize) {
            Some(Some(Entry::Conn(c))) => Some(c),
            _ => None,
        }
    }

    fn insert(&mut self, token: Token, entry: Entry) {
        let i = token.0 as usize;
        if self.entries.len() <= i {
            self.entries.resize_with(i + 1, || None);
        }
        debug_assert!(self.entries[i].is_none(), "token {i} reused before Close");
        self.entries[i] = Some(entry);
    }

    /// Applies the ops queued since the last poll, in order.
    fn apply_ops(&mut self, out: &mut Vec<Completion>) {
        let mut ops = std::mem::take(&mut self.ops);
        for op in ops.drain(..) {
            self.apply(op, out);
        }
        self.ops = ops;
    }

    fn apply(&mut self, op: Op, out: &mut Vec<Completion>) {
        match op {
            Op::Listen { token, fd } => {
                // SAFETY: the runtime hands over ownership of a listening socket.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                let ev = (libc::EPOLLIN | libc::EPOLLET) as u32;
                if let Err(e) = sys::epoll_add(&self.stats, &self.epfd, fd.as_raw_fd(), ev, token.0 as u64) {
                    out.push(Completion::AcceptError { listener: token, errno: errno(&e) });
                }
                self.insert(token, Entry::Listener(Listener { fd, ready: true, starved: None }));
                self.to_accept.push(token);
            }
            Op::Register { token, fd } => {
                // SAFETY: the runtime hands over ownership of a connected socket.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                let failed = self.watch(&fd, token).err();
                self.insert(token, Entry::Conn(Conn::new(fd, false)));
                if let Some(e) = failed {
                    self.fail_conn(token, errno(&e), out);
                }
            }
            Op::Connect { token, fd, addr } => {
                // SAFETY: the runtime hands over ownership of a fresh socket.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                let result = sys::connect(&self.stats, fd.as_raw_fd(), &addr).and_then(|done| {
                    self.watch(&fd, token)?;
                    Ok(done)
                });
                self.insert(token, Entry::Conn(Conn::new(fd, true)));
                match result {
                    Ok(true) => self.connected(token, 0, out),
                    Ok(false) => {}
                    Err(e) => self.connected(token, errno(&e), out),
                }
            }
            Op::PauseRecv(token) => match self.entries.get_mut(token.0 as usize) {
                Some(Some(Entry::Conn(c))) => c.paused = true,
                Some(Some(Entry::Dgram(d))) => d.paused = true,
                _ => {}
            },
            Op::ResumeRecv(token) => {
                let (readable, listed) = match self.entries.get_mut(token.0 as usize) {
                    Some(Some(Entry::Conn(c))) => {
                        c.paused = false;
                        (c.readable, &mut c.listed)
                    }
                    Some(Some(Entry::Dgram(d))) => {
                        d.paused = false;
                        (d.readable, &mut d.listed)
                    }
                    _ => return,
                };
                if readable && !*listed {
                    *listed = true;
                    self.to_read.push(token);
                }
            }
            Op::Send { token, data } => {
                if let Some(c) = self.conn(token) {
                    c.tx.push(data);
                    if !c.write_blocked && !c.connecting {
                        self.to_flush.push(token);
                    }
                }
            }
            Op::Shutdown { token, how } => self.shutdown(token, how, out),
            Op::Close(token) => self.close(token),
            Op::BindDgram { token, fd } => {
                // SAFETY: the runtime hands over ownership of a bound datagram socket.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                let ev = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLET) as u32;
                let failed = sys::epoll_add(&self.stats, &self.epfd, fd.as_raw_fd(), ev, token.0 as u64).err();
                let rx_done = failed.is_some();
                self.insert(
                    token,
                    Entry::Dgram(Dgram {
                        fd,
                        txq: VecDeque::new(),
                        readable: false,
                        paused: false,
                        rx_done,
                        write_blocked: false,
                        listed: false,
                    }),
                );
                if let Some(e) = failed {
                    out.push(Completion::RecvError { token, errno: errno(&e) });
                }
            }
            Op::SendTo { token, data, addr } => {
                if let Some(Some(Entry::Dgram(d))) = self.entries.get_mut(token.0 as usize) {
                    d.txq.push_back((data, addr));
                    if !d.write_blocked {
                        self.to_flush.push(token);
                    }
                }
            }
        }
    }

    /// Registers a connection for reads, writes and hang-ups, edge-triggered, once:
    /// no `epoll_ctl(MOD)` is ever needed afterwards.
    fn watch(&self, fd: &OwnedFd, token: Token) -> io::Result<()> {
        let ev = libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET;
        sys::epoll_add(&self.stats, &self.epfd, fd.as_raw_fd(), ev as u32, token.0 as u64)
    }

    fn connected(&mut self, token: Token, err: i32, out: &mut Vec<Completion>) {
        out.push(Completion::Connected { token, errno: err });
        if let Some(c) = self.conn(token) {
            c.connecting = false;
            if err != 0 {
                c.rx_done = true;
            } else if !c.tx.is_empty() {
                self.to_flush.push(token);
            }
        }
    }

    fn shutdown(&mut self, token: Token, how: Shutdown, out: &mut Vec<Completion>) {
        let stats = &self.stats;
        let Some(Some(Entry::Conn(c))) = self.entries.get_mut(token.0 as usize) else { return };
        let (read, write) = match how {
            Shutdown::Read => (true, false),
            Shutdown::Write => (false, true),
            Shutdown::Both => (true, true),
        };
        if read {
            let _ = sys::shutdown(stats, c.fd.as_raw_fd(), libc::SHUT_RD);
        }
        if write {
            if c.tx.is_empty() && !c.connecting {
                if let Err(e) = sys::shutdown(stats, c.fd.as_raw_fd(), libc::SHUT_WR) {
                    out.push(Completion::SendError { token, errno: errno(&e) });
                }
            } else {
                c.shutdown_pending = true;
            }
        }
    }

    fn close(&mut self, token: Token) {
        let Some(entry) = self.entries.get_mut(token.0 as usize).and_then(Option::take) else { return };
        match entry {
            Entry::Listener(l) => sys::close(&self.stats, l.fd),
            // Queued datagrams are dropped: the runtime closes a socket only once
            // they were sent (or at shutdown, when they are abandoned).
            Entry::Dgram(d) => sys::close(&self.stats, d.fd),
            Entry::Conn(mut c) => {
                // Best effort: data queued right before a close (a last response)
                // goes out if the socket takes it now.
                if !c.tx.is_empty() && !c.write_blocked && !c.connecting {
                    let _ = c.tx.flush(&self.stats, c.fd.as_raw_fd());
                }
                sys::close(&self.stats, c.fd);
            }
        }
        self.fd_freed = true;
    }

    fn fail_conn(&mut self, token: Token, err: i32, out: &mut Vec<Completion>) {
        if let Some(c) = self.conn(token) {
            c.tx.clear();
            let report = !c.rx_done;
            c.rx_done = true;
            if report {
                out.push(Completion::RecvError { token, errno: err });
            }
        }
    }

    /// Writes the queued data of every connection that has some.
    fn flush_writes(&mut self, out: &mut Vec<Completion>) {
        let mut list = std::mem::take(&mut self.to_flush);
        for token in list.drain(..) {
            self.flush_one(token, out);
        }
        self.to_flush = list;
    }

    fn flush_one(&mut self, token: Token, out: &mut Vec<Completion>) {
        let stats = &self.stats;
        let c = match self.entries.get_mut(token.0 as usize) {
            Some(Some(Entry::Conn(c))) => c,
            Some(Some(Entry::Dgram(d))) => return flush_datagrams(stats, token, d, out),
            _ => return,
        };
        if c.tx.is_empty() || c.write_blocked || c.connecting {
            return;
        }
        match c.tx.flush(stats, c.fd.as_raw_fd()) {
            Ok(Flushed::All { bytes }) => {
                if bytes > 0 {
                    out.push(Completion::Sent { token, bytes: bytes as u32 });
                }
                if c.shutdown_pending {
                    c.shutdown_pending = false;
                    if let Err(e) = sys::shutdown(stats, c.fd.as_raw_fd(), libc::SHUT_WR) {
                        out.push(Completion::SendError { token, errno: errno(&e) });
                    }
                }
            }
            Ok(Flushed::Blocked { bytes }) => {
                c.write_blocked = true;
                if bytes > 0 {
                    out.push(Completion::Sent { token, bytes: bytes as u32 });
                }
            }
            Err(e) => {
                c.tx.clear();
                c.shutdown_pending = false;
                out.push(Completion::SendError { token, errno: errno(&e) });
            }
        }
    }

    /// Accepts from every listener that is ready (or starved and due for a retry).
    fn accept_ready(&mut self, out: &mut Vec<Completion>) {
        let now_due = |l: &Listener| match l.starved {
            None => l.ready,
            Some(since) => since.elapsed() >= ACCEPT_RETRY,
        };
        let freed = std::mem::take(&mut self.fd_freed);
        let mut list = std::mem::take(&mut self.to_accept);
        // Starved listeners are retried when an fd was closed or the backoff passed.
        for (i, e) in self.entries.iter().enumerate() {
            if let Some(Entry::Listener(l)) = e {
                if l.starved.is_some() && (freed || now_due(l)) && !list.contains(&Token(i as u32)) {
                    list.push(Token(i as u32));
                }
            }
        }
        for token in list.drain(..) {
            self.accept_from(token, out);
        }
        // accept_from re-queues listeners whose budget ran out into the fresh list:
        // keep them (edge-triggered epoll will not report them again).
        list.append(&mut self.to_accept);
        self.to_accept = list;
    }

    fn accept_from(&mut self, token: Token, out: &mut Vec<Completion>) {
        let stats = &self.stats;
        let Some(Some(Entry::Listener(l))) = self.entries.get_mut(token.0 as usize) else { return };
        for _ in 0..self.config.accept_budget {
            match sys::accept(stats, l.fd.as_raw_fd()) {
                Ok(fd) => {
                    Stats::add(&stats.accepts, 1);
                    l.starved = None;
                    out.push(Completion::Accepted { listener: token, fd });
                }
                Err(e) => match e.raw_os_error() {
                    Some(libc::EAGAIN) => {
                        l.ready = false;
                        l.starved = None;
                        return;
                    }
                    Some(libc::EINTR | libc::ECONNABORTED | libc::EPROTO) => continue,
                    Some(code) => {
                        // EMFILE, ENFILE, ENOBUFS, ENOMEM: report once per episode,
                        // then retry after a close or the backoff, never in a loop.
                        if l.starved.is_none() {
                            out.push(Completion::AcceptError { listener: token, errno: code });
                        }
                        l.starved = Some(Instant::now());
                        l.ready = true;
                        return;
                    }
                    None => return,
                },
            }
        }
        // Budget used up: more may be waiting.
        l.ready = true;
        self.to_accept.push(token);
    }

    /// Reads every readable, unpaused connection into pool buffers.
    fn read_ready(&mut self, out: &mut Vec<Completion>) -> u64 {
        let mut delivered = 0;
        let mut list = std::mem::take(&mut self.to_read);
        let mut keep = 0;
        for i in 0..list.len() {
            let token = list[i];
            let (more, n) = self.read_one(token, out);
            delivered += n;
            if more {
                list[keep] = token;
                keep += 1;
            } else {
                match self.entries.get_mut(token.0 as usize) {
                    Some(Some(Entry::Conn(c))) => c.listed = false,
                    Some(Some(Entry::Dgram(d))) => d.listed = false,
                    _ => {}
                }
            }
        }
        list.truncate(keep);
        self.to_read = list;
        delivered
    }

    /// Returns (still readable and should stay listed, buffers delivered).
    fn read_one(&mut self, token: Token, out: &mut Vec<Completion>) -> (bool, u64) {
        let stats = &self.stats;
        let pool = &self.pool;
        let budget = self.config.read_budget;
        let c = match self.entries.get_mut(token.0 as usize) {
            Some(Some(Entry::Conn(c))) => c,
            Some(Some(Entry::Dgram(d))) => return read_datagrams(stats, pool, budget, token, d, out),
            _ => return (false, 0),
        };
        if c.rx_done || c.paused || !c.readable {
            return (false, 0);
        }
        let size = pool.buf_size();
        let mut delivered = 0;
        while delivered < budget as u64 {
            let Some(index) = pool.alloc() else {
                Stats::add(&stats.pool_exhausted, 1);
                return (true, delivered);
            };
            // SAFETY: `index` was just allocated, so its `size` bytes are ours.
            let r = unsafe { sys::read(stats, c.fd.as_raw_fd(), pool.buf_ptr(index), size as usize) };
            match r {
                Ok(0) => {
                    // SAFETY: the buffer was allocated above and not lent.
                    unsafe { pool.release(index) };
                    c.rx_done = true;
                    c.readable = false;
                    out.push(Completion::Eof(token));
                    return (false, delivered);
                }
                Ok(n) => {
                    Stats::add(&stats.rx_bytes, n as u64);
                    delivered += 1;
                    // SAFETY: the buffer is ours and `n <= size` bytes were read.
                    out.push(Completion::Recv { token, buf: unsafe { pool.lend_rx(index, 0, n as u32) } });
                    if (n as u32) < size && !c.hup {
                        // A short read drained the socket; the next edge says more.
                        c.readable = false;
                        return (false, delivered);
                    }
                }
                Err(e) => {
                    // SAFETY: the buffer was allocated above and not lent.
                    unsafe { pool.release(index) };
                    match e.raw_os_error() {
                        Some(libc::EAGAIN) => c.readable = false,
                        Some(libc::EINTR) => continue,
                        _ => {
                            c.readable = false;
                            c.rx_done = true;
                            c.tx.clear();
                            out.push(Completion::RecvError { token, errno: errno(&e) });
                        }
                    }
                    return (false, delivered);
                }
            }
        }
        (true, delivered)
    }

    fn handle_event(&mut self, data: u64, events: u32, out: &mut Vec<Completion>) {
        if data == WAKE_DATA {
            // Edge-triggered: every write to the eventfd is a new edge, so it is
            // never read (one syscall saved per wake-up).
            Stats::add(&self.stats.remote_wakeups, 1);
            return;
        }
        let token = Token(data as u32);
        let stats = &self.stats;
        match self.entries.get_mut(token.0 as usize) {
            Some(Some(Entry::Listener(l))) => {
                l.ready = true;
                if l.starved.is_none() && !self.to_accept.contains(&token) {
                    self.to_accept.push(token);
                }
            }
            Some(Some(Entry::Conn(c))) => {
                let ev = events as i32;
                if c.connecting && ev & (libc::EPOLLOUT | libc::EPOLLERR | libc::EPOLLHUP) != 0 {
                    let err = sys::take_socket_error(stats, c.fd.as_raw_fd());
                    self.connected(token, err, out);
                    return self.handle_event_rest(token, ev);
                }
                self.handle_event_rest(token, ev);
            }
            Some(Some(Entry::Dgram(d))) => {
                let ev = events as i32;
                if ev & (libc::EPOLLIN | libc::EPOLLERR) != 0 && !d.rx_done {
                    d.readable = true;
                    if !d.listed {
                        d.listed = true;
                        self.to_read.push(token);
                    }
                }
                if ev & libc::EPOLLOUT != 0 && d.write_blocked {
                    d.write_blocked = false;
                    self.to_flush.push(token);
                }
            }
            _ => {}
        }
    }

    fn handle_event_rest(&mut self, token: Token, ev: i32) {
        let Some(c) = self.conn(token) else { return };
        if ev & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) != 0 && !c.rx_done {
            c.readable = true;
            if ev & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) != 0 {
                c.hup = true;
            }
            if !c.listed {
                c.listed = true;
                self.to_read.push(token);
            }
        }
        let Some(c) = self.conn(token) else { return };
        if ev & libc::EPOLLOUT != 0 && c.write_blocked {
            c.write_blocked = false;
            self.to_flush.push(token);
        }
    }

    /// Whether a read is possible right now without waiting.
    fn can_read_now(&self) -> bool {
        self.pool.free_count() > 0
            && self.to_read.iter().any(|t| match &self.entries[t.0 as usize] {
                Some(Entry::Conn(c)) => c.readable && !c.paused && !c.rx_done,
                Some(Entry::Dgram(d)) => d.readable && !d.paused && !d.rx_done,
                _ => false,
            })
    }

    /// The longest the wait may last given starved listeners.
    fn cap_for_retries(&self, timeout: Option<Duration>) -> Option<Duration> {
        let starved = self.entries.iter().any(|e| matches!(e, Some(Entry::Listener(l)) if l.starved.is_some()));
        match (starved, timeout) {
            (false, t) => t,
            (true, None) => Some(ACCEPT_RETRY),
            (true, Some(t)) => Some(t.min(ACCEPT_RETRY)),
        }
    }
}

impl Conn {
    fn new(fd: OwnedFd, connecting: bool) -> Conn {
        Conn {
            fd,
            tx: TxQueue::default(),
            readable: false,
            hup: false,
            paused: false,
            rx_done: false,
            write_blocked: false,
            listed: false,
            connecting,
            shutdown_pending: false,
        }
    }
}

impl Backend for EpollBackend {
    fn remote_waker(&self) -> Arc<dyn RemoteWake> {
        self.waker.clone()
    }

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

    fn pool(&self) -> &BufPool {
        &self.pool
    }

    fn stats(&self) -> &Stats {
        &self.stats
    }

    fn submit(&mut self, op: Op) {
        self.ops.push(op);
    }

    fn flush_and_wait(&mut self, timeout: Option<Duration>, out: &mut Vec<Completion>) -> io::Result<()> {
        self.poll_inner(timeout, out)
    }
}

impl EpollBackend {
    /// The body of `poll`: ops, flush, accept, read, wait, events, read again.
    fn poll_inner(&mut self, timeout: Option<Duration>, out: &mut Vec<Completion>) -> io::Result<()> {
        let before = out.len();
        self.apply_ops(out);
        self.flush_writes(out);
        self.accept_ready(out);
        let mut rx = self.read_ready(out);

        let busy = out.len() > before || !self.to_accept.is_empty() || self.can_read_now();
        let timeout = if busy { Some(Duration::ZERO) } else { self.cap_for_retries(timeout) };
        let ms = match timeout {
            None => -1,
            Some(t) => t.as_millis().min(i32::MAX as u128) as i32 + i32::from(t.subsec_nanos() % 1_000_000 != 0),
        };
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
        for ev in &events[..n] {
            let (data, mask) = (ev.u64, ev.events);
            self.handle_event(data, mask, out);
        }
        self.events = events;
        self.flush_writes(out);
        self.accept_ready(out);
        rx += self.read_ready(out);

        if rx > 0 {
            Stats::add(&self.stats.rx_buffers, rx);
            Stats::add(&self.stats.rx_batches, 1);
        }
        Stats::add(&self.stats.completions, (out.len() - before) as u64);
        Ok(())
    }
}

/// Sends a datagram socket's queued datagrams, one `sendto` each, until the queue
/// is empty or the socket buffer is full (then waits for `EPOLLOUT`). A datagram the
/// kernel refuses completes with its errno and is dropped; the rest still go.
fn flush_datagrams(stats: &Stats, token: Token, d: &mut Dgram, out: &mut Vec<Completion>) {
    if d.write_blocked {
        return;
    }
    while let Some((data, addr)) = d.txq.front() {
        let bytes = data.len() as u32;
        match sys::sendto(stats, d.fd.as_raw_fd(), data.as_slice(), addr) {
            Ok(n) => {
                Stats::add(&stats.tx_bytes, n as u64);
                out.push(Completion::SentTo { token, bytes, errno: 0 });
            }
            Err(e) => match e.raw_os_error() {
                Some(libc::EAGAIN) => {
                    d.write_blocked = true;
                    return;
                }
                Some(libc::EINTR) => continue,
                _ => out.push(Completion::SentTo { token, bytes, errno: errno(&e) }),
            },
        }
        d.txq.pop_front();
    }
}

/// Reads up to `budget` datagrams of a readable, unpaused socket into pool buffers,
/// one `recvfrom` each. Returns (still readable and should stay listed, buffers
/// delivered).
fn read_datagrams(
    stats: &Stats,
    pool: &BufPool,
    budget: u32,
    token: Token,
    d: &mut Dgram,
    out: &mut Vec<Completion>,
) -> (bool, u64) {
    if d.rx_done || d.paused || !d.readable {
        return (false, 0);
    }
    let cap = max_datagram(pool.buf_size());
    let mut delivered = 0;
    while delivered < budget as u64 {
        let Some(index) = pool.alloc() else {
            Stats::add(&stats.pool_exhausted, 1);
            return (true, delivered);
        };
        // SAFETY: `index` was just allocated; cap <= buf_size bytes of it are ours.
        let r = unsafe { sys::recvfrom(stats, d.fd.as_raw_fd(), pool.buf_ptr(index), cap as usize) };
        match r {
            Ok((n, Some(from))) => {
                let len = (n as u32).min(cap);
                Stats::add(&stats.rx_bytes, len as u64);
                delivered += 1;
                // SAFETY: the buffer is ours and `len <= cap` bytes were written.
                let buf = unsafe { pool.lend_rx(index, 0, len) };
                out.push(Completion::RecvFrom { token, buf, from, truncated: n as u32 > cap });
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
                        d.readable = false;
                        return (false, delivered);
                    }
                    // A pending ICMP error of an earlier send: reading consumed it.
                    Some(libc::EINTR | libc::ECONNREFUSED) => continue,
                    _ => {
                        d.readable = false;
                        d.rx_done = true;
                        out.push(Completion::RecvError { token, errno: errno(&e) });
                        return (false, delivered);
                    }
                }
            }
        }
    }
    (true, delivered)
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
