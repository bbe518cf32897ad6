//! The tokio peer: a current-thread runtime (one worker), one task per connection.
//!
//! Owns the server a tokio user would write: `Builder::new_current_thread()` with I/O
//! enabled, a `LocalSet` (the shared store and log are single-threaded, as on
//! paste-rt), an accept loop, and per connection a reused 4 KiB read buffer and a
//! reused output buffer written once per read batch.
//!
//! It must never do protocol work of its own (that is the `session` module) and never
//! add work a straightforward tokio server would not do.

use std::net::TcpListener;
use std::rc::Rc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::session::{Service, Session, Verdict, READ_BUF};
use super::{Peer, PeerError};

/// Serves on `listener` until the process is killed.
pub(super) fn serve(listener: TcpListener, service: Service) -> Result<(), PeerError> {
    let err = |what: &'static str| move |e| PeerError::io(Peer::Tokio, what, e);
    listener.set_nonblocking(true).map_err(err("making the listener non-blocking"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(err("building the current-thread runtime"))?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listener =
            tokio::net::TcpListener::from_std(listener).map_err(err("registering the listener with tokio"))?;
        let service = Rc::new(service);
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) if super::accept_error_is_transient(&e) => {
                    super::back_off_after_accept_error(Peer::Tokio, &e);
                    continue;
                }
                Err(e) => return Err(PeerError::io(Peer::Tokio, "accepting a connection", e)),
            };
            tokio::task::spawn_local(connection(stream, Rc::clone(&service)));
        }
    })
}

/// Serves one connection until the client closes it, an error, or the protocol says so.
async fn connection(mut stream: tokio::net::TcpStream, service: Rc<Service>) {
    // Loopback request/response: never wait for Nagle.
    let _ = stream.set_nodelay(true);
    let mut session = Session::new(&service);
    let mut input = vec![0u8; READ_BUF];
    // Grows to the largest batch of responses once, then is reused.
    let mut out = Vec::new();
    loop {
        let n = match stream.read(&mut input).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        out.clear();
        let verdict = session.on_input(&service, &input[..n], &mut out);
        if !out.is_empty() && stream.write_all(&out).await.is_err() {
            return;
        }
        match verdict {
            Ok(Verdict::Open) => {}
            Ok(Verdict::Close) => return,
            Err(e) => {
                super::report_connection_error(Peer::Tokio, &e);
                return;
            }
        }
    }
}
