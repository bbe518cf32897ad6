//! Process signals as futures: [`ctrl_c`] (SIGINT) and [`terminate`] (SIGTERM),
//! for graceful shutdown.
//!
//! Owns the process-wide signal listener: one thread, started on first use, that
//! reads signals from `signal-hook`'s self-pipe and wakes the futures waiting for
//! them (their wakers are `Send`; waking a paste-rt task from that thread
//! interrupts its runtime's wait). The signal handler itself only writes to the
//! pipe: this module never wakes, locks or allocates inside a signal handler.
//!
//! Listening for a signal replaces its default action for the rest of the process
//! (as with tokio): after the first `ctrl_c()`, SIGINT no longer kills the process —
//! the program decides, typically with the pattern below. Each signal is only
//! taken over when a future for it is first created, so `ctrl_c()` alone leaves
//! SIGTERM's default action in place.
//!
//! ```no_run
//! use paste_rt::net::TcpListener;
//!
//! #[paste_rt::main]
//! async fn main() -> std::io::Result<()> {
//!     let listener = TcpListener::bind("127.0.0.1:7000").await?;
//!     // On Ctrl-C: every `shutdown_requested()` completes; the accept loop stops,
//!     // connection tasks finish the request in hand, and main returns (exit 0).
//!     paste_rt::spawn(async {
//!         if paste_rt::signal::ctrl_c().await.is_ok() {
//!             paste_rt::runtime::request_shutdown();
//!         }
//!     });
//!     loop {
//!         tokio::select! {
//!             _ = paste_rt::runtime::shutdown_requested() => break,
//!             accepted = listener.accept() => { let (_stream, _) = accepted?; /* spawn a handler */ }
//!         }
//!     }
//!     // The connection tasks finish what they are doing (the Ctrl-C task is done).
//!     while paste_rt::runtime::live_tasks() > 0 {
//!         paste_rt::time::sleep(std::time::Duration::from_millis(10)).await;
//!     }
//!     Ok(())
//! }
//! ```

use std::future::Future;
use std::io;
use std::os::raw::c_int;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};
use slab::Slab;

/// Completes when the process receives SIGINT (Ctrl-C in a terminal) after this
/// call. Each call waits for its own next SIGINT; any number of futures, on any
/// threads and runtimes, may wait at once and all complete.
///
/// # Errors
/// The future resolves to the error of installing the handler or starting the
/// listener thread, with what was attempted.
pub fn ctrl_c() -> Signal {
    Signal::new(&KINDS[0])
}

/// Completes when the process receives SIGTERM (what `kill`, systemd and container
/// runtimes send to stop a service) after this call. See [`ctrl_c`].
pub fn terminate() -> Signal {
    Signal::new(&KINDS[1])
}

/// The future of [`ctrl_c`] and [`terminate`]. It is `Send`, and works under any
/// executor (paste-rt or tokio).
#[must_use = "futures do nothing unless awaited"]
pub struct Signal {
    kind: &'static Kind,
    /// Deliveries counted when the future was made; one more completes it.
    seen: u64,
    /// Its slot in the kind's waiter list, once it has waited.
    key: Option<usize>,
    /// Starting to listen failed; reported on first poll.
    error: Option<io::Error>,
}

impl Signal {
    fn new(kind: &'static Kind) -> Signal {
        let seen = kind.received.load(Ordering::Acquire);
        Signal { kind, seen, key: None, error: listen(kind).err() }
    }
}

impl std::fmt::Debug for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signal").field("signal", &self.kind.name).finish()
    }
}

impl Future for Signal {
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(e) = this.error.take() {
            return Poll::Ready(Err(e));
        }
        let mut waiters = this.kind.waiters();
        // Checked under the waiter lock: a delivery counts first, then wakes under
        // that lock, so it either is seen here or finds the waker registered below.
        if this.kind.received.load(Ordering::Acquire) > this.seen {
            if let Some(key) = this.key.take() {
                waiters.remove(key);
            }
            return Poll::Ready(Ok(()));
        }
        match this.key {
            Some(key) => {
                if !waiters[key].will_wake(cx.waker()) {
                    waiters[key] = cx.waker().clone();
                }
            }
            None => this.key = Some(waiters.insert(cx.waker().clone())),
        }
        Poll::Pending
    }
}

impl Drop for Signal {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.kind.waiters().remove(key);
        }
    }
}

/// One signal: how many times it arrived, and who waits for it.
struct Kind {
    signal: c_int,
    name: &'static str,
    received: AtomicU64,
    waiters: Mutex<Slab<Waker>>,
    /// Whether its handler is installed (or why it could not be).
    registered: OnceLock<Result<(), SavedError>>,
}

impl Kind {
    const fn new(signal: c_int, name: &'static str) -> Kind {
        Kind {
            signal,
            name,
            received: AtomicU64::new(0),
            waiters: Mutex::new(Slab::new()),
            registered: OnceLock::new(),
        }
    }

    fn waiters(&self) -> MutexGuard<'_, Slab<Waker>> {
        // Nothing panics while holding the lock except a waker's `wake`, after which
        // the slab is still whole.
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Called on the listener thread, never in a signal handler.
    fn deliver(&self) {
        self.received.fetch_add(1, Ordering::AcqRel);
        for (_, waker) in self.waiters().iter() {
            waker.wake_by_ref();
        }
    }
}

static KINDS: [Kind; 2] = [Kind::new(SIGINT, "SIGINT"), Kind::new(SIGTERM, "SIGTERM")];

/// The listener thread's handle, for adding signals (or why it could not start).
static LISTENER: OnceLock<Result<Handle, SavedError>> = OnceLock::new();

/// An `io::Error` kept in a static, to report again to every later caller.
#[derive(Debug, Clone)]
struct SavedError {
    errno: Option<i32>,
    kind: io::ErrorKind,
    message: String,
}

impl SavedError {
    fn new(what: &str, e: &io::Error) -> SavedError {
        SavedError { errno: e.raw_os_error(), kind: e.kind(), message: format!("{what}: {e}") }
    }

    fn to_io(&self) -> io::Error {
        match self.errno {
            Some(errno) => {
                let os = io::Error::from_raw_os_error(errno);
                io::Error::new(os.kind(), self.message.clone())
            }
            None => io::Error::new(self.kind, self.message.clone()),
        }
    }
}

/// Installs `kind`'s handler once, starting the listener thread on first use.
fn listen(kind: &'static Kind) -> io::Result<()> {
    let handle = LISTENER.get_or_init(start_listener).as_ref().map_err(SavedError::to_io)?;
    kind.registered
        .get_or_init(|| {
            handle
                .add_signal(kind.signal)
                .map_err(|e| SavedError::new(&format!("installing the {} handler", kind.name), &e))
        })
        .clone()
        .map_err(|e| e.to_io())
}

fn start_listener() -> Result<Handle, SavedError> {
    let no_signals: [c_int; 0] = [];
    let mut signals = Signals::new(no_signals).map_err(|e| SavedError::new("creating the signal pipe", &e))?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("paste-rt-signal".into())
        .spawn(move || {
            for signal in signals.forever() {
                if let Some(kind) = KINDS.iter().find(|k| k.signal == signal) {
                    kind.deliver();
                }
            }
        })
        .map_err(|e| SavedError::new("starting the signal listener thread", &e))?;
    Ok(handle)
}
