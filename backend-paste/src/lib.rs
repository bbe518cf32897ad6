//! # paste-rt-paste — the PASTE backend
//!
//! PASTE (NSDI'18) keeps the kernel's TCP/IP stack but moves every connection's data
//! through one pair of netmap rings: RX slots carry `(buffer, fd, data offset, len)`
//! for many sockets, TX slots carry the same for responses, and one sync moves all of
//! them (docs/architecture.md, what PASTE brings; the backends). This crate is built in layers, each usable on its own:
//!
//! * [`sys`]: the netmap v14 + PASTE ABI (structs, ioctls, slot bit-fields, requests);
//! * [`ring`]: the application-side ring driver, [`RingDriver`], shared by both
//!   providers. It walks RX slots into lent [`RxBuf`](paste_rt_core::RxBuf)s (swapping
//!   pool buffers into the ring, zero copy), fills TX slots from per-fd send queues,
//!   and moves the extra-buffer list into and out of a
//!   [`BufPool`](paste_rt_core::BufPool). It never syncs: whoever plays the kernel does.
//! * the providers, which own the memory and play (or talk to) the kernel:
//!   * [`port_mem`] + [`emu_kernel`]: an emulated port — the same layout in user memory
//!     (optionally file-backed) and the kernel side's rules as plain functions;
//!   * [`kernel`]: `/dev/netmap` with PASTE (REGISTER `pst:0`, mmap, PST_ATTACH,
//!     PST_FD_REG, sync through `poll`), with [`socket_watch`] seeing the registered
//!     sockets' resets and FINs through one epoll set.
//!
//! * [`PasteBackend`]: the [`Backend`](paste_rt_core::Backend) over the ring driver
//!   and one of two providers: `paste-emu` ([`PasteBackend::emulated`]: the emulated
//!   kernel, with io_uring doing the socket work in exactly one `io_uring_enter` per
//!   sync) and `paste` ([`PasteBackend::kernel`]: `/dev/netmap`, one `poll()` per sync,
//!   see [`kernel_provider`]).
//!
//! A backend composes them per tick: `ring.tx_queue(..)` during the run phase, then
//! `ring.tx_fill()`, one provider sync (kernel: `poll()` on the port; emulated:
//! `txsync()` + socket work + `rxsync()`), `ring.tx_reclaim(..)` (bytes sent, by fd) and
//! `ring.rx_walk(..)` (received buffers and EOFs per fd).

#[macro_use]
mod flag_bits;

mod backend;
mod dense_map;
pub mod emu_kernel;
mod emu_provider;
pub mod kernel;
pub mod kernel_provider;
mod lazy_deque;
pub mod port_mem;
mod provider_event;
pub mod ring;
pub mod socket_watch;
pub mod sys;
#[cfg(test)]
mod test_sockets;

pub use backend::{PasteBackend, POOL_COPY_MAX};
pub use emu_kernel::{
    probe_socket, EmuKernel, FdRegError, HoldError, KernelHold, SendJob, SocketState, SyncReport, TxStall,
};
pub use emu_provider::{EmuBufferCount, EmuSettings, EMU_DEFAULT_SLOTS, EMU_RX_RING_START};
pub use kernel::{ExtmemConfig, KernelConfig, KernelPort};
pub use port_mem::{EmuPortConfig, PortMemory};
pub use ring::{DriverConfig, ExportReport, RingDriver, RingError, RxEvent, RxWalk, TxFill};
pub use sys::addr::PortRegion;
