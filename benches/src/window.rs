//! One measured window of an A/B run: the probes around it (the server's system
//! calls, the machine's steal), the server sampled at its edges, and what it
//! measured on both sides. Both load clients (the built-in generator and wrk) measure
//! through it.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::control::{ServerChild, ServerCounters};
use crate::loadgen::LoadResult;
use crate::machine_load::CpuTimes;
use crate::syscall_count::{SyscallCount, SyscallCounter};

/// What is measured over exactly the window besides the server's own figures: its
/// system calls (perf) and the CPU time stolen from the machine.
#[derive(Debug)]
pub struct WindowProbes {
    counter: Result<SyscallCounter, String>,
    enabled_at: Option<Instant>,
    counted: Duration,
    cpu_start: Option<CpuTimes>,
    steal_pct: Option<f64>,
}

impl WindowProbes {
    /// Starts perf on the server `pid` (its files in `work_dir`) when system calls
    /// are counted (`counting`: `Err` says why not).
    pub fn start(counting: &Result<(), String>, work_dir: &Path, pid: u32) -> WindowProbes {
        let counter = match counting {
            Ok(()) => SyscallCounter::start(pid, work_dir),
            Err(why) => Err(why.clone()),
        };
        WindowProbes { counter, enabled_at: None, counted: Duration::ZERO, cpu_start: None, steal_pct: None }
    }

    /// Waits until perf is attached (a failure only loses the count).
    pub fn ready(&mut self) {
        if let Ok(c) = &mut self.counter {
            if let Err(e) = c.ready() {
                self.counter = Err(e);
            }
        }
    }

    /// The window starts.
    pub fn open(&mut self) {
        self.cpu_start = CpuTimes::read();
        if let Ok(c) = &mut self.counter {
            // perf counts from some instant between our `enable` and its ack: take
            // the middle (the same at `disable`).
            let enabling = Instant::now();
            match c.enable() {
                Ok(()) => self.enabled_at = Some(enabling + (Instant::now() - enabling) / 2),
                Err(e) => self.counter = Err(e),
            }
        }
    }

    /// The window ends.
    pub fn close(&mut self) {
        if let Ok(c) = &mut self.counter {
            let disabling = Instant::now();
            match c.disable() {
                Ok(()) => {
                    let end = disabling + (Instant::now() - disabling) / 2;
                    self.counted = self.enabled_at.map_or(Duration::ZERO, |at| end.saturating_duration_since(at));
                }
                Err(e) => self.counter = Err(e),
            }
        }
        self.steal_pct = match (CpuTimes::read(), &self.cpu_start) {
            (Some(end), Some(start)) => end.steal_pct_since(start),
            _ => None,
        };
    }

    /// The system calls counted and the wall time they were counted over (or why
    /// not), and the steal over the window.
    pub fn finish(self) -> (Result<(SyscallCount, Duration), String>, Option<f64>) {
        let counted = self.counted;
        (self.counter.and_then(SyscallCounter::finish).map(|c| (c, counted)), self.steal_pct)
    }
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
    /// The cores the load ran on.
    pub client_cores: Vec<usize>,
}

/// Samples the server at a window edge: CPU time, then counters.
pub fn sample(server: &mut ServerChild) -> Result<(Duration, ServerCounters), String> {
    let cpu = crate::system::process_cpu_time(server.pid()).map_err(|e| e.to_string())?;
    let counters = server.counters(Duration::from_secs(5)).map_err(|e| e.to_string())?;
    Ok((cpu, counters))
}
