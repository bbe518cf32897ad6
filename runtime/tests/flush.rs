//! What `poll_flush` of the tokio/futures I/O traits guarantees, on every backend:
//! it is ready as soon as the bytes are queued (no tick), the bytes then leave with
//! no further call — even if the stream is dropped right away — a send that fails
//! after the flush surfaces on the next write, and `shutdown` is the barrier that
//! waits until the kernel has taken everything.

mod support;

use std::io::{ErrorKind, Read};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use support::{connected, pattern};
use tokio::io::{AsyncWrite, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(20);

fn read_all(mut c: std::net::TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    got
}

#[paste_rt::test_each_backend]
async fn tokio_and_futures_flush_are_ready_once_queued_and_the_bytes_leave_with_no_further_call() {
    let (mut server, client) = connected(|mut c| {
        let mut got = vec![0u8; 11];
        c.read_exact(&mut got).unwrap();
        got
    })
    .await;
    let mut cx = Context::from_waker(Waker::noop());
    let mut s = Pin::new(&mut server);
    assert!(matches!(AsyncWrite::poll_write(s.as_mut(), &mut cx, b"hello "), Poll::Ready(Ok(6))));
    // No tick has run: the bytes are only queued, and the flush is ready anyway.
    assert!(matches!(AsyncWrite::poll_flush(s.as_mut(), &mut cx), Poll::Ready(Ok(()))));
    assert_eq!(server.queued(), 6, "still queued: the kernel has not seen them yet");
    let mut s = Pin::new(&mut server);
    assert!(matches!(futures_io::AsyncWrite::poll_write(s.as_mut(), &mut cx, b"world"), Poll::Ready(Ok(5))));
    assert!(matches!(futures_io::AsyncWrite::poll_flush(s.as_mut(), &mut cx), Poll::Ready(Ok(()))));
    // The runtime sends them at its next poll; nothing else is asked of the writer.
    let got = paste_rt::time::timeout(LIMIT, client).await.expect("the flushed bytes never left");
    assert_eq!(got, b"hello world");
}

#[paste_rt::test_each_backend]
async fn a_stream_dropped_right_after_flush_still_sends_everything_it_queued() {
    const LEN: usize = 300_000;
    let (mut server, client) = connected(read_all).await;
    AsyncWriteExt::write_all(&mut server, &pattern(LEN)).await.unwrap();
    AsyncWriteExt::flush(&mut server).await.unwrap();
    assert!(server.queued() > 0, "the flush waited for the kernel");
    drop(server); // lingers until its queue is sent, then closes
    let got = paste_rt::time::timeout(LIMIT, client).await.expect("client stalled");
    assert_eq!(got.len(), LEN, "bytes lost after the flush");
    assert!(got == pattern(LEN), "bytes altered");
}

#[paste_rt::test_each_backend]
async fn a_send_failing_after_the_flush_surfaces_on_the_next_write() {
    let kind = paste_rt::current_backend().unwrap();
    let (mut server, client) = connected(read_all).await;
    // Our own write half is shut: the kernel refuses the next send (EPIPE), but only
    // when it gets it, at the next tick — after the flush below returned.
    AsyncWriteExt::shutdown(&mut server).await.unwrap();
    AsyncWriteExt::write_all(&mut server, b"after our own FIN").await.unwrap();
    AsyncWriteExt::flush(&mut server).await.expect("the flush only waits for the bytes to be queued");
    let mut failed = None;
    for _ in 0..200 {
        paste_rt::time::sleep(Duration::from_millis(5)).await;
        if let Err(e) = AsyncWriteExt::write_all(&mut server, b"more").await {
            failed = Some(e);
            break;
        }
    }
    let e = failed.unwrap_or_else(|| panic!("{kind}: a send refused by the kernel never reported its error"));
    assert_eq!(e.kind(), ErrorKind::BrokenPipe, "{kind}: {e}");
    // Sticky: a flush reports it too.
    assert!(AsyncWriteExt::flush(&mut server).await.is_err(), "{kind}");
    assert_eq!(paste_rt::time::timeout(LIMIT, client).await.expect("client stalled"), b"", "{kind}");
}

#[paste_rt::test_each_backend]
async fn shutdown_waits_until_the_kernel_has_taken_everything() {
    const LEN: usize = 1 << 20;
    let (mut server, client) = connected(|c| {
        std::thread::sleep(Duration::from_millis(50));
        read_all(c)
    })
    .await;
    AsyncWriteExt::write_all(&mut server, &pattern(LEN)).await.unwrap();
    AsyncWriteExt::shutdown(&mut server).await.unwrap();
    assert_eq!(server.queued(), 0, "shutdown returned with bytes still queued");
    let got = paste_rt::time::timeout(LIMIT, client).await.expect("client stalled");
    assert!(got == pattern(LEN), "{} bytes arrived", got.len());
}
