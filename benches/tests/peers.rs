//! The peer servers over loopback: every peer × every workload it supports answers
//! with the exact bytes paste-rt's servers send.
//!
//! Each server runs forever on a detached thread (as in `paste-bench serve`); the test
//! process ends them when it exits. Clients use blocking std sockets with a read
//! timeout, so a server that stops answering fails the test instead of hanging it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use paste_rt_bench::peers::{self, Peer, PeerConfig, Workload};
use paste_rt_examples::http::{write_post_request, ResponseTemplate, BAD_REQUEST, WRK_GET_PAPER};

/// Generous bound on one read: only reached if a server is broken.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

fn start(peer: Peer, workload: Workload, config: PeerConfig) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    std::thread::Builder::new()
        .name(format!("{peer}-{workload}"))
        .spawn(move || {
            if let Err(e) = peers::serve(peer, workload, listener, &config) {
                eprintln!("{peer} {workload}: {e}");
            }
        })
        .expect("spawn server thread");
    addr
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(READ_TIMEOUT)).expect("read timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

fn expect_bytes(stream: &mut TcpStream, expected: &[u8], what: &str) {
    let mut got = vec![0u8; expected.len()];
    stream.read_exact(&mut got).unwrap_or_else(|e| panic!("{what}: reading {} bytes: {e}", expected.len()));
    assert_eq!(got, expected, "{what}: {}", String::from_utf8_lossy(&got));
}

fn expect_eof(stream: &mut TcpStream, what: &str) {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => {}
        Ok(_) => panic!("{what}: more bytes where the server should have closed"),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("{what}: waiting for the close: {e}"),
    }
}

fn check_rpc(addr: SocketAddr, peer: Peer) {
    let response = ResponseTemplate::new(64);
    let ok = response.as_bytes();
    assert_eq!(ok.len(), 151);
    let mut c = connect(addr);
    for i in 0..3 {
        c.write_all(WRK_GET_PAPER).expect("send");
        expect_bytes(&mut c, ok, &format!("{peer} rpc request {i}"));
    }
    // Pipelined, and a request split across two writes.
    c.write_all(&WRK_GET_PAPER.repeat(5)).expect("send");
    expect_bytes(&mut c, &ok.repeat(5), &format!("{peer} rpc pipelined"));
    c.write_all(&WRK_GET_PAPER[..20]).expect("send");
    std::thread::sleep(Duration::from_millis(20));
    c.write_all(&WRK_GET_PAPER[20..]).expect("send");
    expect_bytes(&mut c, ok, &format!("{peer} rpc split"));
    // A second connection at the same time.
    let mut d = connect(addr);
    d.write_all(WRK_GET_PAPER).expect("send");
    c.write_all(WRK_GET_PAPER).expect("send");
    expect_bytes(&mut d, ok, &format!("{peer} rpc second connection"));
    expect_bytes(&mut c, ok, &format!("{peer} rpc first connection"));
    // A bad request: the responses before it, the 400, then the close.
    c.write_all(&[WRK_GET_PAPER, b"NOT-HTTP\r\n\r\n", WRK_GET_PAPER].concat()).expect("send");
    expect_bytes(&mut c, &[ok, BAD_REQUEST].concat(), &format!("{peer} rpc bad request"));
    expect_eof(&mut c, &format!("{peer} rpc bad request"));
    // The server goes on serving others.
    d.write_all(WRK_GET_PAPER).expect("send");
    expect_bytes(&mut d, ok, &format!("{peer} rpc after a bad request"));
}

fn check_echo(addr: SocketAddr, peer: Peer) {
    let mut c = connect(addr);
    for i in 0..3u8 {
        let message: Vec<u8> = (0..100u8).map(|b| b.wrapping_mul(7).wrapping_add(i)).collect();
        c.write_all(&message).expect("send");
        expect_bytes(&mut c, &message, &format!("{peer} echo message {i}"));
    }
    let burst: Vec<u8> = (0..1000u32).map(|b| (b % 251) as u8).collect();
    c.write_all(&burst).expect("send");
    expect_bytes(&mut c, &burst, &format!("{peer} echo burst"));
    // A large message comes back whole, through partial sends if need be.
    let big: Vec<u8> = (0..200_000u32).map(|b| (b % 253) as u8).collect();
    let mut reader = c.try_clone().expect("clone");
    let expected = big.clone();
    let check = std::thread::spawn(move || {
        expect_bytes(&mut reader, &expected, "echo big message");
    });
    c.write_all(&big).expect("send");
    check.join().expect("reader");
}

fn check_kv(addr: SocketAddr, peer: Peer) {
    let mut a = connect(addr);
    let mut b = connect(addr);
    let value = [b'v'; 64];
    a.write_all(&[&b"set key:1 7 0 64\r\n"[..], &value, b"\r\n"].concat()).expect("send");
    expect_bytes(&mut a, b"STORED\r\n", &format!("{peer} kv set"));
    // Another connection sees it: one store per server.
    b.write_all(b"get key:1\r\n").expect("send");
    expect_bytes(&mut b, &[&b"VALUE key:1 7 64\r\n"[..], &value, b"\r\nEND\r\n"].concat(), &format!("{peer} kv get"));
    b.write_all(b"get missing\r\nget key:1 missing\r\n").expect("send");
    expect_bytes(
        &mut b,
        &[&b"END\r\nVALUE key:1 7 64\r\n"[..], &value, b"\r\nEND\r\n"].concat(),
        &format!("{peer} kv pipelined gets"),
    );
    let big = [b'w'; 1024];
    a.write_all(&[&b"set big 0 0 1024\r\n"[..], &big[..500]].concat()).expect("send");
    std::thread::sleep(Duration::from_millis(20));
    a.write_all(&[&big[500..], b"\r\nget big\r\n"].concat()).expect("send");
    expect_bytes(
        &mut a,
        &[&b"STORED\r\nVALUE big 0 1024\r\n"[..], &big, b"\r\nEND\r\n"].concat(),
        &format!("{peer} kv split 1024-byte set"),
    );
    a.write_all(b"quit\r\n").expect("send");
    expect_eof(&mut a, &format!("{peer} kv quit"));
}

fn check_wal(addr: SocketAddr, peer: Peer) {
    let ok = ResponseTemplate::new(64);
    let mut c = connect(addr);
    let mut request = vec![0u8; 2048];
    for i in 0..3u8 {
        let body = [b'a' + i; 1024];
        let n = write_post_request(b"/", b"192.168.11.3:60000", &body, &mut request);
        c.write_all(&request[..n]).expect("send");
        expect_bytes(&mut c, ok.as_bytes(), &format!("{peer} wal request {i}"));
    }
    // A body split across writes is answered only once complete.
    let n = write_post_request(b"/", b"192.168.11.3:60000", &[b'z'; 1024], &mut request);
    c.write_all(&request[..300]).expect("send");
    std::thread::sleep(Duration::from_millis(20));
    c.write_all(&request[300..n]).expect("send");
    expect_bytes(&mut c, ok.as_bytes(), &format!("{peer} wal split body"));
    // Two pipelined requests.
    c.write_all(&request[..n].repeat(2)).expect("send");
    expect_bytes(&mut c, &ok.as_bytes().repeat(2), &format!("{peer} wal pipelined"));
}

/// Serves every workload `peer` supports and checks each; returns how many it served.
fn check_peer(peer: Peer) -> usize {
    let wal_dir = std::env::temp_dir().join(format!("paste-bench-peers-test-{}-{peer}", std::process::id()));
    std::fs::create_dir_all(&wal_dir).expect("wal dir");
    let mut served = 0;
    for workload in Workload::ALL {
        if let Err(why) = peers::supported(peer, workload) {
            eprintln!("skipping {peer} {workload}: {why}");
            continue;
        }
        let config =
            PeerConfig { wal_dir: Some(wal_dir.clone()), pm_latency_ns: 1_000, workers: 2, ..PeerConfig::default() };
        let addr = start(peer, workload, config);
        match workload {
            Workload::Rpc => check_rpc(addr, peer),
            Workload::Echo => check_echo(addr, peer),
            Workload::Kv => check_kv(addr, peer),
            Workload::Wal => check_wal(addr, peer),
        }
        served += 1;
    }
    // The wal log is unlinked as soon as it is mapped: nothing is left behind.
    assert_eq!(std::fs::read_dir(&wal_dir).expect("read wal dir").count(), 0);
    std::fs::remove_dir(&wal_dir).expect("remove wal dir");
    served
}

/// io_uring may be disabled on a machine (sysctl, seccomp); the peers that need it
/// then report so through `supported`, which must agree with the kernel.
fn uring_available() -> bool {
    io_uring::IoUring::new(2).is_ok()
}

#[test]
fn tokio_serves_every_workload() {
    assert_eq!(check_peer(Peer::Tokio), 4);
}

#[test]
fn tokio_mt_serves_rpc_and_echo_on_two_workers() {
    assert_eq!(check_peer(Peer::TokioMt), 2);
    for workload in [Workload::Wal, Workload::Kv] {
        let why = peers::supported(Peer::TokioMt, workload).expect_err("tokio-mt serves rpc and echo only");
        assert!(why.contains("rpc and echo only"), "{why}");
    }
}

#[test]
fn monoio_legacy_serves_every_workload() {
    assert_eq!(check_peer(Peer::MonoioLegacy), 4);
}

#[test]
fn monoio_uring_serves_every_workload() {
    assert_eq!(check_peer(Peer::MonoioUring), if uring_available() { 4 } else { 0 });
}

#[test]
fn raw_uring_serves_rpc_and_echo() {
    assert_eq!(check_peer(Peer::RawUring), if uring_available() { 2 } else { 0 });
    for workload in [Workload::Wal, Workload::Kv] {
        let why = peers::supported(Peer::RawUring, workload).expect_err("raw-uring serves rpc and echo only");
        assert!(why.contains("rpc and echo only"), "{why}");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let err = peers::serve(Peer::RawUring, workload, listener, &PeerConfig::default())
            .expect_err("an unsupported workload is refused");
        assert_eq!(err.kind(), std::io::ErrorKind::Unsupported);
    }
}

#[test]
fn names_round_trip() {
    for peer in Peer::ALL {
        assert_eq!(peer.to_string().parse::<Peer>().expect("parse"), peer);
    }
    assert_eq!(
        ["tokio", "monoio-uring", "monoio-legacy", "raw-uring"].map(|n| n.parse::<Peer>().expect("parse")),
        Peer::ALL
    );
    for peer in Peer::OPTIONAL {
        assert_eq!(peer.to_string().parse::<Peer>().expect("parse"), peer);
    }
    assert_eq!("tokio-mt".parse::<Peer>(), Ok(Peer::TokioMt));
    assert!("monoio".parse::<Peer>().is_err());
}
