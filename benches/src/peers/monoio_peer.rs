//! The monoio peers: monoio 0.2 on its io_uring driver and on its legacy (epoll)
//! driver, one task per connection.
//!
//! Owns the server a monoio user would write: `RuntimeBuilder::<Driver>::new().build()`
//! with the default ring size, an accept loop, and per connection a reused 4 KiB read
//! buffer and a reused output buffer written once per read batch (monoio's owned-buffer
//! API: each buffer is moved into the operation and handed back).
//!
//! It must never do protocol work of its own (that is the `session` module) and never
//! add work a straightforward monoio server would not do. Both drivers run the same
//! async code; only the runtime type differs.

use std::net::TcpListener;
use std::rc::Rc;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};

use super::session::{Service, Session, Verdict, READ_BUF};
use super::{Peer, PeerError};

/// Which monoio driver runs the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Driver {
    /// `monoio::IoUringDriver`.
    IoUring,
    /// `monoio::LegacyDriver` (epoll through mio).
    Legacy,
}

impl Driver {
    fn peer(self) -> Peer {
        match self {
            Driver::IoUring => Peer::MonoioUring,
            Driver::Legacy => Peer::MonoioLegacy,
        }
    }
}

/// Serves on `listener` with `driver` until the process is killed.
pub(super) fn serve(driver: Driver, listener: TcpListener, service: Service) -> Result<(), PeerError> {
    let peer = driver.peer();
    // As monoio's own `TcpListener::bind` does when its legacy driver is compiled in.
    listener.set_nonblocking(true).map_err(|e| PeerError::io(peer, "making the listener non-blocking", e))?;
    let build_err = |e| PeerError::io(peer, "building the runtime", e);
    match driver {
        Driver::IoUring => monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .build()
            .map_err(build_err)?
            .block_on(accept_loop(peer, listener, service)),
        Driver::Legacy => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .map_err(build_err)?
            .block_on(accept_loop(peer, listener, service)),
    }
}

/// Accepts connections forever, one task each.
async fn accept_loop(peer: Peer, listener: TcpListener, service: Service) -> Result<(), PeerError> {
    let listener = monoio::net::TcpListener::from_std(listener)
        .map_err(|e| PeerError::io(peer, "registering the listener with monoio", e))?;
    let service = Rc::new(service);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) if super::accept_error_is_transient(&e) => {
                super::back_off_after_accept_error(peer, &e);
                continue;
            }
            Err(e) => return Err(PeerError::io(peer, "accepting a connection", e)),
        };
        monoio::spawn(connection(peer, stream, Rc::clone(&service)));
    }
}

/// Serves one connection until the client closes it, an error, or the protocol says so.
async fn connection(peer: Peer, mut stream: monoio::net::TcpStream, service: Rc<Service>) {
    // Loopback request/response: never wait for Nagle.
    let _ = stream.set_nodelay(true);
    let mut session = Session::new(&service);
    let mut input: Vec<u8> = Vec::with_capacity(READ_BUF);
    // Grows to the largest batch of responses once, then is reused.
    let mut out: Vec<u8> = Vec::new();
    loop {
        // The read fills `input` from its start, up to its capacity.
        let (result, buf) = stream.read(input).await;
        input = buf;
        match result {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        out.clear();
        let verdict = session.on_input(&service, &input, &mut out);
        if !out.is_empty() {
            let (result, buf) = stream.write_all(out).await;
            out = buf;
            if result.is_err() {
                return;
            }
        }
        match verdict {
            Ok(Verdict::Open) => {}
            Ok(Verdict::Close) => return,
            Err(e) => {
                super::report_connection_error(peer, &e);
                return;
            }
        }
    }
}
