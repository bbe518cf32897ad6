//! Writing: a record's queue straight to its socket at the tick, one `send` (or
//! `sendmsg` gathering up to `MAX_IOV` buffers) at a time; datagrams one `sendto`
//! each.

use std::os::fd::RawFd;

use paste_rt_core::{IoTable, SendStep, Shutdown, Stats, Token};

use super::{errno, EpollBackend, Role, SockFlags, Tally, MAX_IOV};
use crate::sys;

impl EpollBackend {
    pub(super) fn list_flush(&mut self, t: Token) {
        if let Some(s) = self.sock(t) {
            if !s.flags.contains(SockFlags::FLUSH_LISTED) {
                s.flags.set(SockFlags::FLUSH_LISTED, true);
                self.to_flush.push(t);
            }
        }
    }

    /// Writes the queued data of every socket that has some. The list is walked in
    /// place (a socket listed meanwhile is written too) and emptied; the counters are
    /// added once per walk. The test for none is inlined into the tick; the walk is
    /// not.
    #[inline(always)]
    pub(super) fn flush_writes(&mut self, io: &mut IoTable) {
        if !self.to_flush.is_empty() {
            self.flush_listed(io);
        }
    }

    /// Walks the flush list (see [`flush_writes`](Self::flush_writes)).
    #[inline(never)]
    fn flush_listed(&mut self, io: &mut IoTable) {
        let mut tally = Tally::default();
        let mut i = 0;
        while let Some(&t) = self.to_flush.get(i) {
            i += 1;
            // One lookup: the socket's state and fd are read together.
            let Some(s) = self.socks.get_mut(t.index()) else { continue };
            s.flags.set(SockFlags::FLUSH_LISTED, false);
            match s.role {
                Role::Stream if !s.flags.intersects(SockFlags::WRITE_BLOCKED | SockFlags::CONNECTING) => {
                    let fd = s.fd;
                    self.flush_stream(io, t, fd, &mut tally);
                }
                Role::Dgram => self.flush_datagrams(io, t),
                _ => {}
            }
        }
        self.to_flush.clear();
        self.stats.syscalls(tally.ops);
        Stats::add(&self.stats.submissions, tally.ops);
        Stats::add(&self.stats.completions, tally.done);
        Stats::add(&self.stats.tx_bytes, tally.bytes);
    }

    /// Writes what `t`'s record has queued (`fd`: its writable, connected socket): one
    /// `send` (or `sendmsg` of up to `MAX_IOV` buffers) at a time until the socket is
    /// full or the queue empty; then a queued shutdown.
    fn flush_stream(&mut self, io: &mut IoTable, t: Token, fd: RawFd, tally: &mut Tally) {
        loop {
            let written = write_queued(io, t, fd, tally);
            // The common end first, one compare: everything went and nothing follows.
            if matches!(written, Written::Step(SendStep::Idle)) {
                return;
            }
            match written {
                Written::Step(SendStep::Data) => {}
                Written::Step(SendStep::Idle | SendStep::Wait) => return,
                Written::Step(SendStep::Close) => return self.close_now(io, t),
                Written::Step(SendStep::Shutdown(how)) => {
                    if shut_down(&self.stats, io, t, fd, how) == SendStep::Close {
                        return self.close_now(io, t);
                    }
                }
                Written::Full(step) => {
                    // The socket is full: the rest waits for EPOLLOUT.
                    self.block_writes(t);
                    if step == SendStep::Close {
                        self.close_now(io, t);
                    }
                    return;
                }
                Written::Failed(errno) => {
                    let step = io.tx_failed(t, errno);
                    return self.follow(io, t, step);
                }
            }
        }
    }

    /// `t`'s socket is full: its writes wait for `EPOLLOUT`.
    fn block_writes(&mut self, t: Token) {
        if let Some(s) = self.socks.get_mut(t.index()) {
            s.flags.set(SockFlags::WRITE_BLOCKED, true);
        }
    }

    /// Sends a datagram socket's queued datagrams, one `sendto` each, until the queue
    /// is empty or the socket buffer is full (then waits for `EPOLLOUT`). A datagram
    /// the kernel refuses is reported with its errno; the rest still go.
    // Off the per-request path: out of line, so the hot loops that reach it keep
    // their registers.
    #[inline(never)]
    fn flush_datagrams(&mut self, io: &mut IoTable, t: Token) {
        let stats = &self.stats;
        let Some(s) = self.socks.get_mut(t.index()) else { return };
        if s.flags.contains(SockFlags::WRITE_BLOCKED) {
            return;
        }
        let fd = s.fd;
        while let Some((data, addr)) = io.next_datagram(t) {
            let r = sys::sendto(stats, fd, data.as_slice(), &addr);
            Stats::add(&stats.submissions, 1);
            let err = match r {
                Ok(n) => {
                    Stats::add(&stats.tx_bytes, n as u64);
                    0
                }
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                    io.unpop_datagram(t, data, addr);
                    s.flags.set(SockFlags::WRITE_BLOCKED, true);
                    return;
                }
                Err(e) => errno(&e),
            };
            Stats::add(&stats.completions, 1);
            drop(data);
            if io.datagram_sent(t, err) == SendStep::Close {
                return self.close_now(io, t);
            }
        }
    }
}

/// How a run of writes from a stream's queue ended.
enum Written {
    /// Everything that could go went; the next step (never `Data` after a write:
    /// the loop goes on then).
    Step(SendStep),
    /// The socket took less than offered (full): the next step once it drains.
    Full(SendStep),
    /// The kernel refused with this errno.
    Failed(i32),
}

/// Writes `t`'s queue to `fd`, one `send` (or `sendmsg` of up to `MAX_IOV`
/// buffers) at a time, until the queue is done, the socket is full or a write
/// fails: one record lookup for the whole run.
#[inline(always)]
fn write_queued(io: &mut IoTable, t: Token, fd: RawFd, tally: &mut Tally) -> Written {
    let Some(mut tx) = io.stream_send(t) else { return Written::Step(SendStep::Idle) };
    let mut step = tx.step();
    while step == SendStep::Data {
        tally.ops += 1;
        let queue = tx.queue();
        let (r, want) = match queue.front() {
            // The common case, one item: a plain send, no iovec array.
            Some(front) if queue.len() == 1 => (sys::send(fd, front), front.len()),
            _ => {
                // Left uninitialised (no 1 KiB of zeroes per send): only the
                // entries `gather` fills are read.
                let mut iov = [std::mem::MaybeUninit::<libc::iovec>::uninit(); MAX_IOV];
                let mut n = 0;
                let mut want = 0;
                queue.gather(MAX_IOV, |b| {
                    iov[n].write(libc::iovec { iov_base: b.as_ptr() as *mut libc::c_void, iov_len: b.len() });
                    want += b.len();
                    n += 1;
                });
                // SAFETY: `gather` hands out at most MAX_IOV buffers and the first
                // `n` entries were written just above; MaybeUninit<iovec> has
                // iovec's layout.
                let iov = unsafe { std::slice::from_raw_parts(iov.as_ptr().cast::<libc::iovec>(), n) };
                (sys::sendv(fd, iov), want)
            }
        };
        match r {
            Ok(w) => {
                tally.done += 1;
                tally.bytes += w as u64;
                step = tx.sent(w as u64);
                if w < want {
                    return Written::Full(step);
                }
            }
            Err(sys::Errno::AGAIN) => return Written::Full(step),
            Err(sys::Errno::INTR) => {}
            Err(e) => return Written::Failed(e.raw_os_error()),
        }
    }
    Written::Step(step)
}

/// Shuts down `how` of `t`'s socket `fd` (its queue is empty) and returns the next
/// step. Out of line: once per connection at most, never per request.
#[inline(never)]
fn shut_down(stats: &Stats, io: &mut IoTable, t: Token, fd: RawFd, how: Shutdown) -> SendStep {
    let err = sys::shutdown(stats, fd, how.how()).err().map_or(0, |e| errno(&e));
    io.shutdown_done(t, err)
}
