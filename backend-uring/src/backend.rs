//! [`UringBackend`]: the [`Backend`] over the io_uring engine and the runtime's
//! [`IoTable`] (docs/architecture.md, the backends).
//!
//! Owns the [`SocketEngine`] (the ring, every socket's slot — slot id = the record's
//! token — and the wake-up), the pool and its recycle ring registered as the receive
//! ring ([`PoolRing`]: buffer id = pool index), and the datagram support
//! ([`Datagrams`]). The tick is [`SocketEngine::tick`]: re-arm, one
//! `io_uring_enter`, and every completion applied to its record in place through
//! [`TableSink`].
//!
//! The receive ring starts small ([`UringConfig::rx_ring_start`]) and doubles each
//! time a receive finds it empty, up to [`UringConfig::rx_ring_bufs`]: idle
//! connections then touch few distinct buffers (and pages), and a busy server still
//! gets the buffers it needs.
//!
//! It must never make a system call outside that enter while the backend runs (fds are
//! closed with `IORING_OP_CLOSE`, the eventfd is read with `IORING_OP_READ`), and never
//! free memory the kernel may still touch (the engine's drop order).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use paste_rt_core::{
    Backend, BackendKind, BufPool, Capabilities, IoTable, PoolConfig, RemoteWake, SendStep, StartError, Stats, Token,
    Wait,
};
use paste_rt_uring_engine::pool_ring::PoolRing;
use paste_rt_uring_engine::probe::{self, RingConfig, UringProbe};
use paste_rt_uring_engine::{EngineConfig, SocketEngine};

use crate::dgram::Datagrams;
use crate::sink::TableSink;

/// Buffer group id of the receive ring.
const BGID: u16 = 0;

/// Settings of the io_uring backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UringConfig {
    /// The buffer pool (anonymous or file-backed). At most 65536 buffers: io_uring
    /// buffer ids are 16-bit. Default: [`PoolConfig::default`] (4096 x 2048 B).
    pub pool: PoolConfig,
    /// Submission queue entries (default 4096). Sized so a tick's SQEs fit: when they
    /// do not, the rest waits in a local overflow queue for the next tick's enter.
    pub sq_entries: u32,
    /// Completion queue entries (default 16384, 4x the SQ: multishot ops post many
    /// CQEs per SQE). Overflow beyond it is kept by the kernel (`NODROP`), not lost.
    pub cq_entries: u32,
    /// Most pool buffers lent to the kernel's receive ring at once, shared by every
    /// connection; the rest of the pool stays free for `TxBuf`s and for the buffers
    /// the application holds. 0 (default) = half the pool, at least 1 and at most
    /// 4096.
    pub rx_ring_bufs: u32,
    /// Buffers the receive ring holds at first (default 256, at most `rx_ring_bufs`);
    /// it doubles whenever a receive finds it empty.
    pub rx_ring_start: u32,
    /// Receive bundles (one completion filling several buffers) when the kernel has
    /// them (6.10+). Default true.
    pub recv_bundle: bool,
    /// Per-connection bound on receive buffers in flight: each arming of a
    /// connection's multishot receive ends after this many buffers' worth of bytes
    /// (the kernel's `mshot_total_len`, Linux 6.16+), and is re-armed at the next tick
    /// unless the connection paused meanwhile. Default 32 (64 KiB of 2 KiB buffers);
    /// 0 = no limit. On older kernels (see [`UringProbe::recv_limit`]) one connection
    /// may take every buffer of the ring before its pause takes effect.
    pub rx_limit_bufs: u32,
    /// Most queued sends of one connection gathered into one `SENDMSG` (1 to
    /// [`MAX_SEND_BATCH`](crate::MAX_SEND_BATCH), default 16).
    pub send_batch: u32,
    /// How long a listener waits before accepting again after `EMFILE` and the like,
    /// unless a close frees an fd first (default 100 ms).
    pub accept_retry: Duration,
    /// How long a tick's wait may look past completions of sends nobody waits for
    /// before it settles for them (default 10 ms; zero turns it off). It lets one
    /// request on an idle connection cost one `io_uring_enter` instead of two; a send
    /// the kernel parks on a full socket delays the next wake-up by at most this much.
    /// Needs Linux 6.12 (`IORING_FEAT_MIN_TIMEOUT`); off before.
    pub quiet_send_wait: Duration,
    /// Pool buffers lent to the datagram receive ring (registered at the first
    /// datagram socket), shared by every datagram socket. 0 (default) = an eighth of
    /// the pool, at least 1, at most 256.
    pub dgram_ring_bufs: u32,
}

impl Default for UringConfig {
    fn default() -> Self {
        UringConfig {
            pool: PoolConfig::default(),
            sq_entries: 4096,
            cq_entries: 16384,
            rx_ring_bufs: 0,
            rx_ring_start: 256,
            recv_bundle: true,
            rx_limit_bufs: 32,
            send_batch: 16,
            accept_retry: Duration::from_millis(100),
            quiet_send_wait: paste_rt_uring_engine::QUIET_SEND_WAIT,
            dgram_ring_bufs: 0,
        }
    }
}

/// The io_uring backend. See the module docs.
///
/// Field order is drop order where it matters: the engine (and with it the ring)
/// shuts down in `Drop` before the receive ring is unregistered and the pool goes.
pub struct UringBackend {
    engine: SocketEngine,
    rx_ring: PoolRing,
    dgram: Datagrams,
    pool: BufPool,
    stats: Stats,
    use_bundle: bool,
    recv_limit: u32,
}

impl UringBackend {
    /// Builds the pool, opens and probes the ring, registers the receive ring and arms
    /// the wake-up eventfd. Never falls back: an error says what is missing.
    pub fn new(config: &UringConfig) -> Result<UringBackend, StartError> {
        let kind = BackendKind::Uring;
        let pool = BufPool::new(&config.pool, 0).map_err(|e| StartError::os(kind, "buffer pool", &e))?;
        let ring_config = RingConfig { sq_entries: config.sq_entries, cq_entries: config.cq_entries };
        let (ring, probe) = probe::open_ring(&ring_config).map_err(|e| e.into_start_error(kind))?;
        let entries = match config.rx_ring_bufs {
            0 => (pool.capacity() / 2).clamp(1, 4096),
            n => n.min(pool.capacity()).max(1),
        };
        let start = config.rx_ring_start.clamp(1, entries);
        let rx_ring = PoolRing::new(&ring.submitter(), &pool, BGID, entries, start)
            .map_err(|e| StartError::os(kind, "register the provided buffer ring (IORING_REGISTER_PBUF_RING)", &e))?;
        let use_bundle = config.recv_bundle && probe.recv_bundle;
        let recv_limit = if probe.recv_limit {
            (config.rx_limit_bufs as u64 * pool.buf_size() as u64).min(u32::MAX as u64) as u32
        } else {
            0
        };
        let engine_config = EngineConfig {
            bgid: BGID,
            bundle: use_bundle,
            recv_limit,
            send_batch: config.send_batch as usize,
            accept_retry: config.accept_retry,
            quiet_send_wait: config.quiet_send_wait,
        };
        let engine = SocketEngine::new(ring, probe, engine_config)
            .map_err(|e| StartError::os(kind, "eventfd for remote wake-ups", &e))?;
        let dgram_target = match config.dgram_ring_bufs {
            0 => (pool.capacity() / 8).clamp(1, 256),
            n => n.min(pool.capacity()).max(1),
        };
        Ok(UringBackend {
            engine,
            rx_ring,
            dgram: Datagrams::new(dgram_target),
            pool,
            stats: Stats::default(),
            use_bundle,
            recv_limit,
        })
    }

    /// What was probed at start.
    pub fn probe(&self) -> &UringProbe {
        self.engine.probe()
    }

    /// Operations in the kernel (or queued for it). At rest this is the number of
    /// armed listeners and connections plus one (the wake-up read).
    pub fn ops_in_flight(&self) -> u64 {
        self.engine.ops_in_flight()
    }

    /// Slots in use: open sockets, plus closed ones whose last operations have not
    /// completed yet.
    pub fn live_slots(&self) -> usize {
        self.engine.live_slots()
    }

    /// SQEs that ever waited in the overflow queue because the SQ was full.
    pub fn sq_overflows(&self) -> u64 {
        self.engine.sq_overflows()
    }

    /// The receive ring's target and how many buffers it holds now.
    pub fn rx_ring_state(&self) -> (u32, u32) {
        self.pool.recycle_state()
    }

    /// Splits the backend into the engine and the sink over `io`.
    #[inline]
    fn parts<'a>(&'a mut self, io: &'a mut IoTable) -> (&'a mut SocketEngine, TableSink<'a>, &'a Stats) {
        let sink = TableSink::new(io, &self.pool, &mut self.dgram, &self.stats);
        (&mut self.engine, sink, &self.stats)
    }
}

impl Backend for UringBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Uring
    }

    fn describe(&self) -> String {
        let (target, _) = self.pool.recycle_state();
        format!(
            "io_uring: {}; rx buffer ring {} x {} B (starts at {target}, grows when dry){}, {}, send batch {}",
            self.engine.probe().describe(),
            self.rx_ring.entries(),
            self.pool.buf_size(),
            if self.use_bundle { " with bundles" } else { "" },
            match (self.recv_limit, self.engine.probe().recv_limit) {
                (0, true) => "no per-connection recv limit (configured off)".to_string(),
                (0, false) =>
                    "no per-connection recv limit (kernel lacks it: a connection may fill the ring)".to_string(),
                (n, _) => format!("recv limit {n} B per connection arming"),
            },
            self.engine.config().send_batch,
        )
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { datagrams: true, unix_streams: true }
    }

    fn pool(&self) -> &BufPool {
        &self.pool
    }

    fn stats(&self) -> &Stats {
        &self.stats
    }

    fn listen(&mut self, io: &mut IoTable, token: Token) {
        let fd = io.get(token).fd();
        self.engine.listen(token.0, fd, &self.stats);
    }

    fn register(&mut self, io: &mut IoTable, token: Token) {
        let fd = io.get(token).fd();
        self.engine.register(token.0, fd, &self.stats);
    }

    fn connect(&mut self, io: &mut IoTable, token: Token, addr: SocketAddr) {
        let fd = io.get(token).fd();
        self.engine.connect(token.0, fd, addr, &self.stats);
    }

    fn bind_dgram(&mut self, io: &mut IoTable, token: Token) {
        let fd = io.get(token).fd();
        self.engine.adopt(token.0, fd);
        let (engine, mut sink, stats) = self.parts(io);
        sink.dgram_open(engine, token.0, stats);
    }

    fn resume_recv(&mut self, io: &mut IoTable, token: Token) {
        if io.get(token).kind() == paste_rt_core::RecordKind::Dgram {
            let (engine, mut sink, stats) = self.parts(io);
            sink.dgram_resume(engine, token.0, stats);
        } else {
            self.engine.resume(token.0, &self.stats);
        }
    }

    #[inline]
    fn send(&mut self, io: &mut IoTable, token: Token) {
        if io.get(token).kind() == paste_rt_core::RecordKind::Dgram {
            let (engine, mut sink, stats) = self.parts(io);
            sink.dgram_send(engine, token.0, stats);
            return;
        }
        let step = io.send_step(token);
        let (engine, mut sink, stats) = self.parts(io);
        engine.drive_send(token.0, step, &mut sink, stats);
    }

    #[inline]
    fn send_queued_data(&mut self, io: &mut IoTable, token: Token) {
        // A stream (queue_send refuses anything else) whose send path was idle: the
        // SQE goes straight from its queue.
        let (engine, mut sink, stats) = self.parts(io);
        engine.drive_send(token.0, SendStep::Data, &mut sink, stats);
    }

    fn close(&mut self, io: &mut IoTable, token: Token) {
        let (engine, mut sink, stats) = self.parts(io);
        engine.close(token.0, &mut sink, stats);
    }

    fn flush_and_wait(&mut self, io: &mut IoTable, wait: Wait) -> io::Result<()> {
        let (engine, mut sink, stats) = self.parts(io);
        sink.dgram_setup(engine, stats);
        engine.tick(wait, &mut sink, stats)
    }

    fn remote_waker(&self) -> Arc<dyn RemoteWake> {
        self.engine.remote_waker()
    }
}

impl Drop for UringBackend {
    /// Cancels every op and waits (bounded) for the kernel to let go of our memory,
    /// closes the fds still owned, then unregisters the receive rings, which returns
    /// their buffers to the pool. What is still in flight after the wait is leaked.
    fn drop(&mut self) {
        let mut scratch = IoTable::new(self.pool.clone());
        let (engine, mut sink, stats) = self.parts(&mut scratch);
        let idle = engine.shutdown(&mut sink, stats);
        if idle {
            let submitter = self.engine.ring().submitter();
            let _ = self.rx_ring.unregister(&submitter);
            self.dgram.unregister(&submitter);
        }
    }
}
