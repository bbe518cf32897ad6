//! libmemcached's protocol checker against kv, on every backend: `memccapable -a`
//! passes all 27 text-protocol checks, and `memccapable -b` fails every binary
//! check at once — kv answers a binary request with the binary "unknown command"
//! error and closes — instead of each one hanging until the tool's timeout.
//!
//! Whether it can run is decided when the test is built (`examples/build.rs`):
//! without `memccapable` (Debian: `apt-get install libmemcached-tools`, which
//! `scripts/test` does when it runs as root) `cargo test` reports it `ignored`
//! with the reason, and under `CI` it runs anyway and fails, saying so.

mod support;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use paste_rt::net::TcpListener;
use paste_rt_examples::kv::{self, Config};
use support::off_thread;

/// The checker the build script found.
const MEMCCAPABLE: &str = env!("PASTE_RT_TEST_MEMCCAPABLE");

/// Runs the checker against `port`; kills it and fails past `hang_guard` (a guard
/// against a hang, far above any normal run).
fn memccapable(port: u16, mode: &str, hang_guard: Duration) -> Output {
    let child = Command::new(MEMCCAPABLE)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), mode])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("memccapable is required here (CI is set, or it was there when this test was built): {e}")
        });
    let pid = child.id();
    let started = Instant::now();
    let guard = std::thread::spawn(move || {
        while started.elapsed() < hang_guard {
            std::thread::sleep(Duration::from_millis(50));
            // SAFETY: kill(2) with signal 0 only asks whether `pid` exists.
            if unsafe { libc::kill(pid as i32, 0) } != 0 {
                return false;
            }
        }
        // SAFETY: kill(2) of the child this test spawned and did not reap yet.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        true
    });
    let out = child.wait_with_output().unwrap();
    assert!(!guard.join().unwrap(), "memccapable {mode} still running after {hang_guard:?}: killed");
    out
}

#[cfg_attr(
    not(real_client_memccapable),
    ignore = "memccapable is not installed: apt-get install libmemcached-tools (scripts/test does it as root)"
)]
#[paste_rt::test_each_backend]
async fn memccapable_passes_every_text_check_and_fails_binary_ones_at_once() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _server = paste_rt::spawn(kv::serve(listener, Config::default()));

    let ascii = off_thread(move || memccapable(port, "-a", Duration::from_secs(120))).await;
    let report = format!("{}{}", String::from_utf8_lossy(&ascii.stdout), String::from_utf8_lossy(&ascii.stderr));
    assert!(ascii.status.success(), "memccapable -a failed:\n{report}");
    assert_eq!(report.matches("[pass]").count(), 27, "{report}");
    assert!(report.contains("All tests passed"), "{report}");

    let binary = off_thread(move || memccapable(port, "-b", Duration::from_secs(120))).await;
    let report = format!("{}{}", String::from_utf8_lossy(&binary.stdout), String::from_utf8_lossy(&binary.stderr));
    assert!(!binary.status.success(), "kv does not speak the binary protocol:\n{report}");
    assert!(report.contains("27 of 27 tests failed"), "{report}");
    // Failing fast: every binary check got its answer (an error, then the close)
    // rather than waiting for the tool's I/O timeout.
    assert!(!report.contains("timed out"), "a binary check waited for its timeout:\n{report}");
}
