//! Hostile and idle clients meet the servers' time limits, on every backend: a
//! request head that does not arrive in time (even one trickling in a byte at a
//! time) is answered `408` and closed by phttpd, in both modes; a pausing body too;
//! idle connections close after the idle limit and not before; kv closes a
//! command cut short, and keeps idle connections unless told otherwise.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use paste_rt::net::TcpListener;
use paste_rt_examples::http::{ResponseTemplate, REQUEST_TIMEOUT, WRK_GET_LOCAL};
use paste_rt_examples::kv;
use paste_rt_examples::phttpd::{self, Config, Mode, Timeouts};
use support::{connect, off_thread, read_to_eof, round_trip};

const HEADER: Duration = Duration::from_millis(300);
const IDLE: Duration = Duration::from_secs(1);
const LIMITS: Timeouts = Timeouts { header: Some(HEADER), idle: Some(IDLE), shutdown_grace: Duration::from_secs(2) };

async fn phttpd_on(mode: Mode) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(paste_rt::spawn(phttpd::serve_with(listener, Config { body_len: 64, mode }, LIMITS)));
    addr
}

/// Every case, against one phttpd in `mode`.
fn phttpd_cases(addr: SocketAddr, mode: Mode) {
    let ok = ResponseTemplate::new(64);
    // A partial head: 408 once the header limit has passed, then close.
    let start = Instant::now();
    let mut c = connect(addr);
    c.write_all(b"GET / HT").unwrap();
    assert_eq!(read_to_eof(&mut c), REQUEST_TIMEOUT, "{mode:?}: partial head");
    assert!(start.elapsed() >= HEADER, "{mode:?}: 408 before the header limit");

    // A head trickling in a byte at a time never extends its limit.
    let mut c = connect(addr);
    let mut writer = c.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        for b in b"GET / HTTP/1.1\r\nX-Slow: ".iter().chain([b'a'; 60].iter()) {
            if writer.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    assert_eq!(read_to_eof(&mut c), REQUEST_TIMEOUT, "{mode:?}: trickled head");
    trickle.join().unwrap();

    // A body that pauses longer than the idle limit: 408.
    let mut c = connect(addr);
    c.write_all(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nhello").unwrap();
    assert_eq!(read_to_eof(&mut c), REQUEST_TIMEOUT, "{mode:?}: paused body");

    // A connection that never sends anything: closed silently after the header limit.
    let mut c = connect(addr);
    assert!(read_to_eof(&mut c).is_empty(), "{mode:?}: silent connection");

    // Keep-alive requests within the idle limit keep the connection; once idle past
    // it, it closes without a word.
    let mut c = connect(addr);
    let mut last_request = Instant::now();
    for _ in 0..4 {
        last_request = Instant::now();
        round_trip(&mut c, WRK_GET_LOCAL, ok.as_bytes());
        std::thread::sleep(IDLE / 4);
    }
    assert!(read_to_eof(&mut c).is_empty(), "{mode:?}: idle close");
    // The idle deadline may lag the last request by an eighth of the limit.
    let idle = last_request.elapsed();
    assert!(idle >= IDLE - IDLE / 8, "{mode:?}: closed {idle:?} after the last request, before the idle limit");
}

#[paste_rt::test_each_backend]
async fn phttpd_tasks_mode_enforces_header_and_idle_limits() {
    let addr = phttpd_on(Mode::Tasks).await;
    off_thread(move || phttpd_cases(addr, Mode::Tasks)).await;
}

#[paste_rt::test_each_backend]
async fn phttpd_batch_mode_enforces_header_and_idle_limits() {
    let addr = phttpd_on(Mode::Batch).await;
    off_thread(move || phttpd_cases(addr, Mode::Batch)).await;
}

#[paste_rt::test_each_backend]
async fn kv_closes_a_command_cut_short_and_keeps_idle_connections_by_default() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = kv::Timeouts { header: Some(HEADER), ..kv::Timeouts::KV };
    drop(paste_rt::spawn(kv::serve_with(listener, kv::Config::default(), limits)));
    off_thread(move || {
        let mut c = connect(addr);
        c.write_all(b"get fo").unwrap();
        assert!(read_to_eof(&mut c).is_empty(), "a partial command line is closed without a reply");
        // A set whose data block stalls is cut at the same limit.
        let mut c = connect(addr);
        c.write_all(b"set k 0 0 10\r\nhalf").unwrap();
        assert!(read_to_eof(&mut c).is_empty(), "a stalled data block is closed without a reply");
        // No idle limit: a connection idle for several header limits still works.
        let mut c = connect(addr);
        round_trip(&mut c, b"version\r\n", b"VERSION 1.6.0-paste-rt\r\n");
        std::thread::sleep(HEADER * 3);
        round_trip(&mut c, b"set k 0 0 2\r\nok\r\n", b"STORED\r\n");
    })
    .await;
}

#[paste_rt::test_each_backend]
async fn kv_with_an_idle_limit_closes_idle_connections() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = kv::Timeouts { idle: Some(IDLE), ..kv::Timeouts::KV };
    drop(paste_rt::spawn(kv::serve_with(listener, kv::Config::default(), limits)));
    off_thread(move || {
        let from = Instant::now();
        let mut c = connect(addr);
        round_trip(&mut c, b"version\r\n", b"VERSION 1.6.0-paste-rt\r\n");
        assert!(read_to_eof(&mut c).is_empty());
        // The idle deadline may lag the last command by an eighth of the limit.
        assert!(from.elapsed() >= IDLE - IDLE / 8, "closed before the idle limit");
    })
    .await;
}
