//! The machine a run happened on: kernel, CPU, cores, date, command line, git
//! commit, the paste-rt backend probe (which backends start here, and why the
//! others do not) and whether perf can count system calls here.
//!
//! Read-only: it inspects the system (uname, `/proc/cpuinfo`, `git rev-parse`),
//! starts each backend once to see whether it can, and runs `perf stat` once on
//! `true`; it never changes anything.

use std::process::Command;

use serde::Serialize;

use crate::subject::{Subject, BACKENDS};

/// One backend's probe result.
#[derive(Debug, Clone, Serialize)]
pub struct BackendProbe {
    /// The backend's name (`paste`, `paste-emu`, `uring`, `epoll`).
    pub backend: String,
    /// Its subject name (`paste-rt-<backend>`).
    pub subject: String,
    /// Whether a runtime on it started.
    pub started: bool,
    /// The backend's own description when it started, else the reason it did not.
    pub detail: String,
    /// Whether its figures are emulated (paste-emu).
    pub emulated: bool,
}

/// Starts a runtime on each paste-rt backend and records the outcome.
pub fn probe_backends() -> Vec<BackendProbe> {
    BACKENDS
        .iter()
        .map(|&kind| {
            let built = paste_rt::runtime::Builder::new().ignore_env().backend(kind.name()).quiet().build();
            let (started, detail) = match built {
                Ok(rt) => (true, rt.selection().to_string()),
                Err(e) => (false, e.to_string()),
            };
            let subject = Subject::PasteRt(kind);
            BackendProbe {
                backend: kind.name().to_owned(),
                subject: subject.name(),
                started,
                detail,
                emulated: subject.is_emulated(),
            }
        })
        .collect()
}

/// Where and when a run happened.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    /// `uname -srvm`.
    pub kernel: String,
    /// `/proc/cpuinfo`'s model name.
    pub cpu_model: String,
    /// Cores online.
    pub cores: usize,
    /// Cores this process may use.
    pub cores_allowed: Vec<usize>,
    /// UTC date and time, ISO 8601.
    pub date: String,
    /// The command line.
    pub command_line: String,
    /// `git rev-parse HEAD` where available.
    pub git_commit: Option<String>,
    /// The paste-rt backend probe.
    pub backends: Vec<BackendProbe>,
    /// How system calls are counted from outside: perf's version, or why perf
    /// cannot count here.
    pub syscall_counter: String,
    /// Whether perf can count system calls here.
    pub syscall_counter_works: bool,
}

impl Environment {
    /// Collects everything (probing the backends and perf).
    pub fn collect() -> Environment {
        let (syscall_counter, syscall_counter_works) = match crate::syscall_count::probe() {
            Ok(version) => (format!("{version}: {} on the server's pid", crate::syscall_count::EVENT), true),
            Err(why) => (why, false),
        };
        Environment {
            kernel: kernel(),
            cpu_model: cpu_model(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cores_allowed: crate::system::allowed_cores(),
            date: utc_now(),
            command_line: std::env::args().collect::<Vec<_>>().join(" "),
            git_commit: git_commit(),
            backends: probe_backends(),
            syscall_counter,
            syscall_counter_works,
        }
    }
}

fn kernel() -> String {
    // SAFETY: utsname is plain data; uname fills it with NUL-terminated strings.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid utsname for uname to write.
    if unsafe { libc::uname(&mut u) } != 0 {
        return "unknown".into();
    }
    let field = |f: &[libc::c_char]| -> String {
        let bytes: Vec<u8> = f.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    format!("{} {} {} {}", field(&u.sysname), field(&u.release), field(&u.version), field(&u.machine))
}

/// `/proc/cpuinfo`'s model name (`unknown` where it has none).
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// `git rev-parse HEAD` in the current directory, else in the source tree this
/// binary was built from.
fn git_commit() -> Option<String> {
    let in_dir = |dir: &str| -> Option<String> {
        let out = Command::new("git").args(["-C", dir, "rev-parse", "HEAD"]).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    in_dir(".").or_else(|| in_dir(env!("CARGO_MANIFEST_DIR")))
}

/// Now, in UTC, as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format_utc(secs)
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian calendar).
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
