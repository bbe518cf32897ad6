//! Networking on the runtime's backend: TCP ([`TcpListener`], [`TcpStream`]), UDP
//! ([`UdpSocket`]) and Unix stream sockets ([`UnixListener`], [`UnixStream`]).
//!
//! Sockets are created and configured here (socket, bind, listen, setsockopt, a Unix
//! connect — the control path) and then handed to the backend, which does every
//! data-path system call inside its `poll`. Received data comes as
//! [`RxBuf`](crate::RxBuf)s lent from the pool (zero copy); sends take
//! [`TxBuf`](crate::TxBuf)s or owned bytes and leave at the next tick, together.
//! TCP and Unix streams share one data path (`conn`). PASTE carries TCP only: UDP
//! and Unix sockets fail with `ErrorKind::Unsupported` on a PASTE runtime.

#[cfg(any(feature = "tokio-io", feature = "futures-io"))]
mod compat;
mod conn;
mod listener;
pub(crate) mod socket;
mod stream;
mod udp;
mod unix;

pub use conn::RecvEach;
pub use listener::{ListenOptions, TcpListener};
pub use stream::{OwnedReadHalf, OwnedWriteHalf, ReadHalf, TcpStream, WriteHalf};
pub use udp::{DatagramTruncated, UdpSocket};
pub use unix::{UnixListener, UnixStream};
