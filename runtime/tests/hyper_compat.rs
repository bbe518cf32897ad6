//! `compat::hyper` on its own: the timer's sleeps fire and reset in place on every
//! backend, the executor runs `!Send` futures, and `HyperIo` hands hyper a large
//! message through a small buffer without losing a byte. (hyper serving real HTTP
//! on every backend is `examples/tests/hyper.rs`.)

mod support;

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hyper::rt::{Executor, Read, ReadBuf, Timer};
use paste_rt::compat::hyper::{HyperIo, HyperSleep, HyperTimer, LocalExec};
use paste_rt::net::TcpListener;
use support::{off_thread, pattern};

const LIMIT: Duration = Duration::from_secs(10);

#[paste_rt::test_each_backend]
async fn timer_sleeps_fire_and_reset_in_place() {
    let timer = HyperTimer;
    timer.sleep(Duration::from_millis(2)).await;
    // An hour away, then reset to now: completes only if the reset reached the
    // runtime timer (the downcast path reuses the same sleep).
    let mut sleep = timer.sleep_until(Instant::now() + Duration::from_secs(3600));
    assert!(sleep.is::<HyperSleep>());
    timer.reset(&mut sleep, Instant::now());
    paste_rt::time::timeout(LIMIT, sleep).await.expect("the reset sleep never fired");
    // Dropped while pending: a later sleep still fires.
    drop(timer.sleep(Duration::from_secs(3600)));
    paste_rt::time::timeout(LIMIT, timer.sleep(Duration::from_millis(1))).await.unwrap();
}

#[paste_rt::test]
async fn sleeps_are_send_and_sync_as_hyper_requires() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    let sleep = HyperSleep::new(Instant::now());
    send_sync(&sleep);
    sleep.await;
}

#[paste_rt::test]
async fn the_executor_runs_non_send_futures() {
    let ran = Rc::new(Cell::new(0));
    for _ in 0..3 {
        let ran = ran.clone();
        LocalExec.execute(async move { ran.set(ran.get() + 1) });
    }
    while ran.get() < 3 {
        paste_rt::yield_now().await;
    }
    assert_eq!(ran.get(), 3);
}

#[paste_rt::test_each_backend]
async fn reads_through_a_small_buffer_lose_nothing() {
    const LEN: usize = 100_000;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = off_thread(move || {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(&pattern(LEN)).unwrap();
    });
    let (stream, _) = listener.accept().await.unwrap();
    let mut io = HyperIo::new(stream);
    let mut got = Vec::with_capacity(LEN);
    loop {
        // 100 bytes at a time: each received buffer is split over many reads.
        let mut space = [0u8; 100];
        let mut buf = ReadBuf::new(&mut space);
        std::future::poll_fn(|cx| Pin::new(&mut io).poll_read(cx, buf.unfilled())).await.unwrap();
        if buf.filled().is_empty() {
            break;
        }
        got.extend_from_slice(buf.filled());
    }
    client.await;
    assert_eq!(got.len(), LEN);
    assert!(got == pattern(LEN), "bytes differ from those sent");
}
