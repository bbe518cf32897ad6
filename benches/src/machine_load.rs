//! How busy the machine was around a run: the 1-minute load average
//! (`/proc/loadavg`) before and after, and the CPU time stolen by the hypervisor
//! (`/proc/stat`'s `steal`) over the measured window.
//!
//! A benchmark taken while other work competes for the cores (builds, other
//! tenants of a VM) measures that competition; these figures let the report say
//! so. Read-only: it parses `/proc` and never judges a run (the report does).

/// Steal above this share of all CPU time during a window marks the run busy.
pub const STEAL_WARN_PCT: f64 = 3.0;

/// The 1-minute load average, or `None` where `/proc/loadavg` cannot be read.
pub fn load_avg_1min() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok().as_deref().and_then(parse_loadavg)
}

/// The first field of `/proc/loadavg` (`0.52 0.58 0.59 1/467 12345`).
pub fn parse_loadavg(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

/// All CPUs' cumulative time, in clock ticks, from `/proc/stat`'s `cpu` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    /// user + nice + system + idle + iowait + irq + softirq + steal (guest time is
    /// already inside user and nice).
    pub total: u64,
    /// Time stolen by the hypervisor for other guests.
    pub steal: u64,
}

impl CpuTimes {
    /// Now, or `None` where `/proc/stat` cannot be read.
    pub fn read() -> Option<CpuTimes> {
        std::fs::read_to_string("/proc/stat").ok().as_deref().and_then(parse_proc_stat)
    }

    /// Steal as a percentage of all CPU time since `earlier`; `None` when no time
    /// passed.
    pub fn steal_pct_since(&self, earlier: &CpuTimes) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let steal = self.steal.checked_sub(earlier.steal)?;
        (total > 0).then(|| steal as f64 * 100.0 / total as f64)
    }
}

/// Parses the aggregate `cpu` line of `/proc/stat` (kernels without a steal field
/// count it as 0).
pub fn parse_proc_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.split_whitespace().next() == Some("cpu"))?;
    let fields: Vec<u64> = line.split_whitespace().skip(1).map(|f| f.parse().ok()).collect::<Option<_>>()?;
    if fields.len() < 4 {
        return None;
    }
    let steal = fields.get(7).copied().unwrap_or(0);
    let total = fields.iter().take(8).sum();
    Some(CpuTimes { total, steal })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_one_minute_load_average() {
        assert_eq!(parse_loadavg("2.81 1.77 0.78 3/99 18934\n"), Some(2.81));
        assert_eq!(parse_loadavg(""), None);
        assert!(load_avg_1min().is_some_and(|l| l >= 0.0));
    }

    #[test]
    fn steal_is_a_share_of_all_cpu_time_without_guest_time() {
        let before = parse_proc_stat("cpu  100 0 50 800 10 0 5 0 70 0\ncpu0 1 2 3 4\n").unwrap();
        assert_eq!(before, CpuTimes { total: 965, steal: 0 });
        let after = parse_proc_stat("cpu  150 0 80 1500 10 0 5 35 90 0\n").unwrap();
        let pct = after.steal_pct_since(&before).unwrap();
        // 815 ticks passed (1780 - 965), 35 of them stolen.
        assert!((pct - 35.0 * 100.0 / 815.0).abs() < 1e-9, "{pct}");
        assert_eq!(before.steal_pct_since(&before), None);
        assert!(parse_proc_stat("intr 1 2 3").is_none());
        assert!(CpuTimes::read().is_some());
    }
}
