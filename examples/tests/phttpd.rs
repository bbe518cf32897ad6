//! phttpd over TCP on every backend: the exact response bytes for GET and POST,
//! POST bodies split across writes, pipelining (answers leaving together), requests
//! split byte by byte, malformed requests, closing requests, and a long keep-alive
//! run.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use paste_rt::net::TcpListener;
use paste_rt_examples::http::{BAD_REQUEST, BODY_PATTERN, WRK_GET_LOCAL};
use paste_rt_examples::phttpd::{self, Config, Mode, METHOD_NOT_ALLOWED};
use support::{assert_silent, connect, off_thread, read_n, read_to_eof, round_trip};

/// phttpd's 151-byte response, spelled out (87-byte header + the 64-byte body).
fn expected_ok() -> Vec<u8> {
    let mut r =
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nServer: Apache/2.2.800\r\nContent-Length: 64\r\n\r\n".to_vec();
    assert_eq!(r.len(), 87);
    r.extend_from_slice(BODY_PATTERN);
    assert_eq!(r.len(), 151);
    r
}

/// Both ways of serving: every scenario runs in each.
const MODES: [Mode; 2] = [Mode::Tasks, Mode::Batch];

/// Starts phttpd on a fresh loopback port; it runs until the runtime ends.
async fn start(body_len: usize, mode: Mode) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _server = paste_rt::spawn(phttpd::serve(listener, Config { body_len, mode }));
    addr
}

#[paste_rt::test_each_backend]
async fn get_returns_the_exact_151_bytes() {
    for mode in MODES {
        let addr = start(64, mode).await;
        off_thread(move || {
            let mut c = connect(addr);
            round_trip(&mut c, WRK_GET_LOCAL, &expected_ok());
            // Keep-alive: the same connection answers again, and nothing extra was sent.
            round_trip(&mut c, b"GET /index.html HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n", &expected_ok());
            assert_silent(&mut c, Duration::from_millis(50));
        })
        .await;
    }
}

#[paste_rt::test_each_backend]
async fn body_len_sets_the_body() {
    for mode in MODES {
        let addr = start(3000, mode).await;
        off_thread(move || {
            let mut c = connect(addr);
            c.write_all(WRK_GET_LOCAL).unwrap();
            let header =
                b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nServer: Apache/2.2.800\r\nContent-Length: 3000\r\n\r\n";
            let got = read_n(&mut c, header.len() + 3000);
            assert_eq!(&got[..header.len()], &header[..]);
            assert!(paste_rt_examples::http::is_pattern_body(&got[header.len()..], 0));
        })
        .await;
    }
}

#[paste_rt::test_each_backend]
async fn post_body_split_across_writes_is_read_before_the_answer() {
    for mode in MODES {
        let addr = start(64, mode).await;
        off_thread(move || {
            let mut c = connect(addr);
            // The body looks like requests: it must be skipped, not parsed.
            let body = WRK_GET_LOCAL.repeat(60); // 2460 bytes, more than one pool buffer
            let head = format!("POST /log HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", body.len());
            c.write_all(head.as_bytes()).unwrap();
            for piece in body[..body.len() - 1].chunks(700) {
                c.write_all(piece).unwrap();
                assert_silent(&mut c, Duration::from_millis(20));
            }
            round_trip(&mut c, &body[body.len() - 1..], &expected_ok());
            round_trip(&mut c, WRK_GET_LOCAL, &expected_ok());
            assert_silent(&mut c, Duration::from_millis(50));
        })
        .await;
    }
}

#[paste_rt::test_each_backend]
async fn ten_pipelined_requests_in_one_write() {
    for mode in MODES {
        let addr = start(64, mode).await;
        off_thread(move || {
            let mut c = connect(addr);
            let mut requests = WRK_GET_LOCAL.repeat(9);
            requests.extend_from_slice(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
            round_trip(&mut c, &requests, &expected_ok().repeat(10));
            assert_silent(&mut c, Duration::from_millis(50));
        })
        .await;
    }
}

#[paste_rt::test_each_backend]
async fn requests_split_byte_by_byte() {
    for mode in MODES {
        let addr = start(64, mode).await;
        off_thread(move || {
            let mut c = connect(addr);
            let requests = [WRK_GET_LOCAL, b"POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"].concat();
            for &byte in &requests {
                c.write_all(&[byte]).unwrap();
            }
            assert_eq!(read_n(&mut c, 2 * 151), expected_ok().repeat(2));
            assert_silent(&mut c, Duration::from_millis(50));
        })
        .await;
    }
}

#[paste_rt::test_each_backend]
async fn malformed_request_gets_400_then_close() {
    for mode in MODES {
        let addr = start(64, mode).await;
        off_thread(move || {
            let mut c = connect(addr);
            c.write_all(b"GARBAGE\r\n\r\n").unwrap();
            assert_eq!(read_to_eof(&mut c), BAD_REQUEST);

            // Earlier pipelined requests are answered first; bytes after the bad one are ignored.
            let mut c = connect(addr);
            let mut requests = WRK_GET_LOCAL.repeat(2);
            requests.extend_from_slice(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n");
            requests.extend_from_slice(WRK_GET_LOCAL);
            c.write_all(&requests).unwrap();
            let mut expected = expected_ok().repeat(2);
            expected.extend_from_slice(BAD_REQUEST);
            assert_eq!(read_to_eof(&mut c), expected);
        })
        .await;
    }
}

#[paste_rt::test_each_backend]
async fn closing_requests_are_answered_then_closed() {
    for mode in MODES {
        let addr = start(64, mode).await;
        off_thread(move || {
            let close_ok = [
                &b"HTTP/1.1 200 OK\r\nConnection: close\r\nServer: Apache/2.2.800\r\nContent-Length: 64\r\n\r\n"[..],
                BODY_PATTERN,
            ]
            .concat();
            for request in [
                &b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"[..],
                b"GET / HTTP/1.0\r\n\r\n",
                // The request after the closing one is never answered.
                b"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            ] {
                let mut c = connect(addr);
                c.write_all(request).unwrap();
                assert_eq!(read_to_eof(&mut c), close_ok);
            }
            // HTTP/1.0 asking for keep-alive stays open.
            let mut c = connect(addr);
            round_trip(&mut c, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &expected_ok());
            round_trip(&mut c, b"PUT / HTTP/1.1\r\n\r\n", METHOD_NOT_ALLOWED);
            round_trip(&mut c, WRK_GET_LOCAL, &expected_ok());
        })
        .await;
    }
}

/// 4 connections × 2 000 keep-alive requests, one at a time, plus bursts of 50
/// pipelined ones: every response byte-exact, none missing, none extra.
#[paste_rt::test_each_backend]
async fn long_keep_alive_run() {
    for mode in MODES {
        let addr = start(64, mode).await;
        let clients: Vec<_> = (0..4)
            .map(|_| {
                off_thread(move || {
                    let mut c = connect(addr);
                    let ok = expected_ok();
                    for _ in 0..2_000 {
                        round_trip(&mut c, WRK_GET_LOCAL, &ok);
                    }
                    let burst = WRK_GET_LOCAL.repeat(50);
                    let oks = ok.repeat(50);
                    for _ in 0..20 {
                        round_trip(&mut c, &burst, &oks);
                    }
                    c.shutdown(std::net::Shutdown::Write).unwrap();
                    assert_eq!(read_to_eof(&mut c), b"");
                    4_000
                })
            })
            .collect();
        let mut answered = 0;
        for client in clients {
            answered += client.await;
        }
        assert_eq!(answered, 16_000);
    }
}

#[paste_rt::test_each_backend]
async fn a_peer_that_vanishes_mid_request_leaves_the_server_serving() {
    for mode in MODES {
        let addr = start(64, mode).await;
        off_thread(move || {
            let mut c = connect(addr);
            c.write_all(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nonly part").unwrap();
            drop(c);
            let mut c = connect(addr);
            round_trip(&mut c, WRK_GET_LOCAL, &expected_ok());
        })
        .await;
    }
}

/// Answers to pipelined requests leave together: sixteen GETs in one write cost a
/// few submissions (SQEs, TX slots, `sendmsg` calls: the accept and receive arming
/// count too), never one per answer. (On PASTE each answer queued on its own took
/// a TX slot of its own: 16 submissions.)
#[paste_rt::test_each_backend]
async fn sixteen_pipelined_answers_leave_in_few_submissions() {
    for mode in MODES {
        let addr = start(64, mode).await;
        let before = paste_rt::runtime::stats().submissions;
        off_thread(move || {
            let mut c = connect(addr);
            round_trip(&mut c, &WRK_GET_LOCAL.repeat(16), &expected_ok().repeat(16));
        })
        .await;
        let submissions = paste_rt::runtime::stats().submissions - before;
        assert!(submissions <= 6, "{mode:?}: 16 pipelined answers took {submissions} submissions");
    }
}
