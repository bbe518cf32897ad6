//! The application side of a PASTE port: the ring driver shared by the kernel and the
//! emulated provider.
//!
//! Owns the app's half of the netmap ring protocol over a mapped region: the RX walk
//! over `[head, tail)` (lending each slot's buffer to the application by swapping a
//! free pool buffer into the slot), the per-fd TX queues and the TX fill (zero-copy
//! swap of pool `TxBuf`s, copy of owned bytes, at most one MSS per slot), the
//! accounting of TX slots until the kernel has taken them, and the extra-buffer list
//! (imported into the [`BufPool`] at start, relinked before unregistering).
//!
//! Send space: PASTE's txsync stops at the first TX slot whose socket cannot take it
//! (`sendpage` gets `EAGAIN` with a full send buffer) and every later slot — other
//! connections' data — waits behind it. So a connection's slots go on the ring only
//! while its socket has room, as far as the driver can prove it: each fd with a
//! budget ([`RingDriver::tx_set_budget`], its `SO_SNDBUF` read once at registration)
//! holds a *credit*, a lower bound of its socket's free send space in the kernel's
//! accounting (payload plus [`DriverConfig::tx_slot_overhead`] per slot). A fill
//! places a slot only while the credit is positive (the kernel takes one while the
//! queued amount is below the send buffer) and charges it. A congested connection's
//! data waits in its queue here, never on the shared ring. The credit comes back when
//! the provider sees the socket writable ([`RingDriver::tx_writable`]: `POLLOUT`
//! means at least a third of the send buffer is free); the provider asks for that
//! only for the fds [`RingDriver::tx_wants_space`] names — out of credit with data
//! queued, or holding slots the kernel did not take at the last sync. An fd without
//! a budget is never held back. The pool is shared too (every connection's receive
//! needs a free buffer): when fewer than an eighth of its buffers are free, the pool
//! buffers queued on congested fds are copied out to the heap and given back, so a
//! connection that stops reading cannot starve the others' receives either.
//!
//! Kept buffers across restarts (a persistent pool, [`RingDriver::new_persistent`]):
//! at REGISTER the kernel treats every buffer of an extmem file as free and hands them
//! out in a fixed order — the port's rings, its own spare pools, the application's
//! extra buffers, then the NIC's rings at attach. Only the rings and the extra list
//! are the application's to reclaim; a kept buffer anywhere else would be overwritten
//! by the NIC or the kernel. So the driver of a persistent pool lends the application
//! only *home* buffers — the extra buffers and the ring slots' buffers it found at
//! start, which a later REGISTER of the same file and settings gives back to the same
//! places — copying a received payload that arrived in any other buffer, and it never
//! lets another buffer into its pool (a zero-copy send into a slot holding a foreign
//! buffer is copied instead). At the next start, the kept indices are taken out of the
//! imported extra list, and a kept buffer found in a ring slot is swapped out before
//! any sync can receive into it.
//!
//! It must never sync, make a system call, write bytes `[0, G)` of a buffer that sits
//! in a ring (G = the generic offset, the kernel's `nmcb`), change a slot's
//! generic-offset bits, or keep a pointer into a TX buffer across a sync (the kernel
//! swaps them). Who plays the kernel — `/dev/netmap` or the emulated kernel — is not
//! its business: the provider syncs between [`RingDriver::tx_fill`] and
//! [`RingDriver::tx_reclaim`] / [`RingDriver::rx_walk`].
//!
//! A tick, as a backend composes it:
//! ```text
//! driver.tx_queue(fd, data)?          // run phase: sends queue per fd
//! driver.tx_fill();                   // flush: slots filled, head = cur advanced
//! provider.sync(timeout)?;            // txsync + rxsync (poll() on the port)
//! driver.tx_reclaim(|fd, n| ..);      // bytes the kernel took (per slot, by fd)
//! driver.rx_walk(budget, |ev| ..);    // RxEvent::Data / RxEvent::Eof per slot
//! ```

use std::any::Any;
use std::collections::VecDeque;
use std::mem::offset_of;
use std::num::NonZeroU32;

use paste_rt_core::{BufPool, ForeignSwap, RxBuf, SendData, TxBuf};

use crate::sys::abi::{pst, slotflags, NetmapIf, NetmapSlot, FIRST_DATA_BUF};
use crate::sys::addr::{self, LayoutError, PortRegion, RingPtr};
use crate::sys::slot;
use pending::PendingSends;

/// Default payload bytes per TX slot: one TCP MSS on a 1500-byte MTU with timestamps.
pub const DEFAULT_MSS: u32 = 1448;
/// Default bound on one fd's TX slots handed to the kernel and not yet taken back.
pub const DEFAULT_MAX_INFLIGHT_PER_FD: u32 = 64;
/// Default charge of one TX slot against its socket's send budget, on top of the
/// payload: a fresh skb's `truesize` (about 1 280 bytes on x86_64 Linux 5.x; every
/// slot may start a new skb), rounded up for kernels with larger headers.
pub const DEFAULT_TX_SLOT_OVERHEAD: u32 = 2048;
/// `v` held to the `i32` range of an fd's stored credit (see `FdTx::credit`).
#[inline]
fn narrow_credit(v: i64) -> i32 {
    v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// Largest [`DriverConfig::tx_slot_overhead`] [`RingDriver::new`] takes: a ring's
/// slots ([`pst::MAX_SLOTS`] at most) of at most `u16::MAX` payload bytes plus this
/// each stay within an fd's 32-bit count of untaken charge.
pub const MAX_TX_SLOT_OVERHEAD: u32 = 1 << 20;

/// Tuning of the ring driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DriverConfig {
    /// Most payload bytes per TX slot (one MSS).
    pub mss: u32,
    /// Most TX slots one fd may have in the ring, not yet taken by the kernel. Bounds
    /// how much of the ring a congested or dead connection can occupy.
    pub max_inflight_per_fd: u32,
    /// Data offset written into TX slots (66 = Ethernet + IPv4 + TCP with timestamps;
    /// the kernel adjusts it when the real header differs).
    pub tx_doff: u16,
    /// Bytes each TX slot is charged against its socket's send budget on top of its
    /// payload (the kernel's per-skb overhead; see the module docs); at most
    /// [`MAX_TX_SLOT_OVERHEAD`].
    pub tx_slot_overhead: u32,
    /// Whether fds whose credit falls below half their budget are listed for
    /// [`RingDriver::tx_low_credit`]. Only a provider that tops credit up after every
    /// sync ([`RingDriver::tx_send_space`], which unlists them: the emulated port,
    /// which knows each socket's free space) sets it; without one the list would only
    /// grow, and every fill would walk it.
    pub lists_low_credit: bool,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            mss: DEFAULT_MSS,
            max_inflight_per_fd: DEFAULT_MAX_INFLIGHT_PER_FD,
            tx_doff: pst::TX_DOFF,
            tx_slot_overhead: DEFAULT_TX_SLOT_OVERHEAD,
            lists_low_credit: false,
        }
    }
}

/// Why the driver could not start or refused an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The region does not look like a netmap port.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The configuration cannot work with this port's geometry.
    #[error("ring driver configuration: {0}")]
    Config(String),
    /// The fd is outside what PASTE's per-fd table accepts.
    #[error("fd {0} cannot be used with PASTE (valid range 0..=65534)")]
    FdOutOfRange(i32),
    /// Buffers a previous run kept are not in this port's rings or extra list after
    /// REGISTER: the kernel holds them (its own pools, the NIC's rings) and would
    /// overwrite them.
    #[error(
        "{count} kept buffer(s) (first: index {first}) are not in the port's rings or extra-buffer list after \
         REGISTER: the kernel holds them and would overwrite them. The kept buffers were laid out by a run with \
         other port settings (rings, slots, extra buffers, NIC, dev.netmap.paste_extra); start with the same \
         settings as the run that kept them"
    )]
    KeptOutOfReach {
        /// How many.
        count: usize,
        /// The first one.
        first: u32,
    },
}

/// What [`RingDriver::new_persistent`] did with the kept buffers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeptReport {
    /// Taken out of the imported extra-buffer list.
    pub from_extra_list: u32,
    /// Swapped out of ring slots (an extra buffer took their place).
    pub from_ring_slots: u32,
}

/// One RX slot, as the walk hands it to the caller.
#[derive(Debug)]
pub enum RxEvent {
    /// Payload for `fd`, lent zero copy: the slot's buffer was swapped out of the ring.
    Data {
        /// The socket the kernel received it on.
        fd: i32,
        /// The payload (offset `G + doff` in the buffer).
        buf: RxBuf,
    },
    /// A zero-payload slot: the peer closed its sending half.
    Eof {
        /// The socket.
        fd: i32,
    },
}

/// What one RX walk did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxWalk {
    /// Slots consumed (data, EOF and malformed).
    pub slots: u32,
    /// Data slots lent out.
    pub data: u32,
    /// Payload bytes lent out.
    pub bytes: u64,
    /// EOF slots.
    pub eofs: u32,
    /// Malformed slots skipped (bad index, `len < doff`, past the buffer end).
    pub bad_slots: u32,
    /// The walk stopped because the pool had no free buffer to swap in; the remaining
    /// slots stay in the ring for the next walk.
    pub pool_exhausted: bool,
    /// Data slots copied into a pool buffer instead of lent (persistent pool, payload
    /// in a buffer that is not home; see the module docs).
    pub copied: u32,
}

/// What one TX fill did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxFill {
    /// Slots filled.
    pub slots: u32,
    /// Of which zero copy (a pool buffer swapped in).
    pub zero_copy: u32,
    /// Payload bytes placed.
    pub bytes: u64,
    /// Slots found holding an invalid buffer index (the ring was left as is there).
    pub bad_slots: u32,
    /// Fds with data queued that got no slot for lack of send space (congested, or
    /// waiting for the socket to be seen writable again).
    pub blocked: u32,
    /// Queued pool buffers of congested fds copied to the heap and given back to
    /// the pool (it was running dry).
    pub pool_relieved: u32,
}

/// What [`RingDriver::export_extra`] gave back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// Buffers linked onto `ni_bufs_head`.
    pub returned: u32,
    /// Buffers still lent to the application or kept (not returned).
    pub outstanding: u32,
}

#[derive(Clone, Copy, Debug, Default)]
struct TxShadow {
    fd: i32,
    gen: u16,
    bytes: u32,
}

/// A free TX slot found for a send placed directly ([`RingDriver::direct_slot`]), with
/// everything placing into it touches, borrowed once: its ring, the fd's entry, the
/// slot as read, its generic offset and the payload room after it. Only `direct_slot`
/// makes one, once it found the fd within its in-flight bound and, with a budget, its
/// credit positive.
struct DirectSlot<'a> {
    t: &'a mut TxRing,
    f: &'a mut FdTx,
    pool: &'a BufPool,
    cfg: &'a DriverConfig,
    low_credit: &'a mut Vec<i32>,
    home: &'a [bool],
    index_limit: u32,
    fd: i32,
    /// The slot (the ring's `head`).
    head: u32,
    /// The ring's slots.
    n: u32,
    /// The slot's generic offset.
    g: u32,
    /// Payload bytes the slot holds ([`slot_room`]).
    room: u32,
    slot: NetmapSlot,
}

impl DirectSlot<'_> {
    /// Copies `bytes` (not empty) into the slot and publishes it: their start, as much
    /// as the slot holds, when `partial`; else all of them or (when they do not fit)
    /// nothing. Returns the bytes copied.
    #[inline(always)]
    fn copy(self, bytes: &[u8], partial: bool) -> usize {
        let (g, buf_idx, room) = (self.g, self.slot.buf_idx, self.room as usize);
        if !(FIRST_DATA_BUF..self.index_limit).contains(&buf_idx) || room == 0 || (bytes.len() > room && !partial) {
            return 0;
        }
        let n = bytes.len().min(room);
        // SAFETY: the slot's buffer index is in range (checked above), so the buffer
        // lies in the region.
        let dst = unsafe { self.pool.buf_ptr(buf_idx).add((g + u32::from(self.cfg.tx_doff)) as usize) };
        // The slot and the accounting first, the payload next, `head` last: the slot
        // is the application's until `head` moves past it, and little is left to keep
        // across the copy. n <= room <= u16::MAX.
        let (ring, next) = self.commit_slot(n as u32);
        // SAFETY: `dst` is [g + doff, g + doff + n) of the slot's buffer, that end at
        // most buf_size (n <= room, see `slot_room`), never the kernel's [0, g); the
        // buffer stays the slot's (nobody else writes it) until `head` moves.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, n) };
        SendData::count_copy(n);
        ring.set_head_cur(next);
        n
    }

    /// Copies `data` into the slot when it is not a pool buffer, is not empty and fits
    /// one slot — what [`RingDriver::tx_fill`] would do with it, without queueing it
    /// first. Returns whether it did (the caller then drops `data`).
    #[inline]
    fn copy_whole(self, data: &SendData) -> bool {
        let bytes = match data {
            SendData::Pool(_) => return false,
            d => d.as_slice(),
        };
        !bytes.is_empty() && self.copy(bytes, false) != 0
    }

    /// Swaps pool buffer `b` into the slot (zero copy) when `b` fits it as
    /// [`RingDriver::tx_fill`] would swap it; hands `b` back otherwise.
    #[inline]
    fn swap(mut self, b: TxBuf) -> Result<(), TxBuf> {
        let old = self.slot.buf_idx;
        let pool = self.pool;
        let doff = self.cfg.tx_doff as u32;
        // A pool buffer carries its payload at `tx_headroom` = G + doff; it fits a slot
        // whose generic offset is G when it holds at most one MSS.
        let fits = b.is_from(pool)
            && !b.is_empty()
            && b.len() as u32 <= self.cfg.mss.min(u16::MAX as u32 - doff)
            && self.g + doff == pool.tx_headroom()
            && (FIRST_DATA_BUF..self.index_limit).contains(&old)
            // A persistent pool takes no foreign buffer in exchange (module docs).
            && (self.home.is_empty() || self.home.get(old as usize).copied().unwrap_or(false));
        if !fits || !pool.adopt_lent(old) {
            return Err(b);
        }
        let (idx, len) = b.into_raw();
        // SAFETY: `old` was adopted as lent just above and is not used again by us (it
        // goes to the free list); `idx` is lent (taken from the TxBuf) and goes into the
        // ring, so it leaves the pool.
        unsafe {
            pool.release(old);
            pool.disown(idx);
        }
        self.slot.buf_idx = idx;
        self.slot.flags |= slotflags::BUF_CHANGED;
        self.commit(len);
        Ok(())
    }

    /// Publishes the slot, its buffer set, now carrying `len` payload bytes of the fd,
    /// charges the fd's send credit for it and advances the ring's head.
    #[inline(always)]
    fn commit(self, len: u32) {
        let (ring, next) = self.commit_slot(len);
        ring.set_head_cur(next);
    }

    /// [`commit`](Self::commit) but for the head: writes the slot and charges the fd;
    /// returns the ring and the head to publish once the payload is in place.
    #[inline(always)]
    fn commit_slot(self, len: u32) -> (RingPtr, u32) {
        let DirectSlot { t, f, cfg, low_credit, fd, head, n, slot: mut s, .. } = self;
        s.len = (cfg.tx_doff as u32 + len) as u16;
        s.ptr = slot::set_fd(slot::set_doff(s.ptr, cfg.tx_doff), fd);
        t.ring.set_slot(head, s);
        t.shadow[head as usize] = TxShadow { fd, gen: f.gen, bytes: len };
        f.inflight += 1;
        let charge = len + cfg.tx_slot_overhead;
        f.untaken_charge += charge;
        if let Some(budget) = f.budget.map(NonZeroU32::get) {
            // No overflow: `direct_slot` found the credit positive, and the charge is
            // at most `u16::MAX + MAX_TX_SLOT_OVERHEAD`, far within `i32`.
            f.credit -= charge as i32;
            if cfg.lists_low_credit && !f.low && i64::from(f.credit) < i64::from(budget / 2) {
                f.low = true;
                low_credit.push(fd);
            }
        }
        (t.ring, slot::ring_next(head, n))
    }
}

/// Payload bytes one TX slot with generic offset `g` holds in `buf_size`-byte buffers:
/// at most one MSS, within the buffer after `g + doff` and within a slot's 16-bit
/// length; 0 when `g + doff` leaves no room. (The port's own generic offset's answer
/// is worked out once, at start: [`RingDriver::direct_slot`] uses that.)
#[inline]
fn slot_room(cfg: &DriverConfig, buf_size: u32, g: u32) -> u32 {
    let doff = u32::from(cfg.tx_doff);
    if g + doff >= buf_size {
        return 0;
    }
    cfg.mss.min(buf_size - g - doff).min(u32::from(u16::MAX) - doff)
}

struct TxRing {
    ring: RingPtr,
    /// First slot handed to the kernel and not yet seen taken back.
    pending_start: u32,
    /// The kernel's `tail` when completions were last collected.
    seen_tail: u32,
    /// The first slot left in the ring after the last sync (`u32::MAX`: none): a
    /// slot left by two syncs in a row is refused ([`RingDriver::tx_wants_space`]).
    left_after_sync: u32,
    /// Per slot: who filled it, so taken slots can be reported per fd.
    shadow: Box<[TxShadow]>,
}

/// One fd's entry: every fd the driver ever sent on has one, busy or idle, so it is
/// kept at 32 bytes (size asserted in the tests): the queue is boxed on first use, the
/// bytes taken and not yet reported wait in `sent_fds`, and the slot-bounded counts
/// are narrow ([`RingDriver::new`] checks the bounds).
#[derive(Default)]
struct FdTx {
    /// Data waiting for slots (one word until the fd first queues).
    queue: PendingSends,
    /// Lower bound of the socket's free send space (see the module docs), held to
    /// the `i32` range ([`narrow_credit`]): beyond it the answer is the same (no
    /// credit, or more than any socket buffer).
    credit: i32,
    /// Charge of this fd's slots in the ring not yet taken by the kernel: at most a
    /// ring's slots of at most `u16::MAX + tx_slot_overhead` each, which `new` keeps
    /// within `u32`.
    untaken_charge: u32,
    /// The socket's send buffer (`SO_SNDBUF` at registration); `None`: no bound.
    /// (`NonZero`: one word with the option; a send buffer is never empty.)
    budget: Option<NonZeroU32>,
    /// This fd's slots in the ring not taken yet (fewer than a ring's slots,
    /// [`pst::MAX_SLOTS`] at most).
    inflight: u16,
    /// Bumped by `tx_drop_fd`, so slots of a previous connection on the same fd number
    /// are not reported to the new one. (A number is reused only once its slots left
    /// the ring, so wrapping around is harmless.)
    gen: u16,
    /// 1 + this fd's entry in `sent_fds` (bytes taken, not reported yet); 0: none.
    /// (At most one entry per fd, and fds are at most [`pst::MAX_FD`].)
    sent_at: u16,
    active: bool,
    /// Listed in `space_waiters` (out of credit with data queued).
    waiting: bool,
    /// Listed in `stuck` (slots left untaken by the last sync).
    stuck: bool,
    /// Listed in `low_credit` (credit below half the budget).
    low: bool,
}

/// The app-side ring driver over one mapped port (see the module docs).
pub struct RingDriver {
    nifp: *mut NetmapIf,
    pool: BufPool,
    generic_offset: u32,
    buf_size: u32,
    index_limit: u32,
    rx: Vec<RingPtr>,
    tx: Vec<TxRing>,
    fds: Vec<FdTx>,
    active: VecDeque<i32>,
    /// Per TX ring (head, tail) during a fill; kept to avoid allocating per tick.
    scratch: Vec<(u32, u32)>,
    /// Fds with bytes the kernel took and `tx_reclaim` has not reported yet, and
    /// those bytes (an fd's entry is `FdTx::sent_at`).
    sent_fds: Vec<(i32, u64)>,
    /// Fds out of send credit with data queued (see [`RingDriver::tx_wants_space`]).
    space_waiters: Vec<i32>,
    /// Fds whose slots the kernel left in the ring at the last sync.
    stuck: Vec<i32>,
    /// Fds whose credit fell below half their budget (see [`RingDriver::tx_low_credit`]).
    low_credit: Vec<i32>,
    /// Persistent pool: by index, whether a buffer is home (see the module docs);
    /// empty otherwise.
    home: Vec<bool>,
    /// Payload bytes a TX slot with the port's generic offset holds ([`slot_room`]).
    direct_room: u32,
    /// The last [`rx_walk`](RingDriver::rx_walk) stopped before the end of the
    /// slots it found (the pool ran dry): [`rx_left`](RingDriver::rx_left).
    rx_left: bool,
    cfg: DriverConfig,
}

impl std::fmt::Debug for RingDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingDriver")
            .field("rx_rings", &self.rx.len())
            .field("tx_rings", &self.tx.len())
            .field("generic_offset", &self.generic_offset)
            .field("pool", &self.pool)
            .finish()
    }
}

impl RingDriver {
    /// Attaches to the port whose `netmap_if` sits at `region.nifp_offset`: finds the
    /// bound NIC rings (non-zero `ring_ofs`), reads the generic offset G from a TX
    /// slot, imports the extra-buffer list into a new pool (`tx_headroom = G +
    /// tx_doff`) and clears `ni_bufs_head` (the list now lives in the pool; see
    /// [`export_extra`](Self::export_extra)). `guard` keeps the memory alive as long as
    /// the pool (and every buffer lent from it) lives.
    ///
    /// # Safety
    /// `region` must be a live, writable mapping of a netmap port for as long as
    /// `guard` lives, and nobody but the kernel side may touch the rings while the
    /// driver exists.
    pub unsafe fn new(
        region: PortRegion,
        cfg: DriverConfig,
        guard: Box<dyn Any + Send + Sync>,
    ) -> Result<RingDriver, RingError> {
        // SAFETY: the caller's contract is this function's.
        unsafe { RingDriver::attach(region, cfg, guard, None) }.map(|(d, _)| d)
    }

    /// [`new`](Self::new) for a persistent pool (an extmem file whose buffers outlive
    /// the process): `kept` — buffers a previous run kept and still references — are
    /// taken out of the extra list or swapped out of the ring slots the kernel put them
    /// in, and start out kept in the pool; from then on only home buffers are lent
    /// (see the module docs). Fails with [`RingError::KeptOutOfReach`] when the kernel
    /// holds some of them.
    ///
    /// # Safety
    /// As for [`new`](Self::new); in addition no sync may have run on the port yet (a
    /// ring slot's kept buffer must be swapped out before anything is received into it).
    pub unsafe fn new_persistent(
        region: PortRegion,
        cfg: DriverConfig,
        guard: Box<dyn Any + Send + Sync>,
        kept: &[u32],
    ) -> Result<(RingDriver, KeptReport), RingError> {
        // SAFETY: the caller's contract is this function's.
        unsafe { RingDriver::attach(region, cfg, guard, Some(kept)) }
    }

    /// # Safety
    /// As for [`new_persistent`](Self::new_persistent).
    unsafe fn attach(
        region: PortRegion,
        cfg: DriverConfig,
        guard: Box<dyn Any + Send + Sync>,
        kept: Option<&[u32]>,
    ) -> Result<(RingDriver, KeptReport), RingError> {
        let if_fits = region.nifp_offset.checked_add(size_of::<NetmapIf>()).is_some_and(|e| e <= region.len);
        if !if_fits {
            return Err(LayoutError(format!(
                "netmap_if offset {} outside the {}-byte region",
                region.nifp_offset, region.len
            ))
            .into());
        }
        // SAFETY: the header lies inside the region (checked above).
        let nifp = unsafe { addr::netmap_if(region.base, region.nifp_offset) };
        // SAFETY: as above; u32 fields read by offset.
        let (ntx, nrx, nhtx, nhrx) = unsafe {
            (
                addr::read_if_u32(nifp, offset_of!(NetmapIf, ni_tx_rings)) as usize,
                addr::read_if_u32(nifp, offset_of!(NetmapIf, ni_rx_rings)) as usize,
                addr::read_if_u32(nifp, offset_of!(NetmapIf, ni_host_tx_rings)) as usize,
                addr::read_if_u32(nifp, offset_of!(NetmapIf, ni_host_rx_rings)) as usize,
            )
        };
        let total = ntx + nrx + nhtx + nhrx;
        let limit = 4 * (pst::MAX_RINGS as usize + 1);
        if total > limit || region.nifp_offset + size_of::<NetmapIf>() + total * 8 > region.len {
            return Err(LayoutError(format!("netmap_if lists {total} rings, more than the region can hold")).into());
        }
        let mut tx = Vec::new();
        let mut rx = Vec::new();
        for i in 0..ntx {
            // SAFETY: entry i exists (total checked above).
            if unsafe { addr::ring_ofs(nifp, i) } != 0 {
                // SAFETY: the region contract is the caller's; RingPtr::new checks bounds.
                let ring = unsafe { RingPtr::new(&region, addr::txring(nifp, i))? };
                let shadow = vec![TxShadow::default(); ring.num_slots() as usize].into_boxed_slice();
                tx.push(TxRing { ring, pending_start: 0, seen_tail: u32::MAX, left_after_sync: u32::MAX, shadow });
            }
        }
        for i in 0..nrx {
            // SAFETY: entry i + ntx + nhtx exists (total checked above).
            if unsafe { addr::ring_ofs(nifp, i + ntx + nhtx) } != 0 {
                // SAFETY: as above.
                rx.push(unsafe { RingPtr::new(&region, addr::rxring(nifp, i))? });
            }
        }
        if tx.is_empty() || rx.is_empty() {
            return Err(LayoutError(format!(
                "the port binds {} TX and {} RX NIC rings; need at least one of each",
                tx.len(),
                rx.len()
            ))
            .into());
        }
        let first = tx[0].ring;
        let buf_base = first.buf_base();
        let buf_size = first.buf_size();
        for r in tx.iter().map(|t| &t.ring).chain(rx.iter()) {
            if r.buf_base() != buf_base || r.buf_size() != buf_size {
                return Err(LayoutError("rings disagree on the buffer pool location or size".into()).into());
            }
        }
        let (start, end) = (region.base as usize, region.base as usize + region.len);
        if (buf_base as usize) < start || buf_base as usize >= end {
            return Err(LayoutError("the buffer pool starts outside the region".into()).into());
        }
        let index_limit = ((end - buf_base as usize) / buf_size as usize).min(u32::MAX as usize) as u32;
        for t in &mut tx {
            let (h, tl, n) = (t.ring.head(), t.ring.tail(), t.ring.num_slots());
            if h >= n || tl >= n {
                return Err(LayoutError(format!("TX ring head {h} / tail {tl} outside {n} slots")).into());
            }
            // The per-fd counts of slots in the ring are narrow (`FdTx`).
            if n > pst::MAX_SLOTS {
                return Err(LayoutError(format!("TX ring of {n} slots (PASTE allows {})", pst::MAX_SLOTS)).into());
            }
            t.pending_start = h;
        }
        let generic_offset = slot::generic_offset(first.slot(0).ptr, first.offset_mask()) as u32;
        let headroom = generic_offset + cfg.tx_doff as u32;
        if cfg.tx_slot_overhead > MAX_TX_SLOT_OVERHEAD {
            return Err(RingError::Config(format!(
                "TX slot overhead {} above {MAX_TX_SLOT_OVERHEAD} bytes",
                cfg.tx_slot_overhead
            )));
        }
        if cfg.mss == 0 || cfg.tx_doff > slot::DOFF_MAX || headroom >= buf_size || cfg.max_inflight_per_fd == 0 {
            return Err(RingError::Config(format!(
                "mss {} / tx doff {} / in-flight bound {} do not fit {buf_size}-byte buffers with generic offset {generic_offset}",
                cfg.mss, cfg.tx_doff, cfg.max_inflight_per_fd
            )));
        }

        // Import the extra-buffer list: link = first 4 bytes of the buffer, 0 ends.
        // SAFETY: nifp is inside the region (checked above).
        let mut idx = unsafe { addr::read_if_u32(nifp, offset_of!(NetmapIf, ni_bufs_head)) };
        let mut extras = Vec::new();
        let mut seen = vec![false; index_limit as usize];
        while idx != 0 {
            if idx < FIRST_DATA_BUF || idx >= index_limit || seen[idx as usize] {
                return Err(LayoutError(format!("extra-buffer list holds index {idx} (invalid or repeated)")).into());
            }
            seen[idx as usize] = true;
            extras.push(idx);
            // SAFETY: idx < index_limit, so the buffer lies in the region; the link is
            // at offset 0 of a buffer on the free list.
            idx = unsafe { std::ptr::read_unaligned(first.buf(idx).cast::<u32>()) };
        }
        // SAFETY: nifp is inside the region; the list now belongs to the pool.
        unsafe { addr::write_if_u32(nifp, offset_of!(NetmapIf, ni_bufs_head), 0) };
        let (home, kept, report) = match kept {
            None => (Vec::new(), Vec::new(), KeptReport::default()),
            Some(kept) => {
                let rings: Vec<RingPtr> = tx.iter().map(|t| t.ring).chain(rx.iter().copied()).collect();
                reclaim_kept(&rings, &mut extras, index_limit, kept)?
            }
        };
        // SAFETY: buffers below index_limit lie inside the region, which the caller keeps
        // alive as long as `guard`; the extra buffers are ours alone.
        let pool = unsafe { BufPool::external(buf_base, buf_size, index_limit, extras, headroom, guard) };
        for &k in &kept {
            pool.adopt_kept(k);
        }
        // A full TxBuf fits one TX slot, so it is swapped in whole rather than copied
        // a slot at a time (a 2 KiB buffer holds more than one MSS).
        let direct_room = slot_room(&cfg, buf_size, generic_offset);
        pool.limit_tx_payload(direct_room);
        let driver = RingDriver {
            nifp,
            pool,
            generic_offset,
            buf_size,
            index_limit,
            rx,
            tx,
            fds: Vec::new(),
            active: VecDeque::new(),
            scratch: Vec::new(),
            sent_fds: Vec::new(),
            space_waiters: Vec::new(),
            stuck: Vec::new(),
            low_credit: Vec::new(),
            home,
            direct_room,
            rx_left: false,
            cfg,
        };
        Ok((driver, report))
    }

    /// Whether the pool is persistent ([`new_persistent`](Self::new_persistent)).
    pub fn is_persistent(&self) -> bool {
        !self.home.is_empty()
    }

    /// Whether `index` may be lent or enter the pool (always, unless persistent).
    fn is_home(&self, index: u32) -> bool {
        self.home.is_empty() || self.home.get(index as usize).copied().unwrap_or(false)
    }

    /// The pool over the port's buffers (owning the extra buffers and everything lent).
    pub fn pool(&self) -> &BufPool {
        &self.pool
    }

    /// The generic offset G read at start (the kernel's per-buffer headroom).
    pub fn generic_offset(&self) -> u32 {
        self.generic_offset
    }

    /// One past the largest buffer index of the region.
    pub fn index_limit(&self) -> u32 {
        self.index_limit
    }

    /// The configuration.
    pub fn config(&self) -> &DriverConfig {
        &self.cfg
    }

    /// Free TX slots over all rings (what a fill could use now).
    pub fn tx_space(&self) -> u32 {
        self.tx.iter().map(|t| slot::ring_space(t.ring.head(), t.ring.tail(), t.ring.num_slots())).sum()
    }

    /// Whether the kernel has taken every TX slot handed to it (`tail` caught up with
    /// `head` on every ring): no slot of any fd is waiting in a ring.
    pub fn tx_all_taken(&self) -> bool {
        self.tx.iter().all(|t| {
            let n = t.ring.num_slots();
            t.ring.head() < n && slot::ring_next(t.ring.tail(), n) == t.ring.head()
        })
    }

    /// RX slots the kernel can fill at most (each ring keeps one slot empty).
    pub fn rx_capacity(&self) -> u32 {
        self.rx.iter().map(|r| r.num_slots().saturating_sub(1)).sum()
    }

    /// Whether the last [`rx_walk`](Self::rx_walk) left RX slots unwalked (the pool
    /// ran dry, or the budget ran out). Until the next sync moves the rings' tails,
    /// this is [`rx_ready`](Self::rx_ready)` > 0` without a look at every ring: the
    /// per-tick question "can anything be taken without waiting?".
    #[inline]
    pub fn rx_left(&self) -> bool {
        self.rx_left
    }

    /// RX slots waiting to be walked.
    pub fn rx_ready(&self) -> u32 {
        self.rx.iter().map(|r| slot::ring_space(r.head(), r.tail(), r.num_slots())).sum()
    }

    /// Walks every RX ring over `[head, tail)`, at most `budget` slots in all, and hands
    /// each to `on_event`. Data slots are lent zero copy: a free pool buffer replaces
    /// the slot's buffer (`NS_BUF_CHANGED`, `ptr` untouched) and the old one becomes an
    /// [`RxBuf`] at offset `G + doff`. When the pool has no free buffer the walk stops
    /// and leaves the rest in the ring. Consumed slots are released (`head = cur`).
    pub fn rx_walk(&mut self, budget: u32, mut on_event: impl FnMut(RxEvent)) -> RxWalk {
        let mut w = RxWalk::default();
        'rings: for ring in &self.rx {
            let n = ring.num_slots();
            let (head, tail) = (ring.head(), ring.tail());
            if head >= n || tail >= n {
                continue;
            }
            let mut i = head;
            while i != tail && w.slots < budget {
                let s = ring.slot(i);
                let fd = slot::get_fd(s.ptr);
                let doff = slot::get_doff(s.ptr) as u32;
                let g = slot::generic_offset(s.ptr, ring.offset_mask()) as u32;
                let len = s.len as u32;
                let valid =
                    doff <= len && g + len <= self.buf_size && (FIRST_DATA_BUF..self.index_limit).contains(&s.buf_idx);
                // (One call of `on_event` below, so the caller's handler is inlined.)
                let ev = if !valid {
                    w.bad_slots += 1;
                    None
                } else if len == doff {
                    w.eofs += 1;
                    Some(RxEvent::Eof { fd })
                } else if self.is_home(s.buf_idx) {
                    match self.pool.swap_foreign(s.buf_idx) {
                        ForeignSwap::Swapped(fresh) => {
                            let old = s.buf_idx;
                            ring.set_buf_changed(i, fresh);
                            w.data += 1;
                            w.bytes += (len - doff) as u64;
                            // SAFETY: `old` was just swapped out of the ring and joined
                            // the pool as lent (swap_foreign); g + len <= buf_size
                            // (checked above).
                            let buf = unsafe { self.pool.lend_allocated_rx(old, g + doff, len - doff) };
                            Some(RxEvent::Data { fd, buf })
                        }
                        ForeignSwap::Exhausted => {
                            w.pool_exhausted = true;
                            ring.set_head_cur(i);
                            break 'rings;
                        }
                        ForeignSwap::NotForeign => {
                            // The ring holds a buffer the pool already owns: not a
                            // kernel buffer. Leave it there and skip the slot.
                            w.bad_slots += 1;
                            None
                        }
                    }
                } else {
                    // SAFETY: the slot's buffer is owned by us until head moves past
                    // it and lies in the region (index checked above), and
                    // g + len <= buf_size (checked above).
                    let Some(buf) = (unsafe { copy_out(&self.pool, s.buf_idx, g + doff, len - doff) }) else {
                        w.pool_exhausted = true;
                        ring.set_head_cur(i);
                        break 'rings;
                    };
                    w.data += 1;
                    w.copied += 1;
                    w.bytes += (len - doff) as u64;
                    Some(RxEvent::Data { fd, buf })
                };
                if let Some(ev) = ev {
                    on_event(ev);
                }
                w.slots += 1;
                i = slot::ring_next(i, n);
            }
            ring.set_head_cur(i);
        }
        self.rx_left = w.pool_exhausted || w.slots >= budget;
        w
    }

    /// Queues `data` for `fd`, after what was queued before. Nothing touches the ring
    /// until [`tx_fill`](Self::tx_fill).
    pub fn tx_queue(&mut self, fd: i32, data: SendData) -> Result<(), RingError> {
        let f = self.fd_entry(fd)?;
        f.queue.push_back(data);
        if !f.active {
            f.active = true;
            self.active.push_back(fd);
        }
        Ok(())
    }

    /// Bytes queued for `fd` and not yet placed in a slot.
    pub fn tx_queued(&self, fd: i32) -> u64 {
        self.fd(fd).map_or(0, |f| f.queue.bytes())
    }

    /// `fd`'s TX slots in the ring that the kernel has not taken yet.
    pub fn tx_inflight(&self, fd: i32) -> u32 {
        self.fd(fd).map_or(0, |f| u32::from(f.inflight))
    }

    fn fd(&self, fd: i32) -> Option<&FdTx> {
        usize::try_from(fd).ok().and_then(|i| self.fds.get(i))
    }

    /// Forgets everything queued for `fd` (a dead or closed connection) and stops
    /// reporting its slots already in the ring. Returns the bytes dropped from the
    /// queue. Slots already handed over stay in the ring: close the socket before the
    /// next sync so the kernel skips them. The fd's send budget goes too: a new
    /// connection on the same number sets its own.
    pub fn tx_drop_fd(&mut self, fd: i32) -> u64 {
        let Some(f) = usize::try_from(fd).ok().and_then(|i| self.fds.get_mut(i)) else { return 0 };
        let dropped = f.queue.clear();
        f.inflight = 0;
        if f.sent_at != 0 {
            // Forget what was taken of it; the entry stays, empty.
            self.sent_fds[usize::from(f.sent_at) - 1].1 = 0;
        }
        f.gen = f.gen.wrapping_add(1);
        f.budget = None;
        f.credit = 0;
        f.untaken_charge = 0;
        f.waiting = false;
        f.low = false;
        if f.stuck {
            f.stuck = false;
            self.stuck.retain(|&x| x != fd);
        }
        if f.active {
            f.active = false;
            self.active.retain(|&x| x != fd);
        }
        dropped
    }

    /// Sets `fd`'s send budget: its socket's send buffer (`SO_SNDBUF`, read once when
    /// the socket was registered, while its send queue is empty). From now on the
    /// fd's slots go on the ring only while its credit lasts (see the module docs);
    /// the full buffer is the first credit.
    pub fn tx_set_budget(&mut self, fd: i32, send_buffer: u32) -> Result<(), RingError> {
        let f = self.fd_entry(fd)?;
        f.budget = NonZeroU32::new(send_buffer.max(1));
        f.credit = narrow_credit(i64::from(send_buffer) - i64::from(f.untaken_charge));
        Ok(())
    }

    /// The provider saw `fd`'s socket writable after the sync's txsync (`POLLOUT`: at
    /// least a third of its send buffer is free): the credit becomes at least that,
    /// less what is still waiting in the ring.
    pub fn tx_writable(&mut self, fd: i32) {
        self.collect_completions();
        let Some(f) = usize::try_from(fd).ok().and_then(|i| self.fds.get_mut(i)) else { return };
        let Some(budget) = f.budget.map(NonZeroU32::get) else { return };
        let bound = i64::from(budget / 3) - i64::from(f.untaken_charge);
        f.credit = f.credit.max(narrow_credit(bound));
        if f.credit > 0 {
            f.waiting = false;
        }
    }

    /// The provider knows `fd`'s socket's free send space exactly (`free` bytes in
    /// the kernel's accounting, after the sync's txsync): the credit becomes that,
    /// less what is still waiting in the ring. (An emulated port knows it; the kernel
    /// only says [`tx_writable`](Self::tx_writable).)
    pub fn tx_send_space(&mut self, fd: i32, free: u64) {
        self.collect_completions();
        let Some(f) = usize::try_from(fd).ok().and_then(|i| self.fds.get_mut(i)) else { return };
        let Some(budget) = f.budget.map(NonZeroU32::get) else { return };
        f.credit = narrow_credit(free.min(i64::MAX as u64) as i64 - i64::from(f.untaken_charge));
        if f.credit > 0 {
            f.waiting = false;
        }
        if i64::from(f.credit) >= i64::from(budget / 2) {
            f.low = false;
        }
    }

    /// The fds whose credit fell below half their budget while sending (each at most
    /// once). A provider that can read a socket's free send space without a system
    /// call tops their credit up with [`tx_send_space`](Self::tx_send_space) after each sync, so
    /// that a busy connection never runs dry; a kernel provider does not (it would
    /// need a system call, or a `POLLOUT` that returns at once).
    pub fn tx_low_credit(&self) -> impl Iterator<Item = i32> + '_ {
        self.low_credit.iter().copied().filter(|&fd| self.fd(fd).is_some_and(|f| f.low))
    }

    /// Whether [`tx_low_credit`](Self::tx_low_credit) may name an fd (a cheap check
    /// before walking it).
    #[inline]
    pub fn tx_any_low_credit(&self) -> bool {
        !self.low_credit.is_empty()
    }

    /// Whether [`tx_space_waiters`](Self::tx_space_waiters) may name an fd (a cheap
    /// check before walking it).
    #[inline]
    pub fn tx_any_space_waiter(&self) -> bool {
        !self.space_waiters.is_empty() || !self.stuck.is_empty()
    }

    /// Whether the provider should watch `fd`'s socket for writability (`POLLOUT`) at
    /// the next sync: it is out of send credit with data queued, or the kernel left
    /// some of its slots in the ring at the last sync.
    pub fn tx_wants_space(&self, fd: i32) -> bool {
        self.fd(fd).is_some_and(|f| f.waiting || f.stuck)
    }

    /// Every fd [`tx_wants_space`](Self::tx_wants_space) names (each at most once).
    pub fn tx_space_waiters(&self) -> impl Iterator<Item = i32> + '_ {
        let waiting = self.space_waiters.iter().copied().filter(|&fd| self.fd(fd).is_some_and(|f| f.waiting));
        let stuck = self.stuck.iter().copied().filter(|&fd| self.fd(fd).is_some_and(|f| f.stuck && !f.waiting));
        waiting.chain(stuck)
    }

    /// `fd`'s send credit (see the module docs); `None` when it has no budget.
    pub fn tx_credit(&self, fd: i32) -> Option<i64> {
        self.fd(fd).and_then(|f| f.budget.map(|_| i64::from(f.credit)))
    }

    fn fd_entry(&mut self, fd: i32) -> Result<&mut FdTx, RingError> {
        if !(0..=pst::MAX_FD).contains(&fd) {
            return Err(RingError::FdOutOfRange(fd));
        }
        let i = fd as usize;
        if i >= self.fds.len() {
            self.fds.resize_with(i + 1, FdTx::default);
        }
        Ok(&mut self.fds[i])
    }

    /// Calls `f` with the pool index of every queued [`SendData::Pool`] buffer (for
    /// accounting checks).
    pub fn for_each_queued_pool_buf(&self, mut f: impl FnMut(u32)) {
        for q in &self.fds {
            for d in q.queue.iter() {
                if let SendData::Pool(b) = d {
                    f(b.index());
                }
            }
        }
    }

    /// Places queued data into free TX slots, fd by fd in round-robin order, each fd
    /// bounded by [`DriverConfig::max_inflight_per_fd`] and by its send credit (an fd
    /// out of credit keeps its data queued and is listed for
    /// [`tx_wants_space`](Self::tx_wants_space)), and pinned to TX ring `fd mod
    /// rings` (so one fd's slots stay in order). Each slot carries at most one MSS at
    /// `G + doff`, `len = doff + n`, with fd and doff set and the generic offset kept.
    /// A pool [`TxBuf`] that fits one slot is swapped in (zero
    /// copy; the slot's old buffer goes to the pool); other data is copied into the
    /// slot's buffer. Advances `head = cur` on every ring it filled.
    pub fn tx_fill(&mut self) -> TxFill {
        let mut out = TxFill::default();
        let fds = &self.fds;
        if !self.space_waiters.is_empty() {
            self.space_waiters.retain(|&fd| fds.get(fd as usize).is_some_and(|f| f.waiting));
        }
        if !self.low_credit.is_empty() {
            self.low_credit.retain(|&fd| fds.get(fd as usize).is_some_and(|f| f.low));
        }
        if self.active.is_empty() {
            // Nothing queued (so no fd waits for space either): nothing to place.
            return out;
        }
        // Slots the kernel took back are free again: record who they carried first.
        self.collect_completions();
        let ntx = self.tx.len();
        let mut heads = std::mem::take(&mut self.scratch);
        heads.clear();
        heads.extend(self.tx.iter().map(|t| (t.ring.head(), t.ring.tail())));
        let rounds = self.active.len();
        for _ in 0..rounds {
            let Some(fd) = self.active.pop_front() else { break };
            let r = fd as usize % ntx;
            let n = self.tx[r].ring.num_slots();
            let (mut head, tail) = heads[r];
            if head >= n || tail >= n {
                self.active.push_back(fd);
                continue;
            }
            self.fill_fd(fd, r, &mut head, tail, &mut out);
            heads[r].0 = head;
            if self.fds[fd as usize].queue.is_empty() {
                self.fds[fd as usize].active = false;
            } else {
                self.active.push_back(fd);
            }
        }
        for (t, &(head, _)) in self.tx.iter().zip(&heads) {
            if head != t.ring.head() && head < t.ring.num_slots() {
                t.ring.set_head_cur(head);
            }
        }
        self.scratch = heads;
        out.pool_relieved = self.relieve_pool();
        out
    }

    /// Queues `data` for `fd` like [`tx_queue`](Self::tx_queue) and, when no fd waits
    /// for ring space (none has data queued from before), places it in TX slots at
    /// once (`head = cur` advanced), under the same bounds as
    /// [`tx_fill`](Self::tx_fill): what does not fit stays queued for the next fill.
    /// Returns the slots filled.
    #[inline]
    pub fn tx_send(&mut self, fd: i32, data: SendData) -> Result<u32, RingError> {
        // The common case (inlined into the caller): nothing queued anywhere, and the
        // fd's ring has a free slot it may use now.
        let Some(at) = (if self.active.is_empty() { self.direct_slot(fd) } else { None }) else {
            return self.tx_send_queued(fd, data);
        };
        match data {
            // One pool buffer, one slot: swapped in.
            SendData::Pool(b) => match at.swap(b) {
                Ok(()) => Ok(1),
                Err(b) => self.tx_send_queued(fd, SendData::Pool(b)),
            },
            // Bytes that fit one slot (a static response): copied straight into it,
            // never through the fd's queue, so an fd that only ever sends such replies
            // keeps no queue allocation (idle connections cost no heap here).
            d => {
                if at.copy_whole(&d) {
                    return Ok(1);
                }
                self.tx_send_queued(fd, d)
            }
        }
    }

    /// [`tx_send`](Self::tx_send) for `data` whose first `placed` bytes already went
    /// into TX slots ([`tx_copy`](Self::tx_copy)): the rest is queued in place (no
    /// copy of it) when `fd` has nothing queued — always so right after `tx_copy`
    /// placed the start, since it places only then — else (never expected) as an
    /// owned copy behind what is queued. Returns the slots filled.
    pub fn tx_send_from(&mut self, fd: i32, data: SendData, placed: usize) -> Result<u32, RingError> {
        if placed == 0 {
            return self.tx_send(fd, data);
        }
        let f = self.fd_entry(fd)?;
        if let Err(data) = f.queue.push_back_placed(data, placed) {
            let rest = data.as_slice().get(placed..).unwrap_or_default().to_vec();
            if rest.is_empty() {
                return Ok(0);
            }
            f.queue.push_back(SendData::Owned(rest));
        }
        Ok(self.fill_queued(fd))
    }

    /// [`tx_send`](Self::tx_send) for data that did not go into a slot directly: it
    /// joins the fd's queue, and fills what it can when nothing waits before it.
    #[inline(never)]
    fn tx_send_queued(&mut self, fd: i32, data: SendData) -> Result<u32, RingError> {
        self.fd_entry(fd)?.queue.push_back(data);
        Ok(self.fill_queued(fd))
    }

    /// After data joined `fd`'s queue (`fd` has an entry): fills what it can when
    /// nothing waits before it, and lists `fd` active while data is left. Returns the
    /// slots filled.
    fn fill_queued(&mut self, fd: i32) -> u32 {
        let mut out = TxFill::default();
        let ntx = self.tx.len();
        let f = &self.fds[fd as usize];
        if f.active {
            return 0;
        }
        let r = if ntx == 1 { 0 } else { fd as usize % ntx };
        let t = &self.tx[r];
        let (n, mut head, tail) = (t.ring.num_slots(), t.ring.head(), t.ring.tail());
        if self.active.is_empty() && head < n && tail < n {
            if tail != t.seen_tail {
                // A sync since the last look: record who the taken slots carried
                // before they are refilled.
                self.collect_completions();
            }
            self.fill_fd(fd, r, &mut head, tail, &mut out);
            let t = &self.tx[r];
            if head != t.ring.head() {
                t.ring.set_head_cur(head);
            }
        }
        let f = &mut self.fds[fd as usize];
        if !f.queue.is_empty() {
            f.active = true;
            self.active.push_back(fd);
        }
        out.slots
    }

    /// The next free slot of `fd`'s ring for a send placed directly, without queueing,
    /// when `fd` has nothing queued, room in flight and send credit and its ring has a
    /// free slot; `None` otherwise. Records the completions of a sync since the last
    /// look first, so the slot's old owner is accounted. The ring, the fd's entry and
    /// the slot are found here, once: the placing that follows fills and publishes it
    /// through them ([`DirectSlot::commit`]).
    #[inline]
    fn direct_slot(&mut self, fd: i32) -> Option<DirectSlot<'_>> {
        let ntx = self.tx.len();
        let r = if ntx == 1 { 0 } else { fd as usize % ntx };
        let t = self.tx.get(r)?;
        if t.ring.tail() != t.seen_tail {
            // A sync since the last look: record who the taken slots carried before
            // they are refilled.
            self.collect_completions();
        }
        // (The ring is borrowed once from here on: its indices, checked, stay at hand.)
        let RingDriver { tx, fds, pool, cfg, low_credit, home, index_limit, .. } = self;
        let t = tx.get_mut(r)?;
        let (n, head, tail) = (t.ring.num_slots(), t.ring.head(), t.ring.tail());
        if head == tail || head >= n || tail >= n {
            return None;
        }
        let f = usize::try_from(fd).ok().and_then(|i| fds.get_mut(i))?;
        if f.active || u32::from(f.inflight) >= cfg.max_inflight_per_fd || (f.budget.is_some() && f.credit <= 0) {
            return None;
        }
        let slot = t.ring.slot(head);
        let g = slot::generic_offset(slot.ptr, t.ring.offset_mask()) as u32;
        let room = if g == self.generic_offset { self.direct_room } else { slot_room(cfg, self.buf_size, g) };
        Some(DirectSlot { t, f, pool, cfg, low_credit, home, index_limit: *index_limit, fd, head, n, g, room, slot })
    }

    /// Payload bytes one TX slot holds (at most one MSS): a pool buffer up to this
    /// long can be swapped into a slot whole; a longer one takes several slots.
    #[inline]
    pub fn tx_slot_payload(&self) -> u32 {
        self.direct_room
    }

    /// Copies the start of `bytes` — as much as one TX slot holds — straight into
    /// `fd`'s ring's next free slot, when [`tx_send`](Self::tx_send) would place data
    /// there now: no fd has data queued, `fd` is within its in-flight bound and send
    /// credit, and its ring has a free slot (`head = cur` advanced, the slot charged
    /// like any other). Returns the bytes copied; 0 when it placed nothing (the
    /// caller then hands the data to [`tx_send`](Self::tx_send) /
    /// [`tx_send_from`](Self::tx_send_from), which queue it). It never queues: a
    /// backend copies a send from its own queue in place with it, then queues only
    /// what did not fit.
    #[inline]
    pub fn tx_copy(&mut self, fd: i32, bytes: &[u8]) -> usize {
        if bytes.is_empty() || !self.active.is_empty() {
            return 0;
        }
        match self.direct_slot(fd) {
            Some(at) => at.copy(bytes, true),
            None => 0,
        }
    }

    /// Fills `fd`'s queued data into ring `r`'s free slots from `head` (up to `tail`),
    /// within its in-flight bound and its send credit; advances `head` (the ring's own
    /// `head` is the caller's to publish).
    #[inline]
    fn fill_fd(&mut self, fd: i32, r: usize, head: &mut u32, tail: u32, out: &mut TxFill) {
        let n = self.tx[r].ring.num_slots();
        loop {
            let f = &self.fds[fd as usize];
            if f.queue.is_empty() || u32::from(f.inflight) >= self.cfg.max_inflight_per_fd || *head == tail {
                break;
            }
            if f.budget.is_some() && f.credit <= 0 {
                out.blocked += 1;
                if !f.waiting {
                    self.fds[fd as usize].waiting = true;
                    self.space_waiters.push(fd);
                }
                break;
            }
            let f = &mut self.fds[fd as usize];
            let home = &self.home;
            match place_one(&self.pool, &self.cfg, self.buf_size, self.index_limit, home, &mut self.tx[r], *head, fd, f)
            {
                Placed::Slot { bytes, zero_copy } => {
                    out.slots += 1;
                    out.bytes += bytes as u64;
                    out.zero_copy += zero_copy as u32;
                    *head = slot::ring_next(*head, n);
                }
                Placed::Skipped => {}
                Placed::BadSlot => {
                    out.bad_slots += 1;
                    break;
                }
            }
        }
        let f = &mut self.fds[fd as usize];
        if let Some(budget) = f.budget.map(NonZeroU32::get) {
            if self.cfg.lists_low_credit && !f.low && i64::from(f.credit) < i64::from(budget / 2) {
                f.low = true;
                self.low_credit.push(fd);
            }
        }
    }

    /// When the pool runs low (fewer than an eighth of its buffers free), copies the
    /// pool buffers queued on congested fds (out of send credit) to the heap and gives
    /// them back (see the module docs). A partly placed front entry stays. Returns the
    /// buffers given back.
    fn relieve_pool(&mut self) -> u32 {
        if self.space_waiters.is_empty() || self.pool.free_count() >= (self.pool.capacity() / 8).max(1) {
            return 0;
        }
        let mut relieved = 0;
        for &fd in &self.space_waiters {
            let Some(f) = self.fds.get_mut(fd as usize).filter(|f| f.waiting) else { continue };
            let skip = usize::from(f.queue.front_off() > 0);
            for d in f.queue.iter_mut().skip(skip) {
                if matches!(d, SendData::Pool(_)) {
                    // The TxBuf is dropped here: back to the pool.
                    *d = SendData::Owned(d.as_slice().to_vec());
                    relieved += 1;
                }
            }
        }
        relieved
    }

    /// After a sync: accounts the TX slots the kernel took back (`[pending, tail + 1)`;
    /// netmap keeps one slot between tail and its hwcur) and calls `on_sent(fd, bytes)`
    /// with the payload bytes taken since the last call: per slot for the slots this
    /// call finds taken, per fd for those an earlier look found (a fill, a direct
    /// send, a writable report), so an fd may be named more than once; the sum per fd
    /// is what it sent. Fds dropped with [`tx_drop_fd`](Self::tx_drop_fd) are not
    /// reported. Returns the number of slots taken back by this call.
    pub fn tx_reclaim(&mut self, mut on_sent: impl FnMut(i32, u64)) -> u32 {
        if !self.sent_fds.is_empty() {
            // (Indexed, then cleared: cheaper than a drain for the usual few entries.)
            for k in 0..self.sent_fds.len() {
                let (fd, bytes) = self.sent_fds[k];
                if let Some(f) = self.fds.get_mut(fd as usize) {
                    f.sent_at = 0;
                    if bytes > 0 {
                        on_sent(fd, bytes);
                    }
                }
            }
            self.sent_fds.clear();
        }
        // The slots taken since: reported as they are found, no per-fd sum.
        let n = collect_taken(&mut self.tx, &mut self.fds, self.cfg.tx_slot_overhead, |fd, _, bytes| {
            on_sent(fd, u64::from(bytes))
        });
        self.note_stuck();
        n
    }

    /// After a sync: the fd of the first slot the kernel left in each ring by two
    /// syncs in a row (the kernel stopped there: its socket refused the slot, and
    /// every later slot waits behind it) is listed in `stuck`, every other fd
    /// unlisted. A slot left by one sync only may just not be handed back yet: kernel
    /// PASTE on a NIC returns a TX slot at the sync after the one that sent it, so
    /// the last slot of a sync is usually still there after it. Asking its socket
    /// for `POLLOUT` then made the next wait return at once (the socket has room),
    /// an extra tick per answer sent.
    fn note_stuck(&mut self) {
        if !self.stuck.is_empty() {
            for fd in self.stuck.drain(..) {
                if let Some(f) = self.fds.get_mut(fd as usize) {
                    f.stuck = false;
                }
            }
        }
        for t in &mut self.tx {
            let n = t.ring.num_slots();
            if t.ring.head() >= n || t.pending_start == t.ring.head() {
                t.left_after_sync = u32::MAX;
                continue;
            }
            // (Between two syncs the kernel takes fewer slots than the ring holds, so
            // a first slot left at the same index means no slot was taken.)
            if t.left_after_sync != t.pending_start {
                t.left_after_sync = t.pending_start;
                continue;
            }
            let sh = t.shadow[t.pending_start as usize];
            if let Some(f) = usize::try_from(sh.fd).ok().and_then(|k| self.fds.get_mut(k)) {
                if f.gen == sh.gen && sh.bytes > 0 && !f.stuck {
                    f.stuck = true;
                    self.stuck.push(sh.fd);
                }
            }
        }
    }

    /// Moves the slots the kernel took back out of the shadow records (before they can
    /// be refilled) into the per-fd counts of bytes taken and not reported (`sent_fds`,
    /// reported by the next [`tx_reclaim`](Self::tx_reclaim)).
    fn collect_completions(&mut self) -> u32 {
        let sent_fds = &mut self.sent_fds;
        collect_taken(&mut self.tx, &mut self.fds, self.cfg.tx_slot_overhead, |fd, f, bytes| {
            if f.sent_at == 0 {
                sent_fds.push((fd, 0));
                // At most one entry per fd, fds at most MAX_FD < u16::MAX.
                f.sent_at = sent_fds.len() as u16;
            }
            sent_fds[usize::from(f.sent_at) - 1].1 += u64::from(bytes);
        })
    }

    /// Drops every queued send (their pool buffers return to the pool).
    pub fn tx_drop_all(&mut self) {
        for fd in 0..self.fds.len() {
            self.tx_drop_fd(fd as i32);
        }
    }

    /// Before unregistering: drops queued sends and links every free pool buffer onto
    /// `ni_bufs_head` (link at buffer offset 0), so the kernel frees a consistent set.
    /// Buffers still lent to the application (or kept) are not returned; they stay
    /// valid as long as the pool lives.
    pub fn export_extra(&mut self) -> ExportReport {
        self.tx_drop_all();
        let off = offset_of!(NetmapIf, ni_bufs_head);
        // SAFETY: nifp lies inside the region (checked in `new`).
        let mut head = unsafe { addr::read_if_u32(self.nifp, off) };
        let mut returned = 0;
        while let Some(i) = self.pool.alloc() {
            // SAFETY: `i` was just allocated (lent to us) and leaves the pool for the
            // kernel's list; we write only its link word.
            unsafe {
                self.pool.disown(i);
                std::ptr::write_unaligned(self.pool.buf_ptr(i).cast::<u32>(), head);
            }
            head = i;
            returned += 1;
        }
        // SAFETY: as above.
        unsafe { addr::write_if_u32(self.nifp, off, head) };
        ExportReport { returned, outstanding: self.pool.in_use() + self.pool.kept_count() }
    }
}

/// Moves the slots the kernel took back (`[pending, tail + 1)` of each TX ring) out of
/// the shadow records, before they can be refilled: each one of a live fd (same
/// generation) leaves its fd's in-flight count and untaken charge, and
/// `on_taken(fd, entry, payload bytes)` is told. Returns the slots taken back.
#[inline(always)]
fn collect_taken(
    tx: &mut [TxRing],
    fds: &mut [FdTx],
    slot_overhead: u32,
    mut on_taken: impl FnMut(i32, &mut FdTx, u32),
) -> u32 {
    let mut total = 0;
    for t in tx {
        let n = t.ring.num_slots();
        let (head, tail) = (t.ring.head(), t.ring.tail());
        // Nothing taken since the last look (the kernel's tail did not move: between
        // two looks it takes fewer slots than the ring holds, so a moved tail never
        // comes back to the same value): nothing to collect.
        if head >= n || tail >= n || tail == t.seen_tail {
            continue;
        }
        t.seen_tail = tail;
        // (The walk's position and the records kept at hand, stored back once.)
        let (mut at, shadow) = (t.pending_start, &t.shadow[..]);
        let pending = slot::ring_distance(at, head, n);
        let done = slot::ring_distance(at, slot::ring_next(tail, n), n).min(pending);
        for _ in 0..done {
            // (Read, not cleared: every slot in `[pending_start, head)` was filled, and
            // its record written, after the last look collected it.)
            let sh = shadow[at as usize];
            if let Some(f) = usize::try_from(sh.fd).ok().and_then(|i| fds.get_mut(i)) {
                if f.gen == sh.gen && f.inflight > 0 && sh.bytes > 0 {
                    f.inflight -= 1;
                    f.untaken_charge = f.untaken_charge.saturating_sub(sh.bytes + slot_overhead);
                    on_taken(sh.fd, f, sh.bytes);
                }
            }
            at = slot::ring_next(at, n);
        }
        t.pending_start = at;
        total += done;
    }
    total
}

enum Placed {
    Slot {
        bytes: u32,
        zero_copy: bool,
    },
    /// An empty send was discarded; no slot used.
    Skipped,
    BadSlot,
}

/// Fills TX slot `i` of ring `t` from the front of `f`'s queue.
#[allow(clippy::too_many_arguments)]
fn place_one(
    pool: &BufPool,
    cfg: &DriverConfig,
    buf_size: u32,
    index_limit: u32,
    home: &[bool],
    t: &mut TxRing,
    i: u32,
    fd: i32,
    f: &mut FdTx,
) -> Placed {
    let ring = t.ring;
    let mut s = ring.slot(i);
    let doff = cfg.tx_doff as u32;
    let g = slot::generic_offset(s.ptr, ring.offset_mask()) as u32;
    if !(FIRST_DATA_BUF..index_limit).contains(&s.buf_idx) || g + doff >= buf_size {
        return Placed::BadSlot;
    }
    let room = cfg.mss.min(buf_size - g - doff).min(u16::MAX as u32 - doff) as usize;
    let Some(front) = f.queue.front() else { return Placed::Skipped };
    if front.is_empty() {
        f.queue.take_front();
        return Placed::Skipped;
    }
    let front_off = f.queue.front_off();
    let zero_copy = match front {
        SendData::Pool(b) => {
            front_off == 0
                && b.len() <= room
                && pool.tx_headroom() == g + doff
                && b.is_from(pool)
                // A persistent pool takes no foreign buffer in exchange (module docs).
                && (home.is_empty() || home.get(s.buf_idx as usize).copied().unwrap_or(false))
        }
        _ => false,
    };
    let n;
    if zero_copy {
        let old = s.buf_idx;
        let b = match f.queue.take_front() {
            Some(SendData::Pool(b)) => b,
            other => {
                // Cannot happen (the front was just seen to be a whole pool buffer);
                // put it back rather than lose it.
                if let Some(o) = other {
                    f.queue.put_front(o);
                }
                return Placed::BadSlot;
            }
        };
        if !pool.adopt_lent(old) {
            f.queue.put_front(SendData::Pool(b));
            return Placed::BadSlot;
        }
        let (idx, len) = b.into_raw();
        // SAFETY: `old` was adopted as lent just above and is not used again by us (it
        // goes to the free list); `idx` is lent (taken from the TxBuf) and goes into the
        // ring, so it leaves the pool.
        unsafe {
            pool.release(old);
            pool.disown(idx);
        }
        s.buf_idx = idx;
        s.flags |= slotflags::BUF_CHANGED;
        n = len as usize;
    } else {
        // Owned, static and `Bytes` data (a `Bytes` made from a pool buffer too: its
        // buffer cannot go into the slot while other clones may read it) and a pool
        // buffer that does not fit one slot: copied once, counted.
        let data = &front.as_slice()[front_off..];
        n = data.len().min(room);
        // SAFETY: the slot's buffer index is in range (checked above), so the buffer lies
        // in the region; we write [g + doff, g + doff + n) with g + doff + n <= buf_size,
        // never the kernel's [0, g).
        unsafe {
            let dst = pool.buf_ptr(s.buf_idx).add((g + doff) as usize);
            std::ptr::copy_nonoverlapping(data.as_ptr(), dst, n);
        }
        SendData::count_copy(n);
        f.queue.consume_front(n);
    }
    s.len = (doff as usize + n) as u16;
    s.ptr = slot::set_fd(slot::set_doff(s.ptr, cfg.tx_doff), fd);
    ring.set_slot(i, s);
    t.shadow[i as usize] = TxShadow { fd, gen: f.gen, bytes: n as u32 };
    f.inflight += 1;
    // n <= u16::MAX (a slot's length), the overhead bounded by `RingDriver::new`.
    let charge = n as u32 + cfg.tx_slot_overhead;
    f.untaken_charge += charge;
    if f.budget.is_some() {
        f.credit = narrow_credit(i64::from(f.credit) - i64::from(charge));
    }
    Placed::Slot { bytes: n as u32, zero_copy }
}

/// A persistent pool lends home buffers only: the payload of `src` (`len` bytes at
/// `off`) is copied into a fresh pool buffer at the same offset, lent as received
/// data, and the slot keeps its buffer. `None` when the pool has no free buffer.
/// Out of line: only a persistent pool's walk copies.
///
/// # Safety
/// `src` must be a buffer of the pool's region that the caller owns (a ring slot's
/// before head moves past it), and `off + len` at most the buffer size.
#[cold]
#[inline(never)]
unsafe fn copy_out(pool: &BufPool, src: u32, off: u32, len: u32) -> Option<RxBuf> {
    let fresh = pool.alloc()?;
    // SAFETY: `fresh` is lent to us and not in any ring; `src` is the caller's (the
    // contract); both lie in the region and `off + len` fits a buffer.
    unsafe {
        let from = pool.buf_ptr(src).add(off as usize);
        let to = pool.buf_ptr(fresh).add(off as usize);
        std::ptr::copy_nonoverlapping(from, to, len as usize);
        Some(pool.lend_rx(fresh, off, len))
    }
}

/// The persistent-pool start (see the module docs): marks the home buffers (extra
/// list and ring slots), takes `kept` out of `extras`, swaps each kept buffer found in
/// a ring slot for an extra buffer (`NS_BUF_CHANGED`). Returns the home map, the kept
/// indices to adopt, and what was done.
fn reclaim_kept(
    rings: &[RingPtr],
    extras: &mut Vec<u32>,
    index_limit: u32,
    kept: &[u32],
) -> Result<(Vec<bool>, Vec<u32>, KeptReport), RingError> {
    let mut home = vec![false; index_limit as usize];
    let mut in_extras = vec![false; index_limit as usize];
    for &i in extras.iter() {
        home[i as usize] = true;
        in_extras[i as usize] = true;
    }
    // Where each ring buffer sits, to swap kept ones out.
    let mut slot_of: Vec<Option<(usize, u32)>> = vec![None; index_limit as usize];
    for (r, ring) in rings.iter().enumerate() {
        for i in 0..ring.num_slots() {
            let b = ring.slot(i).buf_idx;
            if (FIRST_DATA_BUF..index_limit).contains(&b) {
                home[b as usize] = true;
                slot_of[b as usize] = Some((r, i));
            }
        }
    }
    let mut wanted = vec![false; index_limit as usize];
    let mut unreachable = Vec::new();
    let mut adopt = Vec::new();
    for &k in kept {
        if !(FIRST_DATA_BUF..index_limit).contains(&k) || !home[k as usize] {
            unreachable.push(k);
        } else if !wanted[k as usize] {
            wanted[k as usize] = true;
            adopt.push(k);
        }
    }
    if let Some(&first) = unreachable.first() {
        return Err(RingError::KeptOutOfReach { count: unreachable.len(), first });
    }
    let mut report = KeptReport::default();
    extras.retain(|&i| {
        let keep = !wanted[i as usize];
        report.from_extra_list += u32::from(!keep);
        keep
    });
    for &k in &adopt {
        if in_extras[k as usize] {
            continue;
        }
        let Some((r, i)) = slot_of[k as usize] else { continue };
        let Some(spare) = extras.pop() else {
            return Err(RingError::Config(format!(
                "kept buffer {k} sits in a ring slot and no extra buffer is left to take its place: ask for more extra buffers"
            )));
        };
        let ring = rings[r];
        let mut s = ring.slot(i);
        s.buf_idx = spare;
        s.flags |= slotflags::BUF_CHANGED;
        ring.set_slot(i, s);
        report.from_ring_slots += 1;
    }
    Ok((home, adopt, report))
}

mod pending;

#[cfg(test)]
mod tests;
