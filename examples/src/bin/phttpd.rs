//! phttpd: the PASTE paper's HTTP server on paste-rt (see `paste_rt_examples::phttpd`).

use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use paste_rt_examples::cli::{HttpTimeoutArgs, RuntimeArgs};
use paste_rt_examples::phttpd::{self, Config, Mode};

/// phttpd, the PASTE paper's HTTP server: keep-alive HTTP/1.1, GET and POST
/// answered with a 200 OK of an 87-byte header and a --body-len body (151 bytes
/// for the default 64), pipelining, requests split anywhere.
#[derive(Debug, Clone, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    runtime: RuntimeArgs,
    #[command(flatten)]
    timeouts: HttpTimeoutArgs,
    /// TCP port to listen on.
    #[arg(long, default_value_t = 60000)]
    port: u16,
    /// Bytes of the 200 OK body.
    #[arg(long, default_value_t = phttpd::DEFAULT_BODY_LEN, value_parser = parse_body_len)]
    body_len: usize,
    /// tasks: one task per connection; batch: one handler per tick for every
    /// connection (needs the runtime's batch API).
    #[arg(long, value_enum, default_value_t = ModeArg::Tasks)]
    mode: ModeArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    Tasks,
    Batch,
}

impl ModeArg {
    fn as_str(self) -> &'static str {
        match self {
            ModeArg::Tasks => "tasks",
            ModeArg::Batch => "batch",
        }
    }
}

/// `--body-len`: up to 1 MiB.
fn parse_body_len(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n <= 1 << 20 => Ok(n),
        _ => Err(format!("`{s}` is not a body length from 0 to 1048576")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = args.runtime.builder().run_main(move || {
        let args = args.clone();
        async move {
            let listener = args.runtime.listen(args.port).await?;
            let mode = match args.mode {
                ModeArg::Tasks => Mode::Tasks,
                ModeArg::Batch => Mode::Batch,
            };
            args.runtime.announce(
                "phttpd",
                &listener,
                format_args!(", mode {}, body {} bytes", args.mode.as_str(), args.body_len),
            );
            // Ctrl-C / SIGTERM: stop accepting, answer what is in hand (within the
            // grace), exit 0.
            let grace = args.runtime.shutdown_grace;
            let config = Config { body_len: args.body_len, mode };
            let serve = phttpd::serve_with(listener, config, args.timeouts.timeouts(grace));
            paste_rt_examples::connection::serve_gracefully(serve, grace).await
        }
    });
    paste_rt_examples::cli::exit_code("phttpd", result)
}
