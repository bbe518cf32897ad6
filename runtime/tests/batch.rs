//! The batch API: one handler per tick over every ready connection.

mod support;

use std::cell::Cell;
use std::io::{Read, Write};
use std::rc::Rc;

use paste_rt::batch::{self, Batch, BatchEvent};
use paste_rt::net::TcpListener;
use paste_rt::SendData;
use support::client_threads;

/// One echo client: `rounds` messages, each read back before the next. A lost
/// event would leave it waiting, so its reads time out instead.
fn echo_rounds(addr: std::net::SocketAddr, client: usize, rounds: usize) {
    echo_rounds_then(addr, client, rounds, || {});
}

/// [`echo_rounds`], calling `after_first_echo` once the first message came back.
fn echo_rounds_then(addr: std::net::SocketAddr, client: usize, rounds: usize, after_first_echo: impl FnOnce()) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    let mut after_first_echo = Some(after_first_echo);
    for r in 0..rounds {
        let msg = format!("client {client} round {r:03}");
        s.write_all(msg.as_bytes()).unwrap();
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got).expect("echoed (a connection never accepted times out here)");
        assert_eq!(got, msg.as_bytes());
        if let Some(f) = after_first_echo.take() {
            f();
        }
    }
}

/// The echo servers' handling of one event: data goes back as an owned copy, each
/// open and clean close is counted, and the server stops once `clients` closed.
fn echo_owned(batch: &mut Batch<'_>, event: BatchEvent, opened: &Cell<usize>, closed: &Cell<usize>, clients: usize) {
    match event {
        BatchEvent::Opened(_) => opened.set(opened.get() + 1),
        BatchEvent::Data(conn, buf) => batch.send(conn, SendData::Owned(buf.to_vec())).unwrap(),
        BatchEvent::TimedOut(_) => panic!("no receive deadline was set"),
        BatchEvent::Closed(_, err) => {
            assert!(err.is_none(), "clean EOF expected: {err:?}");
            closed.set(closed.get() + 1);
            if closed.get() == clients {
                batch.stop();
            }
        }
    }
}

#[paste_rt::test_each_backend]
async fn batch_server_echoes_and_reports_lifecycle() {
    const CLIENTS: usize = 8;
    const ROUNDS: usize = 50;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let clients = client_threads(CLIENTS, move |c| echo_rounds(addr, c, ROUNDS));
    let (opened, closed, handler_calls) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
    let (o, c, h) = (opened.clone(), closed.clone(), handler_calls.clone());
    let server = paste_rt::spawn(batch::serve(listener, move |batch| {
        h.set(h.get() + 1);
        while let Some(event) = batch.next_event() {
            match event {
                BatchEvent::Opened(_) => o.set(o.get() + 1),
                BatchEvent::Data(conn, buf) => {
                    let mut tx = batch.tx_buf().expect("pool has room");
                    tx.put(&buf);
                    batch.send(conn, SendData::Pool(tx)).unwrap();
                }
                BatchEvent::TimedOut(_) => panic!("no receive deadline was set"),
                BatchEvent::Closed(_, err) => {
                    assert!(err.is_none(), "clean EOF expected: {err:?}");
                    c.set(c.get() + 1);
                    if c.get() == CLIENTS {
                        batch.stop();
                    }
                }
            }
        }
    }));
    clients.await;
    server.await.unwrap().unwrap();
    assert_eq!(opened.get(), CLIENTS);
    assert_eq!(closed.get(), CLIENTS);
    assert!(handler_calls.get() > 0);
    paste_rt::yield_now().await;
}

#[paste_rt::test_each_backend]
async fn batch_server_reports_every_buffer_before_the_end_that_follows_it() {
    // Each client sends its bytes in several writes and shuts down its side at once,
    // so buffers and the end often wait together: every byte comes, in order, before
    // the one `Closed`.
    const CLIENTS: usize = 6;
    const WRITES: usize = 20;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let expected: Vec<u8> = (0..WRITES).flat_map(|w| format!("write {w:02};").into_bytes()).collect();
    let sent = expected.clone();
    let clients = client_threads(CLIENTS, move |_| {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        for piece in sent.chunks(sent.len() / WRITES) {
            s.write_all(piece).unwrap();
        }
        s.shutdown(std::net::Shutdown::Write).unwrap();
        // The server closes once it has seen the end.
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "nothing was sent back");
    });
    let received: Rc<std::cell::RefCell<Vec<Option<Vec<u8>>>>> = Rc::default();
    let ended = Rc::new(Cell::new(0));
    let (r, e) = (received.clone(), ended.clone());
    let server = paste_rt::spawn(batch::serve(listener, move |batch| {
        while let Some(event) = batch.next_event() {
            let mut got = r.borrow_mut();
            match event {
                BatchEvent::Opened(conn) => {
                    if got.len() <= conn.index() {
                        got.resize(conn.index() + 1, None);
                    }
                    got[conn.index()] = Some(Vec::new());
                }
                BatchEvent::Data(conn, buf) => {
                    got[conn.index()].as_mut().expect("data after open, before the end").extend_from_slice(&buf);
                }
                BatchEvent::TimedOut(_) => panic!("no receive deadline was set"),
                BatchEvent::Closed(conn, err) => {
                    assert!(err.is_none(), "clean EOF expected: {err:?}");
                    let bytes = got[conn.index()].take().expect("one end per connection");
                    assert_eq!(bytes, expected, "every byte, in order, before the end");
                    e.set(e.get() + 1);
                    if e.get() == CLIENTS {
                        batch.stop();
                    }
                }
            }
        }
    }));
    clients.await;
    server.await.unwrap().unwrap();
    assert_eq!(ended.get(), CLIENTS);
    paste_rt::yield_now().await;
}

#[paste_rt::test_each_backend]
async fn events_a_handler_leaves_come_in_its_next_call() {
    // The handler takes one event per call: the rest of the batch stays queued and
    // comes at once in the following calls, so every client is still echoed.
    const CLIENTS: usize = 4;
    const ROUNDS: usize = 20;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let clients = client_threads(CLIENTS, move |c| echo_rounds(addr, c, ROUNDS));
    let (opened, closed) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
    let (o, c) = (opened.clone(), closed.clone());
    let server = paste_rt::spawn(batch::serve(listener, move |batch| {
        if let Some(event) = batch.next_event() {
            echo_owned(batch, event, &o, &c, CLIENTS);
        }
    }));
    clients.await;
    server.await.unwrap().unwrap();
    assert_eq!(closed.get(), CLIENTS);
    paste_rt::yield_now().await;
}

#[paste_rt::test_each_backend]
async fn a_connection_that_arrives_while_others_are_served_is_accepted() {
    // Client c connects only once clients 0..c have been echoed once and go on
    // echoing: every accept lands while the server is in the middle of batches of
    // data, never in a quiet moment.
    const CLIENTS: usize = 5;
    const ROUNDS: usize = 40;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let started = std::sync::Arc::new((std::sync::Mutex::new(0usize), std::sync::Condvar::new()));
    let clients = client_threads(CLIENTS, move |c| {
        let (count, cv) = &*started;
        drop(cv.wait_while(count.lock().unwrap(), |n| *n < c).unwrap());
        echo_rounds_then(addr, c, ROUNDS, || {
            *count.lock().unwrap() += 1;
            cv.notify_all();
        });
    });
    let (opened, closed) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
    let (o, c) = (opened.clone(), closed.clone());
    let server = paste_rt::spawn(batch::serve(listener, move |batch| {
        while let Some(event) = batch.next_event() {
            echo_owned(batch, event, &o, &c, CLIENTS);
        }
    }));
    clients.await;
    server.await.unwrap().unwrap();
    assert_eq!((opened.get(), closed.get()), (CLIENTS, CLIENTS));
    paste_rt::yield_now().await;
}

/// A handler that echoes every buffer it gets.
fn echo_every_buffer(batch: &mut Batch<'_>) {
    while let Some(event) = batch.next_event() {
        if let BatchEvent::Data(conn, buf) = event {
            batch.send(conn, SendData::Owned(buf.to_vec())).unwrap();
        }
    }
}

#[paste_rt::test_each_backend]
async fn dropping_a_batch_server_closes_its_connections() {
    // The runtime calls the handler from its tick; the future of `serve` only waits
    // for the end. Dropping it (here, aborting its task) still ends the server: each
    // of its connections is closed, so the client reads its end instead of waiting.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = paste_rt::spawn(batch::serve(listener, echo_every_buffer));
    let stream = support::off_thread(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        s.write_all(b"ping").unwrap();
        let mut got = [0u8; 4];
        s.read_exact(&mut got).expect("echoed");
        assert_eq!(&got, b"ping");
        s
    })
    .await;
    server.abort();
    let rest = support::off_thread(move || {
        let mut s = stream;
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).map(|_| rest)
    })
    .await;
    assert_eq!(rest.expect("closed by the server, not timed out"), b"");
}

#[paste_rt::test_each_backend]
async fn a_panicking_handler_ends_its_server_and_the_panic_comes_out_of_serve() {
    // The handler runs from the tick, outside any task: its panic is caught there,
    // the server ends (its connections closed), and the panic comes out of the
    // future of `serve` (here, as the task's `JoinError`). The runtime goes on.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = paste_rt::spawn(batch::serve(listener, |batch| {
        while let Some(event) = batch.next_event() {
            if let BatchEvent::Data(..) = event {
                panic!("the handler gives up");
            }
        }
    }));
    let client = support::off_thread(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        s.write_all(b"ping").unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).map(|_| rest)
    });
    let err = server.await.expect_err("the handler panicked");
    assert!(err.is_panic(), "{err:?}");
    assert!(err.to_string().contains("the handler gives up"), "{err}");
    assert_eq!(client.await.expect("closed by the server, not timed out"), b"");
    assert_eq!(paste_rt::spawn(async { 7 }).await.unwrap(), 7);
}

#[paste_rt::test_each_backend]
async fn two_batch_servers_on_one_runtime_run_apart_and_one_ending_leaves_the_other_serving() {
    // The tick walks every batch server; the first one stops after its first
    // request (it leaves the list during the walk), the second goes on answering.
    let first = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let second = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (first_addr, second_addr) = (first.local_addr().unwrap(), second.local_addr().unwrap());
    let first_server = paste_rt::spawn(batch::serve(first, |batch| {
        while let Some(event) = batch.next_event() {
            if let BatchEvent::Data(conn, buf) = event {
                batch.send(conn, SendData::Owned(buf.to_vec())).unwrap();
                batch.stop();
            }
        }
    }));
    let second_server = paste_rt::spawn(batch::serve(second, echo_every_buffer));
    let client = support::off_thread(move || {
        let mut a = std::net::TcpStream::connect(first_addr).unwrap();
        let mut b = std::net::TcpStream::connect(second_addr).unwrap();
        for s in [&a, &b] {
            s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        }
        // Both in flight at once, so that one tick often finds both servers' news.
        a.write_all(b"first").unwrap();
        b.write_all(b"second 0").unwrap();
        let mut got = [0u8; 5];
        a.read_exact(&mut got).expect("the first server answers once");
        assert_eq!(&got, b"first");
        let mut rest = Vec::new();
        a.read_to_end(&mut rest).expect("the first server closed its connection");
        assert!(rest.is_empty());
        let mut got = [0u8; 8];
        b.read_exact(&mut got).expect("echoed");
        assert_eq!(&got, b"second 0");
        for round in 1..20 {
            let msg = format!("second {round:x}");
            b.write_all(msg.as_bytes()).unwrap();
            let mut got = vec![0u8; msg.len()];
            b.read_exact(&mut got).expect("the second server still answers");
            assert_eq!(got, msg.as_bytes());
        }
    });
    first_server.await.unwrap().unwrap();
    client.await;
    second_server.abort();
}
