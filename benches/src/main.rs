//! `paste-bench`: paste-rt's A/B benchmark harness (docs/benchmarking.md).
//!
//! `ab` runs the matrix and writes the report; `callgrind` counts user-space
//! instructions per request under valgrind; `serve` runs one subject in the
//! foreground; `load` runs the load generator alone; `probe` shows which paste-rt
//! backends start here. Owns the command line only: the work is in the library.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use paste_rt_bench::ab::{self, AbPlan, Case, ClientKind, Unavailable};
use paste_rt_bench::alloc_count::CountingAlloc;
use paste_rt_bench::callgrind::{self, CallgrindPlan, Tools};
use paste_rt_bench::charts::{self, Metric};
use paste_rt_bench::cores::{self, core_list, CoreSplit};
use paste_rt_bench::cpu_limit::CpuLimit;
use paste_rt_bench::environment::Environment;
use paste_rt_bench::exchange::LoadSpec;
use paste_rt_bench::load_process;
use paste_rt_bench::load_threads;
use paste_rt_bench::loadgen::{self, CountedConfig, LoadConfig};
use paste_rt_bench::peers::{Peer, PeerConfig};
use paste_rt_bench::record::summarize;
use paste_rt_bench::report::{self, ReportContext, Results};
use paste_rt_bench::statistics::NOISE_RULE;
use paste_rt_bench::subject::{self, ServeConfig, Subject};
use paste_rt_bench::workload::Workload;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[derive(Parser, Debug)]
#[command(name = "paste-bench", version, about = "paste-rt's A/B benchmark harness")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the A/B matrix: server cores × subjects × workloads × connections × rounds, interleaved.
    ///
    /// Defaults fit the 3-minute budget of a 2-core machine: 0.5 s warm-up + 2 s
    /// measured × 3 rounds. This deviates from the protocol's 5 s window (which
    /// does not fit); pass `--duration 5` for the protocol's default.
    Ab(AbArgs),
    /// Count user-space instructions per request under `valgrind --tool=callgrind`.
    ///
    /// Each subject's server runs under callgrind; the load generator sends a warm-up,
    /// N1 and N2 = 2×N1 requests on the same connections, callgrind dumps after each,
    /// and (Ir(N2) − Ir(N1)) / (N2 − N1) is the figure: exact per run, start-up excluded;
    /// median and min–max over the rounds. Appends to OUT/callgrind.json and OUT/callgrind.md.
    Callgrind(CallgrindArgs),
    /// Serve one subject in the foreground.
    Serve(ServeArgs),
    /// Run the built-in load generator alone against a server.
    Load(LoadArgs),
    /// Show which paste-rt backends start here, and why the others do not.
    Probe,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ClientArg {
    /// The built-in generator (every response validated).
    Builtin,
    /// wrk, when installed (rpc only; checks status codes, not bodies).
    Wrk,
}

#[derive(clap::Args, Debug)]
struct AbArgs {
    /// Subjects, comma-separated (default: every paste-rt backend that starts here, then
    /// tokio, monoio-uring, monoio-legacy, raw-uring).
    #[arg(long)]
    subjects: Option<String>,
    /// Workloads: rpc, wal, echo, kv, scale (rpc with 1000/10000 mostly idle connections).
    #[arg(long, default_value = "rpc")]
    workloads: String,
    /// Active connections, comma-separated.
    #[arg(long, default_value = "1,10,100")]
    conns: String,
    /// Server cores, comma-separated (for example 1,2,4,8): each count N is a cell
    /// of the matrix, its server on the first N cores and one load process on each
    /// remaining core. A count that leaves no core for the load is skipped, saying
    /// why (a 2-core machine runs N = 1 only).
    #[arg(long, default_value = "1")]
    server_cores: String,
    /// The load processes' cores, comma-separated (default: every core the server
    /// does not get). Must not overlap the server's cores.
    #[arg(long)]
    client_cores: Option<String>,
    /// Do not count the servers' system calls with perf (perf's tracepoint costs
    /// every subject a little per system call).
    #[arg(long)]
    no_syscall_count: bool,
    /// Hold each server to this share of its cores (0.1 to 1; 0.5: half of each),
    /// through a cgroup's CPU quota, so that the server rather than the load
    /// generator is the bottleneck on a small machine: the request rate is then the
    /// server's. Needs a cgroup CPU controller it may write (root).
    #[arg(long)]
    server_cpu: Option<f64>,
    /// Measured window per run, seconds (the protocol's is 5; default 2 to fit 3 minutes).
    #[arg(long, default_value_t = 2.0)]
    duration: f64,
    /// Warm-up per run, seconds.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Rounds (subjects interleaved in each).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Open loop: total offered requests/s (default: closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Load generator.
    #[arg(long, value_enum, default_value_t = ClientArg::Builtin)]
    client: ClientArg,
    /// Output directory (results.json, report.md, SVG charts).
    #[arg(long, default_value = "bench-out")]
    out: PathBuf,
    /// Pipelined requests per connection (closed loop): written together, the next
    /// batch once every one of them is answered (as wrk's pipeline script does).
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Subject the ratios are computed against.
    #[arg(long, default_value = "tokio")]
    baseline: String,
    /// kv value sizes, comma-separated: each is a workload case `kv-<size>`.
    #[arg(long, default_value = "64,1024")]
    kv_value_size: String,
    /// kv keys preloaded before each run.
    #[arg(long, default_value_t = 1000)]
    kv_keys: u32,
    /// scale: idle connection counts.
    #[arg(long, default_value = "1000,10000")]
    scale_conns: String,
    /// scale: active (measured) connections next to the idle ones.
    #[arg(long, default_value_t = 4)]
    scale_active: usize,
    #[command(flatten)]
    server: ServerOpts,
}

#[derive(clap::Args, Debug)]
struct CallgrindArgs {
    /// Subjects, comma-separated (default: those of `ab` that can start here).
    #[arg(long)]
    subjects: Option<String>,
    /// The workload: rpc, echo, kv, wal.
    #[arg(long, default_value = "rpc")]
    workload: String,
    /// Connections, comma-separated (one measurement per subject and count).
    #[arg(long, default_value = "10")]
    conns: String,
    /// N1: requests of the first measured phase; the second sends N2 = 2×N1.
    #[arg(long, default_value_t = 2000)]
    requests: u64,
    /// Requests of the warm-up phase before N1.
    #[arg(long, default_value_t = 500)]
    warmup_requests: u64,
    /// Rounds (subjects interleaved in each); the median and min–max are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Pipelined requests per connection, in batches (the next once all are answered).
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Time limit of one phase, seconds (a server slower than this fails its run).
    #[arg(long, default_value_t = 300.0)]
    phase_limit: f64,
    /// Output directory: callgrind.json and callgrind.md are appended to.
    #[arg(long, default_value = "bench-out")]
    out: PathBuf,
    /// Keep each phase's callgrind profile in OUT/callgrind-profiles/ (read them
    /// with `callgrind_annotate`).
    #[arg(long)]
    keep_profiles: bool,
    /// kv value size.
    #[arg(long, default_value_t = 64)]
    kv_value_size: usize,
    /// kv keys preloaded.
    #[arg(long, default_value_t = 1000)]
    kv_keys: u32,
    #[command(flatten)]
    server: ServerOpts,
}

#[derive(clap::Args, Debug, Clone)]
struct ServerOpts {
    /// rpc/wal response body length.
    #[arg(long, default_value_t = 64)]
    body_len: usize,
    /// paste-rt phttpd in batch mode (one handler per tick) instead of a task per connection.
    #[arg(long)]
    batch: bool,
    /// wal: directory of the log files (default: a temporary directory).
    #[arg(long)]
    wal_dir: Option<PathBuf>,
    /// wal: emulated persistent-memory latency per flush batch, ns.
    #[arg(long, default_value_t = 0)]
    pm_latency_ns: u64,
    /// wal: persist from the receive buffers (zero copy) instead of copying.
    #[arg(long)]
    wal_zero_copy: bool,
}

impl ServerOpts {
    fn serve_config(&self, cores: Vec<usize>, threads: usize, bind: IpAddr) -> ServeConfig {
        ServeConfig {
            body_len: self.body_len,
            batch: self.batch,
            peer: PeerConfig {
                body_len: self.body_len,
                wal_dir: self.wal_dir.clone(),
                pm_latency_ns: self.pm_latency_ns,
                wal_copy: !self.wal_zero_copy,
                workers: threads,
            },
            threads,
            cores,
            bind,
        }
    }
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// The subject (`paste-rt-<backend>`, `hyper-paste-rt-<backend>`, tokio, tokio-mt, monoio-uring, monoio-legacy, raw-uring, hyper-tokio).
    #[arg(long)]
    subject: String,
    /// The workload.
    #[arg(long, default_value = "rpc")]
    workload: String,
    /// Address to listen on (0.0.0.0 for a load generator on another host).
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Port (0: any; the address is printed).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Answer `stats` lines on stdin with the counters (used by `ab`).
    #[arg(long)]
    control: bool,
    /// Server threads: paste-rt runtimes (thread-per-core), tokio-mt workers, or
    /// copies of the other peers sharing the port (SO_REUSEPORT).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: u16,
    /// Pin the server to these cores, comma-separated (thread i on the i-th).
    #[arg(long, alias = "core", value_delimiter = ',')]
    cores: Vec<usize>,
    #[command(flatten)]
    server: ServerOpts,
}

#[derive(clap::Args, Debug)]
struct LoadArgs {
    /// The server's address, HOST:PORT.
    #[arg(long)]
    addr: String,
    /// The workload.
    #[arg(long, default_value = "rpc")]
    workload: String,
    /// Connections.
    #[arg(long, default_value_t = 10)]
    conns: usize,
    /// Measured window, seconds.
    #[arg(long, default_value_t = 2.0)]
    duration: f64,
    /// Warm-up, seconds.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Open loop: total offered requests/s.
    #[arg(long)]
    rate: Option<f64>,
    /// Pipelined requests per connection (closed loop): written together, the next
    /// batch once every one of them is answered (as wrk's pipeline script does).
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// kv value size.
    #[arg(long, default_value_t = 64)]
    kv_value_size: usize,
    /// kv keys preloaded.
    #[arg(long, default_value_t = 1000)]
    kv_keys: u32,
    /// rpc/wal response body length.
    #[arg(long, default_value_t = 64)]
    body_len: usize,
    /// Generator threads, each with its own runtime and its share of the
    /// connections; their figures are merged (latency histograms added).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: u16,
    /// Pin the generator threads to these cores, comma-separated (thread i on the
    /// i-th, round robin).
    #[arg(long, alias = "core", value_delimiter = ',')]
    cores: Vec<usize>,
    /// Extra connections that send one request each and then stay idle.
    #[arg(long, default_value_t = 0)]
    idle_conns: usize,
    /// Number of the first connection (when several load processes share a run).
    #[arg(long, default_value_t = 0)]
    first_conn: usize,
    /// Harness mode (used by `ab`): print `ready` once connected, start the window
    /// at the instant of a `go <unix-ns>` line on stdin, print the figures as one
    /// `result <json>` line.
    #[arg(long)]
    control: bool,
    /// Send exactly this many requests (after a warm-up of `--warmup-requests`)
    /// instead of running for `--duration`.
    #[arg(long)]
    requests: Option<u64>,
    /// With `--requests`: requests of the warm-up phase.
    #[arg(long, default_value_t = 0)]
    warmup_requests: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ab(args) => run_ab(args),
        Command::Callgrind(args) => run_callgrind(args),
        Command::Serve(args) => run_serve(args),
        Command::Load(args) => run_load(args),
        Command::Probe => {
            for b in paste_rt_bench::environment::probe_backends() {
                let label = if b.emulated { format!("{} (emulated)", b.subject) } else { b.subject.clone() };
                println!("{label}: {} — {}", if b.started { "starts" } else { "does not start" }, b.detail);
            }
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("paste-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn list<T: FromStr>(text: &str, what: &str) -> Result<Vec<T>, String>
where
    T::Err: std::fmt::Display,
{
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse::<T>().map_err(|e| format!("--{what} {s:?}: {e}")))
        .collect()
}

fn secs(v: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v).map_err(|e| format!("--{what} {v}: {e}"))
}

fn run_serve(args: ServeArgs) -> Result<(), String> {
    let subject: Subject = args.subject.parse()?;
    let workload: Workload = args.workload.parse()?;
    let config = args.server.serve_config(args.cores.clone(), usize::from(args.threads), args.bind);
    subject::serve(subject, workload, args.port, &config, args.control).map_err(|e| e.to_string())
}

fn spec_for(workload: Workload, body_len: usize, kv_value_size: usize, kv_keys: u32) -> LoadSpec {
    LoadSpec { workload, body_len, kv_value_size, kv_keys }
}

/// `HOST:PORT` (a name or an address) as the first address it resolves to.
fn resolve(addr: &str) -> Result<SocketAddr, String> {
    addr.to_socket_addrs()
        .map_err(|e| format!("--addr {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("--addr {addr}: no address"))
}

fn run_load(args: LoadArgs) -> Result<(), String> {
    let workload: Workload = args.workload.parse()?;
    let addr = resolve(&args.addr)?;
    if let Some(requests) = args.requests {
        if args.rate.is_some() || args.control || args.threads > 1 {
            return Err(
                "--requests runs one closed loop: it cannot be combined with --rate, --threads or --control".into()
            );
        }
        let config = CountedConfig {
            addr,
            spec: spec_for(workload, args.body_len, args.kv_value_size, args.kv_keys),
            conns: args.conns,
            pipeline: args.pipeline,
            phases: vec![args.warmup_requests, requests],
            phase_limit: Duration::from_secs(600),
            core: args.cores.first().copied(),
        };
        let r = loadgen::run_counted(&config, |_| Ok(())).map_err(|e| e.to_string())?;
        let last = r.phases.last().copied().unwrap_or(loadgen::PhaseResult { requests: 0, elapsed: Duration::ZERO });
        println!(
            "{workload} {} conns on {}: {} requests (all valid) in {:.3} s, {:.0} req/s",
            args.conns,
            r.backend,
            last.requests,
            last.elapsed.as_secs_f64(),
            last.requests as f64 / last.elapsed.as_secs_f64().max(1e-9)
        );
        return Ok(());
    }
    if args.conns == 0 {
        return Err("--conns must be at least 1".into());
    }
    let config = LoadConfig {
        addr,
        spec: spec_for(workload, args.body_len, args.kv_value_size, args.kv_keys),
        conns: args.conns,
        idle_conns: args.idle_conns,
        pipeline: args.pipeline,
        rate: args.rate,
        warmup: secs(args.warmup, "warmup")?,
        duration: secs(args.duration, "duration")?,
        core: None,
        first_conn: args.first_conn,
    };
    let threads = usize::from(args.threads);
    if args.control {
        let outcome = load_threads::run_threads(&config, threads, &args.cores, load_process::child_wait_for_go);
        load_process::child_report(&outcome);
        return outcome.map(drop);
    }
    let warmup = config.warmup;
    let r = load_threads::run_threads(&config, threads, &args.cores, move || Ok(std::time::Instant::now() + warmup))?;
    let used = threads.min(args.conns);
    println!(
        "{workload} {} conns on {} ({used} thread{}): {:.0} req/s, p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, client CPU {:.2} µs/req, {} errors",
        args.conns,
        r.backend,
        if used == 1 { "" } else { "s" },
        r.rps(),
        r.latency_us(0.5),
        r.latency_us(0.99),
        r.latency_us(0.999),
        r.cpu_us_per_request(),
        r.errors
    );
    for m in &r.messages {
        println!("  error: {m}");
    }
    if r.errors > 0 {
        return Err("invalid run: errors above".into());
    }
    Ok(())
}

fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}m{:02}s", s / 60, s % 60)
}

fn run_ab(args: AbArgs) -> Result<(), String> {
    let env = Environment::collect();
    let workload_names: Vec<String> = list(&args.workloads, "workloads")?;
    let conns: Vec<usize> = list(&args.conns, "conns")?;
    let kv_sizes: Vec<usize> = list(&args.kv_value_size, "kv-value-size")?;
    let scale_conns: Vec<usize> = list(&args.scale_conns, "scale-conns")?;
    let client = match args.client {
        ClientArg::Builtin => ClientKind::Builtin,
        ClientArg::Wrk => ClientKind::Wrk,
    };
    let mut cases = vec![];
    for name in &workload_names {
        let body_len = args.server.body_len;
        if name == "scale" {
            cases.push(Case {
                name: "scale".into(),
                workload: Workload::Rpc,
                spec: spec_for(Workload::Rpc, body_len, 64, args.kv_keys),
                conns: scale_conns.clone(),
                scale_active: Some(args.scale_active.max(1)),
            });
            continue;
        }
        let workload: Workload = name.parse().map_err(|e| format!("--workloads: {e} (or scale)"))?;
        if client == ClientKind::Wrk && workload != Workload::Rpc {
            return Err(format!("--client wrk drives rpc only, not {workload}"));
        }
        if workload == Workload::Kv {
            for &size in &kv_sizes {
                cases.push(Case {
                    name: format!("kv-{size}"),
                    workload,
                    spec: spec_for(workload, body_len, size, args.kv_keys),
                    conns: conns.clone(),
                    scale_active: None,
                });
            }
        } else {
            cases.push(Case {
                name: workload.name().into(),
                workload,
                spec: spec_for(workload, body_len, 64, args.kv_keys),
                conns: conns.clone(),
                scale_active: None,
            });
        }
    }
    if client == ClientKind::Wrk && !paste_rt_bench::wrk::installed() {
        return Err("--client wrk: wrk is not installed (apt-get install wrk), or use --client builtin".into());
    }
    // Which cores each server-core count gets, and which counts cannot run here.
    let server_cores: Vec<usize> = list(&args.server_cores, "server-cores")?;
    if server_cores.is_empty() {
        return Err("--server-cores: at least one count".into());
    }
    let client_cores: Option<Vec<usize>> = args.client_cores.as_deref().map(|c| list(c, "client-cores")).transpose()?;
    let allowed: Vec<usize> =
        if env.cores_allowed.is_empty() { (0..env.cores).collect() } else { env.cores_allowed.clone() };
    let mut splits: Vec<CoreSplit> = vec![];
    let mut skipped_cores: Vec<String> = vec![];
    for &n in &server_cores {
        if splits.iter().any(|s| s.server_cores() == n) {
            continue;
        }
        match cores::plan(&allowed, n, client_cores.as_deref()) {
            Ok(split) => splits.push(split),
            Err(refusal) => skipped_cores.push(format!("--server-cores {n}: not run: {refusal}")),
        }
    }
    if splits.is_empty() {
        return Err(skipped_cores.join("; "));
    }
    let multi_core = splits.iter().any(|s| s.server_cores() > 1);

    let explicit = args.subjects.is_some();
    let subjects: Vec<Subject> = match &args.subjects {
        Some(s) => list(s, "subjects")?,
        None => {
            // tokio-mt is the multi-core peer: it joins the defaults when more than
            // one server core runs.
            let mut all = Subject::all();
            if multi_core {
                let at = all.iter().position(|s| *s == Subject::Peer(Peer::Tokio)).map_or(all.len(), |i| i + 1);
                all.insert(at, Subject::Peer(Peer::TokioMt));
            }
            all
        }
    };
    // Which subjects can run which case, at which core counts, and why not.
    let mut unavailable: Vec<Unavailable> = vec![];
    let backend_reason = |s: Subject| -> Option<String> {
        let kind = s.backend()?;
        env.backends
            .iter()
            .find(|b| b.backend == kind.name())
            .filter(|b| !b.started)
            .map(|b| format!("backend does not start here: {}", b.detail))
    };
    for &s in &subjects {
        for case in &cases {
            let reason = backend_reason(s).or_else(|| s.serves(case.workload).err());
            if let Some(reason) = reason {
                unavailable.push(Unavailable {
                    subject: s.label(),
                    workload: case.name.clone(),
                    server_cores: None,
                    reason,
                });
                continue;
            }
            for split in &splits {
                if let Err(reason) = s.serves_on(case.workload, split.server_cores()) {
                    unavailable.push(Unavailable {
                        subject: s.label(),
                        workload: case.name.clone(),
                        server_cores: Some(split.server_cores()),
                        reason,
                    });
                }
            }
        }
    }
    let blocked = unavailable.clone();
    let usable = move |s: Subject, c: &Case, n: usize| {
        !blocked.iter().any(|u| u.subject == s.label() && u.workload == c.name && u.server_cores.is_none_or(|b| b == n))
    };
    let wal_tmp = if cases.iter().any(|c| c.workload == Workload::Wal) && args.server.wal_dir.is_none() {
        Some(std::env::temp_dir().join(format!("paste-bench-wal-{}", std::process::id())))
    } else {
        None
    };
    let mut server_opts = args.server.clone();
    if let Some(dir) = &wal_tmp {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        server_opts.wal_dir = Some(dir.clone());
    }
    let syscall_counting = if args.no_syscall_count {
        Err("turned off (--no-syscall-count)".to_owned())
    } else if env.syscall_counter_works {
        Ok(())
    } else {
        Err(env.syscall_counter.clone())
    };
    // A CPU limit is tried once before anything runs, so that a machine where none
    // can be made says so at once (with the reason) rather than failing every run.
    let server_cpu_line = match args.server_cpu {
        Some(share) => {
            let limit = CpuLimit::new(share, 1).map_err(|e| format!("--server-cpu: {e}"))?;
            Some(limit.describe())
        }
        None => None,
    };
    let work_dir = std::env::temp_dir().join(format!("paste-bench-ab-{}", std::process::id()));
    std::fs::create_dir_all(&work_dir).map_err(|e| format!("creating {}: {e}", work_dir.display()))?;
    let plan = AbPlan {
        subjects: subjects.clone(),
        cases: cases.clone(),
        rounds: args.rounds.max(1),
        warmup: secs(args.warmup, "warmup")?,
        duration: secs(args.duration, "duration")?,
        rate: args.rate,
        pipeline: args.pipeline.max(1),
        client,
        serve: server_opts.serve_config(vec![], 1, IpAddr::from([127, 0, 0, 1])),
        exe: std::env::current_exe().map_err(|e| format!("locating paste-bench itself: {e}"))?,
        splits: splits.clone(),
        syscall_counting: syscall_counting.clone(),
        work_dir: work_dir.clone(),
        cpu_model: env.cpu_model.clone(),
        server_cpu: args.server_cpu,
    };
    std::fs::create_dir_all(&args.out).map_err(|e| format!("creating {}: {e}", args.out.display()))?;

    // What will run, and how long it will take.
    let runs = plan.runs_per_round(&usable).len() * plan.rounds;
    eprintln!("paste-bench ab on {} ({} cores, kernel {})", env.cpu_model, env.cores, env.kernel);
    for b in &env.backends {
        let label = if b.emulated { format!("{} (emulated)", b.subject) } else { b.subject.clone() };
        eprintln!("  {label}: {}", if b.started { "starts".to_owned() } else { format!("not run: {}", b.detail) });
    }
    let core_splits: Vec<String> = splits
        .iter()
        .map(|s| {
            let most =
                s.load_processes(conns.iter().chain(&scale_conns).copied().max().unwrap_or(1).max(args.scale_active));
            format!(
                "{} server core(s): server on core(s) {}, up to {most} load process(es) on core(s) {}",
                s.server_cores(),
                core_list(&s.server),
                core_list(&s.clients)
            )
        })
        .collect();
    for c in &core_splits {
        eprintln!("  {c}");
    }
    for c in &skipped_cores {
        eprintln!("  {c}");
    }
    for u in &unavailable {
        if explicit || !u.reason.starts_with("backend does not start") {
            let at = u.server_cores.map(|n| format!(" on {n} server cores")).unwrap_or_default();
            eprintln!("  not run: {} × {}{at}: {}", u.subject, u.workload, u.reason);
        }
    }
    match &syscall_counting {
        Ok(()) => eprintln!("  syscalls per request: counted with {}", env.syscall_counter),
        Err(why) => eprintln!("  syscalls per request: not counted: {why}"),
    }
    if let Some(line) = &server_cpu_line {
        eprintln!("  {line}");
    }
    if let Some(load) = paste_rt_bench::machine_load::load_avg_1min() {
        if load > allowed.len() as f64 {
            eprintln!(
                "  warning: the 1-minute load average is {load:.2} on {} usable cores: the machine is busy, \
                 timings will be noise",
                allowed.len()
            );
        }
    }
    eprintln!(
        "  {runs} runs × ({:.1} s warm-up + {:.1} s measured + ~{:.1} s overhead{}) ≈ {} (ETA)",
        plan.warmup.as_secs_f64(),
        plan.duration.as_secs_f64(),
        ab::OVERHEAD_SECS,
        if cases.iter().any(|c| c.scale_active.is_some()) { " + ~1 ms per idle connection" } else { "" },
        fmt_duration(plan.eta(&usable))
    );
    let started = std::time::Instant::now();
    let records = ab::run_matrix(&plan, &usable);
    let wall = started.elapsed();
    if let Some(dir) = &wal_tmp {
        let _ = std::fs::remove_dir_all(dir);
    }
    let _ = std::fs::remove_dir_all(&work_dir);

    let mut pinning: Vec<String> = vec![];
    for r in &records {
        for (side, p) in [("server", &r.server_pinning), ("client", &r.client_pinning)] {
            let note = format!("{side} pinning failed: {p}");
            if !p.is_empty() && p.as_str() != "ok" && !pinning.contains(&note) {
                pinning.push(note);
            }
        }
    }

    let summary = summarize(&records, &args.baseline);
    let mut charts_made = vec![];
    for case in &cases {
        let mut files = vec![];
        for split in &splits {
            if !summary.iter().any(|s| s.workload == case.name && s.server_cores == split.server_cores()) {
                continue;
            }
            for metric in Metric::ALL {
                match charts::draw(&args.out, &case.name, split.server_cores(), metric, &summary) {
                    Ok(f) => files.push(f),
                    Err(e) => eprintln!("paste-bench: {e}"),
                }
            }
        }
        for &c in &case.conns {
            for metric in charts::SCALING {
                match charts::draw_scaling(&args.out, &case.name, c, metric, &summary) {
                    Ok(Some(f)) => files.push(f),
                    Ok(None) => {}
                    Err(e) => eprintln!("paste-bench: {e}"),
                }
            }
        }
        charts_made.push((case.name.clone(), files));
    }
    let settings_lines = vec![
        format!(
            "{} round(s), {:.1} s warm-up + {:.1} s measured per run (the protocol's window is 5 s; shortened so the default run fits 3 minutes on 2 cores)",
            plan.rounds,
            plan.warmup.as_secs_f64(),
            plan.duration.as_secs_f64()
        ),
        match plan.rate {
            Some(r) => format!("open loop at {r:.0} requests/s offered in total (latency from the intended send time)"),
            None => format!("closed loop, pipeline depth {}", plan.pipeline),
        },
        format!(
            "client: {}",
            match client {
                ClientKind::Builtin =>
                    "built-in generator on paste-rt (io_uring, epoll fallback), one process per client core, every response validated",
                ClientKind::Wrk => "wrk, one thread per client core (status codes checked, not bodies; no p99.9; whole seconds)",
            }
        ),
        format!(
            "workloads: {}; connections: {:?}; server cores: {:?}",
            workload_names.join(", "),
            conns,
            splits.iter().map(CoreSplit::server_cores).collect::<Vec<_>>()
        ),
        format!("baseline: {}", args.baseline),
        match &syscall_counting {
            Ok(()) => format!("system calls counted with {}", env.syscall_counter),
            Err(why) => format!("system calls not counted: {why}"),
        },
        match &server_cpu_line {
            Some(line) => format!("{line}: the server, not the load generator, is the bottleneck"),
            None => "server CPU not limited (--server-cpu)".to_owned(),
        },
        format!("wall time: {}", fmt_duration(wall)),
    ];
    let settings = serde_json::json!({
        "subjects": subjects.iter().map(|s| s.name()).collect::<Vec<_>>(),
        "workloads": cases.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
        "conns": conns,
        "server_cores": server_cores,
        "client_cores": client_cores,
        "core_splits": splits,
        "skipped_server_cores": skipped_cores,
        "syscall_counting": match &syscall_counting {
            Ok(()) => env.syscall_counter.clone(),
            Err(why) => format!("not counted: {why}"),
        },
        "rounds": plan.rounds,
        "warmup_s": plan.warmup.as_secs_f64(),
        "duration_s": plan.duration.as_secs_f64(),
        "rate": plan.rate,
        "pipeline": plan.pipeline,
        "server_cpu_share": args.server_cpu,
        "client": format!("{:?}", args.client).to_lowercase(),
        "baseline": args.baseline,
        "body_len": args.server.body_len,
        "phttpd_mode": if args.server.batch { "batch" } else { "tasks" },
        "pinning": pinning,
        "wall_time_s": wall.as_secs_f64(),
    });
    let results = Results {
        environment: &env,
        settings: &settings,
        noise_rule: NOISE_RULE,
        unavailable: &unavailable,
        records: &records,
        summary: &summary,
    };
    let json_path = args.out.join("results.json");
    report::write_json(&json_path, &results).map_err(|e| format!("writing {}: {e}", json_path.display()))?;
    let ctx = ReportContext {
        environment: &env,
        baseline: &args.baseline,
        settings: settings_lines,
        charts: charts_made,
        unavailable: &unavailable,
        pinning,
        skipped_cores: skipped_cores.clone(),
        core_splits,
        server_cpu: args.server_cpu,
    };
    let md_path = args.out.join("report.md");
    std::fs::write(&md_path, report::markdown(&ctx, &records, &summary))
        .map_err(|e| format!("writing {}: {e}", md_path.display()))?;

    for w in report::busy_warnings(&records) {
        println!("WARNING: {w}");
    }
    print!("{}", report::text_table(&summary, &args.baseline));
    println!("\nNoise rule: {NOISE_RULE}");
    let (title, note) = report::bottleneck_note(&summary, args.server_cpu);
    println!("{title}: {note}");
    for c in &skipped_cores {
        println!("{c}");
    }
    println!("Wall time {}; wrote {}, {} and charts.", fmt_duration(wall), json_path.display(), md_path.display());
    let invalid = records.iter().filter(|r| r.errors > 0).count();
    if invalid > 0 {
        return Err(format!("{invalid} run(s) invalid (errors listed above and in report.md)"));
    }
    Ok(())
}

fn run_callgrind(args: CallgrindArgs) -> Result<(), String> {
    let tools = Tools::find().map_err(|e| e.to_string())?;
    let workload: Workload = args.workload.parse()?;
    let conns: Vec<usize> = list(&args.conns, "conns")?;
    if conns.is_empty() || conns.contains(&0) {
        return Err("--conns: at least one count, each at least 1".into());
    }
    if args.requests == 0 {
        return Err("--requests must be at least 1".into());
    }
    let env = Environment::collect();
    let explicit = args.subjects.is_some();
    let asked: Vec<Subject> = match &args.subjects {
        Some(s) => list(s, "subjects")?,
        None => Subject::all(),
    };
    let mut subjects = vec![];
    let mut not_run = vec![];
    for s in asked {
        let backend = s.backend().and_then(|kind| {
            env.backends
                .iter()
                .find(|b| b.backend == kind.name())
                .filter(|b| !b.started)
                .map(|b| format!("backend does not start here: {}", b.detail))
        });
        match backend.or_else(|| s.serves(workload).err()) {
            Some(reason) => not_run.push(format!("{}: {reason}", s.label())),
            None => subjects.push(s),
        }
    }
    if subjects.is_empty() {
        return Err(format!("no subject can run {workload} here: {}", not_run.join("; ")));
    }
    let work_dir = std::env::temp_dir().join(format!("paste-bench-callgrind-{}", std::process::id()));
    let mut server_opts = args.server.clone();
    if workload == Workload::Wal && server_opts.wal_dir.is_none() {
        server_opts.wal_dir = Some(work_dir.join("wal"));
    }
    if let Some(dir) = &server_opts.wal_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let plan = CallgrindPlan {
        subjects,
        workload,
        spec: spec_for(workload, args.server.body_len, args.kv_value_size, args.kv_keys),
        conns: conns.clone(),
        rounds: args.rounds.max(1),
        warmup_requests: args.warmup_requests,
        requests: args.requests,
        pipeline: args.pipeline.max(1),
        phase_limit: secs(args.phase_limit, "phase-limit")?,
        serve: server_opts.serve_config(vec![ab::SERVER_CORE], 1, IpAddr::from([127, 0, 0, 1])),
        exe: std::env::current_exe().map_err(|e| format!("locating paste-bench itself: {e}"))?,
        tools: tools.clone(),
        work_dir: work_dir.clone(),
        keep_profiles: args.keep_profiles.then(|| args.out.join("callgrind-profiles")),
    };
    std::fs::create_dir_all(&args.out).map_err(|e| format!("creating {}: {e}", args.out.display()))?;
    if let Some(dir) = &plan.keep_profiles {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let valgrind_version = tools.version().unwrap_or_else(|| "valgrind (version unknown)".into());
    let profile = if cfg!(debug_assertions) { "debug (unoptimised: figures not representative)" } else { "release" };
    eprintln!(
        "paste-bench callgrind on {} ({} cores, kernel {}), {valgrind_version}",
        env.cpu_model, env.cores, env.kernel
    );
    for line in &not_run {
        if explicit || !line.contains("backend does not start") {
            eprintln!("  not run: {line}");
        }
    }
    if cfg!(debug_assertions) {
        eprintln!("  note: this paste-bench is a {profile} build; use `cargo run --release -p paste-rt-bench`");
    }
    eprintln!(
        "  {} measurement(s) × ({} warm-up + {} + {} requests under callgrind, ~{:.0} s each) ≈ {} (ETA)",
        plan.measurements(),
        plan.warmup_requests,
        plan.requests,
        plan.requests2(),
        plan.measurement_secs(),
        fmt_duration(plan.eta())
    );

    let bar = ProgressBar::new(plan.eta().as_millis() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {percent:>3}% {msg} (ETA {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let mut results = vec![];
    let per_measurement = (plan.measurement_secs() * 1000.0) as u64;
    for round in 0..plan.rounds {
        for &c in &plan.conns {
            for &s in &plan.subjects {
                let base = bar.position();
                let what = format!("round {}/{} {workload} c={c} {}", round + 1, plan.rounds, s.label());
                bar.set_message(format!("{what} (start-up + warm-up)"));
                let phases = ["N1", "N2", "done"];
                let on_phase = |p: usize| bar.set_message(format!("{what} ({})", phases[p.min(2)]));
                let r = callgrind::measure(&plan, s, c, round, &on_phase);
                if let Some(e) = &r.error {
                    bar.println(format!("NOT MEASURED {} c={c} round {}: {e}", s.label(), round + 1));
                }
                bar.set_position(base + per_measurement);
                results.push(r);
            }
        }
    }
    bar.finish_and_clear();
    let wall = started.elapsed();
    let _ = std::fs::remove_dir_all(&work_dir);

    let settings_lines = vec![
        format!(
            "workload {workload}, connections {conns:?}, pipeline depth {}, {} round(s); warm-up {} requests, N1 = {}, N2 = {}",
            plan.pipeline,
            plan.rounds,
            plan.warmup_requests,
            plan.requests,
            plan.requests2()
        ),
        format!("machine: {} ({} cores), {}", env.cpu_model, env.cores, env.kernel),
        format!(
            "{valgrind_version}; paste-bench {profile} build; git {}",
            env.git_commit.as_deref().unwrap_or("unknown")
        ),
        format!(
            "server pinned to core {}, load generator to core {} (pinning: {})",
            ab::SERVER_CORE,
            ab::CLIENT_CORE,
            pinning_note(&results)
        ),
        format!("command: `{}`", env.command_line),
        format!("date: {}; wall time {}", env.date, fmt_duration(wall)),
    ];
    let summary = callgrind::summarize(&results);
    let run = serde_json::json!({
        "environment": &env,
        "settings": {
            "workload": workload.name(),
            "conns": conns,
            "pipeline": plan.pipeline,
            "rounds": plan.rounds,
            "warmup_requests": plan.warmup_requests,
            "n1": plan.requests,
            "n2": plan.requests2(),
            "body_len": args.server.body_len,
            "phttpd_mode": if args.server.batch { "batch" } else { "tasks" },
            "valgrind": valgrind_version,
            "build_profile": profile,
            "server_core": ab::SERVER_CORE,
            "client_core": ab::CLIENT_CORE,
            "wall_time_s": wall.as_secs_f64(),
        },
        "not_run": not_run,
        "results": &results,
        "summary": &summary,
    });
    let json_path = args.out.join("callgrind.json");
    callgrind::append_json(&json_path, run)?;
    let md_path = args.out.join("callgrind.md");
    let heading = format!(
        "{workload}, {} connection(s), {}",
        conns.iter().map(|c| c.to_string()).collect::<Vec<_>>().join("/"),
        env.date
    );
    callgrind::append_markdown(&md_path, &callgrind::markdown_section(&heading, &settings_lines, &summary))?;

    print!("{}", callgrind::text_table(&summary, plan.requests, plan.requests2(), workload.name()));
    println!(
        "\n(Ir(N2) − Ir(N1)) / (N2 − N1): the server's user-space instructions (all threads) per request; \
         \"vs raw-uring\" subtracts the hand-written io_uring loop running the same protocol code."
    );
    println!("Wall time {}; appended to {} and {}.", fmt_duration(wall), json_path.display(), md_path.display());
    if let Some(dir) = &plan.keep_profiles {
        println!("Profiles per phase in {} (callgrind_annotate FILE).", dir.display());
    }
    let failed = results.iter().filter(|r| r.error.is_some()).count();
    if failed > 0 {
        return Err(format!("{failed} measurement(s) failed (listed above and in {})", md_path.display()));
    }
    Ok(())
}

fn pinning_note(results: &[paste_rt_bench::callgrind::CallgrindResult]) -> String {
    let mut notes: Vec<String> = vec![];
    for r in results {
        for (side, p) in [("server", &r.server_pinning), ("client", &r.client_pinning)] {
            if !p.is_empty() && p != "ok" {
                let note = format!("{side} pinning failed: {p}");
                if !notes.contains(&note) {
                    notes.push(note);
                }
            }
        }
    }
    if notes.is_empty() {
        "ok".into()
    } else {
        notes.join("; ")
    }
}
