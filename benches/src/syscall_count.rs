//! System calls of a server counted from outside the process, with perf's
//! `raw_syscalls:sys_enter` tracepoint on the server's pid, over exactly the
//! measured window.
//!
//! perf starts with its counter disabled (`--delay=-1`) and takes `enable` and
//! `disable` on a control FIFO (`--control=fifo:CTL,ACK`), so the count covers the
//! window and nothing else (the caller times the enabled interval: perf's own
//! "run time" of a per-task counter is the time the task was on a CPU, not wall
//! time). Every subject is counted the same way,
//! whatever runtime it uses, so the figure compares across subjects (paste-rt's
//! own counter only sees the system calls its backend makes).
//!
//! Owns starting, steering and stopping one perf process and parsing its CSV
//! output (`-x,`). It never touches the server, and every wait on perf is bounded:
//! a perf that does not answer makes the count unavailable, never hangs the run.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The tracepoint counted: every system call entry.
pub const EVENT: &str = "raw_syscalls:sys_enter";
/// How long perf may take to start or to answer one control command.
const ANSWER_LIMIT: Duration = Duration::from_secs(5);

/// What perf counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyscallCount {
    /// System calls entered by the process (all its threads) while enabled.
    pub count: u64,
    /// perf's run time of the counter: how long the process's threads were on a
    /// CPU while it was enabled (CPU time, not wall time).
    pub running: Duration,
}

/// Parses `perf stat -x,` output for [`EVENT`]: the line
/// `COUNT,UNIT,raw_syscalls:sys_enter,RUN_NS,PERCENT,...`. Comment lines and
/// perf's `Events enabled`/`disabled` notes are skipped.
///
/// # Errors
/// Why no count could be read: perf's `<not counted>` or `<not supported>`, or no
/// such line.
pub fn parse_perf_stat(text: &str) -> Result<SyscallCount, String> {
    for line in text.lines() {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() < 4 || fields[2].trim() != EVENT {
            continue;
        }
        let value = fields[0].trim();
        if value.starts_with('<') {
            return Err(format!("perf reported {value} for {EVENT}"));
        }
        let count = value.parse::<u64>().map_err(|e| format!("perf's count {value:?} for {EVENT}: {e}"))?;
        let running = fields[3].trim();
        let running_ns = running.parse::<f64>().map_err(|e| format!("perf's run time {running:?} for {EVENT}: {e}"))?;
        return Ok(SyscallCount { count, running: Duration::from_nanos(running_ns.max(0.0) as u64) });
    }
    Err(format!("no {EVENT} line in perf's output: {:?}", text.trim()))
}

/// Whether perf can count [`EVENT`] here: `Ok(perf's version)`, or why not (perf
/// missing, tracepoints not permitted).
pub fn probe() -> Result<String, String> {
    let version = Command::new("perf").arg("--version").output().map_err(|e| {
        format!("perf is not installed ({e}): apt-get install linux-perf (Debian) or linux-tools (Ubuntu)")
    })?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    let out = Command::new("perf")
        .args(["stat", "-x,", "-e", EVENT, "--", "true"])
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("running perf stat: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    match parse_perf_stat(&stderr) {
        Ok(_) if out.status.success() => Ok(version),
        Ok(_) => Err(format!("perf stat failed ({}): {}", out.status, first_lines(&stderr))),
        Err(_) => Err(format!(
            "perf cannot count {EVENT} here (run as root, or sysctl kernel.perf_event_paranoid=-1): {}",
            first_lines(&stderr)
        )),
    }
}

fn first_lines(text: &str) -> String {
    text.lines().filter(|l| !l.trim().is_empty()).take(3).collect::<Vec<_>>().join(" / ")
}

/// A perf process counting one server's system calls, disabled until
/// [`enable`](Self::enable).
#[derive(Debug)]
pub struct SyscallCounter {
    perf: Child,
    ctl: File,
    ack: File,
    output: PathBuf,
    stderr: PathBuf,
    fifos: [PathBuf; 2],
}

fn make_fifo(path: &Path) -> Result<(), String> {
    let _ = std::fs::remove_file(path);
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|e| format!("fifo path {}: {e}", path.display()))?;
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(format!("mkfifo {}: {}", path.display(), std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Opens a FIFO read-write: never blocks, whether perf has opened its end yet or not.
fn open_fifo(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("opening {}: {e}", path.display()))
}

impl SyscallCounter {
    /// Starts perf on process `pid`, its files (FIFOs, output) in `dir`, which must
    /// exist. The counter is disabled; [`ready`](Self::ready) waits for perf.
    pub fn start(pid: u32, dir: &Path) -> Result<SyscallCounter, String> {
        let fifos = [dir.join("perf-ctl.fifo"), dir.join("perf-ack.fifo")];
        for f in &fifos {
            make_fifo(f)?;
        }
        let output = dir.join("perf-stat.csv");
        let stderr = dir.join("perf-stderr.txt");
        let _ = std::fs::remove_file(&output);
        let ctl = open_fifo(&fifos[0])?;
        let ack = open_fifo(&fifos[1])?;
        let stderr_file = File::create(&stderr).map_err(|e| format!("creating {}: {e}", stderr.display()))?;
        let perf = Command::new("perf")
            .args(["stat", "-x,", "-e", EVENT, "-p", &pid.to_string(), "--delay=-1"])
            .arg(format!("--control=fifo:{},{}", fifos[0].display(), fifos[1].display()))
            .arg("-o")
            .arg(&output)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr_file)
            .spawn()
            .map_err(|e| format!("starting perf: {e}"))?;
        Ok(SyscallCounter { perf, ctl, ack, output, stderr, fifos })
    }

    /// Sends one control command and waits for perf's `ack`.
    fn command(&mut self, what: &str) -> Result<(), String> {
        self.ctl.write_all(format!("{what}\n").as_bytes()).map_err(|e| format!("perf control {what}: {e}"))?;
        let deadline = Instant::now() + ANSWER_LIMIT;
        let mut got = Vec::new();
        loop {
            let mut buf = [0u8; 64];
            match self.ack.read(&mut buf) {
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if got.windows(3).any(|w| w == b"ack") {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("reading perf's answer to {what}: {e}")),
            }
            if let Ok(Some(status)) = self.perf.try_wait() {
                return Err(format!("perf exited ({status}) before answering {what}: {}", self.perf_stderr()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("perf did not answer {what} within {} s", ANSWER_LIMIT.as_secs()));
            }
            wait_readable(&self.ack, left.min(Duration::from_millis(20)));
        }
    }

    /// Waits until perf is attached and listening (a `ping` answered).
    pub fn ready(&mut self) -> Result<(), String> {
        self.command("ping")
    }

    /// Starts counting.
    pub fn enable(&mut self) -> Result<(), String> {
        self.command("enable")
    }

    /// Stops counting.
    pub fn disable(&mut self) -> Result<(), String> {
        self.command("disable")
    }

    fn perf_stderr(&self) -> String {
        first_lines(&std::fs::read_to_string(&self.stderr).unwrap_or_default())
    }

    /// Stops perf (SIGINT, as Ctrl-C) and reads what it counted.
    pub fn finish(mut self) -> Result<SyscallCount, String> {
        let pid = self.perf.id() as libc::pid_t;
        // SAFETY: signals our own child, which has not been reaped yet (we hold its
        // `Child`), so the pid cannot have been reused.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + ANSWER_LIMIT;
        loop {
            match self.perf.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = self.perf.kill();
                    let _ = self.perf.wait();
                    return Err(format!("perf did not stop within {} s", ANSWER_LIMIT.as_secs()));
                }
            }
        }
        let text = std::fs::read_to_string(&self.output)
            .map_err(|e| format!("reading perf's output {}: {e}; {}", self.output.display(), self.perf_stderr()))?;
        parse_perf_stat(&text)
    }
}

/// Waits until `file` has data, or `limit` passes.
fn wait_readable(file: &File, limit: Duration) {
    let mut fd = libc::pollfd { fd: file.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: `fd` is one valid pollfd for poll to read and write; the descriptor
    // stays open for the call.
    unsafe { libc::poll(&mut fd, 1, limit.as_millis() as libc::c_int) };
}

impl Drop for SyscallCounter {
    fn drop(&mut self) {
        if let Ok(None) = self.perf.try_wait() {
            let _ = self.perf.kill();
            let _ = self.perf.wait();
        }
        for f in &self.fifos {
            let _ = std::fs::remove_file(f);
        }
        let _ = std::fs::remove_file(&self.output);
        let _ = std::fs::remove_file(&self.stderr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_count_and_the_run_time_from_perf_csv() {
        let text = "# started on Fri Dec  4 18:47:29 2026\n\n\
                    1740943,,raw_syscalls:sys_enter,499993231,100.00,,\n\
                    Events disabled\nEvents enabled\nEvents disabled\n";
        let c = parse_perf_stat(text).unwrap();
        assert_eq!(c, SyscallCount { count: 1_740_943, running: Duration::from_nanos(499_993_231) });
        // Several events: the syscall line is found among them.
        let many =
            "15407,,syscalls:sys_enter_read,130789069,100.00,,\n34120,,raw_syscalls:sys_enter,130789069,100.00,,\n";
        assert_eq!(parse_perf_stat(many).unwrap().count, 34_120);
    }

    #[test]
    fn not_counted_not_supported_and_missing_lines_are_errors() {
        let not_counted = parse_perf_stat("<not counted>,,raw_syscalls:sys_enter,0,100.00,,\n").unwrap_err();
        assert!(not_counted.contains("<not counted>"), "{not_counted}");
        let unsupported = parse_perf_stat("<not supported>,,raw_syscalls:sys_enter,0,0.00,,\n").unwrap_err();
        assert!(unsupported.contains("<not supported>"), "{unsupported}");
        let other = parse_perf_stat("12,,cycles,1000,100.00,,\n").unwrap_err();
        assert!(other.contains("no raw_syscalls:sys_enter line"), "{other}");
        assert!(parse_perf_stat("x12,,raw_syscalls:sys_enter,1000,100.00,,\n").is_err());
    }
}
