//! Finds the real memcached clients the kv tests drive — the pymemcache Python
//! library and libmemcached's `memccapable` — so that a test whose client is
//! missing is reported by `cargo test` as `ignored, <why>` rather than `ok`.
//!
//! For each client it sets a cfg (`real_client_pymemcache`, `real_client_memccapable`)
//! when the client is there, or when `CI` is set (then the test runs and fails,
//! saying what is missing), and passes the program to run to the tests
//! (`PASTE_RT_TEST_PYTHON`, `PASTE_RT_TEST_MEMCCAPABLE`). The Python used is
//! `PASTE_RT_PYTHON` (`scripts/test` points it at the virtualenv it installs
//! pymemcache into) or `python3`. It reruns when those variables, `PATH` or the
//! places a client would be installed into change.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(real_client_pymemcache)");
    println!("cargo::rustc-check-cfg=cfg(real_client_memccapable)");
    for var in ["PASTE_RT_PYTHON", "CI", "PATH"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    println!("cargo::rerun-if-changed=build.rs");
    let ci = std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"));

    let python = std::env::var("PASTE_RT_PYTHON").unwrap_or_else(|_| "python3".to_string());
    println!("cargo::rustc-env=PASTE_RT_TEST_PYTHON={python}");
    let has_pymemcache =
        Command::new(&python).args(["-c", "import pymemcache"]).output().is_ok_and(|out| out.status.success());
    if has_pymemcache || ci {
        println!("cargo::rustc-cfg=real_client_pymemcache");
    }
    if !has_pymemcache {
        // Rerun once it may have been installed.
        for dir in python_site_dirs(&python) {
            println!("cargo::rerun-if-changed={}", dir.display());
        }
    }

    let memccapable = ["memccapable", "memcapable"].into_iter().find_map(on_path);
    match &memccapable {
        Some(path) => println!("cargo::rustc-env=PASTE_RT_TEST_MEMCCAPABLE={}", path.display()),
        None => {
            println!("cargo::rustc-env=PASTE_RT_TEST_MEMCCAPABLE=memccapable");
            for dir in path_dirs() {
                println!("cargo::rerun-if-changed={}", dir.display());
            }
        }
    }
    if memccapable.is_some() || ci {
        println!("cargo::rustc-cfg=real_client_memccapable");
    }
}

fn path_dirs() -> Vec<PathBuf> {
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).filter(|d| d.is_dir()).collect()).unwrap_or_default()
}

fn on_path(name: &str) -> Option<PathBuf> {
    path_dirs().into_iter().map(|d| d.join(name)).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Where `python` installs packages (that exist now).
fn python_site_dirs(python: &str) -> Vec<PathBuf> {
    let script = "import site\nfor d in site.getsitepackages() + [site.getusersitepackages()]: print(d)";
    let Ok(out) = Command::new(python).args(["-c", script]).output() else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout).lines().map(PathBuf::from).filter(|d| d.is_dir()).collect()
}
