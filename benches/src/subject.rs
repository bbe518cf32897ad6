//! The subjects of an A/B run — paste-rt on one backend, or a peer — and serving
//! one of them in the current process (the `paste-bench serve` child).
//!
//! Owns subject names (`paste-rt-<backend>`, `tokio`, `monoio-uring`,
//! `monoio-legacy`, `raw-uring`), the "emulated" label of `paste-emu`, whether a
//! subject can serve a workload here, and the server side of a child: bind, pin,
//! announce the address, answer the control channel, serve forever. It never
//! measures: the parent does.

use std::fmt;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::str::FromStr;

use paste_rt::BackendKind;

use crate::control;
use crate::peers::{self, Peer, PeerConfig};
use crate::workload::Workload;

/// The paste-rt backends, in the order subjects are listed.
pub const BACKENDS: [BackendKind; 4] =
    [BackendKind::Paste, BackendKind::PasteEmu, BackendKind::Uring, BackendKind::Epoll];

/// One server under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    /// A paste-rt example server on one backend.
    PasteRt(BackendKind),
    /// A peer server (tokio, monoio, raw io_uring, hyper on tokio).
    Peer(Peer),
    /// paste-rt's `hyper` example (hyper 1.x through paste-rt's adapters) on one
    /// backend: `rpc` only, run when named (`hyper-paste-rt-uring`, ...).
    HyperPasteRt(BackendKind),
}

impl Subject {
    /// Every subject, in report order: paste-rt backends, then the peers.
    pub fn all() -> Vec<Subject> {
        BACKENDS.iter().map(|&k| Subject::PasteRt(k)).chain(Peer::ALL.iter().map(|&p| Subject::Peer(p))).collect()
    }

    /// The subject's name on the command line and in `results.json`.
    pub fn name(self) -> String {
        match self {
            Subject::PasteRt(k) => format!("paste-rt-{}", k.name()),
            Subject::Peer(p) => p.name().to_owned(),
            Subject::HyperPasteRt(k) => format!("hyper-paste-rt-{}", k.name()),
        }
    }

    /// Whether its figures are emulated (paste-emu: PASTE's data path emulated in
    /// user space, not the kernel's).
    pub fn is_emulated(self) -> bool {
        self.backend() == Some(BackendKind::PasteEmu)
    }

    /// The paste-rt backend it runs on, for paste-rt subjects.
    pub fn backend(self) -> Option<BackendKind> {
        match self {
            Subject::PasteRt(k) | Subject::HyperPasteRt(k) => Some(k),
            Subject::Peer(_) => None,
        }
    }

    /// The name as printed in tables, reports and charts: `(emulated)` appended for
    /// paste-emu, everywhere.
    pub fn label(self) -> String {
        if self.is_emulated() {
            format!("{} (emulated)", self.name())
        } else {
            self.name()
        }
    }

    /// Whether this subject has a server for `workload` (not whether its backend
    /// starts here: see the backend probe).
    pub fn serves(self, workload: Workload) -> Result<(), String> {
        match self {
            Subject::PasteRt(_) => match workload {
                Workload::Rpc | Workload::Echo | Workload::Kv | Workload::Wal => Ok(()),
            },
            Subject::Peer(p) => peers::supported(p, workload),
            Subject::HyperPasteRt(_) if workload == Workload::Rpc => Ok(()),
            Subject::HyperPasteRt(_) => Err(format!("hyper-paste-rt serves rpc only, not {workload}")),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

impl FromStr for Subject {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(backend) = s.strip_prefix("hyper-paste-rt-") {
            return backend
                .parse::<BackendKind>()
                .map(Subject::HyperPasteRt)
                .map_err(|e| format!("subject {s:?}: {e}"));
        }
        if let Some(backend) = s.strip_prefix("paste-rt-") {
            return backend.parse::<BackendKind>().map(Subject::PasteRt).map_err(|e| format!("subject {s:?}: {e}"));
        }
        s.parse::<Peer>().map(Subject::Peer).map_err(|_| {
            let names: Vec<String> = Subject::all().into_iter().map(Subject::name).collect();
            format!("unknown subject {s:?}; one of: {}", names.join(", "))
        })
    }
}

/// How a child serves: the workload's server settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    /// Body bytes of rpc/wal responses.
    pub body_len: usize,
    /// phttpd's mode for paste-rt subjects.
    pub batch: bool,
    /// The peers' settings (wal directory, PM latency, copy mode).
    pub peer: PeerConfig,
    /// Pin the server to this core.
    pub core: Option<usize>,
}

/// Why a subject could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The subject has no server for the workload.
    #[error("{subject} cannot serve {workload}: {reason}")]
    Unsupported {
        /// The subject.
        subject: String,
        /// The workload.
        workload: Workload,
        /// Why.
        reason: String,
    },
    /// The paste-rt backend did not start.
    #[error("{subject}: backend did not start: {reason}")]
    Start {
        /// The subject.
        subject: String,
        /// The backend's reason (with its errno).
        reason: String,
    },
    /// Binding, accepting or serving failed.
    #[error("{subject}: {what}: {source}")]
    Io {
        /// The subject.
        subject: String,
        /// What was attempted.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// The first line a serving child prints on stdout: its address and whether it
/// could be pinned.
pub fn announce(addr: SocketAddr, pinned: &Result<(), String>) {
    let pin = match pinned {
        Ok(()) => "ok".to_owned(),
        Err(e) => e.replace('\n', " "),
    };
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{} {addr} pin={pin}", control::LISTENING);
    let _ = out.flush();
}

/// Serves `subject` for `workload` on `127.0.0.1:port` in this process, forever.
/// With `control`, a thread answers `stats` lines on stdin (see [`control`]).
pub fn serve(
    subject: Subject,
    workload: Workload,
    port: u16,
    config: &ServeConfig,
    control: bool,
) -> Result<(), ServeError> {
    let name = subject.name();
    let io_err = |what: &str, source: io::Error| ServeError::Io { subject: name.clone(), what: what.into(), source };
    subject.serves(workload).map_err(|reason| ServeError::Unsupported { subject: name.clone(), workload, reason })?;
    let _ = crate::system::raise_nofile_limit();
    let pinned = match config.core {
        Some(core) => crate::system::pin_current_thread(core).map_err(|e| e.to_string()),
        None => Err("not requested".into()),
    };
    match subject {
        Subject::PasteRt(kind) if workload == Workload::Wal => serve_wal(kind, port, config, control, &pinned),
        Subject::PasteRt(kind) | Subject::HyperPasteRt(kind) => {
            let rt = paste_rt::runtime::Builder::new()
                .ignore_env()
                .backend(kind.name())
                .quiet()
                .buffers(8192)
                .build()
                .map_err(|e| ServeError::Start { subject: name.clone(), reason: e.to_string() })?;
            let handle = rt.handle();
            rt.block_on(async {
                let listener = paste_rt::net::TcpListener::bind(("127.0.0.1", port))
                    .await
                    .map_err(|e| io_err(&format!("binding 127.0.0.1:{port}"), e))?;
                let addr = listener.local_addr().map_err(|e| io_err("reading the bound address", e))?;
                announce(addr, &pinned);
                if control {
                    control::spawn_answerer(Some(handle));
                }
                let served = match workload {
                    Workload::Rpc if matches!(subject, Subject::HyperPasteRt(_)) => {
                        paste_rt_examples::hyper_server::serve(listener).await
                    }
                    Workload::Rpc => {
                        let mode = if config.batch {
                            paste_rt_examples::phttpd::Mode::Batch
                        } else {
                            paste_rt_examples::phttpd::Mode::Tasks
                        };
                        let cfg = paste_rt_examples::phttpd::Config { body_len: config.body_len, mode };
                        paste_rt_examples::phttpd::serve(listener, cfg).await
                    }
                    Workload::Echo => paste_rt_examples::echo::serve(listener).await,
                    Workload::Kv => {
                        paste_rt_examples::kv::serve(listener, paste_rt_examples::kv::Config::default()).await
                    }
                    Workload::Wal => Err(io::Error::other("wal is served by serve_wal")),
                };
                served.map_err(|e| io_err("serving", e))
            })
        }
        Subject::Peer(peer) => {
            let listener = std::net::TcpListener::bind(("127.0.0.1", port))
                .map_err(|e| io_err(&format!("binding 127.0.0.1:{port}"), e))?;
            let addr = listener.local_addr().map_err(|e| io_err("reading the bound address", e))?;
            announce(addr, &pinned);
            if control {
                control::spawn_answerer(None);
            }
            peers::serve(peer, workload, listener, &config.peer).map_err(|e| io_err("serving", e))
        }
    }
}

/// paste-rt's wal example (`paste_rt_examples::wal`): a file-backed pool and log
/// in a fresh directory per server under `config.peer.wal_dir` (or the temporary
/// directory).
fn serve_wal(
    kind: BackendKind,
    port: u16,
    config: &ServeConfig,
    control: bool,
    pinned: &Result<(), String>,
) -> Result<(), ServeError> {
    use paste_rt_examples::wal::{self, Mode, WalConfig};
    let name = Subject::PasteRt(kind).name();
    let base = config.peer.wal_dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| ServeError::Io {
        subject: name.clone(),
        what: format!("creating {}", dir.display()),
        source,
    })?;
    let mut wal_config = WalConfig::new(&dir);
    wal_config.mode = if config.peer.wal_copy { Mode::Copy } else { Mode::ZeroCopy };
    wal_config.pm_latency_ns = config.peer.pm_latency_ns;
    let builder = paste_rt::runtime::Builder::new().ignore_env().backend(kind.name()).quiet();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wal::run(&wal_config, builder, addr, |bound, rt, _recovered| {
        announce(bound, pinned);
        if control {
            control::spawn_answerer(Some(rt.handle()));
        }
    })
    .map_err(|source| ServeError::Io { subject: name, what: "serving wal".into(), source })
}
