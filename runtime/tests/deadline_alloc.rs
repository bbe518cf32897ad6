//! Receive deadlines allocate nothing: setting, moving and clearing one, and having
//! it expire through the tick's sweep, on every backend. A per-thread counting
//! global allocator (the examples' one, shared by path) counts the runtime thread's
//! allocations; this is the only test of this binary, so nothing else is counted.

mod support;

use std::io::ErrorKind;
use std::time::Duration;

use paste_rt::net::TcpListener;
use paste_rt::time::coarse_now;
use support::off_thread;

#[path = "../../examples/tests/support/counting_alloc.rs"]
mod counting_alloc;

#[global_allocator]
static GLOBAL: counting_alloc::CountingAllocator = counting_alloc::CountingAllocator;

#[paste_rt::test_each_backend]
async fn setting_and_expiring_receive_deadlines_allocates_nothing() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = off_thread(move || std::net::TcpStream::connect(addr).unwrap());
    let (server, _) = listener.accept().await.unwrap();
    let _client = client.await;
    // Warm-up: one expiry through the sweep, so every path has run once.
    server.set_recv_deadline(Some(coarse_now() + Duration::from_millis(1)));
    assert_eq!(server.recv().await.unwrap_err().kind(), ErrorKind::TimedOut);

    let before = counting_alloc::allocations();
    for i in 0..10_000u32 {
        let at = coarse_now() + Duration::from_secs(10 + u64::from(i % 7));
        server.set_recv_deadline(Some(at));
        if i % 3 == 0 {
            server.set_recv_deadline(None);
        }
    }
    for _ in 0..5 {
        server.set_recv_deadline(Some(coarse_now() + Duration::from_millis(2)));
        assert_eq!(server.recv().await.unwrap_err().kind(), ErrorKind::TimedOut);
    }
    server.set_recv_deadline(None);
    let allocations = counting_alloc::allocations() - before;
    assert_eq!(allocations, 0, "allocations while setting 10 000 deadlines and letting 5 expire");
}
