//! Example binaries as child processes: start one on a free port and learn the
//! port from its start line, signal it, and wait for it to exit (killing it and
//! failing the test when it outlives a generous bound).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running example server.
pub struct Server {
    /// The process.
    pub child: Child,
    /// The port it listens on.
    pub port: u16,
    /// What it is, for messages.
    pub what: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        // A test that failed half-way must not leave its server running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `bin` with `args` on loopback port 0 and backend `backend` (the flag;
/// `PASTE_RT_BACKEND` removed), and reads its start line for the port.
pub fn start(bin: &str, args: &[&str], backend: &str) -> Server {
    let mut child = Command::new(bin)
        .args(["--port", "0", "--bind", "127.0.0.1", "--backend", backend])
        .args(args)
        .env_remove("PASTE_RT_BACKEND")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line
        .split_once("listening on ")
        .and_then(|(_, rest)| rest.split([',', ' ']).next())
        .and_then(|addr| addr.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{bin}: no address in {line:?}"));
    let name = bin.rsplit('/').next().unwrap_or(bin);
    Server { child, port, what: format!("{name} {} on {backend}", args.join(" ")) }
}

impl Server {
    /// Sends SIGINT (Ctrl-C).
    pub fn interrupt(&self) {
        // SAFETY: kill(2) with a pid this test spawned and a valid signal number.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) }, 0);
    }

    /// Waits until the process exits with status 0; fails (after killing it) if it
    /// is still running after `bound`.
    pub fn wait_exit(mut self, bound: Duration) {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{}: exited with {status}", self.what);
                return;
            }
            if Instant::now() > deadline {
                panic!("{}: still running {bound:?} after SIGINT", self.what);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
