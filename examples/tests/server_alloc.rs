//! phttpd allocates nothing per request on the server thread, on every backend.
//!
//! A per-thread counting global allocator (this file is the only test binary with
//! it, so other tests are not slowed) counts the allocations made by the runtime
//! thread — every server task, the tick, the backend — while a client on another
//! thread runs 10 000 keep-alive GETs, one at a time, then 500 pipelined bursts of
//! 10, after a warm-up of 1 000 GETs and 300 bursts.

mod support;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use paste_rt::net::TcpListener;
use paste_rt_examples::http::{ResponseTemplate, WRK_GET_LOCAL};
use paste_rt_examples::phttpd::{self, Config, Mode};
use support::{connect, read_n, round_trip};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

#[global_allocator]
static GLOBAL: counting_alloc::CountingAllocator = counting_alloc::CountingAllocator;

use counting_alloc::allocations;

const WARM_UP: usize = 1_000;
/// Pipelined warm-up bursts: with the single GETs, more than 128 KiB of requests,
/// so every path of steady state has run at least once — including io_uring's
/// re-arm of a multishot receive that reached its per-arming byte limit (64 KiB),
/// whose list starts empty and grows once.
const WARM_UP_BURSTS: usize = 300;
const MEASURED: usize = 10_000;
/// Pipelined bursts measured after the one-at-a-time requests.
const BURSTS: usize = 500;
const BURST: usize = 10;

#[paste_rt::test_each_backend]
async fn phttpd_serves_keep_alive_gets_without_allocating() {
    measure(Mode::Tasks).await;
}

#[paste_rt::test_each_backend]
async fn phttpd_batch_mode_serves_keep_alive_gets_without_allocating() {
    measure(Mode::Batch).await;
}

async fn measure(mode: Mode) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _server = paste_rt::spawn(phttpd::serve(listener, Config { body_len: 64, mode }));

    // Client thread: warm up, report, wait for the go (an atomic: signalling must not
    // allocate on the server thread), run the measured requests, report.
    let go = Arc::new(AtomicBool::new(false));
    let (warm_tx, warm_rx) = futures_channel::oneshot::channel::<()>();
    let (done_tx, done_rx) = futures_channel::oneshot::channel::<usize>();
    let client = {
        let go = go.clone();
        std::thread::spawn(move || {
            let ok = ResponseTemplate::new(64).as_bytes().to_vec();
            let burst = WRK_GET_LOCAL.repeat(BURST);
            let mut c = connect(addr);
            for _ in 0..WARM_UP {
                round_trip(&mut c, WRK_GET_LOCAL, &ok);
            }
            for _ in 0..WARM_UP_BURSTS {
                round_trip(&mut c, &burst, &ok.repeat(BURST));
            }
            warm_tx.send(()).unwrap();
            while !go.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
            let mut answered = 0;
            for _ in 0..MEASURED {
                c.write_all(WRK_GET_LOCAL).unwrap();
                assert_eq!(read_n(&mut c, ok.len()), ok);
                answered += 1;
            }
            for _ in 0..BURSTS {
                c.write_all(&burst).unwrap();
                for _ in 0..BURST {
                    assert_eq!(read_n(&mut c, ok.len()), ok);
                    answered += 1;
                }
            }
            done_tx.send(answered).unwrap();
            // The connection stays open until the count is read: its end (and the
            // server's close) are not part of the measured requests.
            while go.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(c);
        })
    };

    warm_rx.await.expect("client failed during warm-up (its panic is above)");
    let before = allocations();
    go.store(true, Ordering::Release);
    let answered = done_rx.await.expect("client failed (its panic is above)");
    let allocated = allocations() - before;
    go.store(false, Ordering::Release);
    client.join().unwrap();

    assert_eq!(answered, MEASURED + BURSTS * BURST);
    assert_eq!(
        allocated,
        0,
        "the server thread allocated {allocated} times while answering {answered} requests on {} ({mode:?} mode)",
        paste_rt::current_backend().unwrap()
    );
}
