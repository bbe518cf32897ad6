//! The emulated kernel's TX side: `txsync` taking TX slots onto their sockets' send
//! queues (each slot given a fresh spare), the queues read in place by the socket
//! work, and the buffers given back when the sends complete.

use super::send_list::NO_BUF;
use super::{Charge, EmuKernel, Hold, HoldError, KernelHold, SendJob, SyncReport, TxStall, EMU_SKB_OVERHEAD};
use crate::sys::abi::slotflags;
use crate::sys::slot;

impl EmuKernel {
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
