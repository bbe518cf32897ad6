//! [`IoTable`]: every [`IoRecord`] of one runtime, indexed by [`Token`], and the
//! batch servers' ready lists (docs/architecture.md, why completions land in place).
//!
//! Both sides use it directly. The backend, while reaping, applies each completion
//! in place — [`deliver`](IoTable::deliver) a buffer, report bytes
//! [`sent`](IoTable::sent), an [`eof`](IoTable::eof), a failure, an accepted socket —
//! and the method wakes whoever waits and tells the backend what to do next (pause
//! receiving, send more, shut down, close). The runtime's net types use the other
//! half: take received buffers, queue sends, begin a close. There is no completion
//! list in between and no second lookup.
//!
//! Tokens are reused only after both sides are done with them: the runtime begins a
//! close, the backend finishes it and [`release`](IoTable::release)s the token once
//! no operation of the kernel can still name it.
//!
//! The two halves and the batch groups have a module each: `completions` (the
//! backend's side), `runtime_side` and `groups`; the records, their tokens and their
//! lifetime are here.
//!
//! It never makes a system call and never allocates per request: records, the free
//! list and the ready lists grow to the largest number of live sockets and stay.

use std::io;
use std::os::fd::RawFd;

use crate::buf::RxBuf;
use crate::pool::BufPool;
use crate::queue::RxQueue;
use crate::record::{flag, DgramIo, IoRecord, ListenerIo, RecordExt, RecordKind, Token};
use crate::send::Shutdown;

/// What became of a delivered buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued for the application.
    Queued,
    /// Queued, and the queue is now long: stop receiving on this connection until
    /// the runtime resumes it.
    Pause,
    /// The application is gone (or this is not a receiving record): dropped.
    Dropped,
}

/// What a backend does next on a connection's send path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStep {
    /// Send the queue's front.
    Data,
    /// Shut down this half (everything queued before was taken); call
    /// [`IoTable::shutdown_done`] when it completed.
    Shutdown(Shutdown),
    /// Nothing queued, but bytes the backend took out of the queue are not confirmed
    /// yet ([`IoTable::take_send`], [`IoTable::copy_send`]): wait for
    /// [`IoTable::taken_sent`].
    Wait,
    /// Nothing to send; the backend is no longer engaged.
    Idle,
    /// Nothing to send and the handle is gone: close the socket.
    Close,
}

/// What the runtime does after beginning a close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseStep {
    /// Tell the backend to close now.
    Close,
    /// Sends are still queued: the record lingers until they are taken (the backend
    /// is engaged and will close it). If `resume` is set, receiving was paused and
    /// must resume (the data is discarded), so the peer is not stalled.
    Linger {
        /// Call the backend's `resume_recv`.
        resume: bool,
    },
    /// The token names nothing live (already closing): nothing to do.
    Nothing,
}

/// The result of taking received data.
#[derive(Debug)]
pub enum Received {
    /// A buffer; when `resume` is set receiving was paused and may resume now.
    Buf(RxBuf, bool),
    /// The peer closed its side and everything before it was taken.
    Eof,
}

/// What [`IoTable::poll_take_rx`] took: every buffer received so far.
#[derive(Debug)]
pub struct TakenRx {
    /// The buffers, oldest first.
    pub queue: RxQueue,
    /// Receiving was paused (the queue was long) and may resume now.
    pub resumed: bool,
    /// The caller's waker is registered for what arrives next (no EOF, error or
    /// timeout waits behind these buffers).
    pub armed: bool,
}

/// A batch server's ready list: connections with news since its last batch. The
/// runtime looks at it once a tick (no waker: the server's handler is called from
/// the tick).
#[derive(Debug, Default)]
struct Group {
    ready: Vec<Token>,
    /// Records that belong to the group, closing ones included.
    members: u32,
    live: bool,
}

/// Every record of one runtime; see the module docs.
#[derive(Debug)]
pub struct IoTable {
    records: Vec<IoRecord>,
    free: Vec<u32>,
    groups: Vec<Group>,
    pool: BufPool,
    live: usize,
    /// Records with a receive deadline set.
    deadlines: usize,
    /// The runtime shut down: every lookup fails.
    shut: bool,
    /// Accepted connections closed with their listener (see `take_orphans`).
    orphans: Vec<Token>,
    /// Waiters woken so far (a backend that completes work before its wait checks
    /// it, so it does not block while a task it just woke is ready to run).
    wakes: u64,
}

mod completions;
mod groups;
mod runtime_side;

fn not_connected() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the connection is closed, or its runtime has shut down")
}

impl IoTable {
    /// An empty table whose records hold buffers of `pool`.
    pub fn new(pool: BufPool) -> IoTable {
        IoTable {
            records: Vec::with_capacity(1024),
            free: Vec::with_capacity(1024),
            groups: Vec::new(),
            pool,
            live: 0,
            deadlines: 0,
            shut: false,
            orphans: Vec::new(),
            wakes: 0,
        }
    }

    /// The pool received buffers come from.
    #[inline]
    pub fn pool(&self) -> &BufPool {
        &self.pool
    }

    /// How many waiters the table has woken so far. A backend that applies
    /// completions before its wait compares it before and after, and does not block
    /// when it changed: a task it woke is ready to run.
    #[inline]
    pub fn wakes(&self) -> u64 {
        self.wakes
    }

    /// Records in use (live, lingering or waiting for their release).
    pub fn live(&self) -> usize {
        self.live
    }

    /// One record.
    ///
    /// # Panics
    /// If the token was never handed out (a bug of the caller).
    #[inline]
    pub fn get(&self, token: Token) -> &IoRecord {
        &self.records[token.index()]
    }

    /// One record, mutably (for the backend's own bookkeeping; state changes go
    /// through the table's methods).
    #[inline]
    pub fn get_mut(&mut self, token: Token) -> &mut IoRecord {
        &mut self.records[token.index()]
    }

    /// Every token in use, with its record.
    pub fn iter(&self) -> impl Iterator<Item = (Token, &IoRecord)> {
        self.records.iter().enumerate().filter(|(_, r)| r.kind != RecordKind::Free).map(|(i, r)| (Token(i as u32), r))
    }

    fn insert(&mut self, kind: RecordKind, fd: RawFd, ext: Option<Box<RecordExt>>) -> Token {
        let index = match self.free.pop() {
            Some(i) => i as usize,
            None => {
                self.records.push(IoRecord::free());
                self.records.len() - 1
            }
        };
        let r = &mut self.records[index];
        debug_assert_eq!(r.kind, RecordKind::Free);
        r.kind = kind;
        r.fd = fd;
        r.ext = ext;
        self.live += 1;
        Token(index as u32)
    }

    /// A new stream record for socket `fd` (`connecting`: a connect is in progress).
    pub fn insert_stream(&mut self, fd: RawFd, connecting: bool) -> Token {
        let t = self.insert(RecordKind::Stream, fd, None);
        if connecting {
            self.records[t.index()].flags |= flag::CONNECTING;
        }
        t
    }

    /// A new listener record for listening socket `fd`.
    pub fn insert_listener(&mut self, fd: RawFd) -> Token {
        self.insert(RecordKind::Listener, fd, Some(Box::new(RecordExt::Listener(ListenerIo::default()))))
    }

    /// A new datagram record for bound socket `fd`.
    pub fn insert_dgram(&mut self, fd: RawFd) -> Token {
        self.insert(RecordKind::Dgram, fd, Some(Box::new(RecordExt::Dgram(DgramIo::default()))))
    }

    /// The backend is done with `token`: no operation of the kernel can name it any
    /// more. The record is cleared and the token may be handed out again.
    pub fn release(&mut self, token: Token) {
        let Some(r) = self.records.get_mut(token.index()) else { return };
        if r.kind == RecordKind::Free {
            return;
        }
        let group = r.group;
        r.rx.clear(&self.pool);
        if r.deadline.is_some() {
            self.deadlines -= 1;
        }
        *r = IoRecord::free();
        self.free.push(token.0);
        self.live -= 1;
        // A shutting-down batch server waits for its closing connections to go.
        if let Some(g) = self.groups.get_mut(group as usize) {
            g.members -= 1;
        }
    }
}

/// What [`IoTable::copy_send`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopiedSend {
    /// Bytes copied from the front of the queue (0: the backend took none of it).
    pub bytes: usize,
    /// Whether anything is still queued: the rest of the front item, or items
    /// behind it.
    pub more: bool,
}

/// One step of a batch member (see [`IoTable::next_member_event`]).
#[derive(Debug)]
pub enum MemberEvent {
    /// A received buffer; more follows.
    Data(RxBuf),
    /// A received buffer, the member's last news: it has left the ready state
    /// already (no `Done` follows).
    Last(RxBuf),
    /// The receive deadline passed.
    TimedOut,
    /// The connection ended: `None` for EOF, else the errno.
    End(Option<i32>),
    /// Nothing more; `resume` says whether receiving may resume.
    Done {
        /// Call the backend's `resume_recv`.
        resume: bool,
    },
}

impl IoRecord {
    /// Marks the backend engaged on the send path; returns whether it was not (it
    /// must be told).
    #[inline]
    fn engage(&mut self) -> bool {
        let was = self.flags & flag::SEND_ENGAGED != 0;
        self.flags |= flag::SEND_ENGAGED;
        !was && self.flags & flag::CONNECTING == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::PoolConfig;
    use crate::record::TX_HIGH_WATER;
    use crate::send::SendData;
    use proptest::prelude::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Context;
    use std::task::Wake;

    fn table() -> IoTable {
        let cfg = PoolConfig { buf_size: 2048, count: 8, ..PoolConfig::default() };
        IoTable::new(BufPool::new(&cfg, 0).expect("a small heap pool"))
    }

    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_group_counts_its_members_until_released_and_a_removed_group_lets_them_go() {
        let mut io = table();
        let g = io.add_group();
        assert!(!io.group_has_members(g));
        let (a, b) = (io.insert_stream(3, false), io.insert_stream(4, false));
        assert!(!io.join_group(a, g), "nothing received yet: not listed");
        io.join_group(b, g);
        io.join_group(b, g); // joining twice counts once
        assert!(io.group_has_members(g));
        assert!(!io.group_has_news(g));
        io.release(a);
        assert!(io.group_has_members(g), "b is still in");
        // The group goes while b still closes: a group made later in its place
        // starts empty, and b's release does not count against it.
        io.remove_group(g);
        let again = io.add_group();
        assert_eq!(again, g, "the place is reused");
        assert!(!io.group_has_members(again));
        io.release(b);
        assert!(!io.group_has_members(again));
        let c = io.insert_stream(5, false);
        io.join_group(c, again);
        assert!(io.group_has_members(again));
    }

    #[test]
    fn copied_bytes_stay_pending_until_the_kernel_takes_them_and_then_wake_the_sender() {
        static CHUNK: [u8; 64 * 1024] = [7; 64 * 1024];
        let mut io = table();
        let t = io.insert_stream(3, false);
        for _ in 0..5 {
            io.queue_send(t, SendData::Static(&CHUNK)).unwrap();
        }
        let queued = 5 * CHUNK.len() as u64; // above TX_HIGH_WATER
        let counter = Arc::new(CountingWaker::default());
        let waker = std::task::Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(io.poll_queued_at_most(t, TX_HIGH_WATER, &mut cx).is_pending());
        // Everything copied (a slot's worth at a time): still pending, nobody woken.
        let mut copied = 0;
        while let Some(c) = io.copy_send(t, |_, b| b.len().min(1448)) {
            copied += c.bytes as u64;
            assert_eq!(c.more, copied < queued, "more is queued until the last copy");
        }
        assert_eq!(copied, queued);
        assert!(io.get(t).send_queue().is_empty());
        assert_eq!(io.queued(t), queued, "copied bytes are pending until the kernel took them");
        assert_eq!(io.send_step(t), SendStep::Wait);
        assert_eq!(counter.0.load(Ordering::Relaxed), 0);
        // The kernel takes some: still above the high-water mark, no wake.
        assert_eq!(io.taken_sent(t, queued - TX_HIGH_WATER - 1), SendStep::Wait);
        assert_eq!(counter.0.load(Ordering::Relaxed), 0);
        // One more byte: at the mark, the sender is woken once.
        assert_eq!(io.taken_sent(t, 1), SendStep::Wait);
        assert_eq!(counter.0.load(Ordering::Relaxed), 1);
        assert_eq!(io.taken_sent(t, TX_HIGH_WATER), SendStep::Idle);
        assert_eq!(io.queued(t), 0);
    }

    #[test]
    fn a_write_loop_through_stream_send_steps_reports_and_wakes_on_the_record_in_hand() {
        static ANSWER: [u8; 100] = [7; 100];
        let counter = Arc::new(CountingWaker::default());
        let waker = std::task::Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut io = table();
        assert!(io.stream_send(Token(99)).is_none(), "no record there");
        let t = io.insert_stream(3, false);
        io.queue_send(t, SendData::Static(&ANSWER)).unwrap();
        io.queue_send(t, SendData::Static(&ANSWER)).unwrap();
        // A task waits until everything is sent.
        assert!(io.poll_queued_at_most(t, 0, &mut cx).is_pending());
        let mut tx = io.stream_send(t).unwrap();
        assert_eq!(tx.step(), SendStep::Data);
        assert_eq!(tx.queue().front().map(<[u8]>::len), Some(100));
        // The first item and half the second went: the rest is next, and the waiter
        // (under the high-water mark now) is woken to look again.
        assert_eq!(tx.sent(150), SendStep::Data);
        assert_eq!(tx.queue().front().map(<[u8]>::len), Some(50));
        assert_eq!(counter.0.load(Ordering::Relaxed), 1);
        // All of it: the path goes idle; nobody waits any more, nobody is woken.
        assert_eq!(tx.sent(50), SendStep::Idle);
        assert_eq!(counter.0.load(Ordering::Relaxed), 1);
        assert_eq!(io.queued(t), 0);
        // The handle is gone with data queued: its last send ends in a close.
        io.queue_send(t, SendData::Static(&ANSWER)).unwrap();
        assert!(matches!(io.begin_close(t), CloseStep::Linger { .. }));
        let mut tx = io.stream_send(t).unwrap();
        assert_eq!(tx.step(), SendStep::Data);
        assert_eq!(tx.sent(100), SendStep::Close);
    }

    #[test]
    fn a_send_completion_is_quiet_only_when_nothing_waits_on_it() {
        static ANSWER: [u8; 100] = [1; 100];
        let counter = Arc::new(CountingWaker::default());
        let waker = std::task::Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut io = table();
        let t = io.insert_stream(3, false);
        io.queue_send(t, SendData::Static(&ANSWER)).unwrap();
        // All that is queued is in flight, nobody waits: quiet.
        assert!(io.send_completion_is_quiet(t, 100));
        // Part of it in flight: the rest goes out when it completes.
        assert!(!io.send_completion_is_quiet(t, 60));
        // More queued behind it.
        io.queue_send(t, SendData::Static(&ANSWER)).unwrap();
        assert!(!io.send_completion_is_quiet(t, 100));
        assert!(io.send_completion_is_quiet(t, 200));
        // A task waits for everything to be sent (a flush).
        assert!(io.poll_queued_at_most(t, 0, &mut cx).is_pending());
        assert!(!io.send_completion_is_quiet(t, 200));
        // A shutdown follows the data.
        let t2 = io.insert_stream(4, false);
        io.queue_send(t2, SendData::Static(&ANSWER)).unwrap();
        io.queue_shutdown(t2, Shutdown::Write).unwrap();
        assert!(!io.send_completion_is_quiet(t2, 100));
        // The handle is gone: a close follows the data.
        let t3 = io.insert_stream(5, false);
        io.queue_send(t3, SendData::Static(&ANSWER)).unwrap();
        assert!(io.send_completion_is_quiet(t3, 100));
        assert!(matches!(io.begin_close(t3), CloseStep::Linger { .. }));
        assert!(!io.send_completion_is_quiet(t3, 100));
        // Not a stream, or no record at all.
        let l = io.insert_listener(6);
        assert!(!io.send_completion_is_quiet(l, 0));
        assert!(!io.send_completion_is_quiet(Token(999), 0));
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// The application queues this many bytes.
        Queue(usize),
        /// The backend copies up to this many bytes of the front (it may claim more
        /// than there are; the count is held to the front's unsent bytes).
        Copy(usize),
        /// The backend reports up to this many copied bytes taken by the kernel.
        Taken(u64),
        /// Sending fails.
        Fail,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (1usize..40).prop_map(Op::Queue),
            4 => (0usize..50).prop_map(Op::Copy),
            2 => (0u64..60).prop_map(Op::Taken),
            1 => Just(Op::Fail),
        ]
    }

    proptest! {
        /// Copying from the queue in place, in pieces of any size: the bytes come out
        /// in order and once, copied bytes stay pending until reported taken, the send
        /// step says `Wait` while only copied bytes are unconfirmed, and after a failure
        /// nothing more is copied.
        #[test]
        fn copy_send_keeps_order_accounting_and_stops_at_a_failure(ops in proptest::collection::vec(op(), 1..60)) {
            let mut io = table();
            let t = io.insert_stream(3, false);
            let (mut queued, mut out, mut confirmed, mut failed) = (Vec::<u8>::new(), Vec::<u8>::new(), 0u64, false);
            let mut next = 0u8;
            for op in ops {
                match op {
                    Op::Queue(n) => {
                        let bytes: Vec<u8> = (0..n).map(|_| { next = next.wrapping_add(1); next }).collect();
                        let r = io.queue_send(t, SendData::Owned(bytes.clone()));
                        prop_assert_eq!(r.is_err(), failed, "a failed connection refuses sends");
                        if !failed {
                            queued.extend_from_slice(&bytes);
                        }
                    }
                    Op::Copy(k) => {
                        let waiting = queued.len() - out.len();
                        let mut called = false;
                        let got = io.copy_send(t, |data, unsent| {
                            called = true;
                            assert!(data.as_slice().ends_with(unsent));
                            out.extend_from_slice(&unsent[..k.min(unsent.len())]);
                            k
                        });
                        if failed || waiting == 0 {
                            prop_assert!(got.is_none() && !called);
                        } else {
                            prop_assert!(called);
                            prop_assert!(got.is_some_and(|c| c.bytes <= k));
                            let left = waiting - got.map_or(0, |c| c.bytes.min(waiting));
                            prop_assert_eq!(got.is_some_and(|c| c.more), left > 0);
                        }
                    }
                    Op::Taken(m) => {
                        let m = m.min(out.len() as u64 - confirmed);
                        if !failed {
                            let step = io.taken_sent(t, m);
                            confirmed += m;
                            let expect = if queued.len() > out.len() {
                                SendStep::Data
                            } else if (out.len() as u64) > confirmed {
                                SendStep::Wait
                            } else {
                                SendStep::Idle
                            };
                            prop_assert_eq!(step, expect);
                        }
                    }
                    Op::Fail => {
                        io.tx_failed(t, libc::EPIPE);
                        failed = true;
                    }
                }
                prop_assert_eq!(&out[..], &queued[..out.len()], "copied in order, once");
                let pending = if failed { 0 } else { queued.len() as u64 - confirmed };
                prop_assert_eq!(io.queued(t), pending);
                prop_assert_eq!(io.get(t).send_queue().bytes(), if failed { 0 } else { (queued.len() - out.len()) as u64 });
            }
        }
    }
}
