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
//! The driver's state and set-up are here; each side of the protocol has a child
//! module: `rx` (the RX walk), `tx` (the per-fd queues, credit, fill and reclaim),
//! `tx_slot` (placing bytes into one TX slot), `tx_state` (the TX rings' and fds'
//! records) and `pending` (one fd's queue).
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

use paste_rt_core::{BufPool, RxBuf};

use crate::sys::abi::{pst, slotflags, NetmapIf, FIRST_DATA_BUF};
use crate::sys::addr::{self, LayoutError, PortRegion, RingPtr};
use crate::sys::slot;
use tx_slot::slot_room;
use tx_state::{FdTx, TxRing, TxShadow};

/// Default payload bytes per TX slot: one TCP MSS on a 1500-byte MTU with timestamps.
pub const DEFAULT_MSS: u32 = 1448;
/// Default bound on one fd's TX slots handed to the kernel and not yet taken back.
pub const DEFAULT_MAX_INFLIGHT_PER_FD: u32 = 64;
/// Default charge of one TX slot against its socket's send budget, on top of the
/// payload: a fresh skb's `truesize` (about 1 280 bytes on x86_64 Linux 5.x; every
/// slot may start a new skb), rounded up for kernels with larger headers.
pub const DEFAULT_TX_SLOT_OVERHEAD: u32 = 2048;

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
mod rx;
mod tx;
mod tx_slot;
mod tx_state;

#[cfg(test)]
mod tests;
