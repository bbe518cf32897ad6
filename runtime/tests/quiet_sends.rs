//! Send completions nobody waits for: on io_uring (uring, paste-emu) a tick's wait
//! looks past them, so a request on an otherwise idle connection costs one enter, not
//! one that submits the answer and returns with its completion plus one that waits for
//! the next request. These tests hold that count, and that looking past a send the
//! kernel had to park never holds up anything else.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use paste_rt::net::{TcpListener, TcpStream};
use paste_rt::{BackendKind, SendData};
use support::{client_threads, pattern};

const REQUESTS: usize = 300;

/// Whether the running io_uring backend waits in two stages (Linux 6.12+:
/// `IORING_FEAT_MIN_TIMEOUT`), as its probe reports it.
fn two_stage_wait() -> bool {
    let detail = paste_rt::runtime::current_selection().expect("inside a runtime").detail;
    detail.contains(" min_timeout")
}

/// System calls per request the backend may make at one connection with requests
/// one at a time: what each does, with room for the odd extra tick.
fn syscalls_per_request_allowed() -> f64 {
    match paste_rt::current_backend().expect("inside a runtime") {
        // epoll_wait, recv, send.
        BackendKind::Epoll => 3.2,
        // One enter: it submits the answer and waits for the next request, past the
        // answer's completion; without the two-stage wait the completion ends it.
        BackendKind::Uring | BackendKind::PasteEmu if two_stage_wait() => 1.2,
        BackendKind::Uring | BackendKind::PasteEmu => 2.2,
        other => panic!("no figure for {other}"),
    }
}

/// Echoes what `s` receives until EOF, each answer queued without waiting for the
/// kernel to take it (nobody waits on its send's completion). Returns the bytes echoed.
async fn echo_without_waiting(s: &TcpStream) -> usize {
    let mut echoed = 0;
    while let Some(b) = s.recv().await.unwrap() {
        echoed += b.len();
        let mut tx = s.tx_buf().unwrap();
        tx.put(&b);
        drop(b);
        s.queue_send(tx.into()).unwrap();
    }
    echoed
}

#[paste_rt::test_each_backend]
async fn a_request_on_an_otherwise_idle_connection_costs_one_enter_on_io_uring() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = client_threads(1, move |_| {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut go = [0u8; 1];
        s.read_exact(&mut go).unwrap();
        let mut buf = [0u8; 100];
        for i in 0..REQUESTS {
            buf.fill(i as u8);
            s.write_all(&buf).unwrap();
            s.read_exact(&mut buf).unwrap();
            assert!(buf.iter().all(|&b| b == i as u8), "request {i}");
        }
    });
    let (s, _) = listener.accept().await.unwrap();
    let before = paste_rt::stats();
    s.queue_send(SendData::Static(b"g")).unwrap();
    echo_without_waiting(&s).await;
    let d = paste_rt::stats() - before;
    client.await;
    let per_request = d.syscalls as f64 / REQUESTS as f64;
    let allowed = syscalls_per_request_allowed();
    eprintln!("{:?}: {per_request:.2} system calls per request (allowed {allowed})", paste_rt::current_backend());
    assert_eq!(d.syscalls_outside_poll, 0, "{d:?}");
    assert!(per_request <= allowed, "{per_request:.2} system calls per request, allowed {allowed}: {d:?}");
}

/// A connection whose peer does not read: a large send the kernel parks. The tick
/// that submitted it may look past its completion; another connection's requests
/// must still be answered (each within the wait's bound, here within the client's
/// read timeout), and the parked bytes must all arrive once the peer reads.
#[paste_rt::test_each_backend]
async fn a_send_parked_on_a_full_socket_does_not_hold_up_another_connection() {
    const PARKED: usize = 4 << 20;
    let slow_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fast_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addrs = [slow_listener.local_addr().unwrap(), fast_listener.local_addr().unwrap()];
    let (start_reading, may_read) = std::sync::mpsc::channel::<()>();
    let may_read = std::sync::Mutex::new(may_read);
    let clients = client_threads(2, move |i| {
        let mut s = std::net::TcpStream::connect(addrs[i]).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        if i == 0 {
            // The slow reader: reads only when told, then checks every byte.
            may_read.lock().unwrap().recv().unwrap();
            let mut got = vec![0u8; PARKED];
            s.read_exact(&mut got).unwrap();
            assert!(got == pattern(PARKED), "the parked bytes arrived changed");
        } else {
            let mut buf = [0u8; 100];
            for k in 0..50u8 {
                buf.fill(k);
                s.write_all(&buf).unwrap();
                s.read_exact(&mut buf).unwrap();
                assert!(buf.iter().all(|&b| b == k), "echo {k}");
            }
        }
    });
    let (slow, _) = slow_listener.accept().await.unwrap();
    let (fast, _) = fast_listener.accept().await.unwrap();
    // Queued without waiting: more than the socket buffers hold, so the kernel parks it.
    slow.queue_send(SendData::Owned(pattern(PARKED))).unwrap();
    assert_eq!(echo_without_waiting(&fast).await, 50 * 100);
    start_reading.send(()).unwrap();
    slow.flush().await.unwrap();
    clients.await;
}
