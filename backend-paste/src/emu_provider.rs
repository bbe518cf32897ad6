//! The emulated provider (`paste-emu`): io_uring does the socket work of the emulated
//! PASTE kernel.
//!
//! Owns the io_uring ring, the [`EmuKernel`] (and through it the port memory), a
//! provided buffer ring over the kernel's spare buffers (`addr_offset` = G + 66, so
//! received payload lands exactly where a kernel RX slot puts it), and one [`Sock`]
//! per fd: multishot accept on listeners, multishot recv on registered sockets into
//! port buffers, `SENDMSG` straight from the buffers txsync took out of TX slots (one
//! in flight per socket, so bytes stay in order), shutdowns, connects, closes.
//!
//! One sync ([`EmuProvider::sync`]) is: txsync (TX slots become send jobs), the
//! socket work turned into SQEs, **exactly one `io_uring_enter`** (submit + wait, the
//! timeout in `EXT_ARG`), the completions (received buffers go to a per-socket
//! backlog, sent buffers back to the spares), the backlogs handed to the emulated
//! kernel (at most [`RX_HANDOVER_BUDGET`] buffers per socket and sync, none while
//! paused: the emulation's stand-in for data waiting in a socket), then rxsync.
//!
//! It must never make another system call during a sync (fds are closed with
//! `IORING_OP_CLOSE`; only registering an fd the backend did not accept itself probes
//! the socket, as `PST_FD_REG` would), never let the kernel write a buffer it does not
//! hold as [`KernelHold::Receiving`](crate::KernelHold), and never close an fd while a
//! ring slot or a send of it may still be in flight (a later connection could reuse
//! the number).

use std::collections::{HashSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::types::{CancelBuilder, Fd};
use io_uring::{cqueue, opcode, squeue, IoUring};
use paste_rt_core::{BackendKind, RemoteWake, Shutdown, StartError, Stats};
use paste_rt_uring_engine::buf_ring::BufRing;
use paste_rt_uring_engine::probe::{self, RingConfig, UringProbe};
use paste_rt_uring_engine::submit::{self, SubmitQueue, Wait};
use paste_rt_uring_engine::user_data::{OpKind, GEN_MASK};
use paste_rt_uring_engine::waker::RingWaker;

use crate::backend::{EmuBufferCount, EmuSettings, Event};
use crate::emu_kernel::{probe_socket, EmuKernel, KernelHold, SendJob, SocketState};
use crate::port_mem::EmuPortConfig;
use crate::ring::{DriverConfig, RingDriver};
use crate::sys::abi::pst;

/// Buffer group id of the receive buffer ring.
const BGID: u16 = 0;
/// Most received buffers handed from one socket to the emulated kernel per sync.
pub const RX_HANDOVER_BUDGET: u32 = 32;
/// A socket's receive stops when this many received buffers wait in its backlog
/// (resumes at half): the emulation's socket receive buffer.
pub const SOCKET_BACKLOG_CAP: usize = 64;
/// A socket refuses TX slots (txsync stalls at its slot, as the kernel's `sendpage`
/// does with a full send buffer) while this many bytes wait to be sent on it.
pub const SOCKET_SEND_CAP: u64 = 256 * 1024;
/// Most send jobs gathered into one `SENDMSG`.
const SEND_BATCH: usize = 16;
/// How long a listener waits after `EMFILE` and the like, unless an fd is freed first.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// `user_data` of an SQE for socket `fd` (see `paste_rt_uring_engine::user_data`).
fn user_data(fd: RawFd, kind: OpKind, gen: u32) -> u64 {
    paste_rt_uring_engine::user_data::encode(fd as u32, kind, gen)
}

/// The socket, op and generation of a completion's `user_data`.
fn decode(ud: u64) -> (RawFd, Option<OpKind>, u32) {
    let (fd, kind, gen) = paste_rt_uring_engine::user_data::decode(ud);
    (fd as RawFd, kind, gen)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Listener,
    Stream,
}

/// One fd's socket work. Boxed: in-flight SQEs point at `iov`, `msg` and `addr`.
struct Sock {
    gen: u32,
    role: Role,
    fd: RawFd,

    accept_armed: bool,
    accept_retry_at: Option<Instant>,
    accept_error_reported: bool,

    connecting: bool,
    registered: bool,
    rx_armed: bool,
    rx_cancelling: bool,
    paused: bool,
    /// The receive stopped with `ENOBUFS`; listed in `starved`.
    starved: bool,
    /// EOF or an error came from the socket: no more receives.
    rx_done: bool,
    /// Received buffers (index, bytes) not yet handed to the emulated kernel.
    backlog: VecDeque<(u32, u32)>,
    eof_pending: bool,
    error_pending: Option<i32>,
    /// Listed in `handover`.
    handover_listed: bool,

    jobs: VecDeque<SendJob>,
    job_bytes: u64,
    /// Jobs at the front of `jobs` that the in-flight `SENDMSG` carries.
    send_n: usize,
    /// Listed in `tx_ready`.
    tx_listed: bool,
    shutdown_q: Option<Shutdown>,
    shutdown_inflight: bool,
    tx_failed: bool,
    congested: bool,

    closing: bool,
    iov: [libc::iovec; SEND_BATCH],
    msg: libc::msghdr,
    addr: libc::sockaddr_storage,
}

impl Sock {
    fn new(gen: u32, role: Role, fd: RawFd) -> Box<Sock> {
        Box::new(Sock {
            gen,
            role,
            fd,
            accept_armed: false,
            accept_retry_at: None,
            accept_error_reported: false,
            connecting: false,
            registered: false,
            rx_armed: false,
            rx_cancelling: false,
            paused: false,
            starved: false,
            rx_done: false,
            backlog: VecDeque::new(),
            eof_pending: false,
            error_pending: None,
            handover_listed: false,
            jobs: VecDeque::new(),
            job_bytes: 0,
            send_n: 0,
            tx_listed: false,
            shutdown_q: None,
            shutdown_inflight: false,
            tx_failed: false,
            congested: false,
            closing: false,
            iov: [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; SEND_BATCH],
            // SAFETY: msghdr and sockaddr_storage are plain C structs; all-zero is a
            // valid (empty) value for both.
            msg: unsafe { std::mem::zeroed() },
            // SAFETY: as above.
            addr: unsafe { std::mem::zeroed() },
        })
    }

    fn ud(&self, kind: OpKind) -> u64 {
        user_data(self.fd, kind, self.gen)
    }
}

/// The emulated provider (see the module docs).
pub(crate) struct EmuProvider {
    // Dropped first: the ring may point into the port memory the kernel holds.
    ring: IoUring,
    probe: UringProbe,
    bufs: BufRing,
    buf_target: u32,
    kernel: EmuKernel,
    sq: SubmitQueue,
    waker: RingWaker,
    waker_armed: bool,
    /// By fd.
    #[allow(clippy::vec_box)]
    socks: Vec<Option<Box<Sock>>>,
    /// By fd: the generation of its latest entry (kept when the entry goes).
    gens: Vec<u32>,
    /// Fds accepted here and not yet registered (known to be connected sockets).
    accepted: HashSet<RawFd>,
    starved: VecDeque<(RawFd, u32)>,
    accept_waiting: Vec<(RawFd, u32)>,
    handover: Vec<RawFd>,
    tx_ready: Vec<RawFd>,
    closing: Vec<RawFd>,
    fd_freed: bool,
    /// The last txsync stopped before `head` (some TX slot is still in a ring).
    tx_stalled: bool,
    use_bundle: bool,
    cqes: Vec<(u64, i32, u32)>,
    ignore_inflight: u64,
    dropping: bool,
    /// Scratch list of the buffers one receive completion filled (reused).
    recv_scratch: Vec<(u32, u32)>,
}

fn start_error(reason: String, errno: Option<i32>) -> StartError {
    StartError { backend: BackendKind::PasteEmu, reason, errno }
}

impl EmuProvider {
    /// Lays the port out (file-backed when `file` is set), builds the emulated kernel
    /// and the ring driver over it, opens and probes the io_uring ring and registers
    /// the receive buffer ring over the kernel's spare buffers.
    pub(crate) fn open(
        settings: &EmuSettings,
        file: Option<std::path::PathBuf>,
    ) -> Result<(EmuProvider, RingDriver), StartError> {
        let pool = &settings.pool;
        let port = EmuPortConfig {
            tx_rings: 1,
            rx_rings: 1,
            slots: settings.slots,
            extra_bufs: pool.count,
            kernel_bufs: settings.kernel_bufs.max(8),
            buf_size: pool.buf_size,
            generic_offset: 64,
            file,
            kept: pool.kept.clone(),
        };
        let layout = port.layout().map_err(|e| start_error(e.to_string(), None))?;
        if layout.buf_count > 1 << 16 {
            return Err(start_error(
                format!(
                    "the emulated port would hold {} buffers; io_uring buffer ids are 16-bit, so at most 65536 \
                     (ring slots + pool + kernel spares): use a smaller pool",
                    layout.buf_count
                ),
                None,
            ));
        }
        let kernel =
            EmuKernel::new(&port).map_err(|e| start_error(format!("emulated port memory: {e}"), e.raw_os_error()))?;
        // Payload may fill a whole buffer after the headers: one slot per TxBuf.
        let mss = pool.buf_size - port.generic_offset as u32 - pst::TX_DOFF as u32;
        let dcfg = DriverConfig { mss, ..DriverConfig::default() };
        // SAFETY: the region is the emulated kernel's port memory, kept alive by the Arc
        // clone handed over as the pool's guard; only the emulated kernel (this
        // provider) touches the rings besides the driver.
        let driver = unsafe { RingDriver::new(kernel.region(), dcfg, Box::new(kernel.memory().clone())) }
            .map_err(|e| start_error(format!("attaching the ring driver: {e}"), None))?;
        // Buffers a previous run kept were laid out nowhere; the pool holds them as
        // kept, so the application finds them and nothing receives into them.
        for &index in &pool.kept {
            driver.pool().adopt_kept(index);
        }

        let kind = BackendKind::PasteEmu;
        let (ring, probe) = probe::open_ring(&RingConfig { sq_entries: 2048, cq_entries: 8192 })
            .map_err(|e| e.into_start_error(kind))?;
        let buf_target = (port.kernel_bufs / 4).clamp(1, 4096);
        let entries = buf_target.next_power_of_two();
        let bufs = BufRing::new(
            &ring.submitter(),
            BGID,
            entries,
            kernel.rx_capacity() as u32,
            port.generic_offset as u32 + pst::TX_DOFF as u32,
            layout.buf_count,
        )
        .map_err(|e| StartError::os(kind, "register the receive buffer ring (IORING_REGISTER_PBUF_RING)", &e))?;
        let waker = RingWaker::new().map_err(|e| StartError::os(kind, "eventfd for remote wake-ups", &e))?;
        let use_bundle = probe.recv_bundle;
        let mut p = EmuProvider {
            ring,
            probe,
            bufs,
            buf_target,
            kernel,
            sq: SubmitQueue::with_capacity(256),
            waker,
            waker_armed: false,
            socks: Vec::new(),
            gens: Vec::new(),
            accepted: HashSet::new(),
            starved: VecDeque::new(),
            accept_waiting: Vec::new(),
            handover: Vec::new(),
            tx_ready: Vec::new(),
            closing: Vec::new(),
            fd_freed: false,
            tx_stalled: false,
            use_bundle,
            recv_scratch: Vec::with_capacity(64),
            cqes: Vec::new(),
            ignore_inflight: 0,
            dropping: false,
        };
        p.arm_waker();
        p.refill();
        Ok((p, driver))
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "paste-emu (PASTE port emulated in user space; figures are emulated): 1+1 rings of {} slots, \
             {} kernel spares, recv buffer ring {}{}; io_uring {}",
            self.kernel.memory().config().slots,
            self.kernel.memory().config().kernel_bufs,
            self.buf_target,
            if self.use_bundle { " with bundles" } else { "" },
            self.probe.describe()
        )
    }

    pub(crate) fn remote_waker(&self) -> Arc<dyn RemoteWake> {
        self.waker.handle()
    }

    pub(crate) fn buffer_count(&self) -> EmuBufferCount {
        let mut c = EmuBufferCount::default();
        self.kernel.for_each_held(|_, why| match why {
            KernelHold::Free => c.free += 1,
            KernelHold::Receiving => c.receiving += 1,
            KernelHold::Pending => c.pending += 1,
            KernelHold::SendQueued | KernelHold::Sending => c.sending += 1,
        });
        c
    }

    // ---- socks ----

    fn sock(&mut self, fd: RawFd) -> Option<&mut Sock> {
        sock_of(&mut self.socks, fd)
    }

    fn new_sock(&mut self, fd: RawFd, role: Role) -> Option<&mut Sock> {
        let i = usize::try_from(fd).ok()?;
        if self.socks.len() <= i {
            self.socks.resize_with(i + 1, || None);
            self.gens.resize(i + 1, 0);
        }
        self.gens[i] = self.gens[i].wrapping_add(1) & GEN_MASK;
        self.socks[i] = Some(Sock::new(self.gens[i], role, fd));
        self.socks[i].as_deref_mut()
    }

    fn push(&mut self, entry: squeue::Entry) {
        // SAFETY: every SQE built here points only at memory that outlives its op:
        // port buffers held by the emulated kernel in Sending state until the CQE, the
        // iovecs/msghdr/sockaddr of a boxed Sock that is not dropped while its send or
        // connect is in flight (closes wait for sends; connects are cancelled and the
        // kernel copies the address at submission), and the waker's boxed buffer.
        unsafe { self.sq.push(&mut self.ring, entry) }
    }

    fn push_ignored(&mut self, entry: squeue::Entry) {
        self.ignore_inflight += 1;
        self.push(entry.user_data(user_data(0, OpKind::Ignore, 0)));
    }

    fn arm_waker(&mut self) {
        let entry = self.waker.read_sqe(user_data(0, OpKind::Wake, 0));
        self.waker_armed = true;
        self.push(entry);
    }

    fn arm_accept(&mut self, fd: RawFd) {
        let Some(s) = self.sock(fd) else { return };
        if s.closing || s.accept_armed || s.accept_retry_at.is_some() {
            return;
        }
        s.accept_armed = true;
        let entry = opcode::AcceptMulti::new(Fd(fd))
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build()
            .user_data(s.ud(OpKind::Accept));
        self.push(entry);
    }

    fn arm_recv(&mut self, fd: RawFd) {
        let bundle = self.use_bundle;
        let Some(s) = self.sock(fd) else { return };
        if !s.registered
            || s.closing
            || s.rx_armed
            || s.paused
            || s.starved
            || s.rx_done
            || s.backlog.len() > SOCKET_BACKLOG_CAP / 2
        {
            return;
        }
        s.rx_armed = true;
        let entry = if bundle {
            opcode::RecvMultiBundle::new(Fd(fd), BGID).build()
        } else {
            opcode::RecvMulti::new(Fd(fd), BGID).build()
        };
        let entry = entry.user_data(s.ud(OpKind::Recv));
        self.push(entry);
    }

    fn cancel_recv(&mut self, fd: RawFd) {
        let Some(s) = self.sock(fd) else { return };
        if s.rx_armed && !s.rx_cancelling {
            s.rx_cancelling = true;
            let target = s.ud(OpKind::Recv);
            self.push_ignored(opcode::AsyncCancel::new(target).build());
        }
    }

    // ---- what the backend asks ----

    pub(crate) fn listen(&mut self, fd: RawFd, _stats: &Stats) {
        if self.new_sock(fd, Role::Listener).is_some() {
            self.arm_accept(fd);
        }
    }

    /// PST_FD_REG, emulated: the socket's state is known for fds accepted here,
    /// probed otherwise (counted as system calls).
    pub(crate) fn register(&mut self, fd: RawFd, stats: &Stats) -> Result<(), i32> {
        let state = if self.accepted.remove(&fd) {
            SocketState::Connected
        } else {
            for _ in 0..3 {
                stats.syscall();
            }
            probe_socket(fd)
        };
        self.kernel.register_fd(fd, state).map_err(|e| e.errno)?;
        let Some(s) = self.new_sock(fd, Role::Stream) else { return Err(libc::EBADF) };
        s.registered = true;
        self.arm_recv(fd);
        Ok(())
    }

    /// The emulated socket's send buffer: the ring driver's send budget for `fd`.
    pub(crate) fn send_budget(&self, fd: RawFd) -> Option<u32> {
        self.kernel.sndbuf(fd)
    }

    pub(crate) fn connect(&mut self, fd: RawFd, addr: SocketAddr, _stats: &Stats, events: &mut Vec<Event>) {
        let Some(s) = self.new_sock(fd, Role::Stream) else {
            events.push(Event::Connected { fd, errno: libc::EBADF });
            return;
        };
        s.connecting = true;
        let len = paste_rt_core::sockaddr::write(&addr, &mut s.addr);
        let entry = opcode::Connect::new(Fd(fd), (&s.addr as *const libc::sockaddr_storage).cast(), len)
            .build()
            .user_data(s.ud(OpKind::Connect));
        self.push(entry);
    }

    pub(crate) fn pause(&mut self, fd: RawFd) {
        if let Some(s) = self.sock(fd) {
            s.paused = true;
        }
        self.cancel_recv(fd);
    }

    pub(crate) fn resume(&mut self, fd: RawFd) {
        let Some(s) = self.sock(fd) else { return };
        s.paused = false;
        if !s.handover_listed && (!s.backlog.is_empty() || s.eof_pending || s.error_pending.is_some()) {
            s.handover_listed = true;
            self.handover.push(fd);
        }
        self.arm_recv(fd);
    }

    /// Queued behind the socket's send jobs.
    pub(crate) fn shutdown(&mut self, fd: RawFd, how: Shutdown, _stats: &Stats) {
        let Some(s) = self.sock(fd) else { return };
        s.shutdown_q = Some(match (s.shutdown_q, how) {
            (None, h) => h,
            (Some(a), b) if a == b => a,
            _ => Shutdown::Both,
        });
        if !s.tx_listed {
            s.tx_listed = true;
            self.tx_ready.push(fd);
        }
    }

    pub(crate) fn close_listener(&mut self, fd: RawFd, _stats: &Stats, events: &mut Vec<Event>) {
        let armed = self.sock(fd).is_some_and(|s| s.accept_armed);
        if armed {
            self.push_ignored(opcode::AsyncCancel2::new(CancelBuilder::fd(Fd(fd)).all()).build());
        }
        self.push_ignored(opcode::Close::new(Fd(fd)).build());
        if let Some(slot) = self.socks.get_mut(fd as usize) {
            *slot = None;
        }
        self.fd_freed = true;
        events.push(Event::Closed { fd });
    }

    /// Graceful: the fd is closed once its send jobs are done and no slot of it can be
    /// in a ring ([`finish_closes`](Self::finish_closes)).
    pub(crate) fn close_stream(&mut self, fd: RawFd, _stats: &Stats, events: &mut Vec<Event>) {
        let Some(s) = self.sock(fd) else {
            // Never registered (registration refused): nothing of it is in flight.
            self.accepted.remove(&fd);
            self.push_ignored(opcode::Close::new(Fd(fd)).build());
            self.fd_freed = true;
            events.push(Event::Closed { fd });
            return;
        };
        s.closing = true;
        s.shutdown_q = None;
        let backlog: Vec<(u32, u32)> = s.backlog.drain(..).collect();
        for (buf, _) in backlog {
            let _ = self.kernel.rx_abandon(buf);
        }
        self.cancel_recv(fd);
        self.closing.push(fd);
    }

    pub(crate) fn close_stray(&mut self, fd: RawFd, _stats: &Stats) {
        self.accepted.remove(&fd);
        self.push_ignored(opcode::Close::new(Fd(fd)).build());
        self.fd_freed = true;
    }

    /// An EOF slot of a closing fd: nothing to do (the close waits for sends only).
    pub(crate) fn peer_closed(&mut self, _fd: RawFd) {}

    /// End of stream seen outside the ring: never here (the emulated kernel always
    /// puts an EOF slot in the ring).
    pub(crate) fn peer_fins(&mut self, _driver: &RingDriver, _out: &mut Vec<RawFd>) {}

    // ---- the sync ----

    /// One sync (see the module docs): txsync, socket work, one enter, completions,
    /// handover, rxsync.
    pub(crate) fn sync(
        &mut self,
        driver: &RingDriver,
        timeout: Option<Duration>,
        stats: &Stats,
        events: &mut Vec<Event>,
    ) -> io::Result<()> {
        // 1. txsync: TX slots become send jobs on their sockets.
        let rep = self.kernel.txsync();
        self.tx_stalled = rep.tx_stall.is_some();
        while let Some(job) = self.kernel.next_send() {
            self.route_job(job);
        }

        // 2. Closes that nothing holds back any more, sends and shutdowns to SQEs,
        //    receive buffers back into the buffer ring, starved receives and backed-off
        //    listeners re-armed.
        self.finish_closes(driver.rx_ready(), events);
        self.start_sends();
        self.refill();
        self.rearm_starved();
        let retry_in = self.rearm_listeners();

        // 3. The one io_uring_enter.
        let timeout = match (timeout, retry_in) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut wait = Wait::from_timeout(timeout);
        let writable_now = self.report_writable(driver, events);
        if self.sq.pending() > 0 || self.kernel.rx_waiting() || self.handover_ready() || writable_now {
            wait = Wait::No;
        }
        stats.syscall();
        if wait.may_block() {
            Stats::add(&stats.waits, 1);
        }
        let entered = submit::enter(&mut self.ring, wait);
        self.sq.refill_ring(&mut self.ring);
        entered?;

        // 4. Completions, then received data handed to the emulated kernel, rxsync;
        //    sockets that got send space back and that the driver waits for.
        self.reap(stats, events);
        self.run_handover(events);
        self.kernel.rxsync();
        self.report_writable(driver, events);
        Ok(())
    }

    /// `POLLOUT` of the emulation, exact: the sockets the ring driver waits for send
    /// space on, and those running low on credit, get their free space reported.
    /// Returns whether a waiting one has space (it can send: do not wait).
    fn report_writable(&self, driver: &RingDriver, events: &mut Vec<Event>) -> bool {
        let mut any = false;
        for fd in driver.tx_space_waiters() {
            if let Some(free) = self.kernel.send_space(fd).filter(|&f| f > 0) {
                events.push(Event::Writable { fd, free: Some(free) });
                any = true;
            }
        }
        for fd in driver.tx_low_credit() {
            if let Some(free) = self.kernel.send_space(fd).filter(|&f| f > 0) {
                events.push(Event::Writable { fd, free: Some(free) });
            }
        }
        any
    }

    fn handover_ready(&self) -> bool {
        self.handover.iter().any(|&fd| {
            self.socks
                .get(fd as usize)
                .and_then(|s| s.as_deref())
                .is_some_and(|s| !s.paused && (!s.backlog.is_empty() || s.eof_pending || s.error_pending.is_some()))
        })
    }

    fn route_job(&mut self, job: SendJob) {
        let fd = job.fd;
        let Some(s) = self.sock(fd) else {
            let _ = self.kernel.send_done(job.buf);
            return;
        };
        if s.tx_failed {
            let _ = self.kernel.send_done(job.buf);
            return;
        }
        s.job_bytes += job.len as u64;
        s.jobs.push_back(job);
        let congest = s.job_bytes > SOCKET_SEND_CAP && !s.congested;
        if congest {
            s.congested = true;
        }
        if !s.tx_listed {
            s.tx_listed = true;
            self.tx_ready.push(fd);
        }
        if congest {
            self.kernel.set_send_error(fd, Some(libc::EAGAIN));
        }
    }

    fn start_sends(&mut self) {
        let list = std::mem::take(&mut self.tx_ready);
        for &fd in &list {
            let Some(s) = self.sock(fd) else { continue };
            s.tx_listed = false;
            self.start_send(fd);
        }
        let mut list = list;
        list.clear();
        if self.tx_ready.is_empty() {
            self.tx_ready = list;
        }
    }

    /// The front of a socket's jobs as one SEND/SENDMSG, or its queued shutdown once
    /// the jobs are done. One in flight per socket keeps the byte order.
    fn start_send(&mut self, fd: RawFd) {
        let Some(s) = usize::try_from(fd).ok().and_then(|i| self.socks.get_mut(i)).and_then(|s| s.as_deref_mut())
        else {
            return;
        };
        if s.send_n > 0 || s.shutdown_inflight || s.connecting {
            return;
        }
        let entry = if s.jobs.is_empty() {
            let Some(how) = s.shutdown_q.take() else { return };
            let how = match how {
                Shutdown::Write => libc::SHUT_WR,
                Shutdown::Read => libc::SHUT_RD,
                Shutdown::Both => libc::SHUT_RDWR,
            };
            s.shutdown_inflight = true;
            opcode::Shutdown::new(Fd(fd), how).build().user_data(s.ud(OpKind::Shutdown))
        } else {
            let mut n = 0;
            for job in s.jobs.iter().take(SEND_BATCH) {
                let Some(payload) = self.kernel.send_payload(job) else { break };
                s.iov[n] = libc::iovec { iov_base: payload.as_ptr() as *mut libc::c_void, iov_len: payload.len() };
                n += 1;
            }
            if n == 0 {
                return;
            }
            s.send_n = n;
            let flags = libc::MSG_NOSIGNAL | libc::MSG_WAITALL;
            let entry = if n == 1 {
                opcode::Send::new(Fd(fd), s.iov[0].iov_base as *const u8, s.iov[0].iov_len as u32).flags(flags).build()
            } else {
                s.msg.msg_iov = s.iov.as_mut_ptr();
                s.msg.msg_iovlen = n as _;
                opcode::SendMsg::new(Fd(fd), &s.msg).flags(flags as u32).build()
            };
            entry.user_data(s.ud(OpKind::Send))
        };
        self.push(entry);
    }

    /// Tops the receive buffer ring up with the emulated kernel's spares.
    fn refill(&mut self) {
        let mut added = false;
        while self.bufs.len() < self.buf_target {
            let Some(idx) = self.kernel.rx_buffer() else { break };
            let Some(base) = self.kernel.memory().buf_ptr(idx) else { break };
            // SAFETY: the buffer is held by the emulated kernel as Receiving: nobody
            // reads or writes it until its recv completion (then it is handed over or
            // abandoned) or the ring is drained after unregistration.
            let pushed = unsafe { self.bufs.push(idx as u16, base) };
            if !pushed {
                let _ = self.kernel.rx_abandon(idx);
                break;
            }
            added = true;
        }
        if added {
            self.bufs.publish();
        }
    }

    fn rearm_starved(&mut self) {
        let mut budget = self.bufs.len();
        while budget > 0 {
            let Some((fd, gen)) = self.starved.pop_front() else { break };
            let Some(s) = self.sock(fd) else { continue };
            if s.gen != gen || !s.starved {
                continue;
            }
            s.starved = false;
            self.arm_recv(fd);
            budget -= 1;
        }
    }

    fn rearm_listeners(&mut self) -> Option<Duration> {
        let freed = std::mem::take(&mut self.fd_freed);
        if self.accept_waiting.is_empty() {
            return None;
        }
        let now = Instant::now();
        let mut next: Option<Duration> = None;
        let mut i = 0;
        while i < self.accept_waiting.len() {
            let (fd, gen) = self.accept_waiting[i];
            let at = match self.sock(fd) {
                Some(s) if s.gen == gen && !s.closing => s.accept_retry_at,
                _ => None,
            };
            let Some(at) = at else {
                self.accept_waiting.swap_remove(i);
                continue;
            };
            if freed || now >= at {
                if let Some(s) = self.sock(fd) {
                    s.accept_retry_at = None;
                }
                self.accept_waiting.swap_remove(i);
                self.arm_accept(fd);
            } else {
                let left = at - now;
                next = Some(next.map_or(left, |n| n.min(left)));
                i += 1;
            }
        }
        next
    }

    /// Closes the streams whose sends are done, once no TX slot waits in a ring and
    /// every RX slot was walked: then nothing of the old fd can reach a new socket
    /// that gets the same number.
    fn finish_closes(&mut self, rx_unwalked: u32, events: &mut Vec<Event>) {
        if self.closing.is_empty() || self.tx_stalled || rx_unwalked > 0 {
            return;
        }
        let mut i = 0;
        while i < self.closing.len() {
            let fd = self.closing[i];
            let (done, busy) = match self.sock(fd) {
                Some(s) => (s.jobs.is_empty() && s.send_n == 0 && !s.shutdown_inflight, s.rx_armed || s.connecting),
                None => (true, false),
            };
            if !done {
                i += 1;
                continue;
            }
            self.closing.swap_remove(i);
            self.kernel.unregister_fd(fd);
            if busy {
                self.push_ignored(opcode::AsyncCancel2::new(CancelBuilder::fd(Fd(fd)).all()).build());
            }
            self.push_ignored(opcode::Close::new(Fd(fd)).build());
            if let Some(slot) = self.socks.get_mut(fd as usize) {
                *slot = None;
            }
            self.fd_freed = true;
            events.push(Event::Closed { fd });
        }
    }

    /// Received buffers of unpaused sockets go to the emulated kernel (a budget per
    /// socket), then their EOF or error.
    fn run_handover(&mut self, events: &mut Vec<Event>) {
        let mut list = std::mem::take(&mut self.handover);
        let mut keep = 0;
        for k in 0..list.len() {
            let fd = list[k];
            let Some(s) = usize::try_from(fd).ok().and_then(|i| self.socks.get_mut(i)).and_then(|s| s.as_deref_mut())
            else {
                continue;
            };
            if s.paused || s.closing {
                s.handover_listed = false;
                continue;
            }
            let mut budget = RX_HANDOVER_BUDGET;
            while budget > 0 {
                let Some((buf, n)) = s.backlog.pop_front() else { break };
                // Ok(false): the fd is no longer registered and the buffer went back to
                // the spares; Err cannot happen for a buffer taken from our ring.
                let _ = self.kernel.rx_complete(fd, buf, n as usize);
                budget -= 1;
            }
            if s.backlog.is_empty() {
                if s.eof_pending {
                    s.eof_pending = false;
                    self.kernel.rx_eof(fd);
                }
                if let Some(errno) = s.error_pending.take() {
                    events.push(Event::RecvError { fd, errno });
                }
                s.handover_listed = false;
                // The backlog drained: the socket may receive again.
                let fd = s.fd;
                self.arm_recv(fd);
            } else {
                list[keep] = fd;
                keep += 1;
                if s.backlog.len() <= SOCKET_BACKLOG_CAP / 2 {
                    self.arm_recv(fd);
                }
            }
        }
        list.truncate(keep);
        list.append(&mut self.handover);
        self.handover = list;
    }

    fn reap(&mut self, stats: &Stats, events: &mut Vec<Event>) {
        self.cqes.clear();
        self.cqes.extend(self.ring.completion().map(|c| (c.user_data(), c.result(), c.flags())));
        for k in 0..self.cqes.len() {
            let (ud, res, flags) = self.cqes[k];
            let (fd, kind, gen) = decode(ud);
            match kind {
                Some(OpKind::Wake) => {
                    self.waker_armed = false;
                    if self.waker.on_read(res) {
                        Stats::add(&stats.remote_wakeups, 1);
                    }
                    if !self.dropping && res != -libc::ECANCELED {
                        self.arm_waker();
                    }
                }
                Some(OpKind::Ignore) => self.ignore_inflight = self.ignore_inflight.saturating_sub(1),
                Some(OpKind::Recv) => self.on_recv(fd, gen, res, flags, events),
                Some(OpKind::Accept) => self.on_accept(fd, gen, res, flags, events),
                Some(OpKind::Send) => self.on_send(fd, gen, res, events),
                Some(OpKind::Shutdown) => {
                    if let Some(s) = self.sock(fd).filter(|s| s.gen == gen) {
                        s.shutdown_inflight = false;
                        if !s.tx_listed && (!s.jobs.is_empty() || s.shutdown_q.is_some()) {
                            s.tx_listed = true;
                            self.tx_ready.push(fd);
                        }
                    }
                }
                Some(OpKind::Connect) => self.on_connect(fd, gen, res, events),
                // Datagram ops are never submitted here (PASTE is TCP only).
                Some(OpKind::RecvFrom | OpKind::SendTo) | None => {}
            }
        }
    }

    fn on_accept(&mut self, fd: RawFd, gen: u32, res: i32, flags: u32, events: &mut Vec<Event>) {
        let live = self.sock(fd).is_some_and(|s| s.gen == gen && s.role == Role::Listener && !s.closing);
        if !live {
            if res >= 0 {
                self.close_stray(res, &Stats::default());
            }
            return;
        }
        let Some(s) = self.sock(fd) else { return };
        if !cqueue::more(flags) {
            s.accept_armed = false;
        }
        if res >= 0 {
            s.accept_error_reported = false;
            self.accepted.insert(res);
            events.push(Event::Accepted { listener: fd, fd: res });
        } else {
            match -res {
                libc::ECANCELED | libc::ECONNABORTED | libc::EINTR | libc::EAGAIN | libc::EPROTO => {}
                errno => {
                    if !s.accept_error_reported {
                        s.accept_error_reported = true;
                        events.push(Event::AcceptError { listener: fd, errno });
                    }
                    s.accept_retry_at = Some(Instant::now() + ACCEPT_RETRY);
                    let g = s.gen;
                    self.accept_waiting.push((fd, g));
                }
            }
        }
        self.arm_accept(fd);
    }

    fn on_recv(&mut self, fd: RawFd, gen: u32, res: i32, flags: u32, events: &mut Vec<Event>) {
        // A reused scratch list: no allocation per receive.
        let mut got = std::mem::take(&mut self.recv_scratch);
        got.clear();
        self.on_recv_into(fd, gen, res, flags, events, &mut got);
        self.recv_scratch = got;
    }

    fn on_recv_into(
        &mut self,
        fd: RawFd,
        gen: u32,
        res: i32,
        flags: u32,
        events: &mut Vec<Event>,
        got: &mut Vec<(u32, u32)>,
    ) {
        let live = self.sock(fd).is_some_and(|s| s.gen == gen && s.role == Role::Stream);
        // Buffers the kernel filled are consumed whoever they were for.
        if let Some(bid) = cqueue::buffer_select(flags) {
            let bytes = res.max(0) as u32;
            self.bufs.consume(bid, bytes, |b, len| got.push((b as u32, len)));
        }
        let keep = live && self.sock(fd).is_some_and(|s| !s.closing && !s.rx_done);
        let Some(s) = sock_of(&mut self.socks, fd).filter(|_| live) else {
            for &(b, _) in got.iter() {
                let _ = self.kernel.rx_abandon(b);
            }
            return;
        };
        if !cqueue::more(flags) {
            s.rx_armed = false;
            s.rx_cancelling = false;
        }
        for &(b, len) in got.iter() {
            if keep && len > 0 {
                s.backlog.push_back((b, len));
            } else {
                let _ = self.kernel.rx_abandon(b);
            }
        }
        let Some(s) = self.sock(fd) else { return };
        let mut stop = false;
        if res == 0 && !s.rx_done && !s.closing {
            s.rx_done = true;
            s.eof_pending = true;
        } else if res < 0 {
            match -res {
                libc::ECANCELED => {}
                libc::ENOBUFS => {
                    if !s.starved {
                        s.starved = true;
                        let g = s.gen;
                        self.starved.push_back((fd, g));
                    }
                }
                errno => {
                    if !s.rx_done && !s.closing {
                        s.rx_done = true;
                        s.error_pending = Some(errno);
                    }
                }
            }
        }
        let Some(s) = sock_of(&mut self.socks, fd) else { return };
        if !s.handover_listed && (!s.backlog.is_empty() || s.eof_pending || s.error_pending.is_some()) {
            s.handover_listed = true;
            self.handover.push(fd);
        }
        if s.backlog.len() >= SOCKET_BACKLOG_CAP {
            stop = true;
        }
        if stop {
            self.cancel_recv(fd);
        } else {
            self.arm_recv(fd);
        }
        let _ = events;
    }

    fn on_send(&mut self, fd: RawFd, gen: u32, res: i32, events: &mut Vec<Event>) {
        let Some(s) = usize::try_from(fd).ok().and_then(|i| self.socks.get_mut(i)).and_then(|s| s.as_deref_mut())
        else {
            return;
        };
        if s.gen != gen {
            return;
        }
        let n = std::mem::take(&mut s.send_n);
        let mut left = res.max(0) as u64;
        let mut done = 0;
        for _ in 0..n {
            let Some(job) = s.jobs.front_mut() else { break };
            if left >= job.len as u64 {
                left -= job.len as u64;
                s.job_bytes -= job.len as u64;
                let buf = job.buf;
                s.jobs.pop_front();
                let _ = self.kernel.send_done(buf);
                done += 1;
            } else {
                // A short send: the rest of this job goes again.
                job.off += left as u32;
                job.len -= left as u32;
                s.job_bytes -= left;
                break;
            }
        }
        let failed = res < 0 || (res == 0 && done < n);
        if failed && !s.closing {
            let errno = if res < 0 { -res } else { libc::EPIPE };
            s.tx_failed = true;
            events.push(Event::SendError { fd, errno });
        }
        if failed {
            s.tx_failed = true;
            s.job_bytes = 0;
            s.shutdown_q = None;
            let jobs: Vec<SendJob> = s.jobs.drain(..).collect();
            for job in jobs {
                let _ = self.kernel.send_done(job.buf);
            }
        }
        let Some(s) = self.sock(fd) else { return };
        let uncongest = s.congested && s.job_bytes <= SOCKET_SEND_CAP / 2;
        if uncongest {
            s.congested = false;
        }
        if !s.tx_listed && (!s.jobs.is_empty() || s.shutdown_q.is_some()) {
            s.tx_listed = true;
            self.tx_ready.push(fd);
        }
        if uncongest || failed {
            self.kernel.set_send_error(fd, None);
        }
    }

    fn on_connect(&mut self, fd: RawFd, gen: u32, res: i32, events: &mut Vec<Event>) {
        let Some(s) = self.sock(fd).filter(|s| s.gen == gen) else { return };
        s.connecting = false;
        if s.closing {
            return;
        }
        let errno = if res < 0 { -res } else { 0 };
        if errno != 0 {
            s.rx_done = true;
            events.push(Event::Connected { fd, errno });
            return;
        }
        match self.kernel.register_fd(fd, SocketState::Connected) {
            Ok(()) => {
                events.push(Event::Connected { fd, errno: 0 });
                if let Some(s) = self.sock(fd) {
                    s.registered = true;
                }
                self.arm_recv(fd);
                if let Some(s) = self.sock(fd) {
                    if !s.tx_listed && (!s.jobs.is_empty() || s.shutdown_q.is_some()) {
                        s.tx_listed = true;
                        self.tx_ready.push(fd);
                    }
                }
            }
            Err(e) => {
                events.push(Event::Connected { fd, errno: 0 });
                events.push(Event::RecvError { fd, errno: e.errno });
            }
        }
    }

    /// Drop: cancels every op, waits (bounded) for the kernel to let go, returns the
    /// buffer ring's buffers, closes every fd still owned and relinks the driver's free
    /// buffers onto the extra list. System calls are fine here: no tick runs.
    pub(crate) fn release(&mut self, driver: &mut RingDriver, fds: &[RawFd]) {
        self.dropping = true;
        let _ = submit::enter(&mut self.ring, Wait::No);
        self.sq.refill_ring(&mut self.ring);
        let _ = self.ring.submitter().register_sync_cancel(None, CancelBuilder::any().all());
        let mut scratch = Vec::new();
        let stats = Stats::default();
        for _ in 0..50 {
            if submit::enter(&mut self.ring, Wait::For(Duration::from_millis(2))).is_err() {
                break;
            }
            let before = self.cqes.len();
            self.reap(&stats, &mut scratch);
            scratch.clear();
            if self.cqes.is_empty() && before == 0 && self.sq.pending() == 0 {
                break;
            }
        }
        let mut owned: HashSet<RawFd> = fds.iter().copied().collect();
        for s in self.socks.iter().flatten() {
            owned.insert(s.fd);
        }
        owned.extend(self.accepted.drain());
        for fd in owned {
            // SAFETY: the backend owns these fds (handed over by Listen/Register/
            // Connect or accepted here) and closes each once, after cancelling its ops.
            unsafe { libc::close(fd) };
        }
        if self.bufs.unregister(&self.ring.submitter()).is_ok() {
            let kernel = &mut self.kernel;
            self.bufs.drain(|bid| {
                let _ = kernel.rx_abandon(bid as u32);
            });
        }
        driver.export_extra();
    }
}

/// The entry of `fd` (a free function, so that other fields stay borrowable).
fn sock_of(socks: &mut [Option<Box<Sock>>], fd: RawFd) -> Option<&mut Sock> {
    usize::try_from(fd).ok().and_then(|i| socks.get_mut(i)).and_then(|s| s.as_deref_mut())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_round_trips() {
        let ud = user_data(70_000, OpKind::Send, 0xAB_CDEF);
        assert_eq!(decode(ud), (70_000, Some(OpKind::Send), 0xAB_CDEF));
        assert_eq!(decode(user_data(5, OpKind::Recv, GEN_MASK + 3)), (5, Some(OpKind::Recv), 2));
        assert_eq!(decode(0).1, None);
    }
}
