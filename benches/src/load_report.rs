//! A load generator's figures as they cross a process boundary, and the merge of
//! several generators' figures into one.
//!
//! A [`LoadReport`] is a [`LoadResult`] in JSON: its latency histogram travels as
//! (value, count) pairs of the recorded buckets, which rebuild the same histogram
//! exactly. [`merge`] adds the parts of one run: requests, errors and CPU time are
//! summed, and the latency histograms are added bucket by bucket (HdrHistogram
//! `add`), so the merged quantiles are those of every response of the run, never
//! an average of per-process quantiles.
//!
//! Plain data and arithmetic: it never measures or runs anything.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::loadgen::{latency_histogram, LoadResult};

/// Error messages kept in a merged result.
const KEPT_MESSAGES: usize = 10;

/// A [`LoadResult`] as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// Valid responses inside the window.
    pub requests: u64,
    /// Errors.
    pub errors: u64,
    /// The first errors, readable.
    pub messages: Vec<String>,
    /// The latency histogram (ns): (highest equivalent value, count) per recorded bucket.
    pub latency_ns: Vec<(u64, u64)>,
    /// The generator's CPU time over the window, ns.
    pub cpu_ns: u64,
    /// The window's length, ns.
    pub window_ns: u64,
    /// The paste-rt backend the generator ran on.
    pub backend: String,
    /// `ok` when pinned, else why not.
    pub pinned: String,
}

impl From<&LoadResult> for LoadReport {
    fn from(r: &LoadResult) -> LoadReport {
        LoadReport {
            requests: r.requests,
            errors: r.errors,
            messages: r.messages.clone(),
            latency_ns: r.latency.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect(),
            cpu_ns: r.cpu.as_nanos() as u64,
            window_ns: r.window.as_nanos() as u64,
            backend: r.backend.clone(),
            pinned: match &r.pinned {
                Ok(()) => "ok".into(),
                Err(e) => e.clone(),
            },
        }
    }
}

impl LoadReport {
    /// The result it carries.
    ///
    /// # Errors
    /// A latency value outside the histogram's range (a corrupt report).
    pub fn into_result(self) -> Result<LoadResult, String> {
        let mut latency = latency_histogram();
        for (value, count) in &self.latency_ns {
            latency.record_n(*value, *count).map_err(|e| format!("latency value {value} ns: {e:?}"))?;
        }
        Ok(LoadResult {
            requests: self.requests,
            errors: self.errors,
            messages: self.messages,
            latency,
            cpu: Duration::from_nanos(self.cpu_ns),
            window: Duration::from_nanos(self.window_ns),
            backend: self.backend,
            pinned: if self.pinned == "ok" { Ok(()) } else { Err(self.pinned) },
        })
    }
}

/// Merges the results of the generators of one run (processes or threads); the
/// window is the longest part's. `None` for no parts.
pub fn merge(parts: Vec<LoadResult>) -> Option<LoadResult> {
    let mut parts = parts.into_iter().enumerate();
    let (_, mut merged) = parts.next()?;
    let mut latency: Histogram<u64> = latency_histogram();
    let _ = latency.add(&merged.latency);
    let mut pin_failures: Vec<String> =
        merged.pinned.as_ref().err().map(|e| format!("load 0: {e}")).into_iter().collect();
    for (i, part) in parts {
        merged.requests += part.requests;
        merged.errors += part.errors;
        for m in part.messages {
            if merged.messages.len() < KEPT_MESSAGES {
                merged.messages.push(m);
            }
        }
        // Same bounds on both sides: adding never fails; saturate if it ever could.
        if latency.add(&part.latency).is_err() {
            for v in part.latency.iter_recorded() {
                latency.saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
        merged.cpu += part.cpu;
        merged.window = merged.window.max(part.window);
        if !merged.backend.split('+').any(|b| b == part.backend) {
            merged.backend = format!("{}+{}", merged.backend, part.backend);
        }
        if let Err(e) = part.pinned {
            pin_failures.push(format!("load {i}: {e}"));
        }
    }
    merged.latency = latency;
    merged.pinned = if pin_failures.is_empty() { Ok(()) } else { Err(pin_failures.join("; ")) };
    Some(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(latencies_ns: &[u64], cpu_ms: u64) -> LoadResult {
        let mut latency = latency_histogram();
        for &l in latencies_ns {
            latency.record(l).unwrap();
        }
        LoadResult {
            requests: latencies_ns.len() as u64,
            errors: 0,
            messages: vec![],
            latency,
            cpu: Duration::from_millis(cpu_ms),
            window: Duration::from_secs(2),
            backend: "uring".into(),
            pinned: Ok(()),
        }
    }

    #[test]
    fn merged_histograms_hold_every_sample_not_an_average_of_quantiles() {
        // A fast generator and a slow one: averaging their p99s would give ~5 ms;
        // the merged p99 is the slow process's tail, as in one histogram of all.
        let fast: Vec<u64> = (0..9_900).map(|i| 10_000 + i).collect();
        let slow: Vec<u64> = (0..100).map(|i| 10_000_000 + i * 1000).collect();
        let merged = merge(vec![result(&fast, 100), result(&slow, 50)]).unwrap();
        let all = result(&[fast.clone(), slow.clone()].concat(), 0);
        assert_eq!(merged.requests, 10_000);
        assert_eq!(merged.latency.len(), 10_000);
        for q in [0.5, 0.99, 0.999, 1.0] {
            assert_eq!(merged.latency.value_at_quantile(q), all.latency.value_at_quantile(q), "q={q}");
        }
        assert!(merged.latency_us(0.999) > 9_000.0, "the slow tail survives: {}", merged.latency_us(0.999));
        assert_eq!(merged.cpu, Duration::from_millis(150));
        assert_eq!(merged.backend, "uring");
        assert!(merged.pinned.is_ok());
    }

    #[test]
    fn a_report_rebuilds_the_same_histogram_after_json() {
        let original = result(&[1, 2, 3, 1_000, 65_000, 65_001, 9_000_000, 3_000_000_000], 7);
        let text = serde_json::to_string(&LoadReport::from(&original)).unwrap();
        let back = serde_json::from_str::<LoadReport>(&text).unwrap().into_result().unwrap();
        assert_eq!(back.requests, original.requests);
        assert_eq!(back.latency.len(), original.latency.len());
        for q in [0.0, 0.25, 0.5, 0.75, 0.9, 1.0] {
            assert_eq!(back.latency.value_at_quantile(q), original.latency.value_at_quantile(q), "q={q}");
        }
        assert_eq!(back.cpu, original.cpu);
        assert_eq!(back.window, original.window);
    }

    #[test]
    fn errors_and_pinning_failures_of_any_part_survive_the_merge() {
        let mut bad = result(&[5_000], 1);
        bad.errors = 2;
        bad.messages = vec!["connection 3: invalid response".into()];
        bad.pinned = Err("sched_setaffinity to core 9: Invalid argument".into());
        bad.backend = "epoll".into();
        let merged = merge(vec![result(&[4_000], 1), bad]).unwrap();
        assert_eq!(merged.errors, 2);
        assert_eq!(merged.messages, ["connection 3: invalid response"]);
        assert_eq!(merged.pinned, Err("load 1: sched_setaffinity to core 9: Invalid argument".into()));
        assert_eq!(merged.backend, "uring+epoll");
        assert!(merge(vec![]).is_none());
    }
}
