//! Finds valgrind, which the `callgrind` mode's tests run their servers under, so
//! that where it is missing those tests are reported by `cargo test` as
//! `ignored, <why>` rather than `ok`.
//!
//! Sets the cfg `valgrind` when `valgrind --version` runs, or when `CI` is set (then
//! the tests run and fail, saying what is missing). Reruns when `PATH` or `CI`
//! changes, and while valgrind is missing, when a `PATH` directory changes (it may
//! have been installed since).

use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(valgrind)");
    for var in ["CI", "PATH"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    println!("cargo::rerun-if-changed=build.rs");
    let ci = std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"));
    let found = Command::new("valgrind").arg("--version").output().is_ok_and(|out| out.status.success());
    if found || ci {
        println!("cargo::rustc-cfg=valgrind");
    }
    if !found {
        let dirs = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
        for dir in dirs.into_iter().filter(|d| d.is_dir()) {
            println!("cargo::rerun-if-changed={}", dir.display());
        }
    }
}
