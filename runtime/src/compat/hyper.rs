//! hyper 1.x on paste-rt: [`HyperIo`] (`hyper::rt::{Read, Write}` for a
//! [`TcpStream`]), [`LocalExec`] (`hyper::rt::Executor` through [`spawn`](crate::spawn),
//! so `!Send` futures such as HTTP/2 streams over a `!Send` connection are fine)
//! and [`HyperTimer`] (`hyper::rt::Timer` on the runtime's timer queue).
//!
//! Owns only the trait glue. Reads copy out of the lent receive buffers into
//! hyper's buffer; writes are queued like every paste-rt send and leave at the next
//! tick, and hyper's flush waits until the kernel has them. It must never keep a
//! runtime object in a `Send` type: hyper requires its sleeps to be `Send + Sync`,
//! so a [`HyperSleep`] holds only its deadline and the index of the runtime timer
//! it parked in a per-thread table.
//!
//! ```no_run
//! use hyper::server::conn::http1;
//! use paste_rt::compat::hyper::{HyperIo, HyperTimer};
//!
//! # async fn serve(listener: paste_rt::net::TcpListener) -> std::io::Result<()> {
//! loop {
//!     let (stream, _) = listener.accept().await?;
//!     paste_rt::spawn(async move {
//!         let service = hyper::service::service_fn(|_req: hyper::Request<hyper::body::Incoming>| async {
//!             Ok::<_, std::convert::Infallible>(hyper::Response::new(String::from("hello")))
//!         });
//!         let _ = http1::Builder::new().timer(HyperTimer).serve_connection(HyperIo::new(stream), service).await;
//!     });
//! }
//! # }
//! ```

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use hyper::rt::{Executor, Read, ReadBufCursor, Sleep, Timer, Write};
use slab::Slab;

use crate::net::TcpStream;

/// A [`TcpStream`] as hyper's `Read + Write` connection.
#[derive(Debug)]
pub struct HyperIo {
    stream: TcpStream,
}

impl HyperIo {
    /// Wraps `stream`.
    pub fn new(stream: TcpStream) -> HyperIo {
        HyperIo { stream }
    }

    /// The stream.
    pub fn get_ref(&self) -> &TcpStream {
        &self.stream
    }

    /// Unwraps the stream.
    pub fn into_inner(self) -> TcpStream {
        self.stream
    }
}

impl From<TcpStream> for HyperIo {
    fn from(stream: TcpStream) -> HyperIo {
        HyperIo::new(stream)
    }
}

impl Read for HyperIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, mut buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        match self.stream.poll_recv(cx) {
            Poll::Ready(Ok(Some(mut rx))) => {
                let n = rx.len().min(buf.remaining());
                buf.put_slice(&rx[..n]);
                rx.advance(n);
                // What did not fit is read first next time.
                self.stream.unrecv(rx);
                Poll::Ready(Ok(()))
            }
            // EOF: nothing put in the buffer.
            Poll::Ready(Ok(None)) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Write for HyperIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.stream.poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream.poll_shutdown(cx)
    }
}

/// hyper's executor: spawns onto the current thread's runtime with
/// [`spawn`](crate::spawn). The futures need not be `Send`, so it serves HTTP/2
/// (`hyper::server::conn::http2::Builder::new(LocalExec)`, or hyper-util's
/// `server::conn::auto::Builder`) over a paste-rt connection.
///
/// # Panics
/// `execute` panics outside a paste-rt runtime (hyper only calls it from inside
/// the connection future it was given, which runs on one).
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalExec;

impl<F> Executor<F> for LocalExec
where
    F: Future + 'static,
    F::Output: 'static,
{
    fn execute(&self, future: F) {
        // Detached: the task ends with its stream; hyper keeps its own handles.
        drop(crate::spawn(future));
    }
}

/// hyper's timer (header-read timeouts, HTTP/2 keep-alive pings) on the current
/// runtime's timer queue. Its sleeps must be polled on a paste-rt runtime thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct HyperTimer;

impl Timer for HyperTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(HyperSleep::new(Instant::now() + duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(HyperSleep::new(deadline))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<HyperSleep>() {
            Some(mut ours) => ours.as_mut().reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

thread_local! {
    /// The runtime sleeps of this thread's `HyperSleep`s (a runtime `Sleep` holds
    /// its runtime and cannot be `Send`).
    static PARKED: RefCell<Slab<crate::time::Sleep>> = const { RefCell::new(Slab::new()) };
}

/// The sleep [`HyperTimer`] makes: `Send + Sync`, completing at its deadline.
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct HyperSleep {
    deadline: Instant,
    /// The thread and index of its runtime sleep, once polled.
    parked: Option<(ThreadId, usize)>,
}

impl HyperSleep {
    /// A sleep completing at `deadline`.
    pub fn new(deadline: Instant) -> HyperSleep {
        HyperSleep { deadline, parked: None }
    }

    /// When it completes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Moves the deadline, reusing the runtime timer entry's slot.
    pub fn reset(mut self: Pin<&mut Self>, deadline: Instant) {
        self.deadline = deadline;
        if let Some((thread, index)) = self.parked {
            if thread == std::thread::current().id() {
                PARKED.with(|p| p.borrow_mut()[index].reset(deadline));
            } else {
                self.unpark();
            }
        }
    }

    /// Drops its runtime sleep (on the thread that owns it; elsewhere the entry
    /// stays parked until that thread ends — hyper never moves a sleep under
    /// paste-rt, whose connections never leave their thread).
    fn unpark(&mut self) {
        if let Some((thread, index)) = self.parked.take() {
            if thread == std::thread::current().id() {
                let _ = PARKED.try_with(|p| p.borrow_mut().try_remove(index));
            }
        }
    }
}

impl Future for HyperSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let here = std::thread::current().id();
        if self.parked.is_some_and(|(thread, _)| thread != here) {
            self.unpark();
        }
        let deadline = self.deadline;
        let index = match self.parked {
            Some((_, index)) => index,
            None if Instant::now() >= deadline => return Poll::Ready(()),
            None => {
                let index = PARKED.with(|p| p.borrow_mut().insert(crate::time::sleep_until(deadline)));
                self.parked = Some((here, index));
                index
            }
        };
        PARKED.with(|p| Pin::new(&mut p.borrow_mut()[index]).poll(cx))
    }
}

impl Sleep for HyperSleep {}

impl Drop for HyperSleep {
    fn drop(&mut self) {
        self.unpark();
    }
}
