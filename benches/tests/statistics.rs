//! The A/B statistics: medians, min–max ranges, ratios and the noise rule.

use paste_rt_bench::record::{summarize, Record};
use paste_rt_bench::statistics::{compare, median, Spread, Verdict};

fn record(subject: &str, conns: usize, round: usize, rps: f64, cpu: f64, errors: u64) -> Record {
    Record {
        subject: subject.into(),
        label: subject.into(),
        emulated: false,
        workload: "rpc".into(),
        conns,
        round,
        requests: rps as u64,
        rps,
        p50_us: 10.0,
        p99_us: 20.0,
        p999_us: 30.0,
        server_cpu_us_per_req: cpu,
        client_cpu_us_per_req: 1.0,
        syscalls_per_req: None,
        mean_rx_batch: None,
        allocs_per_req: Some(0.0),
        rss_kb: Some(4096),
        mem_per_conn_kb: None,
        errors,
        error_messages: vec![],
        client: "builtin".into(),
        server_pinning: "ok".into(),
        client_pinning: "ok".into(),
    }
}

#[test]
fn medians_and_ranges() {
    assert_eq!(median(&[5.0, 1.0, 9.0, 3.0, 7.0]), 5.0);
    assert_eq!(median(&[1.0, 2.0]), 1.5);
    let s = Spread::of(&[2.0, 9.0, 4.0]).unwrap();
    assert_eq!((s.median, s.min, s.max, s.n), (4.0, 2.0, 9.0, 3));
}

#[test]
fn the_noise_rule() {
    let base = Spread::of(&[100.0, 104.0, 102.0]).unwrap();
    let touching = Spread::of(&[104.0, 110.0, 108.0]).unwrap();
    let apart = Spread::of(&[105.0, 110.0, 108.0]).unwrap();
    assert_eq!(compare(&touching, &base).unwrap().verdict, Verdict::WithinNoise);
    assert_eq!(compare(&apart, &base).unwrap().verdict, Verdict::Significant);
    assert_eq!(compare(&base, &apart).unwrap().verdict, Verdict::Significant);
    assert!((compare(&apart, &base).unwrap().ratio - 108.0 / 102.0).abs() < 1e-12);
}

#[test]
fn summaries_compare_with_the_baseline_per_concurrency_and_drop_invalid_rounds() {
    let records = vec![
        record("tokio", 10, 0, 100.0, 10.0, 0),
        record("paste-rt-uring", 10, 0, 130.0, 9.9, 0),
        record("tokio", 10, 1, 110.0, 10.0, 0),
        record("paste-rt-uring", 10, 1, 140.0, 10.1, 0),
        record("tokio", 10, 2, 105.0, 10.0, 0),
        record("paste-rt-uring", 10, 2, 999.0, 1.0, 3),
        record("tokio", 1, 0, 50.0, 20.0, 0),
    ];
    let summary = summarize(&records, "tokio");
    assert_eq!(summary.len(), 3);
    let uring = summary.iter().find(|s| s.subject == "paste-rt-uring").unwrap();
    let rps = uring.rps.unwrap();
    assert_eq!((rps.n, rps.median, rps.min, rps.max), (2, 135.0, 130.0, 140.0), "the invalid round is left out");
    assert_eq!(uring.errors, 3);
    let vs = uring.rps_vs_baseline.unwrap();
    assert_eq!(vs.verdict, Verdict::Significant);
    assert!((vs.ratio - 135.0 / 105.0).abs() < 1e-12);
    assert_eq!(uring.cpu_vs_baseline.unwrap().verdict, Verdict::WithinNoise, "9.9–10.1 overlaps 10.0");
    let tokio1 = summary.iter().find(|s| s.subject == "tokio" && s.conns == 1).unwrap();
    assert_eq!(tokio1.rps_vs_baseline.unwrap().verdict, Verdict::TooFewRounds);
}
