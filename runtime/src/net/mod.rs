//! TCP networking on the runtime's backend: [`TcpListener`] and [`TcpStream`].
//!
//! Sockets are created and configured here (socket, bind, listen, setsockopt — the
//! control path) and then handed to the backend, which does every data-path system
//! call inside its `poll`. Received data comes as [`RxBuf`](crate::RxBuf)s lent
//! from the pool (zero copy); sends take [`TxBuf`](crate::TxBuf)s or owned bytes
//! and leave at the next tick, together.

#[cfg(any(feature = "tokio-io", feature = "futures-io"))]
mod compat;
mod listener;
mod socket;
mod stream;

pub use listener::{ListenOptions, TcpListener};
pub use stream::{OwnedReadHalf, OwnedWriteHalf, ReadHalf, TcpStream, WriteHalf};
