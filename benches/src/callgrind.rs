//! `paste-bench callgrind`: user-space instructions per request, counted by
//! `valgrind --tool=callgrind`. Deterministic where wall-clock
//! figures are within noise.
//!
//! How one subject is measured: its `paste-bench serve` child runs under
//! callgrind, pinned as in `ab`; the built-in load generator opens the
//! connections once and sends three counted phases on them — warm-up, N1, N2 =
//! 2×N1 requests ([`crate::loadgen::run_counted`]). After each phase, with every
//! connection idle, `callgrind_control --dump` makes callgrind write the
//! instructions counted since the previous dump to its own file (and zero its
//! counters). The figure is (Ir(N2) − Ir(N1)) / (N2 − N1): start-up, connection
//! set-up and whatever each part costs once cancel out.
//!
//! Why dumps and not an exit command or a signal: valgrind holds its big lock
//! through `io_uring_enter` (it is not among the syscalls valgrind lets block), so
//! while an io_uring runtime waits for completions no other thread of the child can
//! run and no signal is delivered; `callgrind_control` reaches the process through
//! vgdb, which interrupts the blocked syscall with ptrace. The child is then killed
//! (SIGKILL, by pid): its counts are already on disk.
//!
//! An emulated subject (paste-emu) also gets its emulated kernel's share: the
//! inclusive Ir of the one function that plays the kernel
//! ([`Subject::emulated_kernel_function`]), per request in the same way. Kernel
//! PASTE runs that work in the kernel, so the rest is what the port costs the
//! application.
//!
//! Owns the valgrind command, the dump protocol, reading the dumps (through
//! [`crate::callgrind_output`]) and this mode's
//! table and files (`callgrind.json`, `callgrind.md`). It never reads wall-clock
//! figures as results, and never leaves a child or a vgdb FIFO behind.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::ab::{self, CLIENT_CORE};
use crate::callgrind_output::{parse_calls, parse_inclusive_ir, parse_total_ir, ParseError};
use crate::control::ServerChild;
use crate::exchange::LoadSpec;
use crate::loadgen::{self, CountedConfig};
use crate::statistics::Spread;
use crate::subject::{ServeConfig, Subject};
use crate::workload::Workload;

/// The Debian package that provides `valgrind` and `callgrind_control`.
pub const VALGRIND_PACKAGE: &str = "valgrind";
/// Time a child under valgrind gets to print its address.
pub const START_LIMIT: Duration = Duration::from_secs(120);
/// Seconds one measurement costs besides its requests: valgrind loading the
/// binary and its debug info, three dumps, the kill (measured on the 2-core
/// development machine).
pub const START_SECS: f64 = 1.0;
/// Seconds one request costs under callgrind, for the ETA (same machine; varies
/// by subject).
pub const SECS_PER_REQUEST: f64 = 0.000_06;

/// Why the callgrind mode could not measure.
#[derive(Debug, thiserror::Error)]
pub enum CallgrindError {
    /// A tool is not on `PATH`.
    #[error("{tool} is not installed: install the Debian package `{package}` (apt-get install {package})")]
    Missing {
        /// The program looked for.
        tool: &'static str,
        /// The package providing it.
        package: &'static str,
    },
    /// Creating or reading a file failed.
    #[error("{what} {path}: {source}")]
    File {
        /// What was attempted.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error (with its errno).
        #[source]
        source: io::Error,
    },
    /// The child (under valgrind) did not start.
    #[error("{subject}: {source}")]
    Start {
        /// The subject.
        subject: String,
        /// Why.
        #[source]
        source: crate::control::ChildError,
    },
    /// The counted load failed (invalid response, stall, dump failure).
    #[error("{subject}: {message}")]
    Load {
        /// The subject.
        subject: String,
        /// What went wrong, with the child's state and stderr when useful.
        message: String,
    },
    /// A callgrind output file could not be read as one.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: ParseError,
    },
}

/// `valgrind` and `callgrind_control`, found on `PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    /// The valgrind launcher.
    pub valgrind: PathBuf,
    /// callgrind's control script (talks to the process through vgdb).
    pub callgrind_control: PathBuf,
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
}

impl Tools {
    /// Finds both tools, or names the package to install.
    pub fn find() -> Result<Tools, CallgrindError> {
        let missing = |tool| CallgrindError::Missing { tool, package: VALGRIND_PACKAGE };
        let valgrind = on_path("valgrind").ok_or_else(|| missing("valgrind"))?;
        let callgrind_control = on_path("callgrind_control").ok_or_else(|| missing("callgrind_control"))?;
        Ok(Tools { valgrind, callgrind_control })
    }

    /// `valgrind --version`, e.g. `valgrind-3.19.0`.
    pub fn version(&self) -> Option<String> {
        let out = Command::new(&self.valgrind).arg("--version").output().ok()?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_owned()).filter(|v| !v.is_empty())
    }
}

/// Everything the callgrind mode needs.
#[derive(Debug, Clone)]
pub struct CallgrindPlan {
    /// Subjects, in table order.
    pub subjects: Vec<Subject>,
    /// The workload the servers serve.
    pub workload: Workload,
    /// Its client side.
    pub spec: LoadSpec,
    /// Connection counts (one measurement per subject, count and round).
    pub conns: Vec<usize>,
    /// Rounds: subjects interleaved (A B C … A B C …).
    pub rounds: usize,
    /// Requests of the warm-up phase.
    pub warmup_requests: u64,
    /// N1; the second measured phase sends N2 = 2×N1.
    pub requests: u64,
    /// Pipelined requests per connection, in batches (the next once all are answered).
    pub pipeline: usize,
    /// Time limit of one phase.
    pub phase_limit: Duration,
    /// How servers serve.
    pub serve: ServeConfig,
    /// The `paste-bench` executable.
    pub exe: PathBuf,
    /// valgrind and callgrind_control.
    pub tools: Tools,
    /// Where callgrind's files and vgdb's FIFOs go while measuring (removed after).
    pub work_dir: PathBuf,
    /// Keep each phase's callgrind profile here (for `callgrind_annotate`), named
    /// `<subject>-c<conns>-r<round>.<phase>.callgrind.out`, phase `start`, `n1` or `n2`.
    pub keep_profiles: Option<PathBuf>,
}

/// Names of the three phases, as in kept profile files.
pub const PHASES: [&str; 3] = ["start", "n1", "n2"];

impl CallgrindPlan {
    /// N2.
    pub fn requests2(&self) -> u64 {
        self.requests * 2
    }

    /// Measurements: one per connection count, subject and round.
    pub fn measurements(&self) -> usize {
        self.conns.len() * self.subjects.len() * self.rounds.max(1)
    }

    /// Estimated seconds of one measurement.
    pub fn measurement_secs(&self) -> f64 {
        START_SECS + (self.warmup_requests + self.requests + self.requests2()) as f64 * SECS_PER_REQUEST
    }

    /// Estimated wall time of the whole plan.
    pub fn eta(&self) -> Duration {
        Duration::from_secs_f64(self.measurement_secs() * self.measurements() as f64)
    }
}

/// What one subject measured at one connection count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallgrindResult {
    /// Subject name.
    pub subject: String,
    /// Display label (`(emulated)` for paste-emu).
    pub label: String,
    /// Whether the figures are emulated (paste-emu).
    pub emulated: bool,
    /// Workload.
    pub workload: String,
    /// Connections.
    pub conns: usize,
    /// Round (0-based; subjects interleaved within a round).
    pub round: usize,
    /// Warm-up requests.
    pub warmup_requests: u64,
    /// N1.
    pub n1: u64,
    /// N2.
    pub n2: u64,
    /// Ir from the child's start through the warm-up (start-up included).
    pub ir_startup: Option<u64>,
    /// Ir of the N1 phase.
    pub ir_n1: Option<u64>,
    /// Ir of the N2 phase.
    pub ir_n2: Option<u64>,
    /// (Ir(N2) − Ir(N1)) / (N2 − N1): user-space instructions per request.
    pub instructions_per_request: Option<f64>,
    /// Ir each phase costs once (2·Ir(N1) − Ir(N2) when N2 = 2·N1): waking up
    /// after a dump, the dump's own bookkeeping. Small against the phases.
    pub ir_fixed_per_phase: Option<i64>,
    /// For an emulated subject: the Ir of its emulated kernel
    /// ([`Subject::emulated_kernel_function`], inclusive) in the N1 and N2 phases.
    #[serde(default)]
    pub emulated_kernel_ir: Option<[u64; 2]>,
    /// For an emulated subject: the emulated kernel's instructions per request,
    /// part of `instructions_per_request` (kernel PASTE does this work in the
    /// kernel; the rest is what the port costs the application).
    #[serde(default)]
    pub emulated_kernel_per_request: Option<f64>,
    /// Calls of [`WAIT_FUNCTIONS`] (the server's wake-ups) in the N1 and N2 phases.
    #[serde(default)]
    pub waits: Option<[u64; 2]>,
    /// Wall seconds of the N1 and N2 phases (under valgrind: not a result).
    pub phase_secs: Vec<f64>,
    /// `ok`, or why the server could not be pinned.
    pub server_pinning: String,
    /// `ok`, or why the load generator could not be pinned.
    pub client_pinning: String,
    /// Why there are no figures, if there are none.
    pub error: Option<String>,
}

impl CallgrindResult {
    /// Wake-ups per request in the N1 and N2 phases, when counted.
    pub fn waits_per_request(&self) -> Option<[f64; 2]> {
        let [w1, w2] = self.waits?;
        (self.n1 > 0 && self.n2 > 0).then(|| [w1 as f64 / self.n1 as f64, w2 as f64 / self.n2 as f64])
    }

    /// Whether the two phases found different numbers of requests per wake-up
    /// (beyond [`REGIME_TOLERANCE`]): the slope between them then charges the
    /// difference in wake-ups to the requests, and is no one regime's cost.
    pub fn phases_differ(&self) -> bool {
        match self.waits_per_request() {
            Some([a, b]) if a > 0.0 || b > 0.0 => (a - b).abs() > REGIME_TOLERANCE * a.max(b),
            _ => false,
        }
    }

    fn empty(subject: Subject, plan: &CallgrindPlan, conns: usize, round: usize) -> CallgrindResult {
        CallgrindResult {
            subject: subject.name(),
            label: subject.label(),
            emulated: subject.is_emulated(),
            workload: plan.workload.name().to_owned(),
            conns,
            round,
            warmup_requests: plan.warmup_requests,
            n1: plan.requests,
            n2: plan.requests2(),
            ir_startup: None,
            ir_n1: None,
            ir_n2: None,
            instructions_per_request: None,
            ir_fixed_per_phase: None,
            emulated_kernel_ir: None,
            emulated_kernel_per_request: None,
            waits: None,
            phase_secs: vec![],
            server_pinning: String::new(),
            client_pinning: String::new(),
            error: None,
        }
    }
}

/// Instructions per request from the two measured parts.
pub fn per_request(n1: u64, ir_n1: u64, n2: u64, ir_n2: u64) -> Option<f64> {
    (n2 > n1).then(|| (ir_n2 as f64 - ir_n1 as f64) / (n2 - n1) as f64)
}

/// The command running `subject`'s server under callgrind: output to `out_file`
/// (dumps to `out_file.1`, `.2`, …), vgdb FIFOs under `vgdb_prefix`.
pub fn valgrind_command(plan: &CallgrindPlan, subject: Subject, out_file: &Path, vgdb_prefix: &Path) -> Command {
    let inner = ab::serve_command_for(&plan.exe, &plan.serve, subject, plan.workload);
    let mut cmd = Command::new(&plan.tools.valgrind);
    cmd.args(["--tool=callgrind", "-q", "--vgdb=yes"]);
    cmd.arg(format!("--callgrind-out-file={}", out_file.display()));
    cmd.arg(format!("--vgdb-prefix={}", vgdb_prefix.display()));
    cmd.arg(inner.get_program()).args(inner.get_args());
    cmd
}

/// Asks callgrind in process `pid` to dump (and zero) its counts.
fn dump(tools: &Tools, vgdb_prefix: &Path, pid: u32, hint: &str) -> Result<(), String> {
    let out = Command::new(&tools.callgrind_control)
        .arg(format!("--vgdb-prefix={}", vgdb_prefix.display()))
        .arg(format!("--dump={hint}"))
        .arg(pid.to_string())
        .output()
        .map_err(|e| format!("running {}: {e}", tools.callgrind_control.display()))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() || !text.contains("OK") {
        return Err(format!("callgrind_control --dump {pid} failed ({}): {}", out.status, text.trim()));
    }
    Ok(())
}

/// What one dump counted: its total Ir, its calls of [`WAIT_FUNCTIONS`] and, when
/// asked for, one function's inclusive Ir.
#[derive(Debug, Clone, Copy, Default)]
struct PartIr {
    total: u64,
    waits: u64,
    function: Option<u64>,
}

/// The functions through which a server waits for the kernel, one call per
/// wake-up: `epoll_wait` (epoll, tokio, monoio's legacy driver), `poll` (kernel
/// PASTE), and libc's `syscall`, through which the io_uring crates enter the ring
/// (paste-rt on io_uring and paste-emu, monoio, raw-uring).
pub const WAIT_FUNCTIONS: [&str; 3] = ["epoll_wait", "poll", "syscall"];

/// Two phases whose wake-ups per request differ by more than this fraction ran
/// in different regimes: the slope between them is then flagged.
pub const REGIME_TOLERANCE: f64 = 0.15;

/// Reads the total Ir of dump `part` (and `function`'s inclusive Ir, when given),
/// waiting briefly for the file to be complete. A function that ran in none of the
/// part's instructions is an error: its name changed, or it was inlined.
fn read_part(out_file: &Path, part: usize, function: Option<&str>) -> Result<PartIr, CallgrindError> {
    let path = PathBuf::from(format!("{}.{part}", out_file.display()));
    let deadline = Instant::now() + Duration::from_secs(10);
    let parse = |text: &str| -> Result<PartIr, ParseError> {
        let total = parse_total_ir(text)?;
        let waits = parse_calls(text, &WAIT_FUNCTIONS)?;
        let function = match function {
            None => None,
            Some(name) => match parse_inclusive_ir(text, name)? {
                0 if total > 0 => return Err(ParseError::NoFunction(name.to_owned())),
                ir => Some(ir),
            },
        };
        Ok(PartIr { total, waits, function })
    };
    loop {
        let text = std::fs::read_to_string(&path);
        let parsed = match text {
            Ok(t) => parse(&t).map_err(|source| CallgrindError::Parse { path: path.clone(), source }),
            Err(source) => Err(CallgrindError::File { what: "reading", path: path.clone(), source }),
        };
        match parsed {
            Ok(ir) => return Ok(ir),
            // A missing function does not appear by waiting.
            Err(e @ CallgrindError::Parse { source: ParseError::NoFunction(_), .. }) => return Err(e),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Measures `subject` at `conns` connections. `on_phase(i)` is called after each
/// of the three phases (for progress). Errors are recorded in the result.
pub fn measure(
    plan: &CallgrindPlan,
    subject: Subject,
    conns: usize,
    round: usize,
    on_phase: &dyn Fn(usize),
) -> CallgrindResult {
    let mut result = CallgrindResult::empty(subject, plan, conns, round);
    let dir = plan.work_dir.join(format!("{}-c{conns}-r{round}", subject.name()));
    let measured = std::fs::create_dir_all(&dir)
        .map_err(|source| CallgrindError::File { what: "creating", path: dir.clone(), source })
        .and_then(|()| measure_in(plan, subject, conns, &dir, on_phase, &mut result));
    let _ = std::fs::remove_dir_all(&dir);
    match measured {
        Ok([startup, n1, n2]) => {
            result.ir_startup = Some(startup.total);
            result.ir_n1 = Some(n1.total);
            result.ir_n2 = Some(n2.total);
            result.instructions_per_request = per_request(result.n1, n1.total, result.n2, n2.total);
            result.ir_fixed_per_phase = (result.n2 == 2 * result.n1).then(|| 2 * n1.total as i64 - n2.total as i64);
            result.waits = Some([n1.waits, n2.waits]);
            if let (Some(k1), Some(k2)) = (n1.function, n2.function) {
                result.emulated_kernel_ir = Some([k1, k2]);
                result.emulated_kernel_per_request = per_request(result.n1, k1, result.n2, k2);
            }
        }
        Err(e) => result.error = Some(e.to_string()),
    }
    result
}

fn measure_in(
    plan: &CallgrindPlan,
    subject: Subject,
    conns: usize,
    dir: &Path,
    on_phase: &dyn Fn(usize),
    result: &mut CallgrindResult,
) -> Result<[PartIr; 3], CallgrindError> {
    let out_file = dir.join("callgrind.out");
    let vgdb_prefix = dir.join("vgdb-pipe");
    let command = valgrind_command(plan, subject, &out_file, &vgdb_prefix);
    let mut server = ServerChild::start(command, START_LIMIT)
        .map_err(|source| CallgrindError::Start { subject: subject.name(), source })?;
    result.server_pinning = match &server.pinned {
        Ok(()) => "ok".into(),
        Err(e) => e.clone(),
    };
    let pid = server.pid();
    let config = CountedConfig {
        addr: server.addr,
        spec: plan.spec.clone(),
        conns,
        pipeline: plan.pipeline.max(1),
        phases: vec![plan.warmup_requests, plan.requests, plan.requests2()],
        phase_limit: plan.phase_limit,
        core: Some(CLIENT_CORE),
    };
    let (tools, prefix, out) = (plan.tools.clone(), vgdb_prefix.clone(), out_file.clone());
    let keep =
        plan.keep_profiles.clone().map(|dir| (dir, format!("{}-c{conns}-r{}", subject.name(), result.round + 1)));
    let kernel_function = subject.emulated_kernel_function();
    let (tx, rx) = mpsc::channel();
    // The generator runs on its own (pinned) thread; between phases it asks for a
    // dump and reads it, while every connection is idle.
    let thread = std::thread::Builder::new()
        .name("paste-bench-callgrind-load".into())
        .spawn(move || {
            let mut irs = [PartIr::default(); 3];
            let counted = loadgen::run_counted(&config, |phase| {
                dump(&tools, &prefix, pid, &format!("phase-{phase}"))?;
                irs[phase] = read_part(&out, phase + 1, kernel_function).map_err(|e| e.to_string())?;
                if let Some((dir, stem)) = &keep {
                    let from = format!("{}.{}", out.display(), phase + 1);
                    let to = dir.join(format!("{stem}.{}.callgrind.out", PHASES[phase.min(2)]));
                    std::fs::copy(&from, &to).map_err(|e| format!("keeping {from} as {}: {e}", to.display()))?;
                }
                let _ = tx.send(phase);
                Ok(())
            });
            counted.map(|c| (c, irs))
        })
        .map_err(|source| CallgrindError::File { what: "starting the load thread for", path: dir.into(), source })?;
    for phase in rx {
        on_phase(phase);
    }
    let joined = thread.join();
    let outcome = match joined {
        Ok(Ok((counted, irs))) => {
            result.client_pinning = match &counted.pinned {
                Ok(()) => "ok".into(),
                Err(e) => e.clone(),
            };
            result.phase_secs = counted.phases.iter().skip(1).map(|p| p.elapsed.as_secs_f64()).collect();
            Ok(irs)
        }
        Ok(Err(e)) => Err(CallgrindError::Load { subject: subject.name(), message: server.failure(&e.to_string()) }),
        Err(_) => Err(CallgrindError::Load { subject: subject.name(), message: "the load generator panicked".into() }),
    };
    server.stop();
    outcome
}

fn fmt_ir(v: Option<u64>) -> String {
    v.map_or("n/a".into(), |v| v.to_string())
}

/// The subject whose instructions per request every other is compared with: the
/// hand-written io_uring loop, which runs the same protocol code with no runtime.
pub const REFERENCE: &str = "raw-uring";

/// One subject at one connection count, over the rounds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallgrindSummary {
    /// Subject name.
    pub subject: String,
    /// Display label (`(emulated)` for paste-emu).
    pub label: String,
    /// Connections.
    pub conns: usize,
    /// Instructions per request over the rounds that measured.
    pub instructions_per_request: Option<Spread>,
    /// The round whose figure is the median (the lower middle one for an even
    /// count): its totals are the ones shown.
    pub median_round: Option<CallgrindResult>,
    /// Rounds that did not measure, and why.
    pub errors: Vec<String>,
}

/// Summarises the rounds per subject and connection count, in first-seen order.
pub fn summarize(results: &[CallgrindResult]) -> Vec<CallgrindSummary> {
    let mut keys: Vec<(usize, String)> = vec![];
    for r in results {
        let key = (r.conns, r.subject.clone());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.into_iter()
        .map(|(conns, subject)| {
            let rounds: Vec<&CallgrindResult> =
                results.iter().filter(|r| r.conns == conns && r.subject == subject).collect();
            let mut measured: Vec<&CallgrindResult> =
                rounds.iter().copied().filter(|r| r.error.is_none() && r.instructions_per_request.is_some()).collect();
            let values: Vec<f64> = measured.iter().filter_map(|r| r.instructions_per_request).collect();
            measured.sort_by(|a, b| {
                a.instructions_per_request
                    .unwrap_or(f64::NAN)
                    .total_cmp(&b.instructions_per_request.unwrap_or(f64::NAN))
            });
            let median_round = measured.get(measured.len().saturating_sub(1) / 2).map(|r| (*r).clone());
            CallgrindSummary {
                label: rounds.first().map_or_else(|| subject.clone(), |r| r.label.clone()),
                subject,
                conns,
                instructions_per_request: Spread::of(&values),
                median_round,
                errors: rounds
                    .iter()
                    .filter_map(|r| r.error.as_ref().map(|e| format!("round {}: {e}", r.round + 1)))
                    .collect(),
            }
        })
        .collect()
}

fn fmt_count(v: f64) -> String {
    format!("{v:.0}")
}

fn median_of(s: &CallgrindSummary) -> String {
    s.instructions_per_request.map_or("n/a".into(), |v| fmt_count(v.median))
}

fn range_of(s: &CallgrindSummary) -> String {
    match s.instructions_per_request {
        Some(v) if v.n >= 2 => format!("{}–{}", fmt_count(v.min), fmt_count(v.max)),
        Some(_) => "1 round".into(),
        None => "n/a".into(),
    }
}

/// `subject − reference` at the same connection count, when both measured.
fn over_reference(s: &CallgrindSummary, all: &[CallgrindSummary]) -> String {
    if s.subject == REFERENCE {
        return "reference".into();
    }
    let reference = all.iter().find(|r| r.subject == REFERENCE && r.conns == s.conns);
    match (s.instructions_per_request, reference.and_then(|r| r.instructions_per_request)) {
        (Some(a), Some(b)) => format!("{:+.0}", a.median - b.median),
        _ => "n/a".into(),
    }
}

/// Cells of one row: label, median, range, over reference, Ir(N1), Ir(N2), once,
/// start-up + warm-up (the median round's totals).
fn row(s: &CallgrindSummary, all: &[CallgrindSummary]) -> [String; 8] {
    let m = s.median_round.as_ref();
    [
        s.label.clone(),
        median_of(s),
        range_of(s),
        over_reference(s, all),
        fmt_ir(m.and_then(|r| r.ir_n1)),
        fmt_ir(m.and_then(|r| r.ir_n2)),
        m.and_then(|r| r.ir_fixed_per_phase).map_or("n/a".into(), |v| v.to_string()),
        fmt_ir(m.and_then(|r| r.ir_startup)),
    ]
}

/// For each emulated subject at `conns` connections: how much of its median
/// round's instructions per request its emulated kernel ran, and what is left
/// for the port's application side.
fn emulated_kernel_notes(summaries: &[CallgrindSummary], conns: usize) -> Vec<String> {
    summaries
        .iter()
        .filter(|s| s.conns == conns)
        .filter_map(|s| {
            let m = s.median_round.as_ref()?;
            let (total, kernel) = (m.instructions_per_request?, m.emulated_kernel_per_request?);
            Some(format!(
                "{}: {} of its {} instructions per request are the emulated kernel (txsync, the sockets' \
                 io_uring work, rxsync), which kernel PASTE runs in the kernel; the port's application side \
                 is {}.",
                s.label,
                fmt_count(kernel),
                fmt_count(total),
                fmt_count(total - kernel)
            ))
        })
        .collect()
}

/// For each subject at `conns` connections whose median round's two phases ran
/// in different regimes ([`CallgrindResult::phases_differ`]): a warning that its
/// figure mixes them.
fn regime_notes(summaries: &[CallgrindSummary], conns: usize) -> Vec<String> {
    summaries
        .iter()
        .filter(|s| s.conns == conns)
        .filter_map(|s| {
            let m = s.median_round.as_ref().filter(|m| m.phases_differ())?;
            let [a, b] = m.waits_per_request()?;
            Some(format!(
                "{}: the phases ran in different regimes ({a:.2} wake-ups per request in N1, {b:.2} in N2): \
                 the figure charges the difference in wake-ups to the requests; compare it with care.",
                s.label
            ))
        })
        .collect()
}

const COLUMNS: [&str; 8] =
    ["subject", "instr/req", "min–max", "vs raw-uring", "Ir(N1)", "Ir(N2)", "Ir once", "Ir start+warm-up"];

/// The table on stdout: one block per connection count.
pub fn text_table(summaries: &[CallgrindSummary], n1: u64, n2: u64, workload: &str) -> String {
    let mut out = String::new();
    let mut conns: Vec<usize> = summaries.iter().map(|s| s.conns).collect();
    conns.dedup();
    for c in conns {
        let rows: Vec<[String; 8]> = summaries.iter().filter(|s| s.conns == c).map(|s| row(s, summaries)).collect();
        let _ = writeln!(
            out,
            "\n{workload} · {c} connections · user-space instructions per request (callgrind; N1 = {n1}, N2 = {n2}; median round)"
        );
        let mut widths = COLUMNS.map(|h| h.chars().count());
        for r in &rows {
            for (w, cell) in widths.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: [&str; 8]| {
            let mut l = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                let pad = " ".repeat(w.saturating_sub(cell.chars().count()));
                if i == 0 {
                    let _ = write!(l, "{cell}{pad}");
                } else {
                    let _ = write!(l, "  {pad}{cell}");
                }
            }
            l
        };
        let _ = writeln!(out, "{}", line(COLUMNS));
        for r in &rows {
            let _ = writeln!(out, "{}", line(r.each_ref().map(String::as_str)));
        }
        for note in emulated_kernel_notes(summaries, c).into_iter().chain(regime_notes(summaries, c)) {
            let _ = writeln!(out, "  {note}");
        }
        for s in summaries.iter().filter(|s| s.conns == c) {
            for e in &s.errors {
                let _ = writeln!(out, "  not measured: {} {e}", s.label);
            }
        }
    }
    out
}

/// One section of `callgrind.md`: heading, settings, the table, the method.
pub fn markdown_section(heading: &str, settings: &[String], summaries: &[CallgrindSummary]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "## {heading}\n");
    for s in settings {
        let _ = writeln!(md, "- {s}");
    }
    let _ = writeln!(md, "\n| conns | {} |", COLUMNS.join(" | "));
    let _ = writeln!(md, "|---:|---|{}", "---:|".repeat(COLUMNS.len() - 1));
    for s in summaries {
        let _ = writeln!(md, "| {} | {} |", s.conns, row(s, summaries).join(" | "));
    }
    let mut conns: Vec<usize> = summaries.iter().map(|s| s.conns).collect();
    conns.dedup();
    let notes: Vec<String> = conns
        .into_iter()
        .flat_map(|c| emulated_kernel_notes(summaries, c).into_iter().chain(regime_notes(summaries, c)))
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(md);
        for note in notes {
            let _ = writeln!(md, "- {note}");
        }
    }
    let failed: Vec<String> = summaries
        .iter()
        .flat_map(|s| s.errors.iter().map(move |e| format!("{} × {}: {e}", s.label, s.conns)))
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(md, "\nNot measured:\n");
        for f in failed {
            let _ = writeln!(md, "- {f}");
        }
    }
    let _ = writeln!(
        md,
        "\nMethod: each server runs under `valgrind --tool=callgrind`; the load generator sends a warm-up, then \
         N1, then N2 = 2×N1 requests on the same connections, and callgrind dumps its counts after each phase \
         (`callgrind_control --dump`). Instructions per request = (Ir(N2) − Ir(N1)) / (N2 − N1): the server \
         process's user-space instructions, all threads, kernel excluded; whatever a phase costs once (\"Ir once\") \
         cancels. The median over the rounds is shown with its min–max: the count is exact for a given run, but \
         how many requests a runtime finds per wake-up varies a little between runs; a subject whose two phases \
         found different numbers of requests per wake-up (calls of epoll_wait, poll or syscall, more than 15 % \
         apart) is named in a note, as its slope mixes the two. \"vs raw-uring\" subtracts \
         the hand-written io_uring loop serving the same protocol code: what the runtime itself costs. Under \
         valgrind the server runs many times slower than the client, so it sees its connections' requests in \
         full batches: the figures are the batched regime's. Figures labelled (emulated) come from paste-emu.\n"
    );
    md
}

/// Appends `run` to the `runs` array of `path` (created when missing). A file
/// that exists but is not such a document is left alone: an error.
pub fn append_json(path: &Path, run: serde_json::Value) -> Result<(), String> {
    let mut doc = match std::fs::read_to_string(path) {
        Ok(text) => {
            let doc: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| format!("{} exists but is not JSON ({e}); move it away", path.display()))?;
            if !doc.get("runs").is_some_and(|r| r.is_array()) {
                return Err(format!("{} exists but has no `runs` array; move it away", path.display()));
            }
            doc
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => serde_json::json!({ "runs": [] }),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    if let Some(runs) = doc.get_mut("runs").and_then(|r| r.as_array_mut()) {
        runs.push(run);
    }
    let text = serde_json::to_string_pretty(&doc).map_err(|e| format!("encoding {}: {e}", path.display()))?;
    std::fs::write(path, text + "\n").map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Appends `section` to the markdown file `path` (a title first when new).
pub fn append_markdown(path: &Path, section: &str) -> Result<(), String> {
    use std::io::Write as _;
    let new = !path.exists();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("opening {}: {e}", path.display()))?;
    let title = if new { "# paste-bench callgrind: user-space instructions per request\n\n" } else { "\n" };
    file.write_all(format!("{title}{section}").as_bytes()).map_err(|e| format!("writing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_request_is_the_slope_between_the_two_parts() {
        assert_eq!(per_request(2000, 1_000_000 + 2000 * 450, 4000, 1_000_000 + 4000 * 450), Some(450.0));
        assert_eq!(per_request(10, 5, 10, 5), None);
    }

    fn result(subject: &str, round: usize, per_request: Option<f64>, error: Option<&str>) -> CallgrindResult {
        CallgrindResult {
            subject: subject.into(),
            label: subject.into(),
            emulated: false,
            workload: "rpc".into(),
            conns: 10,
            round,
            warmup_requests: 0,
            n1: 100,
            n2: 200,
            ir_startup: Some(1),
            ir_n1: per_request.map(|v| (v * 100.0) as u64),
            ir_n2: per_request.map(|v| (v * 200.0) as u64),
            instructions_per_request: per_request,
            ir_fixed_per_phase: Some(0),
            emulated_kernel_ir: None,
            emulated_kernel_per_request: None,
            waits: None,
            phase_secs: vec![],
            server_pinning: "ok".into(),
            client_pinning: "ok".into(),
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn summary_takes_the_median_round_and_keeps_failures() {
        let results = [
            result("paste-rt-epoll", 0, Some(520.0), None),
            result("raw-uring", 0, Some(400.0), None),
            result("paste-rt-epoll", 1, Some(500.0), None),
            result("raw-uring", 1, None, Some("valgrind died")),
            result("paste-rt-epoll", 2, Some(510.0), None),
        ];
        let summary = summarize(&results);
        let names: Vec<&str> = summary.iter().map(|s| s.subject.as_str()).collect();
        assert_eq!(names, ["paste-rt-epoll", "raw-uring"]);
        let epoll = &summary[0];
        let spread = epoll.instructions_per_request.unwrap();
        assert_eq!((spread.median, spread.min, spread.max, spread.n), (510.0, 500.0, 520.0, 3));
        assert_eq!(epoll.median_round.as_ref().map(|r| r.round), Some(2));
        assert!(epoll.errors.is_empty());
        assert_eq!(summary[1].errors, ["round 2: valgrind died"]);
        assert_eq!(summary[1].instructions_per_request.map(|s| s.n), Some(1));
        let table = text_table(&summary, 100, 200, "rpc");
        assert!(table.contains("+110"), "epoll over raw-uring: {table}");
        assert!(table.contains("not measured: raw-uring round 2: valgrind died"), "{table}");
        let md = markdown_section("rpc", &["settings".into()], &summary);
        assert!(md.contains("| 10 | paste-rt-epoll | 510 | 500–520 | +110 |"), "{md}");
    }

    #[test]
    fn an_emulated_subject_shows_its_emulated_kernel_apart() {
        let mut emu = result("paste-rt-paste-emu", 0, Some(2000.0), None);
        emu.label = "paste-rt-paste-emu (emulated)".into();
        emu.emulated = true;
        emu.emulated_kernel_per_request = Some(640.0);
        let results = [emu, result("paste-rt-uring", 0, Some(1000.0), None)];
        let summary = summarize(&results);
        let table = text_table(&summary, 100, 200, "rpc");
        let note = "paste-rt-paste-emu (emulated): 640 of its 2000 instructions per request are the emulated kernel";
        assert!(table.contains(note), "{table}");
        assert!(table.contains("the port's application side is 1360."), "{table}");
        assert_eq!(table.matches("emulated kernel").count(), 1, "only the emulated subject gets a note: {table}");
        let md = markdown_section("rpc", &[], &summary);
        assert!(md.contains(&format!("- {note}")), "{md}");
    }

    #[test]
    fn a_subject_whose_phases_woke_up_differently_is_flagged() {
        // N1 = 100 requests, N2 = 200: 0.36 against 0.92 wake-ups per request.
        let mut mixed = result("paste-rt-paste", 0, Some(2000.0), None);
        mixed.waits = Some([36, 184]);
        assert!(mixed.phases_differ());
        // 0.19 against 0.20: within the tolerance.
        let mut steady = result("paste-rt-uring", 0, Some(1000.0), None);
        steady.waits = Some([19, 40]);
        assert!(!steady.phases_differ());
        // Not counted (a run recorded before the count existed): nothing to say.
        let unknown = result("tokio", 0, Some(1500.0), None);
        assert!(!unknown.phases_differ() && unknown.waits_per_request().is_none());
        let summary = summarize(&[mixed, steady, unknown]);
        let table = text_table(&summary, 100, 200, "rpc");
        let note = "paste-rt-paste: the phases ran in different regimes (0.36 wake-ups per request in N1, 0.92 in N2)";
        assert!(table.contains(note), "{table}");
        assert_eq!(table.matches("different regimes").count(), 1, "only the mixed subject gets a note: {table}");
        assert!(markdown_section("rpc", &[], &summary).contains(&format!("- {note}")));
    }

    #[test]
    fn appends_runs_to_json_and_refuses_foreign_files() {
        let dir = std::env::temp_dir().join(format!("paste-bench-cg-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("callgrind.json");
        let _ = std::fs::remove_file(&path);
        append_json(&path, serde_json::json!({"n": 1})).unwrap();
        append_json(&path, serde_json::json!({"n": 2})).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(doc["runs"], serde_json::json!([{"n": 1}, {"n": 2}]));
        std::fs::write(&path, "[1, 2]").unwrap();
        assert!(append_json(&path, serde_json::json!({})).unwrap_err().contains("no `runs` array"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[1, 2]", "a foreign file is left alone");
        let md = dir.join("callgrind.md");
        let _ = std::fs::remove_file(&md);
        append_markdown(&md, "## a\n").unwrap();
        append_markdown(&md, "## b\n").unwrap();
        let text = std::fs::read_to_string(&md).unwrap();
        assert_eq!(text.matches("# paste-bench callgrind").count(), 1);
        assert!(text.find("## a").unwrap() < text.find("## b").unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
