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
use paste_rt::{BackendKind, SendData};
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

/// How the ping-pong server answers: with `write_all`, or queueing the answer itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    WriteAll,
    Queued,
}

/// Waits under a receive deadline keep one kernel timer for the next sweep instead of
/// arming one per wait: epoll's timerfd, and io_uring's timeouts in the ring (uring,
/// paste-emu), which also bound a wait past a quiet send, re-armed about once per
/// `QUIET_SEND_WAIT` (10 ms) while such waits go on. A one-connection ping-pong waits
/// once per round trip; the count of armings stays near one per period.
async fn ping_pong_under_a_deadline_arms_a_timer_per_period_not_per_wait(answer: Answer) {
    const ROUNDS: usize = 400;
    let (mut server, client) = pair().await;
    server.set_recv_deadline(Some(coarse_now() + Duration::from_secs(60)));
    let client = off_thread(move || {
        let mut client = client;
        client.set_nodelay(true).unwrap();
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
        match answer {
            Answer::WriteAll => server.write_all(b"pong").await.unwrap(),
            Answer::Queued => server.queue_send(SendData::Static(b"pong")).unwrap(),
        }
    }
    let (d, elapsed) = (paste_rt::stats() - before, start.elapsed());
    client.await;
    let backend = paste_rt::current_backend().expect("inside a runtime");
    let (sweeps, guards) = (elapsed.as_millis() as u64 / 100 + 1, elapsed.as_millis() as u64 / 10 + 1);
    eprintln!(
        "{backend}, {answer:?}: {ROUNDS} round trips in {elapsed:?}: {} waits, {} wake-up timers armed",
        d.waits, d.wait_timers
    );
    if backend == BackendKind::Paste {
        // Kernel PASTE's poll takes its own timeout: no wake-up timer.
        assert_eq!(d.wait_timers, 0, "{d:?}");
        return;
    }
    // On io_uring a small answer's send is quiet either way (`write_all` returns once
    // the bytes are queued), so the timer also guards the waits past it.
    let allowed = match backend {
        BackendKind::Uring | BackendKind::PasteEmu => 2 * sweeps + 2 * guards,
        _ => 2 * sweeps,
    };
    assert!(d.waits >= ROUNDS as u64 / 2, "the server waited for most requests: {d:?}");
    assert!(d.wait_timers >= 1, "the waits had a deadline sweep to end at: {d:?}");
    assert!(
        d.wait_timers <= allowed,
        "{} timers armed in {elapsed:?} (allowed {allowed}) for {} waits: one per wait? {d:?}",
        d.wait_timers,
        d.waits
    );
}

#[paste_rt::test_each_backend]
async fn waits_under_a_receive_deadline_arm_a_kernel_timer_per_sweep_not_per_wait() {
    ping_pong_under_a_deadline_arms_a_timer_per_period_not_per_wait(Answer::WriteAll).await;
}

#[paste_rt::test_each_backend]
async fn waits_past_quiet_answers_under_a_deadline_arm_a_timer_per_period_not_per_wait() {
    ping_pong_under_a_deadline_arms_a_timer_per_period_not_per_wait(Answer::Queued).await;
}
