//! The batch API: PASTE's native programming model on every backend.
//!
//! A batch server owns a listener and every connection it accepts. Instead of one
//! task per connection, one handler runs once per tick with the whole batch of news
//! — connections opened, buffers received (zero copy), connections ended — and
//! queues replies; the replies leave together at the next `poll` (deferred,
//! batched TX). This is the shape of PASTE's `phttpd` event loop: one `poll()`,
//! then a walk of every ready slot.
//!
//! This module owns the batch server's loop and its event iterator. It never makes
//! a system call and allocates nothing per event: the ready list is reused.
//!
//! ```no_run
//! use paste_rt::batch::{self, BatchEvent};
//! use paste_rt::SendData;
//! # async fn demo() -> std::io::Result<()> {
//! let listener = paste_rt::net::TcpListener::bind("127.0.0.1:7000").await?;
//! batch::serve(listener, |batch| {
//!     while let Some(event) = batch.next_event() {
//!         if let BatchEvent::Data(conn, buf) = event {
//!             // echo every buffer back, queued for the next tick
//!             let _ = batch.send(conn, SendData::Owned(buf.to_vec()));
//!         }
//!     }
//! })
//! .await
//! # }
//! ```

use std::cell::RefMut;
use std::future::poll_fn;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use paste_rt_core::{MemberEvent, RxBuf, SendData, Token, TxBuf};

use crate::driver::Driver;
use crate::net::TcpListener;
use crate::runtime::{Inner, ShutdownRequested};

/// How long a shutting-down batch server waits for connections to become idle
/// before closing what is left.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// A connection owned by a batch server. Indices are small and reused after a
/// connection ends, so per-connection state can live in a `Vec` indexed by
/// [`index`](Self::index) (reset it on [`BatchEvent::Opened`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId(Token);

impl ConnId {
    /// A small dense index, unique among live connections.
    pub fn index(self) -> usize {
        self.0 .0 as usize
    }
}

/// What happened to one connection since the last batch.
#[derive(Debug)]
pub enum BatchEvent {
    /// A new connection was accepted.
    Opened(ConnId),
    /// Bytes arrived, lent zero copy.
    Data(ConnId, RxBuf),
    /// The connection ended: `None` for the peer's EOF, else the error. It is
    /// closed after the handler returns, once what was queued for it is sent.
    Closed(ConnId, Option<io::Error>),
    /// The receive deadline set with [`Batch::set_recv_deadline`] passed (reported
    /// once per deadline, after any data received before it). The connection stays
    /// open: close it, or set a new deadline.
    TimedOut(ConnId),
}

/// One tick's batch: iterate with [`next_event`](Self::next_event), reply with
/// [`send`](Self::send).
pub struct Batch<'a> {
    driver: RefMut<'a, Driver>,
    listener: Token,
    group: u32,
    /// The server's ready list, lent (no move of the vector in and out per tick).
    ready: &'a mut Vec<Token>,
    pos: usize,
    /// The server's list of connections to close after the batch, lent likewise.
    to_close: &'a mut Vec<Token>,
    stop: bool,
    shutting_down: bool,
    /// Whether the listener may still have accepted connections for this batch:
    /// its backlog is looked at until it is found empty once, not on every event
    /// (connections are accepted inside `poll`, never during the handler).
    accepting: bool,
    /// The listener's [`ListenOptions::nodelay`](crate::net::ListenOptions::nodelay).
    nodelay: bool,
}

impl Batch<'_> {
    /// The next event of this batch; `None` when the batch is exhausted.
    #[inline(always)]
    pub fn next_event(&mut self) -> Option<BatchEvent> {
        // Inlined into the handler's loop: the common event, a connection's one
        // received buffer, is a few loads; everything else is out of line.
        if !self.accepting {
            let Some(&token) = self.ready.get(self.pos) else {
                // Exhausted (the loop's last call): nothing out of line to look at.
                return None;
            };
            if let Some(buf) = self.driver.io.take_only_buffer(token) {
                self.pos += 1;
                return Some(BatchEvent::Data(ConnId(token), buf));
            }
        }
        self.next_event_slow()
    }

    /// [`next_event`](Self::next_event) past its common case: accepted connections,
    /// more than one buffer, ends, timeouts, members with nothing left.
    #[inline(never)]
    fn next_event_slow(&mut self) -> Option<BatchEvent> {
        if self.accepting {
            if let Some(opened) = self.next_accepted() {
                return Some(opened);
            }
        }
        while self.pos < self.ready.len() {
            let token = self.ready[self.pos];
            match self.driver.io.next_member_event(token) {
                MemberEvent::Data(buf) => return Some(BatchEvent::Data(ConnId(token), buf)),
                MemberEvent::Last(buf) => {
                    self.pos += 1;
                    return Some(BatchEvent::Data(ConnId(token), buf));
                }
                MemberEvent::TimedOut => {
                    self.pos += 1;
                    return Some(BatchEvent::TimedOut(ConnId(token)));
                }
                MemberEvent::End(errno) => {
                    self.pos += 1;
                    self.to_close.push(token);
                    return Some(BatchEvent::Closed(ConnId(token), errno.map(io::Error::from_raw_os_error)));
                }
                MemberEvent::Done { resume } => {
                    self.pos += 1;
                    if resume {
                        self.driver.resume_recv(token);
                    }
                }
            }
        }
        None
    }

    /// The next connection the listener accepted, adopted into the group; clears
    /// `accepting` once the backlog is empty.
    #[cold]
    #[inline(never)]
    fn next_accepted(&mut self) -> Option<BatchEvent> {
        let Some(token) = self.driver.io.take_accepted(self.listener) else {
            self.accepting = false;
            return None;
        };
        // Data that arrived before adoption is in its queue already: listed at once.
        if self.driver.io.join_group(token, self.group) {
            self.ready.push(token);
        }
        if self.nodelay {
            let _ = self.set_nodelay(ConnId(token), true);
        }
        Some(BatchEvent::Opened(ConnId(token)))
    }

    /// Sets (`Some`) or clears (`None`) `conn`'s coarse receive deadline: once it has
    /// passed, a later batch reports [`BatchEvent::TimedOut`] for `conn`, once.
    /// Setting a new deadline replaces the old one (and forgets an expiry not yet
    /// reported). Compute it from [`time::coarse_now`](crate::time::coarse_now);
    /// deadlines are swept at most every 100 ms. O(1), no allocation, no system call.
    pub fn set_recv_deadline(&mut self, conn: ConnId, deadline: Option<std::time::Instant>) {
        let now = crate::time::coarse_now();
        self.driver.set_recv_deadline(conn.0, deadline, now);
    }

    /// Sets `TCP_NODELAY` on `conn` (one system call; do it on
    /// [`BatchEvent::Opened`]). A server answering pipelined requests in more than
    /// one send wants it: Nagle's algorithm holds a later send until the peer's
    /// delayed ACK. Listeners bound with [`ListenOptions::nodelay`] set it on every
    /// connection already.
    ///
    /// [`ListenOptions::nodelay`]: crate::net::ListenOptions::nodelay
    pub fn set_nodelay(&mut self, conn: ConnId, on: bool) -> io::Result<()> {
        let fd = self.driver.io.fd(conn.0)?;
        crate::net::socket::with_sock(fd, |s| s.set_nodelay(on))
    }

    /// Queues `data` for `conn`; it leaves at the next poll with everything else
    /// queued in this tick.
    #[inline(always)] // into the handler's loop, down to the backend's send path
    pub fn send(&mut self, conn: ConnId, data: SendData) -> io::Result<()> {
        self.driver.queue_batch_send(conn.0, data)
    }

    /// A pool buffer to fill and [`send`](Self::send).
    pub fn tx_buf(&self) -> Option<TxBuf> {
        self.driver.pool().tx_buf()
    }

    /// Bytes queued for `conn` and not yet taken by the kernel (to bound output).
    pub fn queued(&mut self, conn: ConnId) -> u64 {
        self.driver.io.queued(conn.0)
    }

    /// Closes `conn` after this batch, once what was queued for it is sent.
    pub fn close(&mut self, conn: ConnId) {
        if self.driver.io.mark_end_reported(conn.0) {
            self.to_close.push(conn.0);
        }
    }

    /// Ends [`serve`] after this batch.
    pub fn stop(&mut self) {
        self.stop = true;
    }

    /// Whether graceful shutdown was requested: no connection is accepted any more,
    /// and the handler should close each connection once it is between requests
    /// (see [`connections`](Self::connections)); `serve` returns when none is left.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// Every live connection of this server (to close the idle ones on shutdown).
    /// Allocates; meant for shutdown, not the per-request path.
    pub fn connections(&self) -> Vec<ConnId> {
        self.driver.io.group_members(self.group, true).into_iter().map(ConnId).collect()
    }
}

/// Serves `listener` in batches: `handler` runs once per tick in which anything
/// happened, with every event of that tick. Returns when the handler calls
/// [`Batch::stop`], or on graceful shutdown
/// ([`request_shutdown`](crate::runtime::request_shutdown)): then the listener
/// stops accepting, the batch in hand is handled, and every connection is closed
/// once what was queued for it is sent. Accept errors (such as `EMFILE`) are
/// skipped; the backend retries without spinning.
pub async fn serve<H>(listener: TcpListener, mut handler: H) -> io::Result<()>
where
    H: FnMut(&mut Batch<'_>),
{
    let (rt, listener_token) = listener.parts();
    let group = rt.driver.borrow_mut().io.add_group();
    let mut server = Server {
        rt,
        listener: listener_token,
        group,
        nodelay: listener.nodelay(),
        ready: Vec::with_capacity(1024),
        to_close: Vec::new(),
        stop: false,
        shutting_down: false,
        backlog: false,
        listener_idle: false,
        shutdown_waker: None,
        grace: crate::time::sleep(SHUTDOWN_GRACE),
    };
    let mut shutdown = std::pin::pin!(crate::runtime::shutdown_requested());
    // One future for the whole loop: each wake handles what came and goes back to
    // sleep in the same poll.
    poll_fn(|cx| {
        // A new poll: accepts may have landed, and the waker may be another.
        server.listener_idle = false;
        loop {
            if server.poll_news(cx, shutdown.as_mut()).is_pending() {
                return Poll::Pending;
            }
            if server.stop {
                return Poll::Ready(());
            }
            server.handle(&mut handler);
            if server.stop {
                return Poll::Ready(());
            }
        }
    })
    .await;
    let Server { rt, .. } = server;
    let mut d = rt.driver.borrow_mut();
    for t in d.io.group_members(group, false) {
        d.close(t);
    }
    d.io.remove_group(group);
    drop(d);
    drop(listener);
    Ok(())
}

/// The loop state of [`serve`]: what one wake looks at and hands the handler.
struct Server {
    rt: Rc<Inner>,
    listener: Token,
    group: u32,
    /// The listener's [`ListenOptions::nodelay`](crate::net::ListenOptions::nodelay).
    nodelay: bool,
    /// The ready list, lent to each batch (reused: no allocation per tick).
    ready: Vec<Token>,
    /// Connections the handler closed or saw end, lent to each batch.
    to_close: Vec<Token>,
    stop: bool,
    shutting_down: bool,
    /// Whether the listener's backlog had connections when the wait ended.
    backlog: bool,
    /// In this poll of the serve future, the listener was looked at (its waker
    /// registered) and its backlog found empty: nothing can be accepted before the
    /// next poll (accepts land only while the backend polls), so the look for more
    /// after a batch skips it.
    listener_idle: bool,
    /// The waker the shutdown future holds: it is polled again only when the task's
    /// waker changed, not before every sleep (the flag is read on every poll).
    shutdown_waker: Option<Waker>,
    /// Graceful shutdown's limit, armed when it starts.
    grace: crate::time::Sleep,
}

impl Server {
    /// Ready when there is a batch to handle, or `stop` was set; else registers
    /// `cx` with the listener, the group and the shutdown future.
    #[inline(always)] // twice a tick (the wake, and the look for more after the batch)
    fn poll_news(&mut self, cx: &mut Context<'_>, shutdown: Pin<&mut ShutdownRequested>) -> Poll<()> {
        self.backlog = false;
        // The flag is read on every poll; the shutdown future (its waker slot) is
        // polled only before going to sleep with a new waker.
        if !self.shutting_down && crate::runtime::is_shutting_down() {
            // Shutdown starts: the handler runs at once to close idle connections.
            self.start_shutdown();
            return Poll::Ready(());
        }
        if self.shutting_down && Pin::new(&mut self.grace).poll(cx).is_ready() {
            self.stop = true;
            return Poll::Ready(());
        }
        let mut d = self.rt.driver.borrow_mut();
        if self.shutting_down && !d.io.group_has_members(self.group) {
            self.stop = true; // the last closing connection has sent everything
            return Poll::Ready(());
        }
        let accepted = !self.listener_idle
            && {
                let ready = d.io.listener_ready(self.listener, cx.waker());
                self.listener_idle = !ready;
                ready
            }
            && !self.shutting_down;
        self.backlog = accepted;
        if accepted || d.io.group_ready(self.group, cx.waker()) {
            return Poll::Ready(());
        }
        drop(d);
        if !self.shutting_down && !self.shutdown_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            if shutdown.poll(cx).is_ready() {
                self.start_shutdown();
                return Poll::Ready(());
            }
            self.shutdown_waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Graceful shutdown starts: no more accepts, and the grace runs from now.
    fn start_shutdown(&mut self) {
        self.shutting_down = true;
        self.grace.reset(std::time::Instant::now() + SHUTDOWN_GRACE);
    }

    /// Runs `handler` over this wake's batch, then closes what it closed.
    #[inline]
    fn handle<H: FnMut(&mut Batch<'_>)>(&mut self, handler: &mut H) {
        let mut d = self.rt.driver.borrow_mut();
        d.io.take_ready(self.group, &mut self.ready);
        let mut batch = Batch {
            driver: d,
            listener: self.listener,
            group: self.group,
            ready: &mut self.ready,
            pos: 0,
            to_close: &mut self.to_close,
            stop: false,
            shutting_down: self.shutting_down,
            accepting: self.backlog && !self.shutting_down,
            nodelay: self.nodelay,
        };
        handler(&mut batch);
        let Batch { driver: mut d, ready, pos, to_close, stop: stopped, .. } = batch;
        // Events the handler did not take stay for the next batch.
        if pos < ready.len() {
            d.io.requeue_ready(self.group, ready.drain(pos..));
        }
        ready.clear();
        // (Most batches close nothing: no drain set up for an empty list.)
        if !to_close.is_empty() {
            for t in to_close.drain(..) {
                d.close(t);
            }
        }
        // Closing connections count until their last bytes are sent.
        self.stop = stopped || (self.shutting_down && !d.io.group_has_members(self.group));
    }
}
