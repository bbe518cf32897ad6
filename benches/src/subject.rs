//! The subjects of an A/B run — paste-rt on one backend, or a peer — and serving
//! one of them in the current process (the `paste-bench serve` child).
//!
//! Owns subject names (`paste-rt-<backend>`, `tokio`, `tokio-mt`, `monoio-uring`,
//! `monoio-legacy`, `raw-uring`), the "emulated" label of `paste-emu`, whether a
//! subject can serve a workload here and on how many cores, and the server side of
//! a child: pin to the server's cores, bind, announce the address, answer the
//! control channel, serve forever. On N cores, paste-rt runs N runtimes
//! (`Builder::threads`, thread-per-core), tokio-mt one runtime with N workers, and
//! every other peer N copies of itself, each on its own thread and core, sharing
//! the port with `SO_REUSEPORT` ([`crate::server_copies`]). It never measures: the
//! parent does.

use std::fmt;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use paste_rt::BackendKind;

use crate::control::{self, Runtimes};
use crate::peers::{self, Peer, PeerConfig};
use crate::server_copies::{self, SharedPort};
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

/// paste-emu's provider sync, as callgrind names it (see
/// [`Subject::emulated_kernel_function`]).
pub const EMULATED_KERNEL_FUNCTION: &str = "paste_rt_paste::emu_provider::EmuProvider::sync";

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

    /// The function that holds all of the emulated kernel's work, for emulated
    /// subjects: paste-emu's provider sync (txsync, the socket work on io_uring,
    /// rxsync). Kernel PASTE does that work in the kernel, so `paste-bench callgrind`
    /// reports its share apart. The function is kept out of line for this
    /// (`#[inline(never)]` in paste-rt-paste); the harness says so when it is
    /// missing from a profile rather than report a zero.
    pub fn emulated_kernel_function(self) -> Option<&'static str> {
        self.is_emulated().then_some(EMULATED_KERNEL_FUNCTION)
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

    /// Whether this subject has a server for `workload` on `server_cores` cores.
    /// More than one core serves the stateless workloads only (`rpc`, `echo`): kv
    /// keeps one store per server and paste-rt's wal example one log on one runtime,
    /// which thread-per-core copies would each have for themselves.
    pub fn serves_on(self, workload: Workload, server_cores: usize) -> Result<(), String> {
        self.serves(workload)?;
        if server_cores > 1 && matches!(workload, Workload::Kv | Workload::Wal) {
            return Err(format!(
                "{workload} is measured on one server core only (its store or log belongs to one server; \
                 thread-per-core copies would each keep their own)"
            ));
        }
        Ok(())
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

/// How a child serves: the workload's server settings, its cores and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    /// Body bytes of rpc/wal responses.
    pub body_len: usize,
    /// phttpd's mode for paste-rt subjects.
    pub batch: bool,
    /// The peers' settings (wal directory, PM latency, copy mode).
    pub peer: PeerConfig,
    /// Threads (server cores): paste-rt runtimes, tokio-mt workers, or peer copies.
    pub threads: usize,
    /// Pin the server to these cores (copy `i` to `cores[i]`); empty: no pinning.
    pub cores: Vec<usize>,
    /// The address to listen on.
    pub bind: IpAddr,
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

/// Serves `subject` for `workload` on `config.bind` and `port` in this process,
/// forever, on `config.threads` threads pinned to `config.cores`. With `control`, a
/// thread answers `stats` lines on stdin (see [`control`]).
pub fn serve(
    subject: Subject,
    workload: Workload,
    port: u16,
    config: &ServeConfig,
    control: bool,
) -> Result<(), ServeError> {
    let name = subject.name();
    let threads = config.threads.max(1);
    subject.serves_on(workload, threads).map_err(|reason| ServeError::Unsupported {
        subject: name.clone(),
        workload,
        reason,
    })?;
    let _ = crate::system::raise_nofile_limit();
    // The whole process (every thread it starts from now on) stays on the server's
    // cores; thread-per-core copies then narrow to their own core.
    let pinned = if config.cores.is_empty() {
        Err("not requested".to_owned())
    } else {
        crate::system::pin_current_thread_to(&config.cores).map_err(|e| e.to_string())
    };
    let addr = SocketAddr::new(config.bind, port);
    match subject {
        Subject::PasteRt(kind) if workload == Workload::Wal => serve_wal(kind, addr, config, control, &pinned),
        Subject::PasteRt(kind) | Subject::HyperPasteRt(kind) => {
            serve_paste_rt(subject, kind, workload, addr, config, control, pinned)
        }
        Subject::Peer(peer) => serve_peer(peer, workload, addr, config, control, &pinned),
    }
}

/// A peer: tokio-mt as one runtime with `threads` workers, every other peer as
/// `threads` copies on one port.
fn serve_peer(
    peer: Peer,
    workload: Workload,
    addr: SocketAddr,
    config: &ServeConfig,
    control: bool,
    pinned: &Result<(), String>,
) -> Result<(), ServeError> {
    let name = Subject::Peer(peer).name();
    let io_err = |what: &str, source: io::Error| ServeError::Io { subject: name.clone(), what: what.into(), source };
    let threads = config.threads.max(1);
    let copies = if peer == Peer::TokioMt { 1 } else { threads };
    let listeners = server_copies::reuseport_listeners(addr, copies).map_err(|e| io_err("binding", e))?;
    let bound = listeners[0].local_addr().map_err(|e| io_err("reading the bound address", e))?;
    announce(bound, pinned);
    if control {
        control::spawn_answerer(Runtimes::default());
    }
    let peer_config = PeerConfig { workers: threads, ..config.peer.clone() };
    let cores = if copies > 1 { config.cores.clone() } else { vec![] };
    server_copies::run_copies(&name, listeners, &cores, move |listener| {
        peers::serve(peer, workload, listener, &peer_config)
    })
    .map_err(|e| io_err("serving", e))
}

/// paste-rt (or its hyper example) on `config.threads` runtimes, thread-per-core:
/// each binds its own listener on the shared port, and the last one to bind
/// announces the address, so that no connection arrives before every copy listens.
fn serve_paste_rt(
    subject: Subject,
    kind: BackendKind,
    workload: Workload,
    addr: SocketAddr,
    config: &ServeConfig,
    control: bool,
    pinned: Result<(), String>,
) -> Result<(), ServeError> {
    let name = subject.name();
    let threads = config.threads.max(1);
    let shared = Arc::new(SharedPort::new(addr.port(), threads));
    let runtimes = Runtimes::default();
    let config = Arc::new(config.clone());
    let pinned = Arc::new(pinned);
    let copy_name = name.clone();
    let body = move || {
        let (shared, runtimes, config, pinned) = (shared.clone(), runtimes.clone(), config.clone(), pinned.clone());
        let name = copy_name.clone();
        async move {
            let copy = PasteRtCopy { subject, workload, ip: addr.ip(), shared, runtimes, config, pinned, control };
            let outcome = copy.serve().await;
            // Copies serve forever: one that stops leaves the run with fewer copies
            // than asked, so the whole server stops and says why.
            match outcome {
                Ok(()) => eprintln!("paste-bench serve: {name}: a runtime stopped serving"),
                Err(e) => eprintln!("paste-bench serve: {name}: {e}"),
            }
            std::process::exit(1)
        }
    };
    paste_rt::runtime::Builder::new()
        .ignore_env()
        .backend(kind.name())
        .quiet()
        .buffers(8192)
        .threads(threads)
        .run(body)
        .map_err(|e| ServeError::Start { subject: name, reason: e.to_string() })
}

/// One paste-rt runtime's share of a server.
struct PasteRtCopy {
    subject: Subject,
    workload: Workload,
    ip: IpAddr,
    shared: Arc<SharedPort>,
    runtimes: Runtimes,
    config: Arc<ServeConfig>,
    pinned: Arc<Result<(), String>>,
    control: bool,
}

impl PasteRtCopy {
    async fn serve(self) -> io::Result<()> {
        let port = self.shared.port_to_bind().map_err(io::Error::other)?;
        let options = paste_rt::net::ListenOptions { reuse_port: Some(self.config.threads > 1), ..Default::default() };
        let listener = match paste_rt::net::TcpListener::bind_with((self.ip, port), options) {
            Ok(listener) => listener,
            Err(e) => {
                let e = io::Error::new(e.kind(), format!("binding {}:{port}: {e}", self.ip));
                self.shared.failed(e.to_string());
                return Err(e);
            }
        };
        let addr = listener.local_addr()?;
        self.runtimes.lock().unwrap_or_else(|e| e.into_inner()).push(paste_rt::Handle::current());
        if self.shared.bound(addr.port()) {
            announce(addr, &self.pinned);
            if self.control {
                control::spawn_answerer(self.runtimes.clone());
            }
        }
        let config = &self.config;
        match self.workload {
            Workload::Rpc if matches!(self.subject, Subject::HyperPasteRt(_)) => {
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
            Workload::Kv => paste_rt_examples::kv::serve(listener, paste_rt_examples::kv::Config::default()).await,
            Workload::Wal => Err(io::Error::other("wal is served by serve_wal")),
        }
    }
}

/// paste-rt's wal example (`paste_rt_examples::wal`): a file-backed pool and log
/// in a fresh directory per server under `config.peer.wal_dir` (or the temporary
/// directory).
fn serve_wal(
    kind: BackendKind,
    addr: SocketAddr,
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
    wal::run(&wal_config, builder, addr, |bound, rt, _recovered| {
        announce(bound, pinned);
        if control {
            control::spawn_answerer(Arc::new(std::sync::Mutex::new(vec![rt.handle()])));
        }
    })
    .map_err(|source| ServeError::Io { subject: name, what: "serving wal".into(), source })
}
