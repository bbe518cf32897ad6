//! kv, a memcached-compatible key-value server (text protocol) on paste-rt.
//!
//! Owns the server side of the [`memcache`](crate::memcache) protocol code: the
//! accept loop, one task per connection running an incremental
//! [`CommandParser`] over the received pool buffers, and the [`Store`] shared by
//! every connection of one runtime thread (`Rc<RefCell<Store>>`: a runtime is one
//! thread, so no lock). Replies are written through an [`Outbox`] into pool
//! buffers and queued together once per batch of received buffers. `quit` and
//! fatal parse errors (a command line past the limit) close the connection after
//! the replies already written. A command (line and data block) that does not
//! arrive complete within the header limit closes the connection, and so does
//! idling past the idle limit when one is set ([`Timeouts::KV`]: none, as memcached).
//!
//! With several runtime threads ([`serve`] called once per thread) each thread
//! has its own store: connections are spread over threads by the kernel
//! (`SO_REUSEPORT`), so a client sees one consistent cache only while all its
//! connections land on one thread. Run one thread for a single cache.
//!
//! The store's clock is the wall clock, read (a vDSO call, not a system call) once
//! per received buffer. Serving a `get` hit allocates nothing; storing a value
//! allocates its copy.

use std::cell::RefCell;
use std::io;
use std::ops::ControlFlow;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use paste_rt::net::{TcpListener, TcpStream};
use paste_rt::RxBuf;

use crate::connection::{accept_each, close_gracefully, serve_batches, start_timer, Protocol, Received};
use crate::memcache::{CommandParser, Flow, Store};
use crate::outbox::Outbox;
use crate::timeouts::Phase;
pub use crate::timeouts::Timeouts;

/// The server's limits (max item size, line lengths, memory budget) and version:
/// memcached's defaults from `Config::default()`.
pub use crate::memcache::Config;

/// Serves the memcached text protocol on `listener`, with the default limits
/// ([`Timeouts::KV`]), until accepting fails for good or graceful shutdown is
/// requested. Every connection accepted here shares one store.
///
/// # Errors
/// The listener's error.
pub async fn serve(listener: TcpListener, config: Config) -> io::Result<()> {
    serve_with(listener, config, Timeouts::KV).await
}

/// [`serve`] with explicit limits.
///
/// # Errors
/// The listener's error.
pub async fn serve_with(listener: TcpListener, config: Config, timeouts: Timeouts) -> io::Result<()> {
    let store = Rc::new(RefCell::new(Store::new(&config)));
    store.borrow_mut().set_now(unix_now()); // the start, for `stats` uptime
    let config = Rc::new(config);
    accept_each(&listener, |stream| {
        // Detached: the task ends with its connection.
        drop(paste_rt::spawn(serve_connection(stream, config.clone(), store.clone(), timeouts)));
    })
    .await
}

/// One connection: execute every command of the buffers received by now, queue
/// the replies, wait only for backpressure.
async fn serve_connection(stream: TcpStream, config: Rc<Config>, store: Rc<RefCell<Store>>, timeouts: Timeouts) {
    let mut kv = KvConnection { parser: CommandParser::new(&config), store: &store };
    let mut out = Outbox::new(&stream);
    let mut timer = start_timer(&stream, timeouts, Phase::Idle);
    let _counted = Connected::new(&store);
    match serve_batches(&stream, &mut timer, &mut out, &mut kv).await {
        Received::Stopped | Received::Shutdown => close_gracefully(&stream).await,
        // A command cut short by the header limit, or an idle connection: like
        // memcached, close without a word.
        Received::TimedOut | Received::Eof | Received::Failed(_) => {}
    }
}

/// The memcached text protocol on one connection, over the thread's store.
struct KvConnection<'a> {
    parser: CommandParser,
    store: &'a RefCell<Store>,
}

impl Protocol for KvConnection<'_> {
    fn on_buf(&mut self, buf: RxBuf, out: &mut Outbox<'_>) -> ControlFlow<()> {
        let mut store = self.store.borrow_mut();
        store.set_now(unix_now());
        store.bytes_read(buf.len());
        let mut pos = 0;
        while let Some(command) = self.parser.next_command(&buf, &mut pos) {
            match command {
                Ok(command) => {
                    if store.execute(command, out) == Flow::Close {
                        return ControlFlow::Break(());
                    }
                }
                // A line too long to be a command: memcached closes silently.
                Err(_) => return ControlFlow::Break(()),
            }
        }
        ControlFlow::Continue(())
    }

    fn phase(&self) -> Phase {
        if self.parser.is_idle() {
            Phase::Idle
        } else {
            Phase::Head
        }
    }
}

/// Counts a connection in the store's `stats` while it lives.
struct Connected<'a>(&'a RefCell<Store>);

impl<'a> Connected<'a> {
    fn new(store: &'a RefCell<Store>) -> Connected<'a> {
        store.borrow_mut().connection_opened();
        Connected(store)
    }
}

impl Drop for Connected<'_> {
    fn drop(&mut self) {
        if let Ok(mut store) = self.0.try_borrow_mut() {
            store.connection_closed();
        }
    }
}

/// Wall-clock unix seconds (0 if the clock is before 1970).
fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
