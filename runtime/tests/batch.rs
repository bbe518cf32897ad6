//! The batch API: one handler per tick over every ready connection.

mod support;

use std::cell::Cell;
use std::io::{Read, Write};
use std::rc::Rc;

use paste_rt::batch::{self, BatchEvent};
use paste_rt::net::TcpListener;
use paste_rt::SendData;
use support::off_thread;

#[paste_rt::test_each_backend]
async fn batch_server_echoes_and_reports_lifecycle() {
    const CLIENTS: usize = 8;
    const ROUNDS: usize = 50;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let clients = off_thread(move || {
        let ts: Vec<_> = (0..CLIENTS)
            .map(|c| {
                std::thread::spawn(move || {
                    let mut s = std::net::TcpStream::connect(addr).unwrap();
                    for r in 0..ROUNDS {
                        let msg = format!("client {c} round {r:03}");
                        s.write_all(msg.as_bytes()).unwrap();
                        let mut got = vec![0u8; msg.len()];
                        s.read_exact(&mut got).unwrap();
                        assert_eq!(got, msg.as_bytes());
                    }
                })
            })
            .collect();
        ts.into_iter().for_each(|t| t.join().unwrap());
    });
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
