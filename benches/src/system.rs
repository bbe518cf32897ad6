//! What the harness asks of Linux about processes: CPU time and RSS from `/proc`,
//! CPU affinity, the thread's own CPU clock and the open-files limit.
//!
//! Each call wraps one system interface and returns a typed error naming what was
//! attempted; it never decides anything about a benchmark.

use std::io;
use std::time::Duration;

/// A failed system call or `/proc` read.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct SysError {
    /// What was attempted.
    pub what: String,
    /// The OS error (with its errno).
    #[source]
    pub source: io::Error,
}

fn sys_err(what: impl Into<String>, source: io::Error) -> SysError {
    SysError { what: what.into(), source }
}

/// Clock ticks per second of `/proc/<pid>/stat`'s times.
fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// User + system CPU time of process `pid` (all its threads), from
/// `/proc/<pid>/stat` (`utime + stime`, clock-tick resolution).
pub fn process_cpu_time(pid: u32) -> Result<Duration, SysError> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| sys_err(format!("reading {path}"), e))?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let after = text.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ")": field 3 is index 0, so utime (14) is index 11 and stime (15) index 12.
    let parse = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    match (parse(11), parse(12)) {
        (Some(u), Some(s)) => Ok(Duration::from_nanos((u + s) * 1_000_000_000 / clock_ticks())),
        _ => Err(sys_err(format!("parsing {path}"), io::Error::new(io::ErrorKind::InvalidData, text.clone()))),
    }
}

/// Resident set size of process `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn process_rss_kb(pid: u32) -> Result<u64, SysError> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| sys_err(format!("reading {path}"), e))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| sys_err(format!("no VmRSS in {path}"), io::Error::from(io::ErrorKind::InvalidData)))
}

/// CPU time consumed by the calling thread so far.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec for clock_gettime to write.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The cores this process may run on.
pub fn allowed_cores() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect()
    }
}

/// Pins the calling thread (and the threads it starts later) to `core`.
pub fn pin_current_thread(core: usize) -> Result<(), SysError> {
    pin_current_thread_to(&[core])
}

/// Confines the calling thread (and the threads it starts later) to `cores`.
pub fn pin_current_thread_to(cores: &[usize]) -> Result<(), SysError> {
    let list = cores.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",");
    if let Some(&bad) = cores.iter().find(|&&c| c >= libc::CPU_SETSIZE as usize) {
        return Err(sys_err(
            format!("sched_setaffinity to core(s) {list}"),
            io::Error::new(io::ErrorKind::InvalidInput, format!("core {bad} is beyond the CPU set")),
        ));
    }
    // SAFETY: cpu_set_t is plain data; every core is below CPU_SETSIZE (checked
    // above); sched_setaffinity reads exactly its size.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &core in cores {
            libc::CPU_SET(core, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        let what = if cores.len() == 1 { format!("core {list}") } else { format!("cores {list}") };
        return Err(sys_err(format!("sched_setaffinity to {what}"), io::Error::last_os_error()));
    }
    Ok(())
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> Result<u64, SysError> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid rlimit for getrlimit to write.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(sys_err("getrlimit(RLIMIT_NOFILE)", io::Error::last_os_error()));
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: `raised` is a valid rlimit for setrlimit to read.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(sys_err("setrlimit(RLIMIT_NOFILE)", io::Error::last_os_error()));
        }
        lim = raised;
    }
    Ok(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        assert!(process_rss_kb(pid).unwrap() > 0);
        process_cpu_time(pid).unwrap();
        assert!(process_cpu_time(u32::MAX).is_err());
        assert!(raise_nofile_limit().unwrap() > 0);
    }
}
