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

use std::collections::VecDeque;

use crate::dense_map::DenseMap;
use crate::lazy_deque::LazyDeque;
use std::fmt;
use std::io;
use std::num::NonZeroU16;
use std::os::fd::RawFd;
use std::sync::Arc;

use crate::port_mem::{EmuPortConfig, PortMemory};
use crate::sys::abi::{pst, slotflags, FIRST_DATA_BUF};
use crate::sys::addr::{self, PortRegion, RingPtr};
use crate::sys::slot;

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

/// Names no buffer in a [`SendList`]: buffer 0 is reserved (netmap's), never a data
/// buffer.
const NO_BUF: u32 = 0;

/// One taken TX payload in its socket's send queue, stored by its buffer index (a
/// buffer is in at most one send queue at a time). The all-zero value is "none", so
/// the table starts as untouched zero pages.
#[derive(Clone, Copy, Debug, Default)]
struct QueuedSend {
    /// The next buffer of the same send queue ([`NO_BUF`]: the last).
    next: u32,
    /// Payload offset in the buffer (`G + doff`, moved on by a partial send).
    off: u32,
    /// Payload bytes not yet sent.
    len: u32,
    /// What the payload counts against its socket's send buffer.
    charge: u32,
}

/// A socket's send queue: a list threaded through the per-buffer [`QueuedSend`]
/// table, oldest first. An idle socket's queue is two words and no allocation.
#[derive(Clone, Copy, Debug, Default)]
struct SendList {
    head: u32,
    tail: u32,
}

impl SendList {
    #[inline]
    fn is_empty(&self) -> bool {
        self.head == NO_BUF
    }

    /// Appends buffer `buf` (its entry in `table` is overwritten).
    #[inline]
    fn push(&mut self, table: &mut [QueuedSend], buf: u32, off: u32, len: u32, charge: u32) {
        table[buf as usize] = QueuedSend { next: NO_BUF, off, len, charge };
        if self.tail == NO_BUF {
            self.head = buf;
        } else {
            table[self.tail as usize].next = buf;
        }
        self.tail = buf;
    }

    /// Takes the oldest entry: its buffer and what was queued.
    #[inline]
    fn pop(&mut self, table: &[QueuedSend]) -> Option<(u32, QueuedSend)> {
        if self.head == NO_BUF {
            return None;
        }
        let buf = self.head;
        let q = table[buf as usize];
        self.head = q.next;
        if self.head == NO_BUF {
            self.tail = NO_BUF;
        }
        Some((buf, q))
    }
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

    /// Bytes a receive buffer can take (payload starts at `G + 66`).
    #[inline]
    pub fn rx_capacity(&self) -> usize {
        self.rx_cap as usize
    }

    /// Lends a spare buffer to the provider to receive into; `None` when the kernel has
    /// none to spare (the provider stops receiving: backpressure). Half of the spares
    /// are kept for TX swaps: in the real kernel received data sits in NIC ring buffers
    /// and the TX-side pool (`paste_extra`) is separate, so received data waiting for
    /// RX slots can never starve txsync (which would deadlock against an application
    /// whose pool buffers are all queued for sending).
    pub fn rx_buffer(&mut self) -> Option<u32> {
        if self.free.len() <= self.tx_reserve {
            return None;
        }
        let i = self.free.pop()?;
        self.hold[i as usize] = Hold::Held(KernelHold::Receiving);
        Some(i)
    }

    /// Where the provider writes received bytes into buffer `idx` (lent by
    /// [`rx_buffer`](Self::rx_buffer)), and how many fit.
    pub fn rx_payload_ptr(&self, idx: u32) -> Option<(*mut u8, usize)> {
        if self.state(idx) != Some(KernelHold::Receiving) {
            return None;
        }
        let p = self.mem.buf_ptr(idx)?;
        Some((p.wrapping_add((self.generic_offset + self.doff) as usize), self.rx_capacity()))
    }

    /// The receive area of buffer `idx`, to fill by copy.
    pub fn rx_payload_mut(&mut self, idx: u32) -> Option<&mut [u8]> {
        let (p, n) = self.rx_payload_ptr(idx)?;
        // SAFETY: the buffer is held by the kernel for receiving (checked), so nobody
        // else reads or writes it; `&mut self` makes this borrow exclusive; the range
        // [G + 66, buf_size) lies inside the buffer.
        Some(unsafe { std::slice::from_raw_parts_mut(p, n) })
    }

    /// `n` bytes arrived for `fd` in buffer `idx`: they wait in the fd's backlog for an
    /// RX slot (the next [`rxsync`](Self::rxsync)). If `fd` is not registered the buffer
    /// goes back to the spares and `Ok(false)` is returned.
    pub fn rx_complete(&mut self, fd: i32, idx: u32, n: usize) -> Result<bool, HoldError> {
        self.check_received(idx, n)?;
        let Some(e) = self.fds.get_mut(fd as usize) else {
            self.put_free(idx);
            return Ok(false);
        };
        e.pending.push_back(Pending::Data { buf: idx, len: self.doff + n as u32 });
        self.hold[idx as usize] = Hold::Held(KernelHold::Pending);
        if !e.queued {
            e.queued = true;
            self.ready.push_back(fd);
        }
        Ok(true)
    }

    /// `n` bytes arrived for `fd` in buffer `idx` (lent by [`rx_buffer`](Self::rx_buffer)),
    /// during a sync: written into the fd's RX ring at once when the fd has no backlog,
    /// got fewer than [`RX_BATCH_PER_FD`] slots in this batch, the ring has room, and
    /// its slots of this batch (if any) are the last ones written — so each fd's slots
    /// of a batch stay together; otherwise filed in its backlog (see [`Arrival`]).
    #[inline(always)]
    pub fn rx_arrived(&mut self, fd: i32, idx: u32, n: usize) -> Result<Arrival, HoldError> {
        Ok(self.rx_arrived_lending(fd, idx, n, false)?.0)
    }

    /// [`rx_arrived`](Self::rx_arrived), where the spare buffer the RX slot gives up
    /// is lent out for receiving at once — as [`rx_buffer`](Self::rx_buffer) would
    /// lend it after it joined the free ones — when `lend_spare` is set and
    /// `rx_buffer` would lend it now. Such a spare comes back with its memory; the
    /// caller offers it to its receive buffer ring, or returns it with
    /// [`rx_abandon`](Self::rx_abandon).
    #[inline(always)]
    pub fn rx_arrived_lending(
        &mut self,
        fd: i32,
        idx: u32,
        n: usize,
        lend_spare: bool,
    ) -> Result<(Arrival, Option<LentSpare>), HoldError> {
        self.check_received(idx, n)?;
        let Some(e) = self.fds.get_mut(fd as usize) else {
            self.put_free(idx);
            return Ok((Arrival::Unregistered, None));
        };
        let len = self.doff + n as u32;
        let r = if self.rx.len() == 1 { 0 } else { fd as usize % self.rx.len() };
        let k = &mut self.rx[r];
        let fresh = e.batch != self.rx_epoch;
        let next = slot::ring_next(k.hwtail, k.ring.num_slots());
        let direct = e.pending.is_empty()
            && (fresh || (k.last_fd == fd && u32::from(e.batch_slots) < RX_BATCH_PER_FD))
            && next != k.hwcur;
        if !direct {
            let backlog = file_pending(e, &mut self.hold, &mut self.ready, fd, idx, len);
            return Ok((Arrival::Backlogged { backlog }, None));
        }
        if fresh {
            e.batch = self.rx_epoch;
            e.batch_slots = 1;
        } else {
            // Below RX_BATCH_PER_FD (checked above): no overflow.
            e.batch_slots += 1;
        }
        k.last_fd = fd;
        let tail = k.hwtail;
        k.hwtail = next;
        let mut lent = None;
        if let Some(old) = fill_rx_data(&k.ring, tail, fd, idx, len, self.doff, &mut self.hold) {
            // rx_buffer lends a spare while more than `tx_reserve` are free, counting
            // this one.
            if lend_spare && self.free.len() >= self.tx_reserve {
                self.hold[old as usize] = Hold::Held(KernelHold::Receiving);
                // `old` is below `hold.len()`, the port's buffer count (fill_rx_data),
                // so this is the address `PortMemory::buf_ptr` gives.
                lent = Some((old, self.buf_base.wrapping_add(old as usize * self.buf_size as usize)));
            } else {
                file_spare(&mut self.hold, &mut self.free, old);
            }
        }
        Ok((Arrival::Placed, lent))
    }

    /// The peer sent FIN on `fd`, during a sync: a zero-payload slot behind its data,
    /// written at once under the same rule as [`rx_arrived`](Self::rx_arrived), else
    /// filed in its backlog. Returns whether `fd` is registered.
    pub fn rx_eof_arrived(&mut self, fd: i32) -> bool {
        let Some(e) = self.fds.get_mut(fd as usize) else { return false };
        let r = fd as usize % self.rx.len();
        let k = &mut self.rx[r];
        let n_slots = k.ring.num_slots();
        let fresh = e.batch != self.rx_epoch;
        let direct =
            e.pending.is_empty() && (fresh || k.last_fd == fd) && slot::ring_next(k.hwtail, n_slots) != k.hwcur;
        if !direct {
            e.pending.push_back(Pending::Eof);
            if !e.queued {
                e.queued = true;
                self.ready.push_back(fd);
            }
            return true;
        }
        if fresh {
            e.batch = self.rx_epoch;
            e.batch_slots = 0;
        }
        e.batch_slots = e.batch_slots.saturating_add(1);
        k.last_fd = fd;
        let tail = k.hwtail;
        k.hwtail = slot::ring_next(tail, n_slots);
        // An EOF slot keeps its buffer: no spare.
        let _ = fill_rx_slot(&k.ring, tail, fd, Pending::Eof, self.doff, &mut self.hold);
        true
    }

    /// Ends the current RX batch's writes: publishes every RX ring's `tail`.
    #[inline]
    pub fn rx_publish(&self) {
        for k in &self.rx {
            k.ring.set_tail(k.hwtail);
        }
    }

    /// Entries (data and FIN) in `fd`'s backlog.
    pub fn rx_backlog(&self, fd: i32) -> usize {
        self.fds.get(fd as usize).map_or(0, |e| e.pending.len())
    }

    /// Drops `fd`'s backlog (the application is closing it): its buffers become spares.
    pub fn rx_discard(&mut self, fd: i32) {
        let Some(e) = self.fds.get_mut(fd as usize) else { return };
        let pending = std::mem::take(&mut e.pending);
        for p in pending {
            if let Pending::Data { buf, .. } = p {
                self.put_free(buf);
            }
        }
    }

    fn check_received(&self, idx: u32, n: usize) -> Result<(), HoldError> {
        if self.state(idx) != Some(KernelHold::Receiving) || n == 0 || n > self.rx_capacity() {
            return Err(HoldError { index: idx, expected: KernelHold::Receiving });
        }
        Ok(())
    }

    /// Gives back a receive buffer that was not used (the receive failed or was cancelled).
    pub fn rx_abandon(&mut self, idx: u32) -> Result<(), HoldError> {
        if self.state(idx) != Some(KernelHold::Receiving) {
            return Err(HoldError { index: idx, expected: KernelHold::Receiving });
        }
        self.put_free(idx);
        Ok(())
    }

    /// The peer sent FIN on `fd`: one zero-payload slot follows its data, through its
    /// backlog. (A RST adds nothing to the ring: the provider reports it through the
    /// socket.) Returns whether `fd` is registered.
    pub fn rx_eof(&mut self, fd: i32) -> bool {
        let Some(e) = self.fds.get_mut(fd as usize) else { return false };
        e.pending.push_back(Pending::Eof);
        if !e.queued {
            e.queued = true;
            self.ready.push_back(fd);
        }
        true
    }

    /// The next fd whose send queue got payloads from a txsync since it was last named
    /// here (the provider starts its send). An fd is named once per run of its slots
    /// in the ring, so one whose slots a txsync took between other fds' is named again:
    /// its whole queue went with the first naming's send, and a later naming finds it
    /// in flight (or nothing left) and does nothing. Drain it after every txsync: the
    /// names are not looked up again (no per-fd mark to clear), so undrained names
    /// pile up.
    #[inline]
    pub fn take_tx_ready(&mut self) -> Option<i32> {
        self.tx_ready.pop()
    }

    /// Whether `fd`'s send queue holds payloads.
    #[inline]
    pub fn has_sends(&self, fd: i32) -> bool {
        self.fds.get(fd as usize).is_some_and(|e| !e.sends.is_empty())
    }

    /// Calls `f` with the payloads of `fd`'s send queue, oldest first, up to `max`, in
    /// place (port memory, held until [`sends_done`](Self::sends_done) retires them);
    /// returns how many.
    #[inline]
    pub fn sends_gather(&self, fd: i32, max: usize, mut f: impl FnMut(&[u8])) -> usize {
        let Some(e) = self.fds.get(fd as usize) else { return 0 };
        let (mut n, mut buf) = (0, e.sends.head);
        while n < max && buf != NO_BUF {
            let job = self.queued[buf as usize];
            let Some(p) = self.mem.buf_ptr(buf) else { break };
            // SAFETY: the buffer is held in this send queue (nobody writes it until it is
            // retired) and `off + len <= buf_size` (checked by txsync when it was taken).
            f(unsafe { std::slice::from_raw_parts(p.add(job.off as usize), job.len as usize) });
            n += 1;
            buf = job.next;
        }
        n
    }

    /// Whether `fd`'s send queue holds exactly `bytes` (it stops looking once it
    /// counted more).
    pub fn sends_queued_are(&self, fd: i32, bytes: u64) -> bool {
        let Some(e) = self.fds.get(fd as usize) else { return bytes == 0 };
        let (mut seen, mut buf) = (0, e.sends.head);
        while buf != NO_BUF && seen <= bytes {
            let job = self.queued[buf as usize];
            seen += u64::from(job.len);
            buf = job.next;
        }
        seen == bytes && buf == NO_BUF
    }

    /// The socket took `bytes` from the front of `fd`'s send queue: fully sent payloads
    /// leave it (their buffers become spares, their charge leaves the socket), a
    /// partly sent one keeps its rest. Returns whether payloads remain.
    #[inline]
    pub fn sends_done(&mut self, fd: i32, bytes: u64) -> bool {
        let Some(e) = self.fds.get_mut(fd as usize) else { return false };
        let mut left = bytes;
        while !e.sends.is_empty() {
            let buf = e.sends.head;
            let job = &mut self.queued[buf as usize];
            if left < job.len as u64 {
                if left > 0 {
                    job.off += left as u32;
                    job.len -= left as u32;
                }
                break;
            }
            left -= job.len as u64;
            let charge = job.charge;
            e.sends.pop(&self.queued);
            e.wmem = e.wmem.saturating_sub(charge);
            self.hold[buf as usize] = Hold::Held(KernelHold::Free);
            self.free.push(buf);
        }
        !e.sends.is_empty()
    }

    /// Sending on `fd` failed for good: its send queue is dropped (buffers to the
    /// spares) and its later TX slots are skipped. (No send of it may be in flight.)
    pub fn sends_fail(&mut self, fd: i32) {
        let Some(e) = self.fds.get_mut(fd as usize) else { return };
        e.tx_dead = true;
        e.wmem = 0;
        let mut sends = std::mem::take(&mut e.sends);
        while let Some((buf, _)) = sends.pop(&self.queued) {
            self.put_free(buf);
        }
    }

    /// Takes the next payload of a send queue, one job at a time (the other way to
    /// drain sends, for a provider that copies them out); its buffer stays held
    /// ([`KernelHold::Sending`]) until [`send_done`](Self::send_done).
    pub fn next_send(&mut self) -> Option<SendJob> {
        loop {
            let &fd = self.tx_ready.last()?;
            let entry = self.fds.get_mut(fd as usize);
            let gen = entry.as_ref().map_or(0, |e| e.gen);
            let queued = &self.queued;
            match entry.and_then(|e| e.sends.pop(queued)) {
                Some((buf, q)) => {
                    let job = SendJob { fd, buf, off: q.off, len: q.len, charge: q.charge };
                    self.hold[job.buf as usize] = Hold::Held(KernelHold::Sending);
                    self.charges[job.buf as usize] = Some(Charge { fd, gen, bytes: job.charge });
                    return Some(job);
                }
                None => {
                    self.tx_ready.pop();
                }
            }
        }
    }

    /// The payload of a job picked up with [`next_send`](Self::next_send).
    pub fn send_payload(&self, job: &SendJob) -> Option<&[u8]> {
        if self.state(job.buf) != Some(KernelHold::Sending) || job.off + job.len > self.buf_size {
            return None;
        }
        let p = self.mem.buf_ptr(job.buf)?;
        // SAFETY: the buffer is held for sending (nobody writes it) and the range lies
        // inside it (checked above).
        Some(unsafe { std::slice::from_raw_parts(p.add(job.off as usize), job.len as usize) })
    }

    /// The socket work for a job of [`next_send`](Self::next_send) is over (sent, or
    /// failed): the buffer is a spare again.
    pub fn send_done(&mut self, buf: u32) -> Result<(), HoldError> {
        if self.state(buf) != Some(KernelHold::Sending) {
            return Err(HoldError { index: buf, expected: KernelHold::Sending });
        }
        if let Some(c) = self.charges.get_mut(buf as usize).and_then(Option::take) {
            if let Some(e) = self.fds.get_mut(c.fd as usize).filter(|e| e.gen == c.gen) {
                e.wmem = e.wmem.saturating_sub(c.bytes);
            }
        }
        self.put_free(buf);
        Ok(())
    }

    /// Whether received data waits in a backlog and an RX ring has room for it now
    /// (the next rxsync would move some).
    pub fn rx_waiting(&self) -> bool {
        !self.ready.is_empty() && self.rx.iter().any(|k| slot::ring_next(k.hwtail, k.ring.num_slots()) != k.ring.head())
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

    /// `rxsync` (docs/paste-abi.md §4.2): takes back the slots the application released
    /// (`hwcur = head`; their `NS_BUF_CHANGED` is dropped when they are filled again),
    /// starts a new batch, fills free slots
    /// from the backlogs — all of one fd's waiting slots together, the slot's old
    /// buffer becoming a spare — and publishes the new `tail`. Data that arrives
    /// during the same sync joins this batch ([`rx_arrived`](Self::rx_arrived)) and is
    /// published by [`rx_publish`](Self::rx_publish).
    pub fn rxsync(&mut self) -> SyncReport {
        let rep = self.rxsync_open();
        self.rx_publish();
        rep
    }

    /// [`rxsync`](Self::rxsync) without publishing the new `tail`: the batch stays
    /// open for the data that arrives during the same sync, and
    /// [`rx_publish`](Self::rx_publish) ends it (a provider that publishes after its
    /// socket work anyway saves one publish per sync).
    #[inline]
    pub fn rxsync_open(&mut self) -> SyncReport {
        let mut rep = SyncReport::default();
        self.rx_epoch = self.rx_epoch.wrapping_add(1).max(1);
        for r in 0..self.rx.len() {
            let k = self.rx[r];
            self.rx[r].last_fd = -1;
            let Some(head) = k.app_head() else {
                rep.bad_heads += 1;
                continue;
            };
            // The released slots' `NS_BUF_CHANGED` is not cleared one by one here:
            // they are the kernel's now (the application may not look at them), and
            // the kernel writes every slot's flags whole when it fills it again
            // (`fill_rx_slot`), so what the application sees is the same.
            self.rx[r].hwcur = head;
        }
        let nrx = self.rx.len();
        for _ in 0..self.ready.len() {
            let Some(fd) = self.ready.pop_front() else { break };
            let r = fd as usize % nrx;
            let k = self.rx[r];
            let n = k.ring.num_slots();
            let mut tail = k.hwtail;
            let Some(mut e) = self.fds.get_mut(fd as usize) else { continue };
            let mut written = 0;
            // The kernel may fill up to one slot before hwcur.
            while slot::ring_next(tail, n) != k.hwcur {
                let Some(p) = e.pending.pop_front() else { break };
                match p {
                    Pending::Data { .. } => rep.rx_data += 1,
                    Pending::Eof => rep.rx_eofs += 1,
                }
                if let Some(old) = fill_rx_slot(&k.ring, tail, fd, p, self.doff, &mut self.hold) {
                    file_spare(&mut self.hold, &mut self.free, old);
                }
                tail = slot::ring_next(tail, n);
                written += 1;
                e = self.fds.get_mut(fd as usize).expect("looked up above");
            }
            if written > 0 {
                if e.batch != self.rx_epoch {
                    e.batch = self.rx_epoch;
                    e.batch_slots = 0;
                }
                e.batch_slots = e.batch_slots.saturating_add(u16::try_from(written).unwrap_or(u16::MAX));
                self.rx[r].last_fd = fd;
            }
            self.rx[r].hwtail = tail;
            if e.pending.is_empty() {
                e.queued = false;
            } else {
                self.ready.push_back(fd);
            }
        }
        rep
    }

    /// `txsync` (docs/paste-abi.md §4.3): for each slot from `hwcur` to `head`: skip `len == 0`;
    /// stop at `len < doff`, a generic offset below the kernel's headroom, a socket
    /// refusing data, or a socket whose send buffer is full (`EAGAIN`: what it holds
    /// is not below its `sndbuf`); drop slots of unregistered fds (and of sockets whose
    /// sending failed); otherwise queue the payload on its socket's send queue (the fd
    /// is named by [`take_tx_ready`](Self::take_tx_ready)) and give the slot a
    /// different spare buffer (`len` 0, fd/doff
    /// cleared, generic offset kept). Then `hwcur` = first unprocessed slot and `tail =
    /// hwcur - 1`.
    pub fn txsync(&mut self) -> SyncReport {
        let mut rep = SyncReport::default();
        for r in 0..self.tx.len() {
            let k = self.tx[r];
            let n = k.ring.num_slots();
            let Some(head) = k.app_head() else {
                rep.bad_heads += 1;
                continue;
            };
            let mut i = k.hwcur;
            while i != head {
                let mut s = k.ring.slot(i);
                let len = s.len as u32;
                if len == 0 {
                    rep.tx_empty += 1;
                    i = slot::ring_next(i, n);
                    continue;
                }
                let doff = slot::get_doff(s.ptr) as u32;
                let g = slot::generic_offset(s.ptr, k.ring.offset_mask()) as u32;
                if len < doff || g < self.generic_offset || g + len > self.buf_size || !self.is_ring_buffer(s.buf_idx) {
                    rep.tx_stall = Some(TxStall::BadSlot { ring: r as u32, slot: i });
                    break;
                }
                let fd = slot::get_fd(s.ptr);
                let Some(e) = self.fds.get_mut(fd as usize).filter(|e| !e.tx_dead) else {
                    s.len = 0;
                    s.ptr = slot::reset_fd_doff(s.ptr);
                    k.ring.set_slot(i, s);
                    rep.tx_unregistered += 1;
                    i = slot::ring_next(i, n);
                    continue;
                };
                if let Some(errno) = e.send_error.map(|e| i32::from(e.get())) {
                    rep.tx_stall = Some(TxStall::SendError { fd, errno });
                    break;
                }
                if e.wmem >= e.sndbuf {
                    rep.tx_stall = Some(TxStall::SendError { fd, errno: libc::EAGAIN });
                    break;
                }
                let Some(fresh) = self.free.pop() else {
                    rep.tx_stall = Some(TxStall::NoBuffers);
                    break;
                };
                let charge = len - doff + EMU_SKB_OVERHEAD;
                // No overflow: `wmem` is below `sndbuf` (at most `MAX_SNDBUF`, 2^31 - 1)
                // and a slot's charge below 2^17 (see `FdEntry::wmem`).
                e.wmem += charge;
                e.sends.push(&mut self.queued, s.buf_idx, g + doff, len - doff, charge);
                // Named once per run of the fd's slots (see `take_tx_ready`).
                if self.tx_ready.last() != Some(&fd) {
                    self.tx_ready.push(fd);
                }
                self.hold[fresh as usize] = Hold::NotHeld;
                self.hold[s.buf_idx as usize] = Hold::Held(KernelHold::SendQueued);
                s.buf_idx = fresh;
                s.len = 0;
                s.ptr = slot::reset_fd_doff(s.ptr);
                s.flags = slotflags::BUF_CHANGED;
                k.ring.set_slot(i, s);
                rep.tx_taken += 1;
                i = slot::ring_next(i, n);
            }
            let hwtail = if i == 0 { n - 1 } else { i - 1 };
            self.tx[r].hwcur = i;
            self.tx[r].hwtail = hwtail;
            k.ring.set_tail(hwtail);
        }
        rep
    }
}

/// Writes `p` for `fd` into RX slot `i` of `ring` (a slot the kernel owns): a data
/// buffer is swapped in (`NS_BUF_CHANGED`) and the slot's old buffer, when it is a
/// data buffer, is returned: the kernel's spare now, for the caller to file
/// ([`file_spare`] or [`EmuKernel::rx_arrived_lending`]); an EOF is a
/// zero-payload slot. (A function over the kernel's fields rather than a method, so
/// the caller keeps its borrow of the ring.)
#[inline(always)]
fn fill_rx_slot(ring: &RingPtr, i: u32, fd: i32, p: Pending, doff: u32, hold: &mut [Hold]) -> Option<u32> {
    match p {
        Pending::Data { buf, len } => fill_rx_data(ring, i, fd, buf, len, doff, hold),
        Pending::Eof => {
            let mut s = ring.slot(i);
            s.ptr = slot::set_fd(slot::set_doff(s.ptr, doff as u16), fd);
            s.len = doff as u16;
            s.flags = 0;
            ring.set_slot(i, s);
            None
        }
    }
}

/// [`fill_rx_slot`] for data: buffer `buf` holding `len` bytes (`doff` included) is
/// swapped into RX slot `i` for `fd` (`NS_BUF_CHANGED`); the slot's old buffer, when
/// it is a data buffer (below `hold.len()`, the port's buffer count), is returned.
#[inline(always)]
fn fill_rx_data(ring: &RingPtr, i: u32, fd: i32, buf: u32, len: u32, doff: u32, hold: &mut [Hold]) -> Option<u32> {
    let mut s = ring.slot(i);
    s.ptr = slot::set_fd(slot::set_doff(s.ptr, doff as u16), fd);
    let old = s.buf_idx;
    s.buf_idx = buf;
    s.len = len as u16;
    s.flags = slotflags::BUF_CHANGED;
    ring.set_slot(i, s);
    hold[buf as usize] = Hold::NotHeld;
    (FIRST_DATA_BUF..hold.len() as u32).contains(&old).then_some(old)
}

/// Files received buffer `buf` (`len` bytes, `doff` included) in `fd`'s backlog
/// (entry `e`), queueing the fd for the next rxsync; returns the backlog's length.
/// Out of line: most arrivals go straight into the ring.
#[cold]
#[inline(never)]
fn file_pending(e: &mut FdEntry, hold: &mut [Hold], ready: &mut VecDeque<i32>, fd: i32, buf: u32, len: u32) -> usize {
    e.pending.push_back(Pending::Data { buf, len });
    hold[buf as usize] = Hold::Held(KernelHold::Pending);
    if !e.queued {
        e.queued = true;
        ready.push_back(fd);
    }
    e.pending.len()
}

/// Files a spare buffer `idx` (below `hold.len()`) with the kernel's free ones.
#[inline(always)]
fn file_spare(hold: &mut [Hold], free: &mut Vec<u32>, idx: u32) {
    hold[idx as usize] = Hold::Held(KernelHold::Free);
    free.push(idx);
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
