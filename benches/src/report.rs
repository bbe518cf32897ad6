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

const HEADERS: [&str; 14] = [
    "subject",
    "req/s (min–max)",
    "req/s vs base",
    "p50 µs",
    "p99 µs",
    "p99.9 µs",
    "srv CPU µs/req (min–max)",
    "CPU vs base",
    "syscalls/req",
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
        with_range(&s.rps),
        vs(&s.rps_vs_baseline, is_base),
        median(&s.p50_us),
        median(&s.p99_us),
        median(&s.p999_us),
        with_range(&s.server_cpu_us_per_req),
        vs(&s.cpu_vs_baseline, is_base),
        median(&s.syscalls_per_req),
        median(&s.mean_rx_batch),
        median(&s.allocs_per_req),
        s.rss_kb.as_ref().map_or("n/a".into(), |r| format!("{:.1}", r.median / 1024.0)),
        median(&s.client_cpu_us_per_req),
        s.errors.to_string(),
    ]
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
        for s in summary.iter().filter(|s| s.workload == workload && s.conns == conns) {
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
}

/// `report.md`.
pub fn markdown(ctx: &ReportContext<'_>, records: &[Record], summary: &[Summary]) -> String {
    let env = ctx.environment;
    let mut md = String::new();
    let _ = writeln!(md, "# paste-rt A/B benchmark\n");
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
    if !ctx.unavailable.is_empty() {
        let _ = writeln!(md, "\n## Not run\n");
        for u in ctx.unavailable {
            let _ = writeln!(md, "- {} × {}: {}", u.subject, u.workload, u.reason);
        }
    }
    let _ = writeln!(md, "\n## How to read this\n");
    let _ = writeln!(
        md,
        "Each cell is the median over the rounds, with the min–max range over the rounds in parentheses. \
         Subjects ran interleaved (A B C … A B C …) in every round. The server ran pinned to core {} and the \
         load generator to core {}; every response was validated, and a round with any error is left out of \
         the figures (its errors are counted in the last column and listed below). Server CPU µs/req is the \
         server process's user+system time (`/proc/<pid>/stat`) over the window divided by the requests \
         completed; on loopback it includes the kernel's TCP work on the server's core. syscalls/req and RX \
         batch are paste-rt's own counters (peers: n/a, not measured); allocs/req counts the server's heap \
         allocations (the paste-bench binary's counting allocator, every subject).\n",
        crate::ab::SERVER_CORE,
        crate::ab::CLIENT_CORE
    );
    let _ = writeln!(md, "**Noise rule.** {NOISE_RULE}\n");
    let _ = writeln!(md, "**Client cost.** {}\n", client_cost_note(summary));
    let _ = writeln!(md, "## Results\n");
    for (workload, conns) in groups(summary) {
        let _ = writeln!(md, "### {} (baseline: {})\n", group_title(&workload, conns, summary), ctx.baseline);
        let mut rows = vec![HEADERS.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
        for s in summary.iter().filter(|s| s.workload == workload && s.conns == conns) {
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
/// (docs/benchmarking.md: otherwise it measures itself).
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

/// Writes `results.json`.
pub fn write_json(path: &Path, results: &Results<'_>) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(results).map_err(std::io::Error::other)?;
    std::fs::write(path, text)
}
