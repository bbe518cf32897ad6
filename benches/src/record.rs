//! One measured run (subject × workload × concurrency × round) and the summary of
//! its rounds, as written to `results.json` and read by the report.
//!
//! Plain data and the arithmetic that turns rounds into a [`Summary`]; it never
//! measures or prints.

use serde::Serialize;

use crate::statistics::{compare, Comparison, Spread};

/// One run's figures. NaN (`null` in JSON) where a figure was not measured.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// Subject name (`paste-rt-uring`, `tokio`, ...).
    pub subject: String,
    /// Name as displayed (`(emulated)` appended for paste-emu).
    pub label: String,
    /// Whether the figures are emulated (paste-emu).
    pub emulated: bool,
    /// Workload case (`rpc`, `kv-64`, `scale`, ...).
    pub workload: String,
    /// Connections (scale: idle connections).
    pub conns: usize,
    /// Server cores (N): paste-rt runtimes, tokio-mt workers, or peer copies.
    pub server_cores: usize,
    /// The server's cores.
    pub server_core_list: Vec<usize>,
    /// The load processes' cores, one process per core.
    pub client_core_list: Vec<usize>,
    /// Round, from 0.
    pub round: usize,
    /// Valid responses in the window.
    pub requests: u64,
    /// Requests per second.
    pub rps: f64,
    /// Latency p50, µs.
    pub p50_us: f64,
    /// Latency p99, µs.
    pub p99_us: f64,
    /// Latency p99.9, µs.
    pub p999_us: f64,
    /// Server CPU time (user + system) per request, µs.
    pub server_cpu_us_per_req: f64,
    /// Load generator CPU time per request, µs.
    pub client_cpu_us_per_req: f64,
    /// The server's system calls per request, counted from outside the process
    /// (perf's `raw_syscalls:sys_enter` on its pid over the window), every subject;
    /// `None` where perf could not count (see `syscalls_note`).
    pub syscalls_per_req: Option<f64>,
    /// paste-rt's own count of its backend's system calls per request (`None` for
    /// peers).
    pub runtime_syscalls_per_req: Option<f64>,
    /// Why `syscalls_per_req` is missing, when it is.
    pub syscalls_note: Option<String>,
    /// paste-rt receive buffers per receive batch.
    pub mean_rx_batch: Option<f64>,
    /// Server heap allocations per request.
    pub allocs_per_req: Option<f64>,
    /// Server RSS at the end of the window, KiB.
    pub rss_kb: Option<u64>,
    /// Scale runs: RSS growth per connection, KiB.
    pub mem_per_conn_kb: Option<f64>,
    /// Errors (invalid responses, resets, stalls, start failures).
    pub errors: u64,
    /// The first errors, readable.
    pub error_messages: Vec<String>,
    /// `builtin` or `wrk`.
    pub client: String,
    /// The server's pinning: `ok` or why not.
    pub server_pinning: String,
    /// The client's pinning: `ok` or why not.
    pub client_pinning: String,
    /// 1-minute load average before the server started.
    pub load_avg_before: Option<f64>,
    /// 1-minute load average after the run.
    pub load_avg_after: Option<f64>,
    /// CPU time stolen by the hypervisor during the window, % of all CPU time.
    pub steal_pct: Option<f64>,
    /// The CPU the run saw (`/proc/cpuinfo`'s model name).
    pub cpu_model: String,
}

impl Record {
    /// Cores the run kept busy: the server's plus the load processes'.
    pub fn cores_in_use(&self) -> usize {
        self.server_core_list.len().max(self.server_cores) + self.client_core_list.len()
    }
}

/// The rounds of one subject × workload × concurrency.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Subject name.
    pub subject: String,
    /// Display name.
    pub label: String,
    /// Emulated figures.
    pub emulated: bool,
    /// Workload case.
    pub workload: String,
    /// Connections.
    pub conns: usize,
    /// Server cores.
    pub server_cores: usize,
    /// Requests per second.
    pub rps: Option<Spread>,
    /// p50, µs.
    pub p50_us: Option<Spread>,
    /// p99, µs.
    pub p99_us: Option<Spread>,
    /// p99.9, µs.
    pub p999_us: Option<Spread>,
    /// Server CPU µs per request.
    pub server_cpu_us_per_req: Option<Spread>,
    /// Client CPU µs per request.
    pub client_cpu_us_per_req: Option<Spread>,
    /// Syscalls per request, counted from outside (perf).
    pub syscalls_per_req: Option<Spread>,
    /// paste-rt's own count of syscalls per request.
    pub runtime_syscalls_per_req: Option<Spread>,
    /// Mean RX batch.
    pub mean_rx_batch: Option<Spread>,
    /// Allocations per request.
    pub allocs_per_req: Option<Spread>,
    /// RSS, KiB.
    pub rss_kb: Option<Spread>,
    /// Memory per connection, KiB (scale).
    pub mem_per_conn_kb: Option<Spread>,
    /// Errors over all rounds.
    pub errors: u64,
    /// Requests/s against the baseline.
    pub rps_vs_baseline: Option<Comparison>,
    /// Server CPU per request against the baseline.
    pub cpu_vs_baseline: Option<Comparison>,
}

fn spread_of(records: &[&Record], f: impl Fn(&Record) -> Option<f64>) -> Option<Spread> {
    let v: Vec<f64> = records.iter().filter_map(|r| f(r)).collect();
    Spread::of(&v)
}

/// Summarises records by subject × workload × conns × server cores, in first-seen
/// order, with ratios against `baseline` (a subject name) at the same workload,
/// connections and server cores. Rounds with errors are left out of the figures
/// (their errors are still counted).
pub fn summarize(records: &[Record], baseline: &str) -> Vec<Summary> {
    let mut keys: Vec<(String, String, usize, usize)> = Vec::new();
    for r in records {
        let k = (r.subject.clone(), r.workload.clone(), r.conns, r.server_cores);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let mut out: Vec<Summary> = keys
        .iter()
        .map(|(subject, workload, conns, cores)| {
            let all: Vec<&Record> = records
                .iter()
                .filter(|r| {
                    &r.subject == subject && &r.workload == workload && r.conns == *conns && r.server_cores == *cores
                })
                .collect();
            let ok: Vec<&Record> = all.iter().copied().filter(|r| r.errors == 0).collect();
            Summary {
                subject: subject.clone(),
                label: all[0].label.clone(),
                emulated: all[0].emulated,
                workload: workload.clone(),
                conns: *conns,
                server_cores: *cores,
                rps: spread_of(&ok, |r| Some(r.rps)),
                p50_us: spread_of(&ok, |r| Some(r.p50_us)),
                p99_us: spread_of(&ok, |r| Some(r.p99_us)),
                p999_us: spread_of(&ok, |r| Some(r.p999_us)),
                server_cpu_us_per_req: spread_of(&ok, |r| Some(r.server_cpu_us_per_req)),
                client_cpu_us_per_req: spread_of(&ok, |r| Some(r.client_cpu_us_per_req)),
                syscalls_per_req: spread_of(&ok, |r| r.syscalls_per_req),
                runtime_syscalls_per_req: spread_of(&ok, |r| r.runtime_syscalls_per_req),
                mean_rx_batch: spread_of(&ok, |r| r.mean_rx_batch),
                allocs_per_req: spread_of(&ok, |r| r.allocs_per_req),
                rss_kb: spread_of(&ok, |r| r.rss_kb.map(|v| v as f64)),
                mem_per_conn_kb: spread_of(&ok, |r| r.mem_per_conn_kb),
                errors: all.iter().map(|r| r.errors).sum(),
                rps_vs_baseline: None,
                cpu_vs_baseline: None,
            }
        })
        .collect();
    let bases: Vec<Summary> = out.iter().filter(|s| s.subject == baseline).cloned().collect();
    for s in &mut out {
        let Some(b) =
            bases.iter().find(|b| b.workload == s.workload && b.conns == s.conns && b.server_cores == s.server_cores)
        else {
            continue;
        };
        s.rps_vs_baseline = match (&s.rps, &b.rps) {
            (Some(x), Some(y)) => compare(x, y),
            _ => None,
        };
        s.cpu_vs_baseline = match (&s.server_cpu_us_per_req, &b.server_cpu_us_per_req) {
            (Some(x), Some(y)) => compare(x, y),
            _ => None,
        };
    }
    out
}
