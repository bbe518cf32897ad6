//! Test support: connected loopback TCP pairs for the unit tests of the socket
//! chores (the kernel provider's, the socket watch's). Compiled for tests only.

use std::net::{TcpListener, TcpStream};

/// A connected loopback pair: `(client, server side)`, on a port the system picked.
pub(crate) fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (c, s)
}
