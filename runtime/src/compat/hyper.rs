//! hyper 1.x on paste-rt: [`HyperIo`] (`hyper::rt::{Read, Write}` for a
//! [`TcpStream`]), [`LocalExec`] (`hyper::rt::Executor` through [`spawn`](crate::spawn),
//! so `!Send` futures such as HTTP/2 streams over a `!Send` connection are fine)
//! and [`HyperTimer`] (`hyper::rt::Timer` on the runtime's timer queue).
//!
//! Owns only the trait glue. It must never keep a runtime object in a `Send` type:
//! hyper requires its sleeps to be `Send + Sync`, so a [`HyperSleep`] holds only
//! its deadline and the index of the runtime timer it parked in a per-thread table.
//!
//! ## Where the bytes are copied, and why
//!
//! * **Request bytes: one copy**, from the pool buffer the backend received into
//!   into hyper's read buffer. hyper's `rt::Read` hands the transport a cursor into
//!   hyper's own `BytesMut` and parses heads and bodies out of it; a body chunk is a
//!   `Bytes` split off that buffer. No method of hyper 1.x takes received data as a
//!   `Bytes`, so a pool buffer cannot become a request body. (Outside hyper,
//!   [`RxBuf::into_bytes`](crate::RxBuf::into_bytes) makes that `Bytes` without a
//!   copy.)
//! * **Response bytes: two copies.** hyper's `rt::Write` lends the transport only
//!   `&[u8]` slices, never the body's `Bytes` (it stays hyper's and may be dropped
//!   as soon as the write returns), so a response cannot be queued without copying
//!   it into pool buffers. [`HyperIo`] does not write vectored, so hyper first
//!   flattens the body into its own head buffer and writes head and body as one
//!   slice (reused, no allocation): for small responses that costs fewer
//!   instructions than hyper's vectored path (measured: about 600 more per request
//!   with `poll_write_vectored`, which would save the first copy), and a
//!   `Bytes::from_static` body costs no allocation either way. (Outside hyper,
//!   [`TcpStream::send_bytes`](crate::net::TcpStream::send_bytes) sends a `Bytes`
//!   with no copy at all on epoll and io_uring.)
//!
//! ## Flush
//!
//! Writes are queued like every paste-rt send and leave at the next tick. hyper
//! flushes after every response; [`HyperIo`]'s `poll_flush` is ready once the
//! response is in the connection's send queue, which the runtime hands to the
//! kernel at its next poll without any further call, and no send has failed. It
//! does not wait for the kernel to take the bytes: that cost every response a tick
//! (one more wake-up of the connection task), 11–15 % of hyper's throughput. A send
//! that fails later is reported by hyper's next write, flush or shutdown;
//! `poll_shutdown` waits until the kernel has taken everything and the FIN (hyper
//! calls it before it drops a connection it closes); and a connection hyper drops
//! without a shutdown still sends what it queued before its socket closes. What no
//! flush covers: dropping the runtime itself abandons what is still queued.
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
use std::time::{Duration, Instant};

use hyper::rt::{Executor, Read, ReadBufCursor, Sleep, Timer, Write};

use crate::net::TcpStream;
use crate::time::TimerKey;

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
    /// Copies `data` into a pool buffer and queues it (see the module docs); waits
    /// only while more than 256 KiB are queued.
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.stream.poll_write(cx, data)
    }

    /// Ready once everything written is in the connection's send queue and no send
    /// has failed; it does not wait for the kernel to take it (see the module docs).
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream.poll_send_ready(cx)
    }

    /// Queues the FIN after everything written; ready once the kernel has taken all
    /// of it, FIN included.
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

/// The sleep [`HyperTimer`] makes: `Send + Sync`, completing at its deadline.
///
/// It holds only its deadline and, once polled, the id of the runtime whose timer
/// queue it waits in and its entry's key (plain numbers): a runtime `Sleep` holds its
/// runtime and cannot be `Send`. Polling, resetting and dropping it on that
/// runtime's thread allocates nothing; elsewhere its entry is left to fire unheeded
/// (hyper never moves a sleep under paste-rt, whose connections never leave their
/// thread).
///
/// hyper's HTTP/1 server makes a sleep for every request head (its header-read
/// timeout) and drops it as soon as the head has arrived, so a dropped sleep leaves
/// its timer entry armed (waking nobody) for the next sleep on the thread whose
/// deadline is not earlier: that one takes the entry over instead of inserting a new
/// one, and if the entry fires before its own deadline it simply arms again. Per
/// request that is a waker update, not an insert, a removal and a stale heap entry.
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct HyperSleep {
    deadline: Instant,
    /// Its armed timer entry, once polled.
    parked: Option<Parked>,
}

/// An armed entry of a runtime's timer queue.
#[derive(Clone, Copy, Debug)]
struct Parked {
    runtime: u64,
    key: TimerKey,
    /// When the entry fires (at or before the deadline of the sleep holding it).
    fires: Instant,
}

/// Most armed entries dropped sleeps leave for later ones, per thread.
const SPARE_MAX: usize = 256;

thread_local! {
    /// Entries of dropped sleeps, still armed (see [`HyperSleep`]).
    static SPARE: RefCell<Vec<Parked>> = const { RefCell::new(Vec::new()) };
}

/// A spare entry of `runtime` firing no later than `deadline` (the most recent
/// such: hyper's deadlines grow, so it is the last one).
fn take_spare(runtime: u64, deadline: Instant) -> Option<Parked> {
    SPARE
        .try_with(|spare| {
            let mut spare = spare.borrow_mut();
            let i = spare.iter().rposition(|p| p.runtime == runtime && p.fires <= deadline)?;
            Some(spare.swap_remove(i))
        })
        .ok()
        .flatten()
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

    /// Moves the deadline. A later one keeps the armed entry (when it fires first,
    /// the sleep arms again); an earlier one gives it up.
    pub fn reset(mut self: Pin<&mut Self>, deadline: Instant) {
        self.deadline = deadline;
        if self.parked.is_some_and(|p| deadline < p.fires) {
            self.unpark();
        }
    }

    /// Gives its entry up: left armed for a later sleep (or removed when it fired,
    /// or when enough are spare), if it is the current runtime's.
    fn unpark(&mut self) {
        let Some(p) = self.parked.take() else { return };
        if !crate::context::is_current(p.runtime) {
            return;
        }
        crate::context::with_current(|rt| {
            let Ok(mut timers) = rt.timers.try_borrow_mut() else { return };
            // A waker that wakes nobody: the task may be gone by the time it fires.
            if timers.poll(p.key, std::task::Waker::noop()) {
                timers.remove(p.key);
                return;
            }
            let kept = SPARE
                .try_with(|spare| {
                    let mut spare = spare.borrow_mut();
                    if spare.len() >= SPARE_MAX {
                        // Entries of runtimes gone from this thread are never taken.
                        spare.retain(|s| crate::context::is_current(s.runtime));
                    }
                    (spare.len() < SPARE_MAX).then(|| spare.push(p)).is_some()
                })
                .unwrap_or(false);
            if !kept {
                timers.remove(p.key);
            }
        });
    }
}

impl Future for HyperSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let due = crate::context::with_current(|rt| {
            let mut timers = rt.timers.borrow_mut();
            if this.parked.is_none_or(|p| p.runtime != rt.id) {
                // Not armed here yet (an entry on another runtime is left to fire
                // unheeded). The tick's clock is enough to see it is due.
                this.parked = None;
                if crate::time::coarse_now() >= this.deadline {
                    return true;
                }
                this.parked = take_spare(rt.id, this.deadline);
            }
            if let Some(p) = this.parked {
                if !timers.poll(p.key, cx.waker()) {
                    return false; // armed, waker up to date
                }
                timers.remove(p.key);
                this.parked = None;
                if this.deadline <= p.fires || crate::time::coarse_now() >= this.deadline {
                    return true;
                }
                // It fired before this sleep's deadline (taken over, or reset later).
            }
            let key = timers.insert(this.deadline, cx.waker().clone());
            this.parked = Some(Parked { runtime: rt.id, key, fires: this.deadline });
            false
        });
        match due {
            Some(true) => Poll::Ready(()),
            Some(false) => Poll::Pending,
            None => panic!("a HyperSleep must be polled on a paste-rt runtime thread (HyperTimer's sleeps are)"),
        }
    }
}

impl Sleep for HyperSleep {}

impl Drop for HyperSleep {
    fn drop(&mut self) {
        self.unpark();
    }
}
