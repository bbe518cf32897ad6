//! # paste-rt-core — the backend contract
//!
//! This crate owns the vocabulary every paste-rt backend speaks, and the state the
//! backend and the runtime share (docs/architecture.md, the backend contract):
//!
//! * [`BufPool`]: fixed-size buffers addressed by index, over anonymous memory, a
//!   file mapping (persistence) or externally owned memory (a netmap region); with an
//!   optional *recycle ring* (io_uring's provided-buffer ring layout) that released
//!   buffers go straight back to, buffer id = pool index;
//! * [`RxBuf`] / [`TxBuf`]: handles to pool buffers lent to the application; dropping
//!   one returns its buffer, with no reference count and no system call. The bridge to
//!   the `bytes` crate: [`RxBuf::into_bytes`] lends a buffer on as a `bytes::Bytes`
//!   (zero copy, droppable on any thread, returned through the pool's lock-free return
//!   list), `RxBuf: bytes::Buf`, `TxBuf: bytes::BufMut`, and [`SendData::Bytes`];
//! * [`IoRecord`] and [`IoTable`]: one record per connection, listener or datagram
//!   socket, found by its [`Token`] (the index the kernel hands back). A backend
//!   reaping a completion applies it to the record in place — append the buffer,
//!   return send credit, take and wake the waiter — with no completion list in
//!   between; the runtime's net types read and queue through the same record;
//! * [`SendQueue`]: a record's pending sends, the first one inline, read in place by
//!   the backend (a send is written into the kernel's submission queue straight from
//!   it, gathering what is queued by then; the runtime holds back the first of
//!   several pieces queued in one turn, so that they leave together); a backend that
//!   writes from it in a loop (epoll) borrows the stream's send side once, as a
//!   [`StreamSend`], for every step, front and report of the loop;
//! * [`RxQueue`]: a per-connection FIFO of received buffers, linked through the
//!   pool's own metadata so that queueing never allocates;
//! * [`Backend`]: the trait each backend implements, [`Stats`]: the counters the
//!   benchmark reports next to throughput.
//!
//! ## The shape of a tick
//!
//! ```text
//! run phase (tasks)            poll (the backend)
//! ----------------------       ---------------------------------------------------
//! IoTable::poll_recv   <--+    flush: submissions already written (io_uring), or
//! IoTable::queue_send  ---+-->        written now (epoll write, PASTE TX slots)
//!   -> Backend::send      |    ONE wait: io_uring_enter / poll() / epoll_wait
//!      (writes an SQE)    |    reap: for each completion, by token:
//!                         +---     IoTable::deliver / sent / eof / accepted
//!                                  (wakes the task in place)
//! ```
//!
//! It must never make a system call of its own or know about the executor: backends
//! depend on it, and the runtime depends on the backends. The optional
//! `conformance` feature adds the `conformance` module, the backend test kit every backend
//! crate runs; it is test support and does make system calls.
#![warn(missing_docs)]

mod backend;
mod buf;
#[cfg(feature = "conformance")]
pub mod conformance;
mod lent_bytes;
mod pool;
mod queue;
mod record;
mod remote_wake;
mod send;
pub mod sockaddr;
mod stats;
mod stream_send;
mod table;
mod wait;

pub use backend::{Backend, BackendKind, Capabilities, StartError};
pub use buf::{KeptBuf, RxBuf, TxBuf};
pub use pool::{BufPool, ForeignSwap, PoolConfig, PoolMemory, DEFAULT_BUF_SIZE, RECYCLE_DESC_SIZE};
pub use queue::RxQueue;
pub use record::{
    register, Datagram, IoRecord, RecordKind, Token, DGRAM_TX_HIGH_WATER, RX_PAUSE_AT, RX_RESUME_AT, TX_HIGH_WATER,
};
pub use remote_wake::RemoteWake;
pub use send::{SendData, SendQueue, Shutdown};
pub use stats::{Stats, StatsSnapshot};
pub use stream_send::StreamSend;
pub use table::{CloseStep, CopiedSend, Delivery, IoTable, MemberEvent, Received, SendStep, TakenRx};
pub use wait::{wait_millis, Wait};

/// Bytes at the start of a pool buffer that a backend may use for a received
/// datagram's metadata (io_uring writes its `io_uring_recvmsg_out` header and the
/// source address there). So on every backend a datagram of at most
/// `buf_size - DGRAM_HEADROOM` bytes (1984 with 2048-byte buffers, more than a
/// 1500-byte MTU's 1472) arrives whole; a longer one arrives truncated to that
/// length and flagged.
pub const DGRAM_HEADROOM: u32 = 64;

/// The longest datagram received whole into buffers of `buf_size` bytes (see
/// [`DGRAM_HEADROOM`]).
pub const fn max_datagram(buf_size: u32) -> u32 {
    buf_size.saturating_sub(DGRAM_HEADROOM)
}
