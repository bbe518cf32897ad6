//! # paste-rt
//!
//! An async runtime whose reactor can be a PASTE stack port (netmap's kernel-TCP
//! port, NSDI'18), with io_uring and epoll backends behind the same contract: one
//! application binary picks its backend at start (`PASTE_RT_BACKEND`) and can be
//! A/B-compared on all of them.
//!
//! Every backend keeps PASTE's three ideas as far as its kernel allows: one system
//! call per batch of ready connections, pool buffers lent to the application with
//! zero copy ([`RxBuf`], [`TxBuf`]), and deferred, batched sends.
//!
//! ```no_run
//! use paste_rt::net::TcpListener;
//!
//! #[paste_rt::main]
//! async fn main() -> std::io::Result<()> {
//!     let listener = TcpListener::bind("127.0.0.1:7000").await?;
//!     loop {
//!         let (stream, _) = listener.accept().await?;
//!         paste_rt::spawn(async move {
//!             // echo, zero copy in and out
//!             while let Ok(Some(buf)) = stream.recv().await {
//!                 let Some(mut tx) = stream.tx_buf() else { break };
//!                 tx.put(&buf);
//!                 if stream.send(tx).await.is_err() { break }
//!             }
//!         });
//!     }
//! }
//! ```
//!
//! The pieces: [`runtime`] (the tick, [`Builder`](runtime::Builder), whose start
//! errors are [`BuildError`]s), [`config`] (each backend's settings), [`overrides`]
//! (the `PASTE_RT_*` environment variables), [`net`],
//! [`time`], [`spawn`] and [`Handle`] for other threads, [`spawn_blocking`],
//! [`signal`], and [`compat`] (hyper, behind the `hyper` feature, and a codec path
//! that frames the received buffers in place). The backend contract lives in
//! [`paste_rt_core`], re-exported as [`core`]. Buffers meet the `bytes` crate there:
//! [`RxBuf::into_bytes`] (zero copy), `RxBuf: bytes::Buf`, `TxBuf: bytes::BufMut`,
//! and [`net::TcpStream::send_bytes`].

pub mod batch;
pub mod blocking;
mod build_error;
mod builder;
pub mod compat;
mod context;
mod driver;
mod handle;
pub mod net;
pub mod overrides;
pub mod persist;
mod select;
pub mod signal;
mod task;
pub mod testing;
mod thread;
pub mod time;

/// The runtime, its builder and its counters.
pub mod runtime;

/// Each backend's typed settings, for [`Builder`](runtime::Builder)'s
/// `epoll_config`, `uring_config`, `paste_config` and `paste_emu_config`.
pub mod config {
    pub use paste_rt_epoll::EpollConfig;
    pub use paste_rt_paste::{EmuSettings, ExtmemConfig, KernelConfig};
    pub use paste_rt_uring::UringConfig;
}

pub use blocking::spawn_blocking;
pub use build_error::{valid_backend_names, BuildError, ChoiceOrigin};
pub use handle::Handle;
pub use paste_rt_core as core;
pub use paste_rt_core::{BackendKind, KeptBuf, RxBuf, SendData, StartError, StatsSnapshot, TxBuf};
pub use paste_rt_macros::{main, test, test_each_backend};
pub use runtime::{current_backend, stats, Runtime};
pub use select::{BackendChoice, Selection};
pub use task::{spawn, yield_now, JoinError, JoinHandle};
pub use thread::RuntimeThread;
