//! The WAL's HTTP server: a batch handler (`paste_rt::batch`) that persists every
//! POST body of a tick, fences once, then acknowledges them all.
//!
//! Owns per-connection parsing state, time limits and the ordering of replies.
//! `POST` → the body is persisted, the 151-byte response acknowledges it;
//! `GET /<seq>` → the body of request `seq`; `GET /` →
//! `last=<seq> committed=<n> recovered=<n> dropped=<n> refused=<n>`. A body larger
//! than the log takes gets `413`; a body part that would leave its request
//! incomplete while incomplete requests already hold their share of the log gets
//! `503` with `Retry-After` and the connection closes (so slow partial bodies never
//! starve complete ones). A head that does not arrive within the header limit, or
//! a body that pauses past the idle limit, gets `408`; an idle connection past the
//! idle limit is closed ([`Timeouts`]).

use std::io;

use std::time::Instant;

use paste_rt::batch::{Batch, BatchEvent, ConnId};
use paste_rt::time::coarse_now;
use paste_rt::RxBuf;

use super::store::{Pending, Wal, WalError};
use crate::batch_outbox::BatchOutbox;
use crate::http::{self, Event, Method, RequestParser, ResponseTemplate, REQUEST_TIMEOUT};
pub use crate::timeouts::Timeouts;
use crate::timeouts::{ConnTimer, Phase};

/// The answer to a body part the log cannot hold now (see the module docs).
pub const SERVICE_UNAVAILABLE: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
/// The answer to a body larger than the log takes.
pub const PAYLOAD_TOO_LARGE: &[u8] = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n";

/// What the request being parsed on a connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Request {
    None,
    Post,
    Get(u64),
    Stats,
    NotFound,
    TooLarge,
    /// Refused with 503 (already answered): the rest of it is ignored.
    Refused,
}

#[derive(Debug)]
struct Conn {
    parser: RequestParser,
    pending: Pending,
    request: Request,
    keep_alive: bool,
    /// Body bytes of the current request not received yet.
    body_left: u64,
    timer: ConnTimer,
}

impl Conn {
    /// Where the connection is: between requests, in a head, or in a body.
    fn phase(&self) -> Phase {
        if self.parser.is_idle() {
            Phase::Idle
        } else if self.request == Request::None {
            Phase::Head
        } else {
            Phase::Body
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Reply {
    Ack,
    Body(u64),
    Stats,
    NotFound,
    TooLarge,
    Busy,
    Timeout,
    Bad,
}

/// The batch handler of the WAL server.
#[derive(Debug)]
pub struct WalServer {
    wal: Wal,
    conns: Vec<Option<Conn>>,
    replies: Vec<(ConnId, Reply, bool)>,
    ack: ResponseTemplate,
    timeouts: Timeouts,
}

impl WalServer {
    /// A server persisting into `wal`, with the HTTP defaults ([`Timeouts::HTTP`]).
    pub fn new(wal: Wal) -> WalServer {
        WalServer::with_timeouts(wal, Timeouts::HTTP)
    }

    /// A server persisting into `wal`, with explicit limits.
    pub fn with_timeouts(wal: Wal, timeouts: Timeouts) -> WalServer {
        WalServer {
            wal,
            conns: Vec::new(),
            replies: Vec::with_capacity(1024),
            ack: ResponseTemplate::new(64),
            timeouts,
        }
    }

    /// The log.
    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// Handles one tick's batch: parse, persist, one fence, then every reply.
    pub fn on_batch(&mut self, batch: &mut Batch<'_>) {
        let now = coarse_now();
        loop {
            // One match on the `Option`: the event is not moved out of it first.
            match batch.next_event() {
                Some(BatchEvent::Opened(c)) => {
                    if self.conns.len() <= c.index() {
                        self.conns.resize_with(c.index() + 1, || None);
                    }
                    let (timer, deadline) = ConnTimer::start(self.timeouts, Phase::Head, now);
                    if deadline.is_some() {
                        batch.set_recv_deadline(c, deadline);
                    }
                    self.conns[c.index()] = Some(Conn {
                        parser: RequestParser::new(),
                        pending: Pending::default(),
                        request: Request::None,
                        keep_alive: true,
                        body_left: 0,
                        timer,
                    });
                }
                Some(BatchEvent::Data(c, buf)) => self.on_data(batch, c, buf, now),
                Some(BatchEvent::Closed(c, _)) => {
                    if let Some(mut conn) = self.conns.get_mut(c.index()).and_then(Option::take) {
                        self.wal.abort(&mut conn.pending);
                    }
                }
                Some(BatchEvent::TimedOut(c)) => {
                    // Mid-request: 408 (after this batch's fence, in order). Idle: close.
                    if let Some(mut conn) = self.conns.get_mut(c.index()).and_then(Option::take) {
                        self.wal.abort(&mut conn.pending);
                        if !conn.parser.is_idle() && conn.request != Request::Refused {
                            self.replies.push((c, Reply::Timeout, true));
                            continue;
                        }
                    }
                    if !self.replies.iter().any(|(r, _, _)| *r == c) {
                        batch.close(c);
                    }
                }
                None => break,
            }
        }
        if batch.is_shutting_down() {
            // Graceful shutdown: close connections between requests; one in the
            // middle of a request has the grace to complete it.
            for conn in batch.connections() {
                let replying = self.replies.iter().any(|(c, _, _)| *c == conn);
                match self.conns.get_mut(conn.index()).and_then(Option::as_mut) {
                    Some(c) if !c.parser.is_idle() => {
                        if let Some(deadline) = c.timer.shutdown(now) {
                            batch.set_recv_deadline(conn, deadline);
                        }
                    }
                    _ if replying => {}
                    _ => {
                        batch.close(conn);
                        self.conns[conn.index()] = None;
                    }
                }
            }
        }
        if self.replies.is_empty() {
            return;
        }
        // Acknowledge only what is durable: one fence for the whole batch.
        if let Err(e) = self.wal.fence() {
            eprintln!("wal: fence failed: {e}; closing the batch's connections unacknowledged");
            for (c, _, _) in self.replies.drain(..) {
                batch.close(c);
            }
            return;
        }
        let mut out = BatchOutbox::new();
        let replies = std::mem::take(&mut self.replies);
        for &(c, reply, close) in &replies {
            out.start(batch, c);
            self.write_reply(&mut out, batch, reply);
            if close {
                out.finish(batch);
                batch.close(c);
            }
        }
        out.finish(batch);
        self.replies = replies;
        self.replies.clear();
    }

    fn on_data(&mut self, batch: &mut Batch<'_>, c: ConnId, buf: RxBuf, now: Instant) {
        let Some(Some(conn)) = self.conns.get_mut(c.index()) else { return };
        if conn.request == Request::Refused {
            return; // answered 503; closing
        }
        let (index, base) = (buf.index(), buf.offset());
        let wal = &mut self.wal;
        let replies = &mut self.replies;
        let mut failed = false;
        conn.parser.feed(&buf, |event| match event {
            Event::Head(head) => {
                conn.keep_alive = head.keep_alive;
                conn.body_left = head.content_length;
                conn.request = match head.method {
                    Method::Post => Request::Post,
                    Method::Get if head.path == b"/" => Request::Stats,
                    Method::Get => parse_seq(head.path).map_or(Request::NotFound, Request::Get),
                    _ => Request::NotFound,
                };
            }
            Event::Body(range) => {
                conn.body_left = conn.body_left.saturating_sub(range.len() as u64);
                if conn.request != Request::Post {
                    return;
                }
                let part = &buf[range.clone()];
                match wal.add_part(&mut conn.pending, part, index, base + range.start as u32, conn.body_left == 0) {
                    Ok(()) => {}
                    Err(WalError::TooManyParts) => {
                        wal.abort(&mut conn.pending);
                        conn.request = Request::TooLarge;
                    }
                    Err(WalError::Busy | WalError::Full) => {
                        // Full of requests still arriving: refuse this one now, and
                        // close, rather than hold a slot for its slow remainder.
                        wal.abort(&mut conn.pending);
                        conn.request = Request::Refused;
                        replies.push((c, Reply::Busy, true));
                    }
                }
            }
            Event::End => {
                let reply = match conn.request {
                    Request::Post => {
                        wal.commit(&mut conn.pending);
                        Reply::Ack
                    }
                    Request::Refused => return,
                    Request::Get(seq) => Reply::Body(seq),
                    Request::Stats => Reply::Stats,
                    Request::TooLarge => Reply::TooLarge,
                    Request::NotFound | Request::None => Reply::NotFound,
                };
                replies.push((c, reply, !conn.keep_alive));
                conn.request = Request::None;
            }
            Event::Error(_) => {
                wal.abort(&mut conn.pending);
                replies.push((c, Reply::Bad, true));
                failed = true;
            }
        });
        if failed {
            conn.request = Request::None;
        }
        if conn.request != Request::Refused {
            if let Some(deadline) = conn.timer.update(conn.phase(), now) {
                batch.set_recv_deadline(c, deadline);
            }
        }
        if self.wal.must_keep(index) {
            let _kept = buf.keep(); // the log references it; released when evicted
        }
    }

    fn write_reply(&self, out: &mut BatchOutbox, batch: &mut Batch<'_>, reply: Reply) {
        let mut head = [0u8; 256];
        match reply {
            Reply::Ack => out.put(batch, self.ack.as_bytes()),
            Reply::Body(seq) => match self.wal.body_len(seq) {
                Some(len) => {
                    let n = http::write_ok_header(len, &mut head);
                    out.put(batch, &head[..n]);
                    self.wal.read(seq, |part| out.put(batch, part));
                }
                None => out.put(batch, http::NOT_FOUND),
            },
            Reply::Stats => {
                let s = self.wal.stats();
                let mut body = [0u8; 128];
                let len = {
                    use std::io::Write;
                    let mut cur = io::Cursor::new(&mut body[..]);
                    let _ = writeln!(
                        cur,
                        "last={} committed={} recovered={} dropped={} refused={}",
                        self.wal.last_seq(),
                        s.committed,
                        s.recovered,
                        s.dropped,
                        s.refused
                    );
                    cur.position() as usize
                };
                let n = http::write_ok_response_with_body(&body[..len], &mut head);
                out.put(batch, &head[..n]);
            }
            Reply::NotFound => out.put(batch, http::NOT_FOUND),
            Reply::TooLarge => out.put(batch, PAYLOAD_TOO_LARGE),
            Reply::Busy => out.put(batch, SERVICE_UNAVAILABLE),
            Reply::Timeout => out.put(batch, REQUEST_TIMEOUT),
            Reply::Bad => out.put(batch, http::BAD_REQUEST),
        }
    }
}

fn parse_seq(path: &[u8]) -> Option<u64> {
    let digits = path.strip_prefix(b"/")?;
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add((d - b'0') as u64))
}
