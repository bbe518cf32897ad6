//! End to end: `paste-bench ab` on two subjects, one short round, writes valid
//! results, a report and the charts.

use std::process::Command;

#[test]
fn ab_smoke_run_writes_results_report_and_charts() {
    let out = std::env::temp_dir().join(format!("paste-bench-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let run = Command::new(env!("CARGO_BIN_EXE_paste-bench"))
        .args(["ab", "--subjects", "paste-rt-epoll,tokio", "--conns", "2", "--duration", "0.3", "--rounds", "1"])
        .args(["--warmup", "0.2", "--out"])
        .arg(&out)
        .output()
        .expect("paste-bench runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "paste-bench ab failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("rpc · 2 connections"), "{stdout}");

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).expect("results.json")).unwrap();
    let records = json["records"].as_array().expect("records");
    let subjects: Vec<&str> = records.iter().map(|r| r["subject"].as_str().unwrap()).collect();
    assert_eq!(subjects, ["paste-rt-epoll", "tokio"]);
    for r in records {
        assert!(r["rps"].as_f64().unwrap() > 0.0, "{r}");
        assert_eq!(r["errors"].as_u64(), Some(0), "{r}");
        assert_eq!(r["workload"], "rpc");
        assert_eq!(r["conns"], 2);
    }
    let epoll = &records[0];
    assert!(epoll["syscalls_per_req"].as_f64().unwrap() > 0.0, "paste-rt reports its syscalls: {epoll}");
    assert!(records[1]["syscalls_per_req"].is_null(), "peers' syscalls are not measured");
    let backends = json["environment"]["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 4);
    assert!(backends.iter().any(|b| b["backend"] == "epoll" && b["started"] == true));
    assert!(json["environment"]["kernel"].as_str().unwrap().contains("Linux"));

    let report = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(report.contains("Noise rule"));
    assert!(report.contains("(emulated)"), "paste-emu is labelled in the backend table");
    for chart in ["rpc-throughput.svg", "rpc-p99.svg", "rpc-server-cpu.svg"] {
        let svg = std::fs::read_to_string(out.join(chart)).expect(chart);
        assert!(svg.starts_with("<svg") && svg.contains("tokio") && svg.contains("paste-rt-epoll"), "{chart}");
        assert!(report.contains(chart), "report.md references {chart}");
    }
    let _ = std::fs::remove_dir_all(&out);
}
