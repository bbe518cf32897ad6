//! tokio's and futures' I/O traits for [`TcpStream`] and its halves and for
//! [`UnixStream`], so existing protocol code (codecs, hyper, `copy`) runs on
//! paste-rt unchanged. All of them forward to the shared [`Connection`].
//!
//! Reads drain the lent receive buffers into the caller's buffer (a copy — use
//! `recv` for zero copy, and `RxBuf::into_bytes` for a `Bytes` without one). Writes
//! copy into pool buffers and queue them: they leave at the next tick, batched with
//! everything else, so `poll_write` returns as soon as the bytes are queued (and
//! waits only while more than 256 KiB are queued: backpressure). **A write error
//! surfaces on the next call or on flush**, not on the write that queued the bytes —
//! as with any buffered writer.
//!
//! ## What `poll_flush` guarantees
//!
//! `poll_flush` is ready once everything written is in the connection's send queue
//! and no send has failed. The queue is the transport here: it is owned by the
//! runtime, which hands it to the kernel at its next poll with no further call, in
//! order, before anything written later. `poll_flush` does not wait for the kernel
//! to take the bytes — with deferred sends that would cost every flush a tick (one
//! more task wake-up per message: a request–response protocol flushing after each
//! response, such as hyper or a `Framed` codec, loses 10–15 % of its throughput to
//! it) — only for backpressure, like `poll_write`. Concretely:
//!
//! * the bytes leave without another call for as long as the runtime runs, even if
//!   the stream is dropped right after the flush: a dropped stream lingers until
//!   its queue is sent, then closes;
//! * a send that fails after the flush returned is reported by the next
//!   `poll_write`, `poll_flush` or `poll_shutdown` (the error is sticky);
//! * `poll_shutdown` (futures: `poll_close`) is the strong barrier: it queues the FIN
//!   after everything written and is ready only once the kernel has taken all of it,
//!   FIN included;
//! * what a flush does not cover: dropping the *runtime* abandons what is still
//!   queued. To know the kernel has every byte — before the runtime is dropped, say
//!   — shut the stream down, or await the inherent `TcpStream::flush` /
//!   `UnixStream::flush`, which waits for exactly that.
//!
//! The same text, shorter, is on each `poll_flush` below (what users see on the
//! types' pages), and in docs/migrating-from-tokio.md.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::conn::Connection;
use super::stream::{OwnedReadHalf, OwnedWriteHalf, ReadHalf, WriteHalf};
use super::{TcpStream, UnixStream};

/// Forwards both traits of both crates to the stream's `poll_*` methods.
macro_rules! io_traits {
    (read: $($r:ty => |$rs:ident| $rexpr:expr),* ; write: $($w:ty => |$ws:ident| $wexpr:expr),*) => {
        $(
            #[cfg(feature = "tokio-io")]
            impl tokio::io::AsyncRead for $r {
                fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> Poll<io::Result<()>> {
                    let $rs = &*self;
                    let stream: &Connection = $rexpr;
                    let n = match stream.poll_read(cx, buf.initialize_unfilled()) {
                        Poll::Ready(Ok(n)) => n,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    };
                    buf.advance(n);
                    Poll::Ready(Ok(()))
                }
            }
            #[cfg(feature = "futures-io")]
            impl futures_io::AsyncRead for $r {
                fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
                    let $rs = &*self;
                    let stream: &Connection = $rexpr;
                    stream.poll_read(cx, buf)
                }
            }
        )*
        $(
            #[cfg(feature = "tokio-io")]
            impl tokio::io::AsyncWrite for $w {
                fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
                    let $ws = &*self;
                    let stream: &Connection = $wexpr;
                    stream.poll_write(cx, data)
                }
                /// Ready once everything written is in the connection's send queue and
                /// no send has failed: the runtime hands the queue to the kernel at its
                /// next poll, in order, with no further call (a dropped stream still
                /// sends it before closing). It does not wait for the kernel to take the
                /// bytes — that would cost every flush a tick — only for backpressure
                /// (more than 256 KiB queued). A send failing later is reported by the
                /// next write, flush or shutdown. Dropping the runtime abandons what is
                /// still queued: to know the kernel has every byte, shut the stream down
                /// or await its inherent `flush`.
                fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                    let $ws = &*self;
                    let stream: &Connection = $wexpr;
                    stream.poll_send_ready(cx)
                }
                /// Queues the FIN after everything written; ready once the kernel has
                /// taken all of it, FIN included (the barrier `poll_flush` is not).
                fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                    let $ws = &*self;
                    let stream: &Connection = $wexpr;
                    stream.poll_shutdown(cx)
                }
            }
            #[cfg(feature = "futures-io")]
            impl futures_io::AsyncWrite for $w {
                fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
                    let $ws = &*self;
                    let stream: &Connection = $wexpr;
                    stream.poll_write(cx, data)
                }
                /// Ready once everything written is in the connection's send queue and
                /// no send has failed: the runtime hands the queue to the kernel at its
                /// next poll, in order, with no further call (a dropped stream still
                /// sends it before closing). It does not wait for the kernel to take the
                /// bytes — that would cost every flush a tick — only for backpressure
                /// (more than 256 KiB queued). A send failing later is reported by the
                /// next write, flush or shutdown. Dropping the runtime abandons what is
                /// still queued: to know the kernel has every byte, shut the stream down
                /// or await its inherent `flush`.
                fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                    let $ws = &*self;
                    let stream: &Connection = $wexpr;
                    stream.poll_send_ready(cx)
                }
                /// Queues the FIN after everything written; ready once the kernel has
                /// taken all of it, FIN included (the barrier `poll_flush` is not).
                fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                    let $ws = &*self;
                    let stream: &Connection = $wexpr;
                    stream.poll_shutdown(cx)
                }
            }
        )*
    };
}

io_traits!(
    read:
        TcpStream => |s| s.conn(),
        ReadHalf<'_> => |s| s.stream().conn(),
        OwnedReadHalf => |s| s.stream().conn(),
        UnixStream => |s| s.conn();
    write:
        TcpStream => |s| s.conn(),
        WriteHalf<'_> => |s| s.stream().conn(),
        OwnedWriteHalf => |s| s.stream().conn(),
        UnixStream => |s| s.conn()
);
