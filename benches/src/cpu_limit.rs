//! [`CpuLimit`]: holds a server to a share of its cores, so that on a small machine
//! the server — not the load generator beside it — is the bottleneck.
//!
//! On a 2-core machine a server on one core and the load generator on the other cost
//! about the same CPU per request, so neither side saturates first and the request
//! rate says little about the server. Capping the server's CPU time (a cgroup's CFS
//! bandwidth: `quota` µs of CPU per `period` µs) makes it the side that runs out:
//! the load generator keeps a whole core and idles part of it, and the rate becomes
//! the server's own, `share × cores` of CPU divided by its cost per request — the
//! regime of a server-bound machine, where a server that batches more per wake-up
//! serves more. What it cannot show is scaling over many cores (`--server-cores`).
//!
//! Owns one cgroup directory per limit, under the first CPU controller found:
//! cgroup v2 (`/sys/fs/cgroup` with `cpu` among its controllers: `cpu.max`) or
//! cgroup v1's `cpu` hierarchy (`cpu.cfs_quota_us`, `cpu.cfs_period_us`). Creating
//! one needs root (or a delegated hierarchy); without it the caller gets a message
//! naming what is missing. A process is admitted whole (`cgroup.procs` moves every
//! thread, and threads it starts later stay in the group); the directory is removed
//! when the limit is dropped, after its processes have exited.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// CFS period of every limit, µs: short, so that a throttled server's pauses stay
/// short (a few milliseconds) next to the measured window.
pub const PERIOD_US: u64 = 10_000;
/// Smallest quota the kernel accepts, µs (`cpu.cfs_quota_us` refuses less than 1 ms).
pub const MIN_QUOTA_US: u64 = 1_000;
/// The cgroup file system's usual mount point.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Which cgroup interface a limit is written through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// The unified hierarchy: `cpu.max` holds "quota period".
    V2,
    /// The v1 `cpu` controller: `cpu.cfs_period_us` and `cpu.cfs_quota_us`.
    V1,
}

/// A cgroup holding its processes to a quota of CPU time per [`PERIOD_US`].
#[derive(Debug)]
pub struct CpuLimit {
    dir: PathBuf,
    version: CgroupVersion,
    share: f64,
}

/// The CFS quota, µs per [`PERIOD_US`], that holds a process to `share` of each of
/// its `cores` cores; an error for a share outside (0, 1] or a quota below what
/// the kernel accepts.
pub fn quota_us(share: f64, cores: usize) -> Result<u64, String> {
    if !(share > 0.0 && share <= 1.0) {
        return Err(format!("the server's CPU share must be in (0, 1], not {share}"));
    }
    let quota = (share * cores.max(1) as f64 * PERIOD_US as f64).round() as u64;
    if quota < MIN_QUOTA_US {
        return Err(format!(
            "a share of {share} of {} core(s) is {quota} µs per {PERIOD_US} µs, below the kernel's smallest quota \
             ({MIN_QUOTA_US} µs): use at least {:.2}",
            cores.max(1),
            MIN_QUOTA_US as f64 / PERIOD_US as f64 / cores.max(1) as f64
        ));
    }
    Ok(quota)
}

/// Whether a `cgroup.controllers` list names the `cpu` controller.
pub fn lists_cpu(controllers: &str) -> bool {
    controllers.split_whitespace().any(|c| c == "cpu")
}

/// Where limits can be made under `root` (normally [`CGROUP_ROOT`]): the v2 root when
/// it offers the `cpu` controller, else the v1 `cpu` hierarchy.
pub fn find_hierarchy(root: &Path) -> Result<(PathBuf, CgroupVersion), String> {
    if let Ok(list) = fs::read_to_string(root.join("cgroup.controllers")) {
        if lists_cpu(&list) {
            return Ok((root.to_path_buf(), CgroupVersion::V2));
        }
    }
    for name in ["cpu", "cpu,cpuacct"] {
        let dir = root.join(name);
        if dir.join("cpu.cfs_quota_us").exists() {
            return Ok((dir, CgroupVersion::V1));
        }
    }
    Err(format!(
        "no cgroup CPU controller under {}: neither cgroup v2 with the cpu controller nor cgroup v1's cpu \
         hierarchy is mounted there",
        root.display()
    ))
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    fs::write(path, value).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied { " (run as root)" } else { "" };
        format!("writing {value:?} to {}: {e}{hint}", path.display())
    })
}

impl CpuLimit {
    /// A new cgroup under [`CGROUP_ROOT`] holding its processes to `share` of each of
    /// `cores` cores.
    pub fn new(share: f64, cores: usize) -> Result<CpuLimit, String> {
        Self::new_under(Path::new(CGROUP_ROOT), share, cores)
    }

    /// [`new`](Self::new) under another cgroup mount point (tests).
    pub fn new_under(root: &Path, share: f64, cores: usize) -> Result<CpuLimit, String> {
        static SERIAL: AtomicU32 = AtomicU32::new(0);
        let quota_us = quota_us(share, cores)?;
        let (parent, version) = find_hierarchy(root)?;
        if version == CgroupVersion::V2 {
            // Children get the cpu controller only when the parent hands it down.
            let enabled = fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap_or_default();
            if !lists_cpu(&enabled) {
                write(&parent.join("cgroup.subtree_control"), "+cpu")?;
            }
        }
        let name = format!("paste-bench-{}-{}", std::process::id(), SERIAL.fetch_add(1, Ordering::Relaxed));
        let dir = parent.join(name);
        fs::create_dir(&dir).map_err(|e| format!("creating the cgroup {}: {e}", dir.display()))?;
        // From here on, dropping the limit removes the directory.
        let limit = CpuLimit { dir, version, share };
        match version {
            CgroupVersion::V2 => write(&limit.dir.join("cpu.max"), &format!("{quota_us} {PERIOD_US}"))?,
            CgroupVersion::V1 => {
                write(&limit.dir.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
                write(&limit.dir.join("cpu.cfs_quota_us"), &quota_us.to_string())?;
            }
        }
        Ok(limit)
    }

    /// Moves process `pid`, every thread of it, into the limit.
    pub fn admit(&self, pid: u32) -> Result<(), String> {
        write(&self.dir.join("cgroup.procs"), &pid.to_string())
    }

    /// The cgroup's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The interface the limit is written through.
    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// One line for reports: the share and how it is enforced.
    pub fn describe(&self) -> String {
        describe(self.share, self.version)
    }
}

/// The report line of limits of `share` of each core, written through `version`.
pub fn describe(share: f64, version: CgroupVersion) -> String {
    let via = match version {
        CgroupVersion::V2 => "cgroup v2 cpu.max",
        CgroupVersion::V1 => "cgroup v1 cpu.cfs_quota_us",
    };
    format!(
        "each server held to {:.0} % of each of its cores ({} µs of CPU per {PERIOD_US} µs per core, {via})",
        share * 100.0,
        (share * PERIOD_US as f64).round() as u64
    )
}

impl Drop for CpuLimit {
    fn drop(&mut self) {
        // A process killed just before may take a moment to leave the group.
        for _ in 0..50 {
            if fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!("paste-bench: could not remove the cgroup {} (a process still in it?)", self.dir.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quota_is_the_share_of_every_core_and_bad_shares_are_refused() {
        assert_eq!(quota_us(0.5, 1), Ok(5_000));
        assert_eq!(quota_us(0.5, 4), Ok(20_000));
        assert_eq!(quota_us(1.0, 2), Ok(20_000));
        for bad in [0.0, -0.5, 1.5, f64::NAN] {
            let e = quota_us(bad, 1).unwrap_err();
            assert!(e.contains("(0, 1]"), "{e}");
        }
        let e = quota_us(0.05, 1).unwrap_err();
        assert!(e.contains("smallest quota") && e.contains("at least 0.10"), "{e}");
    }

    #[test]
    fn the_hierarchy_is_v2_with_cpu_else_v1_else_a_clear_error() {
        let base = std::env::temp_dir().join(format!("paste-bench-cgroup-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let v2 = base.join("v2");
        fs::create_dir_all(&v2).unwrap();
        fs::write(v2.join("cgroup.controllers"), "cpuset cpu io memory pids\n").unwrap();
        assert_eq!(find_hierarchy(&v2), Ok((v2.clone(), CgroupVersion::V2)));

        // A v2 root without the cpu controller (a hybrid mount): v1's cpu is used.
        let hybrid = base.join("hybrid");
        fs::create_dir_all(hybrid.join("cpu,cpuacct")).unwrap();
        fs::write(hybrid.join("cgroup.controllers"), "cpuset memory\n").unwrap();
        fs::write(hybrid.join("cpu,cpuacct/cpu.cfs_quota_us"), "-1\n").unwrap();
        assert_eq!(find_hierarchy(&hybrid), Ok((hybrid.join("cpu,cpuacct"), CgroupVersion::V1)));

        let none = base.join("none");
        fs::create_dir_all(&none).unwrap();
        let e = find_hierarchy(&none).unwrap_err();
        assert!(e.contains("no cgroup CPU controller"), "{e}");
        let _ = fs::remove_dir_all(&base);
    }

    #[test]
    fn the_report_line_names_share_quota_and_interface() {
        assert_eq!(
            describe(0.5, CgroupVersion::V1),
            "each server held to 50 % of each of its cores (5000 µs of CPU per 10000 µs per core, \
             cgroup v1 cpu.cfs_quota_us)"
        );
    }

    /// On the real cgroup file system: a limit holds a child process with its quota
    /// and goes away when dropped. Where no limit can be made here (not root, no CPU
    /// controller), the error must say why — the test checks that instead.
    #[test]
    fn a_limit_admits_a_process_and_is_removed_when_dropped() {
        let limit = match CpuLimit::new(0.5, 1) {
            Ok(l) => l,
            Err(e) => {
                assert!(
                    e.contains("no cgroup CPU controller")
                        || e.contains("run as root")
                        || e.contains("creating the cgroup"),
                    "an unusable cgroup file system must be named: {e}"
                );
                eprintln!("NOTE: no CPU limit can be made here ({e}); checked the message only");
                return;
            }
        };
        let quota_file = match limit.version() {
            CgroupVersion::V2 => fs::read_to_string(limit.dir().join("cpu.max")).unwrap(),
            CgroupVersion::V1 => fs::read_to_string(limit.dir().join("cpu.cfs_quota_us")).unwrap(),
        };
        assert!(quota_file.starts_with("5000"), "quota as written: {quota_file}");
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        limit.admit(child.id()).unwrap();
        let name = limit.dir().file_name().unwrap().to_string_lossy().into_owned();
        let cgroups = fs::read_to_string(format!("/proc/{}/cgroup", child.id())).unwrap();
        assert!(cgroups.contains(&name), "the child is not in {name}: {cgroups}");
        let dir = limit.dir().to_path_buf();
        child.kill().unwrap();
        child.wait().unwrap();
        drop(limit);
        assert!(!dir.exists(), "{} was left behind", dir.display());
    }
}
