//! phttpd, the PASTE paper's HTTP server, on paste-rt.
//!
//! Owns the server side of the [`http`](crate::http) protocol code: the accept
//! loop, one session per connection, and the two ways of running sessions
//! ([`Mode`]). Keep-alive HTTP/1.1; `GET` and `POST` answered with phttpd's
//! `200 OK` (87-byte header + a `body_len`-byte pattern body: 151 bytes for 64);
//! `POST` bodies read fully, across buffers, before the answer; pipelined requests
//! and requests split anywhere handled by the incremental parser; a malformed
//! request answered `400` (or the matching 4xx/5xx) and the connection closed;
//! `Connection: close` and HTTP/1.0 requests answered with `Connection: close` and
//! the connection closed. Other methods get `405`. A request head that does not
//! arrive within the header limit, or a body that pauses longer than the idle limit,
//! is answered `408` and the connection closed; a connection idle longer than the
//! idle limit is closed ([`Timeouts`]).
//!
//! The data path allocates nothing per request: received bytes are parsed in the
//! pool buffer they arrived in, and responses are built once and queued as static
//! bytes ([`Outbox::put_static`]) — no copy on io_uring and epoll when a batch has
//! one, copied together into a pool buffer when pipelined requests give it several —
//! queued without waiting and sent together at the next tick. It never blocks a task
//! on a send except for backpressure.

use std::io;
use std::ops::ControlFlow;

use paste_rt::batch::{self, Batch, BatchEvent, ConnId};
use paste_rt::net::{TcpListener, TcpStream};
use paste_rt::time::coarse_now;
use paste_rt::RxBuf;

use crate::batch_outbox::BatchOutbox;
use crate::connection::{accept_each, close_gracefully, serve_batches, start_timer, Protocol, Received};
use crate::http::{fill_body, Event, Method, RequestParser, ResponseTemplate, REQUEST_TIMEOUT};
use crate::outbox::Outbox;
pub use crate::timeouts::Timeouts;
use crate::timeouts::{ConnTimer, DeadlineChange, Phase};

/// Default body length of the `200 OK` response (the paper's 64 bytes).
pub const DEFAULT_BODY_LEN: usize = 64;

/// The `405` answer to methods other than GET and POST, connection kept.
pub const METHOD_NOT_ALLOWED: &[u8] = b"HTTP/1.1 405 Method Not Allowed\r\nConnection: keep-alive\r\nServer: Apache/2.2.800\r\nAllow: GET, POST\r\nContent-Length: 0\r\n\r\n";

/// The `405` answer when the client also asked to close.
pub const METHOD_NOT_ALLOWED_CLOSE: &[u8] =
    b"HTTP/1.1 405 Method Not Allowed\r\nConnection: close\r\nServer: Apache/2.2.800\r\nAllow: GET, POST\r\nContent-Length: 0\r\n\r\n";

/// How the server runs its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// One task per connection, each awaiting its own received buffers.
    #[default]
    Tasks,
    /// One handler called once per tick with the received buffers of every
    /// connection (`paste_rt::batch`), no task per connection: PASTE's own shape.
    Batch,
}

/// Server settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Length of the `200 OK` body.
    pub body_len: usize,
    /// Tasks or batch.
    pub mode: Mode,
}

impl Default for Config {
    fn default() -> Self {
        Config { body_len: DEFAULT_BODY_LEN, mode: Mode::Tasks }
    }
}

/// Serves phttpd on `listener` with the default limits ([`Timeouts::HTTP`]) until
/// accepting fails for good (an error that is not transient, see
/// [`crate::connection::accept_each`]) or graceful shutdown is requested.
///
/// # Errors
/// The listener's error.
pub async fn serve(listener: TcpListener, config: Config) -> io::Result<()> {
    serve_with(listener, config, Timeouts::HTTP).await
}

/// [`serve`] with explicit limits. On graceful shutdown the accept loop stops at
/// once, idle connections close, and one in the middle of a request has
/// `timeouts.shutdown_grace` to complete it (else `408` and close). In batch mode
/// this returns once every connection is closed; in tasks mode once the accept loop
/// stopped (see [`crate::connection::serve_gracefully`] for waiting on the rest).
///
/// # Errors
/// The listener's error.
pub async fn serve_with(listener: TcpListener, config: Config, timeouts: Timeouts) -> io::Result<()> {
    let responses = Responses::new(config.body_len);
    match config.mode {
        Mode::Tasks => serve_tasks(listener, responses, timeouts).await,
        Mode::Batch => serve_batch(listener, responses, timeouts).await,
    }
}

/// [`Mode::Tasks`]: one task per connection.
async fn serve_tasks(listener: TcpListener, responses: &'static Responses, timeouts: Timeouts) -> io::Result<()> {
    accept_each(&listener, |stream| {
        // Detached: the task ends with its connection.
        drop(paste_rt::spawn(serve_connection(stream, responses, timeouts)));
    })
    .await
}

/// [`Mode::Batch`]: PASTE's own model — one handler per tick over every connection
/// that received something (`paste_rt::batch`), no task per connection; each
/// connection's state is a [`Session`] in a table indexed by its `ConnId`.
async fn serve_batch(listener: TcpListener, responses: &'static Responses, timeouts: Timeouts) -> io::Result<()> {
    let mut sessions: Vec<Option<(Session, ConnTimer)>> = Vec::new();
    let mut out = BatchOutbox::new();
    batch::serve(listener, move |batch| {
        let now = coarse_now();
        loop {
            // One match on the `Option` (not `while let` then `match`): the event is
            // not moved out of it first.
            match batch.next_event() {
                Some(BatchEvent::Opened(conn)) => {
                    // As `accept_each` does in tasks mode: answers to a pipelined
                    // burst read in two parts leave in two sends.
                    let _ = batch.set_nodelay(conn, true);
                    if sessions.len() <= conn.index() {
                        sessions.resize_with(conn.index() + 1, || None);
                    }
                    let (timer, deadline) = ConnTimer::start(timeouts, Phase::Head, now);
                    if deadline.is_some() {
                        batch.set_recv_deadline(conn, deadline);
                    }
                    sessions[conn.index()] = Some((Session::new(), timer));
                }
                Some(BatchEvent::Data(conn, buf)) => {
                    let Some((session, timer)) = sessions.get_mut(conn.index()).and_then(Option::as_mut) else {
                        continue;
                    };
                    out.start(batch, conn);
                    let next = session.on_chunk(&buf, responses, |bytes| out.put_static(batch, bytes));
                    // This chunk's answers leave together: one queued item.
                    out.finish(batch);
                    if next == Next::Close {
                        batch.close(conn);
                        sessions[conn.index()] = None;
                    } else {
                        set_deadline(batch, conn, timer.update(session.phase(), now));
                    }
                }
                Some(BatchEvent::Closed(conn, _)) => {
                    if let Some(s) = sessions.get_mut(conn.index()) {
                        *s = None;
                    }
                }
                Some(BatchEvent::TimedOut(conn)) => {
                    // Mid-request: 408. Idle: just close.
                    if let Some((session, _)) = sessions.get_mut(conn.index()).and_then(Option::take) {
                        if !session.is_idle() {
                            out.start(batch, conn);
                            out.put(batch, REQUEST_TIMEOUT);
                            out.finish(batch);
                        }
                    }
                    batch.close(conn);
                }
                None => break,
            }
        }
        out.finish(batch);
        if batch.is_shutting_down() {
            // Graceful shutdown: close every connection that is between requests;
            // one in the middle of a request is answered first, within the grace.
            for conn in batch.connections() {
                match sessions.get_mut(conn.index()).and_then(Option::as_mut) {
                    Some((session, timer)) if !session.is_idle() => {
                        set_deadline(batch, conn, timer.shutdown(now));
                    }
                    _ => {
                        batch.close(conn);
                        sessions[conn.index()] = None;
                    }
                }
            }
        }
    })
    .await
}

/// Sets `conn`'s receive deadline as `change` says.
#[inline]
fn set_deadline(batch: &mut Batch<'_>, conn: ConnId, change: DeadlineChange) {
    if let Some(deadline) = change {
        batch.set_recv_deadline(conn, deadline);
    }
}

/// One connection in [`Mode::Tasks`]: take every buffer received by now, answer
/// each complete request into the outbox, queue it, wait only for backpressure.
///
/// The future is stored once per connection, in its task, so it is kept small: an
/// `async` block rather than an `async fn` (whose arguments the future would keep
/// twice: as captured and as moved into its body), the limits read before it
/// starts and kept only in the timer, and the graceful close (its linger) boxed,
/// allocated once when the connection ends, so that its state does not widen
/// every connection's future.
fn serve_connection(
    stream: TcpStream,
    responses: &'static Responses,
    timeouts: Timeouts,
) -> impl std::future::Future<Output = ()> {
    let mut timer = start_timer(&stream, timeouts, Phase::Head);
    async move {
        let mut http = HttpConnection { session: Session::new(), responses };
        let mut out = Outbox::new(&stream);
        let close_gracefully_at_end = match serve_batches(&stream, &mut timer, &mut out, &mut http).await {
            Received::Stopped | Received::Shutdown => true,
            Received::TimedOut => {
                if !http.session.is_idle() {
                    out.put(REQUEST_TIMEOUT);
                    if out.flush().is_err() {
                        return;
                    }
                }
                true
            }
            // EOF (a request cut short is dropped with it) or reset: dropping the
            // stream closes it after whatever is still queued.
            Received::Eof | Received::Failed(_) => false,
        };
        drop(out);
        if close_gracefully_at_end {
            // Boxed in its own statement: the unboxed future must not outlive it.
            let close = Box::pin(close_gracefully(&stream));
            close.await;
        }
    }
}

/// HTTP on one connection in [`Mode::Tasks`]: the session and the canned responses.
struct HttpConnection {
    session: Session,
    responses: &'static Responses,
}

impl Protocol for HttpConnection {
    #[inline]
    fn on_buf(&mut self, buf: RxBuf, out: &mut Outbox<'_>) -> ControlFlow<()> {
        match self.session.on_chunk(&buf, self.responses, |bytes| out.put_static(bytes)) {
            Next::Continue => ControlFlow::Continue(()),
            Next::Close => ControlFlow::Break(()),
        }
    }

    #[inline]
    fn phase(&self) -> Phase {
        self.session.phase()
    }
}

/// The responses of one server, built once per body length and kept for the
/// process's life: every response phttpd sends is `&'static`, so the only answer of
/// a batch is queued as [`SendData::Static`](paste_rt::SendData::Static) and sent
/// without a copy (on io_uring and epoll; PASTE copies it into its TX slots), and
/// the answers to pipelined requests are copied together (see
/// [`Outbox::put_static`]).
#[derive(Debug)]
struct Responses {
    /// phttpd's `200 OK` (`Connection: keep-alive`).
    keep_alive: &'static [u8],
    /// The same with `Connection: close`, for requests that close.
    close: &'static [u8],
}

impl Responses {
    /// The responses for `body_len`, built the first time this length is asked for
    /// (one small allocation per distinct length for the process's life).
    fn new(body_len: usize) -> &'static Responses {
        static BUILT: std::sync::Mutex<Vec<(usize, &'static Responses)>> = std::sync::Mutex::new(Vec::new());
        let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&(_, r)) = built.iter().find(|(len, _)| *len == body_len) {
            return r;
        }
        let mut close = format!(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nServer: Apache/2.2.800\r\nContent-Length: {body_len}\r\n\r\n"
        )
        .into_bytes();
        let header_len = close.len();
        close.resize(header_len + body_len, 0);
        fill_body(&mut close[header_len..], 0);
        let keep_alive: &'static [u8] = Vec::leak(ResponseTemplate::new(body_len).as_bytes().to_vec());
        let r: &'static Responses = Box::leak(Box::new(Responses { keep_alive, close: Vec::leak(close) }));
        built.push((body_len, r));
        r
    }

    fn ok(&self, keep_alive: bool) -> &'static [u8] {
        if keep_alive {
            self.keep_alive
        } else {
            self.close
        }
    }
}

/// What a connection does after a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Keep receiving.
    Continue,
    /// Send what was emitted, then close (the client asked, or the stream was
    /// malformed). Bytes after the last answered request are ignored.
    Close,
}

/// The protocol state of one connection: the same in both modes.
#[derive(Debug, Default)]
struct Session {
    parser: RequestParser,
    /// Method of the request being received.
    method: Option<Method>,
    /// Whether the request being received keeps the connection open.
    keep_alive: bool,
}

impl Session {
    fn new() -> Session {
        Session::default()
    }

    /// Between requests (nothing of a next request received yet).
    fn is_idle(&self) -> bool {
        self.parser.is_idle()
    }

    /// Where the connection is: between requests, in a head, or in a body.
    fn phase(&self) -> Phase {
        if self.parser.is_idle() {
            Phase::Idle
        } else if self.method.is_some() {
            Phase::Body
        } else {
            Phase::Head
        }
    }

    /// Parses `chunk`, emitting the full response of every request it completes.
    fn on_chunk(&mut self, chunk: &[u8], responses: &Responses, mut emit: impl FnMut(&'static [u8])) -> Next {
        let mut pos = 0;
        while let Some(event) = self.parser.next_event(chunk, &mut pos) {
            match event {
                Event::Head(head) => {
                    self.method = Some(head.method);
                    self.keep_alive = head.keep_alive;
                }
                // phttpd without a database discards POST bodies.
                Event::Body(_) => {}
                Event::End => {
                    let keep_alive = self.keep_alive;
                    match self.method.take() {
                        Some(Method::Get | Method::Post) => emit(responses.ok(keep_alive)),
                        Some(Method::Other) | None if keep_alive => emit(METHOD_NOT_ALLOWED),
                        Some(Method::Other) | None => emit(METHOD_NOT_ALLOWED_CLOSE),
                    }
                    if !keep_alive {
                        return Next::Close;
                    }
                }
                Event::Error(e) => {
                    emit(e.response());
                    return Next::Close;
                }
            }
        }
        Next::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{ok_response_len, BAD_REQUEST, WRK_GET_LOCAL};

    fn run(session: &mut Session, responses: &Responses, chunks: &[&[u8]]) -> (Vec<u8>, Next) {
        let mut out = Vec::new();
        let mut next = Next::Continue;
        for chunk in chunks {
            next = session.on_chunk(chunk, responses, |b| out.extend_from_slice(b));
            if next == Next::Close {
                break;
            }
        }
        (out, next)
    }

    /// The size of the future a function returns, without calling it.
    fn future_size<A, B, C, Fut, F: Fn(A, B, C) -> Fut>(_: F) -> usize {
        std::mem::size_of::<Fut>()
    }

    #[test]
    fn a_connection_future_stays_small() {
        // Stored once per connection (in its task): 504 bytes now — the session
        // (216, the request parser), the timer (104), the outbox, the stream and the
        // receive step. As an `async fn` with the close inline it was 608.
        let size = future_size(serve_connection);
        assert!(size <= 512, "phttpd's connection future is {size} bytes (at most 512 expected)");
    }

    #[test]
    fn get_pipelined_and_split() {
        let responses = Responses::new(64);
        let stream: Vec<u8> = WRK_GET_LOCAL.repeat(3);
        let chunks: Vec<&[u8]> = stream.chunks(7).collect();
        let (out, next) = run(&mut Session::new(), responses, &chunks);
        assert_eq!(next, Next::Continue);
        assert_eq!(out, responses.keep_alive.repeat(3));
        assert_eq!(out.len(), 3 * 151);
    }

    #[test]
    fn close_variants() {
        let responses = Responses::new(10);
        assert_eq!(responses.close.len(), ok_response_len(10) - "keep-alive".len() + "close".len());
        let (out, next) = run(&mut Session::new(), responses, &[b"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.1\r\n\r\n"]);
        assert_eq!((out.as_slice(), next), (responses.close, Next::Close));
        let (out, next) = run(&mut Session::new(), responses, &[b"DELETE / HTTP/1.1\r\n\r\n"]);
        assert_eq!((out.as_slice(), next), (METHOD_NOT_ALLOWED, Next::Continue));
        let (out, next) = run(&mut Session::new(), responses, &[b"GET / HTTP/1.1\r\n\r\nBAD\r\n\r\n"]);
        let mut expected = responses.keep_alive.to_vec();
        expected.extend_from_slice(BAD_REQUEST);
        assert_eq!((out, next), (expected, Next::Close));
    }
}
