//! `HyperIo`'s flush, on every backend: ready as soon as a response is queued (no
//! tick), after which it leaves with no further call; `poll_shutdown` waits until
//! the kernel has taken everything.

mod support;

use std::io::Read;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use hyper::rt::Write;
use paste_rt::compat::hyper::HyperIo;
use paste_rt::net::TcpListener;
use support::off_thread;

#[paste_rt::test_each_backend]
async fn a_flush_is_ready_once_the_response_is_queued_and_shutdown_waits_for_the_kernel() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = off_thread(move || {
        let mut got = Vec::new();
        std::net::TcpStream::connect(addr).unwrap().read_to_end(&mut got).unwrap();
        got
    });
    let (stream, _) = listener.accept().await.unwrap();
    let mut io = HyperIo::new(stream);
    let mut cx = Context::from_waker(Waker::noop());
    let response = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    assert!(matches!(Pin::new(&mut io).poll_write(&mut cx, response), Poll::Ready(Ok(n)) if n == response.len()));
    assert!(matches!(Pin::new(&mut io).poll_flush(&mut cx), Poll::Ready(Ok(()))), "no tick needed");
    assert_eq!(io.get_ref().queued(), response.len() as u64, "queued, not yet taken by the kernel");
    std::future::poll_fn(|cx| Pin::new(&mut io).poll_shutdown(cx)).await.unwrap();
    assert_eq!(io.get_ref().queued(), 0, "shutdown waited until the kernel took it");
    let got = paste_rt::time::timeout(Duration::from_secs(20), client).await.expect("client stalled");
    assert_eq!(got, response);
}
