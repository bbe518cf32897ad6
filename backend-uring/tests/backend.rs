//! The io_uring backend driven directly (no runtime), with `std::net` peers on
//! loopback. Tests take a process-wide lock: several count open fds.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{Shutdown as NetShutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use paste_rt_core::{Backend, Completion, Op, PoolConfig, RxBuf, SendData, Token};
use paste_rt_uring::{UringBackend, UringConfig};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn config(count: u32, rx_ring_bufs: u32) -> UringConfig {
    UringConfig {
        pool: PoolConfig { count, ..PoolConfig::default() },
        rx_ring_bufs,
        sq_entries: 4096,
        ..UringConfig::default()
    }
}

/// Aborts the process if a test hangs (a lost wake-up would block `poll(None)`).
fn watchdog(secs: u64) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    thread::spawn(move || {
        for _ in 0..secs * 10 {
            thread::sleep(Duration::from_millis(100));
            if flag.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
        }
        eprintln!("test watchdog: still running after {secs} s");
        std::process::abort();
    });
    done
}

struct Harness {
    be: UringBackend,
    out: Vec<Completion>,
    /// Completions polled but not yet looked at by `until`.
    pending: VecDeque<Completion>,
}

impl Harness {
    fn new(config: &UringConfig) -> Harness {
        Harness {
            be: UringBackend::new(config).expect("io_uring backend starts"),
            out: Vec::new(),
            pending: VecDeque::new(),
        }
    }

    fn tick(&mut self, timeout: Duration) -> Vec<Completion> {
        self.be.poll(Some(timeout), &mut self.out).unwrap();
        let mut all: Vec<Completion> = self.pending.drain(..).collect();
        all.append(&mut self.out);
        all
    }

    /// Polls until `f` returns `Some`, feeding it completions in order; the ones after
    /// it stay for the next call. At most ~10 s.
    fn until<T>(&mut self, mut f: impl FnMut(&mut UringBackend, Completion) -> Option<T>) -> T {
        for _ in 0..1000 {
            if self.pending.is_empty() {
                self.be.poll(Some(Duration::from_millis(10)), &mut self.out).unwrap();
                self.pending.extend(self.out.drain(..));
            }
            while let Some(c) = self.pending.pop_front() {
                if let Some(v) = f(&mut self.be, c) {
                    return v;
                }
            }
        }
        panic!("condition not reached");
    }

    fn listen(&mut self, token: Token) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        self.be.submit(Op::Listen { token, fd: l.into_raw_fd() });
        addr
    }

    fn accept(&mut self, listener: Token, token: Token) {
        let fd = self.until(|_, c| match c {
            Completion::Accepted { listener: l, fd } if l == listener => Some(fd),
            other => panic!("unexpected {other:?}"),
        });
        self.be.submit(Op::Register { token, fd });
    }

    /// A few zero-timeout ticks so closes and cancels finish.
    fn settle(&mut self) -> Vec<Completion> {
        let mut all = vec![];
        for _ in 0..5 {
            all.extend(self.tick(Duration::from_millis(5)));
        }
        all
    }
}

fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 11)) as u8
}

#[test]
fn accept_recv_send_round_trip() {
    let _g = serial();
    let mut h = Harness::new(&config(64, 0));
    let (lt, ct) = (Token(0), Token(1));
    let addr = h.listen(lt);
    let h_base = h.settle();
    assert!(h_base.is_empty());
    let base_in_use = h.be.pool().in_use();
    let client = thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"hello").unwrap();
        let mut buf = [0u8; 6];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"world!");
    });
    h.accept(lt, ct);
    let mut got = Vec::new();
    while got.len() < 5 {
        let buf = h.until(|_, c| match c {
            Completion::Recv { token, buf } if token == ct => Some(buf),
            other => panic!("unexpected {other:?}"),
        });
        got.extend_from_slice(&buf);
    }
    assert_eq!(got, b"hello");
    let mut tx = h.be.pool().tx_buf().unwrap();
    tx.extend_from_slice(b"world!");
    h.be.submit(Op::Send { token: ct, data: SendData::Pool(tx) });
    let sent = h.until(|_, c| match c {
        Completion::Sent { token, bytes } if token == ct => Some(bytes),
        other => panic!("unexpected {other:?}"),
    });
    assert_eq!(sent, 6);
    client.join().unwrap();
    h.until(|_, c| match c {
        Completion::Eof(t) if t == ct => Some(()),
        other => panic!("unexpected {other:?}"),
    });
    h.be.submit(Op::Close(ct));
    assert!(h.settle().is_empty(), "no completion after Close");
    let st = h.be.stats().snapshot();
    assert_eq!((st.accepts, st.rx_bytes, st.tx_bytes), (1, 5, 6));
    assert_eq!(st.syscalls, st.ticks);
    assert_eq!(h.be.pool().in_use(), base_in_use);
    assert!(h.be.describe().starts_with("io_uring: kernel"));
}

#[test]
fn connect_then_exchange_and_refused() {
    let _g = serial();
    let mut h = Harness::new(&config(64, 0));
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let peer = thread::spawn(move || {
        let (mut s, _) = server.accept().unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
    });
    let t = Token(7);
    h.be.submit(Op::Connect { token: t, fd: nonblocking_socket(), addr });
    // Queued before the connect completes: must go out after it.
    h.be.submit(Op::Send { token: t, data: SendData::Owned(b"ping".to_vec()) });
    let errno = h.until(|_, c| match c {
        Completion::Connected { token, errno } if token == t => Some(errno),
        other => panic!("unexpected {other:?}"),
    });
    assert_eq!(errno, 0);
    let mut got = Vec::new();
    while got.len() < 4 {
        if let Some(buf) = h.until(|_, c| match c {
            Completion::Recv { buf, .. } => Some(Some(buf)),
            Completion::Sent { .. } => Some(None),
            other => panic!("unexpected {other:?}"),
        }) {
            got.extend_from_slice(&buf);
        }
    }
    assert_eq!(got, b"ping");
    peer.join().unwrap();
    h.be.submit(Op::Close(t));

    // Nothing listens on a port we just released.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let t2 = Token(8);
    h.be.submit(Op::Connect { token: t2, fd: nonblocking_socket(), addr: closed });
    let errno = h.until(|_, c| match c {
        Completion::Connected { token, errno } if token == t2 => Some(errno),
        // The echo peer closed before our Close of token 7 went out.
        Completion::Eof(token) if token == t => None,
        other => panic!("unexpected {other:?}"),
    });
    assert_eq!(errno, libc::ECONNREFUSED);
    h.be.submit(Op::Close(t2));
    assert!(h.settle().is_empty());
}

fn nonblocking_socket() -> RawFd {
    // SAFETY: plain syscall; checked below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0);
    fd
}

#[test]
fn eof_and_reset_are_distinct() {
    let _g = serial();
    let mut h = Harness::new(&config(64, 0));
    let lt = Token(0);
    let addr = h.listen(lt);
    let polite = TcpStream::connect(addr).unwrap();
    h.accept(lt, Token(1));
    let rude = TcpStream::connect(addr).unwrap();
    h.accept(lt, Token(2));
    drop(polite);
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt with a live fd and a correctly sized linger struct.
    let rc = unsafe {
        libc::setsockopt(
            rude.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    drop(rude);
    let mut seen: HashMap<u32, String> = HashMap::new();
    h.until(|_, c| {
        match c {
            Completion::Eof(t) => seen.insert(t.0, "eof".into()),
            Completion::RecvError { token, errno } => seen.insert(token.0, format!("errno {errno}")),
            other => panic!("unexpected {other:?}"),
        };
        (seen.len() == 2).then_some(())
    });
    assert_eq!(seen[&1], "eof");
    assert_eq!(seen[&2], format!("errno {}", libc::ECONNRESET));
}

#[test]
fn one_enter_per_poll_under_load() {
    let _g = serial();
    let mut h = Harness::new(&config(1024, 256));
    let lt = Token(0);
    let addr = h.listen(lt);
    const CONNS: usize = 64;
    const ROUNDS: usize = 50;
    let clients: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(move || {
                let mut socks: Vec<TcpStream> = (0..CONNS / 4).map(|_| TcpStream::connect(addr).unwrap()).collect();
                for round in 0..ROUNDS {
                    let msg = [round as u8; 100];
                    for s in socks.iter_mut() {
                        s.write_all(&msg).unwrap();
                    }
                    for s in socks.iter_mut() {
                        let mut back = [0u8; 100];
                        s.read_exact(&mut back).unwrap();
                        assert_eq!(back, msg);
                    }
                }
            })
        })
        .collect();
    let mut next = 1u32;
    let mut echoed = 0usize;
    while echoed < CONNS * ROUNDS * 100 {
        let done = h.tick(Duration::from_millis(50));
        for c in done {
            match c {
                Completion::Accepted { fd, .. } => {
                    h.be.submit(Op::Register { token: Token(next), fd });
                    next += 1;
                }
                Completion::Recv { token, buf } => {
                    let mut tx = h.be.pool().tx_buf().expect("pool has room for replies");
                    tx.extend_from_slice(&buf);
                    h.be.submit(Op::Send { token, data: SendData::Pool(tx) });
                }
                Completion::Sent { bytes, .. } => echoed += bytes as usize,
                // A client that got its last echo may close before we see our last Sent.
                Completion::Eof(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    for c in clients {
        c.join().unwrap();
    }
    let st = h.be.stats().snapshot();
    assert_eq!(h.be.sq_overflows(), 0);
    assert_eq!(st.syscalls, st.ticks, "exactly one io_uring_enter per poll");
    assert_eq!(st.syscalls_outside_poll, 0);
    assert_eq!(st.accepts, CONNS as u64);
    assert_eq!(st.rx_bytes, (CONNS * ROUNDS * 100) as u64);
    assert!(st.rx_batches > 0 && st.rx_buffers >= st.rx_batches);
}

#[test]
fn ten_thousand_cycles_return_to_baseline() {
    let _g = serial();
    let mut h = Harness::new(&config(256, 0));
    let lt = Token(0);
    let addr = h.listen(lt);
    h.settle();
    let (pool0, fds0, ops0, slots0) = (h.be.pool().in_use(), open_fds(), h.be.ops_in_flight(), h.be.live_slots());
    const CYCLES: usize = 10_000;
    const THREADS: usize = 4;
    let clients: Vec<_> = (0..THREADS)
        .map(|_| {
            thread::spawn(move || {
                for _ in 0..CYCLES / THREADS {
                    let mut s = TcpStream::connect(addr).unwrap();
                    s.write_all(b"ping").unwrap();
                    let mut buf = [0u8; 4];
                    s.read_exact(&mut buf).unwrap();
                    assert_eq!(&buf, b"pong");
                    // The server closes after replying.
                    assert_eq!(s.read(&mut buf).unwrap(), 0);
                }
            })
        })
        .collect();
    // Tokens are reused right after Close, as the runtime's slab does.
    let mut free_tokens: Vec<u32> = (1..=64).rev().collect();
    let mut closed = 0;
    while closed < CYCLES {
        for c in h.tick(Duration::from_millis(50)) {
            match c {
                Completion::Accepted { fd, .. } => {
                    let t = Token(free_tokens.pop().expect("token"));
                    h.be.submit(Op::Register { token: t, fd });
                }
                Completion::Recv { token, buf } => {
                    assert_eq!(&buf[..], b"ping");
                    h.be.submit(Op::Send { token, data: SendData::Static(b"pong") });
                }
                Completion::Sent { token, .. } => {
                    h.be.submit(Op::Close(token));
                    free_tokens.push(token.0);
                    closed += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    // The last closes go out with the next enter; the clients wait for them.
    assert!(h.settle().is_empty());
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(h.be.pool().in_use(), pool0, "pool buffers leaked");
    assert_eq!(open_fds(), fds0, "fds leaked");
    assert_eq!(h.be.ops_in_flight(), ops0, "ops left in flight");
    assert_eq!(h.be.live_slots(), slots0, "slots leaked");
    let st = h.be.stats().snapshot();
    assert_eq!(st.accepts, CYCLES as u64);
    assert_eq!(st.syscalls, st.ticks);
}

/// Sends `total` pattern bytes then closes.
fn pattern_sender(addr: SocketAddr, total: usize) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let data: Vec<u8> = (0..total).map(pattern).collect();
        s.write_all(&data).unwrap();
        s.shutdown(NetShutdown::Write).unwrap();
    })
}

#[test]
fn slow_consumer_with_tiny_pool_gets_every_byte() {
    let _g = serial();
    let mut h = Harness::new(&config(8, 4));
    let lt = Token(0);
    let addr = h.listen(lt);
    const TOTAL: usize = 1_500_000;
    let sender = pattern_sender(addr, TOTAL);
    h.accept(lt, Token(1));
    let mut held: VecDeque<RxBuf> = VecDeque::new();
    let mut checked = 0usize;
    let mut max_held = 0;
    let mut eof = false;
    let (mut stalled, mut stalls) = (0, 0);
    for _ in 0..200_000 {
        // Slow: consume one buffer per tick, and (the first times) stall a few ticks
        // when the whole pool is in our hands, so the kernel finds the ring empty.
        if held.len() == 8 && stalled < 3 && stalls < 20 {
            stalled += 1;
            stalls += 1;
        } else if let Some(buf) = held.pop_front() {
            stalled = 0;
            for (k, b) in buf.iter().enumerate() {
                assert_eq!(*b, pattern(checked + k), "byte {} differs", checked + k);
            }
            checked += buf.len();
        }
        if eof && held.is_empty() {
            break;
        }
        let timeout = if held.is_empty() { Duration::from_millis(20) } else { Duration::from_millis(1) };
        for c in h.tick(timeout) {
            match c {
                Completion::Recv { buf, .. } => held.push_back(buf),
                Completion::Eof(_) => eof = true,
                other => panic!("unexpected {other:?}"),
            }
        }
        max_held = max_held.max(held.len());
        assert!(h.be.pool().in_use() <= 8);
    }
    sender.join().unwrap();
    assert!(eof);
    assert_eq!(checked, TOTAL);
    assert!(max_held <= 8);
    let st = h.be.stats().snapshot();
    assert!(st.pool_exhausted > 0, "the receive ring should have run dry: {st:?} max_held {max_held}");
    assert_eq!(st.rx_bytes, TOTAL as u64);
    assert_eq!(st.syscalls, st.ticks);
}

#[test]
fn pause_and_resume_keep_order() {
    let _g = serial();
    let mut h = Harness::new(&config(64, 16));
    let lt = Token(0);
    let addr = h.listen(lt);
    const TOTAL: usize = 1_000_000;
    let sender = pattern_sender(addr, TOTAL);
    let ct = Token(1);
    h.accept(lt, ct);
    let mut held: VecDeque<RxBuf> = VecDeque::new();
    let (mut checked, mut paused, mut pauses, mut eof) = (0usize, false, 0, false);
    for _ in 0..200_000 {
        if held.len() >= 24 && !paused {
            h.be.submit(Op::PauseRecv(ct));
            paused = true;
            pauses += 1;
        }
        if paused && held.len() < 4 {
            h.be.submit(Op::ResumeRecv(ct));
            paused = false;
        }
        for _ in 0..2 {
            if let Some(buf) = held.pop_front() {
                for (k, b) in buf.iter().enumerate() {
                    assert_eq!(*b, pattern(checked + k), "byte {} differs", checked + k);
                }
                checked += buf.len();
            }
        }
        if eof && held.is_empty() {
            break;
        }
        let timeout = if held.is_empty() { Duration::from_millis(20) } else { Duration::ZERO };
        for c in h.tick(timeout) {
            match c {
                Completion::Recv { buf, .. } => held.push_back(buf),
                Completion::Eof(_) => eof = true,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    sender.join().unwrap();
    assert_eq!(checked, TOTAL);
    assert!(pauses > 0);
}

/// What [`paused_consumer`] saw.
#[derive(Debug, Default)]
struct PauseFigures {
    pauses: u32,
    /// Most buffers held at once.
    max_held: usize,
    /// Most bytes delivered in the tick that crossed the pause threshold plus every
    /// tick after the `PauseRecv`, until the `ResumeRecv`.
    max_after_crossing: usize,
    /// Buffers in the episode counted by `max_after_crossing`.
    max_bufs_after_crossing: usize,
}

/// A slow consumer of one connection fed `total` pattern bytes by a fast sender: it
/// takes `per_tick` buffers per tick, pauses as the runtime does once it holds
/// `pause_at` buffers, and resumes once it holds none. Checks every byte in order.
fn paused_consumer(h: &mut Harness, total: usize, pause_at: usize, per_tick: usize) -> PauseFigures {
    let lt = Token(0);
    let addr = h.listen(lt);
    let sender = pattern_sender(addr, total);
    let ct = Token(1);
    h.accept(lt, ct);
    let mut held: VecDeque<RxBuf> = VecDeque::new();
    let mut fig = PauseFigures::default();
    let (mut checked, mut paused, mut eof) = (0usize, false, false);
    // Bytes and buffers since the tick in which `held` crossed `pause_at`.
    let (mut episode, mut episode_bufs) = (0usize, 0usize);
    for _ in 0..400_000 {
        for _ in 0..per_tick {
            let Some(buf) = held.pop_front() else { break };
            for (k, b) in buf.iter().enumerate() {
                assert_eq!(*b, pattern(checked + k), "byte {} differs", checked + k);
            }
            checked += buf.len();
        }
        if paused && held.is_empty() {
            h.be.submit(Op::ResumeRecv(ct));
            paused = false;
        }
        if eof && held.is_empty() {
            break;
        }
        let timeout = if held.is_empty() { Duration::from_millis(20) } else { Duration::ZERO };
        let (mut bytes, mut bufs) = (0, 0);
        for c in h.tick(timeout) {
            match c {
                Completion::Recv { buf, .. } => {
                    bytes += buf.len();
                    bufs += 1;
                    held.push_back(buf);
                }
                Completion::Eof(_) => eof = true,
                other => panic!("unexpected {other:?}"),
            }
        }
        if paused {
            episode += bytes;
            episode_bufs += bufs;
        } else if held.len() >= pause_at {
            h.be.submit(Op::PauseRecv(ct));
            paused = true;
            fig.pauses += 1;
            (episode, episode_bufs) = (bytes, bufs);
        }
        fig.max_held = fig.max_held.max(held.len());
        fig.max_after_crossing = fig.max_after_crossing.max(episode);
        fig.max_bufs_after_crossing = fig.max_bufs_after_crossing.max(episode_bufs);
    }
    sender.join().unwrap();
    assert!(eof, "EOF never came ({checked} of {total} bytes)");
    assert_eq!(checked, total, "bytes lost");
    h.be.submit(Op::Close(ct));
    h.be.submit(Op::Close(lt));
    h.settle();
    fig
}

/// The per-connection receive bound (kernel 6.16+ `mshot_total_len`): once a pause is
/// decided, a connection gets at most one arming's worth of bytes more, so a paused
/// connection holds at most `pause_at - 1 + limit` buffers (plus the partly filled
/// last buffers of its bundles), however much the kernel's shared ring offers.
#[test]
fn recv_limit_bounds_what_a_paused_connection_holds() {
    let _g = serial();
    const LIMIT_BUFS: u32 = 8;
    const TOTAL: usize = 2 << 20;
    // A ring 32x the limit: without the limit one tick could hand all of it over.
    let cfg = UringConfig { rx_limit_bufs: LIMIT_BUFS, ..config(1024, 256) };
    let mut h = Harness::new(&cfg);
    if !h.be.probe().recv_limit {
        eprintln!("skipped: kernel {} has no multishot recv limit", h.be.probe().kernel_release);
        return;
    }
    assert!(h.be.describe().contains(&format!("recv limit {} B", LIMIT_BUFS * 2048)), "{}", h.be.describe());
    let limit_bytes = LIMIT_BUFS as usize * 2048;
    // A plain (non-bundle) recv may overshoot the limit by the rest of one buffer.
    let overshoot = if h.be.probe().recv_bundle { 0 } else { 2048 };
    for (pause_at, per_tick) in [(1, 1), (24, 2)] {
        let fig = paused_consumer(&mut h, TOTAL, pause_at, per_tick);
        eprintln!("pause_at {pause_at}: {fig:?}");
        assert!(fig.pauses > 10, "the consumer never had to pause: {fig:?}");
        assert!(fig.max_after_crossing <= limit_bytes + overshoot, "more than one arming after a pause: {fig:?}");
        // Full buffers but for the last of each bundle: at most one bundle's worth of
        // partly filled ones on top of the limit.
        let bound = pause_at - 1 + 2 * LIMIT_BUFS as usize;
        assert!(fig.max_held <= bound, "held {} > {bound}: {fig:?}", fig.max_held);
    }
    let st = h.be.stats().snapshot();
    assert_eq!(st.rx_bytes, 2 * TOTAL as u64);
    assert_eq!(st.syscalls, st.ticks);
}

#[test]
fn close_mid_recv_and_mid_send_leaks_nothing() {
    let _g = serial();
    let mut h = Harness::new(&config(4096, 64));
    let lt = Token(0);
    let addr = h.listen(lt);
    h.settle();
    let (pool0, fds0, ops0) = (h.be.pool().in_use(), open_fds(), h.be.ops_in_flight());

    // A peer that keeps sending and never reads: our recv is busy, our sends block.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let peer = thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_write_timeout(Some(Duration::from_millis(20))).unwrap();
        let chunk = [7u8; 4096];
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            if s.write(&chunk).is_err() {
                break;
            }
        }
    });
    let ct = Token(1);
    h.accept(lt, ct);
    h.until(|_, c| matches!(c, Completion::Recv { .. }).then_some(()));
    // 4 MB of pool-buffer sends the peer will never read: most stay queued or in flight.
    for _ in 0..2000 {
        let mut tx = h.be.pool().tx_buf().unwrap();
        let n = tx.remaining();
        tx.set_len(n);
        h.be.submit(Op::Send { token: ct, data: SendData::Pool(tx) });
    }
    h.tick(Duration::from_millis(10));
    h.tick(Duration::from_millis(10));
    h.be.submit(Op::Close(ct));
    let after = h.settle();
    assert!(after.is_empty(), "completions after Close: {after:?}");
    // The peer still writes: only cancellation can have ended our recv and send.
    assert_eq!(h.be.ops_in_flight(), ops0, "recv/send not cancelled");
    assert_eq!(h.be.pool().in_use(), pool0, "pool buffers leaked");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    peer.join().unwrap();
    h.settle();
    assert_eq!(h.be.pool().in_use(), pool0, "pool buffers leaked");
    assert_eq!(open_fds(), fds0, "fds leaked");
    assert_eq!(h.be.ops_in_flight(), ops0);
}

#[test]
fn closing_a_listener_with_accepts_pending_leaks_no_fd() {
    let _g = serial();
    let mut h = Harness::new(&config(64, 0));
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    h.settle();
    let fds0 = open_fds();
    let ops0 = h.be.ops_in_flight();
    // Connections wait in the backlog; the multishot accept takes them as soon as it is
    // armed, in the same enter as the cancel and close.
    let clients: Vec<TcpStream> = (0..16).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let fds_with_clients = open_fds();
    h.be.submit(Op::Listen { token: Token(3), fd: l.into_raw_fd() });
    h.be.submit(Op::Close(Token(3)));
    // The token is reused at once for a connection; it must see nothing of the listener.
    let after = h.settle();
    assert!(after.is_empty(), "completions after Close: {after:?}");
    assert_eq!(open_fds(), fds_with_clients - 1, "accepted fds must be closed");
    assert_eq!(h.be.ops_in_flight(), ops0);
    drop(clients);
    assert_eq!(open_fds(), fds0 - 1);
    assert_eq!(h.be.stats().snapshot().accepts, 0);
}

#[test]
fn remote_wake_interrupts_an_unbounded_poll() {
    let _g = serial();
    let done = watchdog(20);
    let mut h = Harness::new(&config(64, 0));
    let waker = h.be.remote_waker();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        waker.wake();
    });
    let mut out = Vec::new();
    while h.be.stats().remote_wakeups.get() == 0 {
        h.be.poll(None, &mut out).unwrap();
    }
    t.join().unwrap();
    h.be.poll(Some(Duration::ZERO), &mut out).unwrap();
    assert!(out.is_empty());
    assert_eq!(h.be.stats().remote_wakeups.get(), 1);
    // A later wake works again.
    h.be.remote_waker().wake();
    h.be.poll(None, &mut out).unwrap();
    assert_eq!(h.be.stats().remote_wakeups.get(), 2);
    done.store(true, std::sync::atomic::Ordering::Relaxed);
}

#[test]
fn accept_error_is_reported_once_then_retried() {
    let _g = serial();
    let mut h = Harness::new(&UringConfig { accept_retry: Duration::from_millis(50), ..config(64, 0) });
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    let c1 = TcpStream::connect(addr).unwrap();
    // Room for no new fd: the lowest free fd number becomes the limit (the kernel reads
    // it when the accept SQE is prepared), so the accept fails with EMFILE. Restored
    // when the guard drops, even if the test fails.
    // SAFETY: dup/close of a live fd just to learn the lowest free fd number.
    let lowest_free = unsafe {
        let fd = libc::fcntl(c1.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0);
        assert!(fd >= 0);
        libc::close(fd);
        fd
    };
    let limit = NofileLimit::lower_to(lowest_free as u64);
    h.be.submit(Op::Listen { token: Token(0), fd: l.into_raw_fd() });
    let mut errors = 0;
    for _ in 0..10 {
        for c in h.tick(Duration::from_millis(20)) {
            match c {
                Completion::AcceptError { errno, .. } => {
                    assert_eq!(errno, libc::EMFILE);
                    errors += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    drop(limit);
    assert_eq!(errors, 1, "reported once, retried without spinning");
    let st = h.be.stats().snapshot();
    assert_eq!(st.ticks, st.syscalls);
    // After the limit is back, the retry (backoff expiry) accepts the waiting peer.
    let fd = h.until(|_, c| match c {
        Completion::Accepted { fd, .. } => Some(fd),
        Completion::AcceptError { .. } => None,
        other => panic!("unexpected {other:?}"),
    });
    // SAFETY: the accepted fd is ours.
    unsafe { libc::close(fd) };
    drop(c1);
}

/// Lowers `RLIMIT_NOFILE`'s soft limit until dropped.
struct NofileLimit(libc::rlimit);

impl NofileLimit {
    fn lower_to(soft: u64) -> NofileLimit {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: valid rlimit out-pointer.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        let saved = NofileLimit(lim);
        lim.rlim_cur = soft;
        // SAFETY: lowering the soft limit only; restored by Drop.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
        saved
    }
}

impl Drop for NofileLimit {
    fn drop(&mut self) {
        // SAFETY: restores the limit read in `lower_to`.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &self.0) };
    }
}

#[test]
fn dropping_the_backend_mid_flight_releases_everything() {
    let _g = serial();
    let fds0 = open_fds();
    let mut h = Harness::new(&config(256, 32));
    let lt = Token(0);
    let addr = h.listen(lt);
    let peers: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
    for t in 1..=4 {
        h.accept(lt, Token(t));
    }
    for (t, mut p) in (1..=4).zip(peers.iter()) {
        p.write_all(&[1u8; 3000]).unwrap();
        // Sends the peer never reads, and some queued but never flushed.
        for _ in 0..40 {
            let mut tx = h.be.pool().tx_buf().unwrap();
            let n = tx.remaining();
            tx.set_len(n);
            h.be.submit(Op::Send { token: Token(t), data: SendData::Pool(tx) });
        }
    }
    h.tick(Duration::from_millis(10));
    let pool = h.be.pool().clone();
    drop(h);
    assert_eq!(pool.in_use(), 0, "buffers still lent after drop");
    drop(peers);
    assert_eq!(open_fds(), fds0, "fds leaked by drop");
}
