//! Slow partial bodies cannot starve complete ones in the WAL, on every backend:
//! once requests still arriving hold their share of the log, a further partial body
//! is answered `503` with `Retry-After` (never `413`) and closed, while complete
//! requests and the partial ones already admitted are still acknowledged. A partial
//! head is answered `408` once the header limit passes, and a kept-alive connection
//! left idle is closed at the idle limit, not before.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use paste_rt::net::TcpListener;
use paste_rt::persist::{FlushMethod, Persister};
use paste_rt_examples::http::{ResponseTemplate, REQUEST_TIMEOUT};
use paste_rt_examples::wal::server::SERVICE_UNAVAILABLE;
use paste_rt_examples::wal::{Mode, Recovery, Timeouts, WalServer};
use support::{connect, off_thread, read_n, read_to_eof, round_trip};

const MAX_PARTIAL: u32 = 4;
const PARTIALS: usize = 8;

/// Starts a copy-mode WAL of 64 records, at most [`MAX_PARTIAL`] of them for
/// requests still arriving, on the current runtime, with a 300 ms header limit.
async fn start(dir: &std::path::Path) -> SocketAddr {
    start_with(dir, Timeouts { header: Some(Duration::from_millis(300)), ..Timeouts::HTTP }).await
}

/// [`start`] with the given limits.
async fn start_with(dir: &std::path::Path, timeouts: Timeouts) -> SocketAddr {
    let recovery = Recovery::open(dir, 64, Mode::Copy).unwrap();
    let persister = Persister::new(FlushMethod::detect(), 0);
    let mut wal = recovery.attach(paste_rt::runtime::pool(), persister).unwrap();
    wal.set_max_partial(MAX_PARTIAL);
    let mut server = WalServer::with_timeouts(wal, timeouts);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(paste_rt::spawn(paste_rt::batch::serve(listener, move |batch| server.on_batch(batch))));
    addr
}

fn post_head(len: usize) -> Vec<u8> {
    format!("POST /log HTTP/1.1\r\nHost: t\r\nContent-Length: {len}\r\n\r\n").into_bytes()
}

/// What arrives within `wait`: nothing, or the bytes up to the peer's close.
fn answer_within(c: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    c.set_read_timeout(Some(wait)).unwrap();
    let mut first = [0u8; 1];
    let n = match c.read(&mut first) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return None,
        Err(e) => panic!("reading an answer: {e}"),
        Ok(n) => n,
    };
    c.set_read_timeout(Some(support::IO_TIMEOUT)).unwrap();
    let mut got = first[..n].to_vec();
    got.extend(read_to_eof(c));
    Some(got)
}

#[paste_rt::test_each_backend]
async fn partial_bodies_beyond_their_share_get_503_and_complete_requests_still_commit() {
    let dir = tempfile::tempdir().unwrap();
    let addr = start(dir.path()).await;
    off_thread(move || {
        let ack = ResponseTemplate::new(64);
        // Partial POSTs, one after the other: each holds a slot while it waits.
        let mut partials = Vec::new();
        for _ in 0..PARTIALS {
            let mut c = connect(addr);
            let mut bytes = post_head(200);
            bytes.extend_from_slice(&[b'p'; 100]);
            c.write_all(&bytes).unwrap();
            std::thread::sleep(Duration::from_millis(30));
            partials.push(c);
        }
        let mut admitted = Vec::new();
        let mut refused = 0;
        for mut c in partials {
            match answer_within(&mut c, Duration::from_millis(150)) {
                None => admitted.push(c),
                Some(answer) => {
                    assert_eq!(
                        String::from_utf8_lossy(&answer),
                        String::from_utf8_lossy(SERVICE_UNAVAILABLE),
                        "a partial body beyond the limit"
                    );
                    refused += 1;
                }
            }
        }
        assert!(refused >= PARTIALS - MAX_PARTIAL as usize, "{refused} of {PARTIALS} refused");
        assert!(!admitted.is_empty(), "no partial body was admitted");
        assert!(SERVICE_UNAVAILABLE.windows(13).any(|w| w == b"Retry-After: "));

        // A complete request is still acknowledged while the partial ones wait.
        let mut c = connect(addr);
        let mut post = post_head(50);
        post.extend_from_slice(&[b'c'; 50]);
        round_trip(&mut c, &post, ack.as_bytes());
        // And the admitted partial ones complete.
        for mut c in admitted {
            round_trip(&mut c, &[b'p'; 100], ack.as_bytes());
        }
        c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let head = read_n(&mut c, 17);
        assert_eq!(&head, b"HTTP/1.1 200 OK\r\n");
        let mut stats = String::new();
        c.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let _ = c.read_to_string(&mut stats);
        let refused_seen: usize = stats
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("refused=")?.parse().ok())
            .unwrap_or_else(|| panic!("no refused= in {stats:?}"));
        assert_eq!(refused_seen, refused, "{stats}");

        // A head that never completes: 408 at the header limit.
        let mut c = connect(addr);
        c.write_all(b"POST /log HTTP/1.1\r\nContent-Le").unwrap();
        assert_eq!(read_to_eof(&mut c), REQUEST_TIMEOUT);
    })
    .await;
}

#[paste_rt::test_each_backend]
async fn a_kept_alive_connection_left_idle_is_closed_at_the_idle_limit() {
    const IDLE: Duration = Duration::from_millis(400);
    let dir = tempfile::tempdir().unwrap();
    let addr = start_with(dir.path(), Timeouts { idle: Some(IDLE), ..Timeouts::HTTP }).await;
    off_thread(move || {
        let ack = ResponseTemplate::new(64);
        let mut c = connect(addr);
        let mut post = post_head(10);
        post.extend_from_slice(&[b'i'; 10]);
        for _ in 0..3 {
            round_trip(&mut c, &post, ack.as_bytes());
        }
        let last_request = Instant::now();
        assert!(read_to_eof(&mut c).is_empty(), "an idle connection got bytes instead of a close");
        // The idle deadline may lag the last request by an eighth of the limit.
        let idle = last_request.elapsed();
        assert!(idle >= IDLE - IDLE / 8, "closed {idle:?} after the last request, before the idle limit");
    })
    .await;
}
