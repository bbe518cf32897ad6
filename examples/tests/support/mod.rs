//! What the server tests share: running a blocking client off the runtime thread,
//! and blocking socket helpers with timeouts (so a broken server fails a test
//! instead of hanging it).
#![allow(dead_code)]

pub mod process;

use std::future::Future;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Longest a client waits for any one read or write before failing the test.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs blocking `f` on a plain thread and awaits its result without blocking the
/// runtime thread (which must keep serving).
pub fn off_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> impl Future<Output = T> {
    let (tx, rx) = futures_channel::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    async move { rx.await.expect("client thread panicked (its message is above)") }
}

/// A blocking client connection with read and write timeouts and no Nagle delay.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Reads exactly `n` bytes.
pub fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).unwrap_or_else(|e| panic!("reading {n} bytes: {e}"));
    buf
}

/// Reads until the peer closes; a reset after some data also ends the read.
pub fn read_to_eof(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("reading until EOF (after {} bytes): {e}", out.len()),
        }
    }
}

/// Asserts that nothing arrives within `wait` (the server must not answer yet).
pub fn assert_silent(s: &mut TcpStream, wait: Duration) {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        Ok(n) => panic!("expected silence, got {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(e) => panic!("expected silence, got {e}"),
    }
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
}

/// Writes `bytes` then reads exactly `expect.len()` bytes and compares them.
pub fn round_trip(s: &mut TcpStream, bytes: &[u8], expect: &[u8]) {
    s.write_all(bytes).unwrap();
    let got = read_n(s, expect.len());
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(expect),
        "reply to {:?}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
    );
}

/// A deterministic byte pattern (reordering or loss is detectable).
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// A fixed pseudo-random sequence (xorshift64 from a fixed seed): the same numbers on
/// every run, for tests that want many varied cases without a failure file.
pub struct Sequence(pub u64);

impl Sequence {
    /// The next number, below `below`.
    pub fn next(&mut self, below: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % below as u64) as usize
    }
}

/// One reply of a test batch of replies: a canned one (an index into the canned set)
/// or the first `n` bytes of the copied pattern.
#[derive(Clone, Copy, Debug)]
pub enum Piece {
    /// `canned[k]`.
    Canned(usize),
    /// The first `n` bytes of the copied pattern.
    Copied(usize),
}

/// Canned replies of the given sizes, each cut from a different place of the
/// pattern, living for the process's life (as a server's canned replies do).
pub fn canned_replies(sizes: &[usize]) -> Vec<&'static [u8]> {
    sizes.iter().enumerate().map(|(k, &n)| &*Box::leak(pattern(n + k).split_off(k).into_boxed_slice())).collect()
}

/// `count` batches of 1 to 20 replies from `seq`: two in three canned (one of
/// `canned` sizes), the others copied pieces of 0 to `max_copied` bytes.
pub fn random_batches(seq: &mut Sequence, count: usize, canned: usize, max_copied: usize) -> Vec<Vec<Piece>> {
    (0..count)
        .map(|_| {
            (0..1 + seq.next(20))
                .map(|_| {
                    if seq.next(3) < 2 {
                        Piece::Canned(seq.next(canned))
                    } else {
                        Piece::Copied(seq.next(max_copied + 1))
                    }
                })
                .collect()
        })
        .collect()
}

/// The bytes of `batches`, in order: what the peer must receive.
pub fn batch_bytes(batches: &[Vec<Piece>], canned: &[&[u8]], copied: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for piece in batches.iter().flatten() {
        match *piece {
            Piece::Canned(k) => bytes.extend_from_slice(canned[k]),
            Piece::Copied(n) => bytes.extend_from_slice(&copied[..n]),
        }
    }
    bytes
}

/// A client that connects to `addr`, sends "go" and reads `n` bytes (off the
/// runtime thread).
pub fn go_then_read(addr: SocketAddr, n: usize) -> impl Future<Output = Vec<u8>> {
    off_thread(move || {
        let mut c = connect(addr);
        c.write_all(b"go").unwrap();
        read_n(&mut c, n)
    })
}
