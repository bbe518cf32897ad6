//! hyper 1.x on paste-rt: the phttpd answer (`GET /` → 200 with the 64-byte
//! [`BODY_PATTERN`] body) served by hyper through `paste_rt::compat::hyper`, over
//! HTTP/1.1 with keep-alive and HTTP/2 with prior knowledge (h2c), told apart per
//! connection by hyper-util's `auto` builder.
//!
//! Owns the accept loop, the per-connection hyper setup and the service; it must
//! never parse HTTP itself (that is hyper's job here — the hand-written parser is
//! phttpd's) nor need `Send`: connections, the executor's tasks and the builder
//! stay on their runtime thread. Graceful shutdown: when
//! `paste_rt::runtime::request_shutdown()` is called, the accept loop stops, each
//! connection finishes the request in hand (HTTP/2: GOAWAY, streams in flight
//! complete) and closes, and [`serve`] returns once all have — or once the
//! shutdown grace has passed ([`serve_with_grace`]); the connections still open
//! then are closed with the runtime.

use std::convert::Infallible;
use std::io;
use std::rc::Rc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::server::conn::auto;
use paste_rt::compat::hyper::{HyperIo, HyperTimer, LocalExec};
use paste_rt::net::{TcpListener, TcpStream};
use paste_rt::runtime::shutdown_requested;
use tokio_util::task::TaskTracker;

use crate::http::BODY_PATTERN;

/// The connection builder: HTTP/1.1 or h2c (detected from the first bytes), with
/// the runtime's timer for hyper's timeouts.
pub fn builder() -> auto::Builder<LocalExec> {
    let mut builder = auto::Builder::new(LocalExec);
    builder.http1().timer(HyperTimer).keep_alive(true);
    builder.http2().timer(HyperTimer);
    builder
}

/// Serves `listener` until graceful shutdown is requested, then waits for every
/// connection to finish, for at most the default grace (2 s).
///
/// # Errors
/// An accept error other than running out of file descriptors or memory (those
/// are retried once a connection has closed).
pub async fn serve(listener: TcpListener) -> io::Result<()> {
    serve_with_grace(listener, crate::timeouts::DEFAULT_SHUTDOWN_GRACE).await
}

/// [`serve`], waiting at most `grace` for the connections once shutdown is
/// requested (a client holding a partial request does not hold the server).
///
/// # Errors
/// As [`serve`].
pub async fn serve_with_grace(listener: TcpListener, grace: std::time::Duration) -> io::Result<()> {
    let builder = Rc::new(builder());
    let connections = TaskTracker::new();
    let result = loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown_requested() => break Ok(()),
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                drop(paste_rt::spawn(connections.track_future(connection(builder.clone(), stream))));
            }
            Err(e) if is_transient(&e) => {
                // Wait for a connection to close (freeing an fd) rather than spin.
                paste_rt::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(e) => break Err(e),
        }
    };
    drop(listener);
    connections.close();
    // Past the grace the remaining connections are left to the runtime, which
    // closes them when it is dropped.
    let _ = paste_rt::time::timeout(grace, connections.wait()).await;
    result
}

/// Accept errors that a later accept may not have.
fn is_transient(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
        || e.kind() == io::ErrorKind::ConnectionAborted
}

/// One connection: hyper serves it; on shutdown it is told to finish gracefully.
/// Protocol errors (a client speaking garbage, a reset) end the connection only.
async fn connection(builder: Rc<auto::Builder<LocalExec>>, stream: TcpStream) {
    let conn = builder.serve_connection(HyperIo::new(stream), hyper::service::service_fn(respond));
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        biased;
        _ = conn.as_mut() => return,
        () = shutdown_requested() => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

/// `GET /` (or `HEAD /`) → 200 with the phttpd body; other paths → 404; other
/// methods → 405.
pub async fn respond(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let status = match (request.method(), request.uri().path()) {
        (&Method::GET | &Method::HEAD, "/") => StatusCode::OK,
        (&Method::GET | &Method::HEAD, _) => StatusCode::NOT_FOUND,
        _ => StatusCode::METHOD_NOT_ALLOWED,
    };
    let body = if status == StatusCode::OK { Bytes::from_static(BODY_PATTERN) } else { Bytes::new() };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_accept_errors() {
        assert!(is_transient(&io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(!is_transient(&io::Error::from_raw_os_error(libc::EBADF)));
    }
}
