//! Graceful shutdown is bounded: with a client holding a partial request, every
//! example server (phttpd in both modes, kv, wal, hyper) exits 0 soon after Ctrl-C
//! — within its `--shutdown-grace` (default 2 s) — instead of waiting for the
//! request (the header limit is set far away, so only the grace can end it). The
//! bound asserted is generous: it only tells "bounded by the grace" from "waits for
//! the client or a 10–30 s timer".

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use support::process::{start, Server};
use support::read_to_eof;

/// Far above the 2 s default grace, far below the 10 s and 30 s the servers
/// waited before.
const BOUND: Duration = Duration::from_secs(8);

#[paste_rt::test_each_backend]
async fn shutdown_closes_a_partial_request_within_the_grace() {
    let backend = paste_rt::current_backend().expect("inside a runtime").name();
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().to_str().unwrap();
    let far = ["--header-timeout", "60", "--idle-timeout", "60"];
    let servers: Vec<(Server, &[u8])> = vec![
        (start(env!("CARGO_BIN_EXE_phttpd"), &[&far[..], &["--mode", "tasks"]].concat(), backend), b"GET / HT"),
        (start(env!("CARGO_BIN_EXE_phttpd"), &[&far[..], &["--mode", "batch"]].concat(), backend), b"GET / HT"),
        (start(env!("CARGO_BIN_EXE_kv"), &["--header-timeout", "60"], backend), b"get fo"),
        (
            start(env!("CARGO_BIN_EXE_wal"), &[&far[..], &["--capacity", "256", "--dir", wal_dir]].concat(), backend),
            b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nhal",
        ),
        (start(env!("CARGO_BIN_EXE_hyper"), &[], backend), b"GET / HT"),
    ];
    let clients: Vec<TcpStream> = servers
        .iter()
        .map(|(server, partial)| {
            let mut c = support::connect(([127, 0, 0, 1], server.port).into());
            c.write_all(partial).unwrap();
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200)); // let every partial request arrive
    for (server, _) in &servers {
        server.interrupt();
    }
    for (server, _) in servers {
        server.wait_exit(BOUND);
    }
    for mut c in clients {
        // Closed (phttpd and wal answer 408 first): the read ends, it does not hang.
        let _ = read_to_eof(&mut c);
    }
}
