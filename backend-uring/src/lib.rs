//! # paste-rt-uring — the io_uring backend
//!
//! The best io_uring practice of the kernel it runs on (docs/architecture.md, the backends), probed at
//! start: `SINGLE_ISSUER | DEFER_TASKRUN` when supported, multishot accept, multishot
//! recv into a provided buffer ring whose buffers are the runtime's [`BufPool`]
//! buffers (bundles where available; each arming limited in bytes on 6.16+, so that one
//! connection cannot drain the shared ring before a pause takes effect), sends gathered per connection and submitted in
//! the tick's one `io_uring_enter`, fds closed with `IORING_OP_CLOSE`, and an eventfd
//! read through the ring for cross-thread wake-ups. Every `poll` makes exactly one
//! system call (counted in `Stats::syscalls`).
//!
//! Layout, so that the PASTE backend's emulated provider can reuse the plumbing:
//! - [`probe`]: ring setup with flag fallbacks, [`UringProbe`], readable start errors;
//! - [`recv`]: the multishot receive SQE, with the per-arming byte limit (6.16+)
//!   that bounds what one connection takes from the shared receive ring;
//! - [`buf_ring`]: provided buffer rings over externally owned buffers (with a
//!   per-buffer address offset), and the [`BufPool`]-fed variant;
//! - [`submit`]: the SQ overflow queue and the tick's single enter;
//! - [`waker`]: the eventfd wake-up read through the ring;
//! - `backend`: [`UringBackend`], the [`Backend`](paste_rt_core::Backend) impl.
//!
//! The crate never falls back to another mechanism when io_uring is missing: it
//! returns a [`StartError`](paste_rt_core::StartError) saying why, and the runtime
//! picks the next backend.
//!
//! [`BufPool`]: paste_rt_core::BufPool

mod backend;
pub mod buf_ring;
pub mod probe;
pub mod recv;
pub mod submit;
pub mod user_data;
pub mod waker;

pub use backend::{UringBackend, UringConfig, MAX_SEND_BATCH};
pub use probe::UringProbe;
