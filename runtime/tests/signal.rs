//! `signal::ctrl_c` and `signal::terminate`: a child process (this test binary
//! re-run with `PASTE_RT_SIGNAL_CHILD=<backend>:<signal>`) waits for the signal in
//! a task on an otherwise idle runtime, prints a line when it arrives and exits 0.
//! The parent sends the real signal with `kill`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "PASTE_RT_SIGNAL_CHILD";

/// The child: three waiters for the signal — one in a task, one in the main
/// future, and one moved to a thread running a tokio runtime (the future is `Send`
/// and executor-agnostic) — all must complete on one delivery.
#[test]
fn signal_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else { return };
    let (backend, which) = spec.split_once(':').unwrap();
    let rt = paste_rt::runtime::Builder::new().ignore_env().backend(backend).build().unwrap();
    rt.block_on(async {
        let wait = || if which == "int" { paste_rt::signal::ctrl_c() } else { paste_rt::signal::terminate() };
        let (in_task, in_main, on_tokio) = (wait(), wait(), wait());
        let task = paste_rt::spawn(in_task);
        let tokio_thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(on_tokio)
        });
        println!("ready");
        in_main.await.unwrap();
        task.await.unwrap().unwrap();
        tokio_thread.join().unwrap().unwrap();
        println!("got {which}");
    });
}

fn run_child(backend: &str, which: &str, signal: libc::c_int) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "signal_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{backend}:{which}"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let guard = KillOnDrop(&mut child);
    let mut out = BufReader::new(guard.0.stdout.take().unwrap());
    let mut seen = String::new();
    let mut line = String::new();
    while !line.contains("ready") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "child ended before it was ready: {seen}");
        seen.push_str(&line);
    }
    let pid = guard.0.id() as libc::pid_t;
    // SAFETY: kill with a valid signal number on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = guard.wait(Duration::from_secs(10));
    assert!(status.success(), "child on {backend} exited {status:?}: {seen}{rest}");
    assert!(rest.contains(&format!("got {which}")), "child on {backend} never saw the signal: {rest}");
}

/// Kills the child if the test fails before it exits.
struct KillOnDrop<'a>(&'a mut Child);

impl KillOnDrop<'_> {
    fn wait(self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "child still running after {limit:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[paste_rt::test_each_backend]
async fn ctrl_c_completes_on_sigint() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    run_child(paste_rt::current_backend().unwrap().name(), "int", libc::SIGINT);
}

#[paste_rt::test_each_backend]
async fn terminate_completes_on_sigterm() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    run_child(paste_rt::current_backend().unwrap().name(), "term", libc::SIGTERM);
}
