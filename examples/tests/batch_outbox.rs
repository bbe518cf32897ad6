//! `BatchOutbox` on every backend: a connection's only canned reply of a batch is
//! queued as it is (no pool buffer), several small ones share pool buffers, a large
//! one is never copied, and every reply reaches the peer once, in order — also over
//! a fixed pseudo-random sequence of turns.

mod support;

use std::cell::Cell;
use std::rc::Rc;

use paste_rt::batch::{self, BatchEvent};
use paste_rt::net::TcpListener;
use paste_rt_examples::batch_outbox::BatchOutbox;
use paste_rt_examples::outbox::COPY_CANNED_MAX;
use support::{batch_bytes, canned_replies, go_then_read, pattern, random_batches, Piece, Sequence};

const REPLY: &[u8] = &[b'r'; 151];
const LARGE: &[u8] = &[b'L'; COPY_CANNED_MAX + 1];

#[paste_rt::test_each_backend]
async fn a_lone_canned_reply_goes_as_it_is_and_several_share_pool_buffers() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let expected: Vec<u8> = [REPLY, &REPLY.repeat(16), REPLY, LARGE, REPLY].concat();
    let received = go_then_read(addr, expected.len());
    let checked = Rc::new(Cell::new(false));
    let done = checked.clone();
    let mut out = BatchOutbox::new();
    // (Read through a handle taken before: the runtime's counters are not open to
    // a batch handler.)
    let pool = paste_rt::runtime::pool();
    let pool_in_use = move || pool.in_use();
    batch::serve(listener, move |batch| {
        while let Some(event) = batch.next_event() {
            match event {
                BatchEvent::Data(conn, buf) => {
                    drop(buf);
                    out.start(batch, conn);
                    let before = pool_in_use();
                    out.put_static(batch, REPLY);
                    assert_eq!(pool_in_use(), before, "a lone canned reply takes no pool buffer");
                    for _ in 0..16 {
                        out.put_static(batch, REPLY);
                    }
                    let capacity = batch.tx_buf().expect("a free pool buffer").capacity();
                    // (The one being filled is in use; one queued full may already have left
                    // the pool's count: PASTE moves it into a TX slot at once.)
                    let buffers = (17 * REPLY.len()).div_ceil(capacity) as u32;
                    let taken = pool_in_use() - before;
                    assert!(
                        (1..=buffers).contains(&taken),
                        "17 replies share at most {buffers} buffer(s), took {taken}"
                    );
                    // A large one after a small one: neither is copied.
                    out.finish(batch);
                    out.start(batch, conn);
                    let before = pool_in_use();
                    out.put_static(batch, REPLY);
                    out.put_static(batch, LARGE);
                    out.put_static(batch, REPLY);
                    assert_eq!(pool_in_use(), before, "a large canned reply and the ones around it go as they are");
                    out.finish(batch);
                    done.set(true);
                }
                BatchEvent::Closed(..) => batch.stop(),
                BatchEvent::Opened(_) | BatchEvent::TimedOut(_) => {}
            }
        }
        out.finish(batch);
    })
    .await
    .unwrap();
    assert!(checked.get(), "the handler saw the request");
    let got = received.await;
    assert!(got == expected, "every reply arrives once, in order ({} of {} bytes)", got.len(), expected.len());
}

#[paste_rt::test_each_backend]
async fn random_batches_of_canned_and_copied_replies_arrive_in_order() {
    // 60 turns of the connection, each 1 to 20 replies: canned ones of sizes around
    // the copy threshold and copied pieces of 0 to 700 bytes, in every order.
    let canned = canned_replies(&[1, 151, 600, COPY_CANNED_MAX, COPY_CANNED_MAX + 1, 3000]);
    let copied = pattern(700);
    let turns = random_batches(&mut Sequence(0x0b0c_5eed_f00d), 60, canned.len(), 700);
    let expected = batch_bytes(&turns, &canned, &copied);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let received = go_then_read(listener.local_addr().unwrap(), expected.len());
    let mut out = BatchOutbox::new();
    batch::serve(listener, move |batch| {
        while let Some(event) = batch.next_event() {
            match event {
                BatchEvent::Data(conn, _) => {
                    for turn in &turns {
                        out.start(batch, conn);
                        for piece in turn {
                            match *piece {
                                Piece::Canned(k) => out.put_static(batch, canned[k]),
                                Piece::Copied(n) => out.put(batch, &copied[..n]),
                            }
                        }
                        out.finish(batch);
                    }
                }
                BatchEvent::Closed(..) => batch.stop(),
                BatchEvent::Opened(_) | BatchEvent::TimedOut(_) => {}
            }
        }
        out.finish(batch);
    })
    .await
    .unwrap();
    let got = received.await;
    assert!(got == expected, "replies arrive once each, in the order put ({} of {} bytes)", got.len(), expected.len());
}
