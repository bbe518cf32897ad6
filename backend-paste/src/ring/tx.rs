//! The TX side of the ring driver: the per-fd queues and their send credit, the
//! fill that places queued data into TX slots, the direct placing of a lone send,
//! and the reclaim of the slots the kernel took (see the module docs of `ring` for
//! the credit rules).

use std::num::NonZeroU32;

use paste_rt_core::SendData;

use super::tx_slot::{place_one, slot_room, DirectSlot, Placed};
use super::tx_state::{narrow_credit, FdTx, TxRing};
use super::{RingDriver, RingError, TxFill};
use crate::sys::abi::pst;
use crate::sys::slot;

impl RingDriver {
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

    pub(super) fn fd(&self, fd: i32) -> Option<&FdTx> {
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
    /// bounded by [`DriverConfig::max_inflight_per_fd`](super::DriverConfig::max_inflight_per_fd) and by its send credit (an fd
    /// out of credit keeps its data queued and is listed for
    /// [`tx_wants_space`](Self::tx_wants_space)), and pinned to TX ring `fd mod
    /// rings` (so one fd's slots stay in order). Each slot carries at most one MSS at
    /// `G + doff`, `len = doff + n`, with fd and doff set and the generic offset kept.
    /// A pool [`TxBuf`](paste_rt_core::TxBuf) that fits one slot is swapped in (zero
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
    pub(super) fn direct_slot(&mut self, fd: i32) -> Option<DirectSlot<'_>> {
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
