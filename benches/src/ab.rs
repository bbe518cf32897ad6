//! `paste-bench ab`: the A/B matrix. For each round, each server-core count, each
//! workload case and each concurrency, every subject in turn (A B C … A B C …):
//! start the subject's server as a child on the cell's server cores, drive it with
//! load generator processes on the cell's client cores (one per core, the
//! connections split among them, their figures merged), and measure the window —
//! requests, latency, the server's CPU time and RSS from `/proc`, its system calls
//! counted from outside by perf, its counters over the control channel, and how
//! busy the machine was (load average, steal).
//!
//! Owns the order of runs and the measurement of one run; which cores a cell gets
//! is [`crate::cores`]'s, the statistics, the report and the charts are elsewhere.
//! Servers, load processes and perf are killed (by pid) after each run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use indicatif::{ProgressBar, ProgressStyle};

use crate::control::ServerChild;
use crate::cores::{core_list, CoreSplit};
use crate::cpu_limit::CpuLimit;
use crate::exchange::LoadSpec;
use crate::load_process::LoadGroup;
use crate::loadgen::quota;
use crate::machine_load;
use crate::record::Record;
use crate::subject::{ServeConfig, Subject};
use crate::window::{sample, Measured, WindowProbes};
use crate::workload::Workload;

/// Core the callgrind mode pins its server to.
pub const SERVER_CORE: usize = 0;
/// Core the callgrind mode pins its load generator to.
pub const CLIENT_CORE: usize = 1;
/// Seconds a run costs besides its warm-up and window (start the server, perf and
/// the load processes, connect, stop).
pub const OVERHEAD_SECS: f64 = 0.2;
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
    /// How servers serve (each cell sets the threads and cores).
    pub serve: ServeConfig,
    /// The `paste-bench` executable (to start servers and load processes with).
    pub exe: PathBuf,
    /// The core splits to run, one per server-core count, in order.
    pub splits: Vec<CoreSplit>,
    /// Whether perf counts the servers' system calls; `Err`: why not.
    pub syscall_counting: Result<(), String>,
    /// Where perf's FIFOs and output go (exists while the matrix runs).
    pub work_dir: PathBuf,
    /// The CPU model recorded with every run.
    pub cpu_model: String,
    /// The share of its cores each server is held to ([`CpuLimit`]), or none.
    pub server_cpu: Option<f64>,
}

/// One run of a round: which split, case, connections and subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Index into [`AbPlan::splits`].
    pub split: usize,
    /// Index into [`AbPlan::cases`].
    pub case: usize,
    /// Connections (scale: idle connections).
    pub conns: usize,
    /// The subject.
    pub subject: Subject,
}

/// A subject that cannot run a case, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Unavailable {
    /// Subject name (display label).
    pub subject: String,
    /// Workload case.
    pub workload: String,
    /// The server-core count it cannot run at (`None`: at any).
    pub server_cores: Option<usize>,
    /// Why.
    pub reason: String,
}

/// Whether a subject can run a case at a number of server cores.
pub type Usable<'a> = dyn Fn(Subject, &Case, usize) -> bool + 'a;

impl AbPlan {
    /// The runs of one round, for subjects that can run.
    pub fn runs_per_round(&self, usable: &Usable<'_>) -> Vec<Run> {
        let mut runs = vec![];
        for (split, cores) in self.splits.iter().enumerate() {
            for (ci, case) in self.cases.iter().enumerate() {
                for &conns in &case.conns {
                    for &subject in &self.subjects {
                        if usable(subject, case, cores.server_cores()) {
                            runs.push(Run { split, case: ci, conns, subject });
                        }
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
    pub fn eta(&self, usable: &Usable<'_>) -> Duration {
        let per_round: f64 =
            self.runs_per_round(usable).iter().map(|r| self.run_cost(&self.cases[r.case], r.conns)).sum();
        Duration::from_secs_f64(per_round * self.rounds as f64)
    }
}

/// Runs the whole matrix; `usable` filters subjects per case and core count.
pub fn run_matrix(plan: &AbPlan, usable: &Usable<'_>) -> Vec<Record> {
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
        for run in &per_round {
            let case = &plan.cases[run.case];
            let split = &plan.splits[run.split];
            bar.set_message(format!(
                "round {}/{} {} c={} N={} {}",
                round + 1,
                plan.rounds,
                case.name,
                run.conns,
                split.server_cores(),
                run.subject.label()
            ));
            let record = run_one(plan, case, run.conns, run.subject, split, round);
            if record.errors > 0 {
                bar.println(format!(
                    "INVALID RUN {} {} c={} N={} round {}: {}",
                    run.subject.label(),
                    case.name,
                    run.conns,
                    split.server_cores(),
                    round + 1,
                    record.error_messages.join("; ")
                ));
            }
            records.push(record);
            bar.inc((plan.run_cost(case, run.conns) * 1000.0) as u64);
        }
    }
    bar.finish_and_clear();
    records
}

fn empty_record(plan: &AbPlan, case: &Case, conns: usize, subject: Subject, split: &CoreSplit, round: usize) -> Record {
    Record {
        subject: subject.name(),
        label: subject.label(),
        emulated: subject.is_emulated(),
        workload: case.name.clone(),
        conns,
        server_cores: split.server_cores(),
        server_core_list: split.server.clone(),
        client_core_list: vec![],
        round,
        requests: 0,
        rps: 0.0,
        p50_us: f64::NAN,
        p99_us: f64::NAN,
        p999_us: f64::NAN,
        server_cpu_us_per_req: f64::NAN,
        client_cpu_us_per_req: f64::NAN,
        syscalls_per_req: None,
        runtime_syscalls_per_req: None,
        syscalls_note: None,
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
        load_avg_before: None,
        load_avg_after: None,
        steal_pct: None,
        cpu_model: plan.cpu_model.clone(),
    }
}

fn fail(mut record: Record, message: String) -> Record {
    record.errors += 1;
    record.error_messages.push(message);
    record
}

/// How a cell's server serves: the plan's settings on the split's server cores.
pub fn cell_serve_config(plan: &AbPlan, split: &CoreSplit) -> ServeConfig {
    ServeConfig { threads: split.server_cores(), cores: split.server.clone(), ..plan.serve.clone() }
}

/// The command starting `subject`'s server for `workload` as a controlled child of
/// the `paste-bench` executable `exe`, on `serve.threads` threads pinned to
/// `serve.cores`, served as `serve` says.
pub fn serve_command_for(exe: &Path, serve: &ServeConfig, subject: Subject, workload: Workload) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args(["serve", "--subject", &subject.name(), "--workload", workload.name(), "--port", "0", "--control"]);
    cmd.args(["--bind", &serve.bind.to_string(), "--threads", &serve.threads.max(1).to_string()]);
    if !serve.cores.is_empty() {
        cmd.args(["--cores", &core_list(&serve.cores)]);
    }
    cmd.args(["--body-len", &serve.body_len.to_string()]);
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

/// What a load process of a run drives.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadShare {
    /// Active connections.
    pub conns: usize,
    /// Idle connections (scale).
    pub idle_conns: usize,
    /// Number of its first connection in the run.
    pub first_conn: usize,
    /// Its part of the open-loop rate.
    pub rate: Option<f64>,
    /// Its core.
    pub core: usize,
}

/// Splits `active` and `idle` connections (and the open-loop `rate`) over the load
/// processes of `split` (one per client core, at most one per active connection).
pub fn load_shares(split: &CoreSplit, active: usize, idle: usize, rate: Option<f64>) -> Vec<LoadShare> {
    let n = split.load_processes(active);
    let mut first_conn = 0;
    (0..n)
        .map(|i| {
            let conns = quota(active as u64, n, i) as usize;
            let share = LoadShare {
                conns,
                idle_conns: quota(idle as u64, n, i) as usize,
                first_conn,
                rate: rate.map(|r| r * conns as f64 / active.max(1) as f64),
                core: split.clients[i],
            };
            first_conn += conns;
            share
        })
        .collect()
}

/// The command of one load process (`paste-bench load --control`).
pub fn load_command(
    exe: &Path,
    plan: &AbPlan,
    spec: &LoadSpec,
    addr: std::net::SocketAddr,
    share: &LoadShare,
) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args(["load", "--control", "--addr", &addr.to_string(), "--workload", spec.workload.name()]);
    cmd.args(["--conns", &share.conns.to_string(), "--idle-conns", &share.idle_conns.to_string()]);
    cmd.args(["--first-conn", &share.first_conn.to_string(), "--pipeline", &plan.pipeline.to_string()]);
    cmd.args(["--duration", &plan.duration.as_secs_f64().to_string(), "--cores", &share.core.to_string()]);
    cmd.args(["--kv-value-size", &spec.kv_value_size.to_string(), "--kv-keys", &spec.kv_keys.to_string()]);
    cmd.args(["--body-len", &spec.body_len.to_string()]);
    if let Some(rate) = share.rate {
        cmd.args(["--rate", &rate.to_string()]);
    }
    cmd
}

/// Measures one run.
pub fn run_one(plan: &AbPlan, case: &Case, conns: usize, subject: Subject, split: &CoreSplit, round: usize) -> Record {
    let mut record = empty_record(plan, case, conns, subject, split, round);
    record.load_avg_before = machine_load::load_avg_1min();
    let serve = cell_serve_config(plan, split);
    let mut server =
        match ServerChild::start(serve_command_for(&plan.exe, &serve, subject, case.workload), Duration::from_secs(10))
        {
            Ok(s) => s,
            Err(e) => return fail(record, e.to_string()),
        };
    record.server_pinning = match &server.pinned {
        Ok(()) => "ok".into(),
        Err(e) => e.clone(),
    };
    let pid = server.pid();
    // Held to its share of CPU before any load arrives (dropped, and removed, after
    // the server stopped: see the end of this function).
    let _limit = match plan.server_cpu.map(|share| limit_server(share, split.server_cores(), pid)) {
        None => None,
        Some(Ok(limit)) => Some(limit),
        Some(Err(e)) => {
            server.stop();
            return fail(record, e);
        }
    };
    let rss_before = crate::system::process_rss_kb(pid).ok();
    let (active, idle) = match case.scale_active {
        Some(active) => (active, conns),
        None => (conns, 0),
    };
    let mut probes = WindowProbes::start(&plan.syscall_counting, &plan.work_dir, pid);
    let measured = match plan.client {
        ClientKind::Builtin => measure_builtin(plan, case, &mut server, split, active, idle, &mut probes),
        ClientKind::Wrk => crate::wrk::measure(plan.warmup, plan.duration, &mut server, split, active, &mut probes),
    };
    let m = match measured {
        Ok(m) => m,
        Err(message) => {
            server.stop();
            record.load_avg_after = machine_load::load_avg_1min();
            return fail(record, message);
        }
    };
    server.stop();
    record.load_avg_after = machine_load::load_avg_1min();
    let (syscalls, steal) = probes.finish();
    record.steal_pct = steal;
    record.client_core_list = m.client_cores.clone();
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
    match syscalls {
        // The count covers the enabled interval; the requests, the window: compare rates.
        Ok((count, counted)) if record.rps > 0.0 && !counted.is_zero() => {
            record.syscalls_per_req = Some(count.count as f64 / counted.as_secs_f64() / record.rps);
        }
        Ok(_) => record.syscalls_note = Some("no request completed in the window".into()),
        Err(note) => record.syscalls_note = Some(note),
    }
    if let (Some(a), Some(b)) = (m.start.runtime, m.end.runtime) {
        record.runtime_syscalls_per_req = Some(per_req(b.syscalls.saturating_sub(a.syscalls) as f64));
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

/// A [`CpuLimit`] of `share` of `cores` cores with the server `pid` in it.
fn limit_server(share: f64, cores: usize, pid: u32) -> Result<CpuLimit, String> {
    CpuLimit::new(share, cores)
        .and_then(|limit| limit.admit(pid).map(|()| limit))
        .map_err(|e| format!("--server-cpu: {e}"))
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
    split: &CoreSplit,
    active: usize,
    idle: usize,
    probes: &mut WindowProbes,
) -> Result<Measured, String> {
    let shares = load_shares(split, active, idle, plan.rate);
    let commands = shares.iter().map(|share| load_command(&plan.exe, plan, &case.spec, server.addr, share)).collect();
    let mut group = LoadGroup::start(commands)?;
    let ready_limit = Duration::from_secs(30) + Duration::from_millis(10) * (active + idle) as u32;
    group.wait_ready(ready_limit)?;
    probes.ready();
    let start = Instant::now() + plan.warmup;
    group.go(SystemTime::now() + plan.warmup)?;
    let end = start + plan.duration;
    sleep_until(start);
    let first = sample(server);
    probes.open();
    sleep_until(end);
    probes.close();
    let last = sample(server);
    let load = group.results(end + Duration::from_secs(15))?;
    let (cpu0, c0) = first?;
    let (cpu1, c1) = last?;
    let rss_end = crate::system::process_rss_kb(server.pid()).ok();
    Ok(Measured {
        load,
        server_cpu: cpu1.saturating_sub(cpu0),
        start: c0,
        end: c1,
        rss_end,
        latency_us: None,
        client_cores: shares.iter().map(|s| s.core).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_and_rate_split_over_the_load_processes() {
        let split = CoreSplit { server: vec![0, 1], clients: vec![2, 3, 4] };
        let shares = load_shares(&split, 100, 1000, Some(9000.0));
        assert_eq!(shares.iter().map(|s| s.conns).collect::<Vec<_>>(), [34, 33, 33]);
        assert_eq!(shares.iter().map(|s| s.first_conn).collect::<Vec<_>>(), [0, 34, 67]);
        assert_eq!(shares.iter().map(|s| s.idle_conns).sum::<usize>(), 1000);
        assert_eq!(shares.iter().map(|s| s.core).collect::<Vec<_>>(), [2, 3, 4]);
        let rate: f64 = shares.iter().filter_map(|s| s.rate).sum();
        assert!((rate - 9000.0).abs() < 1e-6, "{rate}");
        // One connection: one process, on the first client core.
        let one = load_shares(&split, 1, 0, None);
        assert_eq!(one, [LoadShare { conns: 1, idle_conns: 0, first_conn: 0, rate: None, core: 2 }]);
    }
}
