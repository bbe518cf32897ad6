//! The command-line flags the example binaries share, and their start line.
//!
//! Owns `--backend`, `--threads`, `--bind` and `--shutdown-grace` ([`RuntimeArgs`]),
//! how they become a runtime [`Builder`], the HTTP servers' time limits
//! ([`HttpTimeoutArgs`]), how seconds are parsed ([`parse_secs`]), and the one line
//! each server prints once it listens. It never starts a server itself: each binary
//! in `src/bin/` does, with its own flags.
//!
//! `--backend` and `PASTE_RT_BACKEND`: the flag wins; the variable is the default
//! when the flag is absent; `auto` when neither is given. Every example follows
//! this one rule.

use std::fmt::Display;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use paste_rt::net::TcpListener;
use paste_rt::runtime::Builder;
use paste_rt::BackendChoice;

/// Flags of every example server: which backend, how many threads, which address.
#[derive(Debug, Clone, clap::Args)]
pub struct RuntimeArgs {
    /// I/O backend: auto, paste, paste-emu, uring or epoll. The flag wins; without
    /// it, PASTE_RT_BACKEND; without both, auto. `auto` takes the first that starts
    /// of paste, uring, epoll; a named backend that cannot start is an error.
    #[arg(long, env = paste_rt::runtime::BACKEND_ENV, default_value = "auto")]
    pub backend: BackendChoice,
    /// Runtime threads, thread-per-core: each runs its own copy of the server on the
    /// same port (SO_REUSEPORT), pinned to a core where allowed.
    #[arg(long, default_value_t = 1, value_parser = parse_threads)]
    pub threads: usize,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// Seconds a connection in the middle of a request may take to finish it once
    /// Ctrl-C or SIGTERM asked the server to stop; then it is closed and the
    /// process exits. Idle connections close at once.
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = parse_secs)]
    pub shutdown_grace: Duration,
}

/// The time limits of the HTTP servers (phttpd, wal).
#[derive(Debug, Clone, clap::Args)]
pub struct HttpTimeoutArgs {
    /// Seconds for a request head to arrive complete (for a connection's first
    /// request, counted from the connection's start); then `408` and close. 0: no
    /// limit.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    pub header_timeout: Duration,
    /// Seconds a kept-alive connection may wait for its next request, and a request
    /// body may pause, before the connection is closed (`408` inside a body). 0: no
    /// limit.
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_secs)]
    pub idle_timeout: Duration,
}

impl HttpTimeoutArgs {
    /// The limits these flags and `shutdown_grace` describe.
    pub fn timeouts(&self, shutdown_grace: Duration) -> crate::timeouts::Timeouts {
        crate::timeouts::Timeouts { header: limit(self.header_timeout), idle: limit(self.idle_timeout), shutdown_grace }
    }
}

/// A limit flag's value: 0 means none.
pub fn limit(secs: Duration) -> Option<Duration> {
    (!secs.is_zero()).then_some(secs)
}

/// Seconds, whole or decimal (`10`, `0.5`), from 0 to one day.
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=86_400.0).contains(&v) => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!("`{s}` is not a number of seconds from 0 to 86400")),
    }
}

impl RuntimeArgs {
    /// The runtime builder for these flags (the environment was already read by the
    /// flag parser, so the builder ignores it).
    pub fn builder(&self) -> Builder {
        Builder::new().ignore_env().backend_choice(self.backend).threads(self.threads)
    }

    /// Binds the server's listener on `--bind` and `port`.
    ///
    /// # Errors
    /// The bind error, saying which address was attempted.
    pub async fn listen(&self, port: u16) -> io::Result<TcpListener> {
        let addr = SocketAddr::new(self.bind, port);
        TcpListener::bind(addr).await.map_err(|e| io::Error::new(e.kind(), format!("binding {addr}: {e}")))
    }

    /// Prints `<program>: listening on <addr>, backend <kind> (<choice>), N thread(s)`
    /// — once per process, however many runtime threads call it.
    pub fn announce(&self, program: &str, listener: &TcpListener, extra: impl Display) {
        static ANNOUNCED: AtomicBool = AtomicBool::new(false);
        if ANNOUNCED.swap(true, Ordering::AcqRel) {
            return;
        }
        let addr = listener.local_addr().map_or_else(|e| format!("? ({e})"), |a| a.to_string());
        let backend = paste_rt::current_backend().map_or_else(|| "?".to_string(), |k| k.to_string());
        let threads = if self.threads == 1 { "1 thread".to_string() } else { format!("{} threads", self.threads) };
        println!("{program}: listening on {addr}, backend {backend} ({}), {threads}{extra}", self.backend);
    }
}

/// `--threads`: a positive number.
/// The exit status of an example: success, or the error printed as
/// `program: error` and a failure status.
pub fn exit_code(program: &str, result: io::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn parse_threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=1024).contains(&n) => Ok(n),
        _ => Err(format!("`{s}` is not a thread count from 1 to 1024")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        runtime: RuntimeArgs,
    }

    #[test]
    fn flags_parse_and_reject() {
        let cli = Cli::try_parse_from(["x", "--backend", "epoll", "--threads", "3", "--bind", "127.0.0.1"]).unwrap();
        assert_eq!(cli.runtime.backend, BackendChoice::Only(paste_rt::BackendKind::Epoll));
        assert_eq!(cli.runtime.threads, 3);
        assert_eq!(cli.runtime.bind, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(cli.runtime.shutdown_grace, Duration::from_secs(2));
        let cli = Cli::try_parse_from(["x", "--shutdown-grace", "0.25"]).unwrap();
        assert_eq!(cli.runtime.shutdown_grace, Duration::from_millis(250));
        for bad in [
            &["x", "--backend", "iouring"][..],
            &["x", "--threads", "0"],
            &["x", "--bind", "nowhere"],
            &["x", "--shutdown-grace", "-1"],
            &["x", "--shutdown-grace", "soon"],
            &["x", "--shutdown-grace", "NaN"],
        ] {
            let e = Cli::try_parse_from(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}");
        }
    }
}
