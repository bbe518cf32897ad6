//! [`TableSink`]: how the io_uring engine's results land in the runtime's records.
//!
//! Slot id = token, so every method is one index into the [`IoTable`]. A received
//! buffer id is a pool index (the pool's recycle ring is the receive ring), lent out
//! with [`BufPool::recycle_take`] and delivered to its record; a send gathers the
//! record's queue in place; what the table answers goes back to the engine. It makes
//! no system call and allocates nothing.

use std::os::fd::RawFd;

use paste_rt_core::{BufPool, Delivery, IoTable, SendStep, Stats, Token};
use paste_rt_uring_engine::user_data::OpKind;
use paste_rt_uring_engine::{Sink, SocketEngine};

use crate::dgram::Datagrams;

/// The engine's [`Sink`] over the runtime's table; see the module docs.
pub(crate) struct TableSink<'a> {
    pub(crate) io: &'a mut IoTable,
    /// The table's wake count when this sink was made (see `before_enter`).
    wakes_at_start: u64,
    pub(crate) pool: &'a BufPool,
    pub(crate) dgram: &'a mut Datagrams,
    pub(crate) stats: &'a Stats,
}

impl<'a> TableSink<'a> {
    pub(crate) fn new(io: &'a mut IoTable, pool: &'a BufPool, dgram: &'a mut Datagrams, stats: &'a Stats) -> Self {
        let wakes_at_start = io.wakes();
        TableSink { io, wakes_at_start, pool, dgram, stats }
    }
}

impl Sink for TableSink<'_> {
    fn accepted(&mut self, listener: u32, fd: RawFd) -> Option<u32> {
        self.io.accepted(Token(listener), fd).map(|t| t.0)
    }

    fn accept_failed(&mut self, listener: u32, errno: i32) {
        self.io.accept_failed(Token(listener), errno);
    }

    #[inline]
    fn received(&mut self, slot: u32, bid: u16, bytes: u32) -> Delivery {
        if bytes <= self.pool.recycle_buf_len() {
            // One buffer (the common case): delivered here, no closure to call.
            // SAFETY: as below.
            let Some(buf) = (unsafe { self.pool.recycle_take_one(bid, bytes) }) else { return Delivery::Queued };
            Stats::add(&self.stats.rx_buffers, 1);
            return match self.io.deliver(Token(slot), buf) {
                Delivery::Pause => Delivery::Pause,
                _ => Delivery::Queued,
            };
        }
        let io = &mut *self.io;
        let mut verdict = Delivery::Queued;
        // SAFETY: the CQE named buffer `bid` of our receive ring with `bytes` bytes:
        // the kernel took those buffers and finished writing them.
        let n = unsafe {
            self.pool.recycle_take(bid, bytes, |buf| {
                if io.deliver(Token(slot), buf) == Delivery::Pause {
                    verdict = Delivery::Pause;
                }
            })
        };
        Stats::add(&self.stats.rx_buffers, n as u64);
        verdict
    }

    fn eof(&mut self, slot: u32) {
        self.io.eof(Token(slot));
    }

    fn rx_failed(&mut self, slot: u32, errno: i32) -> SendStep {
        self.io.rx_failed(Token(slot), errno)
    }

    #[inline]
    fn gather_send(&mut self, slot: u32, max: usize, f: impl FnMut(&[u8])) -> usize {
        self.io.get(Token(slot)).send_queue().gather(max, f)
    }

    #[inline]
    fn sent(&mut self, slot: u32, bytes: u32) -> SendStep {
        self.io.sent(Token(slot), bytes as u64)
    }

    fn tx_failed(&mut self, slot: u32, errno: i32) -> SendStep {
        self.io.tx_failed(Token(slot), errno)
    }

    #[inline]
    fn send_is_quiet(&self, slot: u32, bytes: u64) -> bool {
        self.io.send_completion_is_quiet(Token(slot), bytes)
    }

    fn shutdown_done(&mut self, slot: u32, errno: i32) -> SendStep {
        self.io.shutdown_done(Token(slot), errno)
    }

    fn connected(&mut self, slot: u32, errno: i32) -> SendStep {
        self.io.connected(Token(slot), errno)
    }

    fn released(&mut self, slot: u32) {
        self.dgram.forget(slot);
        self.io.release(Token(slot));
    }

    fn rx_buffers(&self) -> u32 {
        self.pool.recycle_state().1
    }

    fn rx_exhausted(&mut self) {
        // The ring ran dry: give it more of the pool, up to its size.
        let (target, _) = self.pool.recycle_state();
        let size = self.pool.recycle_capacity();
        if target < size {
            self.pool.set_recycle_target((target * 2).min(size));
        }
    }

    #[inline]
    fn before_enter(&mut self) -> bool {
        // Buffers the application keeps (or holds for long) do not come back to the
        // ring by themselves: refill it from the free list when it is short.
        self.pool.recycle_fill();
        self.io.wakes() != self.wakes_at_start
    }

    fn other(&mut self, engine: &mut SocketEngine, id: u32, gen: u32, kind: OpKind, res: i32, flags: u32) {
        match kind {
            OpKind::RecvFrom => self.on_recvfrom(engine, id, gen, res, flags),
            OpKind::SendTo => self.on_sendto(engine, id, res),
            _ => {}
        }
    }
}
