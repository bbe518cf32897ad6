//! The runtime's side of I/O: per-connection and per-listener state, and the
//! dispatch of completions to it (step 3 of the tick).
//!
//! Owns the token space (a slab shared by connections, listeners and datagram
//! sockets), each connection's queue of received buffers (each datagram socket's
//! queue of received datagrams), its wakers and its send accounting, and the
//! backpressure policy: pause receiving when a queue is long, resume when the
//! application drains it. It also owns the coarse receive deadlines
//! ([`Driver::set_recv_deadline`]): a sweep in the tick, at most every
//! [`DEADLINE_GRANULARITY`] (or when the earliest deadline passes), marks the
//! connections whose deadline has passed and wakes their receivers. It never makes a
//! system call: every request goes to the backend as an [`Op`].

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::task::Waker;
use std::time::{Duration, Instant};

use paste_rt_core::{BufPool, Completion, Op, RxBuf, RxQueue, Token};
use slab::Slab;

use crate::select::AnyBackend;

/// Buffers a connection may have waiting before its receiving pauses.
pub(crate) const RX_PAUSE_AT: usize = 64;
/// Receiving resumes when the queue is back at or below this.
pub(crate) const RX_RESUME_AT: usize = 16;
/// Bytes queued for sending beyond which `send`/`write_all` wait.
pub(crate) const TX_HIGH_WATER: u64 = 256 * 1024;
/// Datagrams queued for sending beyond which `send_to` waits.
pub(crate) const DGRAM_TX_HIGH_WATER: u32 = 128;
/// How often, at most, the tick walks the connections that have a receive deadline
/// (sooner only when the earliest deadline passes): a deadline is reported at most
/// this late.
pub(crate) const DEADLINE_GRANULARITY: Duration = Duration::from_millis(100);

/// State of one connection.
#[derive(Debug, Default)]
pub(crate) struct Conn {
    pub(crate) fd: RawFd,
    pub(crate) rx: RxQueue,
    pub(crate) rx_waker: Option<Waker>,
    /// The peer sent FIN.
    pub(crate) eof: bool,
    /// Receiving failed with this errno.
    pub(crate) rx_error: Option<i32>,
    pub(crate) paused: bool,
    /// Bytes queued to the backend and not yet reported sent.
    pub(crate) tx_queued: u64,
    pub(crate) tx_error: Option<i32>,
    pub(crate) tx_waker: Option<Waker>,
    /// `None` while a connect is pending, then `Some(errno)` (0 = ok).
    pub(crate) connect: Option<i32>,
    /// The handle was dropped with data still queued: close once it is sent.
    pub(crate) closing: bool,
    /// Owned by a batch server (`crate::batch`): events go to its ready list.
    pub(crate) group: Option<usize>,
    /// Listed in its group's ready list.
    pub(crate) in_ready: bool,
    /// Its end (EOF or error) was reported to the batch handler.
    pub(crate) end_reported: bool,
    /// A write shutdown was queued (by `poll_shutdown`).
    pub(crate) shutdown_queued: bool,
    /// Receive deadline (`set_recv_deadline`); `None` once it expired or was cleared.
    pub(crate) recv_deadline: Option<Instant>,
    /// The receive deadline passed: receives fail with `TimedOut` (a batch server
    /// gets one `TimedOut` event, which clears it) until a new deadline is set.
    pub(crate) timed_out: bool,
}

/// State of one listener.
#[derive(Debug, Default)]
pub(crate) struct Listener {
    /// Accepted connections (already registered with the backend) not yet taken.
    pub(crate) backlog: VecDeque<Token>,
    pub(crate) waker: Option<Waker>,
    /// The last accept error, reported once to the acceptor.
    pub(crate) error: Option<i32>,
}

/// A batch server's ready list: connections with news since its last batch.
#[derive(Debug, Default)]
pub(crate) struct Group {
    pub(crate) ready: Vec<Token>,
    pub(crate) waker: Option<Waker>,
}

/// One received datagram, waiting for `recv_from`.
#[derive(Debug)]
pub(crate) struct Datagram {
    pub(crate) buf: RxBuf,
    pub(crate) from: SocketAddr,
    pub(crate) truncated: bool,
}

/// State of one datagram (UDP) socket.
#[derive(Debug)]
pub(crate) struct Dgram {
    pub(crate) fd: RawFd,
    /// Received datagrams, oldest first. Preallocated and reused: no allocation per
    /// datagram once it has grown to the most the backend delivers before a pause.
    pub(crate) rx: VecDeque<Datagram>,
    pub(crate) rx_waker: Option<Waker>,
    /// Receiving failed for good with this errno.
    pub(crate) rx_error: Option<i32>,
    pub(crate) paused: bool,
    /// Datagrams queued to the backend and not yet reported sent.
    pub(crate) tx_queued: u32,
    /// The errno of a datagram the kernel refused, reported once.
    pub(crate) tx_error: Option<i32>,
    pub(crate) tx_waker: Option<Waker>,
    /// The handle was dropped with datagrams still queued: close once they left.
    pub(crate) closing: bool,
}

impl Dgram {
    pub(crate) fn new(fd: RawFd) -> Dgram {
        Dgram {
            fd,
            rx: VecDeque::with_capacity(2 * RX_PAUSE_AT),
            rx_waker: None,
            rx_error: None,
            paused: false,
            tx_queued: 0,
            tx_error: None,
            tx_waker: None,
            closing: false,
        }
    }
}

#[derive(Debug)]
pub(crate) enum Slot {
    Conn(Conn),
    Listener(Listener),
    Dgram(Dgram),
}

/// The runtime's I/O state and its backend.
pub(crate) struct Driver {
    pub(crate) backend: AnyBackend,
    pub(crate) pool: BufPool,
    pub(crate) slots: Slab<Slot>,
    pub(crate) groups: Slab<Group>,
    completions: Vec<Completion>,
    deadlines: Deadlines,
}

/// Bookkeeping of the receive deadlines, so that nothing is walked while no
/// connection has one, and the tick's check is one comparison.
#[derive(Debug, Default)]
struct Deadlines {
    /// Connections with a deadline set (`Conn::recv_deadline.is_some()`).
    armed: usize,
    /// No deadline is earlier than this (it may be earlier than the real earliest
    /// after one was cleared or moved: the next sweep corrects it).
    earliest: Option<Instant>,
    /// When the last sweep ran.
    last_sweep: Option<Instant>,
    /// When the next sweep is due: the earliest deadline, but not sooner than
    /// [`DEADLINE_GRANULARITY`] after the last sweep; `None` while none is armed.
    due: Option<Instant>,
}

impl Deadlines {
    fn update_due(&mut self) {
        self.due = match (self.armed, self.earliest, self.last_sweep) {
            (0, _, _) | (_, None, _) => None,
            (_, Some(e), Some(last)) => Some(e.max(last + DEADLINE_GRANULARITY)),
            (_, Some(e), None) => Some(e),
        };
    }
}

impl Driver {
    pub(crate) fn new(backend: AnyBackend) -> Driver {
        let pool = backend.pool().clone();
        Driver {
            backend,
            pool,
            slots: Slab::with_capacity(1024),
            groups: Slab::new(),
            completions: Vec::with_capacity(1024),
            deadlines: Deadlines::default(),
        }
    }

    /// Sets or clears `token`'s receive deadline. A deadline at or before `now` (the
    /// tick's coarse clock) expires at once. O(1), no allocation, no system call.
    pub(crate) fn set_recv_deadline(&mut self, token: Token, deadline: Option<Instant>, now: Instant) {
        let Some(Slot::Conn(c)) = self.slots.get_mut(token.0 as usize) else { return };
        c.timed_out = false;
        let was_armed = c.recv_deadline.is_some();
        c.recv_deadline = deadline;
        let Some(d) = deadline else {
            if was_armed {
                self.deadlines.armed -= 1;
                if self.deadlines.armed == 0 {
                    self.deadlines.update_due();
                }
            }
            return;
        };
        if d <= now {
            c.recv_deadline = None;
            c.timed_out = true;
            if was_armed {
                self.deadlines.armed -= 1;
                self.deadlines.update_due();
            }
            self.notify_rx(token);
            return;
        }
        let lowered = self.deadlines.earliest.is_none_or(|e| d < e);
        if lowered {
            self.deadlines.earliest = Some(d);
        }
        if !was_armed {
            self.deadlines.armed += 1;
        }
        // Moving a deadline later (the common case) changes nothing here.
        if lowered || !was_armed && self.deadlines.armed == 1 {
            self.deadlines.update_due();
        }
    }

    /// When the tick must run [`sweep_deadlines`](Self::sweep_deadlines) next (its
    /// wait must not outlast this); `None` while no connection has a deadline.
    #[inline]
    pub(crate) fn next_sweep(&self) -> Option<Instant> {
        self.deadlines.due
    }

    /// The coarse sweep: if due at `now`, walks the connections, marks those whose
    /// receive deadline has passed as timed out and wakes their receiver (or lists
    /// them in their batch server's ready list). Returns how many expired.
    #[inline]
    pub(crate) fn sweep_deadlines(&mut self, now: Instant) -> usize {
        if self.deadlines.due.is_none_or(|due| now < due) {
            return 0;
        }
        self.sweep_deadlines_now(now)
    }

    fn sweep_deadlines_now(&mut self, now: Instant) -> usize {
        self.deadlines.last_sweep = Some(now);
        let mut expired = 0;
        let mut earliest: Option<Instant> = None;
        for (k, slot) in self.slots.iter_mut() {
            let Slot::Conn(c) = slot else { continue };
            let Some(d) = c.recv_deadline else { continue };
            if d > now {
                earliest = Some(earliest.map_or(d, |e| e.min(d)));
                continue;
            }
            c.recv_deadline = None;
            c.timed_out = true;
            expired += 1;
            // As `notify_rx`, inline: `slots` is borrowed by the walk.
            match c.group {
                None => wake(&mut c.rx_waker),
                Some(g) => {
                    if !c.in_ready {
                        c.in_ready = true;
                        if let Some(group) = self.groups.get_mut(g) {
                            group.ready.push(Token(k as u32));
                            wake(&mut group.waker);
                        }
                    }
                }
            }
        }
        self.deadlines.armed -= expired;
        self.deadlines.earliest = earliest;
        self.deadlines.update_due();
        expired
    }

    /// Steps 2 and 3 of the tick: the backend's one poll, then dispatch.
    /// Returns how many completions were dispatched.
    pub(crate) fn poll(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        let mut completions = std::mem::take(&mut self.completions);
        let result = self.backend.poll(timeout, &mut completions);
        let n = completions.len();
        for c in completions.drain(..) {
            self.dispatch(c);
        }
        self.completions = completions;
        result.map(|()| n)
    }

    fn dispatch(&mut self, completion: Completion) {
        match completion {
            Completion::Recv { token, buf } => {
                if let Some(Slot::Conn(c)) = self.slots.get_mut(token.0 as usize) {
                    if c.closing {
                        return; // the handle is gone: received data is discarded
                    }
                    c.rx.push(buf);
                    if !c.paused && c.rx.len() >= RX_PAUSE_AT {
                        c.paused = true;
                        self.backend.submit(Op::PauseRecv(token));
                    }
                    self.notify_rx(token);
                }
            }
            Completion::Eof(token) => {
                if let Some(Slot::Conn(c)) = self.slots.get_mut(token.0 as usize) {
                    c.eof = true;
                    self.notify_rx(token);
                }
            }
            Completion::RecvError { token, errno } => {
                if let Some(Slot::Dgram(u)) = self.slots.get_mut(token.0 as usize) {
                    u.rx_error = Some(errno);
                    wake(&mut u.rx_waker);
                    return;
                }
                if let Some(Slot::Conn(c)) = self.slots.get_mut(token.0 as usize) {
                    c.rx_error = Some(errno);
                    c.tx_error.get_or_insert(errno);
                    c.tx_queued = 0;
                    wake(&mut c.tx_waker);
                    if c.closing {
                        self.finish_close(token);
                    } else {
                        self.notify_rx(token);
                    }
                }
            }
            Completion::Sent { token, bytes } => {
                if let Some(Slot::Conn(c)) = self.slots.get_mut(token.0 as usize) {
                    c.tx_queued = c.tx_queued.saturating_sub(bytes as u64);
                    if c.tx_queued == 0 && c.closing {
                        self.finish_close(token);
                    } else if c.tx_queued <= TX_HIGH_WATER {
                        wake(&mut c.tx_waker);
                    }
                }
            }
            Completion::SendError { token, errno } => {
                if let Some(Slot::Conn(c)) = self.slots.get_mut(token.0 as usize) {
                    c.tx_error = Some(errno);
                    c.tx_queued = 0;
                    wake(&mut c.tx_waker);
                    if c.closing {
                        self.finish_close(token);
                    } else if c.group.is_some() {
                        self.notify_rx(token);
                    }
                }
            }
            Completion::Connected { token, errno } => {
                if let Some(Slot::Conn(c)) = self.slots.get_mut(token.0 as usize) {
                    c.connect = Some(errno);
                    wake(&mut c.tx_waker);
                }
            }
            Completion::Accepted { listener, fd } => {
                let token =
                    Token(self.slots.insert(Slot::Conn(Conn { fd, connect: Some(0), ..Conn::default() })) as u32);
                self.backend.submit(Op::Register { token, fd });
                match self.slots.get_mut(listener.0 as usize) {
                    Some(Slot::Listener(l)) => {
                        l.backlog.push_back(token);
                        wake(&mut l.waker);
                    }
                    _ => self.close(token),
                }
            }
            Completion::AcceptError { listener, errno } => {
                if let Some(Slot::Listener(l)) = self.slots.get_mut(listener.0 as usize) {
                    l.error = Some(errno);
                    wake(&mut l.waker);
                }
            }
            Completion::RecvFrom { token, buf, from, truncated } => {
                if let Some(Slot::Dgram(u)) = self.slots.get_mut(token.0 as usize) {
                    if u.closing {
                        return; // the handle is gone: received data is discarded
                    }
                    u.rx.push_back(Datagram { buf, from, truncated });
                    if !u.paused && u.rx.len() >= RX_PAUSE_AT {
                        u.paused = true;
                        self.backend.submit(Op::PauseRecv(token));
                    }
                    wake(&mut u.rx_waker);
                }
            }
            Completion::SentTo { token, errno, .. } => {
                if let Some(Slot::Dgram(u)) = self.slots.get_mut(token.0 as usize) {
                    u.tx_queued = u.tx_queued.saturating_sub(1);
                    if errno != 0 {
                        u.tx_error = Some(errno);
                    }
                    if u.tx_queued == 0 && u.closing {
                        self.finish_close(token);
                    } else if u.tx_queued <= DGRAM_TX_HIGH_WATER || errno != 0 {
                        wake(&mut u.tx_waker);
                    }
                }
            }
        }
    }

    /// Tells whoever waits for this connection's input: its task, or its batch
    /// server (which then finds it in the ready list).
    fn notify_rx(&mut self, token: Token) {
        let Some(Slot::Conn(c)) = self.slots.get_mut(token.0 as usize) else { return };
        match c.group {
            None => wake(&mut c.rx_waker),
            Some(g) => {
                if !c.in_ready {
                    c.in_ready = true;
                    if let Some(group) = self.groups.get_mut(g) {
                        group.ready.push(token);
                        wake(&mut group.waker);
                    }
                }
            }
        }
    }

    /// Wakes every task waiting to receive (graceful shutdown: idle connections
    /// look at `is_shutting_down()` and close).
    pub(crate) fn wake_receivers(&mut self) {
        for (_, slot) in self.slots.iter_mut() {
            if let Slot::Conn(c) = slot {
                wake(&mut c.rx_waker);
            }
        }
    }

    /// A new connection slot for a socket the runtime created (connect).
    pub(crate) fn insert_conn(&mut self, conn: Conn) -> Token {
        Token(self.slots.insert(Slot::Conn(conn)) as u32)
    }

    /// A new listener slot.
    pub(crate) fn insert_listener(&mut self) -> Token {
        Token(self.slots.insert(Slot::Listener(Listener::default())) as u32)
    }

    pub(crate) fn conn(&mut self, token: Token) -> &mut Conn {
        match self.slots.get_mut(token.0 as usize) {
            Some(Slot::Conn(c)) => c,
            _ => unreachable!("token {} is not a live connection", token.0),
        }
    }

    /// A new datagram socket slot.
    pub(crate) fn insert_dgram(&mut self, fd: RawFd) -> Token {
        Token(self.slots.insert(Slot::Dgram(Dgram::new(fd))) as u32)
    }

    pub(crate) fn dgram(&mut self, token: Token) -> &mut Dgram {
        match self.slots.get_mut(token.0 as usize) {
            Some(Slot::Dgram(u)) => u,
            _ => unreachable!("token {} is not a live datagram socket", token.0),
        }
    }

    /// The application took a datagram: resume receiving if the queue is short again.
    pub(crate) fn maybe_resume_dgram(&mut self, token: Token) {
        let u = self.dgram(token);
        if u.paused && u.rx.len() <= RX_RESUME_AT {
            u.paused = false;
            self.backend.submit(Op::ResumeRecv(token));
        }
    }

    pub(crate) fn listener(&mut self, token: Token) -> &mut Listener {
        match self.slots.get_mut(token.0 as usize) {
            Some(Slot::Listener(l)) => l,
            _ => unreachable!("token {} is not a live listener", token.0),
        }
    }

    /// The application took buffers: resume receiving if the queue is short again.
    pub(crate) fn maybe_resume(&mut self, token: Token) {
        let c = self.conn(token);
        if c.paused && c.rx.len() <= RX_RESUME_AT {
            c.paused = false;
            self.backend.submit(Op::ResumeRecv(token));
        }
    }

    /// The handle of a connection or listener was dropped.
    ///
    /// A connection with sends still queued lingers until the backend reports them
    /// sent (or failed), so data written before a drop is not lost.
    pub(crate) fn close(&mut self, token: Token) {
        let pool = self.pool.clone();
        match self.slots.get_mut(token.0 as usize) {
            Some(Slot::Conn(c)) => {
                c.rx.clear(&pool);
                c.rx_waker = None;
                c.tx_waker = None;
                if c.recv_deadline.take().is_some() {
                    self.deadlines.armed -= 1;
                    if self.deadlines.armed == 0 {
                        self.deadlines.update_due();
                    }
                }
                if c.tx_queued > 0 && c.tx_error.is_none() && c.rx_error.is_none() {
                    c.closing = true;
                    if c.paused {
                        c.paused = false;
                        self.backend.submit(Op::ResumeRecv(token));
                    }
                    return;
                }
                self.finish_close(token);
            }
            Some(Slot::Listener(l)) => {
                let backlog = std::mem::take(&mut l.backlog);
                self.finish_close(token);
                for t in backlog {
                    self.close(t);
                }
            }
            Some(Slot::Dgram(u)) => {
                u.rx.clear();
                u.rx_waker = None;
                u.tx_waker = None;
                if u.tx_queued > 0 {
                    // Datagrams queued before the drop still go out.
                    u.closing = true;
                    return;
                }
                self.finish_close(token);
            }
            None => {}
        }
    }

    fn finish_close(&mut self, token: Token) {
        if let Some(Slot::Conn(mut c)) = self.slots.try_remove(token.0 as usize) {
            c.rx.clear(&self.pool);
            if c.recv_deadline.is_some() {
                self.deadlines.armed -= 1;
                if self.deadlines.armed == 0 {
                    self.deadlines.update_due();
                }
            }
            // A batch server shutting down waits for its last connections to go.
            if let Some(group) = c.group.and_then(|g| self.groups.get_mut(g)) {
                wake(&mut group.waker);
            }
        }
        self.backend.submit(Op::Close(token));
    }

    /// Closes everything (runtime shutdown): queued sends are abandoned.
    pub(crate) fn close_all(&mut self) {
        let tokens: Vec<usize> = self.slots.iter().map(|(k, _)| k).collect();
        for k in tokens {
            if let Some(Slot::Conn(mut c)) = self.slots.try_remove(k) {
                c.rx.clear(&self.pool);
            }
            self.backend.submit(Op::Close(Token(k as u32)));
        }
        self.deadlines = Deadlines::default();
    }
}

fn wake(slot: &mut Option<Waker>) {
    if let Some(w) = slot.take() {
        w.wake();
    }
}

/// Stores `waker` in `slot` unless an equivalent one is already there (no clone,
/// so no reference-count traffic, on the common path).
pub(crate) fn register(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(w) if w.will_wake(waker) => {}
        _ => *slot = Some(waker.clone()),
    }
}
