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
//! Modules: [`log`] (on-disk format), [`store`] (slots, index, recovery),
//! [`server`] (the batch handler).

pub mod log;
pub mod server;
pub mod store;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use paste_rt::net::TcpListener;
use paste_rt::persist::{FlushMethod, Persister};
use paste_rt::runtime::Builder;

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
}

impl WalConfig {
    /// Defaults for `dir`: zero copy, 16 384 records, no PM latency, detected flush.
    pub fn new(dir: impl Into<PathBuf>) -> WalConfig {
        WalConfig { dir: dir.into(), mode: Mode::ZeroCopy, capacity: 16 * 1024, pm_latency_ns: 0, flush: None }
    }
}

/// Recovers the log in `config.dir`, starts a runtime from `builder` (over a
/// file-backed pool in zero-copy mode), binds `addr`, calls `on_ready` with the bound address and what
/// was recovered, and serves until the process ends.
pub fn run(
    config: &WalConfig,
    builder: Builder,
    addr: SocketAddr,
    on_ready: impl FnOnce(SocketAddr, &paste_rt::Runtime, WalStats),
) -> io::Result<()> {
    let recovery = Recovery::open(&config.dir, config.capacity, config.mode)?;
    let kept = recovery.kept_indices();
    let buffers = config.capacity.saturating_add(8192);
    // Only zero copy keeps bodies in the pool: copy mode needs no persistent pool (and
    // so also runs where one cannot be honoured, e.g. PASTE without extmem).
    let zero_copy = config.mode == Mode::ZeroCopy;
    let builder = builder.buffers(buffers);
    let builder = if zero_copy { builder.pool_file(config.dir.join("pool"), kept) } else { builder };
    let rt = builder.build().map_err(|e| {
        let hint =
            if zero_copy { " (zero-copy mode keeps bodies in a persistent pool file; --copy does not)" } else { "" };
        io::Error::other(format!("{e}{hint}"))
    })?;
    let method = config.flush.unwrap_or_else(FlushMethod::detect);
    rt.block_on(async {
        let pool = paste_rt::runtime::pool();
        let wal = recovery.attach(pool, rt.backend().name(), Persister::new(method, config.pm_latency_ns))?;
        let listener = TcpListener::bind(addr).await?;
        on_ready(listener.local_addr()?, &rt, wal.stats());
        // Ctrl-C / SIGTERM: the batch server stops accepting, answers the batch in
        // hand (acknowledged only once durable), closes its connections; exit 0.
        crate::connection::shutdown_on_signals();
        let mut server = WalServer::new(wal);
        paste_rt::batch::serve(listener, move |batch| server.on_batch(batch)).await
    })
}
