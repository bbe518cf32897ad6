//! UDP behaviour on every backend: echo round trips with a std peer (sources,
//! sizes up to the largest received whole), truncation of datagrams longer than a
//! pool buffer, receive backpressure, and the no-syscall-outside-poll invariant.
//! On PASTE (TCP only) binding must fail with `Unsupported`.

mod support;

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use paste_rt::net::{DatagramTruncated, UdpSocket};
use paste_rt::BackendKind;
use support::{off_thread, pattern};

/// Binds, or checks the PASTE refusal and returns `None`.
async fn bind_or_refused() -> Option<UdpSocket> {
    let result = UdpSocket::bind("127.0.0.1:0").await;
    match paste_rt::current_backend().unwrap() {
        BackendKind::Paste | BackendKind::PasteEmu => {
            let err = result.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
            let kind = paste_rt::current_backend().unwrap();
            let expect = format!("UDP is not supported by the {kind} backend (PASTE v4 carries TCP only)");
            assert!(err.to_string().contains(&expect), "{err}");
            None
        }
        _ => Some(result.unwrap()),
    }
}

fn std_peer() -> std::net::UdpSocket {
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    peer
}

/// A datagram carrying its sequence number in its first 4 bytes, `len` long.
fn numbered(seq: u32, len: usize) -> Vec<u8> {
    let mut d = pattern(len.max(4));
    d[..4].copy_from_slice(&seq.to_be_bytes());
    d.truncate(len.max(4));
    d
}

/// Echoes every datagram (zero copy in, one pool buffer out) until `STOP`; checks
/// each source is `peer`. Returns how many were echoed.
async fn echo_until_stop(socket: &UdpSocket, peer: SocketAddr) -> usize {
    let mut n = 0;
    loop {
        let (buf, from) = socket.recv_from().await.unwrap();
        assert_eq!(from, peer, "source address");
        if &buf[..] == b"STOP" {
            return n;
        }
        let mut tx = socket.tx_buf().unwrap();
        tx.put(&buf);
        drop(buf);
        socket.send_buf_to(tx, from).await.unwrap();
        n += 1;
    }
}

#[paste_rt::test_each_backend]
async fn echo_round_trip_with_a_std_peer() {
    let Some(socket) = bind_or_refused().await else { return };
    let addr = socket.local_addr().unwrap();
    let max = socket.max_datagram();
    assert_eq!(max, 2048 - 64, "default pool buffers receive 1984-byte datagrams whole");
    let peer = std_peer();
    let peer_addr = peer.local_addr().unwrap();
    let sizes = [4usize, 1, 100, 512, 1472, max - 1, max];
    const WINDOW: u32 = 16;
    const ROUNDS: u32 = 25;
    let client = off_thread(move || {
        let mut buf = vec![0u8; 4096];
        for round in 0..ROUNDS {
            for i in 0..WINDOW {
                let seq = round * WINDOW + i;
                let len = sizes[seq as usize % sizes.len()].max(4);
                peer.send_to(&numbered(seq, len), addr).unwrap();
            }
            let mut seen = vec![];
            for _ in 0..WINDOW {
                let (n, from) = peer.recv_from(&mut buf).unwrap();
                assert_eq!(from, addr, "reply source");
                let seq = u32::from_be_bytes(buf[..4].try_into().unwrap());
                let len = sizes[seq as usize % sizes.len()].max(4);
                assert_eq!(&buf[..n], &numbered(seq, len)[..], "datagram {seq} echoed byte-exact");
                seen.push(seq);
            }
            seen.sort_unstable();
            assert_eq!(seen, (round * WINDOW..(round + 1) * WINDOW).collect::<Vec<_>>());
        }
        // An empty datagram is a datagram, not an EOF.
        peer.send_to(b"", addr).unwrap();
        let (n, _) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(n, 0);
        peer.send_to(b"STOP", addr).unwrap();
    });
    let echoed = echo_until_stop(&socket, peer_addr).await;
    client.await;
    assert_eq!(echoed, (WINDOW * ROUNDS) as usize + 1);
    socket.flush().await.unwrap();
}

/// A datagram longer than a pool buffer receives whole is truncated by the kernel;
/// the socket reports it (typed error) and carries on. Sending one is fine: it
/// leaves from an owned buffer, whole.
#[paste_rt::test_each_backend]
async fn longer_than_a_buffer_is_reported_truncated() {
    let Some(socket) = bind_or_refused().await else { return };
    let addr = socket.local_addr().unwrap();
    let max = socket.max_datagram();
    let peer = std_peer();
    let peer_addr = peer.local_addr().unwrap();
    let client = off_thread(move || {
        peer.send_to(&pattern(3000), addr).unwrap();
        peer.send_to(&pattern(max + 1), addr).unwrap();
        peer.send_to(&pattern(max), addr).unwrap();
        let mut buf = vec![0u8; 8192];
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(from, addr);
        buf.truncate(n);
        buf
    });
    for len in [3000, max + 1] {
        let err = socket.recv_from().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData, "{len}: {err}");
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<DatagramTruncated>()).expect("typed error");
        assert_eq!(inner.from, peer_addr);
        assert_eq!(inner.max, max);
    }
    let (buf, from) = socket.recv_from().await.unwrap();
    assert_eq!((buf.len(), from), (max, peer_addr), "exactly the largest whole datagram");
    assert!(buf[..] == pattern(max)[..]);
    drop(buf);
    assert_eq!(socket.send_to(&pattern(5000), peer_addr).await.unwrap(), 5000);
    socket.flush().await.unwrap();
    assert_eq!(client.await, pattern(5000));
}

/// The application stops reading: the runtime holds at most ~64 datagrams (plus one
/// batch) and pauses receiving — the pool stays bounded, the kernel's buffer drops
/// the excess as UDP does — then receiving resumes once the application reads.
#[paste_rt::test_each_backend]
async fn stopped_reader_pauses_receiving_then_resumes() {
    let Some(socket) = bind_or_refused().await else { return };
    let addr = socket.local_addr().unwrap();
    paste_rt::yield_now().await;
    let baseline = paste_rt::stats().pool_in_use;
    let peer = std_peer();
    let peer2 = peer.try_clone().unwrap();
    off_thread(move || {
        for seq in 0..3000u32 {
            peer.send_to(&numbered(seq, 1000), addr).unwrap();
        }
    })
    .await;
    // Let the backend take what it will while nobody reads.
    for _ in 0..5 {
        paste_rt::time::sleep(Duration::from_millis(10)).await;
    }
    let held = paste_rt::stats().pool_in_use.saturating_sub(baseline);
    assert!(held >= 64, "receiving paused only at the queue limit: {held}");
    // Pause at 64; what lands before it applies is one read budget (epoll, 16) or at
    // most the datagram ring (io_uring, 256).
    assert!(held <= 64 + 256 + 16, "pool use not bounded while not reading: {held} buffers");

    // Resume: everything held, then whatever the kernel kept, then new datagrams.
    let after = off_thread(move || {
        for i in 0..20u32 {
            peer2.send_to(&numbered(100_000 + i, 100), addr).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let mut last = None;
    let mut fresh = 0;
    while fresh < 20 {
        let (buf, _) = socket.recv_from().await.unwrap();
        let seq = u32::from_be_bytes(buf[..4].try_into().unwrap());
        if seq >= 100_000 {
            fresh += 1;
        } else {
            assert!(last.is_none_or(|l| seq > l), "datagrams of one peer arrive in order: {seq} after {last:?}");
            last = Some(seq);
        }
    }
    after.await;
    paste_rt::yield_now().await;
    assert_eq!(paste_rt::stats().pool_in_use, baseline, "every buffer came back");
}

/// Under an echo load every system call happens inside `poll`, a datagram costs a
/// bounded number of them, and every buffer comes back.
#[paste_rt::test_each_backend]
async fn no_syscall_outside_poll_for_datagrams() {
    let Some(socket) = bind_or_refused().await else { return };
    let addr = socket.local_addr().unwrap();
    let peer = std_peer();
    let peer_addr = peer.local_addr().unwrap();
    const N: u32 = 600;
    paste_rt::yield_now().await;
    let baseline = paste_rt::stats().pool_in_use;
    let before = paste_rt::stats();
    let client = off_thread(move || {
        let mut buf = [0u8; 256];
        for seq in 0..N {
            peer.send_to(&numbered(seq, 200), addr).unwrap();
            let (n, _) = peer.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &numbered(seq, 200)[..]);
        }
        peer.send_to(b"STOP", addr).unwrap();
    });
    assert_eq!(echo_until_stop(&socket, peer_addr).await, N as usize);
    client.await;
    socket.flush().await.unwrap();
    let d = paste_rt::stats() - before;
    assert_eq!(d.syscalls_outside_poll, 0, "{d:?}");
    let per = d.syscalls as f64 / N as f64;
    assert!(per < 6.0, "{per} syscalls per datagram: {d:?}");
    paste_rt::yield_now().await;
    assert_eq!(paste_rt::stats().pool_in_use, baseline, "every buffer came back");
}
