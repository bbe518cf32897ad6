//! The backend conformance kit: one set of backend-level tests, generic over
//! [`Backend`], that every backend crate runs (feature `conformance`, for tests
//! only; docs/architecture.md, the backend contract).
//!
//! Each test drives a backend directly — an [`IoTable`], the backend's `poll`, and
//! `std::net` peers on loopback — with no runtime and no executor, and checks the
//! contract every backend promises:
//!
//! * [`eof_and_reset_are_distinct`]: a peer's FIN is an EOF after all its data, a
//!   peer's RST is an error;
//! * [`echo_under_load`]: many connections at once, every byte echoed in order, with
//!   the backend's counters per request bounded (one system call per poll where the
//!   backend promises it; submissions and completions per request — a regression of
//!   the completion path shows there first);
//! * [`a_dry_pool_pauses_and_resumes`]: a pool far smaller than what arrives, buffers
//!   held by the application: receiving pauses, nothing is lost, it resumes;
//! * [`closing_mid_operation_is_safe`]: connections closed while data arrives and
//!   while a large send is in flight: no panic, every token released, every buffer
//!   back;
//! * [`churn_returns_to_baseline`]: thousands of connect/request/close cycles leave
//!   the pool, the fd table and the record table where they started.
//!
//! A backend crate runs all of them with one line, [`conformance_tests!`](crate::conformance_tests).
//!
//! Unlike the rest of this crate, the kit makes system calls (it is a test harness:
//! sockets, threads). Tests that count process-wide fds hold [`serial`].

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown as NetShutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::IntoRawFd;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use crate::{Backend, CloseStep, IoTable, PoolConfig, Received, SendData, StatsSnapshot, Token, Wait};

/// Declares the whole kit as `#[test]` functions, in a backend crate's test file:
///
/// ```text
/// fn make(pool: PoolConfig) -> MyBackend { MyBackend::new(pool).expect("it starts") }
/// const EXPECT: Expect = Expect { /* what this backend promises */ };
/// paste_rt_core::conformance_tests!(make, EXPECT);
/// ```
///
/// `make` starts the backend over a pool; `EXPECT` is its [`Expect`]. A test added
/// to the kit is added here once and so runs on every backend, with no edit in the
/// backend crates (and none can leave one out).
#[macro_export]
macro_rules! conformance_tests {
    ($make:path, $expect:expr) => {
        #[test]
        fn eof_and_reset_are_distinct() {
            $crate::conformance::eof_and_reset_are_distinct($make);
        }

        #[test]
        fn echo_under_load_stays_within_its_counters() {
            $crate::conformance::echo_under_load($make, $expect);
        }

        #[test]
        fn a_dry_pool_pauses_and_resumes() {
            $crate::conformance::a_dry_pool_pauses_and_resumes($make);
        }

        #[test]
        fn closing_mid_operation_is_safe() {
            $crate::conformance::closing_mid_operation_is_safe($make);
        }

        #[test]
        fn ten_thousand_churn_cycles_return_to_baseline() {
            $crate::conformance::churn_returns_to_baseline($make, 10_000);
        }
    };
}

/// What a backend promises beyond the common contract.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    /// Every `poll` makes exactly one system call (io_uring, PASTE).
    pub one_syscall_per_poll: bool,
    /// Most operations handed to the kernel per echoed request (SQEs, read/write
    /// calls, TX slots), measured under load.
    pub max_submissions_per_request: f64,
    /// Most completions applied per echoed request, measured under load.
    pub max_completions_per_request: f64,
}

static SERIAL: Mutex<()> = Mutex::new(());

/// Serialises tests of one process that count open fds.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Open fds of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// A backend and its table, driven by hand.
pub struct Kit<B: Backend> {
    /// The backend under test.
    pub be: B,
    /// Its records.
    pub io: IoTable,
}

impl<B: Backend> Kit<B> {
    /// Wraps a started backend.
    pub fn new(be: B) -> Kit<B> {
        let io = IoTable::new(be.pool().clone());
        Kit { be, io }
    }

    /// One tick of I/O, waiting at most `ms` milliseconds.
    pub fn poll(&mut self, ms: u64) {
        self.be.poll(&mut self.io, Wait::within(Some(Duration::from_millis(ms)))).expect("poll");
    }

    /// Polls until `f` holds, at most `secs` seconds.
    pub fn until(&mut self, secs: u64, what: &str, mut f: impl FnMut(&mut Kit<B>) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !f(self) {
            assert!(Instant::now() < deadline, "{}: timed out waiting for {what}", self.be.kind());
            self.poll(5);
        }
    }

    /// A listener on a loopback port, handed to the backend.
    pub fn listen(&mut self) -> (Token, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        let addr = l.local_addr().expect("local_addr");
        let t = self.io.insert_listener(l.into_raw_fd());
        self.be.listen(&mut self.io, t);
        (t, addr)
    }

    /// Waits for the next connection accepted on `listener`.
    pub fn accept(&mut self, listener: Token) -> Token {
        let mut got = None;
        self.until(10, "an accepted connection", |k| {
            got = k.io.take_accepted(listener);
            got.is_some()
        });
        got.expect("checked above")
    }

    /// Takes everything received on `t` (resuming a paused receive as the runtime
    /// does) into `into`; returns whether the peer's EOF was seen, or its error.
    pub fn drain(&mut self, t: Token, into: &mut Vec<u8>) -> std::io::Result<bool> {
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            match self.io.poll_recv(t, &mut cx) {
                Poll::Ready(Ok(Received::Buf(buf, resume))) => {
                    into.extend_from_slice(&buf);
                    if resume {
                        self.be.resume_recv(&mut self.io, t);
                    }
                }
                Poll::Ready(Ok(Received::Eof)) => return Ok(true),
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Ok(false),
            }
        }
    }

    /// A nonblocking loopback client connected to `listener` (listening at `addr`),
    /// with the token the backend accepted it as.
    pub fn connect_client(&mut self, listener: Token, addr: SocketAddr) -> (Token, TcpStream) {
        let client = TcpStream::connect(addr).expect("connect");
        client.set_nonblocking(true).expect("nonblocking");
        (self.accept(listener), client)
    }

    /// Queues `data` on `t`, telling the backend when it must be.
    pub fn send(&mut self, t: Token, data: SendData) {
        if self.io.queue_send(t, data).expect("queue_send") {
            self.be.send(&mut self.io, t);
        }
    }

    /// The application drops `t`'s handle.
    pub fn close(&mut self, t: Token) {
        match self.io.begin_close(t) {
            CloseStep::Close => {
                self.be.close(&mut self.io, t);
                for orphan in self.io.take_orphans() {
                    self.be.close(&mut self.io, orphan);
                }
            }
            CloseStep::Linger { resume: true } => self.be.resume_recv(&mut self.io, t),
            CloseStep::Linger { resume: false } | CloseStep::Nothing => {}
        }
    }

    /// The backend's counters, with the pool's buffers in use.
    pub fn stats(&self) -> StatsSnapshot {
        let mut s = self.be.stats().snapshot();
        s.pool_in_use = self.be.pool().in_use() as u64;
        s
    }
}

fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| ((i + seed).wrapping_mul(31) ^ (i >> 9)) as u8).collect()
}

/// A peer's FIN arrives as EOF after all of its data; a peer's RST as an error.
pub fn eof_and_reset_are_distinct<B: Backend>(make: impl Fn(PoolConfig) -> B) {
    let mut k = Kit::new(make(PoolConfig::default()));
    let (l, addr) = k.listen();

    let mut fin = TcpStream::connect(addr).expect("connect");
    fin.write_all(b"last words").expect("write");
    fin.shutdown(NetShutdown::Write).expect("shutdown");
    let t = k.accept(l);
    let mut got = Vec::new();
    let mut eof = false;
    k.until(10, "data then EOF", |k| {
        eof = k.drain(t, &mut got).expect("a FIN is not an error");
        eof
    });
    assert_eq!(got, b"last words", "{}: data before the EOF", k.be.kind());

    let rst = TcpStream::connect(addr).expect("connect");
    let t2 = k.accept(l);
    socket_linger_zero(&rst);
    drop(rst);
    let mut err = None;
    k.until(10, "the reset", |k| match k.drain(t2, &mut Vec::new()) {
        Ok(true) => panic!("{}: a reset reported as EOF", k.be.kind()),
        Ok(false) => false,
        Err(e) => {
            err = Some(e);
            true
        }
    });
    let err = err.expect("checked above");
    assert_eq!(err.raw_os_error(), Some(libc::ECONNRESET), "{}: {err}", k.be.kind());
    k.close(t);
    k.close(t2);
    k.close(l);
    k.until(10, "every token released", |k| k.io.live() == 0);
}

fn socket_linger_zero(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: a valid socket fd and a linger struct of the size given.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_LINGER");
}

/// `conns` connections each send `requests` requests of 64 bytes, one at a time; the
/// backend echoes each. Every byte comes back in order, and the backend's counters
/// per request stay within `expect`.
pub fn echo_under_load<B: Backend>(make: impl Fn(PoolConfig) -> B, expect: Expect) {
    const CONNS: usize = 16;
    const REQUESTS: usize = 400;
    const SIZE: usize = 64;
    let mut k = Kit::new(make(PoolConfig::default()));
    let (l, addr) = k.listen();
    let clients: Vec<_> = (0..CONNS)
        .map(|c| {
            thread::spawn(move || {
                let mut s = TcpStream::connect(addr).expect("connect");
                s.set_nodelay(true).expect("nodelay");
                let mut back = [0u8; SIZE];
                for r in 0..REQUESTS {
                    let req = pattern(SIZE, c * 1000 + r);
                    s.write_all(&req).expect("write");
                    s.read_exact(&mut back).expect("read");
                    assert_eq!(&back[..], &req[..], "echoed bytes differ");
                }
            })
        })
        .collect();
    let mut conns: HashMap<Token, usize> = HashMap::new();
    let mut echoed = 0;
    let mut before: Option<StatsSnapshot> = None;
    let mut polls_measured = 0u64;
    let total = CONNS * REQUESTS * SIZE;
    k.until(60, "every request echoed", |k| {
        while let Some(t) = k.io.take_accepted(l) {
            conns.insert(t, 0);
        }
        let tokens: Vec<Token> = conns.keys().copied().collect();
        for t in tokens {
            let mut got = Vec::new();
            let _ = k.drain(t, &mut got);
            if !got.is_empty() {
                echoed += got.len();
                k.send(t, SendData::Owned(got));
            }
        }
        // Measure the middle of the run (all connections busy).
        if before.is_none() && echoed > total / 4 {
            before = Some(k.stats());
        }
        if before.is_some() {
            polls_measured += 1;
        }
        echoed >= total
    });
    let delta = k.stats() - before.expect("measured");
    // The last echoes still have to leave: poll until every client is done.
    k.until(20, "every client done", |_| clients.iter().all(|c| c.is_finished()));
    for c in clients {
        c.join().expect("client thread");
    }
    let requests = ((total - total / 4) / SIZE) as f64;
    let kind = k.be.kind();
    if expect.one_syscall_per_poll {
        assert!(
            delta.syscalls <= delta.ticks,
            "{kind}: {} system calls in {} polls: more than one per poll",
            delta.syscalls,
            delta.ticks
        );
    }
    assert_eq!(delta.syscalls_outside_poll, 0, "{kind}: system calls outside poll");
    let subs = delta.submissions as f64 / requests;
    let comps = delta.completions as f64 / requests;
    eprintln!(
        "{kind}: per request {subs:.2} submissions, {comps:.2} completions, {:.2} system calls; {:.1} requests per poll",
        delta.syscalls as f64 / requests,
        requests / delta.ticks.max(1) as f64
    );
    assert!(
        subs <= expect.max_submissions_per_request,
        "{kind}: {subs:.2} submissions per request (at most {})",
        expect.max_submissions_per_request
    );
    assert!(
        comps <= expect.max_completions_per_request,
        "{kind}: {comps:.2} completions per request (at most {})",
        expect.max_completions_per_request
    );
    assert!(comps >= 1.0, "{kind}: {comps:.2} completions per request: the counters are not counting");
    let _ = polls_measured;
    for t in conns.into_keys() {
        k.close(t);
    }
    k.close(l);
    k.until(10, "every token released", |k| k.io.live() == 0);
}

/// A 32-buffer pool, a peer sending 512 KiB, and an application that takes nothing
/// until receiving has stopped: the pool runs dry, receiving pauses, nothing is lost,
/// and it resumes once the application takes the data.
pub fn a_dry_pool_pauses_and_resumes<B: Backend>(make: impl Fn(PoolConfig) -> B) {
    const LEN: usize = 512 * 1024;
    let mut k = Kit::new(make(PoolConfig { count: 32, ..PoolConfig::default() }));
    let base = k.be.pool().in_use();
    let (l, addr) = k.listen();
    let data = pattern(LEN, 7);
    let expect = data.clone();
    let sender = thread::spawn(move || {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.write_all(&data).expect("write");
    });
    let t = k.accept(l);
    // Hold everything: poll until the backend stops delivering (the pool is dry).
    let mut last = u64::MAX;
    let mut still = 0;
    k.until(20, "receiving to stop", |k| {
        let now = k.stats().rx_buffers;
        still = if now == last { still + 1 } else { 0 };
        last = now;
        still >= 20
    });
    assert!(k.stats().pool_in_use >= 16, "{}: the pool did not run low: {:?}", k.be.kind(), k.stats());
    let mut got = Vec::new();
    k.until(30, "every byte", |k| {
        let _ = k.drain(t, &mut got);
        got.len() >= LEN
    });
    k.until(10, "the sender done", |_| sender.is_finished());
    sender.join().expect("sender");
    assert!(got == expect, "{}: bytes lost or reordered ({} of {LEN})", k.be.kind(), got.len());
    k.close(t);
    k.close(l);
    k.until(10, "every token released", |k| k.io.live() == 0);
    k.until(10, "the pool back at its baseline", |k| k.be.pool().in_use() <= base);
}

/// Connections closed while their peer is sending, and while a 4 MiB send to a peer
/// that does not read is in flight: no panic, every token is released and every
/// buffer comes back.
pub fn closing_mid_operation_is_safe<B: Backend>(make: impl Fn(PoolConfig) -> B) {
    let _serial = serial();
    let mut k = Kit::new(make(PoolConfig::default()));
    let base = k.be.pool().in_use();
    let fds = open_fds();
    let (l, addr) = k.listen();

    // Mid-receive: the peer keeps sending until the server closes.
    let writer = thread::spawn(move || {
        let mut s = TcpStream::connect(addr).expect("connect");
        let chunk = [7u8; 16 * 1024];
        while s.write_all(&chunk).is_ok() {}
    });
    let t = k.accept(l);
    k.until(10, "data arriving", |k| k.io.get(t).rx_len() > 0);
    k.close(t);

    // Mid-send: 4 MiB queued to a peer that never reads, then closed.
    let idle = TcpStream::connect(addr).expect("connect");
    let t2 = k.accept(l);
    for _ in 0..64 {
        k.send(t2, SendData::Owned(vec![1u8; 64 * 1024]));
    }
    k.poll(5);
    // The handle goes with the data still queued: the record lingers; then the peer
    // resets, which ends the linger.
    k.close(t2);
    socket_linger_zero(&idle);
    drop(idle);
    k.until(10, "the writer done", |_| writer.is_finished());
    writer.join().expect("writer");
    k.close(l);
    k.until(10, "every token released", |k| k.io.live() == 0);
    k.until(10, "the pool back at its baseline", |k| k.be.pool().in_use() <= base);
    k.until(10, "every fd closed", |_| open_fds() <= fds);
}

/// `cycles` connect / request / response / close cycles, one connection at a time:
/// afterwards the pool, the fd table and the record table are where they started.
pub fn churn_returns_to_baseline<B: Backend>(make: impl Fn(PoolConfig) -> B, cycles: usize) {
    let _serial = serial();
    let mut k = Kit::new(make(PoolConfig::default()));
    let (l, addr) = k.listen();
    k.poll(0);
    let (base_pool, base_fds) = (k.be.pool().in_use(), open_fds());
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let client = thread::spawn(move || {
        for _ in 0..cycles {
            if go_rx.recv().is_err() {
                return;
            }
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(b"ping").expect("write");
            let mut back = [0u8; 4];
            s.read_exact(&mut back).expect("read");
            assert_eq!(&back, b"pong");
        }
    });
    for i in 0..cycles {
        go_tx.send(()).expect("client alive");
        let t = k.accept(l);
        let mut got = Vec::new();
        k.until(10, "the request", |k| {
            let _ = k.drain(t, &mut got);
            got.len() >= 4
        });
        k.send(t, SendData::Static(b"pong"));
        k.close(t);
        if i % 1000 == 0 {
            k.poll(0);
        }
    }
    k.until(20, "the client done", |_| client.is_finished());
    client.join().expect("client");
    k.until(10, "every connection released", |k| k.io.live() == 1);
    k.until(10, "the pool back at its baseline", |k| k.be.pool().in_use() <= base_pool);
    k.until(10, "the fds back at their baseline", |_| open_fds() <= base_fds);
    k.close(l);
    k.until(10, "the listener released", |k| k.io.live() == 0);
}
