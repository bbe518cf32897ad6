//! TCP behaviour on every backend: round trips, backpressure in both directions,
//! EOF versus reset, connect errors, and the no-syscall-outside-poll invariant.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::time::Duration;

use paste_rt::net::{TcpListener, TcpStream};
use support::{client_threads, off_thread, pattern};

/// Pool buffers in use while idle: on io_uring the kernel's buffer ring holds some
/// by design. Pool-usage bounds are measured above this.
async fn idle_pool_baseline() -> u64 {
    paste_rt::yield_now().await;
    paste_rt::stats().pool_in_use
}

#[paste_rt::test_each_backend]
async fn connect_send_recv_round_trip() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = paste_rt::spawn(async move {
        let (s, peer) = listener.accept().await.unwrap();
        assert!(peer.ip().is_loopback());
        let mut got = Vec::new();
        while let Some(b) = s.recv().await.unwrap() {
            got.extend_from_slice(&b);
        }
        let mut tx = s.tx_buf().unwrap();
        tx.put(format!("{} bytes", got.len()).as_bytes());
        s.send(tx).await.unwrap();
        s.shutdown().await.unwrap();
        got
    });
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.set_nodelay(true).unwrap();
    c.write_all(&pattern(5000)).await.unwrap();
    c.shutdown().await.unwrap();
    let mut reply = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        let n = c.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
    }
    assert_eq!(reply, b"5000 bytes");
    assert_eq!(server.await.unwrap(), pattern(5000));
}

#[paste_rt::test_each_backend]
async fn connect_refused_is_an_error() {
    // Bind then drop a std listener: its port is (almost surely) closed now.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err = TcpStream::connect(("127.0.0.1", port)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
}

/// 10 MB sent to a peer that reads slowly arrives byte-exact, and the pool never
/// holds more than the send high-water mark's worth of buffers.
#[paste_rt::test_each_backend]
async fn slow_reader_gets_every_byte_with_bounded_pool() {
    const LEN: usize = 10 << 20;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = off_thread(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        socket2::SockRef::from(&s).set_recv_buffer_size(64 * 1024).unwrap();
        let mut got = Vec::with_capacity(LEN);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break got;
            }
            got.extend_from_slice(&buf[..n]);
            std::thread::sleep(Duration::from_micros(300));
        }
    });
    let baseline = idle_pool_baseline().await;
    let (mut s, _) = listener.accept().await.unwrap();
    let data = pattern(LEN);
    let mut max_in_use = 0;
    for chunk in data.chunks(64 * 1024) {
        s.write_all(chunk).await.unwrap();
        max_in_use = max_in_use.max(paste_rt::stats().pool_in_use.saturating_sub(baseline));
    }
    s.shutdown().await.unwrap();
    drop(s);
    let got = reader.await;
    assert_eq!(got.len(), LEN);
    assert!(got == data, "bytes differ");
    // 256 KiB high-water mark / 2 KiB buffers = 128 buffers, plus one write_all chunk.
    assert!(max_in_use <= 128 + 40, "pool use not bounded: {max_in_use} buffers");
}

/// A fast sender and an application that consumes slowly: receiving pauses, the
/// pool stays bounded, and every byte arrives in order.
#[paste_rt::test_each_backend]
async fn slow_consumer_pauses_receiving_without_loss() {
    const LEN: usize = 4 << 20;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let writer = off_thread(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(&pattern(LEN)).unwrap();
    });
    let baseline = idle_pool_baseline().await;
    let (s, _) = listener.accept().await.unwrap();
    let mut got = Vec::with_capacity(LEN);
    let mut max_in_use = 0;
    let mut n = 0u32;
    while let Some(b) = s.recv().await.unwrap() {
        got.extend_from_slice(&b);
        drop(b);
        max_in_use = max_in_use.max(paste_rt::stats().pool_in_use.saturating_sub(baseline));
        n += 1;
        if n % 64 == 0 {
            paste_rt::time::sleep(Duration::from_millis(1)).await;
        }
    }
    writer.await;
    assert!(got == pattern(LEN), "received bytes differ ({} of {LEN})", got.len());
    // Pause at 64 queued buffers; at most one more batch may land before it applies.
    assert!(max_in_use <= 64 + 80, "pool use not bounded: {max_in_use}");
}

#[paste_rt::test_each_backend]
async fn half_close_and_reset_are_distinct() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();

    // Half-close: data, then EOF; the server can still answer.
    let client = off_thread(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"abc").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).unwrap();
        reply
    });
    let (s, _) = listener.accept().await.unwrap();
    let mut got = Vec::new();
    while let Some(b) = s.recv().await.unwrap() {
        got.extend_from_slice(&b);
    }
    assert_eq!(got, b"abc");
    assert!(s.recv().await.unwrap().is_none(), "EOF stays EOF");
    let mut tx = s.tx_buf().unwrap();
    tx.put(b"after-eof");
    s.send(tx).await.unwrap();
    s.flush().await.unwrap();
    drop(s);
    assert_eq!(client.await, b"after-eof");

    // Reset: SO_LINGER 0 then close sends RST.
    let client = off_thread(move || {
        let s = std::net::TcpStream::connect(addr).unwrap();
        let s = socket2::Socket::from(s);
        s.set_linger(Some(Duration::ZERO)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        drop(s);
    });
    let (s, _) = listener.accept().await.unwrap();
    client.await;
    let err = s.recv().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
}

/// Under load from 16 connections, every system call the backend makes happens
/// inside its `poll` (stats counters), and each request costs a bounded number.
#[paste_rt::test_each_backend]
async fn no_syscall_outside_poll_under_load() {
    const CONNS: usize = 16;
    const REQS: usize = 300;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let clients = client_threads(CONNS, move |_| {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        let mut buf = [0u8; 100];
        for i in 0..REQS {
            buf.fill(i as u8);
            s.write_all(&buf).unwrap();
            s.read_exact(&mut buf).unwrap();
            assert!(buf.iter().all(|&b| b == i as u8));
        }
    });
    let baseline = idle_pool_baseline().await;
    let before = paste_rt::stats();
    let mut servers = vec![];
    for _ in 0..CONNS {
        let (s, _) = listener.accept().await.unwrap();
        servers.push(paste_rt::spawn(async move {
            while let Ok(Some(b)) = s.recv().await {
                let mut tx = s.tx_buf().unwrap();
                tx.put(&b);
                drop(b);
                s.send(tx).await.unwrap();
            }
        }));
    }
    clients.await;
    for h in servers {
        h.await.unwrap();
    }
    let d = paste_rt::stats() - before;
    assert_eq!(d.syscalls_outside_poll, 0, "{d:?}");
    let per_req = d.syscalls as f64 / (CONNS * REQS) as f64;
    eprintln!("{:?}: {per_req:.3} syscalls/request, {:.2} rx/batch", paste_rt::current_backend(), d.mean_rx_batch());
    assert!(per_req < 4.0, "{per_req} syscalls per request: {d:?}");
    paste_rt::yield_now().await;
    assert_eq!(paste_rt::stats().pool_in_use, baseline, "every buffer came back");
}

/// Many connections arriving at once (more than one tick's accept budget) are all
/// accepted without any further connection arriving to trigger the listener.
#[paste_rt::test_each_backend]
async fn a_burst_of_simultaneous_connections_is_fully_accepted() {
    const N: usize = 500;
    let listener =
        TcpListener::bind_with("127.0.0.1:0", paste_rt::net::ListenOptions { backlog: 1024, ..Default::default() })
            .unwrap();
    let addr = listener.local_addr().unwrap();
    // All connect (the kernel completes the handshakes) before the server accepts.
    let clients = off_thread(move || {
        let conns: Vec<std::net::TcpStream> = (0..N).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
        conns
    })
    .await;
    let mut accepted = Vec::with_capacity(N);
    for _ in 0..N {
        let (s, _) = paste_rt::time::timeout(Duration::from_secs(10), listener.accept())
            .await
            .expect("a connection of the burst was never accepted")
            .unwrap();
        accepted.push(s);
    }
    assert_eq!(accepted.len(), N);
    drop(clients);
}

/// Dropping `accept` and `recv` futures before they complete (here through
/// `timeout`) leaks no buffer and loses no connection or byte.
#[paste_rt::test_each_backend]
async fn dropped_accept_and_recv_futures_leak_nothing() {
    let baseline = idle_pool_baseline().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    for _ in 0..20 {
        assert!(paste_rt::time::timeout(Duration::from_millis(1), listener.accept()).await.is_err());
    }
    let client = off_thread(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        s.write_all(&pattern(100_000)).unwrap();
        s
    });
    let (stream, _) = listener.accept().await.unwrap();
    for _ in 0..20 {
        let _ = paste_rt::time::timeout(Duration::from_micros(100), stream.recv()).await;
    }
    let _client = client.await;
    let mut got = Vec::new();
    while got.len() < 100_000 {
        // Some recv futures are dropped right after buffers arrived: nothing is lost.
        if let Ok(r) = paste_rt::time::timeout(Duration::from_micros(50), stream.recv()).await {
            got.extend_from_slice(&r.unwrap().unwrap());
        }
    }
    assert!(got == pattern(100_000), "bytes lost or reordered");
    drop(stream);
    drop(listener);
    paste_rt::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(paste_rt::stats().pool_in_use, baseline, "every buffer came back");
}

/// `poll_recv_each` hands out every queued buffer in one step; buffers left when
/// the handler breaks stay first in line, in order; nothing handed out means EOF.
#[paste_rt::test_each_backend]
async fn recv_each_drains_in_order_and_keeps_what_it_did_not_hand_out() {
    use std::future::poll_fn;
    use std::ops::ControlFlow;
    const LEN: usize = 24 * 1024;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let data = pattern(LEN);
    let sent = data.clone();
    let writer = off_thread(move || {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.write_all(&sent).unwrap();
        // Stay open until the server has seen everything (EOF comes after).
        std::thread::sleep(Duration::from_millis(300));
    });
    let (s, _) = listener.accept().await.unwrap();
    // Let every byte arrive, so several buffers wait at once.
    paste_rt::time::sleep(Duration::from_millis(150)).await;
    let mut got = Vec::new();
    let first = poll_fn(|cx| {
        s.poll_recv_each(cx, |b| {
            got.extend_from_slice(&b);
            ControlFlow::Break(())
        })
    })
    .await
    .unwrap();
    assert_eq!(first.handed_out(), 1, "a break after the first buffer hands out one");
    assert!(!first.is_drained(), "buffers were left: not drained");
    let mut calls = 0;
    loop {
        let each = poll_fn(|cx| {
            s.poll_recv_each(cx, |b| {
                got.extend_from_slice(&b);
                ControlFlow::Continue(())
            })
        })
        .await
        .unwrap();
        calls += 1;
        if each.is_eof() {
            break;
        }
    }
    assert!(got == data, "bytes differ or out of order ({} of {LEN})", got.len());
    assert!(calls < LEN / 2048, "the rest came in batches, not a call per buffer ({calls} calls)");
    writer.await;
}

/// A receive that hands out everything is already registered for the next data:
/// its task may return `Pending` at once, without a second poll, and is woken when
/// more arrives. It is not registered when an EOF waits behind the data.
#[paste_rt::test_each_backend]
async fn a_drained_receive_is_already_waiting_for_the_next_data() {
    use std::future::poll_fn;
    use std::future::Future;
    use std::ops::ControlFlow;
    use std::task::Poll;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (to_client, from_server) = std::sync::mpsc::channel::<()>();
    let writer = off_thread(move || {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.write_all(b"first").unwrap();
        // The second write only once the server has taken the first and returned
        // Pending without polling again.
        from_server.recv().unwrap();
        c.write_all(b"second").unwrap();
        from_server.recv().unwrap();
    });
    let (s, _) = listener.accept().await.unwrap();
    let mut got = Vec::new();
    let mut polls = 0;
    let mut asked = false;
    // The give-up timer is looked at first: a wake-up by it (and not by the data)
    // fails the test even though the data would be there by then.
    let mut give_up = std::pin::pin!(paste_rt::time::sleep(Duration::from_secs(5)));
    let woken_by_data = poll_fn(|cx| {
        polls += 1;
        if give_up.as_mut().poll(cx).is_ready() {
            return Poll::Ready(false);
        }
        match s.poll_recv_each(cx, |b| {
            got.extend_from_slice(&b);
            ControlFlow::Continue(())
        }) {
            Poll::Ready(Ok(each)) if got.len() < b"firstsecond".len() => {
                assert!(each.is_drained(), "an open connection's queue was handed out whole");
                if !asked {
                    asked = true;
                    to_client.send(()).unwrap();
                }
                // Done with this batch: no second poll.
                Poll::Pending
            }
            Poll::Ready(Ok(_)) => Poll::Ready(true),
            Poll::Ready(Err(e)) => panic!("receive failed: {e}"),
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    assert!(woken_by_data, "the drained receive was not woken by new data ({polls} polls, got {got:?})");
    assert_eq!(got, b"firstsecond");
    to_client.send(()).unwrap();
    writer.await;
}

/// `queue_send_with_room` says when the backlog passes the limit (a peer that does
/// not read), so a handler can skip the readiness wait otherwise.
#[paste_rt::test_each_backend]
async fn queue_send_with_room_reports_a_full_backlog() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
    let peer = off_thread(move || {
        let c = std::net::TcpStream::connect(addr).unwrap();
        socket2::SockRef::from(&c).set_recv_buffer_size(4096).unwrap();
        let _ = hold_rx.recv_timeout(Duration::from_secs(10)); // never reads
        drop(c);
    });
    let (s, _) = listener.accept().await.unwrap();
    let chunk: &'static [u8] = Box::leak(vec![7u8; 64 * 1024].into_boxed_slice());
    assert!(s.queue_send_with_room(paste_rt::SendData::Static(chunk)).unwrap(), "room after 64 KiB");
    let mut queued = 64 * 1024;
    let mut full = false;
    while queued < 8 << 20 {
        queued += chunk.len();
        if !s.queue_send_with_room(paste_rt::SendData::Static(chunk)).unwrap() {
            full = true;
            break;
        }
        paste_rt::yield_now().await;
    }
    assert!(full, "no backpressure reported after {queued} bytes");
    hold_tx.send(()).unwrap();
    drop(s);
    peer.await;
}
