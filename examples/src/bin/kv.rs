//! kv: a memcached-compatible server, text protocol (see `paste_rt_examples::kv`).

use std::process::ExitCode;

use std::time::Duration;

use clap::Parser;
use paste_rt_examples::cli::{limit, parse_secs, RuntimeArgs};
use paste_rt_examples::kv::{self, Config, Timeouts};

/// kv, a memcached text-protocol server on paste-rt (get, gets, set, add, replace,
/// append, prepend, cas, delete, incr, decr, touch, flush_all, version, stats,
/// verbosity, quit; a binary-protocol request gets the binary "unknown command"
/// error and is closed). With --threads N each thread keeps its own store (and
/// `stats` reports that thread's).
#[derive(Debug, Clone, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// TCP port to listen on.
    #[arg(long, default_value_t = 11211)]
    port: u16,
    /// Largest value in bytes; larger sets get SERVER_ERROR object too large for cache.
    #[arg(long, default_value_t = Config::default().max_item_size)]
    max_item_size: usize,
    /// Memory budget of each thread's store, in MiB.
    #[arg(long, default_value_t = Config::default().max_memory >> 20)]
    memory_mb: usize,
    /// Seconds for a command (its line and data block) to arrive complete once it
    /// has started; then the connection is closed. 0: no limit.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    header_timeout: Duration,
    /// Seconds a connection may sit idle between commands before it is closed.
    /// Default: no limit, as memcached.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    idle_timeout: Option<Duration>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = args.runtime.builder().run_main(move || {
        let args = args.clone();
        async move {
            let listener = args.runtime.listen(args.port).await?;
            let config = Config {
                max_item_size: args.max_item_size,
                max_memory: args.memory_mb.saturating_mul(1 << 20),
                threads: args.runtime.threads,
                ..Config::default()
            };
            args.runtime.announce(
                "kv",
                &listener,
                format_args!(", items up to {} bytes, {} MiB per store", config.max_item_size, args.memory_mb),
            );
            // Ctrl-C / SIGTERM: stop accepting, answer what is in hand (within the
            // grace), exit 0.
            let grace = args.runtime.shutdown_grace;
            let timeouts = Timeouts {
                header: limit(args.header_timeout),
                idle: args.idle_timeout.and_then(limit),
                shutdown_grace: grace,
            };
            paste_rt_examples::connection::serve_gracefully(kv::serve_with(listener, config, timeouts), grace).await
        }
    });
    paste_rt_examples::cli::exit_code("kv", result)
}
