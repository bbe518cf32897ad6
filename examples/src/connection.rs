//! The life of a connection in the example servers: accepted, fed batches of
//! received buffers, closed.
//!
//! Owns the policy for accept errors (which are transient — out of descriptors,
//! out of memory, a connection aborted before it was taken — and which end the
//! server), the serving loop ([`serve_batches`]: every buffer that arrived by this
//! tick goes to the [`Protocol`], one outbox flush answers all of them, the receive
//! deadline a [`ConnTimer`] keeps follows, and backpressure waits), graceful
//! shutdown (idle connections close at once, one in the middle of a request gets
//! the shutdown grace, the process waits no longer),
//! and the graceful close (FIN after the queued replies, then discard what the peer
//! still sends, for a bounded time, so a late request cannot turn the close into a
//! reset that destroys the reply). It never parses protocol bytes.

use std::future::poll_fn;
use std::future::Future;
use std::io;
use std::ops::ControlFlow;
use std::task::Poll;
use std::time::Duration;

use paste_rt::net::{TcpListener, TcpStream};
use paste_rt::time::coarse_now;
use paste_rt::RxBuf;

use crate::outbox::Outbox;
use crate::timeouts::{ConnTimer, DeadlineChange, Phase};

/// Most buffers [`serve_batches`] hands to the protocol before it flushes the
/// replies (so replies to a fast sender leave regularly).
pub const MAX_BATCH: usize = 64;

/// A protocol spoken on one connection, driven by [`serve_batches`]: it turns
/// received bytes into replies and says where the connection stands.
pub trait Protocol {
    /// Handles one received buffer, putting replies into `out`; `Break` to stop
    /// receiving (the connection then closes after the queued replies).
    fn on_buf(&mut self, buf: RxBuf, out: &mut Outbox<'_>) -> ControlFlow<()>;

    /// Where the connection stands now (the timer's phase after a batch).
    fn phase(&self) -> Phase;
}

/// How [`serve_batches`] ended.
#[derive(Debug)]
pub enum Received {
    /// The protocol asked to stop (it will close the connection).
    Stopped,
    /// The peer closed its side and every buffer before its FIN was handled.
    Eof,
    /// Receiving or sending failed (a reset, for example).
    Failed(io::Error),
    /// Nothing was waiting and graceful shutdown was requested: close now.
    Shutdown,
    /// The receive deadline passed (a limit of the connection's [`ConnTimer`], or
    /// the shutdown grace): close now, answering first if the protocol says so.
    TimedOut,
}

/// Serves `stream` with `protocol` until the connection ends: every buffer received
/// by now goes to the protocol (up to [`MAX_BATCH`] at a time), then the replies
/// are flushed, the deadline follows the protocol's phase, and it waits for more —
/// or for send room, when a peer does not read. Every reply put is flushed before
/// it returns.
///
/// A batch that takes everything received leaves the task registered for the next
/// data ([`RecvEach::is_drained`](paste_rt::net::RecvEach::is_drained)), so a
/// request costs one look at the connection, not two. A graceful shutdown requested
/// while nothing is waiting ends an idle connection with [`Received::Shutdown`];
/// one in the middle of a request keeps receiving until the request is complete,
/// for at most the shutdown grace. When the deadline passes first:
/// [`Received::TimedOut`].
pub async fn serve_batches(
    stream: &TcpStream,
    timer: &mut ConnTimer,
    out: &mut Outbox<'_>,
    protocol: &mut impl Protocol,
) -> Received {
    poll_fn(|cx| loop {
        if out.is_full() {
            match out.poll_room(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Received::Failed(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        let mut taken = 0;
        let mut stopped = false;
        let step = stream.poll_recv_each(cx, |buf| {
            taken += 1;
            if protocol.on_buf(buf, out).is_break() {
                stopped = true;
                return ControlFlow::Break(());
            }
            if taken == MAX_BATCH {
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        });
        let ended = match step {
            _ if stopped => Received::Stopped,
            Poll::Ready(Ok(each)) if each.is_eof() => Received::Eof,
            Poll::Ready(Ok(each)) => {
                if let Err(e) = out.flush() {
                    return Poll::Ready(Received::Failed(e));
                }
                apply(stream, timer.update(protocol.phase(), coarse_now()));
                if each.is_drained() && !out.is_full() && !paste_rt::runtime::is_shutting_down() {
                    // Registered for the next data already: no second look.
                    return Poll::Pending;
                }
                continue;
            }
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::TimedOut => Received::TimedOut,
            Poll::Ready(Err(e)) => Received::Failed(e),
            // Graceful shutdown (the runtime wakes receivers when it is requested):
            // an idle connection closes here, a busy one gets the grace.
            Poll::Pending => {
                if !paste_rt::runtime::is_shutting_down() {
                    return Poll::Pending;
                }
                if timer.phase() == Phase::Idle {
                    Received::Shutdown
                } else if apply(stream, timer.shutdown(coarse_now())) {
                    continue; // a deadline already past is reported at once
                } else {
                    return Poll::Pending;
                }
            }
        };
        return Poll::Ready(match out.flush() {
            Ok(()) => ended,
            Err(e) => Received::Failed(e),
        });
    })
    .await
}

/// How long a closing connection keeps reading (and discarding) after its FIN.
pub const LINGER: Duration = Duration::from_secs(2);

/// Accepts connections until the listener fails or graceful shutdown is requested
/// (then it returns `Ok`), handing each to `on_connection` (which normally spawns
/// a task for it).
///
/// Transient errors (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`, `ECONNABORTED`) are
/// skipped: the backend retries by itself and the next connection is accepted once
/// resources are back. Any other error is returned.
///
/// Every connection gets `TCP_NODELAY` (one system call per connection, none per
/// request): these servers answer pipelined requests in more than one send when
/// they arrive in more than one read, and Nagle's algorithm would hold the later
/// send until the peer's delayed ACK, up to 40 ms on Linux.
pub async fn accept_each(listener: &TcpListener, mut on_connection: impl FnMut(TcpStream)) -> io::Result<()> {
    let mut shutdown = std::pin::pin!(paste_rt::runtime::shutdown_requested());
    loop {
        let next = poll_fn(|cx| {
            if shutdown.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            listener.poll_accept(cx).map(Some)
        })
        .await;
        match next {
            None => return Ok(()),
            Some(Ok(stream)) => {
                // A failure only leaves Nagle on: slower, never wrong.
                let _ = stream.set_nodelay(true);
                on_connection(stream)
            }
            Some(Err(e)) if is_transient(&e) => continue,
            Some(Err(e)) => return Err(e),
        }
    }
}

/// Turns Ctrl-C (SIGINT) and SIGTERM into a graceful shutdown of the current
/// runtime: every `shutdown_requested()` completes, accept loops return, idle
/// connections close, requests in hand are answered.
pub fn shutdown_on_signals() {
    paste_rt::spawn(async {
        let (mut int, mut term) =
            (std::pin::pin!(paste_rt::signal::ctrl_c()), std::pin::pin!(paste_rt::signal::terminate()));
        let got = poll_fn(|cx| match (int.as_mut().poll(cx), term.as_mut().poll(cx)) {
            (Poll::Ready(r), _) | (_, Poll::Ready(r)) => Poll::Ready(r),
            _ => Poll::Pending,
        })
        .await;
        if got.is_ok() {
            paste_rt::runtime::request_shutdown();
        }
    });
}

/// Sets `stream`'s receive deadline as `change` says; whether it changed.
#[inline]
pub fn apply(stream: &TcpStream, change: DeadlineChange) -> bool {
    match change {
        Some(deadline) => {
            stream.set_recv_deadline(deadline);
            true
        }
        None => false,
    }
}

/// Starts `timer` for a new connection and sets its first deadline.
pub fn start_timer(stream: &TcpStream, timeouts: crate::timeouts::Timeouts, phase: Phase) -> ConnTimer {
    let (timer, deadline) = ConnTimer::start(timeouts, phase, coarse_now());
    if deadline.is_some() {
        stream.set_recv_deadline(deadline);
    }
    timer
}

/// Runs a server the way every example binary does: Ctrl-C or SIGTERM starts a
/// graceful shutdown ([`shutdown_on_signals`]), and once `serve` returns, the
/// connections still finishing their requests get up to `grace` ([`drain`]); then
/// the runtime closes whatever is left.
pub async fn serve_gracefully(serve: impl Future<Output = io::Result<()>>, grace: Duration) -> io::Result<()> {
    shutdown_on_signals();
    serve.await?;
    // The connections' own grace deadlines are swept up to 100 ms late: a little
    // slack lets them answer (408) rather than be cut by the runtime's close.
    drain(grace + Duration::from_millis(200)).await;
    Ok(())
}

/// After the accept loop returned: waits until the runtime's tasks (connections
/// finishing their requests) are done, at most `grace`.
pub async fn drain(grace: Duration) {
    let deadline = std::time::Instant::now() + grace;
    while paste_rt::runtime::live_tasks() > 0 && std::time::Instant::now() < deadline {
        paste_rt::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether an accept error leaves the listener usable.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::ECONNABORTED | libc::EINTR)
    ) || e.kind() == io::ErrorKind::ConnectionAborted
}

/// Closes a connection gracefully: sends everything queued, then FIN, then reads
/// and discards until the peer closes too (or [`LINGER`] passes). Errors only end
/// the close early.
pub async fn close_gracefully(stream: &TcpStream) {
    // The linger has its own bound; an expired receive deadline must not cut it.
    stream.set_recv_deadline(None);
    if stream.shutdown().await.is_err() {
        return;
    }
    let _ = paste_rt::time::timeout(LINGER, async {
        while let Ok(Some(discarded)) = stream.recv().await {
            drop(discarded);
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM, libc::ECONNABORTED] {
            assert!(is_transient(&io::Error::from_raw_os_error(errno)), "errno {errno}");
        }
        for errno in [libc::EBADF, libc::EINVAL, libc::ENOTSOCK] {
            assert!(!is_transient(&io::Error::from_raw_os_error(errno)), "errno {errno}");
        }
    }
}
