//! The peer servers: what a user would pick instead of paste-rt, serving the same
//! workloads with the same protocol code.
//!
//! Owns the subjects that are not paste-rt: tokio (current-thread runtime, one worker),
//! tokio-mt (the multi-thread runtime, N workers), monoio (its io_uring driver and its
//! legacy epoll driver) and `raw-uring`, a
//! hand-written io_uring loop with no runtime at all (the practical limit). Every peer
//! speaks through the pure protocol modules of `paste-rt-examples`
//! ([`paste_rt_examples::http`], [`paste_rt_examples::memcache`]) through one shared
//! per-connection layer (`session`), with paste-rt's batching: per connection, read
//! into a reused buffer, feed the parser, append every response of the read batch to
//! a reused output buffer, one write per read batch, close after the `400` on a parse
//! error.
//!
//! It must never measure anything (that is the harness's job), never bind or choose
//! addresses (the listener is given), and never give one peer protocol work another
//! does not do: only the runtime may differ between peers.

use std::fmt;
use std::io;
use std::net::TcpListener;
use std::path::PathBuf;
use std::str::FromStr;

pub use crate::workload::Workload;

mod hyper_tokio;
mod monoio_peer;
mod raw_uring;
mod session;
mod tokio_mt;
mod tokio_peer;
mod wal_log;

/// A peer server: a runtime (or none) other than paste-rt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Peer {
    /// tokio's current-thread runtime (one worker), `LocalSet` tasks.
    Tokio,
    /// tokio's multi-thread, work-stealing runtime with [`PeerConfig::workers`]
    /// workers (what most tokio services run). `rpc` and `echo` only; not in the
    /// single-core default set.
    TokioMt,
    /// monoio 0.2 on its io_uring driver.
    MonoioUring,
    /// monoio 0.2 on its legacy (epoll, through mio) driver.
    MonoioLegacy,
    /// A hand-written io_uring loop: multishot accept and recv over a provided buffer
    /// ring, one `io_uring_enter` per loop iteration. `rpc` and `echo` only.
    RawUring,
    /// hyper 1.x (HTTP/1.1 keep-alive and h2c) on tokio's current-thread runtime, with
    /// the very service of paste-rt's `hyper` example. `rpc` only; not in the default
    /// set (ask for it with `--subjects hyper-tokio,hyper-paste-rt-uring,...`).
    HyperTokio,
}

impl Peer {
    /// Every peer, in report order.
    pub const ALL: [Peer; 4] = [Peer::Tokio, Peer::MonoioUring, Peer::MonoioLegacy, Peer::RawUring];

    /// Peers run only when asked for by name (`paste-bench ab` adds tokio-mt to its
    /// defaults when it runs more than one server core).
    pub const OPTIONAL: [Peer; 2] = [Peer::TokioMt, Peer::HyperTokio];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Tokio => "tokio",
            Peer::TokioMt => "tokio-mt",
            Peer::MonoioUring => "monoio-uring",
            Peer::MonoioLegacy => "monoio-legacy",
            Peer::RawUring => "raw-uring",
            Peer::HyperTokio => "hyper-tokio",
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of [`Peer::ALL`] or [`Peer::OPTIONAL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown peer {name:?}; one of: tokio, tokio-mt, monoio-uring, monoio-legacy, raw-uring, hyper-tokio")]
pub struct UnknownPeer {
    /// The name given.
    pub name: String,
}

impl FromStr for Peer {
    type Err = UnknownPeer;

    fn from_str(s: &str) -> Result<Self, UnknownPeer> {
        Peer::ALL
            .into_iter()
            .chain(Peer::OPTIONAL)
            .find(|p| p.name() == s.trim())
            .ok_or_else(|| UnknownPeer { name: s.to_owned() })
    }
}

/// How a peer serves its workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// Body length of the `200 OK` response of `rpc` and `wal` (64: the 151-byte
    /// response of the PASTE paper).
    pub body_len: usize,
    /// Where the `wal` log file is created (and unlinked at once, so a killed server
    /// leaves nothing behind); `None`: the system's temporary directory.
    pub wal_dir: Option<PathBuf>,
    /// Emulated persistent-memory latency: a busy wait of this many nanoseconds after
    /// every flush of the `wal` log (0: none).
    pub pm_latency_ns: u64,
    /// paste-rt's choice between its zero-copy and copy `wal` variants. Peers have no
    /// zero-copy path (they receive into their own heap buffers), so they always copy
    /// the body into the log, whatever this says.
    pub wal_copy: bool,
    /// tokio-mt: worker threads (the server's cores). Other peers run one thread per
    /// copy and ignore it.
    pub workers: usize,
}

impl Default for PeerConfig {
    /// The protocol's defaults: 64-byte bodies, log in the temporary directory, no
    /// emulated latency, copy variant, one tokio-mt worker.
    fn default() -> Self {
        PeerConfig { body_len: 64, wal_dir: None, pm_latency_ns: 0, wal_copy: true, workers: 1 }
    }
}

/// Why a peer could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The peer does not serve this workload.
    #[error("{peer} does not serve the {workload} workload: {reason}")]
    Unsupported {
        /// The peer asked for.
        peer: Peer,
        /// The workload asked for.
        workload: Workload,
        /// Why not.
        reason: String,
    },
    /// A system call failed.
    #[error("{peer}: {what}: {source}")]
    Io {
        /// The peer that attempted it.
        peer: Peer,
        /// What was attempted.
        what: String,
        /// The failure, with its errno.
        #[source]
        source: io::Error,
    },
}

impl PeerError {
    /// Wraps `source`, the failure of `what`.
    pub(crate) fn io(peer: Peer, what: impl Into<String>, source: io::Error) -> Self {
        PeerError::Io { peer, what: what.into(), source }
    }
}

impl From<PeerError> for io::Error {
    /// Keeps the error kind of an I/O failure (its errno is in the message and the
    /// source chain); `Unsupported` becomes [`io::ErrorKind::Unsupported`].
    fn from(err: PeerError) -> io::Error {
        let kind = match &err {
            PeerError::Unsupported { .. } => io::ErrorKind::Unsupported,
            PeerError::Io { source, .. } => source.kind(),
        };
        io::Error::new(kind, err)
    }
}

/// Whether `peer` can serve `workload` on this machine: `Err` says why not (a
/// combination the peer does not implement, or io_uring unavailable here).
pub fn supported(peer: Peer, workload: Workload) -> Result<(), String> {
    match peer {
        Peer::Tokio | Peer::MonoioLegacy => Ok(()),
        Peer::MonoioUring => raw_uring::probe().map_err(|e| format!("io_uring is not available here: {e}")),
        Peer::RawUring => {
            if !matches!(workload, Workload::Rpc | Workload::Echo) {
                return Err(format!(
                    "raw-uring serves rpc and echo only (a canned-response reference loop, not a {workload} server)"
                ));
            }
            raw_uring::probe().map_err(|e| format!("io_uring is not available here: {e}"))
        }
        Peer::TokioMt if matches!(workload, Workload::Rpc | Workload::Echo) => Ok(()),
        Peer::TokioMt => Err(format!(
            "tokio-mt serves rpc and echo only (its tasks move between workers, so a {workload} store or log \
             would have to be shared, which no other subject pays for)"
        )),
        Peer::HyperTokio if workload == Workload::Rpc => Ok(()),
        Peer::HyperTokio => Err(format!("hyper-tokio serves rpc only, not {workload}")),
    }
}

/// Serves `workload` with `peer` on `listener` until the process is killed.
///
/// Blocks the calling thread and builds its own runtime (or ring); the listener's
/// blocking mode is set as the peer needs it. Returns only on a setup failure or a
/// fatal error of the accept loop; errors of one connection close that connection.
pub fn serve(peer: Peer, workload: Workload, listener: TcpListener, config: &PeerConfig) -> io::Result<()> {
    if let Err(reason) = supported(peer, workload) {
        return Err(PeerError::Unsupported { peer, workload, reason }.into());
    }
    match peer {
        Peer::RawUring => raw_uring::serve(workload, listener, config),
        Peer::HyperTokio => return hyper_tokio::serve(listener),
        Peer::TokioMt => tokio_mt::serve(listener, config.workers, workload, config),
        Peer::Tokio => {
            let service = session::Service::new(peer, workload, config)?;
            tokio_peer::serve(listener, service)
        }
        Peer::MonoioUring => {
            let service = session::Service::new(peer, workload, config)?;
            monoio_peer::serve(monoio_peer::Driver::IoUring, listener, service)
        }
        Peer::MonoioLegacy => {
            let service = session::Service::new(peer, workload, config)?;
            monoio_peer::serve(monoio_peer::Driver::Legacy, listener, service)
        }
    }
    .map_err(io::Error::from)
}

/// Whether an accept error leaves the listener usable (the connection was aborted, or
/// the process ran out of descriptors or memory for now).
pub(crate) fn accept_error_is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EINTR
                | libc::EMFILE
                | libc::ENFILE
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::EPROTO
        )
    ) || e.kind() == io::ErrorKind::Interrupted
}

/// After a transient accept error: report it and, when descriptors or memory ran
/// out, pause briefly instead of spinning on a listener that stays readable.
pub(crate) fn back_off_after_accept_error(peer: Peer, e: &io::Error) {
    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)) {
        eprintln!("{peer}: accepting a connection: {e}; pausing 10 ms");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A connection closed because the server failed (not the client): say so on stderr,
/// where the harness collects the server's output.
pub(crate) fn report_connection_error(peer: Peer, e: &dyn std::error::Error) {
    eprintln!("{peer}: closing a connection: {e}");
}
