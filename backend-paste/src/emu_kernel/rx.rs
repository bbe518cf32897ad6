//! The emulated kernel's RX side: received buffers filed per socket, their hand-over
//! into RX slots (swapping the slot's spare out), EOFs, and `rxsync`.

use std::collections::VecDeque;

use super::{
    Arrival, EmuKernel, FdEntry, Hold, HoldError, KernelHold, LentSpare, Pending, SyncReport, RX_BATCH_PER_FD,
};
use crate::sys::abi::{slotflags, FIRST_DATA_BUF};
use crate::sys::addr::RingPtr;
use crate::sys::slot;

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

impl EmuKernel {
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

    /// Whether received data waits in a backlog and an RX ring has room for it now
    /// (the next rxsync would move some).
    pub fn rx_waiting(&self) -> bool {
        !self.ready.is_empty() && self.rx.iter().any(|k| slot::ring_next(k.hwtail, k.ring.num_slots()) != k.ring.head())
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
}
