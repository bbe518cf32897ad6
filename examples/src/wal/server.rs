//! The WAL's HTTP server: a batch handler (`paste_rt::batch`) that persists every
//! POST body of a tick, fences once, then acknowledges them all.
//!
//! Owns per-connection parsing state and the ordering of replies. `POST` → the body
//! is persisted, the 151-byte response acknowledges it; `GET /<seq>` → the body of
//! request `seq`; `GET /` → `last=<seq> committed=<n> recovered=<n> dropped=<n>`.

use std::io;

use paste_rt::batch::{Batch, BatchEvent, ConnId};
use paste_rt::RxBuf;

use super::store::{Pending, Wal};
use crate::batch_outbox::BatchOutbox;
use crate::http::{self, Event, Method, RequestParser, ResponseTemplate};

/// What the request being parsed on a connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Request {
    None,
    Post,
    Get(u64),
    Stats,
    NotFound,
    TooLarge,
}

#[derive(Debug)]
struct Conn {
    parser: RequestParser,
    pending: Pending,
    request: Request,
    keep_alive: bool,
}

#[derive(Clone, Copy, Debug)]
enum Reply {
    Ack,
    Body(u64),
    Stats,
    NotFound,
    TooLarge,
    Bad,
}

/// The batch handler of the WAL server.
#[derive(Debug)]
pub struct WalServer {
    wal: Wal,
    conns: Vec<Option<Conn>>,
    replies: Vec<(ConnId, Reply, bool)>,
    ack: ResponseTemplate,
}

impl WalServer {
    /// A server persisting into `wal`.
    pub fn new(wal: Wal) -> WalServer {
        WalServer { wal, conns: Vec::new(), replies: Vec::with_capacity(1024), ack: ResponseTemplate::new(64) }
    }

    /// The log.
    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// Handles one tick's batch: parse, persist, one fence, then every reply.
    pub fn on_batch(&mut self, batch: &mut Batch<'_>) {
        while let Some(event) = batch.next_event() {
            match event {
                BatchEvent::Opened(c) => {
                    if self.conns.len() <= c.index() {
                        self.conns.resize_with(c.index() + 1, || None);
                    }
                    self.conns[c.index()] = Some(Conn {
                        parser: RequestParser::new(),
                        pending: Pending::default(),
                        request: Request::None,
                        keep_alive: true,
                    });
                }
                BatchEvent::Data(c, buf) => self.on_data(c, buf),
                BatchEvent::Closed(c, _) => {
                    if let Some(mut conn) = self.conns.get_mut(c.index()).and_then(Option::take) {
                        self.wal.abort(&mut conn.pending);
                    }
                }
                BatchEvent::TimedOut(c) => {
                    batch.close(c);
                    if let Some(mut conn) = self.conns.get_mut(c.index()).and_then(Option::take) {
                        self.wal.abort(&mut conn.pending);
                    }
                }
            }
        }
        if batch.is_shutting_down() {
            // Graceful shutdown: close connections between requests.
            for conn in batch.connections() {
                let idle = self.conns.get(conn.index()).and_then(Option::as_ref).is_none_or(|c| c.parser.is_idle());
                if idle && !self.replies.iter().any(|(c, _, _)| *c == conn) {
                    batch.close(conn);
                    self.conns[conn.index()] = None;
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

    fn on_data(&mut self, c: ConnId, buf: RxBuf) {
        let Some(Some(conn)) = self.conns.get_mut(c.index()) else { return };
        let (index, base) = (buf.index(), buf.offset());
        let wal = &mut self.wal;
        let replies = &mut self.replies;
        let mut failed = false;
        conn.parser.feed(&buf, |event| match event {
            Event::Head(head) => {
                conn.keep_alive = head.keep_alive;
                conn.request = match head.method {
                    Method::Post => Request::Post,
                    Method::Get if head.path == b"/" => Request::Stats,
                    Method::Get => parse_seq(head.path).map_or(Request::NotFound, Request::Get),
                    _ => Request::NotFound,
                };
            }
            Event::Body(range) => {
                if conn.request == Request::Post
                    && wal.add_part(&mut conn.pending, &buf[range.clone()], index, base + range.start as u32).is_err()
                {
                    wal.abort(&mut conn.pending);
                    conn.request = Request::TooLarge;
                }
            }
            Event::End => {
                let reply = match conn.request {
                    Request::Post => {
                        wal.commit(&mut conn.pending);
                        Reply::Ack
                    }
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
                let mut body = [0u8; 96];
                let len = {
                    use std::io::Write;
                    let mut cur = io::Cursor::new(&mut body[..]);
                    let _ = writeln!(
                        cur,
                        "last={} committed={} recovered={} dropped={}",
                        self.wal.last_seq(),
                        s.committed,
                        s.recovered,
                        s.dropped
                    );
                    cur.position() as usize
                };
                let n = http::write_ok_response_with_body(&body[..len], &mut head);
                out.put(batch, &head[..n]);
            }
            Reply::NotFound => out.put(batch, http::NOT_FOUND),
            Reply::TooLarge => out.put(batch, b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n"),
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
