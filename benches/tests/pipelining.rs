//! The load generator's pipelining (`--pipeline N`): a connection writes N requests
//! together and the next N only once every one of them is answered, in the timed
//! closed loop and in the counted phases alike. A server that answers a batch in two
//! parts must not see a request of the next batch before its last answer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use paste_rt_bench::exchange::{rpc_response, LoadSpec};
use paste_rt_bench::loadgen::{self, CountedConfig, LoadConfig};
use paste_rt_bench::workload::Workload;

const DEPTH: usize = 4;
/// How long the fake server holds back a batch's last answer, watching for requests.
const HOLD: Duration = Duration::from_millis(150);

/// What the fake server saw of the first two batches.
#[derive(Debug)]
struct Seen {
    /// Requests that arrived while the first batch's last answer was held back.
    early: usize,
    /// Requests of the second batch (read until DEPTH arrived).
    second: usize,
}

/// An rpc server on one connection: reads the first batch, answers all but its last
/// request, watches the connection for `HOLD`, answers the last, reads the second
/// batch, and then answers whatever comes until the client closes.
fn fake_server() -> (SocketAddr, JoinHandle<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let answer = rpc_response(LoadSpec::new(Workload::Rpc).body_len);
        let mut pending = Vec::new();
        let first = read_requests(&mut s, &mut pending, DEPTH);
        assert_eq!(first, DEPTH, "the first batch comes whole");
        for _ in 0..DEPTH - 1 {
            s.write_all(&answer).unwrap();
        }
        s.set_read_timeout(Some(HOLD)).unwrap();
        let early = read_requests(&mut s, &mut pending, 1);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&answer).unwrap();
        let second = early + read_requests(&mut s, &mut pending, DEPTH - early);
        // Every request gets its answer; the first batch's DEPTH are answered.
        let mut owed = second;
        loop {
            for _ in 0..owed {
                if s.write_all(&answer).is_err() {
                    return Seen { early, second };
                }
            }
            owed = read_requests(&mut s, &mut pending, 1);
            if owed == 0 {
                return Seen { early, second };
            }
        }
    });
    (addr, handle)
}

/// Reads until at least `want` whole requests (each ends with an empty line) have
/// arrived or the read times out or ends; returns the requests read.
fn read_requests(s: &mut TcpStream, pending: &mut Vec<u8>, want: usize) -> usize {
    let mut got = 0;
    let mut buf = [0u8; 4096];
    while got < want {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            // The hold's timeout (or a failure): what arrived is the answer.
            Err(_) => break,
        }
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            pending.drain(..end + 4);
            got += 1;
        }
    }
    got
}

/// What the fake server saw: nothing of the second batch before the first's last
/// answer, then the whole second batch.
fn assert_batches_came_whole(server: JoinHandle<Seen>) {
    let seen = server.join().unwrap();
    assert_eq!(seen.early, 0, "a request of the next batch came before the last answer: {seen:?}");
    assert_eq!(seen.second, DEPTH, "{seen:?}");
}

#[test]
fn counted_phases_refill_a_batch_only_once_it_is_answered() {
    let (addr, server) = fake_server();
    let config = CountedConfig {
        addr,
        spec: LoadSpec::new(Workload::Rpc),
        conns: 1,
        pipeline: DEPTH,
        phases: vec![3 * DEPTH as u64],
        phase_limit: Duration::from_secs(10),
        core: None,
    };
    let result = loadgen::run_counted(&config, |_| Ok(())).expect("every response valid");
    assert_eq!(result.phases[0].requests, 3 * DEPTH as u64);
    assert_batches_came_whole(server);
}

#[test]
fn the_timed_closed_loop_refills_a_batch_only_once_it_is_answered() {
    let (addr, server) = fake_server();
    let config = LoadConfig {
        addr,
        spec: LoadSpec::new(Workload::Rpc),
        conns: 1,
        idle_conns: 0,
        pipeline: DEPTH,
        rate: None,
        warmup: Duration::ZERO,
        duration: Duration::from_millis(600),
        core: None,
        first_conn: 0,
    };
    let result = loadgen::run(&config, |_| {}).expect("the load runs");
    assert_eq!(result.errors, 0, "{:?}", result.messages);
    assert!(result.requests > DEPTH as u64, "more than one batch was answered: {}", result.requests);
    assert_batches_came_whole(server);
}
