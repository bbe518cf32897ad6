//! A child process the harness talks to in lines: its stdin for commands, its
//! stdout read line by line on a thread (so every wait has a time limit), its
//! stderr kept (the first 64 KiB) to explain a failure.
//!
//! Owns spawning, the pipes and the kill: a child is killed and reaped when
//! dropped, so none outlives the harness. It never interprets the lines (the
//! server and load protocols do).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// Stderr bytes kept per child.
const KEPT_STDERR: usize = 64 * 1024;

/// A running child with piped stdin, stdout and stderr.
#[derive(Debug)]
pub struct PipedChild {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl PipedChild {
    /// Spawns `command` with its three standard streams piped.
    ///
    /// # Errors
    /// The spawn's error.
    pub fn spawn(mut command: Command) -> io::Result<PipedChild> {
        let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        let (Some(stdin), Some(stdout), Some(mut stderr_pipe)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other("the child's standard streams were not piped"));
        };
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                if s.len() < KEPT_STDERR {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        Ok(PipedChild { child, stdin, lines, stderr })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes `line` and a newline to the child's stdin.
    ///
    /// # Errors
    /// The write's error (the child is gone).
    pub fn send_line(&mut self, line: &str) -> io::Result<()> {
        writeln!(self.stdin, "{line}").and_then(|()| self.stdin.flush())
    }

    /// The child's next stdout line, waiting at most `timeout`; `None` at the limit
    /// or when its stdout closed.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// `what`, with whether the child is still running and what it said on stderr.
    pub fn failure(&mut self, what: &str) -> String {
        std::thread::sleep(Duration::from_millis(50));
        let status = match self.child.try_wait() {
            Ok(Some(status)) => format!("exited ({status})"),
            Ok(None) => "still running".into(),
            Err(e) => format!("state unknown ({e})"),
        };
        let stderr = self.stderr.lock().unwrap_or_else(|e| e.into_inner()).trim().to_owned();
        if stderr.is_empty() {
            format!("{what}; {status}")
        } else {
            format!("{what}; {status}; stderr: {stderr}")
        }
    }

    /// Kills the child (SIGKILL) and reaps it.
    pub fn stop(mut self) {
        self.kill_and_reap();
    }

    fn kill_and_reap(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for PipedChild {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}
