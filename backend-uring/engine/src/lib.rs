//! # paste-rt-uring-engine — the io_uring engine
//!
//! (docs/architecture.md, the io_uring engine)
//!
//! Everything io_uring that paste-rt's two io_uring users share: the io_uring
//! backend (`paste-rt-uring`) and the emulated PASTE port (`paste-rt-paste`'s
//! `paste-emu` provider). Neither depends on the other; both depend on this crate.
//!
//! * [`probe`]: ring setup with flag fallbacks, [`UringProbe`], readable start errors;
//! * [`submit`]: the SQ overflow queue and the tick's single enter;
//! * [`shared_ring`]: the ring on the heap, reached only through shared views, so a
//!   reap walks the completion queue in place;
//! * [`user_data`]: what an SQE's `user_data` carries (slot, op kind, generation);
//! * [`recv`]: the multishot receive SQE, with the per-arming byte limit (6.16+);
//! * [`ring_mapping`]: the registered memory of a provided-buffer ring, never
//!   unmapped while the kernel may read it;
//! * [`pool_ring`]: a pool's recycle ring registered as a provided-buffer ring
//!   (buffer id = pool index; dropped buffers go straight back);
//! * [`buf_ring`]: provided-buffer rings over buffers someone else owns (the emulated
//!   port's kernel buffers, datagram buffers), refilled by their owner;
//! * [`waker`]: the eventfd wake-up read through the ring;
//! * [`wake_timer`]: kernel timeouts kept armed across waits, so a wait with a deadline
//!   (or one looking past a quiet send) arms no timer of its own;
//! * [`sockets`]: the [`SocketEngine`] — slots, multishot accept/receive arming,
//!   gathered sends, connect, shutdown, cancel-then-close — driven through a
//!   [`Sink`].
//!
//! It never falls back to another mechanism when io_uring is missing: setup returns
//! an error saying why, and the runtime picks the next backend.

pub mod buf_ring;
pub mod fresh_sends;
pub mod pool_ring;
pub mod probe;
pub mod recv;
pub mod ring_mapping;
pub mod shared_ring;
pub mod sockets;
pub mod submit;
pub mod user_data;
pub mod wake_timer;
pub mod waker;

pub use probe::UringProbe;
pub use sockets::{EngineConfig, Sink, SocketEngine, MAX_SEND_BATCH, QUIET_SEND_WAIT};
pub use submit::QuietCompletions;
