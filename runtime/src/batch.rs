//! The batch API: PASTE's native programming model on every backend.
//!
//! A batch server owns a listener and every connection it accepts. Instead of one
//! task per connection, one handler runs once per tick with the whole batch of news
//! — connections opened, buffers received (zero copy), connections ended — and
//! queues replies; the replies leave together at the next `poll` (deferred,
//! batched TX). This is the shape of PASTE's `phttpd` event loop: one `poll()`,
//! then a walk of every ready slot.
//!
//! The runtime calls the handler itself, once a tick, right after the wait (and
//! the timers) that brought the news: no task is woken or polled per batch. The
//! future [`serve`] returns only waits for the server's end. This module owns the
//! batch servers' list (which the tick walks), each server's state, and the event
//! iterator. It never makes a system call and allocates nothing per event: the
//! ready list is reused.
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

use std::any::Any;
use std::cell::{Cell, RefCell, RefMut};
use std::future::poll_fn;
use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
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
    ///
    /// In a handler's loop, match the `Option` itself — `loop { match
    /// batch.next_event() { Some(BatchEvent::Data(conn, buf)) => .., .., None =>
    /// break } }` — rather than `while let Some(event)` and then `match event`: the
    /// latter moves each event out of its `Option` first, a copy the compiler keeps
    /// (measured: about 20 instructions per event of a small HTTP handler).
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

    /// [`send`](Self::send) for data that more will follow for `conn` in this batch
    /// (a full buffer of its replies): as
    /// [`TcpStream::queue_send_more`](crate::net::TcpStream::queue_send_more), it
    /// leaves with what follows, in one gathered send on io_uring.
    #[inline]
    pub fn send_more(&mut self, conn: ConnId, data: SendData) -> io::Result<()> {
        self.driver.queue_batch_send_more(conn.0, data)
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
/// stops accepting, the handler runs at once (to close idle connections), and
/// every connection is closed once what was queued for it is sent; what is left
/// after [`SHUTDOWN_GRACE`] is closed then. Accept errors (such as `EMFILE`) are
/// skipped; the backend retries without spinning.
///
/// The runtime calls `handler` itself, from its tick, right after the wait that
/// brought the news (PASTE's model: one poll, then a walk of what is ready): no
/// task is woken or polled per batch. That is why `handler` is `'static` — the
/// runtime holds it while the server runs. The future this function returns only
/// waits for the end: dropping it stops the server and closes its connections
/// (each once what was queued for it is sent). A panic in `handler` ends the
/// server and comes out of this future, as a panic in its code would.
pub async fn serve<H>(listener: TcpListener, handler: H) -> io::Result<()>
where
    H: FnMut(&mut Batch<'_>) + 'static,
{
    let (rt, listener_token) = listener.parts();
    let group = rt.driver.borrow_mut().io.add_group();
    let server = Rc::new(Server {
        state: RefCell::new(ServerState {
            handler,
            listener: listener_token,
            group,
            nodelay: listener.nodelay(),
            ready: Vec::with_capacity(1024),
            to_close: Vec::new(),
            shutting_down: false,
            ended: false,
            panic: None,
            end_waker: None,
        }),
    });
    let registration = Registration::new(rt.clone(), server.clone(), group);
    let mut shutdown = std::pin::pin!(crate::runtime::shutdown_requested());
    let mut grace = crate::time::sleep(SHUTDOWN_GRACE);
    poll_fn(|cx| server.poll_end(cx, &rt, shutdown.as_mut(), &mut grace)).await;
    let panic = server.state.borrow_mut().panic.take();
    drop(registration);
    drop(listener);
    if let Some(payload) = panic {
        std::panic::resume_unwind(payload);
    }
    Ok(())
}

/// The batch servers of one runtime: the tick runs each one's handler when it has
/// news.
#[derive(Default)]
pub(crate) struct BatchServers {
    servers: RefCell<Vec<Rc<dyn Runner>>>,
    /// Whether `servers` holds any (read once a tick without borrowing the list).
    any: Cell<bool>,
    /// A server has news its last run did not take (or a run outside the tick left
    /// some): the tick's next wait must not block.
    news_left: Cell<bool>,
}

impl BatchServers {
    /// Whether a server has news waiting: the next wait must not block.
    #[inline(always)]
    pub(crate) fn news_left(&self) -> bool {
        self.news_left.get()
    }

    /// Runs the handler of every server with news. Once a tick, after the wait, the
    /// timers and the deadline sweep (so the handler's clock is the tick's).
    #[inline(always)] // once a tick, into block_on; nothing to do without servers
    pub(crate) fn run(&self, driver: &RefCell<Driver>) {
        if self.any.get() {
            self.run_each(driver);
        }
    }

    /// [`run`](Self::run) with servers. Each is cloned out of the list (not
    /// borrowed) before its handler runs, which may start or end servers.
    #[inline(always)] // into block_on: usually one server, one call
    fn run_each(&self, driver: &RefCell<Driver>) {
        self.news_left.set(false);
        let mut left = false;
        let mut i = 0;
        loop {
            let Some(server) = self.servers.borrow().get(i).cloned() else { break };
            left |= server.run(driver);
            i += 1;
        }
        self.keep_news(left);
    }

    /// A run left news (`left`): the next wait must not block.
    #[inline(always)]
    fn keep_news(&self, left: bool) {
        if left {
            self.news_left.set(true);
        }
    }

    fn add(&self, server: Rc<dyn Runner>) {
        self.servers.borrow_mut().push(server);
        self.any.set(true);
        // A backlog may be waiting already: the next wait looks without blocking.
        self.news_left.set(true);
    }

    fn remove(&self, server: &Rc<dyn Runner>) {
        let removed = {
            let mut servers = self.servers.borrow_mut();
            let removed = servers.iter().position(|s| Rc::ptr_eq(s, server)).map(|i| servers.remove(i));
            self.any.set(!servers.is_empty());
            removed
        };
        // The list moved up: during a tick's walk, the server after this one may be
        // skipped this time, so the next wait does not block.
        self.news_left.set(true);
        drop(removed); // outside the borrow: a handler's drop may touch the list
    }

    /// Forgets every server (the runtime is going; their futures were dropped).
    pub(crate) fn clear(&self) {
        let servers = std::mem::take(&mut *self.servers.borrow_mut());
        self.any.set(false);
        drop(servers);
    }
}

/// A batch server as the tick sees it.
trait Runner {
    /// Runs the handler if the server has news; returns whether news are left for
    /// the next tick.
    fn run(&self, driver: &RefCell<Driver>) -> bool;
}

/// One batch server: its handler and loop state, shared by the runtime (which runs
/// it) and the future of [`serve`] (which waits for its end).
struct Server<H> {
    state: RefCell<ServerState<H>>,
}

/// The loop state of a batch server: what a run looks at and hands the handler.
struct ServerState<H> {
    handler: H,
    listener: Token,
    group: u32,
    /// The listener's [`ListenOptions::nodelay`](crate::net::ListenOptions::nodelay).
    nodelay: bool,
    /// The ready list, lent to each batch (reused: no allocation per tick).
    ready: Vec<Token>,
    /// Connections the handler closed or saw end, lent to each batch.
    to_close: Vec<Token>,
    shutting_down: bool,
    /// The handler called `stop`, the last connection of a shutdown went, the grace
    /// ran out, or the handler panicked: the tick runs it no more, and the future
    /// of `serve` returns.
    ended: bool,
    /// The handler's panic, resumed by the future of `serve`.
    panic: Option<Box<dyn Any + Send>>,
    /// The future of `serve`, woken at the end.
    end_waker: Option<Waker>,
}

impl<H: FnMut(&mut Batch<'_>)> Runner for Server<H> {
    #[inline]
    fn run(&self, driver: &RefCell<Driver>) -> bool {
        // Busy only if a handler reached its own server's future: skipped then.
        let Ok(mut state) = self.state.try_borrow_mut() else { return false };
        state.run_on_news(driver)
    }
}

impl<H: FnMut(&mut Batch<'_>)> Server<H> {
    /// The future of [`serve`]: ready at the end. Starts graceful shutdown when it is
    /// requested (the handler runs at once), and ends the server when the grace runs
    /// out.
    fn poll_end(
        &self,
        cx: &mut Context<'_>,
        rt: &Inner,
        shutdown: Pin<&mut ShutdownRequested>,
        grace: &mut crate::time::Sleep,
    ) -> Poll<()> {
        let mut state = self.state.borrow_mut();
        if state.ended {
            return Poll::Ready(());
        }
        if !state.end_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            state.end_waker = Some(cx.waker().clone());
        }
        if !state.shutting_down {
            if shutdown.poll(cx).is_pending() {
                return Poll::Pending;
            }
            // Shutdown starts: no more accepts, the grace runs from now, and the
            // handler runs at once, to close the idle connections.
            state.shutting_down = true;
            grace.reset(std::time::Instant::now() + SHUTDOWN_GRACE);
            let left = state.handle(rt.driver.borrow_mut(), false);
            rt.batch.keep_news(left);
            if state.ended {
                return Poll::Ready(());
            }
        }
        if Pin::new(grace).poll(cx).is_ready() {
            state.ended = true;
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl<H: FnMut(&mut Batch<'_>)> ServerState<H> {
    /// The tick's look: runs the handler if the listener has a backlog or a member
    /// has news. Returns whether news are left.
    #[inline]
    fn run_on_news(&mut self, driver: &RefCell<Driver>) -> bool {
        if self.ended {
            return false;
        }
        let Ok(mut d) = driver.try_borrow_mut() else { return false };
        let backlog = !self.shutting_down && d.io.listener_has_backlog(self.listener);
        if !backlog && !d.io.group_has_news(self.group) {
            if self.shutting_down && !d.io.group_has_members(self.group) {
                self.end(); // the last closing connection has sent everything
            }
            return false;
        }
        self.handle(d, backlog)
    }

    /// Runs the handler over the batch in hand, then closes what it closed. Returns
    /// whether news are left (events the handler did not take, or new ones).
    #[inline]
    fn handle(&mut self, mut d: RefMut<'_, Driver>, backlog: bool) -> bool {
        d.io.take_ready(self.group, &mut self.ready);
        let (outcome, done, left) = {
            let mut batch = Batch {
                driver: d,
                listener: self.listener,
                group: self.group,
                ready: &mut self.ready,
                pos: 0,
                to_close: &mut self.to_close,
                stop: false,
                shutting_down: self.shutting_down,
                accepting: backlog,
                nodelay: self.nodelay,
            };
            let handler = &mut self.handler;
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| handler(&mut batch)));
            let Batch { driver: mut d, ready, pos, to_close, stop, accepting, .. } = batch;
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
            let done = stop || (self.shutting_down && !d.io.group_has_members(self.group));
            // (`accepting` is still set if the handler stopped before the backlog
            // was found empty.)
            let left = accepting || d.io.group_has_news(self.group);
            (outcome, done, left)
        };
        if let Err(payload) = outcome {
            self.panic = Some(payload);
            self.end();
            return false;
        }
        if done {
            self.end();
            return false;
        }
        left
    }

    /// The server is done: the tick runs it no more, and the future of `serve` is
    /// woken to return.
    fn end(&mut self) {
        self.ended = true;
        if let Some(w) = self.end_waker.take() {
            w.wake();
        }
    }
}

/// A server's place in its runtime's list, held by the future of [`serve`]. Its
/// drop (the server ended, or the future was dropped) takes the server out of the
/// list and closes its connections, each once what was queued for it is sent.
struct Registration {
    rt: Rc<Inner>,
    server: Rc<dyn Runner>,
    group: u32,
}

impl Registration {
    fn new(rt: Rc<Inner>, server: Rc<dyn Runner>, group: u32) -> Registration {
        rt.batch.add(server.clone());
        Registration { rt, server, group }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.rt.batch.remove(&self.server);
        // (The driver is borrowed only if a handler dropped its own server's future.)
        if let Ok(mut d) = self.rt.driver.try_borrow_mut() {
            for t in d.io.group_members(self.group, false) {
                d.close(t);
            }
            d.io.remove_group(self.group);
        }
    }
}
