//! The epoll backend's system calls per request, counted: a short request costs one
//! `read` (the short read drained the socket, so no second read waits for `EAGAIN`)
//! and a small response one `send`, besides the waits (and the arming of the wait's
//! timer).

use std::io::{Read, Write};
use std::net::TcpStream;

use paste_rt_core::conformance::Kit;
use paste_rt_core::{PoolConfig, SendData};
use paste_rt_epoll::{EpollBackend, EpollConfig};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
const ROUNDS: u64 = 200;

/// One request/response exchange on accepted connection `t` with `peer`.
fn exchange(k: &mut Kit<EpollBackend>, t: paste_rt_core::Token, peer: &mut TcpStream) {
    peer.write_all(REQUEST).expect("the peer writes its request");
    let mut got = Vec::new();
    k.until(10, "the request", |k| {
        assert!(!k.drain(t, &mut got).expect("no error mid-request"), "no EOF mid-request");
        got.len() == REQUEST.len()
    });
    assert_eq!(got, REQUEST);
    k.send(t, SendData::Static(RESPONSE));
    k.until(10, "the response written", |k| k.io.queued(t) == 0);
    let mut answer = [0u8; RESPONSE.len()];
    peer.read_exact(&mut answer).expect("the peer reads the response");
    assert_eq!(&answer[..], RESPONSE);
}

#[test]
fn a_short_request_costs_one_read_and_a_small_response_one_send() {
    let be = EpollBackend::new(EpollConfig { pool: PoolConfig::default(), ..EpollConfig::default() })
        .expect("the epoll backend starts");
    let mut k = Kit::new(be);
    let (l, addr) = k.listen();
    let mut peer = TcpStream::connect(addr).expect("connect");
    peer.set_nodelay(true).expect("nodelay");
    let t = k.accept(l);
    exchange(&mut k, t, &mut peer);

    let before = k.stats();
    for _ in 0..ROUNDS {
        exchange(&mut k, t, &mut peer);
    }
    let after = k.stats();
    // Besides the waits and the wake-up timer's armings (the kit's waits end at
    // instants of their own: tests/wake_timer.rs counts those).
    let calls =
        (after.syscalls - before.syscalls) - (after.waits - before.waits) - (after.wait_timers - before.wait_timers);
    let ops = after.submissions - before.submissions;
    assert_eq!(ops, 2 * ROUNDS, "one read and one send per request (counted {ops} in {ROUNDS} requests)");
    assert_eq!(calls, 2 * ROUNDS, "no system call besides the read, the send and the waits ({calls} in {ROUNDS})");
    assert_eq!(after.syscalls_outside_poll, before.syscalls_outside_poll, "every system call inside poll");

    drop(peer);
    let mut rest = Vec::new();
    k.until(10, "the peer's EOF", |k| k.drain(t, &mut rest).expect("a close is not an error"));
    k.close(t);
    k.close(l);
    k.until(10, "every token released", |k| k.io.live() == 0);
}
