//! The trait every backend implements, and the names of the backends.

use std::fmt;
use std::io;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::op::{Completion, Op};
use crate::pool::BufPool;
use crate::stats::Stats;

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

/// Wakes a backend blocked in `poll` from another thread (an eventfd write or
/// equivalent). Cheap to call repeatedly.
pub trait RemoteWake: Send + Sync + 'static {
    /// Interrupts the current or next wait of the backend.
    fn wake(&self);
}

/// The contract between the runtime and an I/O backend (docs/architecture.md, the backend contract).
///
/// A backend is owned by one runtime thread. `submit` only queues; `poll` does all
/// the system calls of a tick: it hands queued ops to the kernel, waits at most
/// `timeout` if nothing is ready, and appends every ready completion to `out`.
pub trait Backend {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;

    /// One line describing what the backend probed and uses (features, ring sizes).
    fn describe(&self) -> String;

    /// The pool the backend lends buffers from.
    fn pool(&self) -> &BufPool;

    /// The backend's counters.
    fn stats(&self) -> &Stats;

    /// Queues an op for the next `poll`. Makes no system call.
    fn submit(&mut self, op: Op);

    /// Flush, wait, collect: one tick's I/O (docs/architecture.md, the tick, step 2). Backends implement
    /// this; callers use [`poll`](Self::poll). `timeout == Some(ZERO)` must not block;
    /// `None` waits until something completes or a remote wake arrives.
    fn flush_and_wait(&mut self, timeout: Option<Duration>, out: &mut Vec<Completion>) -> io::Result<()>;

    /// One tick's I/O, counted: [`flush_and_wait`](Self::flush_and_wait) inside the
    /// stats' poll scope, so every system call it makes counts as inside `poll` and
    /// any other as outside (`Stats::syscalls_outside_poll`).
    fn poll(&mut self, timeout: Option<Duration>, out: &mut Vec<Completion>) -> io::Result<()> {
        self.stats().enter_poll();
        let result = self.flush_and_wait(timeout, out);
        self.stats().exit_poll();
        result
    }

    /// A handle other threads use to interrupt `poll`.
    fn remote_waker(&self) -> Arc<dyn RemoteWake>;
}
