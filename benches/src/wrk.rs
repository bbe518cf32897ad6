//! `--client wrk`: drives an rpc run with wrk (the Debian package) instead of the
//! built-in generator, one wrk thread per client core (confined to the client
//! cores), and parses its report.
//!
//! wrk checks status codes only (non-2xx/3xx and socket errors count as errors), not
//! bodies, and reports p50/p99 but not p99.9; its durations are whole seconds. This
//! module owns running and parsing wrk; it never touches the server.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::control::ServerChild;
use crate::cores::CoreSplit;
use crate::loadgen::LoadResult;
use crate::window::{sample, Measured, WindowProbes};

/// What wrk reported.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WrkReport {
    /// Requests completed.
    pub requests: u64,
    /// Requests per second.
    pub rps: f64,
    /// p50 latency, µs.
    pub p50_us: f64,
    /// p99 latency, µs.
    pub p99_us: f64,
    /// Socket errors plus non-2xx/3xx responses.
    pub errors: u64,
}

/// Whether wrk is installed (on `PATH`).
pub fn installed() -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join("wrk").is_file()))
}

fn parse_latency(v: &str) -> Option<f64> {
    let v = v.trim();
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e6)
    } else {
        (v, 1.0)
    };
    num.trim().parse::<f64>().ok().map(|x| x * scale)
}

/// Parses wrk's output (run with `--latency`).
pub fn parse(output: &str) -> Result<WrkReport, String> {
    let mut r = WrkReport { p50_us: f64::NAN, p99_us: f64::NAN, ..WrkReport::default() };
    let mut rps = None;
    for line in output.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("Requests/sec:") {
            rps = v.trim().parse().ok();
        } else if let Some(v) = l.strip_prefix("50%") {
            r.p50_us = parse_latency(v).unwrap_or(f64::NAN);
        } else if let Some(v) = l.strip_prefix("99%") {
            r.p99_us = parse_latency(v).unwrap_or(f64::NAN);
        } else if l.contains(" requests in ") {
            r.requests = l.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
        } else if let Some(v) = l.strip_prefix("Socket errors:") {
            r.errors += v
                .split(',')
                .filter_map(|part| part.split_whitespace().last().and_then(|n| n.parse::<u64>().ok()))
                .sum::<u64>();
        } else if let Some(v) = l.strip_prefix("Non-2xx or 3xx responses:") {
            r.errors += v.trim().parse::<u64>().unwrap_or(1);
        }
    }
    r.rps = rps.ok_or_else(|| format!("no Requests/sec in wrk's output: {output}"))?;
    Ok(r)
}

fn child_cpu() -> Duration {
    let mut u: libc::rusage = unsafe_zeroed_rusage();
    // SAFETY: `u` is a valid rusage for getrusage to write.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn unsafe_zeroed_rusage() -> libc::rusage {
    // SAFETY: rusage is plain data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// Runs wrk against `addr` for whole `secs` seconds with `conns` connections, one
/// thread per client core (at most one per connection), confined to `cores`.
fn run_wrk(
    addr: std::net::SocketAddr,
    conns: usize,
    cores: &[usize],
    secs: u64,
) -> Result<(WrkReport, Duration), String> {
    let threads = cores.len().clamp(1, conns.max(1));
    let mut cmd = Command::new("wrk");
    cmd.args([
        &format!("-t{threads}"),
        &format!("-c{conns}"),
        &format!("-d{secs}s"),
        "--latency",
        &format!("http://{addr}/"),
    ]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut set = empty_cpu_set();
    for &core in cores.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
        // SAFETY: `core` is below CPU_SETSIZE, the size of `set`.
        unsafe { libc::CPU_SET(core, &mut set) };
    }
    // SAFETY: between fork and exec the closure only calls sched_setaffinity, an
    // async-signal-safe system call, on a set copied into the closure.
    unsafe {
        cmd.pre_exec(move || {
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
            Ok(())
        });
    }
    let before = child_cpu();
    let out = cmd.output().map_err(|e| format!("running wrk: {e}"))?;
    let cpu = child_cpu().saturating_sub(before);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!("wrk failed ({}): {}{}", out.status, text, String::from_utf8_lossy(&out.stderr)));
    }
    Ok((parse(&text)?, cpu))
}

fn empty_cpu_set() -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    unsafe { std::mem::zeroed() }
}

/// One wrk-driven run: an optional warm-up run, then the measured run with the
/// server sampled (and perf enabled) around it.
pub fn measure(
    warmup: Duration,
    duration: Duration,
    server: &mut ServerChild,
    split: &CoreSplit,
    conns: usize,
    probes: &mut WindowProbes,
) -> Result<Measured, String> {
    if !installed() {
        return Err("--client wrk: wrk is not installed (apt-get install wrk)".into());
    }
    let cores = &split.clients[..split.load_processes(conns)];
    let secs = duration.as_secs_f64().ceil().max(1.0) as u64;
    if !warmup.is_zero() {
        run_wrk(server.addr, conns, cores, warmup.as_secs_f64().ceil().max(1.0) as u64)?;
    }
    probes.ready();
    let (cpu0, c0) = sample(server)?;
    probes.open();
    let run = run_wrk(server.addr, conns, cores, secs);
    probes.close();
    let (report, client_cpu) = run?;
    let (cpu1, c1) = sample(server)?;
    let rss_end = crate::system::process_rss_kb(server.pid()).ok();
    // wrk gives quantiles, not samples: the histogram stays empty, they are passed on.
    let latency = crate::loadgen::latency_histogram();
    let load = LoadResult {
        requests: report.requests,
        errors: report.errors,
        messages: if report.errors > 0 { vec![format!("wrk: {} errors", report.errors)] } else { vec![] },
        latency,
        cpu: client_cpu,
        window: Duration::from_secs_f64(report.requests as f64 / report.rps.max(1e-9)),
        backend: "wrk".into(),
        pinned: Ok(()),
    };
    Ok(Measured {
        load,
        server_cpu: cpu1.saturating_sub(cpu0),
        start: c0,
        end: c1,
        rss_end,
        latency_us: Some([report.p50_us, report.p99_us, f64::NAN]),
        client_cores: cores.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let text = "Running 2s test @ http://127.0.0.1:1/\n  1 threads and 10 connections\n  Latency Distribution\n     50%   68.00us\n     75%   80.00us\n     90%  100.00us\n     99%    1.50ms\n  123456 requests in 2.00s, 17.84MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n  Non-2xx or 3xx responses: 4\nRequests/sec:  61728.00\nTransfer/sec:      8.92MB\n";
        let r = parse(text).unwrap();
        assert_eq!(r.requests, 123_456);
        assert_eq!(r.rps, 61_728.0);
        assert_eq!(r.p50_us, 68.0);
        assert_eq!(r.p99_us, 1500.0);
        assert_eq!(r.errors, 7);
        assert!(parse("garbage").is_err());
    }
}
