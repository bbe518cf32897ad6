//! The tokio-mt peer: tokio's multi-thread, work-stealing runtime with N workers,
//! one task per connection — what most tokio services run.
//!
//! Owns the server such a user would write: `Builder::new_multi_thread()` with
//! `worker_threads(N)` and I/O enabled, an accept loop spawned as a task, and per
//! connection a reused 4 KiB read buffer and a reused output buffer written once per
//! read batch (the same loop as the `tokio` peer). Tasks move between workers, so the
//! protocol state is per worker thread; it serves the stateless workloads (`rpc`,
//! `echo`) only. The workers are confined to the server's cores by the process's CPU
//! affinity, set before the runtime starts.
//!
//! It must never do protocol work of its own (that is the `session` module) and never
//! add work a straightforward tokio server would not do.

use std::cell::OnceCell;
use std::net::TcpListener;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::session::{Service, Session, Verdict, READ_BUF};
use super::{Peer, PeerConfig, PeerError, Workload};

thread_local! {
    /// The protocol state of this worker thread's connections.
    static SERVICE: OnceCell<Service> = const { OnceCell::new() };
}

/// Runs `f` with this worker thread's service, creating it on first use.
fn with_service<R>(workload: Workload, config: &PeerConfig, f: impl FnOnce(&Service) -> R) -> Result<R, PeerError> {
    SERVICE.with(|cell| {
        if cell.get().is_none() {
            let _ = cell.set(Service::new(Peer::TokioMt, workload, config)?);
        }
        cell.get().map(f).ok_or_else(|| {
            PeerError::io(Peer::TokioMt, "setting up a worker's service", std::io::Error::other("not set"))
        })
    })
}

/// Serves `workload` (`rpc` or `echo`) on `listener` with `workers` worker threads
/// until the process is killed.
pub(super) fn serve(
    listener: TcpListener,
    workers: usize,
    workload: Workload,
    config: &PeerConfig,
) -> Result<(), PeerError> {
    let err = |what: &'static str| move |e| PeerError::io(Peer::TokioMt, what, e);
    // Set up once here, so that a setup failure is reported before serving.
    Service::new(Peer::TokioMt, workload, config)?;
    listener.set_nonblocking(true).map_err(err("making the listener non-blocking"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_io()
        .build()
        .map_err(err("building the multi-thread runtime"))?;
    let config = Arc::new(config.clone());
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::from_std(listener).map_err(err("registering the listener with tokio"))?;
        let accepting = tokio::spawn(async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(e) if super::accept_error_is_transient(&e) => {
                        super::back_off_after_accept_error(Peer::TokioMt, &e);
                        continue;
                    }
                    Err(e) => return Err(PeerError::io(Peer::TokioMt, "accepting a connection", e)),
                };
                tokio::spawn(connection(stream, workload, Arc::clone(&config)));
            }
        });
        match accepting.await {
            Ok(outcome) => outcome,
            Err(e) => Err(PeerError::io(Peer::TokioMt, "the accept task", std::io::Error::other(e))),
        }
    })
}

/// Serves one connection until the client closes it, an error, or the protocol says so.
async fn connection(mut stream: tokio::net::TcpStream, workload: Workload, config: Arc<PeerConfig>) {
    // Loopback request/response: never wait for Nagle.
    let _ = stream.set_nodelay(true);
    let mut session = match with_service(workload, &config, Session::new) {
        Ok(session) => session,
        Err(e) => return super::report_connection_error(Peer::TokioMt, &e),
    };
    let mut input = vec![0u8; READ_BUF];
    // Grows to the largest batch of responses once, then is reused.
    let mut out = Vec::new();
    loop {
        let n = match stream.read(&mut input).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        out.clear();
        let verdict = match with_service(workload, &config, |service| session.on_input(service, &input[..n], &mut out))
        {
            Ok(verdict) => verdict,
            Err(e) => return super::report_connection_error(Peer::TokioMt, &e),
        };
        if !out.is_empty() && stream.write_all(&out).await.is_err() {
            return;
        }
        match verdict {
            Ok(Verdict::Open) => {}
            Ok(Verdict::Close) => return,
            Err(e) => {
                super::report_connection_error(Peer::TokioMt, &e);
                return;
            }
        }
    }
}
