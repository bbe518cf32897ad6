//! [`PasteBackend`]: the [`Backend`] over one [`RingDriver`] and a port provider.
//!
//! Owns the ring driver (and so the pool), the provider that plays or talks to the
//! kernel (`emulated`: [`EmuProvider`], io_uring doing the socket work; `kernel`:
//! [`KernelProvider`], `/dev/netmap`), and the map between the fds PASTE's slots
//! carry and the runtime's record tokens. The tick reads top to bottom in
//! [`PasteBackend::tick`]:
//!
//! ```text
//! what the runtime asked -> records' sends copied into TX slots in place
//!        (or, what cannot go now, into the ring's per-fd queues)
//!     -> ring.tx_fill() -> provider.sync() (ONE enter / ONE poll)
//!     -> ring.tx_reclaim() (bytes taken, per record) -> events
//!     -> ring.rx_walk() (buffers and EOFs delivered to their records, in place)
//! ```
//!
//! Everything is keyed by fd, as PASTE's slots are; a token is mapped to its fd until
//! the provider reports the fd closed ([`Event::Closed`]), and only then released,
//! so a late slot of an old connection can never reach a new one on the same number.
//! Sockets the runtime hands over between ticks are noted and registered at the next
//! tick (registration may be a system call). This module makes no system call of its
//! own: the providers do, inside `poll`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;

use paste_rt_core::{
    Backend, BackendKind, BufPool, Capabilities, Delivery, IoTable, PoolConfig, PoolMemory, RemoteWake, SendData,
    SendStep, Shutdown, StartError, Stats, Token, Wait,
};

use crate::emu_provider::{EmuBufferCount, EmuProvider, EmuSettings};
use crate::kernel::KernelConfig;
use crate::kernel_provider::KernelProvider;
use crate::provider_event::Event;
use crate::ring::{RingDriver, RxEvent};

/// The port provider: who plays (or talks to) the kernel side.
enum Provider {
    Emu(Box<EmuProvider>),
    Kernel(Box<KernelProvider>),
}

/// Dispatches one provider call to whichever provider runs (no boxing per call).
macro_rules! provider {
    ($self:expr, $p:ident => $e:expr) => {
        match $self {
            Provider::Emu($p) => $e,
            Provider::Kernel($p) => $e,
        }
    };
}

/// No token.
const NO_TOKEN: u32 = u32::MAX;

/// A pool buffer of at most this many bytes is copied into its TX slot rather than
/// swapped in. The swap takes the buffer out of the record's queue, trades buffer
/// indices with the pool and marks the slot's buffer changed: about 250 user-space
/// instructions more than the in-place copy a static reply takes (hyper's 150-byte
/// answers on paste-emu, `paste-bench callgrind`), which a copy of this size — eight
/// cache lines at most — stays well below. Larger buffers keep the zero-copy swap.
pub const POOL_COPY_MAX: usize = 512;

/// What the runtime asked between ticks.
#[derive(Debug)]
enum Pending {
    Listen(Token),
    Register(Token),
    Connect(Token, SocketAddr),
    Close(Token),
    /// A datagram socket: refused (PASTE carries TCP only).
    Refuse(Token),
}

/// The backend's view of one token: 8 bytes with its `Option` (asserted in the
/// tests), one per token, so per connection; the yes/no facts are bits of `flags`.
#[derive(Debug, Clone, Copy, Default)]
struct Mapping {
    fd: RawFd,
    /// Bits of the `Mapping::*` flags below.
    flags: u8,
    /// A shutdown waits for the data before it to be taken.
    shutdown: Option<Shutdown>,
}

flag_bits! {
    impl Mapping.flags {
        /// A listening socket.
        LISTENER = 1 << 0, listener, set_listener;
        /// Listed in `tx_ready`.
        TX_LISTED = 1 << 1, tx_listed, set_tx_listed;
        /// EOF or an error was reported: no more receives.
        RX_DONE = 1 << 2, rx_done, set_rx_done;
        /// Handed to the provider's close; waiting for [`Event::Closed`].
        CLOSING = 1 << 3, closing, set_closing;
    }
}

/// The PASTE backend: the ring driver over a kernel or an emulated port. Build it
/// with [`PasteBackend::emulated`] or [`PasteBackend::kernel`].
pub struct PasteBackend {
    kind: BackendKind,
    driver: RingDriver,
    provider: Provider,
    stats: Stats,
    pending: Vec<Pending>,
    /// Indexed by token.
    tokens: Vec<Option<Mapping>>,
    /// Indexed by fd: the token it belongs to.
    fds: Vec<u32>,
    /// Tokens with data to move into the ring.
    tx_ready: Vec<Token>,
    /// Tokens with a shutdown waiting for their data to be taken.
    shutdowns: Vec<Token>,
    events: Vec<Event>,
    /// Scratch list of the provider's end-of-stream reports (reused).
    fins: Vec<RawFd>,
    /// Scratch lists of a tick, kept so that a tick allocates nothing once warm.
    scratch: TickScratch,
}

/// Lists a tick fills and empties, kept between ticks (see [`PasteBackend::tick`]).
#[derive(Debug, Default)]
struct TickScratch {
    /// Records whose taken bytes ask for a follow-up step.
    steps: Vec<(Token, SendStep)>,
    /// Fds whose EOF slot arrived after the app closed them.
    peer_closed: Vec<RawFd>,
    /// Fds whose record asked to pause receiving.
    pause: Vec<RawFd>,
}

impl std::fmt::Debug for PasteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasteBackend").field("kind", &self.kind).field("driver", &self.driver).finish()
    }
}

impl PasteBackend {
    /// `paste-emu`: an emulated port in user memory (file-backed when `pool.memory` is
    /// a file), the emulated kernel's rules, and io_uring doing the socket work.
    pub fn emulated(pool: PoolConfig) -> Result<PasteBackend, StartError> {
        PasteBackend::emulated_with(EmuSettings::new(pool))
    }

    /// `paste-emu` with explicit port settings.
    pub fn emulated_with(settings: EmuSettings) -> Result<PasteBackend, StartError> {
        let file = match &settings.pool.memory {
            PoolMemory::Anonymous => None,
            PoolMemory::File(p) => Some(p.clone()),
        };
        let (provider, driver) = EmuProvider::open(&settings, file)?;
        Ok(PasteBackend::assemble(BackendKind::PasteEmu, driver, Provider::Emu(Box::new(provider))))
    }

    /// `paste`: kernel PASTE through `/dev/netmap` as `cfg` says (the runtime builds
    /// it from `Builder::paste_config` and the operator's `PASTE_RT_PASTE_*`
    /// overrides; this crate reads no environment), over the runtime's `pool`. The
    /// configuration is checked first: on a machine without kernel PASTE, or with no
    /// NIC named, the error says what is missing and what is needed. A file-backed
    /// pool is the port's extmem file (persistent: its kept buffers survive a
    /// restart), and is refused where extmem is switched off
    /// ([`KernelConfig::with_pool`]).
    pub fn kernel(cfg: &KernelConfig, pool: &PoolConfig) -> Result<PasteBackend, StartError> {
        check_kernel_config(cfg)?;
        let cfg = cfg.clone().with_pool(pool, true)?;
        PasteBackend::kernel_with(&cfg)
    }

    /// `paste` with an explicit configuration.
    pub fn kernel_with(cfg: &KernelConfig) -> Result<PasteBackend, StartError> {
        let (provider, driver) = KernelProvider::open(cfg)?;
        Ok(PasteBackend::assemble(BackendKind::Paste, driver, Provider::Kernel(Box::new(provider))))
    }

    fn assemble(kind: BackendKind, driver: RingDriver, provider: Provider) -> PasteBackend {
        PasteBackend {
            kind,
            driver,
            provider,
            stats: Stats::default(),
            pending: Vec::with_capacity(64),
            tokens: Vec::new(),
            fds: Vec::new(),
            tx_ready: Vec::with_capacity(256),
            shutdowns: Vec::new(),
            events: Vec::with_capacity(256),
            fins: Vec::new(),
            scratch: TickScratch::default(),
        }
    }

    /// The ring driver (for accounting checks).
    pub fn driver(&self) -> &RingDriver {
        &self.driver
    }

    /// Buffers held on the kernel side of an emulated port, by state (free spares,
    /// receiving, pending, sending); `None` on kernel PASTE.
    pub fn emu_kernel_buffers(&self) -> Option<EmuBufferCount> {
        match &self.provider {
            Provider::Emu(p) => Some(p.buffer_count()),
            Provider::Kernel(_) => None,
        }
    }

    /// Fds the backend still owns (open, or closing).
    pub fn open_fds(&self) -> usize {
        self.tokens.iter().filter(|m| m.is_some()).count()
    }

    fn mapping(&mut self, token: Token) -> Option<&mut Mapping> {
        self.tokens.get_mut(token.index()).and_then(Option::as_mut)
    }

    /// The token of `fd`, if it is mapped and not closing.
    fn token_of(&self, fd: RawFd) -> Option<Token> {
        let t = *self.fds.get(usize::try_from(fd).ok()?)?;
        let m = self.tokens.get(t as usize)?.as_ref()?;
        (t != NO_TOKEN && !m.closing()).then_some(Token(t))
    }

    /// Maps `token` to `fd`. Returns `false` if the fd number is still ours (an old
    /// connection closing on it) or beyond what PASTE carries.
    fn map(&mut self, token: Token, fd: RawFd, listener: bool) -> bool {
        let Ok(i) = usize::try_from(fd) else { return false };
        if self.fds.len() <= i {
            self.fds.resize(i + 1, NO_TOKEN);
        }
        if self.fds[i] != NO_TOKEN {
            return false;
        }
        self.fds[i] = token.0;
        if self.tokens.len() <= token.index() {
            self.tokens.resize_with(token.index() + 1, || None);
        }
        self.tokens[token.index()] =
            Some(Mapping { fd, flags: if listener { Mapping::LISTENER } else { 0 }, ..Mapping::default() });
        true
    }

    /// Applies what the runtime asked since the last tick, in order.
    fn apply_pending(&mut self, io: &mut IoTable) {
        let mut pending = std::mem::take(&mut self.pending);
        for p in pending.drain(..) {
            match p {
                Pending::Listen(t) => {
                    let fd = io.get(t).fd();
                    if !self.map(t, fd, true) {
                        io.accept_failed(t, libc::EBADF);
                        continue;
                    }
                    provider!(&mut self.provider, p => p.listen(fd, &self.stats));
                }
                Pending::Register(t) => self.register_stream(io, t),
                Pending::Connect(t, addr) => {
                    let fd = io.get(t).fd();
                    if !self.map(t, fd, false) {
                        io.connected(t, libc::EBADF);
                        continue;
                    }
                    provider!(&mut self.provider, p => p.connect(fd, addr, &self.stats, &mut self.events));
                }
                Pending::Close(t) => self.close_now(io, t),
                Pending::Refuse(t) => {
                    let fd = io.get(t).fd();
                    provider!(&mut self.provider, p => p.close_stray(fd, &self.stats));
                    io.dgram_failed(t, libc::EPROTONOSUPPORT);
                    io.release(t);
                }
            }
        }
        self.pending = pending;
    }

    /// Registers a connected stream (accepted, or handed over by the runtime).
    fn register_stream(&mut self, io: &mut IoTable, t: Token) {
        let fd = io.get(t).fd();
        if !self.map(t, fd, false) {
            io.rx_failed(t, libc::EBADF);
            return;
        }
        let r = provider!(&mut self.provider, p => p.register(fd, &self.stats));
        match r {
            Ok(()) => self.set_send_budget(fd),
            Err(errno) => self.fail(io, t, errno),
        }
    }

    /// A registered socket's send buffer becomes its send budget in the ring driver,
    /// so its slots go on the ring only while the socket can take them (a congested
    /// connection must not stall the shared TX ring).
    fn set_send_budget(&mut self, fd: RawFd) {
        if let Some(bytes) = provider!(&self.provider, p => p.send_budget(fd)) {
            let _ = self.driver.tx_set_budget(fd, bytes);
        }
    }

    /// A connection failed (registration refused, reset): reported once; its queued
    /// sends are dropped.
    fn fail(&mut self, io: &mut IoTable, t: Token, errno: i32) {
        let Some(m) = self.mapping(t) else { return };
        let fd = m.fd;
        if m.rx_done() {
            return;
        }
        m.set_rx_done(true);
        self.driver.tx_drop_fd(fd);
        let step = io.rx_failed(t, errno);
        self.follow(io, t, step);
    }

    /// Applies the table's answer on `t`'s send path.
    fn follow(&mut self, io: &mut IoTable, t: Token, step: SendStep) {
        match step {
            SendStep::Data => self.list_tx(t),
            SendStep::Shutdown(how) => {
                if let Some(m) = self.mapping(t) {
                    let first = m.shutdown.is_none();
                    m.shutdown = Some(m.shutdown.map_or(how, |s| s.merge(how)));
                    if first {
                        self.shutdowns.push(t);
                    }
                }
            }
            SendStep::Wait | SendStep::Idle => {}
            SendStep::Close => self.close_now(io, t),
        }
    }

    fn list_tx(&mut self, t: Token) {
        if let Some(m) = self.mapping(t) {
            if !m.tx_listed() {
                m.set_tx_listed(true);
                self.tx_ready.push(t);
            }
        }
    }

    /// Forgets `t`'s queued ring data and hands its fd to the provider's close: a
    /// listener right away, a stream once its taken data has left. The token is
    /// released when the provider reports the fd closed.
    fn close_now(&mut self, io: &mut IoTable, t: Token) {
        let Some(m) = self.mapping(t) else {
            // Never mapped (refused, or failed before registration): nothing holds it.
            io.release(t);
            return;
        };
        if m.closing() {
            return;
        }
        m.set_closing(true);
        let (fd, listener) = (m.fd, m.listener());
        self.driver.tx_drop_fd(fd);
        if listener {
            provider!(&mut self.provider, p => p.close_listener(fd, &self.stats, &mut self.events));
        } else {
            provider!(&mut self.provider, p => p.close_stream(fd, &self.stats, &mut self.events));
        }
    }

    /// Moves what the listed records queued into the ring (see
    /// [`take_send_of`](Self::take_send_of)).
    fn take_sends(&mut self, io: &mut IoTable) {
        let mut list = std::mem::take(&mut self.tx_ready);
        for t in list.drain(..) {
            let Some(m) = self.mapping(t) else { continue };
            m.set_tx_listed(false);
            if !m.closing() {
                let fd = m.fd;
                self.take_send_of(io, t, fd);
            }
        }
        if self.tx_ready.is_empty() {
            self.tx_ready = list;
        }
    }

    /// Moves what `t` queued into the ring. Bytes are copied straight from the
    /// record's queue into TX slots, in place, while the ring driver would place them
    /// now (nothing queued before them, room and credit): the common reply is neither
    /// moved nor dropped here. A pool buffer of more than [`POOL_COPY_MAX`] bytes not
    /// yet started that fits one slot (swapped in whole, zero copy) and whatever does
    /// not fit now are taken out of the record and handed to the ring driver, which
    /// keeps each item in its per-fd queue until the kernel took it. (A buffer larger
    /// than a slot cannot be swapped in: it is copied, a slot at a time. The port's
    /// own pool lends none: its `TxBuf`s hold one slot's payload at most.)
    /// Applies the send step when nothing was taken.
    #[inline]
    fn take_send_of(&mut self, io: &mut IoTable, t: Token, fd: RawFd) {
        let mut took = false;
        let slot_payload = self.driver.tx_slot_payload() as usize;
        loop {
            let driver = &mut self.driver;
            let copied = io.copy_send(t, |data, unsent| {
                let whole = unsent.len() == data.len();
                if matches!(data, SendData::Pool(_))
                    && whole
                    && (POOL_COPY_MAX + 1..=slot_payload).contains(&unsent.len())
                {
                    return 0;
                }
                driver.tx_copy(fd, unsent)
            });
            match copied {
                None => break,
                Some(c) if c.bytes == 0 => {}
                Some(c) => {
                    took = true;
                    Stats::add(&self.stats.submissions, 1);
                    // The common single reply: nothing behind it.
                    if !c.more {
                        break;
                    }
                    continue;
                }
            }
            // Not copied now: the item goes to the ring driver (its unsent part).
            let Some((data, sent)) = io.take_send(t) else { break };
            took = true;
            match self.driver.tx_send_from(fd, data, sent as usize) {
                Ok(placed) => Stats::add(&self.stats.submissions, u64::from(placed)),
                Err(e) => {
                    // Only an fd PASTE cannot carry (> 65534) gets here.
                    let errno = match e {
                        crate::ring::RingError::FdOutOfRange(_) => libc::EBADF,
                        _ => libc::EINVAL,
                    };
                    let step = io.tx_failed(t, errno);
                    self.follow(io, t, step);
                    return;
                }
            }
            if io.get(t).send_queue().is_empty() {
                break;
            }
        }
        // After a take the step is `Wait` (the taken bytes are not confirmed yet).
        if !took {
            let step = io.send_step(t);
            self.follow(io, t, step);
        }
    }

    /// Shutdowns whose data the kernel has taken go to the provider.
    fn run_shutdowns(&mut self, io: &mut IoTable) {
        let mut i = 0;
        while i < self.shutdowns.len() {
            let t = self.shutdowns[i];
            let Some(m) = self.tokens.get_mut(t.index()).and_then(Option::as_mut).filter(|m| !m.closing()) else {
                self.shutdowns.swap_remove(i);
                continue;
            };
            let fd = m.fd;
            if self.driver.tx_queued(fd) == 0 && self.driver.tx_inflight(fd) == 0 {
                let how = m.shutdown.take().unwrap_or(Shutdown::Write);
                provider!(&mut self.provider, p => p.shutdown(fd, how, &self.stats));
                self.shutdowns.swap_remove(i);
                let step = io.shutdown_done(t, 0);
                self.follow(io, t, step);
            } else {
                i += 1;
            }
        }
    }

    fn handle_event(&mut self, io: &mut IoTable, ev: Event) {
        match ev {
            Event::Accepted { listener, fd } => match self.token_of(listener).and_then(|l| io.accepted(l, fd)) {
                Some(t) => {
                    Stats::add(&self.stats.accepts, 1);
                    self.register_stream(io, t);
                }
                None => provider!(&mut self.provider, p => p.close_stray(fd, &self.stats)),
            },
            Event::AcceptError { listener, errno } => {
                if let Some(t) = self.token_of(listener) {
                    io.accept_failed(t, errno);
                }
            }
            Event::Connected { fd, errno } => {
                if let Some(t) = self.token_of(fd) {
                    if errno == 0 {
                        self.set_send_budget(fd);
                    } else {
                        if let Some(m) = self.mapping(t) {
                            m.set_rx_done(true);
                        }
                    }
                    let step = io.connected(t, errno);
                    self.follow(io, t, step);
                }
            }
            Event::RecvError { fd, errno } => {
                if let Some(t) = self.token_of(fd) {
                    self.fail(io, t, errno);
                }
            }
            Event::SendError { fd, errno } => {
                self.driver.tx_drop_fd(fd);
                if let Some(t) = self.token_of(fd) {
                    let step = io.tx_failed(t, errno);
                    self.follow(io, t, step);
                }
            }
            Event::Writable { fd, free: None } => self.driver.tx_writable(fd),
            Event::Writable { fd, free: Some(free) } => self.driver.tx_send_space(fd, free),
            Event::Closed { fd } => {
                let Some(slot) = usize::try_from(fd).ok().and_then(|i| self.fds.get_mut(i)) else { return };
                let t = std::mem::replace(slot, NO_TOKEN);
                if t != NO_TOKEN {
                    if let Some(m) = self.tokens.get_mut(t as usize) {
                        *m = None;
                    }
                    io.release(Token(t));
                }
            }
        }
    }

    /// End of stream the provider saw outside the ring (see [`PasteBackend::tick`]).
    fn apply_fins(&mut self, io: &mut IoTable) {
        for fd in self.fins.drain(..) {
            let Some(&t) = usize::try_from(fd).ok().and_then(|i| self.fds.get(i)) else { continue };
            let Some(m) = self.tokens.get_mut(t as usize).and_then(Option::as_mut) else { continue };
            if m.closing() {
                provider!(&mut self.provider, p => p.peer_closed(fd));
            } else if !m.rx_done() && !m.listener() {
                m.set_rx_done(true);
                io.eof(Token(t));
            }
        }
    }

    /// One tick's I/O, top to bottom (see the module docs).
    fn tick(&mut self, io: &mut IoTable, wait: Wait) -> io::Result<()> {
        // 1. What the runtime asked: registrations, closes; queued sends into the
        //    ring's per-fd queues.
        let wakes = io.wakes();
        if !self.pending.is_empty() {
            self.apply_pending(io);
        }
        if !self.tx_ready.is_empty() {
            self.take_sends(io);
        }
        // Shutdowns with nothing left before them go to the provider before its sync.
        if !self.shutdowns.is_empty() {
            self.run_shutdowns(io);
        }

        // 2. Queued sends into TX slots (zero-copy swaps of larger TxBufs), head = cur.
        let filled = self.driver.tx_fill();
        Stats::add(&self.stats.submissions, filled.slots as u64);

        // 3. The sync: one io_uring_enter (emulated) or one poll() (kernel). It does
        //    txsync, the socket work, the wait and rxsync. Do not wait when RX slots
        //    the last walk left for lack of buffers can be taken now.
        let busy = io.wakes() != wakes || (self.driver.rx_left() && self.driver.pool().free_count() > 0);
        let wait = if busy || !self.events.is_empty() { Wait::Poll } else { wait };
        let synced = provider!(&mut self.provider, p => p.sync(&self.driver, wait, &self.stats, &mut self.events));
        // 4. TX slots the kernel took: their bytes are sent, from the app's view. (Before
        //    the sync's events: a send-space report then finds the taken slots already
        //    accounted, rather than collecting them itself for a later report.)
        let stats = &self.stats;
        let fds = &self.fds;
        let steps = &mut self.scratch.steps;
        self.driver.tx_reclaim(|fd, bytes| {
            Stats::add(&stats.tx_bytes, bytes);
            Stats::add(&stats.completions, 1);
            if let Some(&t) = usize::try_from(fd).ok().and_then(|i| fds.get(i)) {
                if t != NO_TOKEN {
                    let step = io.taken_sent(Token(t), bytes);
                    if step != SendStep::Wait && step != SendStep::Idle {
                        steps.push((Token(t), step));
                    }
                }
            }
        });
        if !self.scratch.steps.is_empty() {
            let mut steps = std::mem::take(&mut self.scratch.steps);
            for (t, step) in steps.drain(..) {
                self.follow(io, t, step);
            }
            self.scratch.steps = steps;
        }
        if !self.shutdowns.is_empty() {
            self.run_shutdowns(io);
        }

        // The sync's events. (Each scratch list is taken out only when it holds
        // something: most ticks have no event, follow-up step, pause or end of stream
        // to apply.)
        if !self.events.is_empty() {
            let mut events = std::mem::take(&mut self.events);
            for ev in events.drain(..) {
                self.handle_event(io, ev);
            }
            if self.events.is_empty() {
                self.events = events;
            }
        }
        synced?;

        // 5. RX slots: payload lent zero copy into its record, EOF slots.
        let fds = &self.fds;
        let tokens = &mut self.tokens;
        let peer_closed = &mut self.scratch.peer_closed;
        let pause = &mut self.scratch.pause;
        let walk = self.driver.rx_walk(u32::MAX, |ev| match ev {
            RxEvent::Data { fd, buf } => {
                // (A negative fd is past the table's end as a u32: no token.)
                let Some(&t) = fds.get(fd as u32 as usize) else { return };
                if t != NO_TOKEN && io.deliver(Token(t), buf) == Delivery::Pause {
                    pause.push(fd);
                }
            }
            RxEvent::Eof { fd } => {
                let Some(&t) = usize::try_from(fd).ok().and_then(|i| fds.get(i)) else { return };
                let Some(m) = tokens.get_mut(t as usize).and_then(Option::as_mut) else { return };
                if m.closing() {
                    peer_closed.push(fd);
                } else if !m.rx_done() && !m.listener() {
                    m.set_rx_done(true);
                    io.eof(Token(t));
                }
            }
        });
        Stats::add(&self.stats.completions, walk.data as u64);
        if !self.scratch.peer_closed.is_empty() {
            for fd in self.scratch.peer_closed.drain(..) {
                provider!(&mut self.provider, p => p.peer_closed(fd));
            }
        }
        if !self.scratch.pause.is_empty() {
            for fd in self.scratch.pause.drain(..) {
                provider!(&mut self.provider, p => p.pause(fd));
            }
        }

        // 6. End of stream the provider saw on a socket rather than in the ring (a FIN
        //    riding on data gets no EOF slot on kernel PASTE), after the walk.
        provider!(&mut self.provider, p => p.peer_fins(&self.driver, &mut self.fins));
        if !self.fins.is_empty() {
            self.apply_fins(io);
        }
        if walk.data > 0 {
            Stats::add(&self.stats.rx_buffers, walk.data as u64);
            Stats::add(&self.stats.rx_bytes, walk.bytes);
            Stats::add(&self.stats.rx_batches, 1);
        }
        if walk.pool_exhausted {
            Stats::add(&self.stats.pool_exhausted, 1);
        }
        Ok(())
    }
}

/// Checks a kernel configuration before anything is opened. A missing control device
/// is reported before a missing NIC name: it is the more basic lack.
fn check_kernel_config(cfg: &KernelConfig) -> Result<(), StartError> {
    use crate::kernel::REQUIREMENTS;
    let fail = |reason: String, errno| Err(StartError { backend: BackendKind::Paste, reason, errno });
    if !cfg.device.exists() {
        let device = cfg.device.display();
        return fail(
            format!("{device} does not exist (the netmap module is not loaded); {REQUIREMENTS}"),
            Some(libc::ENOENT),
        );
    }
    if cfg.ifname.is_empty() {
        return fail(
            format!(
                "no NIC named: KernelConfig::ifname is empty and PASTE_RT_PASTE_IF is not set \
                 (name the NIC PASTE attaches to, e.g. PASTE_RT_PASTE_IF=eth1); {REQUIREMENTS}"
            ),
            None,
        );
    }
    let (rings, slots) = (u32::from(cfg.rings), cfg.slots);
    if !(1..=u32::from(crate::sys::abi::pst::MAX_RINGS)).contains(&rings)
        || !(1..=crate::sys::abi::pst::MAX_SLOTS).contains(&slots)
    {
        return fail(format!("{rings} rings of {slots} slots: PASTE allows 1..=64 rings of 1..=2048 slots"), None);
    }
    Ok(())
}

impl Backend for PasteBackend {
    fn kind(&self) -> BackendKind {
        self.kind
    }

    fn describe(&self) -> String {
        let p = provider!(&self.provider, p => p.describe());
        format!(
            "{p}; pool {} buffers of {} B (tx headroom {})",
            self.driver.pool().capacity(),
            self.driver.pool().buf_size(),
            self.driver.pool().tx_headroom()
        )
    }

    fn capabilities(&self) -> Capabilities {
        // PASTE (v4) registers TCP sockets only.
        Capabilities { datagrams: false, unix_streams: false }
    }

    fn pool(&self) -> &BufPool {
        self.driver.pool()
    }

    fn stats(&self) -> &Stats {
        &self.stats
    }

    fn listen(&mut self, _io: &mut IoTable, token: Token) {
        self.pending.push(Pending::Listen(token));
    }

    fn register(&mut self, _io: &mut IoTable, token: Token) {
        self.pending.push(Pending::Register(token));
    }

    fn connect(&mut self, _io: &mut IoTable, token: Token, addr: SocketAddr) {
        self.pending.push(Pending::Connect(token, addr));
    }

    fn bind_dgram(&mut self, _io: &mut IoTable, token: Token) {
        self.pending.push(Pending::Refuse(token));
    }

    fn resume_recv(&mut self, _io: &mut IoTable, token: Token) {
        let Some(m) = self.mapping(token) else { return };
        let fd = m.fd;
        provider!(&mut self.provider, p => p.resume(fd));
    }

    /// Moves the record's sends into the ring at once (the ring is the application's
    /// between syncs); a socket not registered yet is listed for the next tick.
    #[inline]
    fn send(&mut self, io: &mut IoTable, token: Token) {
        match self.mapping(token) {
            Some(m) if !m.closing() && !m.tx_listed() => {
                let fd = m.fd;
                self.take_send_of(io, token, fd);
            }
            Some(m) if m.closing() => {}
            Some(_) => {}
            // Registered at the next tick: listed then.
            None => self.tx_ready.push(token),
        }
    }

    fn close(&mut self, _io: &mut IoTable, token: Token) {
        self.pending.push(Pending::Close(token));
    }

    fn flush_and_wait(&mut self, io: &mut IoTable, wait: Wait) -> io::Result<()> {
        self.tick(io, wait)
    }

    fn remote_waker(&self) -> Arc<dyn RemoteWake> {
        provider!(&self.provider, p => p.remote_waker())
    }
}

impl Drop for PasteBackend {
    /// Releases the port: the provider closes every fd it still owns (abortively on
    /// kernel PASTE, docs/paste-abi.md §10.3) and the driver's free buffers are relinked onto the extra
    /// list before the port goes away.
    fn drop(&mut self) {
        let fds: Vec<RawFd> = self.tokens.iter().flatten().map(|m| m.fd).collect();
        provider!(&mut self.provider, p => p.release(&mut self.driver, &fds));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_costs_the_backend_eight_bytes() {
        // One per token, so per connection (it was 12 bytes with a bool per flag).
        assert_eq!(size_of::<Option<Mapping>>(), 8);
        let mut m = Mapping { fd: 7, flags: Mapping::LISTENER, shutdown: None };
        m.set_closing(true);
        m.set_tx_listed(true);
        m.set_tx_listed(false);
        assert!(m.listener() && m.closing() && !m.tx_listed() && !m.rx_done());
    }

    #[test]
    fn kernel_start_error_names_the_missing_pieces() {
        let cfg = KernelConfig { device: "/nonexistent/netmap".into(), ..KernelConfig::default() };
        let e = PasteBackend::kernel(&cfg, &PoolConfig::default()).unwrap_err();
        assert_eq!((e.backend, e.errno), (BackendKind::Paste, Some(libc::ENOENT)));
        let text = e.to_string();
        for needle in [
            "/nonexistent/netmap does not exist",
            "not loaded",
            "--enable-paste",
            "6.0",
            "native netmap driver",
            "checksum offload",
            "PASTE_RT_PASTE_IF",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from: {text}");
        }
        // A device that exists but no interface named: that is what is missing then.
        let cfg = KernelConfig { device: "/dev/null".into(), ..KernelConfig::default() };
        let e = PasteBackend::kernel(&cfg, &PoolConfig::default()).unwrap_err();
        assert!(e.reason.contains("no NIC named"), "{e}");
        // Out-of-range rings or slots are refused before anything is opened.
        let cfg =
            KernelConfig { device: "/dev/null".into(), ifname: "eth1".into(), slots: 4096, ..KernelConfig::default() };
        assert!(PasteBackend::kernel(&cfg, &PoolConfig::default()).unwrap_err().reason.contains("1..=2048 slots"));
        // And opening it fails at REGISTER, naming the device.
        let cfg = KernelConfig { device: "/dev/null".into(), ifname: "eth1".into(), ..KernelConfig::default() };
        let e = PasteBackend::kernel(&cfg, &PoolConfig::default()).unwrap_err();
        assert!(e.reason.contains("not a netmap control device"), "{e}");
    }

    #[test]
    fn emulated_refuses_what_it_cannot_do() {
        let e = PasteBackend::emulated(PoolConfig { kept: vec![1], ..PoolConfig::default() }).unwrap_err();
        assert_eq!(e.backend, BackendKind::PasteEmu);
        assert!(e.reason.contains("kept"), "{e}");
        let e = PasteBackend::emulated(PoolConfig { count: 70_000, ..PoolConfig::default() }).unwrap_err();
        assert!(e.reason.contains("16-bit"), "{e}");
    }

    #[test]
    fn kept_buffers_survive_a_restart_of_a_file_backed_port() {
        let dir = tempfile::tempdir().unwrap();
        let pool = PoolConfig { count: 64, memory: PoolMemory::File(dir.path().join("port")), ..PoolConfig::default() };
        let kept = {
            let b = PasteBackend::emulated(pool.clone()).unwrap();
            let idx = b.pool().alloc().unwrap();
            // SAFETY: idx was just allocated from this pool; 8 bytes fit a buffer.
            unsafe { std::ptr::copy_nonoverlapping(b"durable!".as_ptr(), b.pool().buf_ptr(idx), 8) };
            // SAFETY: idx is lent (allocated above) and handed over once.
            unsafe { b.pool().lend_rx(idx, 0, 8) }.keep()
        };
        let b = PasteBackend::emulated(PoolConfig { kept: vec![kept.index], ..pool }).unwrap();
        assert_eq!(b.pool().kept_slice(&kept).unwrap(), b"durable!");
        assert_eq!(b.pool().capacity(), 64, "kept buffers count against the pool");
        assert_eq!(b.pool().free_count(), 63);
        assert!(b.pool().release_kept(kept));
        assert_eq!(b.pool().free_count(), 64);
    }

    #[test]
    fn emulated_file_backed_port_starts_and_describes_itself() {
        let dir = tempfile::tempdir().unwrap();
        let pool =
            PoolConfig { count: 256, memory: PoolMemory::File(dir.path().join("port")), ..PoolConfig::default() };
        let b = PasteBackend::emulated(pool).unwrap();
        assert_eq!(b.kind(), BackendKind::PasteEmu);
        assert_eq!(b.pool().capacity(), 256);
        assert!(b.describe().contains("emulated"), "{}", b.describe());
        assert!(dir.path().join("port").metadata().unwrap().len() > 256 * 2048);
    }
}
