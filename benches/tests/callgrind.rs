//! The callgrind mode end to end (when valgrind is installed), its error when it
//! is not, and the counted load generator it drives servers with.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use paste_rt_bench::control::ServerChild;
use paste_rt_bench::exchange::LoadSpec;
use paste_rt_bench::loadgen::{self, CountedConfig};
use paste_rt_bench::workload::Workload;

const BIN: &str = env!("CARGO_BIN_EXE_paste-bench");

fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("paste-bench-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Fails the test when valgrind cannot run (the build script let it run anyway
/// because `CI` is set; elsewhere it is ignored, see `build.rs`).
fn assert_valgrind_installed() {
    let runs = Command::new("valgrind").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(runs, "valgrind is not installed (apt-get install valgrind): the callgrind mode cannot be tested");
}

/// `paste-bench callgrind` on `subject` (rpc, 2 connections, 50 + 200 + 400 requests,
/// `rounds` rounds) into `out`: it must succeed. Returns stdout, stderr and the
/// written `callgrind.json`.
fn run_callgrind(subject: &str, rounds: usize, out: &std::path::Path) -> (String, String, serde_json::Value) {
    let run = Command::new(BIN)
        .args(["callgrind", "--subjects", subject, "--requests", "200", "--warmup-requests", "50"])
        .args(["--conns", "2", "--rounds", &rounds.to_string(), "--out"])
        .arg(out)
        .output()
        .expect("paste-bench runs");
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "paste-bench callgrind failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    let doc = serde_json::from_str(&std::fs::read_to_string(out.join("callgrind.json")).expect("callgrind.json"))
        .expect("callgrind.json is JSON");
    (stdout, stderr, doc)
}

#[test]
#[cfg_attr(not(valgrind), ignore = "valgrind is not installed (apt-get install valgrind)")]
fn callgrind_mode_counts_positive_instructions_per_request() {
    assert_valgrind_installed();
    let out = temp_dir("callgrind-it");
    let (stdout, stderr, doc) = run_callgrind("paste-rt-epoll", 2, &out);
    assert!(stdout.contains("rpc · 2 connections"), "{stdout}");
    assert!(stderr.contains("ETA"), "an ETA is printed: {stderr}");

    let runs = doc["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1);
    let results = runs[0]["results"].as_array().expect("results");
    assert_eq!(results.len(), 2, "one result per round");
    let summary = runs[0]["summary"].as_array().expect("summary");
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0]["instructions_per_request"]["n"], 2, "{}", summary[0]);
    let r = &results[0];
    assert_eq!(r["subject"], "paste-rt-epoll");
    assert!(r["error"].is_null(), "{r}");
    assert_eq!((r["n1"].as_u64(), r["n2"].as_u64(), r["conns"].as_u64()), (Some(200), Some(400), Some(2)));
    let per_request = r["instructions_per_request"].as_f64().expect("a figure");
    assert!(per_request.is_finite() && per_request > 0.0, "{r}");
    let (n1, n2) = (r["ir_n1"].as_u64().unwrap(), r["ir_n2"].as_u64().unwrap());
    assert!(n2 > n1 && n1 > 0, "twice the requests cost more instructions: {r}");
    assert!(r["ir_startup"].as_u64().unwrap() > n1, "start-up (loading, runtime set-up) is in its own part: {r}");
    // epoll waits in epoll_wait: at least once per phase, and once per request at
    // most, plus the waits around the dump that ends the phase before (two in every
    // run seen: one connection gives 202 and 402 waits). A count of two waits per
    // request would be far above this bound.
    const WAITS_BESIDE_REQUESTS: u64 = 16;
    let waits: Vec<u64> = r["waits"].as_array().expect("wake-ups counted").iter().filter_map(|w| w.as_u64()).collect();
    assert_eq!(waits.len(), 2, "{r}");
    for (phase, (&counted, requests)) in waits.iter().zip([200, 400]).enumerate() {
        assert!(counted >= 1 && counted <= requests + WAITS_BESIDE_REQUESTS, "phase {phase}: {counted} waits: {r}");
    }
    let md = std::fs::read_to_string(out.join("callgrind.md")).expect("callgrind.md");
    assert!(md.contains("| 2 | paste-rt-epoll | "), "{md}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
#[cfg_attr(not(valgrind), ignore = "valgrind is not installed (apt-get install valgrind)")]
fn callgrind_mode_reports_paste_emus_emulated_kernel_apart() {
    assert_valgrind_installed();
    if !paste_rt::testing::backends("callgrind_emulated_kernel").contains(&paste_rt::BackendKind::PasteEmu) {
        println!("SKIPPED callgrind_mode_reports_paste_emus_emulated_kernel_apart: paste-emu cannot start here");
        return;
    }
    let out = temp_dir("callgrind-emu");
    let (stdout, _, doc) = run_callgrind("paste-rt-paste-emu", 1, &out);
    let r = &doc["runs"][0]["results"][0];
    assert!(r["error"].is_null(), "{r}");
    let total = r["instructions_per_request"].as_f64().expect("a figure");
    let kernel = r["emulated_kernel_per_request"].as_f64().expect("the emulated kernel's share");
    // The emulated kernel does real work per request (a receive and a send), and
    // the application side does too: neither share is empty.
    assert!(kernel > 50.0 && kernel < total - 50.0, "emulated kernel {kernel} of {total}: {r}");
    assert!(stdout.contains("are the emulated kernel"), "{stdout}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn callgrind_mode_names_the_package_when_valgrind_is_missing() {
    let empty = temp_dir("no-tools");
    std::fs::create_dir_all(&empty).unwrap();
    let run = Command::new(BIN)
        .args(["callgrind", "--subjects", "paste-rt-epoll", "--out"])
        .arg(empty.join("out"))
        .env("PATH", &empty)
        .output()
        .expect("paste-bench runs");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(stderr.contains("valgrind is not installed") && stderr.contains("apt-get install valgrind"), "{stderr}");
    assert!(!empty.join("out").exists(), "nothing is written before the tools are found");
    let _ = std::fs::remove_dir_all(&empty);
}

#[test]
fn counted_load_sends_exactly_each_phases_requests() {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--subject", "paste-rt-epoll", "--port", "0", "--control"]);
    let server = ServerChild::start(cmd, Duration::from_secs(10)).expect("server starts");
    let config = CountedConfig {
        addr: server.addr,
        spec: LoadSpec::new(Workload::Rpc),
        conns: 3,
        pipeline: 2,
        phases: vec![0, 7, 20],
        phase_limit: Duration::from_secs(10),
        core: None,
    };
    let mut between = vec![];
    let result = loadgen::run_counted(&config, |p| {
        between.push(p);
        Ok(())
    })
    .expect("every response valid");
    server.stop();
    let counts: Vec<u64> = result.phases.iter().map(|p| p.requests).collect();
    assert_eq!(counts, [0, 7, 20]);
    assert_eq!(between, [0, 1, 2], "the caller runs after every phase, in order");
}

#[test]
fn counted_load_stops_when_the_caller_fails_between_phases() {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--subject", "tokio", "--workload", "echo", "--port", "0", "--control"]);
    let server = ServerChild::start(cmd, Duration::from_secs(10)).expect("server starts");
    let config = CountedConfig {
        addr: server.addr,
        spec: LoadSpec::new(Workload::Echo),
        conns: 1,
        pipeline: 1,
        phases: vec![5, 5, 5],
        phase_limit: Duration::from_secs(10),
        core: None,
    };
    let mut calls = 0;
    let err = loadgen::run_counted(&config, |p| {
        calls += 1;
        if p == 1 {
            Err("dump refused".into())
        } else {
            Ok(())
        }
    })
    .expect_err("the run stops");
    server.stop();
    assert_eq!(calls, 2);
    assert!(err.to_string().contains("after phase 1: dump refused"), "{err}");
}
