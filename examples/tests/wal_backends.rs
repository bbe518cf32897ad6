//! A zero-copy WAL written on one backend is recovered on every other: the `wal`
//! binary is killed (SIGKILL) and restarted on the next backend, round the ring of
//! backends that start here and back to the first, and every acknowledged body
//! comes back intact at each stop — including bodies larger than one buffer and
//! ones written after a migration. Only what really differs is refused (another
//! `--capacity`), with an error naming the log's path. And `--backend` wins over
//! `PASTE_RT_BACKEND`.

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use paste_rt::BackendKind;
use support::process::{start, Server};

const WAL: &str = env!("CARGO_BIN_EXE_wal");

fn wal(dir: &Path, backend: &str) -> Server {
    start(WAL, &["--capacity", "256", "--dir", dir.to_str().unwrap()], backend)
}

/// One request on a fresh connection: (status line, body).
fn request(port: u16, req: &[u8]) -> (String, Vec<u8>) {
    let mut s = support::connect(([127, 0, 0, 1], port).into());
    s.write_all(req).unwrap();
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = read_some(&mut s, &mut buf);
        assert!(n > 0, "connection closed before a response head");
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_string();
    let len: usize =
        head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).map_or(0, |v| v.trim().parse().unwrap());
    while data.len() < head_end + len {
        let n = read_some(&mut s, &mut buf);
        assert!(n > 0, "connection closed inside a body");
        data.extend_from_slice(&buf[..n]);
    }
    (head.lines().next().unwrap_or("").to_string(), data[head_end..head_end + len].to_vec())
}

/// One `read`, retried when a signal interrupts it.
fn read_some(s: &mut std::net::TcpStream, buf: &mut [u8]) -> usize {
    loop {
        match s.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other.unwrap(),
        }
    }
}

fn post(port: u16, body: &[u8]) {
    let mut req = format!("POST /log HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    req.extend_from_slice(body);
    let (status, _) = request(port, &req);
    assert!(status.contains("200"), "POST answered {status:?}");
}

fn body(n: usize) -> Vec<u8> {
    // Every fifth spans two pool buffers.
    let len = if n % 5 == 0 { 3000 } else { 100 + n };
    format!("record-{n}|").bytes().cycle().take(len).collect()
}

/// Checks that `bodies[i]` is record `i + 1`, and the stats line says so.
fn check_all(server: &Server, bodies: &[Vec<u8>], hop: &str) {
    for (i, expected) in bodies.iter().enumerate() {
        let (status, got) = request(server.port, format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", i + 1).as_bytes());
        assert!(status.contains("200"), "{hop}: record {} answered {status:?}", i + 1);
        assert!(got == *expected, "{hop}: record {} differs", i + 1);
    }
    let (_, stats) = request(server.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let stats = String::from_utf8(stats).unwrap();
    assert!(stats.starts_with(&format!("last={} ", bodies.len())), "{hop}: {stats}");
}

#[paste_rt::test_each_backend]
async fn a_zero_copy_log_written_on_one_backend_is_recovered_on_every_other() {
    let first = paste_rt::current_backend().unwrap();
    // Through the test helper: a backend named in PASTE_RT_TEST_REQUIRE that cannot
    // start fails this test rather than shrinking the ring.
    let mut ring: Vec<BackendKind> =
        paste_rt::testing::backends("a_zero_copy_log_written_on_one_backend_is_recovered_on_every_other")
            .into_iter()
            .filter(|&k| k != first)
            .collect();
    ring.push(first);
    let dir = tempfile::tempdir().unwrap();
    let mut bodies = Vec::new();
    let mut server = wal(dir.path(), first.name());
    for n in 0..12 {
        bodies.push(body(n));
        post(server.port, bodies.last().unwrap());
    }
    let mut from = first;
    for to in ring {
        drop(server); // SIGKILL: a crash, not a clean stop
                      // What a crash in the middle of a migration or a probe leaves behind is
                      // ignored and removed at the next start.
        for leftover in ["wal.log.migrating", "pool.probe", "pool.99"] {
            std::fs::write(dir.path().join(leftover), b"left behind by a crash").unwrap();
        }
        let hop = format!("{from} -> {to}");
        server = wal(dir.path(), to.name());
        check_all(&server, &bodies, &hop);
        // Records written after the move survive the next one too.
        for _ in 0..3 {
            bodies.push(body(bodies.len()));
            post(server.port, bodies.last().unwrap());
        }
        check_all(&server, &bodies, &hop);
        from = to;
    }
    drop(server);
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names.iter().filter(|n| n.starts_with("pool")).count(), 1, "one pool file left: {names:?}");
}

#[test]
fn only_what_really_differs_is_refused_and_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let server = wal(dir.path(), "epoll");
    post(server.port, b"kept");
    drop(server);
    let out = Command::new(WAL)
        .args(["--port", "0", "--bind", "127.0.0.1", "--backend", "epoll", "--capacity", "512", "--dir"])
        .arg(dir.path())
        .env_remove("PASTE_RT_BACKEND")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("another mode or capacity") && err.contains(&dir.path().join("wal.log").display().to_string()),
        "{err}"
    );

    // A --dir that cannot be a directory: the error names it.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let out = Command::new(WAL).args(["--port", "0", "--backend", "epoll", "--dir"]).arg(&file).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&file.display().to_string()), "{err}");
}

#[test]
fn the_backend_flag_wins_over_the_environment_and_the_environment_over_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let line = |args: &[&str], env: Option<&str>| {
        let mut cmd = Command::new(WAL);
        cmd.args(["--port", "0", "--bind", "127.0.0.1", "--copy", "--dir"]).arg(dir.path()).args(args);
        match env {
            Some(v) => cmd.env("PASTE_RT_BACKEND", v),
            None => cmd.env_remove("PASTE_RT_BACKEND"),
        };
        let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        line
    };
    assert!(line(&["--backend", "epoll"], Some("bogus")).contains("backend epoll"), "the flag wins");
    assert!(line(&[], Some("epoll")).contains("backend epoll"), "the environment is the default");
}
