//! `wal`: the zero-copy write-ahead log server (see `paste_rt_examples::wal`).

use std::net::SocketAddr;
use std::path::PathBuf;

use std::time::Duration;

use clap::Parser;
use paste_rt::persist::FlushMethod;
use paste_rt::runtime::Builder;
use paste_rt::BackendChoice;
use paste_rt_examples::cli::{parse_secs, HttpTimeoutArgs};
use paste_rt_examples::wal::{self, Mode, WalConfig};

/// wal, a write-ahead log over HTTP: POST bodies persisted in place (zero copy) in
/// a file-backed buffer pool, acknowledged only after the flush; `GET /<seq>`
/// serves them back, including after a crash, and on any backend.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// TCP port.
    #[arg(long, default_value_t = 60000)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "0.0.0.0")]
    bind: std::net::IpAddr,
    /// Directory for the pool and log files (recovered at start, created if new).
    #[arg(long)]
    dir: PathBuf,
    /// Copy bodies into a log file instead of keeping them in place.
    #[arg(long)]
    copy: bool,
    /// Records kept; the oldest are evicted when the log wraps.
    #[arg(long, default_value_t = 16 * 1024)]
    capacity: u32,
    /// Busy-wait per flush batch emulating slow persistent memory (the paper used 10000).
    #[arg(long, default_value_t = 0)]
    pm_latency_ns: u64,
    /// Use msync instead of cache-line flushes (durable on ordinary files across power loss).
    #[arg(long)]
    msync: bool,
    /// I/O backend: auto, paste, paste-emu, uring or epoll. The flag wins; without
    /// it, PASTE_RT_BACKEND; without both, auto. A log written on one backend is
    /// recovered on any other.
    #[arg(long, env = paste_rt::runtime::BACKEND_ENV, default_value = "auto")]
    backend: BackendChoice,
    #[command(flatten)]
    timeouts: HttpTimeoutArgs,
    /// Record slots that requests still arriving may hold; a body part beyond it is
    /// answered 503 with Retry-After (default: half of --capacity).
    #[arg(long, value_name = "SLOTS")]
    max_partial: Option<u32>,
    /// Seconds a connection in the middle of a request may take to finish it once
    /// Ctrl-C or SIGTERM asked the server to stop; then it is closed.
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = parse_secs)]
    shutdown_grace: Duration,
}

fn main() {
    let args = Args::parse();
    let config = WalConfig {
        dir: args.dir,
        mode: if args.copy { Mode::Copy } else { Mode::ZeroCopy },
        capacity: args.capacity,
        pm_latency_ns: args.pm_latency_ns,
        flush: args.msync.then_some(FlushMethod::Msync),
        timeouts: args.timeouts.timeouts(args.shutdown_grace),
        max_partial: args.max_partial,
    };
    let addr = SocketAddr::new(args.bind, args.port);
    let result =
        wal::run(&config, Builder::new().ignore_env().backend_choice(args.backend), addr, |local, rt, stats| {
            println!(
                "wal: listening on {local}, backend {} ({}), {:?} mode, recovered {} records (dropped {})",
                rt.backend(),
                if rt.backend() == paste_rt::BackendKind::PasteEmu { "emulated PASTE" } else { "native" },
                config.mode,
                stats.recovered,
                stats.dropped
            );
        });
    if let Err(e) = result {
        eprintln!("wal: {e}");
        std::process::exit(1);
    }
}
