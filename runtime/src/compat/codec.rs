//! Frames from received pool buffers without first copying them into a
//! `BytesMut`: [`RxChain`] (the bytes received and not yet consumed, as the
//! buffers themselves), the [`FrameDecoder`] trait, [`FramedRecv`] (a `FramedRead`
//! over a [`TcpStream`]) and two decoders, [`Lines`] and [`LengthDelimited`].
//!
//! Owns only the framing glue; it never makes a system call (it receives through
//! [`TcpStream::poll_recv`]) and never copies a frame that lies inside one received
//! buffer.
//!
//! ## Where a copy remains, and why
//!
//! tokio-util's `FramedRead` works through the `AsyncRead` impl and copies every
//! byte into its `BytesMut` first: `Decoder::decode` takes `&mut BytesMut`, heap
//! memory the codec owns, which a pool buffer cannot become. Here a decoder reads
//! the received buffers in place (`RxChain` is a [`bytes::Buf`]) and takes frames out
//! of them as [`Bytes`]:
//! * a frame inside one received buffer is a slice of that buffer — **no copy**
//!   (the buffer is lent on as a `Bytes` once, one small allocation, and every frame
//!   cut from it after that is a reference count);
//! * a frame spanning buffers (any frame longer than what one buffer holds, 2 KiB by
//!   default, and any frame the network split) is gathered into one new `Bytes` by
//!   [`RxChain::split_to`] — **one copy**, as tokio-util makes of every frame —
//!   unless the decoder takes it as a chain of buffers with
//!   [`RxChain::split_chain`], which never copies.
//!
//! Buffers are given back as soon as they are consumed, so a slow consumer holds
//! only the incomplete frame and the frames it kept: backpressure is the pool's, as
//! with `recv`.
//!
//! ```
//! # paste_rt::runtime::Builder::new().backend("epoll").build().unwrap().block_on(async {
//! use paste_rt::compat::codec::{FramedRecv, Lines};
//! use paste_rt::net::{TcpListener, TcpStream};
//! let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
//! let (server, _) = listener.accept().await.unwrap();
//! client.write_all(b"first line\nsecond line\n").await.unwrap();
//! client.shutdown().await.unwrap();
//! let mut lines = FramedRecv::new(server, Lines::new(1024));
//! assert_eq!(lines.next().await.unwrap().unwrap(), "first line");  // a slice of the received buffer
//! assert_eq!(lines.next().await.unwrap().unwrap(), "second line");
//! assert!(lines.next().await.is_none()); // EOF
//! # });
//! ```

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};

use crate::net::TcpStream;
use crate::RxBuf;

/// One received buffer in the chain: as lent by the backend, or lent on as `Bytes`
/// once a frame was cut out of it.
#[derive(Debug)]
enum Piece {
    Rx(RxBuf),
    Shared(Bytes),
}

impl Piece {
    fn bytes(&self) -> &[u8] {
        match self {
            Piece::Rx(b) => b,
            Piece::Shared(b) => b,
        }
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Piece::Rx(b) => b.into_bytes(),
            Piece::Shared(b) => b,
        }
    }

    /// Makes the piece shareable (so a frame can be cut out of it) and returns it.
    fn shared(&mut self) -> &mut Bytes {
        if let Piece::Rx(_) = self {
            let Piece::Rx(rx) = std::mem::replace(self, Piece::Shared(Bytes::new())) else { unreachable!() };
            *self = Piece::Shared(rx.into_bytes());
        }
        match self {
            Piece::Shared(b) => b,
            Piece::Rx(_) => unreachable!("made shared above"),
        }
    }
}

/// The bytes received and not yet consumed, as the pool buffers they arrived in
/// (see the module docs). A [`bytes::Buf`]: a decoder reads it in place.
///
/// ```
/// use bytes::Buf;
/// use paste_rt::compat::codec::RxChain;
/// let mut chain = RxChain::new();
/// chain.push_bytes(bytes::Bytes::from_static(b"ab"));
/// chain.push_bytes(bytes::Bytes::from_static(b"cdef"));
/// assert_eq!((chain.remaining(), chain.chunk()), (6, &b"ab"[..]));
/// assert_eq!(chain.find(b'd'), Some(3));
/// let first = chain.split_to(3); // spans two buffers: gathered (one copy)
/// let rest = chain.split_to(3); // inside one buffer: a slice (no copy)
/// assert_eq!((&first[..], &rest[..]), (&b"abc"[..], &b"def"[..]));
/// ```
#[derive(Debug, Default)]
pub struct RxChain {
    pieces: VecDeque<Piece>,
    len: usize,
}

impl RxChain {
    /// An empty chain.
    pub fn new() -> RxChain {
        RxChain::default()
    }

    /// Appends a received buffer (empty ones are dropped at once).
    pub fn push(&mut self, buf: RxBuf) {
        if !buf.is_empty() {
            self.len += buf.len();
            self.pieces.push_back(Piece::Rx(buf));
        }
    }

    /// Appends bytes from anywhere (a test, or data received another way).
    pub fn push_bytes(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.len += bytes.len();
            self.pieces.push_back(Piece::Shared(bytes));
        }
    }

    /// Bytes in the chain.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the chain is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Received buffers in the chain.
    pub fn buffers(&self) -> usize {
        self.pieces.len()
    }

    /// The position of the first `byte` at or after `from`, across buffers.
    pub fn find_from(&self, from: usize, byte: u8) -> Option<usize> {
        let mut base = 0;
        for piece in &self.pieces {
            let b = piece.bytes();
            if from < base + b.len() {
                let start = from.saturating_sub(base);
                if let Some(i) = b[start..].iter().position(|&x| x == byte) {
                    return Some(base + start + i);
                }
            }
            base += b.len();
        }
        None
    }

    /// The position of the first `byte`, across buffers.
    pub fn find(&self, byte: u8) -> Option<usize> {
        self.find_from(0, byte)
    }

    /// Copies the first `out.len()` bytes into `out` without consuming them; `false`
    /// (and nothing copied) if the chain holds fewer.
    pub fn peek(&self, out: &mut [u8]) -> bool {
        if out.len() > self.len {
            return false;
        }
        let mut at = 0;
        for piece in &self.pieces {
            if at == out.len() {
                break;
            }
            let b = piece.bytes();
            let n = b.len().min(out.len() - at);
            out[at..at + n].copy_from_slice(&b[..n]);
            at += n;
        }
        true
    }

    /// Takes the first `n` bytes as one `Bytes`: a slice of the received buffer, no
    /// copy, when they lie in one buffer; gathered into a new `Bytes` (one copy) when
    /// they span several.
    ///
    /// # Panics
    /// If the chain holds fewer than `n` bytes.
    pub fn split_to(&mut self, n: usize) -> Bytes {
        assert!(n <= self.len, "RxChain::split_to({n}) with {} bytes", self.len);
        if n == 0 {
            return Bytes::new();
        }
        let front_len = self.pieces.front().map_or(0, |p| p.bytes().len());
        if n == front_len {
            self.len -= n;
            return self.pieces.pop_front().map(Piece::into_bytes).unwrap_or_default();
        }
        if n < front_len {
            self.len -= n;
            let front = self.pieces.front_mut().expect("front_len > 0");
            return front.shared().split_to(n);
        }
        let mut gathered = BytesMut::with_capacity(n);
        let mut left = n;
        while left > 0 {
            let chunk = self.chunk();
            let k = chunk.len().min(left);
            gathered.extend_from_slice(&chunk[..k]);
            self.advance(k);
            left -= k;
        }
        gathered.freeze()
    }

    /// Takes the first `n` bytes as a chain of their own: whole buffers move over and
    /// at most one is cut (lent on as `Bytes`), never a copy.
    ///
    /// # Panics
    /// If the chain holds fewer than `n` bytes.
    pub fn split_chain(&mut self, n: usize) -> RxChain {
        assert!(n <= self.len, "RxChain::split_chain({n}) with {} bytes", self.len);
        let mut out = RxChain::new();
        let mut left = n;
        while left > 0 {
            let front_len = self.pieces.front().map_or(0, |p| p.bytes().len());
            if front_len <= left {
                let piece = self.pieces.pop_front().expect("left > 0 bytes remain");
                self.len -= front_len;
                out.len += front_len;
                out.pieces.push_back(piece);
                left -= front_len;
            } else {
                out.push_bytes(self.split_to(left));
                left = 0;
            }
        }
        out
    }
}

impl Buf for RxChain {
    fn remaining(&self) -> usize {
        self.len
    }

    fn chunk(&self) -> &[u8] {
        self.pieces.front().map_or(&[], Piece::bytes)
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.len, "RxChain::advance({cnt}) with {} bytes", self.len);
        self.len -= cnt;
        while cnt > 0 {
            let front = self.pieces.front_mut().expect("cnt <= len");
            let here = front.bytes().len();
            if cnt >= here {
                // Consumed: the buffer goes back to its pool now.
                self.pieces.pop_front();
                cnt -= here;
            } else {
                match front {
                    Piece::Rx(b) => b.advance(cnt),
                    Piece::Shared(b) => b.advance(cnt),
                }
                cnt = 0;
            }
        }
    }

    fn copy_to_bytes(&mut self, len: usize) -> Bytes {
        self.split_to(len)
    }
}

/// Decodes frames from received bytes in place (the counterpart of tokio-util's
/// `Decoder`, reading an [`RxChain`] instead of a `BytesMut`).
pub trait FrameDecoder {
    /// A decoded frame.
    type Item;
    /// A decoding error (receive errors become one too).
    type Error: From<io::Error>;

    /// Decodes one frame from the front of `src`, consuming its bytes; `Ok(None)`
    /// when `src` does not hold a whole frame yet (more is received, then it is
    /// called again).
    fn decode(&mut self, src: &mut RxChain) -> Result<Option<Self::Item>, Self::Error>;

    /// At the end of the stream: decodes what can be, `Ok(None)` when nothing is
    /// left. By default, leftover bytes (a truncated frame) are an
    /// `UnexpectedEof` error.
    fn decode_eof(&mut self, src: &mut RxChain) -> Result<Option<Self::Item>, Self::Error> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the stream ended inside a frame ({} bytes left)", src.len()),
            )
            .into()),
        }
    }
}

/// Frames received on a [`TcpStream`], decoded by `D` from the pool buffers in
/// place (see the module docs).
#[derive(Debug)]
pub struct FramedRecv<D> {
    stream: TcpStream,
    decoder: D,
    chain: RxChain,
    eof: bool,
}

impl<D: FrameDecoder> FramedRecv<D> {
    /// Decodes what `stream` receives with `decoder`.
    pub fn new(stream: TcpStream, decoder: D) -> FramedRecv<D> {
        FramedRecv { stream, decoder, chain: RxChain::new(), eof: false }
    }

    /// The next frame; `None` once the stream ended and every frame was taken.
    pub async fn next(&mut self) -> Option<Result<D::Item, D::Error>> {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Polls [`next`](Self::next) (wrap it in `futures::stream::poll_fn` for a
    /// `Stream`).
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<D::Item, D::Error>>> {
        loop {
            if self.eof {
                return Poll::Ready(self.decoder.decode_eof(&mut self.chain).transpose());
            }
            if !self.chain.is_empty() {
                match self.decoder.decode(&mut self.chain) {
                    Ok(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
                    Ok(None) => {}
                    Err(e) => return Poll::Ready(Some(Err(e))),
                }
            }
            match self.stream.poll_recv(cx) {
                Poll::Ready(Ok(Some(buf))) => self.chain.push(buf),
                Poll::Ready(Ok(None)) => self.eof = true,
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// The stream (to send on it, with [`TcpStream::send_bytes`] say).
    pub fn get_ref(&self) -> &TcpStream {
        &self.stream
    }

    /// The decoder.
    pub fn decoder_mut(&mut self) -> &mut D {
        &mut self.decoder
    }

    /// Bytes received and not decoded yet.
    pub fn buffered(&self) -> &RxChain {
        &self.chain
    }

    /// The stream and what was received but not decoded.
    pub fn into_parts(self) -> (TcpStream, RxChain) {
        (self.stream, self.chain)
    }
}

/// Lines ending in `\n` (a `\r` before it is dropped too), as `Bytes` without the
/// ending; a line longer than `max_length` is an `InvalidData` error.
#[derive(Debug, Clone)]
pub struct Lines {
    max_length: usize,
    /// Bytes already searched for the end of the current line.
    searched: usize,
}

impl Lines {
    /// Lines of at most `max_length` bytes (ending excluded).
    pub fn new(max_length: usize) -> Lines {
        Lines { max_length, searched: 0 }
    }
}

impl FrameDecoder for Lines {
    type Item = Bytes;
    type Error = io::Error;

    fn decode(&mut self, src: &mut RxChain) -> io::Result<Option<Bytes>> {
        let Some(end) = src.find_from(self.searched, b'\n') else {
            self.searched = src.len();
            if src.len() > self.max_length + 1 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a line longer than {} bytes", self.max_length),
                ));
            }
            return Ok(None);
        };
        self.searched = 0;
        let mut line = src.split_to(end + 1);
        line.truncate(end);
        if line.last() == Some(&b'\r') {
            line.truncate(end - 1);
        }
        if line.len() > self.max_length {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a line of {} bytes, longer than {}", line.len(), self.max_length),
            ));
        }
        Ok(Some(line))
    }

    fn decode_eof(&mut self, src: &mut RxChain) -> io::Result<Option<Bytes>> {
        match self.decode(src)? {
            Some(line) => Ok(Some(line)),
            // The last line may lack its ending.
            None if !src.is_empty() => {
                self.searched = 0;
                Ok(Some(src.split_to(src.len())))
            }
            None => Ok(None),
        }
    }
}

/// Frames prefixed by their length as a big-endian `u32`, as `Bytes` without the
/// prefix; a frame longer than `max_length` is an `InvalidData` error.
#[derive(Debug, Clone, Copy)]
pub struct LengthDelimited {
    max_length: usize,
}

impl LengthDelimited {
    /// Frames of at most `max_length` bytes.
    pub fn new(max_length: usize) -> LengthDelimited {
        LengthDelimited { max_length }
    }
}

impl FrameDecoder for LengthDelimited {
    type Item = Bytes;
    type Error = io::Error;

    fn decode(&mut self, src: &mut RxChain) -> io::Result<Option<Bytes>> {
        let mut prefix = [0u8; 4];
        if !src.peek(&mut prefix) {
            return Ok(None);
        }
        let len = u32::from_be_bytes(prefix) as usize;
        if len > self.max_length {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a frame of {len} bytes, longer than {}", self.max_length),
            ));
        }
        if src.len() < 4 + len {
            return Ok(None);
        }
        src.advance(4);
        Ok(Some(src.split_to(len)))
    }
}

#[cfg(test)]
mod tests {
    use paste_rt_core::{BufPool, PoolConfig};

    use super::*;

    /// Received buffers holding `parts`, as a backend lends them.
    fn chain_of(pool: &BufPool, parts: &[&[u8]]) -> RxChain {
        let mut chain = RxChain::new();
        for part in parts {
            let mut tx = pool.tx_buf().unwrap();
            tx.extend_from_slice(part);
            let (index, len) = tx.into_raw();
            // SAFETY: the index was just taken from the pool and is handed over once.
            chain.push(unsafe { pool.lend_rx(index, 0, len) });
        }
        chain
    }

    fn pool() -> BufPool {
        BufPool::new(&PoolConfig { count: 16, buf_size: 64, ..PoolConfig::default() }, 0).unwrap()
    }

    #[test]
    fn a_frame_inside_one_buffer_is_a_slice_of_it_and_one_spanning_buffers_is_gathered() {
        let p = pool();
        let mut chain = chain_of(&p, &[b"one\ntwo\nthr", b"ee\n"]);
        let front = chain.chunk().as_ptr();
        let mut lines = Lines::new(64);
        let one = lines.decode(&mut chain).unwrap().unwrap();
        let two = lines.decode(&mut chain).unwrap().unwrap();
        assert_eq!((&one[..], one.as_ptr()), (&b"one"[..], front), "no copy");
        assert_eq!((&two[..], two.as_ptr()), (&b"two"[..], front.wrapping_add(4)), "no copy");
        assert_eq!(p.lent_as_bytes(), 1, "the buffer was lent on as Bytes once, for both");
        let three = lines.decode(&mut chain).unwrap().unwrap();
        assert_eq!(&three[..], b"three", "gathered across the two buffers");
        assert!(chain.is_empty() && lines.decode(&mut chain).unwrap().is_none());
        drop((one, two, three));
        assert_eq!((p.in_use(), p.lent_as_bytes()), (0, 0), "every buffer back");
    }

    #[test]
    fn consumed_buffers_go_back_to_the_pool_at_once() {
        let p = pool();
        let mut chain = chain_of(&p, &[b"\x00\x00\x00\x02hi", b"\x00\x00\x00\x03abc"]);
        let mut frames = LengthDelimited::new(16);
        let hi = frames.decode(&mut chain).unwrap().unwrap();
        assert_eq!(p.in_use(), 2, "the first buffer is held by the frame");
        drop(hi);
        assert_eq!(p.in_use(), 1);
        assert_eq!(&frames.decode(&mut chain).unwrap().unwrap()[..], b"abc");
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn a_length_prefix_split_across_buffers_waits_for_the_rest() {
        let p = pool();
        let mut chain = chain_of(&p, &[b"\x00\x00"]);
        let mut frames = LengthDelimited::new(16);
        assert!(frames.decode(&mut chain).unwrap().is_none());
        chain.push_bytes(Bytes::from_static(b"\x00\x04da"));
        assert!(frames.decode(&mut chain).unwrap().is_none());
        chain.push_bytes(Bytes::from_static(b"ta"));
        assert_eq!(&frames.decode(&mut chain).unwrap().unwrap()[..], b"data");
        let e = frames.decode(&mut chain_of(&p, &[b"\x00\x01\x00\x00"])).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn split_chain_never_copies() {
        let p = pool();
        let mut chain = chain_of(&p, &[b"abc", b"defg", b"hi"]);
        let (a, d) = (chain.chunk().as_ptr(), chain.pieces[1].bytes().as_ptr());
        let mut head = chain.split_chain(5);
        assert_eq!((head.len(), head.buffers(), chain.len()), (5, 2, 4));
        assert_eq!(head.chunk().as_ptr(), a);
        head.advance(3);
        assert_eq!((head.chunk(), head.chunk().as_ptr()), (&b"de"[..], d));
        assert_eq!(chain.chunk(), b"fg");
    }

    #[test]
    fn overlong_lines_are_an_error_and_a_last_line_may_lack_its_ending() {
        let p = pool();
        let mut lines = Lines::new(4);
        let e = lines.decode(&mut chain_of(&p, &[b"too long\n"])).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let e = Lines::new(4).decode(&mut chain_of(&p, &[b"endless"])).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let mut chain = chain_of(&p, &[b"a\r\nlast"]);
        let mut lines = Lines::new(8);
        assert_eq!(&lines.decode_eof(&mut chain).unwrap().unwrap()[..], b"a");
        assert_eq!(&lines.decode_eof(&mut chain).unwrap().unwrap()[..], b"last");
        assert!(lines.decode_eof(&mut chain).unwrap().is_none());
    }
}
