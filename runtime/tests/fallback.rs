//! The most common complaint against io_uring runtimes, tested for real: when
//! io_uring is refused (here by a seccomp filter, as Docker's default profile does),
//! `auto` falls back to epoll and says why in one line, and an explicit `uring`
//! request fails with that reason. The filter is installed in a child process (this
//! test binary re-run with `PASTE_RT_SECCOMP_CHILD` set), never in the test runner.

use std::process::Command;

const CHILD_ENV: &str = "PASTE_RT_SECCOMP_CHILD";

/// Makes `io_uring_setup` fail with EPERM for this thread and the threads it
/// starts; every other system call is allowed.
fn forbid_io_uring() {
    let stmt = |code: u32, k: u32| libc::sock_filter { code: code as u16, jt: 0, jf: 0, k };
    let jump = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter { code: code as u16, jt, jf, k };
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    let mut filter = [
        // seccomp_data.arch (offset 4): only judge x86_64 system call numbers.
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 4),
        jump(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
        // seccomp_data.nr (offset 0).
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        jump(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, libc::SYS_io_uring_setup as u32, 0, 1),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_mut_ptr() };
    // SAFETY: prctl with PR_SET_NO_NEW_PRIVS takes integer arguments only; the
    // filter program outlives the PR_SET_SECCOMP call, which copies it.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0, "no_new_privs");
        assert_eq!(
            libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const libc::sock_fprog),
            0,
            "seccomp filter: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[test]
fn seccomp_child() {
    let Ok(choice) = std::env::var(CHILD_ENV) else { return };
    forbid_io_uring();
    if choice == "tests" {
        // What a test run sees: the backends `testing::backends` hands to tests.
        match std::panic::catch_unwind(|| paste_rt::testing::backends("seccomp_child")) {
            Ok(kinds) => println!("STARTED {kinds:?}"),
            Err(panic) => println!("REFUSED {}", panic.downcast_ref::<String>().cloned().unwrap_or_default()),
        }
        return;
    }
    match paste_rt::runtime::Builder::new().ignore_env().backend(&choice).build() {
        Ok(rt) => println!("STARTED {} | {}", rt.backend(), rt.selection()),
        Err(e) => println!("REFUSED {e}"),
    }
}

fn run_child(choice: &str) -> (String, String) {
    run_child_with(choice, &[])
}

fn run_child_with(choice: &str, env: &[(&str, &str)]) -> (String, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "seccomp_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, choice)
        .env_remove(paste_rt::testing::REQUIRE_ENV)
        .env_remove(paste_rt::testing::ONLY_ENV)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success(), "child failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let line = stdout
        .lines()
        .find_map(|l| l.find("STARTED").or_else(|| l.find("REFUSED")).map(|i| l[i..].to_string()))
        .unwrap_or_else(|| panic!("no result in {stdout:?}"));
    (line, String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn io_uring_refused_by_seccomp_falls_back_or_fails_clearly() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    // auto: falls back to epoll, and the one line says why uring was skipped.
    let (line, stderr) = run_child("auto");
    assert!(line.starts_with("STARTED epoll"), "{line}");
    assert!(line.contains("skipped uring") && line.contains("seccomp"), "{line}");
    assert!(stderr.contains("paste-rt: backend epoll (auto") && stderr.contains("EPERM"), "{stderr}");
    // uring asked for explicitly: an error with the reason, never a substitute.
    let (line, _) = run_child("uring");
    assert!(line.starts_with("REFUSED"), "{line}");
    assert!(line.contains("uring") && line.contains("seccomp") && line.contains("EPERM"), "{line}");
    // paste-emu runs on io_uring too: the same refusal.
    let (line, _) = run_child("paste-emu");
    assert!(line.starts_with("REFUSED"), "{line}");
}

#[test]
fn with_io_uring_refused_a_run_that_requires_it_fails_instead_of_testing_epoll_alone() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let (line, _) = run_child_with("tests", &[(paste_rt::testing::REQUIRE_ENV, "epoll,uring,paste-emu")]);
    assert!(line.starts_with("REFUSED"), "{line}");
    assert!(line.contains("required by PASTE_RT_TEST_REQUIRE but cannot start: paste-emu:"), "{line}");
    assert!(line.contains("uring: cannot start the uring backend") && line.contains("EPERM"), "{line}");
    // Without the requirement, the same machine tests what it has: epoll alone.
    let (line, _) = run_child_with("tests", &[]);
    assert_eq!(line, "STARTED [Epoll]");
}
