//! The kernel side of an emulated PASTE port, as plain functions over its memory.
//!
//! Owns what `netmap_paste.c` owns for a real port: the per-fd registration table
//! (PST_FD_REG's errno rules, docs/paste-abi.md §2.2 / §10), the kernel's view of each ring
//! (`hwcur`/`hwtail`), its spare buffers, the per-fd queues of received data waiting
//! for an RX slot, and the buffers taken from TX slots until the socket work is done.
//! `rxsync` and `txsync` follow §4.2 / §4.3: RX slots are filled grouped by fd with
//! `doff` 66 (an EOF slot for a FIN, nothing for a RST); TX slots are taken from
//! `hwcur` to `head`, each sent buffer replaced by a *different* spare buffer with
//! `len` 0, fd/doff cleared and the generic offset kept, and `tail` catches up.
//!
//! Each registered socket has a send buffer ([`EmuKernel::sndbuf`], [`EMU_SNDBUF`]
//! unless set): the payload of every TX slot taken, plus [`EMU_SKB_OVERHEAD`], counts
//! against it until the provider reports the send done, and txsync stops at a slot
//! whose socket is full — `EAGAIN`, without advancing, every later slot waiting behind
//! it — exactly as the kernel's `sendpage` with `MSG_DONTWAIT` does (docs/paste-abi.md §10.1
//! point 5). [`EmuKernel::writable`] is the kernel's `POLLOUT` rule for such a socket.
//!
//! Received data lands in the RX ring as it arrives, the way the real kernel's
//! poststack step fills it: [`EmuKernel::rx_arrived`] writes the slot at once when
//! that keeps every fd's slots of the current batch (one sync, from [`EmuKernel::rxsync`]
//! to [`EmuKernel::rx_publish`]) together and the ring has room, and otherwise files
//! the buffer in the fd's backlog, which the next rxsync drains first — the kernel's
//! per-fd table, where data waits while the ring is full. A taken TX slot's payload
//! joins its socket's send queue, which the provider reads in place
//! ([`EmuKernel::sends_gather`]) and retires as the socket takes it
//! ([`EmuKernel::sends_done`]).
//!
//! It makes no system call and touches no socket: a provider (the io_uring emulation)
//! receives into [`EmuKernel::rx_buffer`] buffers and hands them over with
//! [`EmuKernel::rx_arrived`] (or [`EmuKernel::rx_complete`], always through the
//! backlog), and sends what [`EmuKernel::take_tx_ready`] names. Every buffer index is,
//! at any time, either in a ring slot, the application's, or held here in exactly one
//! [`KernelHold`] state.
//!
//! The registrations, the rings' kernel view and the buffer states are here; the RX
//! side (arrivals, backlogs, `rxsync`) is in `rx`, the TX side (`txsync`, the send
//! queues, their completions) in `tx`, and a socket's send queue in `send_list`.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::num::NonZeroU16;
use std::os::fd::RawFd;
use std::sync::Arc;

use crate::dense_map::DenseMap;
use crate::lazy_deque::LazyDeque;
use crate::port_mem::{EmuPortConfig, PortMemory};
use crate::sys::abi::{pst, FIRST_DATA_BUF};
use crate::sys::addr::{self, PortRegion, RingPtr};
use crate::sys::slot;
use send_list::{QueuedSend, SendList};

mod rx;
mod send_list;
mod tx;

/// Largest fd the kernel's PST_FD_REG accepts (`NM_PST_FD_MAX`).
pub const KERNEL_FD_MAX: i32 = 65535;
/// Most slots one fd gets directly in one RX batch (one sync); the rest waits in its
/// backlog for the next one, so a busy connection cannot fill the ring by itself.
pub const RX_BATCH_PER_FD: u32 = 32;
/// Send buffer of a registered socket unless set: what Linux 5.10 gives a fresh TCP
/// connection on a 1500-byte MTU (`tcp_sndbuf_expand`: 2 × 10 segments × 4 352).
pub const EMU_SNDBUF: u32 = 87_040;
/// Largest send buffer a socket gets ([`EmuKernel::set_sndbuf`]): Linux's own bound
/// (`SO_SNDBUF` is an `int`), which keeps a socket's queued bytes within 32 bits.
pub const MAX_SNDBUF: u32 = i32::MAX as u32;
/// What one taken TX slot adds to its socket's queued amount beyond the payload: a
/// fresh skb's `truesize` on x86_64 Linux 5.x.
pub const EMU_SKB_OVERHEAD: u32 = 1280;

/// What a socket looks like to PST_FD_REG's checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketState {
    /// A connected TCP socket (accepted or connected): registrable.
    Connected,
    /// A listening socket.
    Listening,
    /// A stream socket that is not connected.
    Unconnected,
    /// Not a socket, or not a stream socket.
    NotSocket,
    /// A socket already being destroyed (`SOCK_DEAD`).
    Dead,
}

/// Looks at `fd` the way PST_FD_REG does: socket type, listening, connected.
pub fn probe_socket(fd: RawFd) -> SocketState {
    let get = |opt: libc::c_int| -> io::Result<libc::c_int> {
        let mut v: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: v and len are valid for writes of the sizes given.
        let r = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, opt, (&mut v as *mut libc::c_int).cast(), &mut len) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(v)
        }
    };
    match get(libc::SO_TYPE) {
        Ok(t) if t == libc::SOCK_STREAM => {}
        _ => return SocketState::NotSocket,
    }
    if get(libc::SO_ACCEPTCONN).unwrap_or(0) != 0 {
        return SocketState::Listening;
    }
    // SAFETY: sockaddr_storage is plain data; zeroed is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: ss/len describe a writable buffer of the given size.
    let r = unsafe { libc::getpeername(fd, (&mut ss as *mut libc::sockaddr_storage).cast(), &mut len) };
    if r < 0 {
        SocketState::Unconnected
    } else {
        SocketState::Connected
    }
}

/// PST_FD_REG refused a socket; `errno` is what the kernel returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("PST_FD_REG of fd {fd}: {}", io::Error::from_raw_os_error(*errno))]
pub struct FdRegError {
    /// The fd.
    pub fd: i32,
    /// `EINVAL`, `ENOMEM` or `EBUSY`.
    pub errno: i32,
}

/// A provider handed back a buffer index the emulated kernel does not hold in the
/// expected state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("emulated PASTE kernel: buffer {index} is not {expected:?} here")]
pub struct HoldError {
    /// The index.
    pub index: u32,
    /// The state it should have been in.
    pub expected: KernelHold,
}

/// Why a buffer is held by the emulated kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelHold {
    /// A spare, free.
    Free,
    /// Lent to the provider to receive into.
    Receiving,
    /// Received data waiting for an RX slot.
    Pending,
    /// Taken from a TX slot: in its socket's send queue (read in place by the
    /// provider) until the socket took it.
    SendQueued,
    /// Taken out of the send queue by [`EmuKernel::next_send`], one job at a time,
    /// until [`EmuKernel::send_done`].
    Sending,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hold {
    NotHeld,
    Held(KernelHold),
}

/// A TX slot's payload taken by txsync, for the provider to write to the socket.
///
/// (The payload is in port memory; its buffer is held until the send is done.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendJob {
    /// The socket.
    pub fd: i32,
    /// Buffer index (held by the kernel until [`EmuKernel::send_done`]).
    pub buf: u32,
    /// Payload offset in the buffer (`G + doff`).
    pub off: u32,
    /// Payload bytes.
    pub len: u32,
    /// What the payload counts against its socket's send buffer until the send is
    /// done (payload at take time plus [`EMU_SKB_OVERHEAD`]).
    pub charge: u32,
}

/// Where and why txsync stopped before `head`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxStall {
    /// `len < doff`, generic offset below the kernel's headroom, or a buffer index that
    /// is not a ring buffer.
    BadSlot {
        /// Ring.
        ring: u32,
        /// Slot.
        slot: u32,
    },
    /// The socket refuses data (set with [`EmuKernel::set_send_error`]): the slot stays,
    /// and every slot behind it waits (docs/paste-abi.md §10.2).
    SendError {
        /// The socket.
        fd: i32,
        /// `EAGAIN`, `EPIPE`, ...
        errno: i32,
    },
    /// No spare buffer to give the slot back.
    NoBuffers,
}

/// What one sync did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// RX slots filled with data.
    pub rx_data: u32,
    /// RX EOF slots.
    pub rx_eofs: u32,
    /// TX slots whose buffer was taken for sending.
    pub tx_taken: u32,
    /// TX slots skipped because `len == 0`.
    pub tx_empty: u32,
    /// TX slots dropped because their fd is not registered.
    pub tx_unregistered: u32,
    /// Set when txsync stopped before `head`.
    pub tx_stall: Option<TxStall>,
    /// Rings whose `head` was outside what the application may set (left untouched).
    pub bad_heads: u32,
}

#[derive(Clone, Copy, Debug)]
enum Pending {
    Data { buf: u32, len: u32 },
    Eof,
}

/// A spare buffer lent for receiving by [`EmuKernel::rx_arrived_lending`]: its index
/// and the start of its memory.
pub type LentSpare = (u32, *mut u8);

/// What became of a received buffer handed to [`EmuKernel::rx_arrived`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Written into an RX slot (visible after [`EmuKernel::rx_publish`]).
    Placed,
    /// Filed in the fd's backlog (the ring is full, the fd already has a budget's
    /// worth of slots in this batch, or writing it now would split the fd's slots);
    /// `backlog` entries wait now.
    Backlogged {
        /// Entries in the fd's backlog, this one included.
        backlog: usize,
    },
    /// The fd is not registered: the buffer went back to the spares.
    Unregistered,
}

#[derive(Debug)]
///
/// One per registered socket, idle or busy, so it is kept at 40 bytes (asserted in
/// the tests): narrow counts, bounded where they are set.
struct FdEntry {
    /// Received data (and a FIN) waiting for RX slots, oldest first.
    pending: LazyDeque<Pending>,
    /// In `ready`.
    queued: bool,
    /// (`NonZero`: two bytes with the option, errno 0 is no error; an errno fits 16
    /// bits, one that does not is stored as `EIO`.)
    send_error: Option<NonZeroU16>,
    /// The socket's send buffer (at most [`MAX_SNDBUF`]).
    sndbuf: u32,
    /// Queued in the socket: taken slots' payload plus overhead, until their send is
    /// done. A slot is taken only while this is below `sndbuf`, so it stays below
    /// `MAX_SNDBUF` + one slot's charge, within 32 bits.
    wmem: u32,
    /// Tells this registration's charges from a previous socket's on the same fd.
    gen: u32,
    /// Taken TX payloads whose send is not done, oldest first: the socket's send queue
    /// (threaded through [`EmuKernel::queued`], so it allocates nothing).
    sends: SendList,
    /// The socket failed for sending: its TX slots are skipped, as an unregistered
    /// fd's are.
    tx_dead: bool,
    /// The RX batch this fd last got a slot in, and how many it got in it (at most a
    /// ring's slots, [`pst::MAX_SLOTS`]).
    batch: u32,
    batch_slots: u16,
}

/// A taken TX slot's charge against its socket, held with its buffer.
#[derive(Clone, Copy, Debug)]
struct Charge {
    fd: i32,
    gen: u32,
    bytes: u32,
}

#[derive(Clone, Copy, Debug)]
struct KRing {
    ring: RingPtr,
    hwcur: u32,
    hwtail: u32,
    /// RX: the fd of the last slot written in the current batch (-1: none yet).
    last_fd: i32,
}

impl KRing {
    /// The head the application published, if valid: inside the ring, and not past
    /// the kernel's tail (the application may only hand back what it owns).
    fn app_head(&self) -> Option<u32> {
        let (n, head) = (self.ring.num_slots(), self.ring.head());
        let valid =
            head < n && slot::ring_distance(self.hwcur, head, n) <= slot::ring_distance(self.hwcur, self.hwtail, n);
        valid.then_some(head)
    }
}

/// The emulated kernel (see the module docs).
pub struct EmuKernel {
    mem: Arc<PortMemory>,
    /// Start of buffer 0 in `mem` (what `PortMemory::buf_ptr(0)` gives), kept here
    /// for the per-receive spare lending.
    buf_base: *mut u8,
    region: PortRegion,
    tx: Vec<KRing>,
    rx: Vec<KRing>,
    generic_offset: u32,
    doff: u32,
    buf_size: u32,
    /// Bytes a receive buffer takes: `buf_size - G - doff` ([`EmuKernel::rx_capacity`]).
    rx_cap: u32,
    hold: Vec<Hold>,
    free: Vec<u32>,
    /// Spares `rx_buffer` never lends, kept for TX swaps.
    tx_reserve: usize,
    fds: DenseMap<FdEntry>,
    /// Fds with a backlog, oldest first.
    ready: VecDeque<i32>,
    /// Fds whose send queue got payloads since [`EmuKernel::take_tx_ready`] last
    /// drained it, once per run of their slots.
    tx_ready: Vec<i32>,
    /// By buffer index: a payload in a send queue (see [`SendList`]).
    queued: Vec<QueuedSend>,
    /// By buffer index: the charge of a job taken out of its send queue with
    /// [`EmuKernel::next_send`], until [`EmuKernel::send_done`].
    charges: Vec<Option<Charge>>,
    next_gen: u32,
    /// The current RX batch (bumped by each rxsync).
    rx_epoch: u32,
}

impl fmt::Debug for EmuKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmuKernel")
            .field("free", &self.free.len())
            .field("fds", &self.fds.len())
            .field("tx_ready", &self.tx_ready.len())
            .finish()
    }
}

impl EmuKernel {
    /// Builds the port memory and the kernel state over it, as REGISTER would.
    pub fn new(cfg: &EmuPortConfig) -> io::Result<EmuKernel> {
        let mem = Arc::new(PortMemory::new(cfg)?);
        let region = mem.region();
        let nifp = mem.region().base.cast();
        let ring_at = |ring| {
            // SAFETY: the memory is alive as long as `mem`, which the kernel keeps.
            unsafe { RingPtr::new(&region, ring) }.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
        };
        let (ntx, nrx) = (cfg.tx_rings as usize, cfg.rx_rings as usize);
        let mut tx = Vec::with_capacity(ntx);
        for i in 0..ntx {
            // SAFETY: the netmap_if was laid out with these ring entries.
            let ring = ring_at(unsafe { addr::txring(nifp, i) })?;
            tx.push(KRing { ring, hwcur: 0, hwtail: ring.num_slots() - 1, last_fd: -1 });
        }
        let mut rx = Vec::with_capacity(nrx);
        for i in 0..nrx {
            // SAFETY: as above.
            let ring = ring_at(unsafe { addr::rxring(nifp, i) })?;
            rx.push(KRing { ring, hwcur: 0, hwtail: 0, last_fd: -1 });
        }
        let charges = vec![None; mem.layout().buf_count as usize];
        let queued = vec![QueuedSend::default(); mem.layout().buf_count as usize];
        let mut hold = vec![Hold::NotHeld; mem.layout().buf_count as usize];
        let free: Vec<u32> = mem.kernel_buffers().into_iter().rev().collect();
        for &i in &free {
            hold[i as usize] = Hold::Held(KernelHold::Free);
        }
        let buf_base = mem
            .buf_ptr(0)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "emulated port memory holds no buffer"))?;
        Ok(EmuKernel {
            buf_base,
            region,
            tx,
            rx,
            generic_offset: cfg.generic_offset as u32,
            doff: pst::TX_DOFF as u32,
            buf_size: cfg.buf_size,
            rx_cap: cfg.buf_size - cfg.generic_offset as u32 - pst::TX_DOFF as u32,
            hold,
            tx_reserve: free.len() / 2,
            free,
            fds: DenseMap::new(),
            ready: VecDeque::new(),
            tx_ready: Vec::new(),
            queued,
            charges,
            next_gen: 0,
            rx_epoch: 1,
            mem,
        })
    }

    /// The port memory (clone it into the ring driver's pool guard).
    pub fn memory(&self) -> &Arc<PortMemory> {
        &self.mem
    }

    /// The region the ring driver attaches to.
    pub fn region(&self) -> PortRegion {
        self.region
    }

    /// PST_FD_REG: registers `fd` whose socket looks like `state`. Errnos as the kernel:
    /// `EINVAL` for fd < 3 or a socket that is not connected (listening, unconnected,
    /// not a socket, dead), `ENOMEM` above 65535, `EBUSY` if already registered.
    pub fn register_fd(&mut self, fd: i32, state: SocketState) -> Result<(), FdRegError> {
        let err = |errno| Err(FdRegError { fd, errno });
        if fd > KERNEL_FD_MAX {
            return err(libc::ENOMEM);
        }
        if fd < 3 || state != SocketState::Connected {
            return err(libc::EINVAL);
        }
        if self.fds.contains_key(fd as usize) {
            return err(libc::EBUSY);
        }
        self.next_gen = self.next_gen.wrapping_add(1);
        let entry = FdEntry {
            pending: LazyDeque::new(),
            queued: false,
            send_error: None,
            sndbuf: EMU_SNDBUF,
            wmem: 0,
            gen: self.next_gen,
            sends: SendList::default(),
            tx_dead: false,
            batch: 0,
            batch_slots: 0,
        };
        self.fds.insert(fd as usize, entry);
        Ok(())
    }

    /// Sets `fd`'s send buffer (`SO_SNDBUF`; above [`MAX_SNDBUF`], that). Returns
    /// whether `fd` is registered.
    pub fn set_sndbuf(&mut self, fd: i32, bytes: u32) -> bool {
        self.fds.get_mut(fd as usize).map(|e| e.sndbuf = bytes.min(MAX_SNDBUF)).is_some()
    }

    /// `fd`'s send buffer, if registered (what `getsockopt(SO_SNDBUF)` would say).
    pub fn sndbuf(&self, fd: i32) -> Option<u32> {
        self.fds.get(fd as usize).map(|e| e.sndbuf)
    }

    /// What `fd`'s socket holds queued: taken slots' payload plus overhead whose send
    /// is not done.
    pub fn queued_in_socket(&self, fd: i32) -> Option<u64> {
        self.fds.get(fd as usize).map(|e| u64::from(e.wmem))
    }

    /// `fd`'s free send space: its send buffer less what it holds queued.
    pub fn send_space(&self, fd: i32) -> Option<u64> {
        self.fds.get(fd as usize).map(|e| u64::from(e.sndbuf.saturating_sub(e.wmem)))
    }

    /// The kernel's `POLLOUT` rule for a TCP socket: the free send space is at least
    /// half of what is queued (so at least a third of the buffer is free).
    pub fn writable(&self, fd: i32) -> bool {
        self.fds.get(fd as usize).is_some_and(|e| 3 * u64::from(e.wmem) <= 2 * u64::from(e.sndbuf))
    }

    /// The socket was closed: forget `fd`, and return its undelivered data's buffers and
    /// its send queue's to the spares. Returns whether it was registered. (A provider
    /// unregisters a socket only once no send of it is in flight.)
    pub fn unregister_fd(&mut self, fd: i32) -> bool {
        let Some(e) = self.fds.remove(fd as usize) else { return false };
        if e.queued {
            self.ready.retain(|&x| x != fd);
        }
        for p in e.pending {
            if let Pending::Data { buf, .. } = p {
                self.put_free(buf);
            }
        }
        let mut sends = e.sends;
        while let Some((buf, _)) = sends.pop(&self.queued) {
            self.put_free(buf);
        }
        true
    }

    /// Whether `fd` is registered.
    pub fn is_registered(&self, fd: i32) -> bool {
        self.fds.contains_key(fd as usize)
    }

    /// Marks `fd`'s socket as refusing data (`Some(errno)`: `EAGAIN` when its send
    /// buffer is full, `EPIPE` when it is dead) or accepting it again (`None`). While
    /// set, txsync stops at the fd's first slot, as the kernel's does.
    pub fn set_send_error(&mut self, fd: i32, errno: Option<i32>) {
        if let Some(e) = self.fds.get_mut(fd as usize) {
            e.send_error = errno.filter(|&e| e != 0).map(|e| {
                u16::try_from(e)
                    .ok()
                    .and_then(NonZeroU16::new)
                    .unwrap_or(NonZeroU16::new(libc::EIO as u16).expect("EIO"))
            });
        }
    }

    /// Spare buffers.
    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    /// Calls `f(index, why)` for every buffer the kernel holds.
    pub fn for_each_held(&self, mut f: impl FnMut(u32, KernelHold)) {
        for (i, h) in self.hold.iter().enumerate() {
            if let Hold::Held(k) = h {
                f(i as u32, *k);
            }
        }
    }

    /// Calls `f(index)` for the buffer of every slot of every ring.
    pub fn for_each_ring_buffer(&self, mut f: impl FnMut(u32)) {
        for r in self.tx.iter().chain(&self.rx) {
            for i in 0..r.ring.num_slots() {
                f(r.ring.slot(i).buf_idx);
            }
        }
    }

    fn state(&self, idx: u32) -> Option<KernelHold> {
        match self.hold.get(idx as usize) {
            Some(Hold::Held(k)) => Some(*k),
            _ => None,
        }
    }

    fn put_free(&mut self, idx: u32) {
        self.hold[idx as usize] = Hold::Held(KernelHold::Free);
        self.free.push(idx);
    }

    fn is_ring_buffer(&self, idx: u32) -> bool {
        idx >= FIRST_DATA_BUF && matches!(self.hold.get(idx as usize), Some(Hold::NotHeld))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registered_socket_costs_the_emulated_kernel_forty_bytes() {
        // One entry per registered socket, idle or busy: memory per idle connection
        // (it was 48 bytes with a 64-bit send queue count and a 32-bit errno).
        assert_eq!(size_of::<Option<FdEntry>>(), 40);
    }

    #[test]
    fn a_send_error_keeps_its_errno_and_one_out_of_range_reads_as_eio() {
        let mut k = EmuKernel::new(&EmuPortConfig { slots: 8, extra_bufs: 8, kernel_bufs: 8, ..Default::default() })
            .expect("an emulated port");
        k.register_fd(5, SocketState::Connected).expect("fd 5 registers");
        let error_of = |k: &EmuKernel| k.fds.get(5).and_then(|e| e.send_error).map(|e| i32::from(e.get()));
        k.set_send_error(5, Some(libc::EPIPE));
        assert_eq!(error_of(&k), Some(libc::EPIPE));
        k.set_send_error(5, Some(1 << 20));
        assert_eq!(error_of(&k), Some(libc::EIO));
        k.set_send_error(5, Some(0));
        assert_eq!(error_of(&k), None);
        k.set_send_error(5, None);
        assert_eq!(error_of(&k), None);
    }

    #[test]
    fn a_send_buffer_above_linuxs_bound_is_clamped_to_it() {
        let mut k = EmuKernel::new(&EmuPortConfig { slots: 8, extra_bufs: 8, kernel_bufs: 8, ..Default::default() })
            .expect("an emulated port");
        k.register_fd(5, SocketState::Connected).expect("fd 5 registers");
        assert!(k.set_sndbuf(5, u32::MAX));
        assert_eq!(k.sndbuf(5), Some(MAX_SNDBUF));
        assert_eq!(k.send_space(5), Some(u64::from(MAX_SNDBUF)));
    }
}
