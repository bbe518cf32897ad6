//! A zero-copy write-ahead log over HTTP — the PASTE paper's WAL workload.
//!
//! `POST` bodies are persisted where they were received: the runtime's pool is a
//! file (`DIR/pool`), the buffer holding a body is kept out of circulation
//! ([`RxBuf::keep`](paste_rt::RxBuf::keep)), and a 32-byte record (buffer index,
//! offset, length, checksums, sequence number) goes into `DIR/wal.log`. Every body
//! and record of a tick is written back, then one fence, then the tick's
//! acknowledgements leave together. `--copy` copies bodies into `DIR/wal.data`
//! instead, for comparison. At start, every record whose checksums hold is
//! recovered and served back with `GET /<seq>`; torn or incomplete ones are dropped.
//!
//! Any backend recovers a log any backend wrote: the pool file is a file. When the
//! runtime that starts lays its pool out like the one that wrote the log (epoll and
//! io_uring always do), the bodies are served where they are; otherwise they are
//! copied once into a new pool file ([`migrate`]). Only what really differs is
//! refused: another capacity or mode (`--copy`), or another record format.
//!
//! Modules: [`log`] (on-disk format), [`layout`] (where the bodies lie),
//! [`store`] (slots, index, recovery), [`migrate`] (moving a log to another
//! layout), [`server`] (the batch handler).

pub mod layout;
pub mod log;
pub mod migrate;
pub mod server;
pub mod store;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use paste_rt::net::TcpListener;
use paste_rt::persist::{FlushMethod, Persister};
use paste_rt::runtime::Builder;
use paste_rt::{BackendChoice, BackendKind};

use layout::{pool_path, probe_path, Layout};
use log::HeaderClaim;

pub use crate::timeouts::Timeouts;
pub use log::Mode;
pub use server::WalServer;
pub use store::{Recovery, Wal, WalStats};

/// Settings of a WAL server.
#[derive(Debug, Clone)]
pub struct WalConfig {
    /// Directory holding `pool`, `wal.log` and (copy mode) `wal.data`.
    pub dir: PathBuf,
    /// Zero copy or copy.
    pub mode: Mode,
    /// Record slots; the oldest records are evicted when the log wraps.
    pub capacity: u32,
    /// Busy-wait per fence, emulating slow persistent memory (the paper: 10 µs).
    pub pm_latency_ns: u64,
    /// Cache-line write-back method; `None` detects the best the CPU has.
    pub flush: Option<FlushMethod>,
    /// Time limits of the connections, and the shutdown grace.
    pub timeouts: Timeouts,
    /// Most record slots that requests still arriving may hold (see
    /// [`Wal::set_max_partial`]); `None`: half the capacity.
    pub max_partial: Option<u32>,
}

impl WalConfig {
    /// Defaults for `dir`: zero copy, 16 384 records, no PM latency, detected flush,
    /// the HTTP time limits ([`Timeouts::HTTP`]), half the log for partial requests.
    pub fn new(dir: impl Into<PathBuf>) -> WalConfig {
        WalConfig {
            dir: dir.into(),
            mode: Mode::ZeroCopy,
            capacity: 16 * 1024,
            pm_latency_ns: 0,
            flush: None,
            timeouts: Timeouts::HTTP,
            max_partial: None,
        }
    }
}

/// Recovers the log in `config.dir`, starts a runtime from `builder` (over a
/// file-backed pool in zero-copy mode), binds `addr`, calls `on_ready` with the bound
/// address and what was recovered, and serves until graceful shutdown (Ctrl-C,
/// SIGTERM).
///
/// A zero-copy log with records is first checked against the layout of the backend
/// that will run (a short-lived probe runtime over `DIR/pool.probe`); the runtime
/// then starts on that same backend, over the log's pool file when the layouts
/// agree, else over a new one the log is migrated into. Copy mode keeps no body in
/// the pool, so it needs no persistent pool (and also runs where one cannot be
/// honoured, such as kernel PASTE without extmem).
///
/// # Errors
/// The directory, log or pool file cannot be used (the error names the path), the
/// log was written with another capacity or mode, or the runtime cannot start.
pub fn run(
    config: &WalConfig,
    builder: Builder,
    addr: SocketAddr,
    on_ready: impl FnOnce(SocketAddr, &paste_rt::Runtime, WalStats),
) -> io::Result<()> {
    let dir = &config.dir;
    let mut recovery = Recovery::open(dir, config.capacity, config.mode)?;
    let builder = builder.buffers(config.capacity.saturating_add(8192));
    let zero_copy = config.mode == Mode::ZeroCopy;
    let start_error = |e: paste_rt::BuildError| {
        let hint =
            if zero_copy { " (zero-copy mode keeps bodies in a persistent pool file; --copy does not)" } else { "" };
        io::Error::other(format!("{e}{hint}"))
    };
    let method = config.flush.unwrap_or_else(FlushMethod::detect);
    // A probed start pins the backend the probe chose; the start-up line `auto` prints
    // (with the backend's report) is then printed here, once.
    let auto = builder.effective_choice().is_ok_and(|c| c == BackendChoice::Auto);
    let probed = zero_copy && !matches!(recovery.claim(), HeaderClaim::None);
    let (rt, migrate_to) = match recovery.claim().clone() {
        HeaderClaim::Claim(claim) if config.mode == Mode::ZeroCopy => {
            let (kind, layout) = probe(&builder, dir)?;
            let builder = pinned(builder, kind);
            if layout == claim.layout {
                (builder.pool_file(recovery.pool_file(), recovery.kept_indices()).build().map_err(start_error)?, None)
            } else {
                let next = claim.generation + 1;
                (builder.pool_file(pool_path(dir, next), Vec::new()).build().map_err(start_error)?, Some(next))
            }
        }
        HeaderClaim::Legacy(name) if config.mode == Mode::ZeroCopy => {
            // Written by an earlier version, which named the backend: readable by
            // that backend only, which then records the layout.
            let (kind, _) = probe(&builder, dir)?;
            if kind.name() != name {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: written by an earlier wal, on the {name} backend: start it once with --backend {name} \
                         (it then records its pool layout, and any backend recovers it)",
                        dir.join("wal.log").display()
                    ),
                ));
            }
            (
                pinned(builder, kind)
                    .pool_file(recovery.pool_file(), recovery.kept_indices())
                    .build()
                    .map_err(start_error)?,
                None,
            )
        }
        _ if zero_copy => {
            (builder.pool_file(recovery.pool_file(), recovery.kept_indices()).build().map_err(start_error)?, None)
        }
        _ => (builder.build().map_err(start_error)?, None),
    };
    if probed && auto {
        eprintln!("paste-rt: {}", rt.selection());
    }
    rt.block_on(async {
        let pool = paste_rt::runtime::pool();
        if let Some(generation) = migrate_to {
            recovery = migrate::migrate(recovery, &pool, generation, method)?;
        }
        let mut wal = recovery.attach(pool, Persister::new(method, config.pm_latency_ns))?;
        if let Some(slots) = config.max_partial {
            wal.set_max_partial(slots);
        }
        let listener = TcpListener::bind(addr).await?;
        on_ready(listener.local_addr()?, &rt, wal.stats());
        // Ctrl-C / SIGTERM: the batch server stops accepting, answers the batch in
        // hand (acknowledged only once durable), closes its connections; exit 0.
        crate::connection::shutdown_on_signals();
        let mut server = WalServer::with_timeouts(wal, config.timeouts);
        paste_rt::batch::serve(listener, move |batch| server.on_batch(batch)).await
    })
}

/// Starts a runtime from `builder` over a scratch pool file to learn which backend
/// it chooses and how that backend lays its pool out; removes the file.
fn probe(builder: &Builder, dir: &std::path::Path) -> io::Result<(BackendKind, Layout)> {
    let path = probe_path(dir);
    // Quiet: the runtime that serves prints the start-up line (with the backend's
    // report, e.g. where kernel PASTE found the kept buffers).
    let rt =
        builder.clone().quiet().pool_file(&path, Vec::new()).build().map_err(|e| io::Error::other(e.to_string()))?;
    let kind = rt.backend();
    let layout = rt.block_on(async { Layout::of(&paste_rt::runtime::pool(), &path) });
    drop(rt);
    std::fs::remove_file(&path).map_err(|e| layout::at(&path, "removing", e))?;
    Ok((kind, layout?))
}

/// `builder` on `kind` only (the backend the probe chose; the environment was
/// applied then). It prints the start-up line the probe kept quiet.
fn pinned(builder: Builder, kind: BackendKind) -> Builder {
    builder.ignore_env().backend_choice(BackendChoice::Only(kind))
}
