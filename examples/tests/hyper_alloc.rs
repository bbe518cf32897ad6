//! The hyper example allocates nothing per request in paste-rt's part, on every
//! backend: its body is a `Bytes::from_static`, and what paste-rt does for each
//! request — receiving, hyper's reads and writes through `HyperIo`, the flush, the
//! timer's sleeps, the executor, the tick, the backend — allocates nothing once warm.
//!
//! The tests' counting allocator (`support/counting_alloc.rs`), with per-thread
//! layers, attributes each allocation of the server thread to the layer that made it:
//! *hyper* (hyper's connection future: parsing, `http` types, the service), or
//! *paste-rt* (everything else on the thread, and every call hyper makes back into
//! paste-rt's adapters). One allocation of paste-rt's adapters is hyper's by
//! design and counted apart: hyper's `Timer` trait returns `Pin<Box<dyn Sleep>>`,
//! and hyper's HTTP/1 server asks for a new sleep (its header-read timeout) for each
//! request head, so `HyperTimer::sleep_until` boxes one per request — as hyper-util's
//! `TokioTimer` does.

mod support;

use std::future::Future;
use std::io::{Read, Write};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Read as HyperRead, ReadBufCursor, Sleep, Timer, Write as HyperWrite};
use paste_rt::compat::hyper::{HyperIo, HyperTimer};
use paste_rt::net::TcpListener;
use paste_rt_examples::hyper_server;
use support::connect;

/// Who made an allocation (see the module docs).
#[derive(Clone, Copy)]
#[repr(u8)]
enum Layer {
    PasteRt = 0,
    Hyper = 1,
    /// `HyperTimer::sleep_until`'s `Box::pin`, which hyper's `Timer` trait demands.
    TimerBox = 2,
    /// This test's own wrappers.
    Test = 3,
}

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

#[global_allocator]
static GLOBAL: counting_alloc::CountingAllocator = counting_alloc::CountingAllocator;

/// Runs `f` with allocations attributed to `layer`.
fn in_layer<R>(layer: Layer, f: impl FnOnce() -> R) -> R {
    counting_alloc::in_layer(layer as u8, f)
}

/// This thread's allocations so far, per layer.
fn counts() -> [u64; counting_alloc::LAYERS] {
    counting_alloc::allocations_by_layer()
}

/// The hyper connection future: its polls are hyper's.
struct HyperPart<F>(Pin<Box<F>>);

impl<F: Future> Future for HyperPart<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        in_layer(Layer::Hyper, || self.0.as_mut().poll(cx))
    }
}

/// `HyperIo` as hyper calls it: every call is paste-rt's.
struct PasteIo(HyperIo);

impl HyperRead for PasteIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<std::io::Result<()>> {
        in_layer(Layer::PasteRt, || Pin::new(&mut self.0).poll_read(cx, buf))
    }
}

impl HyperWrite for PasteIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        in_layer(Layer::PasteRt, || Pin::new(&mut self.0).poll_write(cx, data))
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        in_layer(Layer::PasteRt, || Pin::new(&mut self.0).poll_flush(cx))
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        in_layer(Layer::PasteRt, || Pin::new(&mut self.0).poll_shutdown(cx))
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

/// `HyperTimer` as hyper calls it.
#[derive(Clone)]
struct PasteTimer;

/// A `HyperSleep` as hyper polls it: paste-rt's.
struct PasteSleep(Pin<Box<dyn Sleep>>);

impl Future for PasteSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        in_layer(Layer::PasteRt, || self.0.as_mut().poll(cx))
    }
}

impl Sleep for PasteSleep {}

impl Drop for PasteSleep {
    fn drop(&mut self) {
        let inner = std::mem::replace(&mut self.0, Box::pin(NoopSleep));
        in_layer(Layer::PasteRt, || drop(inner));
    }
}

/// A finished sleep, left in a `PasteSleep` being dropped (zero-sized: its
/// `Box::pin` allocates nothing).
struct NoopSleep;
impl Future for NoopSleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Ready(())
    }
}
impl Sleep for NoopSleep {}

impl Timer for PasteTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        let inner = in_layer(Layer::TimerBox, || HyperTimer.sleep_until(deadline));
        in_layer(Layer::Test, || Box::pin(PasteSleep(inner)))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<PasteSleep>() {
            Some(ours) => {
                let ours = ours.get_mut();
                in_layer(Layer::PasteRt, || HyperTimer.reset(&mut ours.0, new_deadline));
            }
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

const WARM_UP: usize = 2_000;
const MEASURED: usize = 5_000;
const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// Reads one response; returns its body.
fn read_response(c: &mut std::net::TcpStream, pending: &mut Vec<u8>) -> Vec<u8> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&pending[..end]).unwrap().to_ascii_lowercase();
            assert!(head.starts_with("http/1.1 200"), "unexpected response: {head}");
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .expect("a content-length")
                .trim()
                .parse()
                .unwrap();
            while pending.len() < end + 4 + len {
                let n = c.read(&mut chunk).unwrap();
                assert!(n > 0, "the server closed mid-response");
                pending.extend_from_slice(&chunk[..n]);
            }
            let body = pending[end + 4..end + 4 + len].to_vec();
            pending.drain(..end + 4 + len);
            return body;
        }
        let n = c.read(&mut chunk).unwrap();
        assert!(n > 0, "the server closed before answering");
        pending.extend_from_slice(&chunk[..n]);
    }
}

#[paste_rt::test_each_backend]
async fn the_hyper_example_allocates_nothing_per_request_in_paste_rts_part() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // The example's connection setup, with the layers marked.
    let server = paste_rt::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let _ = stream.set_nodelay(true);
        let mut builder = hyper_server::builder();
        builder.http1().timer(PasteTimer);
        let service = hyper::service::service_fn(hyper_server::respond);
        let conn = builder.serve_connection(PasteIo(HyperIo::new(stream)), service);
        let _ = HyperPart(Box::pin(conn)).await;
    });

    let go = Arc::new(AtomicBool::new(false));
    let (warm_tx, warm_rx) = futures_channel::oneshot::channel::<()>();
    let (done_tx, done_rx) = futures_channel::oneshot::channel::<usize>();
    let client = {
        let go = go.clone();
        std::thread::spawn(move || {
            let mut c = connect(addr);
            let mut pending = Vec::new();
            for _ in 0..WARM_UP {
                c.write_all(GET).unwrap();
                assert_eq!(read_response(&mut c, &mut pending), paste_rt_examples::http::BODY_PATTERN);
            }
            warm_tx.send(()).unwrap();
            while !go.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
            let mut answered = 0;
            for _ in 0..MEASURED {
                c.write_all(GET).unwrap();
                assert_eq!(read_response(&mut c, &mut pending), paste_rt_examples::http::BODY_PATTERN);
                answered += 1;
            }
            done_tx.send(answered).unwrap();
        })
    };

    warm_rx.await.expect("client failed during warm-up (its panic is above)");
    let before = counts();
    go.store(true, Ordering::Release);
    let answered = done_rx.await.expect("client failed (its panic is above)");
    let after = counts();
    client.join().unwrap();
    // The client closed its connection: hyper finishes it.
    paste_rt::time::timeout(Duration::from_secs(10), server).await.expect("the connection never ended").unwrap();

    let per = |layer: Layer| (after[layer as usize] - before[layer as usize]) as f64 / answered as f64;
    let backend = paste_rt::current_backend().unwrap();
    eprintln!(
        "{backend}: allocations per request: paste-rt {:.3}, hyper {:.3}, hyper's Timer boxes {:.3}",
        per(Layer::PasteRt),
        per(Layer::Hyper),
        per(Layer::TimerBox)
    );
    assert_eq!(answered, MEASURED);
    assert!(per(Layer::Hyper) > 0.0, "hyper allocated nothing: the attribution is broken, the test proves nothing");
    assert_eq!(
        after[Layer::PasteRt as usize] - before[Layer::PasteRt as usize],
        0,
        "{backend}: paste-rt allocated while serving {answered} hyper requests"
    );
    assert!(per(Layer::TimerBox) <= 1.0, "{backend}: more than the one sleep per request head hyper asks for");
}
