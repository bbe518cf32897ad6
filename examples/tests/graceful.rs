//! Every example server shuts down gracefully on Ctrl-C (SIGINT): it stops
//! accepting, answers the request in hand (even one half received when the signal
//! came), closes idle connections, and exits with status 0.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use paste_rt::BackendKind;

fn start(bin: &str, args: &[&str], backend: &str) -> (Child, u16) {
    let mut child = Command::new(bin)
        .args(args)
        .args(["--backend", backend])
        .env_remove("PASTE_RT_BACKEND")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line
        .split_once("listening on ")
        .and_then(|(_, rest)| rest.split([',', ' ']).next())
        .and_then(|addr| addr.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{bin}: no address in {line:?}"));
    (child, port)
}

fn interrupt(child: &Child) {
    // SAFETY: kill(2) with a pid this test spawned and a valid signal number.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
}

fn wait_exit(mut child: Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{what}: exited with {status}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what}: still running 15 s after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn read_to_eof(s: &mut TcpStream) -> Vec<u8> {
    let mut v = Vec::new();
    s.read_to_end(&mut v).unwrap();
    v
}

fn backends() -> Vec<&'static str> {
    paste_rt::testing::backends("graceful").into_iter().map(BackendKind::name).collect()
}

fn phttpd(mode: &str, backend: &str) {
    let what = format!("phttpd --mode {mode} on {backend}");
    let (child, port) =
        start(env!("CARGO_BIN_EXE_phttpd"), &["--port", "0", "--bind", "127.0.0.1", "--mode", mode], backend);
    let mut idle = connect(port);
    idle.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut first = [0u8; 151];
    idle.read_exact(&mut first).unwrap();
    // A POST half received when the signal arrives.
    let mut busy = connect(port);
    busy.write_all(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    interrupt(&child);
    std::thread::sleep(Duration::from_millis(100));
    busy.write_all(b"world").unwrap();
    let answered = read_to_eof(&mut busy);
    drop(busy); // the server lingers until the peer closes too
    assert!(answered.starts_with(b"HTTP/1.1 200 OK"), "{what}: the request in hand was not answered");
    assert!(read_to_eof(&mut idle).is_empty(), "{what}: idle connection not closed cleanly");
    drop(idle);
    wait_exit(child, &what);
}

#[test]
fn phttpd_shuts_down_gracefully() {
    for b in backends() {
        phttpd("tasks", b);
        phttpd("batch", b);
    }
}

#[test]
fn echo_and_kv_shut_down_gracefully() {
    for b in backends() {
        for (bin, probe, reply) in [
            (env!("CARGO_BIN_EXE_echo"), &b"ping"[..], &b"ping"[..]),
            (env!("CARGO_BIN_EXE_kv"), &b"version\r\n"[..], &b"VERSION"[..]),
        ] {
            let (child, port) = start(bin, &["--port", "0", "--bind", "127.0.0.1"], b);
            let mut c = connect(port);
            c.write_all(probe).unwrap();
            let mut got = vec![0u8; reply.len()];
            c.read_exact(&mut got).unwrap();
            assert_eq!(got, reply);
            interrupt(&child);
            let rest = read_to_eof(&mut c);
            drop(c);
            assert!(bin.ends_with("kv") || rest.is_empty(), "{bin}: {rest:?}");
            wait_exit(child, &format!("{bin} on {b}"));
        }
    }
}

#[test]
fn wal_shuts_down_gracefully() {
    for b in backends() {
        let dir = tempfile::tempdir().unwrap();
        let (child, port) = start(
            env!("CARGO_BIN_EXE_wal"),
            &["--port", "0", "--bind", "127.0.0.1", "--capacity", "256", "--dir", dir.path().to_str().unwrap()],
            b,
        );
        let mut c = connect(port);
        c.write_all(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc").unwrap();
        let mut ack = [0u8; 151];
        c.read_exact(&mut ack).unwrap();
        interrupt(&child);
        assert!(read_to_eof(&mut c).is_empty());
        drop(c);
        wait_exit(child, &format!("wal on {b}"));
    }
}
