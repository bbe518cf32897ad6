//! The control channel between `paste-bench ab` and a serving child, over the
//! child's stdin and stdout.
//!
//! The child prints `listening <addr> pin=<ok|why not>` once; then, for each line
//! `stats` the parent writes on its stdin, one line `stats <json>` with its
//! [`ServerCounters`]. At EOF on stdin (the parent is gone) the child exits, so no
//! server outlives its harness. This module owns the wire format and both ends; it
//! never decides what is measured.

use std::future::Future;
use std::io::{self, BufRead, Write};
use std::pin::pin;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::child_process::PipedChild;

/// First word of the child's address line.
pub const LISTENING: &str = "listening";
/// First word of a counters line.
pub const STATS: &str = "stats";

/// paste-rt's own counters (`paste_rt::stats()`), cumulative.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeCounters {
    /// Ticks of the runtime loop.
    pub ticks: u64,
    /// System calls the backend made.
    pub syscalls: u64,
    /// Receive buffers handed to the application.
    pub rx_buffers: u64,
    /// Batches they arrived in.
    pub rx_batches: u64,
}

/// What a child reports: paste-rt's counters (paste-rt subjects only) and its heap
/// allocations (every subject: the binary's global allocator counts them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerCounters {
    /// paste-rt's counters; `None` for peers.
    pub runtime: Option<RuntimeCounters>,
    /// Heap allocations so far; `None` when not counted.
    pub allocations: Option<u64>,
}

/// Parses a `stats <json>` line.
pub fn parse_answer(line: &str) -> Option<ServerCounters> {
    let json = line.strip_prefix(STATS)?.trim();
    serde_json::from_str(json).ok()
}

/// The paste-rt runtimes of a serving child, one per thread-per-core copy, each
/// added once its copy is serving; empty for peers.
pub type Runtimes = Arc<Mutex<Vec<paste_rt::Handle>>>;

/// The counters of every runtime in `runtimes`, summed (each read on its own
/// runtime's thread); `None` when there are none or one does not answer.
fn runtime_counters(runtimes: &Runtimes) -> Option<RuntimeCounters> {
    let handles = runtimes.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if handles.is_empty() {
        return None;
    }
    let mut sum = RuntimeCounters::default();
    for h in handles {
        let snapshot = block_on_thread(h.spawn(async { paste_rt::stats() })).ok()?;
        sum.ticks += snapshot.ticks;
        sum.syscalls += snapshot.syscalls;
        sum.rx_buffers += snapshot.rx_buffers;
        sum.rx_batches += snapshot.rx_batches;
    }
    Some(sum)
}

/// Child side: starts a thread answering `stats` lines on stdin with the summed
/// counters of `runtimes` (read on the runtimes' own threads) and the process's
/// allocations. Exits the process at EOF.
pub fn spawn_answerer(runtimes: Runtimes) {
    let spawned = std::thread::Builder::new().name("paste-bench-control".into()).spawn(move || {
        let stdin = io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            if line.trim() != STATS {
                continue;
            }
            let counters = ServerCounters {
                runtime: runtime_counters(&runtimes),
                allocations: crate::alloc_count::allocations().map(|(count, _)| count),
            };
            let json = serde_json::to_string(&counters).unwrap_or_else(|_| "{}".into());
            let mut out = io::stdout().lock();
            if writeln!(out, "{STATS} {json}").and_then(|()| out.flush()).is_err() {
                break;
            }
        }
        std::process::exit(0);
    });
    if let Err(e) = spawned {
        eprintln!("paste-bench: cannot start the control thread: {e}");
    }
}

struct ThreadWake(Thread);

impl Wake for ThreadWake {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to completion on a plain thread (parking between polls).
pub fn block_on_thread<F: Future>(future: F) -> F::Output {
    let waker = Waker::from(Arc::new(ThreadWake(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

/// Why a serving child could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    /// Spawning it failed.
    #[error("starting {what}: {source}")]
    Spawn {
        /// The command.
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// It exited or went silent before announcing its address.
    #[error("the server did not start: {0}")]
    NoStart(String),
    /// It did not answer a `stats` request in time.
    #[error("the server did not answer its control channel: {0}")]
    NoAnswer(String),
}

/// Parent side: a serving child process and its control channel.
#[derive(Debug)]
pub struct ServerChild {
    child: PipedChild,
    /// The address it serves on.
    pub addr: std::net::SocketAddr,
    /// `Ok` when pinned, else why not.
    pub pinned: Result<(), String>,
}

impl ServerChild {
    /// Starts `command` (a `paste-bench serve ... --control`) and waits up to
    /// `timeout` for its address.
    pub fn start(command: Command, timeout: Duration) -> Result<ServerChild, ChildError> {
        let what = format!("{command:?}");
        let mut child = PipedChild::spawn(command).map_err(|source| ChildError::Spawn { what, source })?;
        loop {
            let Some(line) = child.next_line(timeout) else {
                return Err(ChildError::NoStart(child.failure("no address line")));
            };
            let Some(rest) = line.strip_prefix(LISTENING) else { continue };
            let mut words = rest.split_whitespace();
            let addr = words.next().and_then(|a| a.parse().ok());
            let pin = rest.split_once("pin=").map(|(_, p)| p.trim().to_owned()).unwrap_or_default();
            let Some(addr) = addr else {
                return Err(ChildError::NoStart(format!("unreadable address line {line:?}")));
            };
            let pinned = if pin == "ok" { Ok(()) } else { Err(pin) };
            return Ok(ServerChild { child, addr, pinned });
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Asks for the child's counters.
    pub fn counters(&mut self, timeout: Duration) -> Result<ServerCounters, ChildError> {
        if let Err(e) = self.child.send_line(STATS) {
            return Err(ChildError::NoAnswer(self.child.failure(&format!("writing to its stdin: {e}"))));
        }
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.child.next_line(left) {
                Some(line) => {
                    if let Some(c) = parse_answer(&line) {
                        return Ok(c);
                    }
                }
                None => return Err(ChildError::NoAnswer(self.child.failure("no answer"))),
            }
        }
    }

    /// Whether the child is still running, and what it said on stderr.
    pub fn failure(&mut self, what: &str) -> String {
        self.child.failure(what)
    }

    /// Stops the child (SIGKILL: servers block forever by design) and reaps it.
    pub fn stop(self) {
        self.child.stop();
    }
}
