//! The echo server over TCP on every backend: 1 MB comes back byte-exact, then FIN.

mod support;

use std::io::Write;

use paste_rt::net::TcpListener;
use paste_rt_examples::echo;
use support::{connect, off_thread, pattern, read_to_eof, round_trip};

#[paste_rt::test_each_backend]
async fn one_megabyte_round_trip() {
    const LEN: usize = 1 << 20;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _server = paste_rt::spawn(echo::serve(listener));
    let echoed = off_thread(move || {
        let c = connect(addr);
        // Write from a second thread while this one reads: the echo only flows while
        // the client drains it.
        let mut w = c.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            for piece in pattern(LEN).chunks(10_000) {
                w.write_all(piece).unwrap();
            }
            w.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let mut r = c;
        let got = read_to_eof(&mut r);
        writer.join().unwrap();
        got
    })
    .await;
    assert_eq!(echoed.len(), LEN);
    assert!(echoed == pattern(LEN), "echoed bytes differ from those sent");
}

#[paste_rt::test_each_backend]
async fn small_messages_keep_their_order_on_many_connections() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _server = paste_rt::spawn(echo::serve(listener));
    let clients: Vec<_> = (0..8u8)
        .map(|id| {
            off_thread(move || {
                let mut c = connect(addr);
                for i in 0..200u32 {
                    let msg = format!("client {id} message {i}\n");
                    round_trip(&mut c, msg.as_bytes(), msg.as_bytes());
                }
                200
            })
        })
        .collect();
    let mut total = 0;
    for c in clients {
        total += c.await;
    }
    assert_eq!(total, 1600);
}
