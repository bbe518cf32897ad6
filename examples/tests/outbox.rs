//! `Outbox` on every backend: pieces of every size around a pool buffer's end (the
//! inlined common case, a piece that fills the buffer exactly, one that spills into
//! the next) reach the peer byte-exact and in order; canned replies go as they are
//! when alone in a batch and are copied together when several small ones share it
//! (counted in pool buffers), byte-exact and in order with copied pieces around them,
//! also over a fixed pseudo-random sequence of batches.

mod support;

use paste_rt::net::{TcpListener, TcpStream};
use paste_rt_examples::outbox::{Outbox, COPY_CANNED_MAX};
use support::{batch_bytes, canned_replies, off_thread, pattern, random_batches, read_to_eof, Piece, Sequence};

#[paste_rt::test_each_backend]
async fn pieces_of_every_size_arrive_in_order() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = off_thread(move || read_to_eof(&mut std::net::TcpStream::connect(addr).unwrap()));
    let (stream, _) = listener.accept().await.unwrap();
    let capacity = stream.tx_buf().expect("a free pool buffer").capacity();
    // Sizes 0..=capacity + 1 in turn, cut from one pattern: every way a piece can
    // meet the end of the buffer being filled comes up.
    let sizes: Vec<usize> =
        (0..=capacity + 1).step_by(97).chain([1, capacity - 1, 1, capacity, capacity + 1]).collect();
    let total: usize = sizes.iter().sum();
    let expected = pattern(total);
    send_pieces(&stream, &expected, &sizes).await;
    stream.shutdown().await.unwrap();
    drop(stream);
    let got = received.await;
    assert_eq!(got.len(), total, "every byte put arrives");
    assert!(got == expected, "bytes arrive in the order they were put");
}

async fn send_pieces(stream: &TcpStream, bytes: &[u8], sizes: &[usize]) {
    let mut out = Outbox::new(stream);
    let mut at = 0;
    for &n in sizes {
        out.put(&bytes[at..at + n]);
        at += n;
        if out.is_full() {
            out.flush().unwrap();
            std::future::poll_fn(|cx| out.poll_room(cx)).await.unwrap();
        }
    }
    out.flush().unwrap();
    stream.flush().await.unwrap();
}

/// Pool buffers the runtime has lent out now.
fn pool_in_use() -> u64 {
    paste_rt::runtime::stats().pool_in_use
}

#[paste_rt::test_each_backend]
async fn a_lone_canned_reply_is_queued_as_it_is_and_several_share_pool_buffers() {
    const REPLY: &[u8] = &[b'r'; 151];
    const LARGE: &[u8] = &[b'L'; COPY_CANNED_MAX + 1];
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = off_thread(move || read_to_eof(&mut std::net::TcpStream::connect(addr).unwrap()));
    let (stream, _) = listener.accept().await.unwrap();
    let capacity = stream.tx_buf().expect("a free pool buffer").capacity();
    let mut out = Outbox::new(&stream);

    // Alone in its batch: held, then queued as it is, with no pool buffer.
    let before = pool_in_use();
    out.put_static(REPLY);
    assert_eq!(pool_in_use(), before, "a lone canned reply takes no pool buffer");
    out.flush().unwrap();
    assert_eq!(pool_in_use(), before, "and is queued as it is");
    stream.flush().await.unwrap();

    // Sixteen in one batch (pipelined requests): copied together, as few pool
    // buffers as their bytes need.
    let before = pool_in_use();
    for _ in 0..16 {
        out.put_static(REPLY);
    }
    // (The one being filled is in use; one queued full may already have left the
    // pool's count: PASTE moves it into a TX slot at once.)
    let buffers = (16 * REPLY.len()).div_ceil(capacity) as u64;
    let taken = pool_in_use() - before;
    assert!((1..=buffers).contains(&taken), "16 canned replies share at most {buffers} pool buffer(s), took {taken}");
    out.flush().unwrap();
    stream.flush().await.unwrap();

    // A large canned reply behind a small one is never copied: the small one is.
    let before = pool_in_use();
    out.put_static(REPLY);
    out.put_static(LARGE);
    assert_eq!(pool_in_use(), before, "a large canned reply goes as it is, and the one before it too");
    out.flush().unwrap();
    stream.flush().await.unwrap();
    stream.shutdown().await.unwrap();
    drop(out);
    drop(stream);

    let mut expected = REPLY.repeat(17);
    expected.extend_from_slice(REPLY);
    expected.extend_from_slice(LARGE);
    let got = received.await;
    assert!(got == expected, "every reply arrives once, in order ({} of {} bytes)", got.len(), expected.len());
}

#[paste_rt::test_each_backend]
async fn canned_replies_and_copied_pieces_arrive_in_order() {
    // Canned replies small and large, alone and many to a batch, between copied
    // pieces: every way a held canned reply can meet what comes after it.
    let canned = canned_replies(&[1, 151, COPY_CANNED_MAX, COPY_CANNED_MAX + 1, 5000]);
    let batches: Vec<Vec<Piece>> = vec![
        vec![Piece::Canned(1)],
        vec![Piece::Canned(3)],
        vec![Piece::Canned(4)],
        vec![Piece::Canned(1), Piece::Copied(100), Piece::Canned(0)],
        vec![Piece::Copied(300), Piece::Canned(1), Piece::Canned(1)],
        vec![Piece::Canned(4), Piece::Canned(1), Piece::Copied(700)],
        vec![Piece::Canned(2), Piece::Canned(3), Piece::Canned(4), Piece::Canned(2)],
        vec![Piece::Canned(1); 40],
    ];
    send_batches_and_check(&canned, &batches).await;
}

#[paste_rt::test_each_backend]
async fn random_batches_of_canned_and_copied_replies_arrive_in_order() {
    // 300 batches of 1 to 20 replies, each a canned reply of a size around the copy
    // threshold or a copied piece of 0 to 700 bytes: what a pipelined server's
    // batches look like, and every order of held, copied and queued replies.
    let canned = canned_replies(&[1, 151, 600, COPY_CANNED_MAX, COPY_CANNED_MAX + 1, 3000]);
    let batches = random_batches(&mut Sequence(0x05ee_d0f0_b0c5), 300, canned.len(), 700);
    send_batches_and_check(&canned, &batches).await;
}

/// Puts `batches` through an `Outbox` on a fresh connection, flushing after each
/// (copied pieces cut from a 700-byte pattern), and checks that the peer receives
/// every reply once, in the order put.
async fn send_batches_and_check(canned: &[&'static [u8]], batches: &[Vec<Piece>]) {
    let copied = pattern(700);
    let expected = batch_bytes(batches, canned, &copied);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = off_thread(move || read_to_eof(&mut std::net::TcpStream::connect(addr).unwrap()));
    let (stream, _) = listener.accept().await.unwrap();
    let mut out = Outbox::new(&stream);
    for batch in batches {
        for piece in batch {
            match *piece {
                Piece::Canned(k) => out.put_static(canned[k]),
                Piece::Copied(n) => out.put(&copied[..n]),
            }
        }
        out.flush().unwrap();
        std::future::poll_fn(|cx| out.poll_room(cx)).await.unwrap();
    }
    stream.flush().await.unwrap();
    stream.shutdown().await.unwrap();
    drop(out);
    drop(stream);
    let got = received.await;
    assert_eq!(got.len(), expected.len(), "every byte put arrives");
    assert!(got == expected, "replies arrive once each, in the order put");
}
