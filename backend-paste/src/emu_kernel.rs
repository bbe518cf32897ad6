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
//! It makes no system call and touches no socket: a provider (the io_uring emulation)
//! receives into [`EmuKernel::rx_buffer`] buffers, hands them over with
//! [`EmuKernel::rx_complete`], drains [`EmuKernel::next_send`] jobs and returns their
//! buffers with [`EmuKernel::send_done`]. Every buffer index is, at any time, either in
//! a ring slot, the application's, or held here in exactly one [`KernelHold`] state.

use std::collections::VecDeque;

use crate::dense_map::DenseMap;
use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;

use crate::port_mem::{EmuPortConfig, PortMemory};
use crate::sys::abi::{pst, slotflags, FIRST_DATA_BUF};
use crate::sys::addr::{self, PortRegion, RingPtr};
use crate::sys::slot;

/// Largest fd the kernel's PST_FD_REG accepts (`NM_PST_FD_MAX`).
pub const KERNEL_FD_MAX: i32 = 65535;
/// Send buffer of a registered socket unless set: what Linux 5.10 gives a fresh TCP
/// connection on a 1500-byte MTU (`tcp_sndbuf_expand`: 2 × 10 segments × 4 352).
pub const EMU_SNDBUF: u32 = 87_040;
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
    /// Taken from a TX slot, waiting for the provider to pick it up.
    SendQueued,
    /// Picked up by the provider, socket send in flight.
    Sending,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hold {
    NotHeld,
    Held(KernelHold),
}

/// A TX slot's payload taken by txsync, for the provider to write to the socket.
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

#[derive(Debug)]
struct FdEntry {
    pending: VecDeque<Pending>,
    /// In `ready`.
    queued: bool,
    send_error: Option<i32>,
    /// The socket's send buffer.
    sndbuf: u32,
    /// Queued in the socket: taken slots' payload plus overhead, until their send is done.
    wmem: u64,
    /// Tells this registration's charges from a previous socket's on the same fd.
    gen: u32,
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
    region: PortRegion,
    tx: Vec<KRing>,
    rx: Vec<KRing>,
    generic_offset: u32,
    doff: u32,
    buf_size: u32,
    hold: Vec<Hold>,
    free: Vec<u32>,
    /// Spares `rx_buffer` never lends, kept for TX swaps.
    tx_reserve: usize,
    fds: DenseMap<FdEntry>,
    ready: VecDeque<i32>,
    sends: VecDeque<SendJob>,
    /// By buffer index: the charge of a buffer taken from a TX slot.
    charges: Vec<Option<Charge>>,
    next_gen: u32,
}

impl fmt::Debug for EmuKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmuKernel")
            .field("free", &self.free.len())
            .field("fds", &self.fds.len())
            .field("sends", &self.sends.len())
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
            tx.push(KRing { ring, hwcur: 0, hwtail: ring.num_slots() - 1 });
        }
        let mut rx = Vec::with_capacity(nrx);
        for i in 0..nrx {
            // SAFETY: as above.
            let ring = ring_at(unsafe { addr::rxring(nifp, i) })?;
            rx.push(KRing { ring, hwcur: 0, hwtail: 0 });
        }
        let charges = vec![None; mem.layout().buf_count as usize];
        let mut hold = vec![Hold::NotHeld; mem.layout().buf_count as usize];
        let free: Vec<u32> = mem.kernel_buffers().into_iter().rev().collect();
        for &i in &free {
            hold[i as usize] = Hold::Held(KernelHold::Free);
        }
        Ok(EmuKernel {
            region,
            tx,
            rx,
            generic_offset: cfg.generic_offset as u32,
            doff: pst::TX_DOFF as u32,
            buf_size: cfg.buf_size,
            hold,
            tx_reserve: free.len() / 2,
            free,
            fds: DenseMap::new(),
            ready: VecDeque::new(),
            sends: VecDeque::new(),
            charges,
            next_gen: 0,
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
            pending: VecDeque::new(),
            queued: false,
            send_error: None,
            sndbuf: EMU_SNDBUF,
            wmem: 0,
            gen: self.next_gen,
        };
        self.fds.insert(fd as usize, entry);
        Ok(())
    }

    /// Sets `fd`'s send buffer (`SO_SNDBUF`). Returns whether `fd` is registered.
    pub fn set_sndbuf(&mut self, fd: i32, bytes: u32) -> bool {
        self.fds.get_mut(fd as usize).map(|e| e.sndbuf = bytes).is_some()
    }

    /// `fd`'s send buffer, if registered (what `getsockopt(SO_SNDBUF)` would say).
    pub fn sndbuf(&self, fd: i32) -> Option<u32> {
        self.fds.get(fd as usize).map(|e| e.sndbuf)
    }

    /// What `fd`'s socket holds queued: taken slots' payload plus overhead whose send
    /// is not done.
    pub fn queued_in_socket(&self, fd: i32) -> Option<u64> {
        self.fds.get(fd as usize).map(|e| e.wmem)
    }

    /// `fd`'s free send space: its send buffer less what it holds queued.
    pub fn send_space(&self, fd: i32) -> Option<u64> {
        self.fds.get(fd as usize).map(|e| u64::from(e.sndbuf).saturating_sub(e.wmem))
    }

    /// The kernel's `POLLOUT` rule for a TCP socket: the free send space is at least
    /// half of what is queued (so at least a third of the buffer is free).
    pub fn writable(&self, fd: i32) -> bool {
        self.fds.get(fd as usize).is_some_and(|e| 3 * e.wmem <= 2 * u64::from(e.sndbuf))
    }

    /// The socket was closed: forget `fd`, and return its undelivered data's buffers to
    /// the spares. Returns whether it was registered.
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
            e.send_error = errno;
        }
    }

    /// Bytes a receive buffer can take (payload starts at `G + 66`).
    pub fn rx_capacity(&self) -> usize {
        (self.buf_size - self.generic_offset - self.doff) as usize
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

    /// `n` bytes arrived for `fd` in buffer `idx`: they wait for an RX slot. If `fd` is
    /// not registered the buffer goes back to the spares and `Ok(false)` is returned.
    pub fn rx_complete(&mut self, fd: i32, idx: u32, n: usize) -> Result<bool, HoldError> {
        if self.state(idx) != Some(KernelHold::Receiving) || n == 0 || n > self.rx_capacity() {
            return Err(HoldError { index: idx, expected: KernelHold::Receiving });
        }
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

    /// Gives back a receive buffer that was not used (the receive failed or was cancelled).
    pub fn rx_abandon(&mut self, idx: u32) -> Result<(), HoldError> {
        if self.state(idx) != Some(KernelHold::Receiving) {
            return Err(HoldError { index: idx, expected: KernelHold::Receiving });
        }
        self.put_free(idx);
        Ok(())
    }

    /// The peer sent FIN on `fd`: one zero-payload slot follows its data. (A RST adds
    /// nothing to the ring: the provider reports it through the socket.) Returns
    /// whether `fd` is registered.
    pub fn rx_eof(&mut self, fd: i32) -> bool {
        let Some(e) = self.fds.get_mut(fd as usize) else { return false };
        e.pending.push_back(Pending::Eof);
        if !e.queued {
            e.queued = true;
            self.ready.push_back(fd);
        }
        true
    }

    /// Takes the next TX payload for the provider to send; its buffer stays held
    /// ([`KernelHold::Sending`]) until [`send_done`](Self::send_done).
    pub fn next_send(&mut self) -> Option<SendJob> {
        let job = self.sends.pop_front()?;
        self.hold[job.buf as usize] = Hold::Held(KernelHold::Sending);
        Some(job)
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

    /// The socket work for `buf` is over (sent, or failed): the buffer is a spare again.
    pub fn send_done(&mut self, buf: u32) -> Result<(), HoldError> {
        if self.state(buf) != Some(KernelHold::Sending) {
            return Err(HoldError { index: buf, expected: KernelHold::Sending });
        }
        if let Some(c) = self.charges.get_mut(buf as usize).and_then(Option::take) {
            if let Some(e) = self.fds.get_mut(c.fd as usize).filter(|e| e.gen == c.gen) {
                e.wmem = e.wmem.saturating_sub(u64::from(c.bytes));
            }
        }
        self.put_free(buf);
        Ok(())
    }

    /// Whether received data waits for RX slots (the ring was full at the last rxsync).
    pub fn rx_waiting(&self) -> bool {
        !self.ready.is_empty()
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
    /// (`hwcur = head`, `NS_BUF_CHANGED` cleared), fills free slots from the per-fd
    /// queues — all of one fd's waiting slots together, the slot's old buffer becoming a
    /// spare — and publishes the new `tail`.
    pub fn rxsync(&mut self) -> SyncReport {
        let mut rep = SyncReport::default();
        for r in 0..self.rx.len() {
            let k = self.rx[r];
            let n = k.ring.num_slots();
            let Some(head) = k.app_head() else {
                rep.bad_heads += 1;
                continue;
            };
            let mut i = k.hwcur;
            while i != head {
                let mut s = k.ring.slot(i);
                s.flags &= !slotflags::BUF_CHANGED;
                k.ring.set_slot(i, s);
                i = slot::ring_next(i, n);
            }
            self.rx[r].hwcur = head;
        }
        let nrx = self.rx.len();
        for _ in 0..self.ready.len() {
            let Some(fd) = self.ready.pop_front() else { break };
            let r = fd as usize % nrx;
            let k = self.rx[r];
            let n = k.ring.num_slots();
            let mut tail = k.hwtail;
            let Some(e) = self.fds.get_mut(fd as usize) else { continue };
            // The kernel may fill up to one slot before hwcur.
            while slot::ring_next(tail, n) != k.hwcur {
                let Some(p) = e.pending.pop_front() else { break };
                let mut s = k.ring.slot(tail);
                s.ptr = slot::set_fd(slot::set_doff(s.ptr, self.doff as u16), fd);
                match p {
                    Pending::Data { buf, len } => {
                        let old = s.buf_idx;
                        s.buf_idx = buf;
                        s.len = len as u16;
                        s.flags = slotflags::BUF_CHANGED;
                        self.hold[buf as usize] = Hold::NotHeld;
                        if (FIRST_DATA_BUF..self.hold.len() as u32).contains(&old) {
                            self.hold[old as usize] = Hold::Held(KernelHold::Free);
                            self.free.push(old);
                        }
                        rep.rx_data += 1;
                    }
                    Pending::Eof => {
                        s.len = self.doff as u16;
                        s.flags = 0;
                        rep.rx_eofs += 1;
                    }
                }
                k.ring.set_slot(tail, s);
                tail = slot::ring_next(tail, n);
            }
            self.rx[r].hwtail = tail;
            if e.pending.is_empty() {
                e.queued = false;
            } else {
                self.ready.push_back(fd);
            }
        }
        for k in &self.rx {
            k.ring.set_tail(k.hwtail);
        }
        rep
    }

    /// `txsync` (docs/paste-abi.md §4.3): for each slot from `hwcur` to `head`: skip `len == 0`;
    /// stop at `len < doff`, a generic offset below the kernel's headroom, a socket
    /// refusing data, or a socket whose send buffer is full (`EAGAIN`: what it holds
    /// is not below its `sndbuf`); drop slots of unregistered fds; otherwise queue the payload for
    /// the provider and give the slot a different spare buffer (`len` 0, fd/doff
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
                match self.fds.get(fd as usize) {
                    None => {
                        s.len = 0;
                        s.ptr = slot::reset_fd_doff(s.ptr);
                        k.ring.set_slot(i, s);
                        rep.tx_unregistered += 1;
                        i = slot::ring_next(i, n);
                        continue;
                    }
                    Some(FdEntry { send_error: Some(errno), .. }) => {
                        rep.tx_stall = Some(TxStall::SendError { fd, errno: *errno });
                        break;
                    }
                    Some(e) if e.wmem >= u64::from(e.sndbuf) => {
                        rep.tx_stall = Some(TxStall::SendError { fd, errno: libc::EAGAIN });
                        break;
                    }
                    Some(_) => {}
                }
                let Some(fresh) = self.free.pop() else {
                    rep.tx_stall = Some(TxStall::NoBuffers);
                    break;
                };
                let charge = len - doff + EMU_SKB_OVERHEAD;
                if let Some(e) = self.fds.get_mut(fd as usize) {
                    e.wmem += u64::from(charge);
                    self.charges[s.buf_idx as usize] = Some(Charge { fd, gen: e.gen, bytes: charge });
                }
                self.hold[fresh as usize] = Hold::NotHeld;
                self.hold[s.buf_idx as usize] = Hold::Held(KernelHold::SendQueued);
                self.sends.push_back(SendJob { fd, buf: s.buf_idx, off: g + doff, len: len - doff });
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
