//! The trait every backend implements, and the names of the backends.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use crate::pool::BufPool;
use crate::record::Token;
use crate::remote_wake::RemoteWake;
use crate::stats::Stats;
use crate::table::IoTable;
use crate::wait::Wait;

/// The backends paste-rt knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackendKind {
    /// Kernel PASTE: a netmap `pst` port (`/dev/netmap` built with PASTE).
    Paste,
    /// The PASTE port emulated in user space over io_uring. Figures from it are
    /// always labelled *emulated*.
    PasteEmu,
    /// io_uring.
    Uring,
    /// Edge-triggered epoll, one `read`/`write` per connection: the baseline.
    Epoll,
}

impl BackendKind {
    /// Every backend, in the order `auto` tries them (paste-emu is never chosen by
    /// `auto`: it is a stand-in, not a faster path).
    pub const ALL: [BackendKind; 4] =
        [BackendKind::Paste, BackendKind::PasteEmu, BackendKind::Uring, BackendKind::Epoll];

    /// The name used in `PASTE_RT_BACKEND`, attributes and reports.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Paste => "paste",
            BackendKind::PasteEmu => "paste-emu",
            BackendKind::Uring => "uring",
            BackendKind::Epoll => "epoll",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        BackendKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown backend {s:?} (expected one of: paste, paste-emu, uring, epoll)"))
    }
}

/// Why a backend could not start, with the errno where there was one.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot start the {backend} backend: {reason}")]
pub struct StartError {
    /// The backend that failed.
    pub backend: BackendKind,
    /// What was attempted and what is missing, readable by a user.
    pub reason: String,
    /// The errno, when a system call failed.
    pub errno: Option<i32>,
}

impl StartError {
    /// A failure with an errno: `what` is the attempted step, e.g. `"io_uring_setup"`.
    pub fn os(backend: BackendKind, what: &str, err: &io::Error) -> StartError {
        StartError { backend, reason: format!("{what}: {err}"), errno: err.raw_os_error() }
    }
}

/// What a backend can carry, asked by the runtime before it hands a socket over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Datagram (UDP) sockets.
    pub datagrams: bool,
    /// Unix-domain stream sockets.
    pub unix_streams: bool,
}

/// The contract between the runtime and an I/O backend (docs/architecture.md, the
/// backend contract).
///
/// A backend is owned by one runtime thread and works on that runtime's
/// [`IoTable`]: the runtime hands it sockets (`listen`, `register`, `connect`,
/// `bind_dgram`), tells it when a connection it is not engaged with has something to
/// send (`send`) or may receive again (`resume_recv`), and when a handle is gone
/// (`close`). None of these makes a system call on io_uring and PASTE: they write
/// submissions or note the work for the tick. `poll` does the tick's system calls:
/// it hands the queued work to the kernel, waits at most `timeout` if nothing is
/// ready, and applies every completion to its record in place (see [`IoTable`]).
pub trait Backend {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;

    /// One line describing what the backend probed and uses (features, ring sizes).
    fn describe(&self) -> String;

    /// What this backend carries besides TCP.
    fn capabilities(&self) -> Capabilities;

    /// The pool the backend lends buffers from.
    fn pool(&self) -> &BufPool;

    /// The backend's counters.
    fn stats(&self) -> &Stats;

    /// Starts accepting on the listening socket of `token` (a listener record). The
    /// backend owns the fd from now on.
    fn listen(&mut self, io: &mut IoTable, token: Token);

    /// Starts receiving on the connected socket of `token` (a stream record the
    /// runtime made for a socket it connected itself). The backend owns the fd.
    fn register(&mut self, io: &mut IoTable, token: Token);

    /// Connects the fresh socket of `token` (a stream record marked connecting) to
    /// `addr`; on success it receives as after `register`. The backend owns the fd.
    fn connect(&mut self, io: &mut IoTable, token: Token, addr: SocketAddr);

    /// Starts receiving datagrams on the bound socket of `token` (a datagram record).
    /// A backend without datagrams fails the record with `EPROTONOSUPPORT`.
    fn bind_dgram(&mut self, io: &mut IoTable, token: Token);

    /// Receiving on `token` may resume (it paused when its queue grew long).
    fn resume_recv(&mut self, io: &mut IoTable, token: Token);

    /// `token` has data (or a shutdown) queued and the backend is not engaged on
    /// its send path: take it from the record's send queue.
    fn send(&mut self, io: &mut IoTable, token: Token);

    /// The fast form of [`send`](Self::send) for the common case: `token` is a
    /// connected-or-connecting stream whose idle send path just had data queued, so
    /// the next step is [`SendStep::Data`](crate::SendStep::Data) and no other record
    /// state needs a look. Backends that can act on that (io_uring writes the SQE
    /// straight from the queue) override it.
    #[inline]
    fn send_queued_data(&mut self, io: &mut IoTable, token: Token) {
        self.send(io, token);
    }

    /// The record of `token` is closed (its handle is gone and nothing is left to
    /// send, or the runtime shuts down): cancel what is in flight, close the fd, and
    /// [`IoTable::release`] the token once the kernel can no longer name it.
    fn close(&mut self, io: &mut IoTable, token: Token);

    /// Flush, wait, complete: one tick's I/O. Backends implement this; callers use
    /// [`poll`](Self::poll). [`Wait::Poll`] must not block; [`Wait::Forever`] waits
    /// until something completes or a remote wake arrives; [`Wait::Until`] at most
    /// its `left` (a backend may keep a kernel timer armed for its `at` instead of
    /// giving each wait a timeout).
    fn flush_and_wait(&mut self, io: &mut IoTable, wait: Wait) -> io::Result<()>;

    /// One tick's I/O, counted: [`flush_and_wait`](Self::flush_and_wait) inside the
    /// stats' poll scope, so every system call it makes counts as inside `poll` and
    /// any other as outside (`Stats::syscalls_outside_poll`).
    fn poll(&mut self, io: &mut IoTable, wait: Wait) -> io::Result<()> {
        self.stats().enter_poll();
        let result = self.flush_and_wait(io, wait);
        self.stats().exit_poll();
        result
    }

    /// A handle other threads use to interrupt `poll`.
    fn remote_waker(&self) -> Arc<dyn RemoteWake>;
}
