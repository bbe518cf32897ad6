//! `bytes` in the data path, on every backend: a `Bytes` made from a received
//! buffer outlives its connection and gives the buffer back when it drops, held
//! `Bytes` drain the pool (receiving pauses, nothing is lost, it resumes), `Bytes`
//! dropped on another thread come back through the return list and wake the
//! runtime, a `Bytes` may outlive its runtime, and `send_bytes` of 1 MiB arrives
//! byte-exact — with no copy on io_uring and epoll and exactly one on PASTE — and
//! several `Bytes` queued at once leave gathered.

mod support;

use std::future::Future;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use bytes::Bytes;
use paste_rt::net::{TcpListener, TcpStream};
use paste_rt::{BackendKind, SendData};
use support::{connected, off_thread, pattern};

const LIMIT: Duration = Duration::from_secs(20);

#[paste_rt::test_each_backend]
async fn a_bytes_from_an_rxbuf_outlives_its_connection_and_its_buffer_comes_back_when_it_drops() {
    let (server, client) = connected(|mut c| c.write_all(b"kept beyond the connection").unwrap()).await;
    client.await;
    let rx = server.recv().await.unwrap().expect("data, not EOF");
    let (index, at) = (rx.index(), rx.as_ptr());
    let kept = rx.into_bytes();
    assert_eq!(kept.as_ptr(), at, "no copy");
    drop(server); // the connection is gone
    paste_rt::yield_now().await;
    let pool = paste_rt::runtime::pool();
    assert_eq!(&kept[..], b"kept beyond the connection");
    assert_eq!(pool.lent_as_bytes(), 1);
    assert!(pool.is_lent(index), "held by the Bytes");
    let tail = kept.slice(5..);
    drop(kept);
    assert!(pool.is_lent(index), "a slice still holds it");
    assert_eq!(&tail[..], b"beyond the connection");
    drop(tail);
    assert_eq!(pool.lent_as_bytes(), 0);
    assert!(!pool.is_lent(index), "back in the pool (free list or receive ring)");
}

/// Receives everything as `Bytes`, holding up to `hold` of them before letting
/// go (all at once), or whatever it holds when nothing arrives for 20 ms.
async fn drain_holding_bytes(stream: TcpStream, hold: usize, most_held: &mut u32) -> Vec<u8> {
    let mut got = Vec::new();
    let mut held: Vec<Bytes> = Vec::new();
    loop {
        match paste_rt::time::timeout(Duration::from_millis(20), stream.recv()).await {
            Ok(Ok(Some(b))) => {
                held.push(b.into_bytes());
                *most_held = (*most_held).max(paste_rt::runtime::pool().lent_as_bytes());
                if held.len() >= hold {
                    held.drain(..).for_each(|b| got.extend_from_slice(&b));
                }
            }
            Ok(Ok(None)) => break,
            Ok(Err(e)) => panic!("receive failed: {e}"),
            Err(_) => held.drain(..).for_each(|b| got.extend_from_slice(&b)),
        }
    }
    held.drain(..).for_each(|b| got.extend_from_slice(&b));
    got
}

const SMALL_POOL: u32 = 64;

fn small_pool_runtime(kind: BackendKind) -> paste_rt::Runtime {
    paste_rt::runtime::Builder::new().ignore_env().backend(kind.name()).buffers(SMALL_POOL).quiet().build().unwrap()
}

fn small_pool_backends(test: &str) -> Vec<BackendKind> {
    paste_rt::testing::backends_with(test, |_| paste_rt::runtime::Builder::new().buffers(SMALL_POOL))
}

#[test]
fn buffers_held_as_bytes_exhaust_the_pool_then_receiving_pauses_loses_nothing_and_resumes() {
    const CONNS: usize = 4;
    const LEN: usize = 256 * 1024;
    for kind in small_pool_backends("buffers_held_as_bytes_exhaust_the_pool") {
        small_pool_runtime(kind).block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let clients = off_thread(move || {
                let ts: Vec<_> = (0..CONNS)
                    .map(|_| {
                        std::thread::spawn(move || std::net::TcpStream::connect(addr).unwrap().write_all(&pattern(LEN)))
                    })
                    .collect();
                ts.into_iter().for_each(|t| t.join().unwrap().unwrap());
            });
            let mut tasks = Vec::new();
            for _ in 0..CONNS {
                let (s, _) = listener.accept().await.unwrap();
                // Each holds everything it gets until nothing arrives for 20 ms: the
                // pool runs dry (its 64 buffers for 512 buffers' worth of data), and
                // receiving must pause there and resume once they let go.
                tasks.push(paste_rt::spawn(async move {
                    let mut most = 0;
                    let got = drain_holding_bytes(s, usize::MAX, &mut most).await;
                    (got, most)
                }));
            }
            paste_rt::time::timeout(LIMIT, clients).await.expect("clients stalled: receiving never resumed");
            let mut most_held = 0;
            for t in tasks {
                let (got, most) = paste_rt::time::timeout(LIMIT, t).await.expect("a receiver stalled").unwrap();
                assert!(got == pattern(LEN), "{kind}: bytes lost or reordered ({} of {LEN})", got.len());
                most_held = most_held.max(most);
            }
            let s = paste_rt::stats();
            eprintln!("{kind}: pool exhausted {} times; at most {most_held} buffers held as Bytes", s.pool_exhausted);
            assert!(s.pool_exhausted > 0, "{kind}: the pool never ran dry, the test proves nothing: {s:?}");
            assert_eq!(paste_rt::runtime::pool().lent_as_bytes(), 0, "{kind}: every buffer came back");
        });
    }
}

#[test]
fn bytes_dropped_on_another_thread_come_back_and_wake_a_runtime_starved_of_buffers() {
    const LEN: usize = 512 * 1024;
    for kind in small_pool_backends("bytes_dropped_on_another_thread_come_back") {
        small_pool_runtime(kind).block_on(async {
            let (server, client) = connected(|mut c| c.write_all(&pattern(LEN)).unwrap()).await;
            // Another thread holds what the runtime receives until nothing new came
            // for 30 ms (so the pool runs dry), then reads it there and drops it there.
            // The runtime has nothing else to wake it: with its pool dry, only a
            // return from that thread can make receiving resume.
            let (to_holder, held) = mpsc::channel::<Bytes>();
            let holder = std::thread::spawn(move || {
                let mut got = Vec::with_capacity(LEN);
                let mut hand: Vec<Bytes> = Vec::new();
                loop {
                    match held.recv_timeout(Duration::from_millis(30)) {
                        Ok(b) => hand.push(b),
                        Err(mpsc::RecvTimeoutError::Timeout) => hand.drain(..).for_each(|b| got.extend_from_slice(&b)),
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
                hand.drain(..).for_each(|b| got.extend_from_slice(&b));
                got
            });
            let receive = async {
                while let Some(rx) = server.recv().await.unwrap() {
                    to_holder.send(rx.into_bytes()).unwrap();
                }
                drop(to_holder);
            };
            paste_rt::time::timeout(LIMIT, receive)
                .await
                .expect("receiving stalled: a return did not wake the runtime");
            client.await;
            let got = off_thread(move || holder.join().unwrap()).await;
            assert!(got == pattern(LEN), "{kind}: bytes lost or reordered ({} of {LEN})", got.len());
            assert!(paste_rt::stats().pool_exhausted > 0, "{kind}: the pool never ran dry, the test proves nothing");
            paste_rt::yield_now().await; // the tick takes the last returns back
            assert_eq!(paste_rt::runtime::pool().lent_as_bytes(), 0, "{kind}: every buffer came back");
        });
    }
}

#[test]
fn a_bytes_outlives_its_runtime_and_is_freed_with_its_pool_on_another_thread() {
    for kind in paste_rt::testing::backends("a_bytes_outlives_its_runtime") {
        let rt = paste_rt::runtime::Builder::new().ignore_env().backend(kind.name()).quiet().build().unwrap();
        let kept = rt.block_on(async {
            let (server, client) = connected(|mut c| c.write_all(b"after the runtime").unwrap()).await;
            client.await;
            server.recv().await.unwrap().unwrap().into_bytes()
        });
        drop(rt);
        let seen = std::thread::spawn(move || {
            let seen = kept.to_vec();
            drop(kept); // the last holder of the pool's memory, on another thread
            seen
        });
        assert_eq!(seen.join().unwrap(), b"after the runtime", "{kind}");
    }
}

/// Memory for a `Bytes` that the test can still write after handing it over (to
/// show the backend sends from this very memory) and whose drop is observable.
struct Writable {
    ptr: *mut u8,
    len: usize,
    dropped: Arc<AtomicBool>,
}

// SAFETY: plain heap memory; the test writes it only before the first tick after
// queueing, when no reference into it is alive and the kernel has not read it yet.
unsafe impl Send for Writable {}

impl Writable {
    fn new(data: Vec<u8>, dropped: Arc<AtomicBool>) -> Writable {
        let len = data.len();
        Writable { ptr: Box::into_raw(data.into_boxed_slice()).cast::<u8>(), len, dropped }
    }
}

impl AsRef<[u8]> for Writable {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `len` bytes allocated in `new`, freed only in Drop.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Writable {
    fn drop(&mut self) {
        // SAFETY: allocated by Box::into_raw in `new`, freed once.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.ptr, self.len)) });
        self.dropped.store(true, Ordering::SeqCst);
    }
}

#[paste_rt::test_each_backend]
async fn send_bytes_of_one_mib_is_byte_exact_with_no_copy_on_uring_and_epoll_and_one_on_paste() {
    const LEN: usize = 1 << 20;
    const MARK: &[u8] = b"written in place";
    let kind = paste_rt::current_backend().unwrap();
    let (server, client) = connected(|mut c| {
        let mut got = Vec::with_capacity(LEN);
        c.read_to_end(&mut got).unwrap();
        got
    })
    .await;
    let dropped = Arc::new(AtomicBool::new(false));
    let memory = Writable::new(pattern(LEN), dropped.clone());
    let at = memory.ptr;
    let copies_before = SendData::copied_on_this_thread();
    {
        let sending = server.send_bytes(Bytes::from_owner(memory));
        // Queue it (the first poll of `send_bytes` queues, then waits for backpressure)...
        let mut sending = std::pin::pin!(sending);
        let first = std::future::poll_fn(|cx| std::task::Poll::Ready(sending.as_mut().poll(cx))).await;
        // ...and, before any tick can hand it to the kernel, write into the memory the
        // `Bytes` owns: the peer sees the change only if nothing copied it so far.
        // SAFETY: MARK fits the 1 MiB; no reference into it is alive (the queue holds
        // the `Bytes`, which holds a raw pointer) and the kernel reads it only later.
        unsafe { at.copy_from_nonoverlapping(MARK.as_ptr(), MARK.len()) };
        match first {
            std::task::Poll::Ready(r) => r.unwrap(),
            std::task::Poll::Pending => sending.await.unwrap(),
        }
    }
    loop {
        if server.queued() == 0 {
            break;
        }
        // Until the kernel took its last byte, io_uring and epoll send from the
        // `Bytes` itself, which the queue keeps; PASTE copies it into TX slots and
        // lets it go once copied.
        if dropped.load(Ordering::SeqCst) {
            assert!(
                matches!(kind, BackendKind::Paste | BackendKind::PasteEmu),
                "{kind}: the Bytes was dropped while {} of its bytes were not taken",
                server.queued()
            );
        }
        paste_rt::time::sleep(Duration::from_millis(1)).await;
    }
    server.shutdown().await.unwrap();
    drop(server);
    assert!(dropped.load(Ordering::SeqCst), "{kind}: the queue let the Bytes go once sent");
    let copied = SendData::copied_on_this_thread() - copies_before;
    let got = paste_rt::time::timeout(LIMIT, client).await.expect("client stalled");
    let expected = pattern(LEN);
    assert_eq!(got.len(), LEN, "{kind}: not the 1 MiB sent");
    let head = &got[..MARK.len()];
    match kind {
        // Sent from the `Bytes` itself: the write made after queueing shows.
        BackendKind::Uring | BackendKind::Epoll => {
            assert_eq!(head, MARK, "{kind}: the bytes sent were a copy made before the tick")
        }
        // PASTE copies into TX slots as soon as the ring has room, which may be at
        // queue time, so either version of the head is right.
        BackendKind::Paste | BackendKind::PasteEmu => {
            assert!(head == MARK || head == &expected[..MARK.len()], "{kind}: the head arrived altered")
        }
    }
    assert!(got[MARK.len()..] == expected[MARK.len()..], "{kind}: the bytes arrived altered");
    let expected_copies = match kind {
        BackendKind::Uring | BackendKind::Epoll => 0,
        BackendKind::Paste | BackendKind::PasteEmu => LEN as u64,
    };
    assert_eq!(copied, expected_copies, "{kind}: bytes copied by the backend (none on uring/epoll, one copy on PASTE)");
}

#[paste_rt::test_each_backend]
async fn several_bytes_queued_at_once_leave_gathered() {
    const ITEMS: usize = 8;
    let kind = paste_rt::current_backend().unwrap();
    let (server, client) = connected(|mut c| {
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        got
    })
    .await;
    paste_rt::yield_now().await;
    let parts: Vec<Bytes> = (0..ITEMS).map(|i| Bytes::from(format!("part {i};"))).collect();
    let before = paste_rt::stats();
    for p in &parts {
        server.queue_send(SendData::from(p.clone())).unwrap();
    }
    server.flush().await.unwrap();
    let submissions = (paste_rt::stats() - before).submissions;
    server.shutdown().await.unwrap();
    drop(server);
    let got = paste_rt::time::timeout(LIMIT, client).await.expect("client stalled");
    assert_eq!(got, parts.concat());
    eprintln!("{kind}: {ITEMS} Bytes left in {submissions} submission(s)");
    match kind {
        // Written at the tick: one `sendmsg` gathers them all.
        BackendKind::Epoll => assert_eq!(submissions, 1, "{kind}"),
        // The first goes out as soon as it is queued (a `SEND` SQE); the seven queued
        // behind it leave in one `SENDMSG` when it completes.
        BackendKind::Uring => assert!((1..=2).contains(&submissions), "{kind}: {submissions} submissions"),
        // PASTE carries one queued item per TX slot.
        BackendKind::Paste | BackendKind::PasteEmu => assert!(submissions <= ITEMS as u64, "{kind}"),
    }
}
