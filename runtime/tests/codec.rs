//! `compat::codec` on every backend: length-delimited frames of every size (inside
//! one buffer, spanning several, split by the network) and lines arrive whole and
//! in order, decoded from the received buffers in place, and every buffer goes
//! back to the pool once the frames are dropped.

mod support;

use std::io::Write;

use paste_rt::compat::codec::{FramedRecv, LengthDelimited, Lines};
use paste_rt::net::TcpListener;
use support::{off_thread, pattern};

/// Frame `i`: `i * 37 % 5000` bytes of the test pattern, shifted by `i`.
fn frame(i: usize) -> Vec<u8> {
    pattern(i * 37 % 5000 + i).split_off(i)
}

#[paste_rt::test_each_backend]
async fn length_delimited_frames_of_every_size_arrive_whole_and_in_order() {
    const FRAMES: usize = 400;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = off_thread(move || {
        let mut wire = Vec::new();
        for i in 0..FRAMES {
            let f = frame(i);
            wire.extend_from_slice(&(f.len() as u32).to_be_bytes());
            wire.extend_from_slice(&f);
        }
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        // Odd-sized writes: prefixes and frames split anywhere.
        for piece in wire.chunks(1021) {
            c.write_all(piece).unwrap();
        }
    });
    let (stream, _) = listener.accept().await.unwrap();
    let mut frames = FramedRecv::new(stream, LengthDelimited::new(1 << 16));
    let mut got = Vec::new();
    while let Some(f) = frames.next().await {
        got.push(f.unwrap());
    }
    client.await;
    assert_eq!(got.len(), FRAMES);
    for (i, f) in got.iter().enumerate() {
        assert!(f[..] == frame(i)[..], "frame {i} differs ({} bytes)", f.len());
    }
    drop(got);
    assert_eq!(paste_rt::runtime::pool().lent_as_bytes(), 0, "every buffer back once the frames are gone");
}

#[paste_rt::test_each_backend]
async fn lines_are_cut_out_of_the_received_buffers() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = off_thread(move || {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        for i in 0..1000 {
            c.write_all(format!("line {i}\r\n").as_bytes()).unwrap();
        }
        c.write_all(b"no ending").unwrap();
    });
    let (stream, _) = listener.accept().await.unwrap();
    let mut lines = FramedRecv::new(stream, Lines::new(64));
    for i in 0..1000 {
        assert_eq!(lines.next().await.unwrap().unwrap(), format!("line {i}").as_bytes());
    }
    assert_eq!(lines.next().await.unwrap().unwrap(), "no ending");
    assert!(lines.next().await.is_none());
    client.await;
}
