//! The WAL survives SIGKILL: clients post records, the server is killed mid-stream
//! and restarted on the same files; every acknowledged record comes back intact,
//! and every record that comes back is one that was sent, whole (never torn).

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paste_rt::BackendKind;

struct Server {
    child: Child,
    port: u16,
}

fn start(dir: &std::path::Path, backend: &str, copy: bool) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wal"));
    cmd.args(["--port", "0", "--bind", "127.0.0.1", "--capacity", "4096", "--backend", backend, "--dir"])
        .arg(dir)
        .env_remove("PASTE_RT_BACKEND")
        .stdout(Stdio::piped());
    if copy {
        cmd.arg("--copy");
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line
        .split_once("listening on ")
        .and_then(|(_, rest)| rest.split(',').next())
        .and_then(|addr| addr.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    Server { child, port }
}

fn body_for(client: usize, n: usize) -> Vec<u8> {
    let tag = format!("client-{client}-record-{n}|");
    tag.bytes().cycle().take(1024).collect()
}

/// Sends one request, returns the status line and body (None if the connection died).
fn request(s: &mut TcpStream, req: &[u8]) -> Option<(String, Vec<u8>)> {
    s.write_all(req).ok()?;
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_string();
    let len: usize =
        head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    while data.len() < head_end + len {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    }
    Some((head.lines().next().unwrap_or("").to_string(), data[head_end..head_end + len].to_vec()))
}

fn post(body: &[u8]) -> Vec<u8> {
    let mut r = format!("POST /log HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    r.extend_from_slice(body);
    r
}

fn crash_and_recover(backend: &str, copy: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), backend, copy);
    let acked = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let sent = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (acked, sent, count) = (acked.clone(), sent.clone(), count.clone());
            // Connected here, before any client sends: a thread that starts late on
            // a loaded machine must not find the server already killed.
            let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            std::thread::spawn(move || {
                for n in 0.. {
                    let body = body_for(c, n);
                    sent.lock().unwrap().push(body.clone());
                    match request(&mut s, &post(&body)) {
                        Some((status, _)) if status.contains("200") => {
                            acked.lock().unwrap().push(body);
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => break, // the server died mid-request
                    }
                }
            })
        })
        .collect();
    while count.load(Ordering::Relaxed) < 400 {
        std::thread::sleep(Duration::from_millis(2));
    }
    server.child.kill().unwrap(); // SIGKILL, mid-stream
    server.child.wait().unwrap();
    clients.into_iter().for_each(|t| t.join().unwrap());

    let mut server = start(dir.path(), backend, copy);
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let (_, stats) = request(&mut s, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let stats = String::from_utf8(stats).unwrap();
    let last: u64 = stats.split_whitespace().find_map(|kv| kv.strip_prefix("last=")?.parse().ok()).unwrap();
    let sent: HashSet<Vec<u8>> = sent.lock().unwrap().iter().cloned().collect();
    let mut recovered = HashSet::new();
    for seq in 1..=last {
        let (status, body) = request(&mut s, format!("GET /{seq} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes()).unwrap();
        if status.contains("200") {
            assert!(sent.contains(&body), "{backend}: record {seq} is not a body that was sent (torn?)");
            assert!(recovered.insert(body), "{backend}: record {seq} recovered twice");
        }
    }
    let acked = acked.lock().unwrap();
    for body in acked.iter() {
        assert!(recovered.contains(body), "{backend}: an acknowledged record was lost");
    }
    assert!(recovered.len() >= acked.len());
    eprintln!("{backend} (copy={copy}): {} acked, {} recovered, {stats}", acked.len(), recovered.len());
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

fn backends() -> Vec<BackendKind> {
    paste_rt::testing::backends("wal_crash")
}

#[test]
fn zero_copy_wal_survives_sigkill() {
    for kind in backends() {
        crash_and_recover(kind.name(), false);
    }
}

#[test]
fn copy_wal_survives_sigkill() {
    for kind in backends() {
        crash_and_recover(kind.name(), true);
    }
}
