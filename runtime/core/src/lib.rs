//! # paste-rt-core — the backend contract
//!
//! This crate owns the vocabulary every paste-rt backend speaks (docs/architecture.md, the backend contract):
//!
//! * [`BufPool`]: fixed-size buffers addressed by index, over anonymous memory, a
//!   file mapping (persistence) or externally owned memory (a netmap region);
//! * [`RxBuf`] / [`TxBuf`]: handles to pool buffers lent to the application; dropping
//!   one returns its buffer to the pool's free list, from which the backend refills
//!   its rings at the next poll;
//! * [`RxQueue`]: a per-connection FIFO of received buffers, linked through the pool's
//!   own metadata so that queueing never allocates;
//! * [`Op`] and [`Completion`]: what the runtime asks of a backend and what comes back;
//! * [`Backend`]: the trait each backend implements (queue ops, `poll` once per tick);
//! * [`Stats`]: the counters the benchmark reports next to throughput.
//!
//! It must never make a system call of its own or know about the executor: backends
//! depend on it, and the runtime depends on the backends.
#![warn(missing_docs)]

mod backend;
mod buf;
mod dense_map;
mod op;
mod pool;
mod queue;
pub mod sockaddr;
mod stats;

pub use backend::{Backend, BackendKind, RemoteWake, StartError};
pub use buf::{KeptBuf, RxBuf, TxBuf};
pub use dense_map::DenseMap;
pub use op::{max_datagram, Completion, Op, SendData, Shutdown, Token, DGRAM_HEADROOM};
pub use pool::{BufPool, PoolConfig, PoolMemory, DEFAULT_BUF_SIZE};
pub use queue::RxQueue;
pub use stats::{Stats, StatsSnapshot};
