//! The channel between `paste-bench ab` and its load generator processes
//! (`paste-bench load --control`), over the child's stdin and stdout.
//!
//! The child connects (preloads kv keys, opens idle connections), prints `ready`,
//! and waits for `go <unix-ns>` on stdin: the instant its measured window starts,
//! the same for every load process of the run (the load starts at once; the
//! warm-up lasts until then). When the window is over it prints
//! `result <json>`: its figures ([`LoadReport`]) or why it could not run. At EOF on
//! stdin before `go` (the harness is gone) it gives up.
//!
//! Owns the wire format and both ends, and the group of processes of one run; the
//! merge of their figures is [`load_report::merge`]'s. It never decides what is
//! measured.

use std::io::{self, BufRead, Write};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::child_process::PipedChild;
use crate::load_report::{self, LoadReport};
use crate::loadgen::LoadResult;

/// The child's line once its connections are up.
pub const READY: &str = "ready";
/// The parent's line starting the window: `go <unix-ns>`.
pub const GO: &str = "go";
/// First word of the child's last line.
pub const RESULT: &str = "result";

/// What a load process reports at the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LoadOutcome {
    /// Its figures.
    Ran(LoadReport),
    /// Why it could not run.
    Failed(String),
}

/// `t` as nanoseconds since the Unix epoch.
pub fn unix_ns(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// The local [`Instant`] of Unix time `ns` (now, if it is past).
pub fn instant_of_unix_ns(ns: u128) -> Instant {
    let (now, now_ns) = (Instant::now(), unix_ns(SystemTime::now()));
    let ahead = ns.saturating_sub(now_ns).min(u128::from(u64::MAX));
    now + Duration::from_nanos(ahead as u64)
}

/// Parses `go <unix-ns>`.
pub fn parse_go(line: &str) -> Option<u128> {
    line.strip_prefix(GO)?.trim().parse().ok()
}

/// Child side: says `ready` and waits for `go` (the rendezvous decision of a
/// `load --control` process).
///
/// # Errors
/// EOF or an unreadable line on stdin.
pub fn child_wait_for_go() -> Result<Instant, String> {
    {
        let mut out = io::stdout().lock();
        writeln!(out, "{READY}").and_then(|()| out.flush()).map_err(|e| format!("telling the harness: {e}"))?;
    }
    let mut line = String::new();
    match io::stdin().lock().read_line(&mut line) {
        Ok(0) => Err("the harness closed stdin before the start".into()),
        Ok(_) => parse_go(line.trim())
            .map(instant_of_unix_ns)
            .ok_or_else(|| format!("expected `go <unix-ns>`, got {line:?}")),
        Err(e) => Err(format!("reading the start from stdin: {e}")),
    }
}

/// Child side: prints the `result` line.
pub fn child_report(outcome: &Result<LoadResult, String>) {
    let outcome = match outcome {
        Ok(r) => LoadOutcome::Ran(LoadReport::from(r)),
        Err(e) => LoadOutcome::Failed(e.clone()),
    };
    let json = serde_json::to_string(&outcome).unwrap_or_else(|e| format!("{{\"Failed\":\"encoding: {e}\"}}"));
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{RESULT} {json}").and_then(|()| out.flush());
}

/// Parses a `result <json>` line.
pub fn parse_result(line: &str) -> Option<LoadOutcome> {
    serde_json::from_str(line.strip_prefix(RESULT)?.trim()).ok()
}

/// Parent side: one load process.
#[derive(Debug)]
struct LoadChild {
    child: PipedChild,
    index: usize,
}

impl LoadChild {
    fn outcome(&mut self, line: &str) -> Option<Result<LoadResult, String>> {
        let index = self.index;
        Some(match parse_result(line)? {
            LoadOutcome::Ran(report) => report.into_result().map_err(|e| format!("load process {index}: {e}")),
            LoadOutcome::Failed(e) => Err(format!("load process {index}: {e}")),
        })
    }

    /// Waits for `ready` (or the child's early `result`, which is an error).
    fn wait_ready(&mut self, deadline: Instant) -> Result<(), String> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(line) = self.child.next_line(left) else {
                let why = format!("load process {}: not ready in time", self.index);
                return Err(self.child.failure(&why));
            };
            if line.trim() == READY {
                return Ok(());
            }
            if let Some(outcome) = self.outcome(&line) {
                return Err(outcome
                    .err()
                    .unwrap_or_else(|| format!("load process {}: ended before the start", self.index)));
            }
        }
    }

    fn result(&mut self, deadline: Instant) -> Result<LoadResult, String> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(line) = self.child.next_line(left) else {
                let why = format!("load process {}: no result in time", self.index);
                return Err(self.child.failure(&why));
            };
            if let Some(outcome) = self.outcome(&line) {
                return outcome;
            }
        }
    }
}

/// Parent side: the load processes of one run.
#[derive(Debug)]
pub struct LoadGroup {
    children: Vec<LoadChild>,
}

impl LoadGroup {
    /// Starts one process per command (`paste-bench load ... --control`).
    ///
    /// # Errors
    /// A process that could not be spawned (those already started are killed).
    pub fn start(commands: Vec<Command>) -> Result<LoadGroup, String> {
        let mut children = Vec::with_capacity(commands.len());
        for (index, command) in commands.into_iter().enumerate() {
            let child = PipedChild::spawn(command).map_err(|e| format!("starting load process {index}: {e}"))?;
            children.push(LoadChild { child, index });
        }
        Ok(LoadGroup { children })
    }

    /// Waits until every process has its connections up.
    ///
    /// # Errors
    /// The first process that failed or was not ready in `limit`.
    pub fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        self.children.iter_mut().try_for_each(|c| c.wait_ready(deadline))
    }

    /// Starts every process's window at `start`.
    ///
    /// # Errors
    /// A process that could not be told.
    pub fn go(&mut self, start: SystemTime) -> Result<(), String> {
        let line = format!("{GO} {}", unix_ns(start));
        for c in &mut self.children {
            if let Err(e) = c.child.send_line(&line) {
                let why = format!("load process {}: sending the start: {e}", c.index);
                return Err(c.child.failure(&why));
            }
        }
        Ok(())
    }

    /// Collects every process's figures (waiting until `deadline`) and merges them.
    ///
    /// # Errors
    /// The first process that failed or did not report in time.
    pub fn results(mut self, deadline: Instant) -> Result<LoadResult, String> {
        let mut parts = Vec::with_capacity(self.children.len());
        for c in &mut self.children {
            parts.push(c.result(deadline)?);
        }
        load_report::merge(parts).ok_or_else(|| "no load process ran".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_lines_carry_an_instant_in_unix_nanoseconds() {
        let later = SystemTime::now() + Duration::from_secs(60);
        let at = instant_of_unix_ns(parse_go(&format!("go {}", unix_ns(later))).unwrap());
        let ahead = at.saturating_duration_since(Instant::now());
        assert!(ahead > Duration::from_secs(50) && ahead <= Duration::from_secs(60), "{ahead:?}");
        assert!(instant_of_unix_ns(0) <= Instant::now());
        assert_eq!(parse_go("go x"), None);
        assert_eq!(parse_go("stats"), None);
    }

    #[test]
    fn result_lines_carry_figures_or_the_failure() {
        assert_eq!(
            parse_result(r#"result {"Failed":"connecting to 127.0.0.1:1: refused"}"#),
            Some(LoadOutcome::Failed("connecting to 127.0.0.1:1: refused".into()))
        );
        assert_eq!(parse_result("ready"), None);
        assert_eq!(parse_result("result {"), None);
    }
}
