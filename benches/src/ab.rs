//! `paste-bench ab`: the A/B matrix. For each round, each workload case and each
//! concurrency, every subject in turn (A B C … A B C …): start the subject's server
//! as a child pinned to the server core, drive it with the load generator pinned
//! to the client core, and measure the window — requests, latency, the server's
//! CPU time and RSS from `/proc`, its counters over the control channel.
//!
//! Owns the order of runs and the measurement of one run; the statistics, the
//! report and the charts are elsewhere. Servers are killed (by pid) after each run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::control::{ServerChild, ServerCounters};
use crate::exchange::LoadSpec;
use crate::loadgen::{self, LoadConfig, LoadResult};
use crate::record::Record;
use crate::subject::{ServeConfig, Subject};
use crate::workload::Workload;

/// Core the servers are pinned to.
pub const SERVER_CORE: usize = 0;
/// Core the load generator is pinned to.
pub const CLIENT_CORE: usize = 1;
/// Seconds a run costs besides its warm-up and window (start, connect, stop).
pub const OVERHEAD_SECS: f64 = 0.12;
/// Seconds per idle connection of a scale run (connect, one request, close).
pub const SCALE_SECS_PER_CONN: f64 = 0.001;

/// Which client drives the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// The built-in generator.
    Builtin,
    /// wrk (rpc only).
    Wrk,
}

/// A workload as run: the protocol workload, its client side and concurrencies.
#[derive(Debug, Clone)]
pub struct Case {
    /// Its name in tables (`rpc`, `kv-64`, `scale`).
    pub name: String,
    /// The protocol workload the servers serve.
    pub workload: Workload,
    /// The client side.
    pub spec: LoadSpec,
    /// Connection counts (scale: idle connections).
    pub conns: Vec<usize>,
    /// Scale: active connections next to the idle ones.
    pub scale_active: Option<usize>,
}

/// Everything an A/B run needs.
#[derive(Debug, Clone)]
pub struct AbPlan {
    /// Subjects, in run order.
    pub subjects: Vec<Subject>,
    /// Workload cases.
    pub cases: Vec<Case>,
    /// Rounds.
    pub rounds: usize,
    /// Warm-up per run.
    pub warmup: Duration,
    /// Measured window per run.
    pub duration: Duration,
    /// Open-loop offered rate (requests/s), or closed loop.
    pub rate: Option<f64>,
    /// Pipelining depth (closed loop).
    pub pipeline: usize,
    /// The client.
    pub client: ClientKind,
    /// How servers serve.
    pub serve: ServeConfig,
    /// The `paste-bench` executable (to start servers with).
    pub exe: PathBuf,
}

/// A subject that cannot run a case, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Unavailable {
    /// Subject name (display label).
    pub subject: String,
    /// Workload case.
    pub workload: String,
    /// Why.
    pub reason: String,
}

impl AbPlan {
    /// The runs of one round: (case, conns, subject) for subjects that can run.
    pub fn runs_per_round(&self, usable: &dyn Fn(Subject, &Case) -> bool) -> Vec<(usize, usize, Subject)> {
        let mut runs = vec![];
        for (ci, case) in self.cases.iter().enumerate() {
            for &conns in &case.conns {
                for &s in &self.subjects {
                    if usable(s, case) {
                        runs.push((ci, conns, s));
                    }
                }
            }
        }
        runs
    }

    /// Estimated seconds of one run (scale runs also open and exercise their idle
    /// connections).
    pub fn run_cost(&self, case: &Case, conns: usize) -> f64 {
        let wrk_extra = if self.client == ClientKind::Wrk { 0.2 } else { 0.0 };
        let scale = if case.scale_active.is_some() { conns as f64 * SCALE_SECS_PER_CONN } else { 0.0 };
        self.warmup.as_secs_f64() + self.duration.as_secs_f64() + OVERHEAD_SECS + wrk_extra + scale
    }

    /// Estimated wall time of the whole matrix.
    pub fn eta(&self, usable: &dyn Fn(Subject, &Case) -> bool) -> Duration {
        let per_round: f64 =
            self.runs_per_round(usable).iter().map(|&(ci, conns, _)| self.run_cost(&self.cases[ci], conns)).sum();
        Duration::from_secs_f64(per_round * self.rounds as f64)
    }
}

/// Runs the whole matrix; `usable` filters subjects per case (availability).
pub fn run_matrix(plan: &AbPlan, usable: &dyn Fn(Subject, &Case) -> bool) -> Vec<Record> {
    let per_round = plan.runs_per_round(usable);
    let total = per_round.len() * plan.rounds;
    // The bar counts estimated milliseconds, so its ETA weighs long runs right.
    let bar = ProgressBar::new(plan.eta(usable).as_millis() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {percent:>3}% {msg} (ETA {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut records = Vec::with_capacity(total);
    for round in 0..plan.rounds {
        for &(ci, conns, subject) in &per_round {
            let case = &plan.cases[ci];
            bar.set_message(format!(
                "round {}/{} {} c={} {}",
                round + 1,
                plan.rounds,
                case.name,
                conns,
                subject.label()
            ));
            let record = run_one(plan, case, conns, subject, round);
            if record.errors > 0 {
                bar.println(format!(
                    "INVALID RUN {} {} c={} round {}: {}",
                    subject.label(),
                    case.name,
                    conns,
                    round + 1,
                    record.error_messages.join("; ")
                ));
            }
            records.push(record);
            bar.inc((plan.run_cost(case, conns) * 1000.0) as u64);
        }
    }
    bar.finish_and_clear();
    records
}

fn empty_record(plan: &AbPlan, case: &Case, conns: usize, subject: Subject, round: usize) -> Record {
    Record {
        subject: subject.name(),
        label: subject.label(),
        emulated: subject.is_emulated(),
        workload: case.name.clone(),
        conns,
        round,
        requests: 0,
        rps: 0.0,
        p50_us: f64::NAN,
        p99_us: f64::NAN,
        p999_us: f64::NAN,
        server_cpu_us_per_req: f64::NAN,
        client_cpu_us_per_req: f64::NAN,
        syscalls_per_req: None,
        mean_rx_batch: None,
        allocs_per_req: None,
        rss_kb: None,
        mem_per_conn_kb: None,
        errors: 0,
        error_messages: vec![],
        client: match plan.client {
            ClientKind::Builtin => "builtin".into(),
            ClientKind::Wrk => "wrk".into(),
        },
        server_pinning: String::new(),
        client_pinning: String::new(),
    }
}

fn fail(mut record: Record, message: String) -> Record {
    record.errors += 1;
    record.error_messages.push(message);
    record
}

/// The command starting `subject`'s server for `workload` as a controlled child.
pub fn serve_command(plan: &AbPlan, subject: Subject, workload: Workload) -> Command {
    serve_command_for(&plan.exe, &plan.serve, subject, workload)
}

/// The command starting `subject`'s server for `workload` as a controlled child of
/// the `paste-bench` executable `exe`, pinned to [`SERVER_CORE`], served as `serve`
/// says.
pub fn serve_command_for(exe: &Path, serve: &ServeConfig, subject: Subject, workload: Workload) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args(["serve", "--subject", &subject.name(), "--workload", workload.name(), "--port", "0", "--control"]);
    cmd.args(["--core", &SERVER_CORE.to_string(), "--body-len", &serve.body_len.to_string()]);
    if serve.batch {
        cmd.arg("--batch");
    }
    if let Some(dir) = &serve.peer.wal_dir {
        cmd.arg("--wal-dir").arg(dir);
    }
    if serve.peer.pm_latency_ns > 0 {
        cmd.args(["--pm-latency-ns", &serve.peer.pm_latency_ns.to_string()]);
    }
    if !serve.peer.wal_copy {
        cmd.arg("--wal-zero-copy");
    }
    cmd
}

/// Measures one run.
pub fn run_one(plan: &AbPlan, case: &Case, conns: usize, subject: Subject, round: usize) -> Record {
    let mut record = empty_record(plan, case, conns, subject, round);
    let mut server = match ServerChild::start(serve_command(plan, subject, case.workload), Duration::from_secs(10)) {
        Ok(s) => s,
        Err(e) => return fail(record, e.to_string()),
    };
    record.server_pinning = match &server.pinned {
        Ok(()) => "ok".into(),
        Err(e) => e.clone(),
    };
    let pid = server.pid();
    let rss_before = crate::system::process_rss_kb(pid).ok();
    let (active, idle) = match case.scale_active {
        Some(active) => (active, conns),
        None => (conns, 0),
    };
    let measured = match plan.client {
        ClientKind::Builtin => measure_builtin(plan, case, &mut server, active, idle),
        ClientKind::Wrk => crate::wrk::measure(plan, &mut server, active),
    };
    let m = match measured {
        Ok(m) => m,
        Err(message) => {
            server.stop();
            return fail(record, message);
        }
    };
    server.stop();
    let load = &m.load;
    record.client_pinning = match &load.pinned {
        Ok(()) => "ok".into(),
        Err(e) => e.clone(),
    };
    record.requests = load.requests;
    record.rps = load.rps();
    [record.p50_us, record.p99_us, record.p999_us] =
        m.latency_us.unwrap_or([load.latency_us(0.5), load.latency_us(0.99), load.latency_us(0.999)]);
    record.client_cpu_us_per_req = load.cpu_us_per_request();
    record.errors += load.errors;
    record.error_messages.extend(load.messages.iter().cloned());
    let per_req = |v: f64| if load.requests == 0 { f64::NAN } else { v / load.requests as f64 };
    record.server_cpu_us_per_req = per_req(m.server_cpu.as_secs_f64() * 1e6);
    if let (Some(a), Some(b)) = (m.start.runtime, m.end.runtime) {
        record.syscalls_per_req = Some(per_req(b.syscalls.saturating_sub(a.syscalls) as f64));
        let batches = b.rx_batches.saturating_sub(a.rx_batches);
        record.mean_rx_batch = (batches > 0).then(|| b.rx_buffers.saturating_sub(a.rx_buffers) as f64 / batches as f64);
    }
    if let (Some(a), Some(b)) = (m.start.allocations, m.end.allocations) {
        record.allocs_per_req = Some(per_req(b.saturating_sub(a) as f64));
    }
    record.rss_kb = m.rss_end;
    if case.scale_active.is_some() {
        if let (Some(before), Some(after)) = (rss_before, m.rss_end) {
            record.mem_per_conn_kb = Some(after.saturating_sub(before) as f64 / (active + idle) as f64);
        }
    }
    record
}

/// What one run measured on both sides.
#[derive(Debug)]
pub struct Measured {
    /// The client's figures.
    pub load: LoadResult,
    /// Server CPU time over the window.
    pub server_cpu: Duration,
    /// Server counters at the window's start.
    pub start: ServerCounters,
    /// ... and end.
    pub end: ServerCounters,
    /// Server RSS at the end.
    pub rss_end: Option<u64>,
    /// p50/p99/p99.9 in µs when the client reports quantiles instead of samples (wrk).
    pub latency_us: Option<[f64; 3]>,
}

/// Samples the server at a window edge: CPU time, then counters.
pub fn sample(server: &mut ServerChild) -> Result<(Duration, ServerCounters), String> {
    let cpu = crate::system::process_cpu_time(server.pid()).map_err(|e| e.to_string())?;
    let counters = server.counters(Duration::from_secs(5)).map_err(|e| e.to_string())?;
    Ok((cpu, counters))
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

fn measure_builtin(
    plan: &AbPlan,
    case: &Case,
    server: &mut ServerChild,
    active: usize,
    idle: usize,
) -> Result<Measured, String> {
    let config = LoadConfig {
        addr: server.addr,
        spec: case.spec.clone(),
        conns: active,
        idle_conns: idle,
        pipeline: plan.pipeline,
        rate: plan.rate,
        warmup: plan.warmup,
        duration: plan.duration,
        core: Some(CLIENT_CORE),
    };
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("paste-bench-load".into())
        .spawn(move || {
            loadgen::run(&config, move |w| {
                let _ = tx.send(w);
            })
        })
        .map_err(|e| format!("starting the load generator thread: {e}"))?;
    let window = rx.recv();
    let sampled = window.map(|w| {
        sleep_until(w.start);
        let start = sample(server);
        sleep_until(w.end);
        let end = sample(server);
        (start, end)
    });
    let load = match thread.join() {
        Ok(Ok(load)) => load,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("the load generator panicked".into()),
    };
    let (start, end) = sampled.map_err(|_| "the load generator ended before the window".to_owned())?;
    let (cpu0, c0) = start?;
    let (cpu1, c1) = end?;
    let rss_end = crate::system::process_rss_kb(server.pid()).ok();
    Ok(Measured { load, server_cpu: cpu1.saturating_sub(cpu0), start: c0, end: c1, rss_end, latency_us: None })
}
