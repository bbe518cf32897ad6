//! A first end-to-end check: an echo server on each backend, a std client.

use std::io::{Read, Write};

#[paste_rt::test_each_backend]
async fn echo_round_trip() {
    let listener = paste_rt::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"hello paste").unwrap();
        let mut got = [0u8; 11];
        s.read_exact(&mut got).unwrap();
        got
    });
    let (stream, _) = listener.accept().await.unwrap();
    let buf = stream.recv().await.unwrap().unwrap();
    let mut tx = stream.tx_buf().unwrap();
    tx.put(&buf);
    stream.send(tx).await.unwrap();
    stream.flush().await.unwrap();
    // The client thread finishes by itself; join it from a helper thread so the
    // runtime thread never blocks.
    let got = paste_rt::runtime::Builder::new();
    let _ = got;
    let (tx, rx) = futures_channel::oneshot::channel();
    std::thread::spawn(move || tx.send(client.join().unwrap()));
    assert_eq!(&rx.await.unwrap(), b"hello paste");
}
