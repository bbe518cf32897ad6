//! A real memcached client against kv: `tests/pymemcache_check.py` (the pymemcache
//! PyPI library) on every backend.
//!
//! Whether it can run is decided when the test is built (`examples/build.rs`): where
//! pymemcache cannot be imported, `cargo test` reports the test as `ignored` with
//! the reason — never `ok` — and under `CI` it runs anyway and fails, saying what is
//! missing. `scripts/test` installs pymemcache into a virtualenv under `target/`
//! and points `PASTE_RT_PYTHON` at it.

mod support;

use std::process::Command;

use paste_rt::net::TcpListener;
use paste_rt_examples::kv::{self, Config};
use support::off_thread;

/// The Python the build script found (or was told to use).
const PYTHON: &str = env!("PASTE_RT_TEST_PYTHON");

#[cfg_attr(
    not(real_client_pymemcache),
    ignore = "pymemcache cannot be imported: run scripts/test (it installs it), or set PASTE_RT_PYTHON to a Python that has it"
)]
#[paste_rt::test_each_backend]
async fn pymemcache_client_round_trips() {
    match Command::new(PYTHON).args(["-c", "import pymemcache"]).output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "pymemcache is required here (CI is set, or it was there when this test was built) but `{PYTHON} -c 'import \
             pymemcache'` failed: {} — run scripts/test, which installs it",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("pymemcache is required here but {PYTHON} cannot run: {e}"),
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _server = paste_rt::spawn(kv::serve(listener, Config::default()));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pymemcache_check.py");
    let out = off_thread(move || Command::new(PYTHON).arg(script).arg(port.to_string()).output()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pymemcache_check.py failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("pymemcache: all checks passed"), "{stdout}");
}
