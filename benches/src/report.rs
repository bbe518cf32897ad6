//! The outputs of an A/B run: the table on stdout, `results.json`, `report.md`
//! (with the charts of [`crate::charts`]).
//!
//! Owns formatting only: every figure comes from the records and summaries it is
//! given, and paste-emu's figures carry the "(emulated)" label wherever they appear.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::ab::Unavailable;
use crate::environment::Environment;
use crate::machine_load::STEAL_WARN_PCT;
use crate::record::{Record, Summary};
use crate::statistics::{Comparison, Spread, NOISE_RULE};

/// Everything written to `results.json`.
#[derive(Debug, Serialize)]
pub struct Results<'a> {
    /// Where and when.
    pub environment: &'a Environment,
    /// How the run was configured (readable).
    pub settings: &'a serde_json::Value,
    /// The noise rule.
    pub noise_rule: &'static str,
    /// Subjects that could not run a workload, and why.
    pub unavailable: &'a [Unavailable],
    /// One record per subject × workload × conns × round.
    pub records: &'a [Record],
    /// Medians and ranges per subject × workload × conns.
    pub summary: &'a [Summary],
}

fn fmt_num(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn median(s: &Option<Spread>) -> String {
    s.as_ref().map_or("n/a".into(), |s| fmt_num(s.median))
}

fn with_range(s: &Option<Spread>) -> String {
    match s {
        None => "n/a".into(),
        Some(s) if s.n < 2 => fmt_num(s.median),
        Some(s) => format!("{} ({}–{})", fmt_num(s.median), fmt_num(s.min), fmt_num(s.max)),
    }
}

fn vs(c: &Option<Comparison>, is_base: bool) -> String {
    if is_base {
        return "baseline".into();
    }
    match c {
        None => "n/a".into(),
        Some(c) => format!("{:.3} {}", c.ratio, c.verdict.label()),
    }
}

const HEADERS: [&str; 16] = [
    "subject",
    "cores",
    "req/s (min–max)",
    "req/s vs base",
    "p50 µs",
    "p99 µs",
    "p99.9 µs",
    "srv CPU µs/req (min–max)",
    "CPU vs base",
    "syscalls/req",
    "rt syscalls/req",
    "RX batch",
    "allocs/req",
    "RSS MiB",
    "cli CPU µs/req",
    "errors",
];

fn row(s: &Summary, baseline: &str) -> Vec<String> {
    let is_base = s.subject == baseline;
    vec![
        s.label.clone(),
        s.server_cores.to_string(),
        with_range(&s.rps),
        vs(&s.rps_vs_baseline, is_base),
        median(&s.p50_us),
        median(&s.p99_us),
        median(&s.p999_us),
        with_range(&s.server_cpu_us_per_req),
        vs(&s.cpu_vs_baseline, is_base),
        median(&s.syscalls_per_req),
        median(&s.runtime_syscalls_per_req),
        median(&s.mean_rx_batch),
        median(&s.allocs_per_req),
        s.rss_kb.as_ref().map_or("n/a".into(), |r| format!("{:.1}", r.median / 1024.0)),
        median(&s.client_cpu_us_per_req),
        s.errors.to_string(),
    ]
}

/// The rows of one (workload, conns) group: by server cores (in the order they
/// ran), then subjects in run order.
fn group_rows<'a>(summary: &'a [Summary], workload: &str, conns: usize) -> Vec<&'a Summary> {
    let mut cores: Vec<usize> = vec![];
    for s in summary.iter().filter(|s| s.workload == workload && s.conns == conns) {
        if !cores.contains(&s.server_cores) {
            cores.push(s.server_cores);
        }
    }
    cores
        .iter()
        .flat_map(|&n| {
            summary.iter().filter(move |s| s.workload == workload && s.conns == conns && s.server_cores == n)
        })
        .collect()
}

/// Warnings for the first lines of the report when the machine was busy: a load
/// average above the cores a run used, or steal above [`STEAL_WARN_PCT`].
pub fn busy_warnings(records: &[Record]) -> Vec<String> {
    let measured: Vec<&Record> = records.iter().filter(|r| !r.client_core_list.is_empty()).collect();
    let mut out = vec![];
    let loaded: Vec<(f64, usize)> = measured
        .iter()
        .filter_map(|r| {
            let load = r.load_avg_before.into_iter().chain(r.load_avg_after).fold(f64::NAN, f64::max);
            (load > r.cores_in_use() as f64).then_some((load, r.cores_in_use()))
        })
        .collect();
    if let Some(&(max, _)) = loaded.iter().max_by(|a, b| a.0.total_cmp(&b.0)) {
        let cores: Vec<usize> = loaded.iter().map(|l| l.1).collect();
        let (lo, hi) = (cores.iter().min().copied().unwrap_or(0), cores.iter().max().copied().unwrap_or(0));
        let used = if lo == hi { lo.to_string() } else { format!("{lo}–{hi}") };
        out.push(format!(
            "the machine was busy: in {} of {} runs the 1-minute load average (up to {max:.2}) was above the {used} \
             cores the run used, so other work competed for the CPUs. Timings (req/s, latency, CPU per request) \
             from such runs are noise; the counts (syscalls/req, allocs/req) still compare. Rerun on a quiet machine \
             for timings.",
            loaded.len(),
            measured.len()
        ));
    }
    let stolen: Vec<f64> = measured.iter().filter_map(|r| r.steal_pct).filter(|&p| p > STEAL_WARN_PCT).collect();
    if !stolen.is_empty() {
        let max = stolen.iter().copied().fold(0.0, f64::max);
        out.push(format!(
            "the hypervisor stole CPU time: more than {STEAL_WARN_PCT:.0} % (up to {max:.1} %) during {} of {} runs; \
             their timings are noise.",
            stolen.len(),
            measured.len()
        ));
    }
    out
}

/// The (workload, conns) groups in first-seen order.
pub fn groups(summary: &[Summary]) -> Vec<(String, usize)> {
    let mut g: Vec<(String, usize)> = vec![];
    for s in summary {
        let k = (s.workload.clone(), s.conns);
        if !g.contains(&k) {
            g.push(k);
        }
    }
    g
}

fn aligned(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let width: Vec<usize> =
        (0..cols).map(|c| rows.iter().map(|r| r.get(c).map_or(0, |s| s.chars().count())).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().enumerate().map(|(c, s)| format!("{s:<w$}", w = width[c])).collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

fn group_title(workload: &str, conns: usize, summary: &[Summary]) -> String {
    let scale = summary.iter().any(|s| s.workload == workload && s.mem_per_conn_kb.is_some());
    if scale {
        format!("{workload} · {conns} idle connections")
    } else {
        format!("{workload} · {conns} connections")
    }
}

/// The stdout table, grouped by workload and concurrency.
pub fn text_table(summary: &[Summary], baseline: &str) -> String {
    let mut out = String::new();
    for (workload, conns) in groups(summary) {
        let _ = writeln!(out, "\n== {} (baseline: {baseline}) ==", group_title(&workload, conns, summary));
        let mut rows = vec![HEADERS.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
        for s in group_rows(summary, &workload, conns) {
            rows.push(row(s, baseline));
        }
        out.push_str(&aligned(&rows));
        for s in summary.iter().filter(|s| s.workload == workload && s.conns == conns) {
            if let Some(m) = &s.mem_per_conn_kb {
                let _ = writeln!(out, "  {}: {:.1} KiB per connection (RSS growth / connections)", s.label, m.median);
            }
        }
    }
    out
}

fn markdown_table(rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        let _ = writeln!(out, "| {} |", r.join(" | "));
        if i == 0 {
            let _ = writeln!(out, "|{}", "---|".repeat(r.len()));
        }
    }
    out
}

/// Settings shown at the top of the report.
#[derive(Debug, Clone)]
pub struct ReportContext<'a> {
    /// Environment.
    pub environment: &'a Environment,
    /// The baseline subject.
    pub baseline: &'a str,
    /// Readable settings lines.
    pub settings: Vec<String>,
    /// Chart file names per workload case.
    pub charts: Vec<(String, Vec<String>)>,
    /// Unavailable subjects.
    pub unavailable: &'a [Unavailable],
    /// Pinning notes.
    pub pinning: Vec<String>,
    /// Server-core counts not run, and why.
    pub skipped_cores: Vec<String>,
    /// How the cores were split, per server-core count.
    pub core_splits: Vec<String>,
    /// The share of its cores each server was held to (`--server-cpu`), if any.
    pub server_cpu: Option<f64>,
}

/// `report.md`.
pub fn markdown(ctx: &ReportContext<'_>, records: &[Record], summary: &[Summary]) -> String {
    let env = ctx.environment;
    let mut md = String::new();
    let _ = writeln!(md, "# paste-rt A/B benchmark\n");
    for w in busy_warnings(records) {
        let _ = writeln!(md, "> **Warning:** {w}\n");
    }
    let _ = writeln!(md, "Produced by `{}`", env.command_line);
    let _ = writeln!(
        md,
        "on {} ({} cores online; allowed {:?}), kernel `{}`, {}, commit `{}`.\n",
        env.cpu_model,
        env.cores,
        env.cores_allowed,
        env.kernel,
        env.date,
        env.git_commit.as_deref().unwrap_or("unknown")
    );
    let _ = writeln!(md, "## Settings\n");
    for s in &ctx.settings {
        let _ = writeln!(md, "- {s}");
    }
    for c in &ctx.core_splits {
        let _ = writeln!(md, "- {c}");
    }
    for p in &ctx.pinning {
        let _ = writeln!(md, "- {p}");
    }
    let _ = writeln!(md, "\n## paste-rt backends on this machine\n");
    let _ = writeln!(md, "| backend | subject | started | detail / reason |\n|---|---|---|---|");
    for b in &env.backends {
        let subject = if b.emulated { format!("{} (emulated)", b.subject) } else { b.subject.clone() };
        let _ =
            writeln!(md, "| {} | {} | {} | {} |", b.backend, subject, if b.started { "yes" } else { "no" }, b.detail);
    }
    if env.backends.iter().any(|b| b.emulated) {
        let _ = writeln!(
            md,
            "\n`paste-rt-paste-emu` runs PASTE's data path emulated in user space: its figures are labelled \
             **(emulated)** everywhere and say nothing about kernel PASTE."
        );
    }
    if !ctx.unavailable.is_empty() || !ctx.skipped_cores.is_empty() {
        let _ = writeln!(md, "\n## Not run\n");
        for c in &ctx.skipped_cores {
            let _ = writeln!(md, "- {c}");
        }
        for u in ctx.unavailable {
            match u.server_cores {
                Some(n) => {
                    let _ = writeln!(md, "- {} × {} on {n} server cores: {}", u.subject, u.workload, u.reason);
                }
                None => {
                    let _ = writeln!(md, "- {} × {}: {}", u.subject, u.workload, u.reason);
                }
            }
        }
    }
    let _ = writeln!(md, "\n## How to read this\n");
    let _ = writeln!(
        md,
        "Each cell is the median over the rounds, with the min–max range over the rounds in parentheses. \
         Subjects ran interleaved (A B C … A B C …) in every round. *cores* is the number of server cores N: \
         the server ran on the first N cores (paste-rt as N thread-per-core runtimes, tokio-mt as one runtime \
         with N workers, the other peers as N copies sharing the port with SO_REUSEPORT), and the load came \
         from one load generator process per remaining core, each pinned to its own core, the connections \
         split among them; their latency histograms are merged, so the quantiles are those of every response. \
         Every response was validated, and a round with any error is left out of the figures (its errors are \
         counted in the last column and listed below). Server CPU µs/req is the server process's user+system \
         time (`/proc/<pid>/stat`) over the window divided by the requests completed; on loopback it includes \
         the kernel's TCP work on the server's cores. *syscalls/req* is counted from outside the server, for \
         every subject alike: perf's `raw_syscalls:sys_enter` tracepoint on the server's pid over exactly the \
         window (n/a where perf cannot run; `results.json` says why). *rt syscalls/req* and RX batch are \
         paste-rt's own counters (peers: n/a); the outside count also sees the calls made outside paste-rt's \
         backend (the harness's control thread, the allocator), so it is the one that compares across \
         subjects. allocs/req counts the \
         server's heap allocations (the paste-bench binary's counting allocator, every subject). `results.json` \
         also records the load average before and after each run and the CPU steal during it.\n"
    );
    let _ = writeln!(md, "**Noise rule.** {NOISE_RULE}\n");
    let (title, note) = bottleneck_note(summary, ctx.server_cpu);
    let _ = writeln!(md, "**{title}.** {note}\n");
    let _ = writeln!(md, "## Results\n");
    for (workload, conns) in groups(summary) {
        let _ = writeln!(md, "### {} (baseline: {})\n", group_title(&workload, conns, summary), ctx.baseline);
        let mut rows = vec![HEADERS.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
        for s in group_rows(summary, &workload, conns) {
            rows.push(row(s, ctx.baseline));
        }
        md.push_str(&markdown_table(&rows));
        for s in summary.iter().filter(|s| s.workload == workload && s.conns == conns) {
            if let Some(m) = &s.mem_per_conn_kb {
                let _ = writeln!(md, "\n{}: {:.1} KiB per connection (RSS growth / connections).", s.label, m.median);
            }
        }
        md.push('\n');
    }
    if !ctx.charts.is_empty() {
        let _ = writeln!(md, "## Charts\n");
        for (case, files) in &ctx.charts {
            let _ = writeln!(md, "### {case}\n");
            for f in files {
                let _ = writeln!(md, "![{f}]({f})\n");
            }
        }
    }
    let invalid: Vec<&Record> = records.iter().filter(|r| r.errors > 0).collect();
    if !invalid.is_empty() {
        let _ = writeln!(md, "## Invalid runs\n");
        for r in invalid {
            let _ = writeln!(
                md,
                "- {} {} c={} round {}: {}",
                r.label,
                r.workload,
                r.conns,
                r.round + 1,
                r.error_messages.join("; ")
            );
        }
    }
    md
}

/// Whether the load generator was cheaper per request than the servers it drove
/// (otherwise it measures itself).
pub fn client_cost_note(summary: &[Summary]) -> String {
    let costly: Vec<String> = summary
        .iter()
        .filter_map(|s| {
            let (c, v) = (s.client_cpu_us_per_req?, s.server_cpu_us_per_req?);
            (c.median >= v.median)
                .then(|| format!("{} {} c={} ({:.2} vs {:.2})", s.label, s.workload, s.conns, c.median, v.median))
        })
        .collect();
    if costly.is_empty() {
        "the load generator used less CPU per request than every server it drove.".into()
    } else {
        format!(
            "the load generator used as much CPU per request as the server, or more, in {} of {} cells (client vs \
             server µs/req): {}. On loopback each side's core also runs the other side's TCP receive path, so \
             both figures are dominated by the kernel; compare servers with each other, not with the client.",
            costly.len(),
            summary.len(),
            costly.join(", ")
        )
    }
}

/// The note on which side bounded the rate, with its title: with servers held to a
/// share of their cores (`--server-cpu`), whether they used it
/// ([`server_bound_note`]); otherwise what the load generator cost
/// ([`client_cost_note`]).
pub fn bottleneck_note(summary: &[Summary], server_cpu: Option<f64>) -> (&'static str, String) {
    match server_cpu {
        Some(share) => ("Server-bound", server_bound_note(summary, share)),
        None => ("Client cost", client_cost_note(summary)),
    }
}

/// A cell's server is taken as saturated when it used at least this part of the CPU
/// it was allowed (`--server-cpu`).
pub const SATURATED: f64 = 0.9;

/// Part of the CPU a cell's servers were allowed that they used: requests/s × CPU
/// per request over `share` of `server_cores` cores (medians).
pub fn allowed_cpu_used(s: &Summary, share: f64) -> Option<f64> {
    let (rps, cpu) = (s.rps.as_ref()?.median, s.server_cpu_us_per_req.as_ref()?.median);
    Some(rps * cpu / 1e6 / (share * s.server_cores.max(1) as f64))
}

/// For runs whose servers were held to `share` of their cores: how much of that
/// they used, and the cells where they did not saturate it (there the rate is not
/// the server's alone).
pub fn server_bound_note(summary: &[Summary], share: f64) -> String {
    let used: Vec<(&Summary, f64)> = summary.iter().filter_map(|s| Some((s, allowed_cpu_used(s, share)?))).collect();
    let Some(Spread { min: lo, max: hi, .. }) = Spread::of(&used.iter().map(|&(_, u)| u).collect::<Vec<_>>()) else {
        return "no cell has both a request rate and a server CPU figure.".into();
    };
    let short: Vec<String> = used
        .iter()
        .filter(|&&(_, u)| u < SATURATED)
        .map(|(s, u)| format!("{} {} c={} ({:.0} %)", s.label, s.workload, s.conns, u * 100.0))
        .collect();
    let mut note = format!(
        "each server was held to {:.0} % of each of its cores, and used {:.0}–{:.0} % of that (requests/s × server \
         CPU per request, medians), so its request rate is what the server itself can serve on that much CPU.",
        share * 100.0,
        lo * 100.0,
        hi * 100.0
    );
    if !short.is_empty() {
        note.push_str(&format!(
            " Below {:.0} % — not server-bound, the rate there is set by the load: {}.",
            SATURATED * 100.0,
            short.join(", ")
        ));
    }
    note
}

/// Writes `results.json`.
pub fn write_json(path: &Path, results: &Results<'_>) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(results).map_err(std::io::Error::other)?;
    std::fs::write(path, text)
}
