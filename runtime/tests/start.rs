//! Starting a runtime, as a program and an operator see it: each backend's typed
//! settings reach the backend, the operator's environment wins over the program and
//! is documented, start errors name what is really wrong, and the selection is a
//! `tracing` event.
//!
//! What depends on the process environment runs in a child process (this test
//! binary re-run with `PASTE_RT_START_CHILD` set to a scenario) whose environment
//! the parent sets, so that other tests never see it.

use std::process::Command;

use paste_rt::config::{EmuSettings, EpollConfig, KernelConfig, UringConfig};
use paste_rt::runtime::Builder;
use paste_rt::BackendKind;

const CHILD_ENV: &str = "PASTE_RT_START_CHILD";

/// The child: runs one scenario and prints `RESULT <what happened>`.
#[test]
fn start_child() {
    let Ok(scenario) = std::env::var(CHILD_ENV) else { return };
    match scenario.as_str() {
        // What `#[paste_rt::main(backend = "epoll")]` expands to.
        "main" => Builder::new().backend("epoll").run_main(|| async { println!("RESULT ran") }),
        "main-bogus" => Builder::new().backend("bogus").run_main(|| async { println!("RESULT ran") }),
        "paste-config" => {
            let config = KernelConfig { ifname: "eth9".into(), device: "/dev/null".into(), ..KernelConfig::default() };
            match Builder::new().ignore_env().backend("paste").paste_config(config).build() {
                Ok(rt) => println!("RESULT started {}", rt.selection()),
                Err(e) => println!("RESULT {e}"),
            }
        }
        "tracing" => {
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::DEBUG)
                .with_ansi(false)
                .with_writer(std::io::stdout)
                .init();
            let rt = Builder::new().ignore_env().backend("auto").build().unwrap();
            println!("RESULT {}", rt.backend());
            // A reset and a graceful shutdown are events too.
            rt.block_on(async {
                let listener = paste_rt::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
                let (stream, _) = listener.accept().await.unwrap();
                socket2::SockRef::from(&peer).set_linger(Some(std::time::Duration::ZERO)).unwrap();
                drop(peer);
                assert!(stream.recv().await.is_err(), "a reset read as a clean end");
                paste_rt::runtime::request_shutdown();
                paste_rt::runtime::shutdown_requested().await;
            });
        }
        other => panic!("unknown scenario {other}"),
    }
}

/// Runs scenario `scenario` with `env` set (and no other `PASTE_RT_*` variable);
/// returns the child's `RESULT` line (or "none"), its stderr and whether it succeeded.
fn run_child(scenario: &str, env: &[(&str, &str)]) -> (String, String, bool) {
    let (result, _, stderr, ok) = run_child_full(scenario, env);
    (result, stderr, ok)
}

/// Runs scenario `scenario`; returns its `RESULT` line, whole stdout and stderr.
fn run_child_output(scenario: &str) -> (String, String, String) {
    let (result, stdout, stderr, _) = run_child_full(scenario, &[]);
    (result, stdout, stderr)
}

fn run_child_full(scenario: &str, env: &[(&str, &str)]) -> (String, String, String, bool) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args(["--exact", "start_child", "--nocapture", "--test-threads=1"]).env(CHILD_ENV, scenario);
    for var in paste_rt::overrides::ALL {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let result = stdout.lines().find_map(|l| l.find("RESULT ").map(|i| l[i + 7..].to_string()));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    (result.unwrap_or_else(|| "none".into()), stdout, stderr, out.status.success())
}

#[test]
fn an_unknown_backend_name_is_reported_as_such_not_as_a_backend_failure() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    for name in ["bogus", "iouring"] {
        let (result, stderr, ok) = run_child("main", &[("PASTE_RT_BACKEND", name)]);
        assert!(!ok && result == "none", "{name}: the body must not run: {result}");
        let expected = format!(
            "paste-rt: unknown backend \"{name}\" in PASTE_RT_BACKEND (expected one of: auto, paste, paste-emu, uring, epoll)"
        );
        assert!(stderr.contains(&expected), "{name}: {stderr}");
        assert!(!stderr.contains("cannot start"), "{name}: {stderr}");
    }
    let (_, stderr, ok) = run_child("main-bogus", &[]);
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("paste-rt: unknown backend \"bogus\" set by the program"), "{stderr}");
    // The operator's valid choice wins over the program's.
    let (result, _, ok) = run_child("main-bogus", &[("PASTE_RT_BACKEND", "epoll")]);
    assert!(ok && result == "ran", "{result}");
}

#[test]
fn the_kernel_paste_config_from_the_builder_reaches_the_backend() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    // The program's device (/dev/null) and NIC are used: REGISTER is refused there.
    let (result, _, _) = run_child("paste-config", &[]);
    assert!(
        result.contains("cannot start the paste backend")
            && result.contains("/dev/null is not a netmap control device"),
        "{result}"
    );
}

#[test]
fn the_operator_environment_wins_over_the_program_config() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let (result, _, _) = run_child("paste-config", &[("PASTE_RT_PASTE_DEVICE", "/nonexistent/netmap")]);
    assert!(result.contains("/nonexistent/netmap does not exist"), "{result}");
    let (result, _, _) = run_child("paste-config", &[("PASTE_RT_PASTE_SLOTS", "lots")]);
    assert_eq!(result, "PASTE_RT_PASTE_SLOTS=\"lots\" cannot be used: a number of slots per ring from 1 to 2048");
    let (result, _, _) = run_child("paste-config", &[("PASTE_RT_PASTE_SLOTS", "4096")]);
    assert!(result.contains("4096 slots: PASTE allows 1..=64 rings of 1..=2048 slots"), "{result}");
}

#[test]
fn builder_settings_reach_each_backend() {
    let epoll = Builder::new()
        .ignore_env()
        .backend("epoll")
        .buffers(512)
        .epoll_config(EpollConfig { read_budget: 5, ..EpollConfig::default() })
        .build()
        .unwrap();
    let detail = &epoll.selection().detail;
    // The typed setting arrived, and the builder's pool was applied on top.
    assert!(detail.contains("read budget 5") && detail.contains("512 buffers"), "{detail}");
    for kind in paste_rt::testing::backends("builder_settings_reach_each_backend") {
        let builder = Builder::new().ignore_env().backend(kind.name()).buffers(512);
        let (builder, expected) = match kind {
            BackendKind::Uring => {
                (builder.uring_config(UringConfig { send_batch: 3, ..UringConfig::default() }), "send batch 3")
            }
            BackendKind::PasteEmu => {
                let emu = EmuSettings { slots: 256, ..EmuSettings::new(Default::default()) };
                (builder.paste_emu_config(emu), "rings of 256 slots")
            }
            _ => continue,
        };
        let rt = builder.build().unwrap();
        assert!(rt.selection().detail.contains(expected), "{kind}: {}", rt.selection().detail);
        let capacity = rt.block_on(async { paste_rt::runtime::pool().capacity() });
        assert_eq!(capacity, 512, "{kind}: the builder's pool applies on top");
    }
}

#[test]
fn every_override_is_documented_in_one_place() {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md"))
        .expect("docs/configuration.md lists the environment variables");
    for var in paste_rt::overrides::ALL.into_iter().chain([paste_rt::testing::REQUIRE_ENV, paste_rt::testing::ONLY_ENV])
    {
        assert!(page.contains(&format!("`{var}`")), "docs/configuration.md does not document {var}");
    }
}

#[test]
fn the_selection_is_a_tracing_event() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    // In a child: a process-wide subscriber, and no other test racing the callsites.
    let (kind, stdout, stderr) = run_child_output("tracing");
    let line = stdout
        .lines()
        .find(|l| l.contains("INFO") && l.contains("paste_rt::select"))
        .unwrap_or_else(|| panic!("no selection event in {stdout}"));
    assert!(line.contains(&format!("backend={kind}")) && line.contains("choice=auto"), "{line}");
    // Kernel PASTE is tried first by `auto`; where it is missing, the skip is an event too.
    if kind != "paste" {
        let skipped = |l: &&str| l.contains("DEBUG") && l.contains("backend skipped") && l.contains("backend=paste");
        assert!(stdout.lines().any(|l| skipped(&l)), "{stdout}");
    }
    let reset = |l: &&str| l.contains("paste_rt::io") && l.contains("receive failed") && l.contains("reset=true");
    assert!(stdout.lines().any(|l| reset(&l)), "no reset event in {stdout}");
    let shutdown = |l: &&str| l.contains("paste_rt::shutdown") && l.contains("graceful shutdown requested");
    assert!(stdout.lines().any(|l| shutdown(&l)), "no shutdown event in {stdout}");
    // With a subscriber installed, the stderr fallback stays silent.
    assert!(!stderr.contains("paste-rt: backend"), "{stderr}");
}
