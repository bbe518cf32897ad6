//! Reading: one `read` per ready connection into pool buffers, delivered to its
//! record as it is read, and one `recvfrom` per datagram.

use paste_rt_core::{max_datagram, Delivery, IoTable, Stats, Token};

use super::{errno, EpollBackend, Role, Sock, SockFlags, Tally};
use crate::sys;

impl EpollBackend {
    /// Reads every readable, unpaused socket into pool buffers. Returns the buffers
    /// delivered. The list is walked and compacted in place: a socket that may hold
    /// more stays listed; the counters are added once per walk. The test for none is
    /// inlined into the tick; the walk is not.
    #[inline(always)]
    pub(super) fn read_ready(&mut self, io: &mut IoTable) -> u64 {
        if self.to_read.is_empty() {
            return 0;
        }
        self.read_listed(io)
    }

    /// Walks the read list (see [`read_ready`](Self::read_ready)).
    #[inline(never)]
    fn read_listed(&mut self, io: &mut IoTable) -> u64 {
        let mut tally = Tally::default();
        let mut keep = 0;
        let mut i = 0;
        while let Some(&t) = self.to_read.get(i) {
            i += 1;
            if self.read_one(io, t, &mut tally) {
                // keep < i: a slot already walked.
                self.to_read[keep] = t;
                keep += 1;
            }
        }
        self.to_read.truncate(keep);
        self.count_reads(&tally);
        tally.done
    }

    /// Adds the counts of reads made.
    pub(super) fn count_reads(&self, tally: &Tally) {
        self.stats.syscalls(tally.ops);
        Stats::add(&self.stats.submissions, tally.ops);
        Stats::add(&self.stats.completions, tally.ops);
        Stats::add(&self.stats.rx_bytes, tally.bytes);
    }

    /// Reads listed socket `t` if it is readable and unpaused (see
    /// [`read_now`](Self::read_now)). Returns whether it stays listed; if not, its
    /// `read_listed` is cleared.
    fn read_one(&mut self, io: &mut IoTable, t: Token, tally: &mut Tally) -> bool {
        let Some(s) = self.socks.get_mut(t.index()) else { return false };
        let more = s.can_read() && self.read_now(io, t, tally);
        if !more {
            if let Some(s) = self.socks.get_mut(t.index()) {
                s.flags.set(SockFlags::READ_LISTED, false);
            }
        }
        more
    }

    /// Reads readable, unpaused socket `t` until a short read (which drained the
    /// socket: the next arrival is a new edge), the end, a pause, a dry pool or the
    /// read budget. Returns whether it may hold more (the budget ran out or the pool
    /// is dry): the caller lists it.
    #[inline(always)]
    pub(super) fn read_now(&mut self, io: &mut IoTable, t: Token, tally: &mut Tally) -> bool {
        let Some(s) = self.socks.get_mut(t.index()) else { return false };
        if s.role == Role::Dgram {
            let (more, n) = self.read_datagrams(io, t);
            tally.done += n;
            return more;
        }
        let stats = &self.stats;
        let pool = &self.pool;
        let size = pool.buf_size();
        let budget = u64::from(self.config.read_budget);
        let mut delivered = 0;
        let more = loop {
            if delivered >= budget {
                break true;
            }
            let Some(index) = pool.alloc() else {
                Stats::add(&stats.pool_exhausted, 1);
                break true;
            };
            tally.ops += 1;
            // SAFETY: `index` was just allocated, so its `size` bytes are ours.
            let r = unsafe { sys::read(s.fd, pool.buf_ptr(index), size as usize) };
            match r {
                Ok(0) => {
                    // SAFETY: the buffer was allocated above and not lent.
                    unsafe { pool.release(index) };
                    s.flags.set(SockFlags::RX_DONE, true);
                    s.flags.set(SockFlags::READABLE, false);
                    io.eof(t);
                    break false;
                }
                Ok(n) => {
                    tally.bytes += n as u64;
                    delivered += 1;
                    // SAFETY: the buffer came from `alloc` above and is handed over
                    // here; `n <= size` bytes were read.
                    let buf = unsafe { pool.lend_allocated_rx(index, 0, n as u32) };
                    if io.deliver(t, buf) == Delivery::Pause {
                        s.flags.set(SockFlags::PAUSED, true);
                    }
                    if (n as u32) < size && !s.flags.contains(SockFlags::HUP) {
                        // A short read drained the socket; the next edge says more.
                        s.flags.set(SockFlags::READABLE, false);
                        break false;
                    }
                    if s.flags.contains(SockFlags::PAUSED) {
                        break false;
                    }
                }
                Err(e) => {
                    // SAFETY: the buffer was allocated above and not lent.
                    unsafe { pool.release(index) };
                    match e {
                        sys::Errno::AGAIN => {
                            s.flags.set(SockFlags::READABLE, false);
                            break false;
                        }
                        sys::Errno::INTR => continue,
                        _ => {
                            s.flags.set(SockFlags::READABLE, false);
                            tally.done += delivered;
                            self.fail_stream(io, t, e.raw_os_error());
                            return false;
                        }
                    }
                }
            }
        };
        tally.done += delivered;
        more
    }

    /// Reads up to the read budget of datagrams of a readable, unpaused socket into
    /// pool buffers, one `recvfrom` each. Returns (still readable, buffers delivered).
    // Off the per-request path: out of line, so the hot loops that reach it keep
    // their registers.
    #[inline(never)]
    fn read_datagrams(&mut self, io: &mut IoTable, t: Token) -> (bool, u64) {
        let stats = &self.stats;
        let pool = &self.pool;
        let Some(s) = self.socks.get_mut(t.index()) else { return (false, 0) };
        let cap = max_datagram(pool.buf_size());
        let mut delivered = 0;
        while delivered < self.config.read_budget as u64 {
            let Some(index) = pool.alloc() else {
                Stats::add(&stats.pool_exhausted, 1);
                return (true, delivered);
            };
            // SAFETY: `index` was just allocated; cap <= buf_size bytes of it are ours.
            let r = unsafe { sys::recvfrom(stats, s.fd, pool.buf_ptr(index), cap as usize) };
            match r {
                Ok((n, Some(from))) => {
                    let len = (n as u32).min(cap);
                    Stats::add(&stats.rx_bytes, len as u64);
                    delivered += 1;
                    // SAFETY: the buffer is ours and `len <= cap` bytes were written.
                    let buf = unsafe { pool.lend_rx(index, 0, len) };
                    if io.deliver_datagram(t, buf, from, n as u32 > cap) == Delivery::Pause {
                        s.flags.set(SockFlags::PAUSED, true);
                        return (false, delivered);
                    }
                }
                Ok((_, None)) => {
                    // Not an IP source (cannot happen on a UDP socket): skip it.
                    // SAFETY: the buffer was allocated above and not lent.
                    unsafe { pool.release(index) };
                }
                Err(e) => {
                    // SAFETY: the buffer was allocated above and not lent.
                    unsafe { pool.release(index) };
                    match e.raw_os_error() {
                        Some(libc::EAGAIN) => {
                            s.flags.set(SockFlags::READABLE, false);
                            return (false, delivered);
                        }
                        // A pending ICMP error of an earlier send: reading consumed it.
                        Some(libc::EINTR | libc::ECONNREFUSED) => continue,
                        _ => {
                            s.flags.set(SockFlags::READABLE, false);
                            s.flags.set(SockFlags::RX_DONE, true);
                            io.dgram_failed(t, errno(&e));
                            return (false, delivered);
                        }
                    }
                }
            }
        }
        (true, delivered)
    }

    /// Whether a read is possible right now without waiting.
    pub(super) fn can_read_now(&self) -> bool {
        self.pool.free_count() > 0 && self.to_read.iter().any(|t| self.socks.get(t.index()).is_some_and(Sock::can_read))
    }
}
