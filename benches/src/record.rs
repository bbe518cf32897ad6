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
    /// paste-rt system calls per request (`None` for peers: not measured).
    pub syscalls_per_req: Option<f64>,
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
    /// Syscalls per request.
    pub syscalls_per_req: Option<Spread>,
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

/// Summarises records by subject × workload × conns, in first-seen order, with
/// ratios against `baseline` (a subject name). Rounds with errors are left out of
/// the figures (their errors are still counted).
pub fn summarize(records: &[Record], baseline: &str) -> Vec<Summary> {
    let mut keys: Vec<(String, String, usize)> = Vec::new();
    for r in records {
        let k = (r.subject.clone(), r.workload.clone(), r.conns);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let mut out: Vec<Summary> = keys
        .iter()
        .map(|(subject, workload, conns)| {
            let all: Vec<&Record> = records
                .iter()
                .filter(|r| &r.subject == subject && &r.workload == workload && r.conns == *conns)
                .collect();
            let ok: Vec<&Record> = all.iter().copied().filter(|r| r.errors == 0).collect();
            Summary {
                subject: subject.clone(),
                label: all[0].label.clone(),
                emulated: all[0].emulated,
                workload: workload.clone(),
                conns: *conns,
                rps: spread_of(&ok, |r| Some(r.rps)),
                p50_us: spread_of(&ok, |r| Some(r.p50_us)),
                p99_us: spread_of(&ok, |r| Some(r.p99_us)),
                p999_us: spread_of(&ok, |r| Some(r.p999_us)),
                server_cpu_us_per_req: spread_of(&ok, |r| Some(r.server_cpu_us_per_req)),
                client_cpu_us_per_req: spread_of(&ok, |r| Some(r.client_cpu_us_per_req)),
                syscalls_per_req: spread_of(&ok, |r| r.syscalls_per_req),
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
        let Some(b) = bases.iter().find(|b| b.workload == s.workload && b.conns == s.conns) else { continue };
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
