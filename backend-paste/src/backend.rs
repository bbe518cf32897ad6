//! [`PasteBackend`]: the [`Backend`] over one [`RingDriver`] and a port provider.
//!
//! Owns the ring driver (and so the pool), the provider that plays or talks to the
//! kernel (`emulated`: [`EmuProvider`], io_uring doing the socket work; `kernel`:
//! [`KernelProvider`], `/dev/netmap`), and the runtime-facing state of every fd it was
//! handed: which token names it, whether the token is still open, a pending
//! shutdown. The tick reads top to bottom in [`PasteBackend::tick`]:
//!
//! ```text
//! ops -> ring.tx_fill() -> provider.sync() (ONE enter / ONE poll) -> events
//!     -> ring.tx_reclaim() (Sent) -> ring.rx_walk() (Recv / Eof)
//! ```
//!
//! Everything is keyed by fd, as PASTE's slots are; a token lives in `conns[fd]`
//! until its `Close`, after which no completion names it. The fd number itself is
//! only forgotten when the provider reports it closed ([`Event::Closed`]), so a
//! late slot of an old connection can never reach a new one on the same number.
//! This module makes no system call of its own: the providers do, inside `poll`.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use paste_rt_core::{
    Backend, BackendKind, BufPool, Completion, DenseMap, Op, PoolConfig, PoolMemory, RemoteWake, SendData, Shutdown,
    StartError, Stats, Token,
};

use crate::emu_provider::EmuProvider;
use crate::kernel::KernelConfig;
use crate::kernel_provider::KernelProvider;
use crate::ring::{RingDriver, RxEvent};

/// What a provider reports from its sync, by fd (the backend maps fds to tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// A listener accepted `fd`.
    Accepted {
        /// The listening socket.
        listener: RawFd,
        /// The new socket.
        fd: RawFd,
    },
    /// Accepting on `listener` failed (reported once per episode; retried later).
    AcceptError {
        /// The listening socket.
        listener: RawFd,
        /// The errno.
        errno: i32,
    },
    /// A connect finished (0 = ok); on success the socket is registered.
    Connected {
        /// The socket.
        fd: RawFd,
        /// 0 or the errno.
        errno: i32,
    },
    /// The socket failed (a reset): no slot comes for it, the socket said so.
    RecvError {
        /// The socket.
        fd: RawFd,
        /// The errno (`ECONNRESET`, ...).
        errno: i32,
    },
    /// Sending on the socket failed; what was queued is gone.
    SendError {
        /// The socket.
        fd: RawFd,
        /// The errno.
        errno: i32,
    },
    /// The provider closed `fd`: its number may be reused from now on.
    Closed {
        /// The closed fd.
        fd: RawFd,
    },
    /// `fd`'s socket has send space (seen after the sync's txsync) and the ring driver
    /// wanted to know ([`RingDriver::tx_wants_space`], [`RingDriver::tx_low_credit`]).
    Writable {
        /// The socket.
        fd: RawFd,
        /// The exact free send space, when the provider knows it (emulated port);
        /// `None`: `POLLOUT` (at least a third of the send buffer).
        free: Option<u64>,
    },
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Listener,
    Stream,
}

/// The runtime's view of one fd handed to the backend.
#[derive(Debug)]
struct Conn {
    token: Token,
    role: Role,
    /// The token still names this fd (no `Close` yet).
    open: bool,
    /// A `Close` was handed to the provider; waiting for [`Event::Closed`].
    closing: bool,
    /// Shut down this half once everything queued before has been taken by the kernel.
    shutdown: Option<Shutdown>,
    /// EOF or an error was reported: no more receive completions.
    rx_done: bool,
    /// A send error was reported: later sends fail at once.
    tx_failed: Option<i32>,
}

/// The PASTE backend (DESIGN.md §4): the ring driver over a kernel or an emulated
/// port. Build it with [`PasteBackend::emulated`] or [`PasteBackend::kernel`].
pub struct PasteBackend {
    kind: BackendKind,
    driver: RingDriver,
    provider: Provider,
    stats: Stats,
    ops: Vec<Op>,
    /// Indexed by fd.
    conns: Vec<Option<Conn>>,
    tokens: DenseMap<RawFd>,
    /// Streams with a shutdown waiting for their data to be taken.
    shutdowns: Vec<RawFd>,
    events: Vec<Event>,
    /// Completions decided while applying ops (e.g. a send on a failed connection).
    deferred: Vec<Completion>,
    /// Scratch list of the provider's end-of-stream reports (reused).
    fins: Vec<RawFd>,
}

impl std::fmt::Debug for PasteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasteBackend").field("kind", &self.kind).field("driver", &self.driver).finish()
    }
}

/// Settings of the emulated port, derived from the runtime's pool settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmuSettings {
    /// The pool: `count` becomes the port's extra buffers (the application's pool),
    /// `buf_size` the port's buffer size, `File` memory backs the whole port.
    pub pool: PoolConfig,
    /// Slots per ring (default 1024).
    pub slots: u32,
    /// Spare buffers of the emulated kernel (default: the pool's count, at least 2048).
    pub kernel_bufs: u32,
}

impl EmuSettings {
    /// Defaults around `pool`.
    pub fn new(pool: PoolConfig) -> EmuSettings {
        let kernel_bufs = pool.count.max(2048);
        EmuSettings { pool, slots: crate::sys::abi::pst::DEFAULT_SLOTS, kernel_bufs }
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

    /// `paste`: kernel PASTE through `/dev/netmap`, configured from the environment
    /// (`PASTE_RT_PASTE_IF` names the NIC; see [`KernelConfig`]). On a machine without
    /// it, the error names what is missing and what is needed. The pool is the
    /// port's extra buffers (`pool.count` of them are asked for); a file-backed pool
    /// is the port's extmem file (persistent: its kept buffers survive a restart), and
    /// is refused where extmem is switched off (see [`KernelConfig::with_pool`]).
    pub fn kernel(pool: PoolConfig) -> Result<PasteBackend, StartError> {
        let cfg = kernel_config(|k| std::env::var(k).ok(), &pool)?;
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
            ops: Vec::with_capacity(256),
            conns: Vec::new(),
            tokens: DenseMap::new(),
            shutdowns: Vec::new(),
            events: Vec::with_capacity(256),
            deferred: Vec::new(),
            fins: Vec::new(),
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
        self.conns.iter().filter(|c| c.is_some()).count()
    }

    fn conn_mut(&mut self, fd: RawFd) -> Option<&mut Conn> {
        usize::try_from(fd).ok().and_then(|i| self.conns.get_mut(i)).and_then(Option::as_mut)
    }

    fn insert(&mut self, token: Token, fd: RawFd, role: Role) -> bool {
        if let Some(&old) = self.tokens.get(token.0 as usize) {
            // The runtime reused a token it did not close: the old owner goes.
            self.close(token);
            debug_assert_ne!(old, fd);
        }
        let Ok(i) = usize::try_from(fd) else { return false };
        if self.conns.len() <= i {
            self.conns.resize_with(i + 1, || None);
        }
        if self.conns[i].is_some() {
            // The fd number is still ours (closing): the runtime cannot own it.
            return false;
        }
        self.conns[i] =
            Some(Conn { token, role, open: true, closing: false, shutdown: None, rx_done: false, tx_failed: None });
        self.tokens.insert(token.0 as usize, fd);
        true
    }

    fn stream(&self, token: Token) -> Option<RawFd> {
        let fd = *self.tokens.get(token.0 as usize)?;
        let c = self.conns.get(fd as usize)?.as_ref()?;
        (c.role == Role::Stream && c.open).then_some(fd)
    }

    /// Applies the ops queued since the last poll, in order.
    fn apply_ops(&mut self, out: &mut Vec<Completion>) {
        let mut ops = std::mem::take(&mut self.ops);
        for op in ops.drain(..) {
            self.apply(op, out);
        }
        self.ops = ops;
    }

    fn apply(&mut self, op: Op, out: &mut Vec<Completion>) {
        match op {
            Op::Listen { token, fd } => {
                if !self.insert(token, fd, Role::Listener) {
                    out.push(Completion::AcceptError { listener: token, errno: libc::EBADF });
                    return;
                }
                provider!(&mut self.provider, p => p.listen(fd, &self.stats));
            }
            Op::Register { token, fd } => {
                if !self.insert(token, fd, Role::Stream) {
                    out.push(Completion::RecvError { token, errno: libc::EBADF });
                    return;
                }
                let r = provider!(&mut self.provider, p => p.register(fd, &self.stats));
                match r {
                    Ok(()) => self.set_send_budget(fd),
                    Err(errno) => self.fail(fd, errno, out),
                }
            }
            Op::Connect { token, fd, addr } => {
                if !self.insert(token, fd, Role::Stream) {
                    out.push(Completion::Connected { token, errno: libc::EBADF });
                    return;
                }
                provider!(&mut self.provider, p => p.connect(fd, addr, &self.stats, &mut self.events));
            }
            Op::PauseRecv(token) => {
                if let Some(fd) = self.stream(token) {
                    provider!(&mut self.provider, p => p.pause(fd));
                }
            }
            Op::ResumeRecv(token) => {
                if let Some(fd) = self.stream(token) {
                    provider!(&mut self.provider, p => p.resume(fd));
                }
            }
            Op::Send { token, data } => {
                let Some(fd) = self.stream(token) else { return };
                if data.is_empty() {
                    return;
                }
                if let Some(errno) = self.conn_mut(fd).and_then(|c| c.tx_failed) {
                    out.push(Completion::SendError { token, errno });
                    return;
                }
                self.queue_send(fd, token, data, out);
            }
            Op::Shutdown { token, how } => {
                let Some(fd) = self.stream(token) else { return };
                let Some(c) = self.conn_mut(fd) else { return };
                let first = c.shutdown.is_none();
                c.shutdown = Some(match (c.shutdown, how) {
                    (None, h) => h,
                    (Some(a), b) if a == b => a,
                    _ => Shutdown::Both,
                });
                if first {
                    self.shutdowns.push(fd);
                }
            }
            Op::Close(token) => self.close(token),
            // PASTE (v4) carries TCP only: a datagram socket is refused, its fd
            // closed (the runtime refuses UDP on PASTE before it gets here).
            Op::BindDgram { token, fd } => {
                provider!(&mut self.provider, p => p.close_stray(fd, &self.stats));
                out.push(Completion::RecvError { token, errno: libc::EPROTONOSUPPORT });
            }
            Op::SendTo { token, data, .. } => {
                let bytes = data.len() as u32;
                out.push(Completion::SentTo { token, bytes, errno: libc::EPROTONOSUPPORT });
            }
        }
    }

    fn queue_send(&mut self, fd: RawFd, token: Token, data: SendData, out: &mut Vec<Completion>) {
        if let Err(e) = self.driver.tx_queue(fd, data) {
            // Only an fd PASTE cannot carry (> 65534) gets here.
            let errno = match e {
                crate::ring::RingError::FdOutOfRange(_) => libc::EBADF,
                _ => libc::EINVAL,
            };
            if let Some(c) = self.conn_mut(fd) {
                c.tx_failed = Some(errno);
            }
            out.push(Completion::SendError { token, errno });
        }
    }

    /// A registered socket's send buffer becomes its send budget in the ring driver,
    /// so its slots go on the ring only while the socket can take them.
    fn set_send_budget(&mut self, fd: RawFd) {
        if let Some(bytes) = provider!(&self.provider, p => p.send_budget(fd)) {
            let _ = self.driver.tx_set_budget(fd, bytes);
        }
    }

    /// A connection failed (registration refused, reset): report it once; the
    /// provider stops watching it; its queued sends are dropped.
    fn fail(&mut self, fd: RawFd, errno: i32, out: &mut Vec<Completion>) {
        self.driver.tx_drop_fd(fd);
        let Some(c) = self.conn_mut(fd) else { return };
        c.tx_failed.get_or_insert(errno);
        if c.open && !c.rx_done {
            c.rx_done = true;
            out.push(Completion::RecvError { token: c.token, errno });
        }
    }

    /// Forgets the token at once; the fd is closed by the provider: a listener right
    /// away, a stream once its taken data has left (graceful close, fd number held
    /// until then so that no late slot can reach a new connection).
    fn close(&mut self, token: Token) {
        let Some(fd) = self.tokens.remove(token.0 as usize) else { return };
        let Some(c) = self.conn_mut(fd) else { return };
        c.open = false;
        c.closing = true;
        let role = c.role;
        self.driver.tx_drop_fd(fd);
        match role {
            Role::Listener => provider!(&mut self.provider, p => p.close_listener(fd, &self.stats, &mut self.events)),
            Role::Stream => provider!(&mut self.provider, p => p.close_stream(fd, &self.stats, &mut self.events)),
        }
    }

    /// Shutdowns whose data the kernel has taken go to the provider.
    fn run_shutdowns(&mut self) {
        let mut i = 0;
        while i < self.shutdowns.len() {
            let fd = self.shutdowns[i];
            let drained = self.driver.tx_queued(fd) == 0 && self.driver.tx_inflight(fd) == 0;
            let c = usize::try_from(fd).ok().and_then(|i| self.conns.get_mut(i)).and_then(Option::as_mut);
            match c {
                Some(c) if c.open && c.shutdown.is_some() => {
                    if drained {
                        let how = c.shutdown.take().unwrap_or(Shutdown::Write);
                        provider!(&mut self.provider, p => p.shutdown(fd, how, &self.stats));
                        self.shutdowns.swap_remove(i);
                    } else {
                        i += 1;
                    }
                }
                _ => {
                    self.shutdowns.swap_remove(i);
                }
            }
        }
    }

    fn handle_event(&mut self, ev: Event, out: &mut Vec<Completion>) {
        let token_of = |conns: &[Option<Conn>], fd: RawFd| -> Option<Token> {
            let c = conns.get(usize::try_from(fd).ok()?)?.as_ref()?;
            c.open.then_some(c.token)
        };
        match ev {
            Event::Accepted { listener, fd } => match token_of(&self.conns, listener) {
                Some(token) => {
                    Stats::add(&self.stats.accepts, 1);
                    out.push(Completion::Accepted { listener: token, fd });
                }
                None => provider!(&mut self.provider, p => p.close_stray(fd, &self.stats)),
            },
            Event::AcceptError { listener, errno } => {
                if let Some(token) = token_of(&self.conns, listener) {
                    out.push(Completion::AcceptError { listener: token, errno });
                }
            }
            Event::Connected { fd, errno } => {
                if let Some(token) = token_of(&self.conns, fd) {
                    out.push(Completion::Connected { token, errno });
                    if errno == 0 {
                        self.set_send_budget(fd);
                    } else {
                        if let Some(c) = self.conn_mut(fd) {
                            c.rx_done = true;
                            c.tx_failed = Some(errno);
                        }
                    }
                }
            }
            Event::RecvError { fd, errno } => self.fail(fd, errno, out),
            Event::SendError { fd, errno } => {
                self.driver.tx_drop_fd(fd);
                if let Some(c) = self.conn_mut(fd) {
                    if c.open && c.tx_failed.is_none() {
                        c.tx_failed = Some(errno);
                        out.push(Completion::SendError { token: c.token, errno });
                    }
                }
            }
            Event::Writable { fd, free: None } => self.driver.tx_writable(fd),
            Event::Writable { fd, free: Some(free) } => self.driver.tx_send_space(fd, free),
            Event::Closed { fd } => {
                if let Some(slot) = usize::try_from(fd).ok().and_then(|i| self.conns.get_mut(i)) {
                    if slot.as_ref().is_some_and(|c| !c.open) {
                        *slot = None;
                    }
                }
            }
        }
    }

    /// One tick's I/O (DESIGN.md §2, step 2), top to bottom.
    fn tick(&mut self, timeout: Option<Duration>, out: &mut Vec<Completion>) -> io::Result<()> {
        let first = out.len();
        out.append(&mut self.deferred);

        // 1. Ops: registrations, sends into the per-fd queues, pauses, closes.
        self.apply_ops(out);

        // 2. Queued sends into TX slots (zero-copy swaps of TxBufs), head = cur.
        self.driver.tx_fill();

        // 3. The sync: one io_uring_enter (emulated) or one poll() (kernel). It does
        //    txsync, the socket work, the wait and rxsync. Do not wait when there are
        //    completions already, or RX slots the last walk left for lack of buffers.
        let busy = out.len() > first || (self.driver.rx_ready() > 0 && self.driver.pool().free_count() > 0);
        let timeout = if busy { Some(Duration::ZERO) } else { timeout };
        let mut events = std::mem::take(&mut self.events);
        let synced = provider!(&mut self.provider, p => p.sync(&self.driver, timeout, &self.stats, &mut events));
        for ev in events.drain(..) {
            self.handle_event(ev, out);
        }
        self.events = events;
        synced?;

        // 4. TX slots the kernel took: their bytes are sent, from the app's view.
        let conns = &self.conns;
        let stats = &self.stats;
        self.driver.tx_reclaim(|fd, bytes| {
            Stats::add(&stats.tx_bytes, bytes);
            if let Some(Some(c)) = usize::try_from(fd).ok().and_then(|i| conns.get(i)) {
                if c.open {
                    out.push(Completion::Sent { token: c.token, bytes: bytes.min(u32::MAX as u64) as u32 });
                }
            }
        });
        self.run_shutdowns();

        // 5. RX slots: payload lent zero copy, EOF slots.
        let conns = &mut self.conns;
        let mut peer_closed = Vec::new();
        let walk = self.driver.rx_walk(u32::MAX, |ev| match ev {
            RxEvent::Data { fd, buf } => {
                if let Some(Some(c)) = usize::try_from(fd).ok().and_then(|i| conns.get(i)) {
                    if c.open && c.role == Role::Stream && !c.rx_done {
                        out.push(Completion::Recv { token: c.token, buf });
                    }
                }
            }
            RxEvent::Eof { fd } => {
                if let Some(Some(c)) = usize::try_from(fd).ok().and_then(|i| conns.get_mut(i)) {
                    if c.open && c.role == Role::Stream && !c.rx_done {
                        c.rx_done = true;
                        out.push(Completion::Eof(c.token));
                    } else if c.closing {
                        peer_closed.push(fd);
                    }
                }
            }
        });
        for fd in peer_closed {
            provider!(&mut self.provider, p => p.peer_closed(fd));
        }
        // 6. End of stream the provider saw on a socket rather than in the ring (a FIN
        //    riding on data gets no EOF slot on kernel PASTE), after the walk.
        let mut fins = std::mem::take(&mut self.fins);
        provider!(&mut self.provider, p => p.peer_fins(&self.driver, &mut fins));
        for fd in fins.drain(..) {
            let c = usize::try_from(fd).ok().and_then(|i| self.conns.get_mut(i)).and_then(Option::as_mut);
            match c {
                Some(c) if c.open && c.role == Role::Stream && !c.rx_done => {
                    c.rx_done = true;
                    out.push(Completion::Eof(c.token));
                }
                Some(c) if c.closing => provider!(&mut self.provider, p => p.peer_closed(fd)),
                _ => {}
            }
        }
        self.fins = fins;
        if walk.data > 0 {
            Stats::add(&self.stats.rx_buffers, walk.data as u64);
            Stats::add(&self.stats.rx_bytes, walk.bytes);
            Stats::add(&self.stats.rx_batches, 1);
        }
        if walk.pool_exhausted {
            Stats::add(&self.stats.pool_exhausted, 1);
        }
        Stats::add(&self.stats.completions, (out.len() - first) as u64);
        Ok(())
    }
}

/// The kernel configuration from `get` (the environment). A missing control device
/// is reported before a missing `PASTE_RT_PASTE_IF`: it is the more basic lack.
fn kernel_config(get: impl Fn(&str) -> Option<String>, pool: &PoolConfig) -> Result<KernelConfig, StartError> {
    use crate::kernel::{ENV_DEVICE, ENV_EXTRA_BUFS, REQUIREMENTS};
    let device = get(ENV_DEVICE).filter(|d| !d.is_empty()).unwrap_or_else(|| "/dev/netmap".into());
    if !std::path::Path::new(&device).exists() {
        return Err(StartError {
            backend: BackendKind::Paste,
            reason: format!("{device} does not exist (the netmap module is not loaded); {REQUIREMENTS}"),
            errno: Some(libc::ENOENT),
        });
    }
    KernelConfig::from_lookup(&get)?.with_pool(pool, get(ENV_EXTRA_BUFS).is_some())
}

/// Buffers on the kernel side of an emulated port (see
/// [`PasteBackend::emu_kernel_buffers`]).
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

    fn pool(&self) -> &BufPool {
        self.driver.pool()
    }

    fn stats(&self) -> &Stats {
        &self.stats
    }

    fn submit(&mut self, op: Op) {
        self.ops.push(op);
    }

    fn flush_and_wait(&mut self, timeout: Option<Duration>, out: &mut Vec<Completion>) -> io::Result<()> {
        self.tick(timeout, out)
    }

    fn remote_waker(&self) -> Arc<dyn RemoteWake> {
        provider!(&self.provider, p => p.remote_waker())
    }
}

impl Drop for PasteBackend {
    /// Releases the port: the provider closes every fd it still owns (abortively on
    /// kernel PASTE, §10.3) and the driver's free buffers are relinked onto the extra
    /// list before the port goes away.
    fn drop(&mut self) {
        let mut fds: Vec<RawFd> = Vec::new();
        for (i, c) in self.conns.iter().enumerate() {
            if c.is_some() {
                fds.push(i as RawFd);
            }
        }
        provider!(&mut self.provider, p => p.release(&mut self.driver, &fds));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_start_error_names_the_missing_pieces() {
        let pool = PoolConfig::default();
        let e = kernel_config(|k| (k == crate::kernel::ENV_DEVICE).then(|| "/nonexistent/netmap".into()), &pool)
            .unwrap_err();
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
        let e = kernel_config(|k| (k == crate::kernel::ENV_DEVICE).then(|| "/dev/null".into()), &pool).unwrap_err();
        assert!(e.reason.contains("PASTE_RT_PASTE_IF is not set"), "{e}");
        let cfg = kernel_config(
            |k| match k {
                crate::kernel::ENV_DEVICE => Some("/dev/null".into()),
                crate::kernel::ENV_IF => Some("eth1".into()),
                _ => None,
            },
            &PoolConfig { count: 777, ..PoolConfig::default() },
        )
        .unwrap();
        assert_eq!((cfg.ifname.as_str(), cfg.extra_bufs), ("eth1", 777));
        // And opening it fails at REGISTER, naming the device.
        let e = PasteBackend::kernel_with(&cfg).unwrap_err();
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
