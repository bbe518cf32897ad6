//! The built-in load generator: N persistent connections driven by a paste-rt
//! runtime (io_uring backend, epoll when io_uring cannot start), closed loop with
//! optional pipelining, or open loop at a fixed offered rate.
//!
//! Every response is validated ([`Exchange`]); any mismatch, reset or early close
//! is an error of the run. Latencies go into an HdrHistogram (ns), counted only for
//! responses completed inside the measured window; the generator's own CPU time
//! over the window is measured on its thread. It owns the client side of a run and
//! must never touch the server process (the harness measures that).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use paste_rt::net::TcpStream;

use crate::exchange::{Exchange, LoadSpec};
use crate::workload::Workload;

/// Error messages kept per run (the count goes on).
const KEPT_MESSAGES: usize = 5;
/// Open loop: requests outstanding on one connection before the run is declared
/// unable to keep up.
const MAX_OUTSTANDING: usize = 10_000;
/// Connections opened concurrently.
const CONNECT_BATCH: usize = 128;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The server.
    pub addr: SocketAddr,
    /// The workload's client side.
    pub spec: LoadSpec,
    /// Active connections.
    pub conns: usize,
    /// Extra connections that send one request each and then stay idle (scale runs).
    pub idle_conns: usize,
    /// Requests per batch of an active connection (closed loop): the batch's requests
    /// are written together, and the next batch once all of them are answered — as
    /// wrk's pipeline script and TechEmpower's pipelined test do. (Refilling request by
    /// request instead would split a batch wherever the generator's receive buffer
    /// happened to split the answers, and the server's input with it.)
    pub pipeline: usize,
    /// Open loop: total requests per second offered, spread over the connections.
    pub rate: Option<f64>,
    /// Time before the measured window.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// Pin the generator's thread to this core.
    pub core: Option<usize>,
    /// Number of this generator's first connection among all generators of the run
    /// (so that connection numbers in errors, and the requests each one sends, are
    /// those of the whole run).
    pub first_conn: usize,
}

/// The measured window, announced once every connection is up.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Start of measurement (after the warm-up).
    pub start: Instant,
    /// End of measurement.
    pub end: Instant,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Responses completed (and valid) inside the window.
    pub requests: u64,
    /// Errors: mismatches, resets, early closes, stalls.
    pub errors: u64,
    /// The first few errors, readable.
    pub messages: Vec<String>,
    /// Latency of the counted responses, in ns.
    pub latency: Histogram<u64>,
    /// The generator thread's CPU time over the window.
    pub cpu: Duration,
    /// The window's length.
    pub window: Duration,
    /// The paste-rt backend the generator ran on.
    pub backend: String,
    /// `Ok` when pinned, else why not.
    pub pinned: Result<(), String>,
}

impl LoadResult {
    /// Requests per second over the window.
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.window.as_secs_f64()
    }

    /// Latency quantile `q` (0..1) in µs; NaN with no samples.
    pub fn latency_us(&self, q: f64) -> f64 {
        if self.latency.is_empty() {
            f64::NAN
        } else {
            self.latency.value_at_quantile(q) as f64 / 1000.0
        }
    }

    /// The generator's CPU µs per request; NaN with no requests.
    pub fn cpu_us_per_request(&self) -> f64 {
        if self.requests == 0 {
            f64::NAN
        } else {
            self.cpu.as_secs_f64() * 1e6 / self.requests as f64
        }
    }
}

/// Why a load run could not happen at all.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// No paste-rt backend started for the generator.
    #[error("the load generator's runtime did not start: {0}")]
    Runtime(String),
    /// A connection could not be opened.
    #[error("connecting to {addr} (connection {index}): {source}")]
    Connect {
        /// The server.
        addr: SocketAddr,
        /// Which connection.
        index: usize,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Preloading (kv keys, scale's idle connections) failed.
    #[error("preparing the run: {0}")]
    Prepare(String),
    /// The start of the window could not be agreed on (another generator of the
    /// run failed, or the harness went away).
    #[error("starting the measured window: {0}")]
    Schedule(String),
    /// A counted run ([`run_counted`]) failed: an invalid response, a stall past
    /// the phase's time limit, or the caller's step between phases.
    #[error("counted run: {0}")]
    Counted(String),
}

#[derive(Debug)]
struct State {
    window: Window,
    latency: Histogram<u64>,
    requests: u64,
    errors: u64,
    messages: Vec<String>,
    /// Send times of outstanding requests, per active connection.
    outstanding: Vec<Rc<RefCell<VecDeque<Instant>>>>,
}

impl State {
    fn error(&mut self, message: String) {
        self.errors += 1;
        if self.messages.len() < KEPT_MESSAGES {
            self.messages.push(message);
        }
    }

    /// Counts `done` responses completed at `now`, sent at the front of `sent`.
    fn complete(&mut self, conn: usize, done: usize, now: Instant, sent: &mut VecDeque<Instant>) -> bool {
        let in_window = now >= self.window.start && now < self.window.end;
        for _ in 0..done {
            let Some(at) = sent.pop_front() else {
                self.error(format!("connection {conn}: more responses than requests"));
                return false;
            };
            if in_window {
                self.requests += 1;
                let ns = now.saturating_duration_since(at).as_nanos() as u64;
                self.latency.saturating_record(ns.max(1));
            }
        }
        true
    }
}

/// An empty latency histogram: 1 ns to 1 hour, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

/// Builds the generator's runtime: io_uring, else epoll.
fn runtime() -> Result<paste_rt::Runtime, LoadError> {
    let build =
        |name: &str| paste_rt::runtime::Builder::new().ignore_env().backend(name).quiet().buffers(16384).build();
    match build("uring") {
        Ok(rt) => Ok(rt),
        Err(uring) => build("epoll").map_err(|epoll| LoadError::Runtime(format!("uring: {uring}; epoll: {epoll}"))),
    }
}

/// Runs the load described by `config` on the calling thread. `on_window` is
/// called once every connection is up, with the window about to be measured: it
/// starts after `config.warmup`.
pub fn run(config: &LoadConfig, on_window: impl FnOnce(Window)) -> Result<LoadResult, LoadError> {
    let (warmup, duration) = (config.warmup, config.duration);
    run_scheduled(config, move || {
        let start = Instant::now() + warmup;
        on_window(Window { start, end: start + duration });
        Ok(start)
    })
}

/// Runs the load described by `config` on the calling thread, with a window
/// chosen from outside: once every connection is up (and kv keys and idle
/// connections are ready), `schedule` is called (it may block, e.g. until every
/// other generator of the run is ready) and returns when the window starts; the
/// load starts at once and its warm-up lasts until then.
pub fn run_scheduled(
    config: &LoadConfig,
    schedule: impl FnOnce() -> Result<Instant, String>,
) -> Result<LoadResult, LoadError> {
    let pinned = match config.core {
        Some(core) => crate::system::pin_current_thread(core).map_err(|e| e.to_string()),
        None => Err("not requested".into()),
    };
    let _ = crate::system::raise_nofile_limit();
    let rt = runtime()?;
    let backend = rt.backend().name().to_owned();
    let config = config.clone();
    rt.block_on(async move {
        let total = config.conns + config.idle_conns;
        let streams = connect_all(config.addr, total).await?;
        let mut streams: Vec<Rc<TcpStream>> = streams.into_iter().map(Rc::new).collect();
        let idle = streams.split_off(config.conns);
        if config.spec.workload == Workload::Kv {
            preload(&streams[0], &config.spec).await?;
        }
        for (b, batch) in idle.chunks(CONNECT_BATCH).enumerate() {
            let tasks: Vec<_> = batch
                .iter()
                .enumerate()
                .map(|(i, stream)| {
                    let (stream, spec) = (stream.clone(), config.spec.clone());
                    let conn = (config.first_conn + config.conns + b * CONNECT_BATCH + i) as u64;
                    paste_rt::spawn(async move { one_exchange(&stream, &spec, conn).await })
                })
                .collect();
            for task in tasks {
                task.await.map_err(|e| LoadError::Prepare(format!("idle connection task: {e}")))??;
            }
        }
        let start = schedule().map_err(LoadError::Schedule)?;
        let window = Window { start, end: start + config.duration };
        let state = Rc::new(RefCell::new(State {
            window,
            latency: latency_histogram(),
            requests: 0,
            errors: 0,
            messages: vec![],
            outstanding: vec![],
        }));
        for (index, stream) in streams.iter().enumerate() {
            let i = config.first_conn + index;
            let sent = Rc::new(RefCell::new(VecDeque::with_capacity(config.pipeline.max(1))));
            state.borrow_mut().outstanding.push(sent.clone());
            let ex = Exchange::new(&config.spec, i as u64);
            match config.rate {
                None => {
                    let task = closed_loop(i, stream.clone(), ex, config.pipeline.max(1), sent, state.clone());
                    drop(paste_rt::spawn(task));
                }
                Some(rate) => {
                    let interval = Duration::from_secs_f64(config.conns as f64 / rate.max(1e-3));
                    let first = Instant::now() + interval.mul_f64(index as f64 / config.conns as f64);
                    let ex = Rc::new(RefCell::new(ex));
                    let send =
                        open_loop_sender(i, stream.clone(), ex.clone(), sent.clone(), state.clone(), first, interval);
                    drop(paste_rt::spawn(send));
                    drop(paste_rt::spawn(receiver(i, stream.clone(), ex, sent, state.clone())));
                }
            }
        }
        paste_rt::time::sleep_until(window.start).await;
        let cpu_start = crate::system::thread_cpu_time();
        paste_rt::time::sleep_until(window.end).await;
        let cpu = crate::system::thread_cpu_time().saturating_sub(cpu_start);
        let mut st = state.borrow_mut();
        let stalled: Vec<usize> = (0..st.outstanding.len())
            .filter(|&i| st.outstanding[i].borrow().front().is_some_and(|&at| at < window.start))
            .collect();
        for index in stalled {
            let i = config.first_conn + index;
            st.error(format!("connection {i}: no response during the whole window to a request sent before it"));
        }
        if st.requests == 0 && st.errors == 0 {
            st.error("no response completed in the measured window".into());
        }
        drop(idle);
        Ok(LoadResult {
            requests: st.requests,
            errors: st.errors,
            messages: std::mem::take(&mut st.messages),
            latency: st.latency.clone(),
            cpu,
            window: config.duration,
            backend,
            pinned,
        })
    })
}

async fn connect_all(addr: SocketAddr, n: usize) -> Result<Vec<TcpStream>, LoadError> {
    let mut streams = Vec::with_capacity(n);
    while streams.len() < n {
        let batch: Vec<_> = (streams.len()..n.min(streams.len() + CONNECT_BATCH))
            .map(|index| {
                paste_rt::spawn(async move {
                    let connect = paste_rt::time::timeout(Duration::from_secs(10), TcpStream::connect(addr)).await;
                    let stream = match connect {
                        Ok(r) => r,
                        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "no connection within 10 s")),
                    };
                    stream.map_err(|source| LoadError::Connect { addr, index, source })
                })
            })
            .collect();
        for task in batch {
            let stream = task.await.map_err(|e| LoadError::Prepare(format!("connect task: {e}")))??;
            let _ = stream.set_nodelay(true);
            streams.push(stream);
        }
    }
    Ok(streams)
}

/// Queues all of `data` on `stream` (copied into pool buffers).
fn send_all(stream: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let n = stream.queue_copy(data)?;
        data = &data[n..];
    }
    Ok(())
}

/// Receives until `ex` has seen `want` responses.
async fn await_responses(stream: &TcpStream, ex: &mut Exchange, mut want: usize, what: &str) -> Result<(), LoadError> {
    while want > 0 {
        let received = paste_rt::time::timeout(Duration::from_secs(10), stream.recv()).await;
        let buf = match received {
            Err(_) => return Err(LoadError::Prepare(format!("{what}: no response within 10 s"))),
            Ok(Err(e)) => return Err(LoadError::Prepare(format!("{what}: {e}"))),
            Ok(Ok(None)) => return Err(LoadError::Prepare(format!("{what}: the server closed the connection"))),
            Ok(Ok(Some(buf))) => buf,
        };
        let done = ex.feed(&buf).map_err(|m| LoadError::Prepare(format!("{what}: invalid response: {m}")))?;
        want = want.saturating_sub(done);
    }
    Ok(())
}

/// kv: stores every key's value before the run, 100 sets at a time.
async fn preload(stream: &TcpStream, spec: &LoadSpec) -> Result<(), LoadError> {
    let mut ex = Exchange::new(spec, u64::MAX >> 24);
    let mut out = Vec::new();
    let keys: Vec<u32> = (0..spec.kv_keys).collect();
    for chunk in keys.chunks(100) {
        out.clear();
        for &k in chunk {
            ex.write_preload(k, &mut out);
        }
        send_all(stream, &out).map_err(|e| LoadError::Prepare(format!("preloading kv keys: {e}")))?;
        await_responses(stream, &mut ex, chunk.len(), "preloading kv keys").await?;
    }
    Ok(())
}

/// One validated request/response (scale runs' idle connections).
async fn one_exchange(stream: &TcpStream, spec: &LoadSpec, conn: u64) -> Result<(), LoadError> {
    let mut ex = Exchange::new(spec, conn);
    let mut out = Vec::new();
    ex.write_request(&mut out);
    send_all(stream, &out).map_err(|e| LoadError::Prepare(format!("idle connection {conn}: {e}")))?;
    await_responses(stream, &mut ex, 1, &format!("idle connection {conn}")).await
}

/// The next received buffer, or the error to record.
async fn next_buf(conn: usize, stream: &TcpStream) -> Result<paste_rt::RxBuf, String> {
    match stream.recv().await {
        Ok(Some(buf)) => Ok(buf),
        Ok(None) => Err(format!("connection {conn}: the server closed the connection")),
        Err(e) => Err(format!("connection {conn}: {e}")),
    }
}

async fn closed_loop(
    conn: usize,
    stream: Rc<TcpStream>,
    mut ex: Exchange,
    depth: usize,
    sent: Rc<RefCell<VecDeque<Instant>>>,
    state: Rc<RefCell<State>>,
) {
    let end = state.borrow().window.end;
    let mut out = Vec::with_capacity(4096);
    let now = Instant::now();
    for _ in 0..depth {
        ex.write_request(&mut out);
        sent.borrow_mut().push_back(now);
    }
    if let Err(e) = send_all(&stream, &out) {
        state.borrow_mut().error(format!("connection {conn}: sending: {e}"));
        return;
    }
    loop {
        let buf = match next_buf(conn, &stream).await {
            Ok(buf) => buf,
            Err(message) => return state.borrow_mut().error(message),
        };
        let checked = ex.feed(&buf);
        drop(buf);
        let done = match checked {
            Ok(0) => continue,
            Ok(done) => done,
            Err(m) => return state.borrow_mut().error(format!("connection {conn}: invalid response: {m}")),
        };
        let now = Instant::now();
        if !state.borrow_mut().complete(conn, done, now, &mut sent.borrow_mut()) || now >= end {
            return;
        }
        // The next batch once every request of this one is answered (see `pipeline`).
        if !sent.borrow().is_empty() {
            continue;
        }
        out.clear();
        for _ in 0..depth {
            ex.write_request(&mut out);
            sent.borrow_mut().push_back(now);
        }
        if let Err(e) = send_all(&stream, &out) {
            return state.borrow_mut().error(format!("connection {conn}: sending: {e}"));
        }
    }
}

/// Open loop: sends at fixed intervals from `first`; latency counts from the
/// intended send time, so a slow server cannot hide its queueing.
async fn open_loop_sender(
    conn: usize,
    stream: Rc<TcpStream>,
    ex: Rc<RefCell<Exchange>>,
    sent: Rc<RefCell<VecDeque<Instant>>>,
    state: Rc<RefCell<State>>,
    first: Instant,
    interval: Duration,
) {
    let end = state.borrow().window.end;
    let mut next = first;
    let mut out = Vec::with_capacity(4096);
    while next < end {
        paste_rt::time::sleep_until(next).await;
        let now = Instant::now();
        out.clear();
        while next <= now && next < end {
            ex.borrow_mut().write_request(&mut out);
            sent.borrow_mut().push_back(next);
            next += interval;
        }
        if sent.borrow().len() > MAX_OUTSTANDING {
            return state.borrow_mut().error(format!(
                "connection {conn}: {MAX_OUTSTANDING} requests outstanding: the server cannot sustain the offered rate"
            ));
        }
        if let Err(e) = send_all(&stream, &out) {
            return state.borrow_mut().error(format!("connection {conn}: sending: {e}"));
        }
    }
}

async fn receiver(
    conn: usize,
    stream: Rc<TcpStream>,
    ex: Rc<RefCell<Exchange>>,
    sent: Rc<RefCell<VecDeque<Instant>>>,
    state: Rc<RefCell<State>>,
) {
    let end = state.borrow().window.end;
    loop {
        let buf = match next_buf(conn, &stream).await {
            Ok(buf) => buf,
            Err(message) => return state.borrow_mut().error(message),
        };
        let checked = ex.borrow_mut().feed(&buf);
        drop(buf);
        let done = match checked {
            Ok(0) => continue,
            Ok(done) => done,
            Err(m) => return state.borrow_mut().error(format!("connection {conn}: invalid response: {m}")),
        };
        let now = Instant::now();
        if !state.borrow_mut().complete(conn, done, now, &mut sent.borrow_mut()) || now >= end {
            return;
        }
    }
}

/// A counted run: fixed numbers of requests in phases, on the same connections.
///
/// Closed loop only. Each phase sends exactly its number of requests, spread over
/// the connections (the first `requests % conns` connections send one more), and
/// ends when every response has arrived and been validated; then the caller's
/// `between` runs while every connection is idle. Used by the callgrind mode,
/// which counts the server's instructions between phases.
#[derive(Debug, Clone)]
pub struct CountedConfig {
    /// The server.
    pub addr: SocketAddr,
    /// The workload's client side.
    pub spec: LoadSpec,
    /// Connections (opened once, before the first phase).
    pub conns: usize,
    /// Requests per batch of a connection, refilled as [`LoadConfig::pipeline`] says.
    pub pipeline: usize,
    /// Requests of each phase, in order.
    pub phases: Vec<u64>,
    /// Time limit of one phase: a phase not done by then fails the run.
    pub phase_limit: Duration,
    /// Pin the generator's thread to this core.
    pub core: Option<usize>,
}

/// What one phase of a counted run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhaseResult {
    /// Valid responses received (equal to the phase's requests).
    pub requests: u64,
    /// Wall time of the phase.
    pub elapsed: Duration,
}

/// What a counted run did.
#[derive(Debug, Clone)]
pub struct CountedResult {
    /// One entry per phase.
    pub phases: Vec<PhaseResult>,
    /// The paste-rt backend the generator ran on.
    pub backend: String,
    /// `Ok` when pinned, else why not.
    pub pinned: Result<(), String>,
}

/// Requests of `total` that connection `conn` of `conns` sends.
pub fn quota(total: u64, conns: usize, conn: usize) -> u64 {
    let conns = conns.max(1) as u64;
    total / conns + u64::from((conn as u64) < total % conns)
}

/// Runs a counted load ([`CountedConfig`]) on the calling thread. After phase `i`
/// ends, `between(i)` runs (connections idle); an `Err` from it stops the run.
/// Any invalid response, early close or phase over its time limit is an error:
/// a counted run has figures only when every request was answered correctly.
pub fn run_counted(
    config: &CountedConfig,
    mut between: impl FnMut(usize) -> Result<(), String>,
) -> Result<CountedResult, LoadError> {
    if config.conns == 0 {
        return Err(LoadError::Counted("a counted run needs at least one connection".into()));
    }
    let pinned = match config.core {
        Some(core) => crate::system::pin_current_thread(core).map_err(|e| e.to_string()),
        None => Err("not requested".into()),
    };
    let _ = crate::system::raise_nofile_limit();
    let rt = runtime()?;
    let backend = rt.backend().name().to_owned();
    let config = config.clone();
    rt.block_on(async move {
        let streams = connect_all(config.addr, config.conns).await?;
        let streams: Vec<Rc<TcpStream>> = streams.into_iter().map(Rc::new).collect();
        if config.spec.workload == Workload::Kv {
            preload(&streams[0], &config.spec).await?;
        }
        let mut exchanges: Vec<Option<Exchange>> =
            (0..streams.len()).map(|i| Some(Exchange::new(&config.spec, i as u64))).collect();
        let mut phases = Vec::with_capacity(config.phases.len());
        for (p, &total) in config.phases.iter().enumerate() {
            let started = Instant::now();
            let tasks: Vec<_> = streams
                .iter()
                .enumerate()
                .map(|(i, stream)| {
                    let ex = exchanges[i].take().expect("every exchange is returned by its phase task");
                    let task =
                        counted_conn(i, stream.clone(), ex, config.pipeline.max(1), quota(total, streams.len(), i));
                    paste_rt::spawn(task)
                })
                .collect();
            let deadline = started + config.phase_limit;
            let mut requests = 0;
            for (i, task) in tasks.into_iter().enumerate() {
                let left = deadline.saturating_duration_since(Instant::now());
                let (ex, done) = match paste_rt::time::timeout(left, task).await {
                    Err(_) => {
                        return Err(LoadError::Counted(format!(
                            "phase {p}: connection {i} did not get its {} responses within {:.0} s",
                            quota(total, streams.len(), i),
                            config.phase_limit.as_secs_f64()
                        )))
                    }
                    Ok(Err(e)) => return Err(LoadError::Counted(format!("phase {p}: connection {i}: task: {e}"))),
                    Ok(Ok(out)) => out,
                };
                requests += done.map_err(|m| LoadError::Counted(format!("phase {p}: {m}")))?;
                exchanges[i] = Some(ex);
            }
            phases.push(PhaseResult { requests, elapsed: started.elapsed() });
            between(p).map_err(|m| LoadError::Counted(format!("after phase {p}: {m}")))?;
        }
        Ok(CountedResult { phases, backend, pinned })
    })
}

/// One connection's share of a counted phase: sends exactly `quota` requests (in
/// batches of `depth`, each once the last is answered) and returns once every
/// response has arrived, with its exchange (for the next phase) and the responses
/// counted, or the error.
async fn counted_conn(
    conn: usize,
    stream: Rc<TcpStream>,
    mut ex: Exchange,
    depth: usize,
    quota: u64,
) -> (Exchange, Result<u64, String>) {
    let mut out = Vec::with_capacity(4096);
    let mut unsent = quota;
    let mut received = 0u64;
    let first = unsent.min(depth as u64);
    for _ in 0..first {
        ex.write_request(&mut out);
    }
    unsent -= first;
    if let Err(e) = send_all(&stream, &out) {
        return (ex, Err(format!("connection {conn}: sending: {e}")));
    }
    while received < quota {
        let buf = match next_buf(conn, &stream).await {
            Ok(buf) => buf,
            Err(message) => return (ex, Err(message)),
        };
        let checked = ex.feed(&buf);
        drop(buf);
        let done = match checked {
            Ok(done) => done as u64,
            Err(m) => return (ex, Err(format!("connection {conn}: invalid response: {m}"))),
        };
        received += done;
        if received > quota {
            return (ex, Err(format!("connection {conn}: more responses than requests")));
        }
        // The next batch once every request of this one is answered (see `pipeline`).
        let in_flight = (quota - unsent) - received;
        let next = if in_flight == 0 { unsent.min(depth as u64) } else { 0 };
        if next > 0 {
            out.clear();
            for _ in 0..next {
                ex.write_request(&mut out);
            }
            unsent -= next;
            if let Err(e) = send_all(&stream, &out) {
                return (ex, Err(format!("connection {conn}: sending: {e}")));
            }
        }
    }
    (ex, Ok(received))
}

#[cfg(test)]
mod tests {
    use super::quota;

    #[test]
    fn quotas_add_up_to_the_total_and_differ_by_at_most_one() {
        for (total, conns) in [(0u64, 3usize), (7, 3), (2000, 10), (5, 10), (1, 1)] {
            let q: Vec<u64> = (0..conns).map(|i| quota(total, conns, i)).collect();
            assert_eq!(q.iter().sum::<u64>(), total, "{total} over {conns}");
            assert!(q.iter().max().unwrap() - q.iter().min().unwrap() <= 1, "{q:?}");
        }
    }
}
