//! Several generator threads in one `paste-bench load` process (`--threads K`):
//! the connections split among them, one measured window for all, their figures
//! merged.
//!
//! Each thread runs its own paste-rt runtime ([`loadgen::run_scheduled`]), pinned
//! to its own core when cores are given. The window starts once every thread has
//! its connections up ([`StartTogether`]); a thread that fails before that releases
//! the others with its error instead of leaving them waiting. Owns the split and the
//! rendezvous; the load itself is [`loadgen`]'s, the merge [`load_report`]'s. It
//! never touches the server and never waits on a thread that has failed.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crate::load_report;
use crate::loadgen::{self, quota, LoadConfig, LoadResult};

/// Where the rendezvous stands.
#[derive(Debug)]
enum Meeting {
    /// Waiting for parties; the count arrived so far.
    Gathering(usize),
    /// The window starts then.
    Started(Instant),
    /// A party failed, or the start could not be decided.
    Failed(String),
}

/// Decides when the window starts, once every party has arrived.
type Decide = Box<dyn FnOnce() -> Result<Instant, String> + Send>;

/// Lets `parties` threads start their window together: the last to arrive
/// decides when (by calling `decide`), and every one gets that instant.
pub struct StartTogether {
    parties: usize,
    meeting: Mutex<Meeting>,
    changed: Condvar,
    decide: Mutex<Option<Decide>>,
}

impl std::fmt::Debug for StartTogether {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartTogether").field("parties", &self.parties).field("meeting", &self.meeting).finish()
    }
}

impl StartTogether {
    /// A rendezvous of `parties` threads; `decide` runs once, on the last thread to
    /// arrive, and returns when the window starts.
    pub fn new(parties: usize, decide: impl FnOnce() -> Result<Instant, String> + Send + 'static) -> StartTogether {
        StartTogether {
            parties: parties.max(1),
            meeting: Mutex::new(Meeting::Gathering(0)),
            changed: Condvar::new(),
            decide: Mutex::new(Some(Box::new(decide))),
        }
    }

    fn settle(&self, outcome: Meeting) {
        let mut m = self.meeting.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(*m, Meeting::Gathering(_)) {
            *m = outcome;
        }
        self.changed.notify_all();
    }

    /// Arrives and waits for the start (or for another party's failure).
    pub fn arrive(&self) -> Result<Instant, String> {
        let mut m = self.meeting.lock().unwrap_or_else(|e| e.into_inner());
        if let Meeting::Gathering(n) = &mut *m {
            *n += 1;
            if *n == self.parties {
                drop(m);
                let decide = self.decide.lock().unwrap_or_else(|e| e.into_inner()).take();
                let outcome = match decide {
                    Some(decide) => match decide() {
                        Ok(start) => Meeting::Started(start),
                        Err(e) => Meeting::Failed(e),
                    },
                    None => Meeting::Failed("the start was already decided".into()),
                };
                self.settle(outcome);
                m = self.meeting.lock().unwrap_or_else(|e| e.into_inner());
            }
        }
        loop {
            match &*m {
                Meeting::Started(start) => return Ok(*start),
                Meeting::Failed(why) => return Err(why.clone()),
                Meeting::Gathering(_) => m = self.changed.wait(m).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }

    /// A party failed before arriving: everyone waiting gets `why`.
    pub fn abandon(&self, why: String) {
        self.settle(Meeting::Failed(why));
    }
}

/// Runs `config`'s load on `threads` threads (never more than its connections),
/// thread `i` pinned to `cores[i % cores.len()]` when cores are given, with the
/// connections (active and idle) and the open-loop rate split among them. The
/// window starts when `decide` (run once every thread's connections are up) says.
///
/// # Errors
/// The first thread's error, saying which thread; a run with invalid responses is
/// not an error here (its errors are in the result).
pub fn run_threads(
    config: &LoadConfig,
    threads: usize,
    cores: &[usize],
    decide: impl FnOnce() -> Result<Instant, String> + Send + 'static,
) -> Result<LoadResult, String> {
    let threads = threads.clamp(1, config.conns.max(1));
    let together = Arc::new(StartTogether::new(threads, decide));
    let mut handles = Vec::with_capacity(threads);
    let mut first_conn = config.first_conn;
    for i in 0..threads {
        let mut part = config.clone();
        part.conns = quota(config.conns as u64, threads, i) as usize;
        part.idle_conns = quota(config.idle_conns as u64, threads, i) as usize;
        part.rate = config.rate.map(|r| r * part.conns as f64 / config.conns.max(1) as f64);
        part.first_conn = first_conn;
        first_conn += part.conns;
        if !cores.is_empty() {
            part.core = Some(cores[i % cores.len()]);
        }
        let meeting = together.clone();
        let spawned = std::thread::Builder::new().name(format!("paste-bench-load-{i}")).spawn(move || {
            let together = meeting;
            let arrived = std::cell::Cell::new(false);
            let result = loadgen::run_scheduled(&part, || {
                arrived.set(true);
                together.arrive()
            });
            if let Err(e) = &result {
                if !arrived.get() {
                    together.abandon(format!("load thread {i}: {e}"));
                }
            }
            result
        });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                together.abandon(format!("starting load thread {i}: {e}"));
                return Err(format!("starting load thread {i}: {e}"));
            }
        }
    }
    let mut parts = Vec::with_capacity(threads);
    let mut first_error = None;
    for (i, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(r)) => parts.push(r),
            Ok(Err(e)) => {
                first_error.get_or_insert_with(|| format!("load thread {i}: {e}"));
            }
            Err(_) => {
                first_error.get_or_insert_with(|| format!("load thread {i} panicked"));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    load_report::merge(parts).ok_or_else(|| "no load thread ran".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_party_gets_the_instant_the_last_one_decided() {
        let at = Instant::now() + Duration::from_millis(5);
        let together = Arc::new(StartTogether::new(3, move || Ok(at)));
        let waiting: Vec<_> = (0..3)
            .map(|_| {
                let t = together.clone();
                std::thread::spawn(move || t.arrive())
            })
            .collect();
        for w in waiting {
            assert_eq!(w.join().unwrap(), Ok(at));
        }
    }

    #[test]
    fn a_party_that_fails_releases_the_others_with_its_reason() {
        let together = Arc::new(StartTogether::new(3, || Ok(Instant::now())));
        let t = together.clone();
        let waiting = std::thread::spawn(move || t.arrive());
        together.abandon("load thread 2: connecting: refused".into());
        assert_eq!(waiting.join().unwrap(), Err("load thread 2: connecting: refused".into()));
        assert_eq!(together.arrive(), Err("load thread 2: connecting: refused".into()));
    }
}
