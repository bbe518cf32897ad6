//! A thread-per-core group (`Builder::threads(n)`) starts on one backend or not at
//! all: thread 0 chooses (resolving `auto` once), every sibling starts exactly that
//! backend, and a sibling that cannot start makes `run` return the error at once —
//! never a hang, never a group on mixed backends (that siblings never run `auto`
//! themselves is tested beside `select::start_same`).
//!
//! Starting is made to fail on one thread only by leaving the process exactly the
//! file descriptors that one runtime needs (`RLIMIT_NOFILE`), in a child process
//! (this test binary re-run with `PASTE_RT_GROUP_CHILD` set) so that the lowered
//! limit cannot disturb other tests.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use paste_rt::runtime::Builder;
use paste_rt::BuildError;

const CHILD_ENV: &str = "PASTE_RT_GROUP_CHILD";

/// The open fd numbers of this process.
fn open_fds() -> Vec<i32> {
    let dir = std::fs::read_dir("/proc/self/fd").unwrap();
    let mut fds: Vec<i32> = dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    // The directory's own fd was open while it was read, and is closed now.
    fds.retain(|&fd| std::fs::metadata(format!("/proc/self/fd/{fd}")).is_ok());
    fds
}

/// Fds one runtime on `backend` holds once started.
fn fds_of_one_runtime(backend: &str) -> usize {
    let before = open_fds().len();
    let rt = Builder::new().ignore_env().backend(backend).quiet().build().unwrap();
    let used = open_fds().len() - before;
    drop(rt);
    used
}

/// Lowers `RLIMIT_NOFILE` so that exactly `free` fd numbers are left to open.
fn leave_free_fds(free: usize) {
    let open = open_fds();
    let limit = (0..).find(|&l| (0..l).filter(|fd| !open.contains(fd)).count() == free).unwrap() as u64;
    let rlimit = libc::rlimit { rlim_cur: limit, rlim_max: limit };
    // SAFETY: setrlimit reads a valid rlimit struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) }, 0);
}

/// The child: `<backends that must fit>` runtimes' worth of fds left, then a group
/// of two threads on `<choice>` whose body never ends. Prints how `run` ended.
#[test]
fn group_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else { return };
    let (choice, fit) = spec.split_once(':').unwrap();
    let free: usize = fit.split(',').map(fds_of_one_runtime).sum();
    leave_free_fds(free);
    let backends = Arc::new(Mutex::new(Vec::new()));
    let seen = backends.clone();
    let result = Builder::new().ignore_env().backend(choice).quiet().threads(2).run(move || {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(paste_rt::current_backend().unwrap());
            // Serve for ever, as a server would.
            std::future::pending::<()>().await
        }
    });
    match result {
        Ok(()) => unreachable!("the body never ends"),
        Err(e) => println!("ERROR {:?} | {e} | ran on {:?}", e.errno(), backends.lock().unwrap()),
    }
}

/// Runs the child; fails the test if it has not ended within 20 s (a hang).
fn run_child(spec: &str) -> String {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "group_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{spec}: the group did not return its start error within 20 s (it hangs)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    out.lines()
        .find_map(|l| l.find("ERROR").map(|i| l[i..].to_string()))
        .unwrap_or_else(|| panic!("{spec}: no result from the child: {out} {err}"))
}

#[test]
fn a_thread_that_cannot_start_fails_the_group_promptly() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    // Room for one epoll runtime: one of the two threads cannot start.
    let line = run_child("epoll:epoll");
    assert!(line.starts_with(&format!("ERROR Some({})", libc::EMFILE)), "{line}");
    assert!(line.contains("runtime thread 1: cannot start the epoll backend"), "{line}");
    // The body ran nowhere: the group starts whole or not at all.
    assert!(line.ends_with("ran on []"), "{line}");
}

#[test]
fn every_thread_of_a_group_reports_the_same_selection() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let out = Builder::new()
        .ignore_env()
        .backend("auto")
        .quiet()
        .threads(3)
        .run(move || {
            let record = record.clone();
            async move {
                let selection = paste_rt::runtime::current_selection().unwrap();
                record.lock().unwrap().push(selection.to_string());
                7
            }
        })
        .unwrap();
    assert_eq!(out, 7);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "{seen:?}");
    let kind = |line: &str| line.split(' ').nth(1).unwrap_or_default().to_string();
    assert!(seen.iter().all(|s| kind(s) == kind(&seen[0]) && s.contains("(auto")), "{seen:?}");
}

#[test]
fn an_unknown_backend_in_a_group_is_not_a_backend_error() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let e = Builder::new().ignore_env().backend("iouring").threads(2).run(|| async {}).unwrap_err();
    assert!(matches!(e, BuildError::UnknownBackend { .. }), "{e:?}");
}
