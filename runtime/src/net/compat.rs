//! tokio's and futures' I/O traits for [`TcpStream`] and its halves and for
//! [`UnixStream`], so existing protocol code (codecs, hyper, `copy`) runs on
//! paste-rt unchanged. All of them forward to the shared [`Connection`].
//!
//! Reads drain the lent receive buffers into the caller's buffer (a copy — use
//! `recv` for zero copy). Writes copy into pool buffers and queue them: they leave
//! at the next tick, batched with everything else, so `poll_write` returns as soon
//! as the bytes are queued. `poll_flush` waits until the kernel has taken every
//! queued byte; `poll_shutdown` half-closes after them. **A write error surfaces
//! on the next call or on flush**, not on the write that queued the bytes — as with
//! any buffered writer.

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
                fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                    let $ws = &*self;
                    let stream: &Connection = $wexpr;
                    stream.poll_flush(cx)
                }
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
                fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                    let $ws = &*self;
                    let stream: &Connection = $wexpr;
                    stream.poll_flush(cx)
                }
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
