//! The emulated provider (`paste-emu`): the io_uring engine does the socket work of
//! the emulated PASTE kernel.
//!
//! Owns the [`SocketEngine`] (the ring, one engine slot per socket — slot id = fd, as
//! PASTE names sockets), a provided buffer ring over the emulated kernel's spare
//! buffers (`addr_offset` = G + 66, so received payload lands exactly where a kernel
//! RX slot puts it), the [`EmuKernel`] (and through it the port memory), and a few
//! flags per fd. It drives the engine through [`EmuSink`](sink::EmuSink), its [`Sink`](paste_rt_uring_engine::Sink): a received
//! buffer goes straight into the RX ring ([`EmuKernel::rx_arrived`]; the fd's
//! backlog only when the ring is full or the fd's slots of this batch would split),
//! and a send gathers the socket's send queue in place
//! ([`EmuKernel::sends_gather`]).
//!
//! One sync ([`EmuProvider::sync`]) is: txsync (every socket that got TX payloads has
//! its send turned into an SQE at once), closes that nothing holds back any more,
//! rxsync (the backlogs first), then the engine's tick — **exactly one
//! `io_uring_enter`** (submit + wait), every completion applied in place (received
//! buffers into RX slots, sent payloads retired from their send queue) — and the RX
//! tails published.
//!
//! Backpressure: a socket whose backlog reaches [`SOCKET_BACKLOG_CAP`] stops
//! receiving (the engine's pause) until it drains to half; a socket the application
//! paused keeps what still arrives to itself (the emulation's stand-in for data
//! waiting in a socket) and hands it over, in order, on resume.
//!
//! Drop order: the engine's shutdown cancels everything and waits (bounded) for the
//! kernel to let go; the ring is closed (the engine is the first field) before the
//! buffer ring and the port memory go; and if anything is still in flight after the
//! wait, the buffer ring and the port memory are leaked, never freed under it.
//!
//! It must never make another system call during a sync (fds are closed with
//! `IORING_OP_CLOSE`; only registering an fd the backend did not accept itself probes
//! the socket, as `PST_FD_REG` would), never let the kernel write a buffer it does not
//! hold as [`KernelHold::Receiving`](crate::KernelHold), and never close an fd while a
//! ring slot or a send of it may still be in flight (a later connection could reuse
//! the number).

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use paste_rt_core::{BackendKind, PoolConfig, RemoteWake, SendStep, Shutdown, StartError, Stats, Wait};
use paste_rt_uring_engine::buf_ring::BufRing;
use paste_rt_uring_engine::probe::{self, RingConfig};
use paste_rt_uring_engine::{EngineConfig, SocketEngine};

use crate::emu_kernel::{probe_socket, EmuKernel, KernelHold, SocketState};
use crate::lazy_deque::LazyDeque;
use crate::port_mem::EmuPortConfig;
use crate::provider_event::Event;
use crate::ring::{DriverConfig, RingDriver};
use crate::sys::abi::pst;

mod sink;

/// Slots per ring of an emulated port unless set: an eighth of the kernel's default.
///
/// Every buffer parked in a ring slot gets written once per trip round the ring (an
/// RX slot's buffer is received into once the kernel swaps it out, a TX slot's is
/// filled by the next reply placed there), so a ring of N slots keeps about N
/// buffers' pages resident for good, however few connections are busy: with 2 KiB
/// buffers, two rings of 256 cost about 1 MiB, 100 bytes per connection at 10 000
/// idle connections. 128 slots still hold a sync's worth of replies for a hundred
/// busy connections (the rest waits in the per-fd queues and backlogs, as on a full
/// kernel ring) at half the resident memory of 256.
pub const EMU_DEFAULT_SLOTS: u32 = 128;

/// Settings of the emulated port, derived from the runtime's pool settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmuSettings {
    /// The pool: `count` becomes the port's extra buffers (the application's pool),
    /// `buf_size` the port's buffer size, `File` memory backs the whole port.
    pub pool: PoolConfig,
    /// Slots per ring (default [`EMU_DEFAULT_SLOTS`]).
    pub slots: u32,
    /// Spare buffers of the emulated kernel (default: the pool's count, at least 2048).
    pub kernel_bufs: u32,
}

impl EmuSettings {
    /// Defaults around `pool`.
    pub fn new(pool: PoolConfig) -> EmuSettings {
        let kernel_bufs = pool.count.max(2048);
        EmuSettings { pool, slots: EMU_DEFAULT_SLOTS, kernel_bufs }
    }
}

/// Buffers on the kernel side of an emulated port (see
/// [`PasteBackend::emu_kernel_buffers`](crate::PasteBackend::emu_kernel_buffers)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmuBufferCount {
    /// Spare buffers, free.
    pub free: u32,
    /// In the io_uring buffer ring or being received into.
    pub receiving: u32,
    /// Received, waiting in a socket backlog or for an RX slot.
    pub pending: u32,
    /// Taken from TX slots, being sent.
    pub sending: u32,
}

/// Buffer group id of the receive buffer ring.
const BGID: u16 = 0;
/// A socket stops receiving when this many entries wait in its backlog (it resumes
/// at half): the emulation's socket receive buffer.
pub const SOCKET_BACKLOG_CAP: usize = 64;
/// Buffers the receive buffer ring holds at first; it doubles (up to its size,
/// a quarter of the kernel's spares) each time a receive finds it empty. The ring is
/// a FIFO, so every buffer it holds gets written in turn: a ring sized for the
/// busiest moment would spread idle connections' data over that many buffers (and
/// their pages) for good.
pub const EMU_RX_RING_START: u32 = 64;
/// Most send-queue payloads gathered into one `SENDMSG`.
const SEND_BATCH: usize = 16;
/// How long a listener waits after `EMFILE` and the like, unless an fd is freed first.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// What the provider knows of one fd besides the engine's slot and the emulated
/// kernel's registration. One per fd number ever used, so kept at 16 bytes (asserted
/// in the tests): the yes/no facts are bits of `flags` (see the `flag_bits!` below).
#[derive(Debug, Default)]
struct SockState {
    /// Bits of the `SockState::*` flags below.
    flags: u8,
    /// A shutdown waiting for the send queue to drain.
    shutdown_q: Option<Shutdown>,
    /// A receive error to report once the data before it is handed over.
    /// (`NonZero`: one word with the option; an errno is never 0.)
    error_pending: Option<std::num::NonZeroI32>,
    /// What arrived while the application had receiving paused, in order (`None`:
    /// the FIN), handed to the kernel on resume.
    held: LazyDeque<Option<(u32, u32)>>,
}

flag_bits! {
    impl SockState.flags {
        /// The engine slot of this fd is in use (opened, not yet released).
        BUSY = 1 << 0, busy, set_busy;
        /// Accepted here and not yet registered by the backend.
        ACCEPTED = 1 << 1, accepted, set_accepted;
        /// The application paused receiving.
        APP_PAUSED = 1 << 2, app_paused, set_app_paused;
        /// Receiving stopped because the backlog is full.
        BACKLOG_PAUSED = 1 << 3, backlog_paused, set_backlog_paused;
        /// The backend is closing it: what arrives is dropped.
        CLOSING = 1 << 4, closing, set_closing;
        /// Its engine slot was retired: the fd is closed once the slot is released.
        RETIRING = 1 << 5, retiring, set_retiring;
        /// Listed in `watch`.
        WATCHED = 1 << 6, watched, set_watched;
        /// A shutdown SQE is in flight.
        SHUTDOWN_INFLIGHT = 1 << 7, shutdown_inflight, set_shutdown_inflight;
    }
}

/// The emulated provider (see the module docs).
///
/// Field order is drop order: the engine (and with it the ring) goes first.
pub(crate) struct EmuProvider {
    engine: SocketEngine,
    bufs: BufRing,
    /// Buffers the receive ring is kept topped up to (grows when dry, up to
    /// `bufs.capacity()`).
    buf_target: u32,
    kernel: EmuKernel,
    socks: Vec<SockState>,
    /// Streams the backend closed, closed for real once nothing of them can be in a
    /// ring or in flight.
    closing: Vec<RawFd>,
    /// Fds with a paused backlog or a held error to look at after each rxsync.
    watch: Vec<RawFd>,
    /// Fds whose retired slot was released: closed through the ring next.
    to_close: Vec<RawFd>,
    /// The last txsync stopped before `head` (some TX slot is still in a ring).
    tx_stalled: bool,
    use_bundle: bool,
    /// The emulated socket work's own counters (SQEs, CQEs): the backend's
    /// [`Stats`] count the port's slots, as on kernel PASTE.
    uring_stats: Stats,
}

fn start_error(reason: String, errno: Option<i32>) -> StartError {
    StartError { backend: BackendKind::PasteEmu, reason, errno }
}

/// The state of `fd`, made on first use. (On the per-request path: one bounds check
/// inline; growing the table is the cold path.)
#[inline]
fn sock_mut(socks: &mut Vec<SockState>, fd: RawFd) -> &mut SockState {
    let i = fd as usize;
    if i >= socks.len() {
        return grow_socks(socks, i);
    }
    &mut socks[i]
}

/// Grows the table to hold fd number `i`; its new state.
#[cold]
#[inline(never)]
fn grow_socks(socks: &mut Vec<SockState>, i: usize) -> &mut SockState {
    socks.resize_with(i + 1, SockState::default);
    &mut socks[i]
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
        // The emulated kernel knows each socket's free send space: low credit is
        // topped up after every sync (see `report_writable`).
        let dcfg = DriverConfig { mss, lists_low_credit: true, ..DriverConfig::default() };
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
        let buf_max = (port.kernel_bufs / 4).clamp(1, 4096);
        let entries = buf_max.next_power_of_two();
        let buf_target = EMU_RX_RING_START.min(buf_max);
        let bufs = BufRing::new(
            &ring.submitter(),
            BGID,
            entries,
            kernel.rx_capacity() as u32,
            port.generic_offset as u32 + pst::TX_DOFF as u32,
            layout.buf_count,
        )
        .map_err(|e| StartError::os(kind, "register the receive buffer ring (IORING_REGISTER_PBUF_RING)", &e))?;
        let use_bundle = probe.recv_bundle;
        let recv_limit = if probe.recv_limit {
            (SOCKET_BACKLOG_CAP as u64 / 2 * kernel.rx_capacity() as u64).min(u32::MAX as u64) as u32
        } else {
            0
        };
        let config = EngineConfig {
            bgid: BGID,
            bundle: use_bundle,
            recv_limit,
            send_batch: SEND_BATCH,
            accept_retry: ACCEPT_RETRY,
            quiet_send_wait: paste_rt_uring_engine::QUIET_SEND_WAIT,
        };
        let engine = SocketEngine::new(ring, probe, config)
            .map_err(|e| StartError::os(kind, "eventfd for remote wake-ups", &e))?;
        let mut p = EmuProvider {
            engine,
            bufs,
            buf_target,
            kernel,
            socks: Vec::new(),
            closing: Vec::new(),
            watch: Vec::new(),
            to_close: Vec::new(),
            tx_stalled: false,
            use_bundle,
            uring_stats: Stats::default(),
        };
        let mut events = Vec::new();
        p.parts(&mut events).1.refill();
        Ok((p, driver))
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "paste-emu (PASTE port emulated in user space; figures are emulated): 1+1 rings of {} slots, \
             {} kernel spares, recv buffer ring {} (starts at {}, grows when dry){}; io_uring {}",
            self.kernel.memory().config().slots,
            self.kernel.memory().config().kernel_bufs,
            self.bufs.capacity(),
            self.buf_target,
            if self.use_bundle { " with bundles" } else { "" },
            self.engine.probe().describe()
        )
    }

    pub(crate) fn remote_waker(&self) -> Arc<dyn RemoteWake> {
        self.engine.remote_waker()
    }

    pub(crate) fn buffer_count(&self) -> EmuBufferCount {
        let mut c = EmuBufferCount::default();
        self.kernel.for_each_held(|_, why| match why {
            KernelHold::Free => c.free += 1,
            KernelHold::Receiving => c.receiving += 1,
            KernelHold::Pending => c.pending += 1,
            KernelHold::SendQueued | KernelHold::Sending => c.sending += 1,
        });
        for s in &self.socks {
            c.pending += s.held.iter().flatten().count() as u32;
            c.receiving -= s.held.iter().flatten().count() as u32;
        }
        c
    }

    /// Opens an engine slot for `fd`; `false` if the fd's previous slot is still busy
    /// (its last completions not reaped yet).
    fn claim(&mut self, fd: RawFd) -> bool {
        if fd < 0 {
            return false;
        }
        let s = sock_mut(&mut self.socks, fd);
        if s.busy() {
            return false;
        }
        *s = SockState { flags: SockState::BUSY, ..SockState::default() };
        true
    }

    /// Closes `fd` through the ring (no system call): an fd the engine serves is
    /// retired first (every op cancelled) and closed once its slot is released, so
    /// its number cannot come back in a new socket while completions of the old one
    /// may still arrive.
    fn close_fd(&mut self, fd: RawFd, events: &mut Vec<Event>) {
        if fd < 0 {
            return;
        }
        if self.engine.is_open(fd as u32) {
            sock_mut(&mut self.socks, fd).set_retiring(true);
            let (engine, mut sink, stats) = self.parts(events);
            engine.retire(fd as u32, &mut sink, stats);
            self.flush_closes();
        } else {
            self.engine.close_fd(fd, &self.uring_stats);
        }
    }

    /// Closes the fds whose retired slot was released.
    fn flush_closes(&mut self) {
        for fd in self.to_close.drain(..) {
            self.engine.close_fd(fd, &self.uring_stats);
        }
    }

    // ---- what the backend asks ----

    pub(crate) fn listen(&mut self, fd: RawFd, _stats: &Stats) {
        if self.claim(fd) {
            self.engine.listen(fd as u32, fd, &self.uring_stats);
        }
    }

    /// PST_FD_REG, emulated: the socket's state is known for fds accepted here (their
    /// engine slot already receives), probed otherwise (counted as system calls).
    pub(crate) fn register(&mut self, fd: RawFd, stats: &Stats) -> Result<(), i32> {
        let accepted = self.socks.get(fd as usize).is_some_and(|s| s.accepted());
        if accepted {
            self.socks[fd as usize].set_accepted(false);
            return self.kernel.register_fd(fd, SocketState::Connected).map_err(|e| e.errno);
        }
        for _ in 0..3 {
            stats.syscall();
        }
        self.kernel.register_fd(fd, probe_socket(fd)).map_err(|e| e.errno)?;
        if !self.claim(fd) {
            self.kernel.unregister_fd(fd);
            return Err(libc::EBUSY);
        }
        self.engine.register(fd as u32, fd, &self.uring_stats);
        Ok(())
    }

    /// The emulated socket's send buffer: the ring driver's send budget for `fd`.
    pub(crate) fn send_budget(&self, fd: RawFd) -> Option<u32> {
        self.kernel.sndbuf(fd)
    }

    pub(crate) fn connect(&mut self, fd: RawFd, addr: SocketAddr, _stats: &Stats, events: &mut Vec<Event>) {
        if !self.claim(fd) {
            events.push(Event::Connected { fd, errno: libc::EBADF });
            return;
        }
        self.engine.connect(fd as u32, fd, addr, &self.uring_stats);
    }

    pub(crate) fn pause(&mut self, fd: RawFd) {
        let Some(s) = self.socks.get_mut(fd as usize) else { return };
        s.set_app_paused(true);
        self.engine.pause(fd as u32, &self.uring_stats);
    }

    pub(crate) fn resume(&mut self, fd: RawFd) {
        let Some(s) = self.socks.get_mut(fd as usize) else { return };
        if !s.app_paused() {
            return;
        }
        s.set_app_paused(false);
        while let Some(h) = s.held.pop_front() {
            match h {
                // Ok(false): no longer registered, the buffer went back to the spares;
                // Err cannot happen for a buffer received into.
                Some((buf, n)) => drop(self.kernel.rx_complete(fd, buf, n as usize)),
                None => drop(self.kernel.rx_eof(fd)),
            }
        }
        if s.error_pending.is_some() && !s.watched() {
            s.set_watched(true);
            self.watch.push(fd);
        }
        if !s.backlog_paused() {
            self.engine.resume(fd as u32, &self.uring_stats);
        }
    }

    /// Queued behind the socket's send queue.
    pub(crate) fn shutdown(&mut self, fd: RawFd, how: Shutdown, _stats: &Stats) {
        let Some(s) = self.socks.get_mut(fd as usize) else { return };
        let how = s.shutdown_q.map_or(how, |q| q.merge(how));
        if s.shutdown_inflight() || self.kernel.has_sends(fd) {
            s.shutdown_q = Some(how);
            return;
        }
        s.shutdown_q = None;
        s.set_shutdown_inflight(true);
        let mut events = Vec::new();
        let (engine, mut sink, stats) = self.parts(&mut events);
        engine.drive_send(fd as u32, SendStep::Shutdown(how), &mut sink, stats);
    }

    pub(crate) fn close_listener(&mut self, fd: RawFd, _stats: &Stats, events: &mut Vec<Event>) {
        self.close_fd(fd, events);
        events.push(Event::Closed { fd });
    }

    /// Graceful: the fd is closed once its send queue is done and no slot of it can be
    /// in a ring ([`finish_closes`](Self::finish_closes)).
    pub(crate) fn close_stream(&mut self, fd: RawFd, _stats: &Stats, events: &mut Vec<Event>) {
        let s = sock_mut(&mut self.socks, fd);
        if !s.busy() || s.accepted() {
            // Never registered (refused), or accepted and never taken: nothing of it
            // is in a ring.
            s.set_accepted(false);
            self.kernel.unregister_fd(fd);
            self.close_fd(fd, events);
            events.push(Event::Closed { fd });
            return;
        }
        s.set_closing(true);
        s.shutdown_q = None;
        s.error_pending = None;
        let held: Vec<u32> = s.held.drain().flatten().map(|(b, _)| b).collect();
        for buf in held {
            let _ = self.kernel.rx_abandon(buf);
        }
        self.kernel.rx_discard(fd);
        self.engine.pause(fd as u32, &self.uring_stats);
        self.closing.push(fd);
    }

    pub(crate) fn close_stray(&mut self, fd: RawFd, _stats: &Stats) {
        if let Some(s) = self.socks.get_mut(fd as usize) {
            s.set_accepted(false);
        }
        let mut events = Vec::new();
        self.close_fd(fd, &mut events);
    }

    /// An EOF slot of a closing fd: nothing to do (the close waits for sends only).
    pub(crate) fn peer_closed(&mut self, _fd: RawFd) {}

    /// End of stream seen outside the ring: never here (the emulated kernel always
    /// puts an EOF slot in the ring).
    pub(crate) fn peer_fins(&mut self, _driver: &RingDriver, _out: &mut Vec<RawFd>) {}

    // ---- the sync ----

    /// One sync (see the module docs): txsync with the sends it starts, closes,
    /// rxsync, the engine's tick (one enter, completions in place), RX tails
    /// published; then the sockets that got send space back and that the driver
    /// waits for.
    ///
    /// All of the emulated kernel's work per tick happens in here, so it stays out
    /// of line (one call per tick): `paste-bench callgrind` measures it by this
    /// name to report the emulated kernel's share apart from the port's
    /// application side.
    #[inline(never)]
    pub(crate) fn sync(
        &mut self,
        driver: &RingDriver,
        wait: Wait,
        stats: &Stats,
        events: &mut Vec<Event>,
    ) -> io::Result<()> {
        // 1. txsync: TX slots join their sockets' send queues; each socket that got
        //    some starts sending (an SQE gathering its queue in place).
        let rep = self.kernel.txsync();
        self.tx_stalled = rep.tx_stall.is_some();
        let (engine, mut sink, ustats) = self.parts(events);
        while let Some(fd) = sink.take_tx_ready() {
            engine.drive_send(fd as u32, SendStep::Data, &mut sink, ustats);
        }

        // 2. Closes that nothing holds back any more; rxsync (backlogs first).
        if !self.closing.is_empty() {
            self.finish_closes(driver.rx_ready(), events);
        }
        // (Published with what arrives during the engine's tick, below.)
        self.kernel.rxsync_open();
        self.check_watch(events);

        // 3. The engine's tick: the one io_uring_enter, completions applied in place.
        //    Do not wait when a socket the driver waits for has space, or a backlog
        //    can move now.
        let busy = self.writable_waiter(driver) || self.kernel.rx_waiting();
        let wait = if busy { Wait::Poll } else { wait };
        let u = &self.uring_stats;
        let (waits, wakeups, timers) = (u.waits.get(), u.remote_wakeups.get(), u.wait_timers.get());
        stats.syscall();
        // Send completions matter to the application only through send space (the
        // ring driver learns of taken slots at txsync): when nothing waits for space
        // and no slot waits for the socket to take it, the wait may look past them.
        // (A connection merely low on credit still has some: its top-up comes with
        // the sync that reaps the completion, before it could run dry.)
        let tx_news_unwanted = !self.tx_stalled && !driver.tx_any_space_waiter();
        let (engine, mut sink, ustats) = self.parts_for_tick(events, tx_news_unwanted);
        let ticked = engine.tick(wait, &mut sink, ustats);
        self.kernel.rx_publish();
        if !self.to_close.is_empty() {
            self.flush_closes();
        }
        Stats::add(&stats.waits, self.uring_stats.waits.get() - waits);
        Stats::add(&stats.remote_wakeups, self.uring_stats.remote_wakeups.get() - wakeups);
        Stats::add(&stats.wait_timers, self.uring_stats.wait_timers.get() - timers);
        ticked?;

        // 4. Sockets that got send space back and that the driver waits for.
        self.report_writable(driver, events);
        Ok(())
    }

    /// After rxsync: sockets whose backlog drained below half receive again; a held
    /// receive error is reported once the data before it is handed over.
    fn check_watch(&mut self, events: &mut Vec<Event>) {
        if self.watch.is_empty() {
            return;
        }
        let mut i = 0;
        while i < self.watch.len() {
            let fd = self.watch[i];
            let backlog = self.kernel.rx_backlog(fd);
            let s = sock_mut(&mut self.socks, fd);
            if s.backlog_paused() && backlog <= SOCKET_BACKLOG_CAP / 2 {
                s.set_backlog_paused(false);
                if !s.app_paused() && !s.closing() {
                    self.engine.resume(fd as u32, &self.uring_stats);
                }
            }
            let s = sock_mut(&mut self.socks, fd);
            if backlog == 0 && s.held.is_empty() && !s.app_paused() {
                if let Some(errno) = s.error_pending.take().map(std::num::NonZeroI32::get) {
                    events.push(Event::RecvError { fd, errno });
                }
            }
            if s.backlog_paused() || s.error_pending.is_some() {
                i += 1;
            } else {
                s.set_watched(false);
                self.watch.swap_remove(i);
            }
        }
    }

    /// Whether a socket the ring driver waits for send space on has some now (it can
    /// send: the sync must not wait).
    fn writable_waiter(&self, driver: &RingDriver) -> bool {
        driver.tx_any_space_waiter()
            && driver.tx_space_waiters().any(|fd| self.kernel.send_space(fd).is_some_and(|f| f > 0))
    }

    /// `POLLOUT` of the emulation, exact: the sockets the ring driver waits for send
    /// space on, and those running low on credit, get their free space reported.
    fn report_writable(&self, driver: &RingDriver, events: &mut Vec<Event>) {
        if !driver.tx_any_space_waiter() && !driver.tx_any_low_credit() {
            return;
        }
        for fd in driver.tx_space_waiters().chain(driver.tx_low_credit()) {
            if let Some(free) = self.kernel.send_space(fd).filter(|&f| f > 0) {
                events.push(Event::Writable { fd, free: Some(free) });
            }
        }
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
            let inflight = self.socks.get(fd as usize).is_some_and(|s| s.shutdown_inflight());
            if inflight || self.kernel.has_sends(fd) {
                i += 1;
                continue;
            }
            self.closing.swap_remove(i);
            self.kernel.unregister_fd(fd);
            self.close_fd(fd, events);
            events.push(Event::Closed { fd });
        }
    }

    /// Drop: cancels every op, waits (bounded) for the kernel to let go, closes every
    /// fd still owned, returns the buffer ring's buffers and relinks the driver's free
    /// buffers onto the extra list. What is still in flight after the wait is leaked:
    /// the buffer ring stays registered (its mapping is never unmapped) and the port
    /// memory is never unmapped. System calls are fine here: no tick runs.
    pub(crate) fn release(&mut self, driver: &mut RingDriver, fds: &[RawFd]) {
        // Fds the backend owns that the engine does not (refused registrations).
        for &fd in fds {
            if fd >= 0 && !self.socks.get(fd as usize).is_some_and(|s| s.busy()) {
                // SAFETY: the backend owns this fd and hands it over for closing once.
                unsafe { libc::close(fd) };
            }
        }
        let mut events = Vec::new();
        let (engine, mut sink, stats) = self.parts(&mut events);
        let idle = engine.shutdown(&mut sink, stats);
        // Retired slots' fds: released during the wait, or still busy after it.
        self.flush_closes();
        for (fd, s) in self.socks.iter().enumerate() {
            if s.busy() && s.retiring() {
                // SAFETY: the provider owns this fd (its slot was retired, so the
                // engine no longer does) and closes it once.
                unsafe { libc::close(fd as RawFd) };
            }
        }
        if idle && self.bufs.unregister(&self.engine.ring().submitter()).is_ok() {
            let kernel = &mut self.kernel;
            self.bufs.drain(|bid| {
                let _ = kernel.rx_abandon(bid as u32);
            });
        } else if !idle {
            // The kernel may still write received data into port memory or read a
            // send's payload from it.
            std::mem::forget(self.kernel.memory().clone());
        }
        driver.export_extra();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_fd_costs_the_provider_sixteen_bytes() {
        // One entry per fd number ever used, idle or busy: memory per idle connection
        // (it was 24 bytes with a bool per flag).
        assert_eq!(size_of::<SockState>(), 16);
    }

    #[test]
    fn each_flag_sets_and_clears_its_own_bit_only() {
        type Flag = (u8, fn(&SockState) -> bool, fn(&mut SockState, bool));
        let flags: [Flag; 8] = [
            (SockState::BUSY, SockState::busy, SockState::set_busy),
            (SockState::ACCEPTED, SockState::accepted, SockState::set_accepted),
            (SockState::APP_PAUSED, SockState::app_paused, SockState::set_app_paused),
            (SockState::BACKLOG_PAUSED, SockState::backlog_paused, SockState::set_backlog_paused),
            (SockState::CLOSING, SockState::closing, SockState::set_closing),
            (SockState::RETIRING, SockState::retiring, SockState::set_retiring),
            (SockState::WATCHED, SockState::watched, SockState::set_watched),
            (SockState::SHUTDOWN_INFLIGHT, SockState::shutdown_inflight, SockState::set_shutdown_inflight),
        ];
        assert_eq!(flags.iter().fold(0u8, |all, f| all | f.0), u8::MAX, "eight distinct bits");
        for (bit, get, set) in flags {
            let mut s = SockState { flags: !bit, ..SockState::default() };
            assert!(!get(&s));
            set(&mut s, true);
            assert!(get(&s) && s.flags == u8::MAX);
            set(&mut s, false);
            assert!(!get(&s) && s.flags == !bit);
        }
    }
}
