//! Sends queued with more to follow (`TcpStream::queue_send_more`, and the pieces of
//! a `write_all` longer than one pool buffer), on every backend: they leave together
//! with what follows — on io_uring in one gathered SQE, where a send started at once
//! would carry the first piece alone and the rest a tick later — in order, and a
//! piece held for more leaves at the next poll even when nothing follows, or when
//! the stream is dropped right away.

mod support;

use std::io::Read;
use std::time::Duration;

use paste_rt::{BackendKind, SendData};
use support::{connected, pattern};

const LIMIT: Duration = Duration::from_secs(20);

fn read_all(mut c: std::net::TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    got
}

/// The submissions (SQEs on io_uring, sends on epoll, TX slots on PASTE) the
/// backend made while `queue` ran and the next poll sent what it queued.
async fn submissions_of(server: &paste_rt::net::TcpStream, queue: impl FnOnce()) -> u64 {
    let before = paste_rt::stats();
    queue();
    server.flush().await.unwrap();
    (paste_rt::stats() - before).submissions
}

#[paste_rt::test_each_backend]
async fn pieces_queued_with_more_to_follow_leave_in_one_send() {
    let kind = paste_rt::current_backend().unwrap();
    let (server, client) = connected(read_all).await;
    paste_rt::yield_now().await;
    let parts: [&'static [u8]; 3] = [b"first piece;", b"second piece;", b"last piece."];
    let submissions = submissions_of(&server, || {
        server.queue_send_more(SendData::Static(parts[0])).unwrap();
        server.queue_send_more(SendData::Static(parts[1])).unwrap();
        server.queue_send(SendData::Static(parts[2])).unwrap();
    })
    .await;
    drop(server);
    let got = paste_rt::time::timeout(LIMIT, client).await.expect("client stalled");
    assert_eq!(got, parts.concat(), "{kind}: in order and whole");
    match kind {
        // One SQE gathering the three (without the hold: a SEND of the first, then a
        // SENDMSG of the other two once it completed).
        BackendKind::Uring => assert_eq!(submissions, 1, "{kind}"),
        BackendKind::Epoll => assert_eq!(submissions, 1, "{kind}"),
        // PASTE carries one queued item per TX slot.
        BackendKind::Paste | BackendKind::PasteEmu => assert!(submissions <= 3, "{kind}: {submissions}"),
    }
}

#[paste_rt::test_each_backend]
async fn a_write_all_longer_than_a_buffer_leaves_in_one_send() {
    const LEN: usize = 20_000; // ten 2 KiB pool buffers: within one gathered send
    let kind = paste_rt::current_backend().unwrap();
    let (mut server, client) = connected(read_all).await;
    paste_rt::yield_now().await;
    let before = paste_rt::stats();
    server.write_all(&pattern(LEN)).await.unwrap();
    server.flush().await.unwrap();
    let submissions = (paste_rt::stats() - before).submissions;
    drop(server);
    let got = paste_rt::time::timeout(LIMIT, client).await.expect("client stalled");
    assert!(got == pattern(LEN), "{kind}: the bytes arrived altered");
    if kind == BackendKind::Uring {
        assert_eq!(submissions, 1, "{kind}: every piece in the one SENDMSG");
    }
}

#[paste_rt::test_each_backend]
async fn a_piece_held_for_more_leaves_at_the_next_poll_when_nothing_follows() {
    let (server, client) = connected(read_all).await;
    server.queue_send_more(SendData::Static(b"alone")).unwrap();
    // The flush waits until the kernel took it: the next poll started the send.
    paste_rt::time::timeout(LIMIT, server.flush()).await.expect("the held piece never left").unwrap();
    // Held again, and the stream dropped before any poll: it lingers and sends.
    server.queue_send_more(SendData::Static(b" and after")).unwrap();
    drop(server);
    let got = paste_rt::time::timeout(LIMIT, client).await.expect("client stalled");
    assert_eq!(got, b"alone and after");
}
