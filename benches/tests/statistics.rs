//! The A/B statistics: medians, min–max ranges, ratios and the noise rule, per
//! server-core count; and the warning of a busy machine.

use paste_rt_bench::record::{summarize, Record};
use paste_rt_bench::statistics::{compare, median, Spread, Verdict};

fn record(subject: &str, conns: usize, round: usize, rps: f64, cpu: f64, errors: u64) -> Record {
    Record {
        subject: subject.into(),
        label: subject.into(),
        emulated: false,
        workload: "rpc".into(),
        conns,
        server_cores: 1,
        server_core_list: vec![0],
        client_core_list: vec![1],
        round,
        requests: rps as u64,
        rps,
        p50_us: 10.0,
        p99_us: 20.0,
        p999_us: 30.0,
        server_cpu_us_per_req: cpu,
        client_cpu_us_per_req: 1.0,
        syscalls_per_req: Some(2.0),
        runtime_syscalls_per_req: None,
        syscalls_note: None,
        mean_rx_batch: None,
        allocs_per_req: Some(0.0),
        rss_kb: Some(4096),
        mem_per_conn_kb: None,
        errors,
        error_messages: vec![],
        client: "builtin".into(),
        server_pinning: "ok".into(),
        client_pinning: "ok".into(),
        load_avg_before: Some(0.5),
        load_avg_after: Some(1.5),
        steal_pct: Some(0.0),
        cpu_model: "test CPU".into(),
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

fn on_cores(mut r: Record, server_cores: usize, client_cores: usize) -> Record {
    r.server_cores = server_cores;
    r.server_core_list = (0..server_cores).collect();
    r.client_core_list = (server_cores..server_cores + client_cores).collect();
    r
}

#[test]
fn summaries_keep_core_counts_apart_and_compare_at_equal_cores() {
    let records = vec![
        record("tokio-mt", 100, 0, 100.0, 5.0, 0),
        record("paste-rt-uring", 100, 0, 90.0, 5.0, 0),
        on_cores(record("tokio-mt", 100, 0, 400.0, 5.0, 0), 4, 12),
        on_cores(record("paste-rt-uring", 100, 0, 440.0, 5.0, 0), 4, 12),
    ];
    let summary = summarize(&records, "tokio-mt");
    assert_eq!(summary.len(), 4, "one summary per subject and core count");
    let at = |subject: &str, cores: usize| {
        summary.iter().find(|s| s.subject == subject && s.server_cores == cores).expect("summary")
    };
    assert!((at("paste-rt-uring", 1).rps_vs_baseline.unwrap().ratio - 0.9).abs() < 1e-12);
    assert!(
        (at("paste-rt-uring", 4).rps_vs_baseline.unwrap().ratio - 1.1).abs() < 1e-12,
        "against tokio-mt at 4 cores"
    );
    assert_eq!(at("paste-rt-uring", 4).syscalls_per_req.unwrap().median, 2.0);
}

#[test]
fn the_report_warns_when_the_load_exceeds_the_cores_in_use_or_steal_is_high() {
    let quiet = record("tokio", 10, 0, 100.0, 5.0, 0);
    assert!(paste_rt_bench::report::busy_warnings(std::slice::from_ref(&quiet)).is_empty(), "load 1.5 on 2 cores");
    let mut busy = quiet.clone();
    busy.load_avg_after = Some(6.01);
    let mut stolen = quiet.clone();
    stolen.steal_pct = Some(12.5);
    let big = on_cores(record("tokio", 10, 0, 100.0, 5.0, 0), 4, 12);
    let warnings = paste_rt_bench::report::busy_warnings(&[quiet, busy, stolen, big]);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].contains("1 of 4 runs") && warnings[0].contains("6.01") && warnings[0].contains("2 cores"),
        "{}",
        warnings[0]
    );
    assert!(warnings[1].contains("12.5 %"), "{}", warnings[1]);
}

#[test]
fn the_server_bound_note_says_how_much_of_the_allowed_cpu_each_cell_used() {
    use paste_rt_bench::report::{allowed_cpu_used, server_bound_note};
    // Held to half a core: 100 000 requests/s at 4.8 µs each use 0.48 of a core,
    // 96 % of what was allowed; 50 000 at 4.8 µs use 48 %: the load set that rate.
    let records = vec![record("tokio", 10, 0, 100_000.0, 4.8, 0), record("paste-rt-uring", 10, 0, 50_000.0, 4.8, 0)];
    let summary = summarize(&records, "tokio");
    let tokio = summary.iter().find(|s| s.subject == "tokio").unwrap();
    assert!((allowed_cpu_used(tokio, 0.5).unwrap() - 0.96).abs() < 1e-9);
    let note = server_bound_note(&summary, 0.5);
    assert!(note.contains("held to 50 %") && note.contains("used 48–96 %"), "{note}");
    assert!(note.contains("not server-bound") && note.contains("paste-rt-uring rpc c=10 (48 %)"), "{note}");
    assert!(!note.contains("tokio rpc c=10"), "a saturated cell is not listed: {note}");
}
