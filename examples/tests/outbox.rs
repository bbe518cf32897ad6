//! `Outbox` on every backend: pieces of every size around a pool buffer's end (the
//! inlined common case, a piece that fills the buffer exactly, one that spills into
//! the next) reach the peer byte-exact and in order.

mod support;

use paste_rt::net::{TcpListener, TcpStream};
use paste_rt_examples::outbox::Outbox;
use support::{off_thread, pattern, read_to_eof};

#[paste_rt::test_each_backend]
async fn pieces_of_every_size_arrive_in_order() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = off_thread(move || read_to_eof(&mut std::net::TcpStream::connect(addr).unwrap()));
    let (stream, _) = listener.accept().await.unwrap();
    let capacity = stream.tx_buf().expect("a free pool buffer").capacity();
    // Sizes 0..=capacity + 1 in turn, cut from one pattern: every way a piece can
    // meet the end of the buffer being filled comes up.
    let sizes: Vec<usize> =
        (0..=capacity + 1).step_by(97).chain([1, capacity - 1, 1, capacity, capacity + 1]).collect();
    let total: usize = sizes.iter().sum();
    let expected = pattern(total);
    send_pieces(&stream, &expected, &sizes).await;
    stream.shutdown().await.unwrap();
    drop(stream);
    let got = received.await;
    assert_eq!(got.len(), total, "every byte put arrives");
    assert!(got == expected, "bytes arrive in the order they were put");
}

async fn send_pieces(stream: &TcpStream, bytes: &[u8], sizes: &[usize]) {
    let mut out = Outbox::new(stream);
    let mut at = 0;
    for &n in sizes {
        out.put(&bytes[at..at + n]);
        at += n;
        if out.is_full() {
            out.flush().unwrap();
            std::future::poll_fn(|cx| out.poll_room(cx)).await.unwrap();
        }
    }
    out.flush().unwrap();
    stream.flush().await.unwrap();
}
