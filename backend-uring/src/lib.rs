//! # paste-rt-uring — the io_uring backend
//!
//! The best io_uring practice of the kernel it runs on (docs/architecture.md, the
//! backends), probed at start:
//! `SINGLE_ISSUER | DEFER_TASKRUN` when supported, multishot accept, multishot recv
//! into a provided buffer ring whose buffers are the runtime's pool buffers (buffer id
//! = pool index: a dropped `RxBuf` goes straight back to the ring; bundles where
//! available; each arming limited in bytes on 6.16+, so one connection cannot drain the
//! shared ring before its pause takes effect), a send written into the submission
//! queue straight from the connection's record (gathered into one `SENDMSG` when
//! several are queued: the runtime starts the send after the last of several
//! pieces queued together, see `TcpStream::queue_send_more`), fds closed with
//! `IORING_OP_CLOSE`, and an eventfd read through the ring for cross-thread wake-ups.
//! Every `poll` makes exactly one system call.
//!
//! The io_uring plumbing is the engine's (`paste-rt-uring-engine`, shared with the
//! emulated PASTE port); this crate is what is particular to serving the runtime's
//! [`IoTable`](paste_rt_core::IoTable):
//! - `backend`: [`UringBackend`], the [`Backend`](paste_rt_core::Backend) impl;
//! - `sink`: how the engine's results land in the records (slot id = token);
//! - `dgram`: datagram sockets (multishot `RECVMSG`, one `SENDMSG` per datagram).
//!
//! The crate never falls back to another mechanism when io_uring is missing: it
//! returns a [`StartError`](paste_rt_core::StartError) saying why, and the runtime
//! picks the next backend.

mod backend;
mod dgram;
mod sink;

pub use backend::{UringBackend, UringConfig};
pub use dgram::{BGID_DGRAM, DGRAM_RING_OFFSET, MAX_DGRAM_INFLIGHT};
pub use paste_rt_uring_engine::{UringProbe, MAX_SEND_BATCH};
