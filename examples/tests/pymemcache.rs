//! A real memcached client against kv: `tests/pymemcache_check.py` (the pymemcache
//! PyPI library) on every backend. Without pymemcache the test fails when `CI` is
//! set (CI installs it) and is skipped, with a line saying so, otherwise.

mod support;

use std::process::Command;

use paste_rt::net::TcpListener;
use paste_rt_examples::kv::{self, Config};
use support::off_thread;

/// Whether `python3` can import pymemcache; the reason when it cannot.
fn pymemcache_available() -> Result<(), String> {
    match Command::new("python3").args(["-c", "import pymemcache"]).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!("`import pymemcache` failed: {}", String::from_utf8_lossy(&out.stderr).trim())),
        Err(e) => Err(format!("cannot run python3: {e}")),
    }
}

#[paste_rt::test_each_backend]
async fn pymemcache_client_round_trips() {
    if let Err(why) = pymemcache_available() {
        assert!(std::env::var_os("CI").is_none(), "CI must have pymemcache (pip install pymemcache): {why}");
        eprintln!("skipping pymemcache_client_round_trips: {why} (pip install pymemcache to run it)");
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _server = paste_rt::spawn(kv::serve(listener, Config::default()));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pymemcache_check.py");
    let out = off_thread(move || Command::new("python3").arg(script).arg(port.to_string()).output()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pymemcache_check.py failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("pymemcache: all checks passed"), "{stdout}");
}
