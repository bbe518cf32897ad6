//! Coarse receive deadlines on every backend: `TcpStream::set_recv_deadline` makes
//! a pending or later receive fail with `TimedOut` once it has passed (data that
//! arrived before is still handed out, the connection stays usable, `None` clears
//! it), and a batch server gets one `BatchEvent::TimedOut` per deadline.

mod support;

use std::cell::{Cell, RefCell};
use std::io::{ErrorKind, Read, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

use paste_rt::batch::{self, BatchEvent};
use paste_rt::net::{TcpListener, TcpStream};
use paste_rt::time::coarse_now;
use paste_rt::SendData;
use support::off_thread;

/// A connected pair: the runtime's end and a blocking client's end.
async fn pair() -> (TcpStream, std::net::TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = off_thread(move || std::net::TcpStream::connect(addr).unwrap());
    let (server, _) = listener.accept().await.unwrap();
    (server, client.await)
}

#[paste_rt::test_each_backend]
async fn a_pending_recv_times_out_once_the_deadline_passes_and_the_connection_stays_usable() {
    let (mut server, mut client) = pair().await;
    let deadline = coarse_now() + Duration::from_millis(50);
    server.set_recv_deadline(Some(deadline));
    let err = server.recv().await.expect_err("nothing was sent: the receive must time out");
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    assert!(Instant::now() >= deadline, "timed out before the deadline");
    // Later receives fail too, until the deadline is cleared.
    assert_eq!(server.recv().await.unwrap_err().kind(), ErrorKind::TimedOut);
    let mut buf = [0u8; 8];
    assert_eq!(server.read(&mut buf).await.unwrap_err().kind(), ErrorKind::TimedOut);
    server.set_recv_deadline(None);
    client.write_all(b"late").unwrap();
    let n = server.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"late", "the connection stays open after a timeout");
}

#[paste_rt::test_each_backend]
async fn data_received_before_the_deadline_is_delivered() {
    let (server, mut client) = pair().await;
    server.set_recv_deadline(Some(coarse_now() + Duration::from_secs(30)));
    client.write_all(b"in time").unwrap();
    let got = server.recv().await.unwrap().expect("data, not EOF");
    assert_eq!(&got[..], b"in time");
    // Data queued before an expiry is handed out before the TimedOut.
    client.write_all(b"queued").unwrap();
    paste_rt::time::sleep(Duration::from_millis(50)).await; // let it arrive
    server.set_recv_deadline(Some(coarse_now()));
    let mut got = Vec::new();
    while got.len() < 6 {
        got.extend_from_slice(&server.recv().await.unwrap().unwrap());
    }
    assert_eq!(got, b"queued");
    assert_eq!(server.recv().await.unwrap_err().kind(), ErrorKind::TimedOut);
}

#[paste_rt::test_each_backend]
async fn a_cleared_or_replaced_deadline_never_fires() {
    let (server, mut client) = pair().await;
    server.set_recv_deadline(Some(coarse_now() + Duration::from_millis(30)));
    server.set_recv_deadline(None);
    server.set_recv_deadline(Some(coarse_now() + Duration::from_millis(30)));
    server.set_recv_deadline(Some(coarse_now() + Duration::from_secs(60)));
    // Well past both early deadlines (several sweeps), the receive still waits for data.
    let send = off_thread(move || {
        std::thread::sleep(Duration::from_millis(400));
        client.write_all(b"after").unwrap();
        client
    });
    let got = server.recv().await.expect("no deadline is due: the receive must not time out");
    assert_eq!(&got.unwrap()[..], b"after");
    let _client = send.await;
}

#[paste_rt::test_each_backend]
async fn a_past_deadline_expires_at_once_and_eof_wins_over_it() {
    let (server, client) = pair().await;
    server.set_recv_deadline(Some(coarse_now()));
    assert_eq!(server.recv().await.unwrap_err().kind(), ErrorKind::TimedOut);
    drop(client);
    // Once the peer's FIN is in, EOF is reported rather than the timeout.
    let mut eof = false;
    for _ in 0..200 {
        match server.recv().await {
            Ok(None) => {
                eof = true;
                break;
            }
            Err(e) if e.kind() == ErrorKind::TimedOut => paste_rt::time::sleep(Duration::from_millis(5)).await,
            other => panic!("expected EOF or TimedOut, got {other:?}"),
        }
    }
    assert!(eof, "EOF never reported after the peer closed");
}

#[paste_rt::test_each_backend]
async fn a_batch_server_gets_one_timed_out_event_per_deadline() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let timeouts = Rc::new(Cell::new(0u32));
    let log = Rc::new(RefCell::new(Vec::<&'static str>::new()));
    let (t, l) = (timeouts.clone(), log.clone());
    let server = paste_rt::spawn(batch::serve(listener, move |batch| {
        while let Some(event) = batch.next_event() {
            match event {
                BatchEvent::Opened(conn) => {
                    l.borrow_mut().push("opened");
                    batch.set_recv_deadline(conn, Some(coarse_now() + Duration::from_millis(50)));
                }
                BatchEvent::Data(conn, buf) => {
                    l.borrow_mut().push("data");
                    batch.send(conn, SendData::Owned(buf.to_vec())).unwrap();
                }
                BatchEvent::TimedOut(conn) => {
                    l.borrow_mut().push("timed out");
                    t.set(t.get() + 1);
                    if t.get() == 1 {
                        // A second deadline: reported once more, then the connection closes.
                        batch.set_recv_deadline(conn, Some(coarse_now() + Duration::from_millis(50)));
                        batch.send(conn, SendData::Owned(b"first".to_vec())).unwrap();
                    } else {
                        batch.send(conn, SendData::Owned(b"second".to_vec())).unwrap();
                        batch.close(conn);
                    }
                }
                BatchEvent::Closed(_, _) => {
                    l.borrow_mut().push("closed");
                    batch.stop();
                }
            }
        }
    }));
    let received = off_thread(move || {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(b"hi").unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        got
    })
    .await;
    assert_eq!(received, b"hifirstsecond");
    assert_eq!(timeouts.get(), 2, "{:?}", log.borrow());
    // The connection was closed by the handler: stop the server with a second client.
    let stopper = off_thread(move || std::net::TcpStream::connect(addr).map(drop)).await;
    stopper.unwrap();
    paste_rt::time::timeout(Duration::from_secs(10), server).await.expect("server stops").unwrap().unwrap();
    assert_eq!(log.borrow()[..4], ["opened", "data", "timed out", "timed out"], "{:?}", log.borrow());
}

/// epoll's waits under a receive deadline keep one kernel timer for the next sweep
/// instead of arming one per wait (the epoll backend's wake-up timer): a
/// one-connection ping-pong waits once per round trip, and arms about once per
/// sweep period (100 ms).
#[test]
fn on_epoll_waits_under_a_receive_deadline_arm_a_kernel_timer_per_sweep_not_per_wait() {
    const ROUNDS: usize = 400;
    let rt = paste_rt::runtime::Builder::new().ignore_env().backend("epoll").quiet().build().expect("epoll starts");
    rt.block_on(async {
        let (mut server, client) = pair().await;
        server.set_recv_deadline(Some(coarse_now() + Duration::from_secs(60)));
        let client = off_thread(move || {
            let mut client = client;
            let mut pong = [0u8; 4];
            for _ in 0..ROUNDS {
                client.write_all(b"ping").unwrap();
                client.read_exact(&mut pong).unwrap();
                assert_eq!(&pong, b"pong");
            }
        });
        let (before, start) = (paste_rt::stats(), Instant::now());
        let mut ping = [0u8; 4];
        for _ in 0..ROUNDS {
            let mut got = 0;
            while got < ping.len() {
                let n = server.read(&mut ping[got..]).await.expect("no timeout: the deadline is a minute away");
                assert!(n > 0, "the client closed early");
                got += n;
            }
            server.write_all(b"pong").await.unwrap();
        }
        let (d, elapsed) = (paste_rt::stats() - before, start.elapsed());
        client.await;
        let periods = elapsed.as_millis() as u64 / 100 + 1;
        eprintln!("{ROUNDS} round trips in {elapsed:?}: {} waits, {} wake-up timers armed", d.waits, d.wait_timers);
        assert!(d.waits >= ROUNDS as u64 / 2, "the server waited for most requests: {d:?}");
        assert!(d.wait_timers >= 1, "the waits had a deadline sweep to end at: {d:?}");
        assert!(
            d.wait_timers <= 2 * periods,
            "{} timers armed in {elapsed:?} ({periods} sweep periods) for {} waits: one per wait? {d:?}",
            d.wait_timers,
            d.waits
        );
    });
}
