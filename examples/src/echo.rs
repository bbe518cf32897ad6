//! An echo server on paste-rt: every byte received is sent back, in order.
//!
//! Owns the accept loop and the per-connection echo task. Receiving is zero copy
//! (the pool buffer the backend received into is read in place); sending copies
//! the bytes of every buffer received by this tick once into pool
//! [`TxBuf`](paste_rt::TxBuf)s through an [`Outbox`] (small receives share one)
//! and queues them without waiting. The copy is deliberate: a received
//! buffer cannot be sent as it is, because the backend contract's
//! [`SendData`](paste_rt::SendData) takes only `TxBuf`s (whose data starts after
//! the backend's TX headroom) or owned bytes — one memcpy per received byte, no
//! allocation. Waits only for backpressure; on the peer's FIN it
//! sends what is left, then FIN. It never interprets the bytes.

use std::io;
use std::ops::ControlFlow;

use paste_rt::net::{TcpListener, TcpStream};
use paste_rt::RxBuf;

use crate::connection::{accept_each, close_gracefully, serve_batches, start_timer, Protocol, Received};
use crate::outbox::Outbox;
use crate::timeouts::{Phase, Timeouts};

/// Serves echo on `listener` until accepting fails for good.
///
/// # Errors
/// The listener's error.
pub async fn serve(listener: TcpListener) -> io::Result<()> {
    accept_each(&listener, |stream| {
        // Detached: the task ends with its connection.
        drop(paste_rt::spawn(echo_connection(stream)));
    })
    .await
}

/// Echoes one connection until the peer closes it (then FIN) or it fails.
async fn echo_connection(stream: TcpStream) {
    let mut out = Outbox::new(&stream);
    // Echo has no requests: always between them, so shutdown closes it at once.
    let mut timer = start_timer(&stream, Timeouts::NONE, Phase::Idle);
    match serve_batches(&stream, &mut timer, &mut out, &mut Echo).await {
        Received::Eof => {
            let _ = stream.shutdown().await;
        }
        Received::Stopped | Received::Shutdown => close_gracefully(&stream).await,
        Received::Failed(_) | Received::TimedOut => {}
    }
}

/// The echo protocol: every received byte is put back.
struct Echo;

impl Protocol for Echo {
    fn on_buf(&mut self, buf: RxBuf, out: &mut Outbox<'_>) -> ControlFlow<()> {
        out.put(&buf);
        ControlFlow::Continue(())
    }

    fn phase(&self) -> Phase {
        Phase::Idle
    }
}
