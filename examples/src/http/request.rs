//! Incremental HTTP/1.x request parser.
//!
//! Owns turning a stream of received chunks into request events: the event dispatch and
//! the byte-level state machine here, the whole-head fast path in `whole_head`. It
//! never buffers a request: every field it must remember (method, a path of at most
//! [`MAX_PATH`] bytes, the header being read, Content-Length digits) lives in fixed-size
//! fields, so a request may be split anywhere across chunks, one chunk may hold many
//! pipelined requests, and parsing allocates nothing. It never panics on input:
//! anything it does not accept ends in [`Event::Error`].
//!
//! Two parsers give one answer. A head that lies whole and plainly valid in one chunk
//! (the common case: one request per receive, or pipelined ones) is parsed in one pass,
//! eight bytes at a time, by the fast path; `whole_head`'s module docs list exactly what
//! it takes. Everything else (a head split across chunks, empty lines before it, a head
//! over the limit, anything the parser rejects) goes to the state machine, which starts
//! where the fast path started, having lost nothing. The events, the errors and the
//! bytes consumed are the same either way, which the property tests in `tests` check
//! on generated streams parsed whole, split at random and a byte at a time. The
//! `parse_bench` example counts the instructions per request.

use std::fmt;
use std::ops::Range;

mod whole_head;

/// Longest request target (path) the parser keeps; a longer one is [`HttpError::UriTooLong`].
pub const MAX_PATH: usize = 64;

/// Default limit on the request line plus headers (including the blank line), in bytes.
pub const DEFAULT_MAX_HEAD: usize = 8 * 1024;

/// Longest header name the parser needs to recognise ("transfer-encoding").
const NAME_CAP: usize = 17;
/// Longest `Connection` token the parser needs to recognise ("keep-alive").
const TOKEN_CAP: usize = 10;
/// Longest method the parser needs to recognise ("POST").
const METHOD_CAP: usize = 4;
/// Length of "HTTP/1.1".
const VERSION_LEN: usize = 8;

/// Request method, as far as phttpd cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `POST`.
    Post,
    /// Any other syntactically valid method token (methods are case-sensitive).
    Other,
}

/// Protocol version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `HTTP/1.0`: connections close after the response unless the client asks for keep-alive.
    Http10,
    /// `HTTP/1.1`: connections stay open unless the client sends `Connection: close`.
    Http11,
}

/// The head of a request: everything before its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head<'a> {
    /// Request method.
    pub method: Method,
    /// Request target exactly as received (at most [`MAX_PATH`] bytes).
    pub path: &'a [u8],
    /// Protocol version.
    pub version: Version,
    /// Body length from `Content-Length` (0 when absent).
    pub content_length: u64,
    /// Whether the connection stays open after the response (version default, then
    /// `Connection: close` / `Connection: keep-alive`; `close` wins when both appear).
    pub keep_alive: bool,
}

/// One step of progress through the request stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete request head; its body (if any) follows as [`Event::Body`] events.
    Head(Head<'a>),
    /// Bytes of the current request's body: a non-empty range of the chunk being fed.
    Body(Range<usize>),
    /// The current request is complete, body included.
    End,
    /// The stream is not acceptable HTTP; answer with [`HttpError::response`] (or plain
    /// 400) and close. The parser stays failed.
    Error(HttpError),
}

/// Why a request stream was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// The request line is not `METHOD SP target SP HTTP/x.y CRLF`.
    MalformedRequestLine,
    /// The request line names an HTTP version other than 1.0 or 1.1.
    UnsupportedVersion,
    /// The request target is longer than [`MAX_PATH`] bytes.
    UriTooLong,
    /// A header line is malformed (bad name, control byte, bare CR, obsolete folding).
    MalformedHeader,
    /// `Content-Length` is empty, not decimal, overflows 64 bits, or conflicts with another.
    BadContentLength,
    /// The request line and headers exceed the parser's head limit.
    HeadTooLarge,
    /// The request uses `Transfer-Encoding`, which this server does not implement.
    TransferEncodingUnsupported,
}

impl HttpError {
    /// The HTTP status code that describes this error best.
    pub fn status(self) -> u16 {
        match self {
            HttpError::MalformedRequestLine | HttpError::MalformedHeader | HttpError::BadContentLength => 400,
            HttpError::UriTooLong => 414,
            HttpError::HeadTooLarge => 431,
            HttpError::TransferEncodingUnsupported => 501,
            HttpError::UnsupportedVersion => 505,
        }
    }

    /// A complete response for this error, with `Connection: close` and an empty body.
    pub fn response(self) -> &'static [u8] {
        match self.status() {
            414 => b"HTTP/1.1 414 URI Too Long\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            431 => b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            501 => b"HTTP/1.1 501 Not Implemented\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            505 => b"HTTP/1.1 505 HTTP Version Not Supported\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            _ => super::response::BAD_REQUEST,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            HttpError::MalformedRequestLine => "malformed HTTP request line",
            HttpError::UnsupportedVersion => "unsupported HTTP version (only 1.0 and 1.1 are served)",
            HttpError::UriTooLong => "request target longer than 64 bytes",
            HttpError::MalformedHeader => "malformed HTTP header line",
            HttpError::BadContentLength => "invalid or conflicting Content-Length",
            HttpError::HeadTooLarge => "request line and headers exceed the size limit",
            HttpError::TransferEncodingUnsupported => "Transfer-Encoding is not supported",
        };
        write!(f, "parsing an HTTP request: {what} (status {})", self.status())
    }
}

impl std::error::Error for HttpError {}

/// Where the parser is in the request stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a request line; empty lines (CRLF) are skipped here.
    Start,
    /// Saw CR of an empty line before a request line.
    StartLf,
    Method,
    Target,
    Version,
    /// Saw CR ending the request line.
    RequestLineLf,
    /// At the start of a header line or of the blank line ending the head.
    HeaderStart,
    /// Saw CR of the blank line.
    HeadEndLf,
    Name,
    /// After the colon, skipping optional whitespace.
    ValueWs,
    Value,
    /// Saw CR ending a header value.
    ValueLf,
    /// Head reported; body bytes remain.
    Body,
    /// Body complete (or empty); `End` is reported next.
    EndPending,
    /// Stopped; the parser's `error` says why.
    Failed,
}

/// Which header's value is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Header {
    ContentLength,
    Connection,
    Other,
}

/// What the headers of one request say, as far as the parser cares.
#[derive(Debug, Clone, Copy)]
struct HeaderFacts {
    /// The `Content-Length` value (0 without one).
    content_length: u64,
    /// A `Content-Length` header was there.
    has_content_length: bool,
    /// A `Connection` header listed `close`.
    close: bool,
    /// A `Connection` header listed `keep-alive`.
    keep_alive: bool,
}

impl HeaderFacts {
    /// A head without any of the headers the parser reads.
    const NONE: HeaderFacts =
        HeaderFacts { content_length: 0, has_content_length: false, close: false, keep_alive: false };

    /// Notes a `Content-Length` value; `false` if an earlier one said otherwise.
    fn note_content_length(&mut self, value: u64) -> bool {
        if self.has_content_length && self.content_length != value {
            return false;
        }
        self.content_length = value;
        self.has_content_length = true;
        true
    }
}

/// Incremental HTTP/1.x request parser for one connection.
///
/// Feed it every received chunk in order, with [`feed`](Self::feed) (callback) or
/// [`next_event`](Self::next_event) (pull). Per request it reports [`Event::Head`],
/// then [`Event::Body`] ranges covering exactly `content_length` bytes, then
/// [`Event::End`]. Requests without `Content-Length` have no body; `Transfer-Encoding`
/// is rejected. Request lines and header lines must end in CRLF.
///
/// ```
/// use paste_rt_examples::http::{Event, Method, RequestParser};
///
/// let mut parser = RequestParser::new();
/// let chunk = b"POST /log HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
/// let mut body = Vec::new();
/// let mut ended = false;
/// parser.feed(chunk, |event| match event {
///     Event::Head(head) => assert_eq!((head.method, head.path), (Method::Post, &b"/log"[..])),
///     Event::Body(range) => body.extend_from_slice(&chunk[range]),
///     Event::End => ended = true,
///     Event::Error(e) => panic!("{e}"),
/// });
/// assert_eq!((body.as_slice(), ended), (&b"abc"[..], true));
/// ```
#[derive(Debug, Clone)]
pub struct RequestParser {
    state: State,
    /// Why the parser stopped; meaningful only in [`State::Failed`].
    error: HttpError,
    max_head: usize,
    /// Bytes of the current head consumed so far.
    head_len: usize,
    /// Method bytes seen (only the first [`METHOD_CAP`] are kept).
    method_len: usize,
    method: [u8; METHOD_CAP],
    path_len: usize,
    path: [u8; MAX_PATH],
    version_len: usize,
    version_buf: [u8; VERSION_LEN],
    version: Version,
    /// The method of the head the fast path parsed (the state machine keeps `method`).
    fast_method: Method,
    /// Header name bytes seen (only the first [`NAME_CAP`] are kept).
    name_len: usize,
    name: [u8; NAME_CAP],
    header: Header,
    /// Content-Length value being read.
    cl_value: u64,
    cl_digits: usize,
    cl_trailing_ws: bool,
    /// Connection token being read (lower-cased; only the first [`TOKEN_CAP`] kept).
    token_len: usize,
    token: [u8; TOKEN_CAP],
    /// What the state machine has read from the headers so far.
    facts: HeaderFacts,
    /// Body bytes still to report.
    remaining: u64,
}

impl Default for RequestParser {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestParser {
    /// A parser with the default head limit ([`DEFAULT_MAX_HEAD`]).
    pub fn new() -> Self {
        Self::with_max_head(DEFAULT_MAX_HEAD)
    }

    /// A parser whose request line plus headers may not exceed `max_head` bytes.
    pub fn with_max_head(max_head: usize) -> Self {
        RequestParser {
            state: State::Start,
            error: HttpError::MalformedRequestLine,
            max_head,
            head_len: 0,
            method_len: 0,
            method: [0; METHOD_CAP],
            path_len: 0,
            path: [0; MAX_PATH],
            version_len: 0,
            version_buf: [0; VERSION_LEN],
            version: Version::Http11,
            fast_method: Method::Other,
            name_len: 0,
            name: [0; NAME_CAP],
            header: Header::Other,
            cl_value: 0,
            cl_digits: 0,
            cl_trailing_ws: false,
            token_len: 0,
            token: [0; TOKEN_CAP],
            facts: HeaderFacts::NONE,
            remaining: 0,
        }
    }

    /// The error the parser stopped at, if any.
    pub fn error(&self) -> Option<HttpError> {
        match self.state {
            State::Failed => Some(self.error),
            _ => None,
        }
    }

    /// Whether the parser is between requests with nothing of the next one seen: a
    /// peer that closes now has not cut a request short.
    pub fn is_idle(&self) -> bool {
        self.state == State::Start && self.head_len == 0
    }

    /// Parses all of `chunk`, calling `on_event` for each event in order.
    ///
    /// [`Event::Body`] ranges index into `chunk`. Once the parser has failed, each call
    /// with a non-empty chunk reports the same [`Event::Error`] again and nothing else.
    pub fn feed(&mut self, chunk: &[u8], mut on_event: impl FnMut(Event<'_>)) {
        let mut pos = 0;
        while let Some(event) = self.next_event(chunk, &mut pos) {
            on_event(event);
        }
    }

    /// Parses `chunk` from `*pos` up to the next event, advancing `*pos` past the bytes
    /// consumed; `None` when the rest of the chunk is consumed without completing one.
    ///
    /// Call it until it returns `None`, then feed the next chunk from position 0. An
    /// `End` may be returned with no bytes left (requests without body, or whose body
    /// ended exactly at the end of the chunk), so always call once more.
    #[inline(always)] // the common dispatch, into the caller's loop
    pub fn next_event<'p>(&'p mut self, chunk: &[u8], pos: &mut usize) -> Option<Event<'p>> {
        // The common states first, each with `*pos` in range; everything else (and a
        // `*pos` past the end, which is clamped) out of line.
        match self.state {
            // A new request: the whole-head fast path first. Anything it does not take (a
            // split head, an error, an oversized head) is left to the state machine, which
            // then starts from the same position.
            State::Start if *pos < chunk.len() => match self.parse_complete_head(chunk, *pos) {
                Some((end, read_facts)) => {
                    *pos = end.get();
                    let facts = if read_facts { self.facts } else { HeaderFacts::NONE };
                    Some(self.head_event(self.fast_method, self.version, self.path_len, facts))
                }
                None => self.head_step(chunk, pos),
            },
            State::Start if *pos == chunk.len() => None,
            State::EndPending if *pos <= chunk.len() => {
                self.reset_request();
                Some(Event::End)
            }
            State::Body if *pos < chunk.len() => {
                let avail = chunk.len() - *pos;
                // `take` is at most `avail`, so it fits in usize.
                let take = self.remaining.min(avail as u64) as usize;
                let start = *pos;
                *pos += take;
                self.remaining -= take as u64;
                if self.remaining == 0 {
                    self.state = State::EndPending;
                }
                Some(Event::Body(start..start + take))
            }
            _ => self.rare_event(chunk, pos),
        }
    }

    /// [`next_event`](Self::next_event) in the cases it rarely meets: failed, in the
    /// middle of a head split across chunks, out of bytes in a body, or `*pos` past the
    /// end. Out of line, so that the common dispatch stays a few comparisons.
    #[inline(never)]
    fn rare_event(&mut self, chunk: &[u8], pos: &mut usize) -> Option<Event<'_>> {
        if *pos > chunk.len() {
            *pos = chunk.len();
        }
        match self.state {
            // With `*pos` clamped, these take a common case of `next_event`.
            State::Start | State::EndPending => return self.next_event(chunk, pos),
            State::Body if *pos < chunk.len() => return self.next_event(chunk, pos),
            State::Body => return None,
            _ => {}
        }
        if self.state == State::Failed {
            if *pos < chunk.len() {
                *pos = chunk.len();
                return Some(Event::Error(self.error));
            }
            return None;
        }
        // Head states: nothing to do without bytes (the state machine would consume none).
        if *pos == chunk.len() {
            return None;
        }
        self.head_step(chunk, pos)
    }

    /// Parses head bytes from `chunk[*pos..]` (at least one) with the state machine, up
    /// to the end of the head or of the chunk.
    #[inline(never)]
    fn head_step(&mut self, chunk: &[u8], pos: &mut usize) -> Option<Event<'_>> {
        match self.parse_head(chunk, pos) {
            Ok(false) => None,
            Ok(true) => Some(self.head_event(self.method(), self.version, self.path_len, self.facts)),
            Err(e) => {
                self.state = State::Failed;
                self.error = e;
                *pos = chunk.len();
                Some(Event::Error(e))
            }
        }
    }

    /// The head is complete, its path the first `path_len` bytes of `path`: move on to
    /// the body and report it.
    #[inline(always)]
    fn head_event(&mut self, method: Method, version: Version, path_len: usize, facts: HeaderFacts) -> Event<'_> {
        let content_length = facts.content_length;
        // HTTP/1.1 keeps the connection unless told to close, HTTP/1.0 only when asked to.
        let keep_alive = !facts.close & (version == Version::Http11 || facts.keep_alive);
        self.remaining = content_length;
        self.state = if content_length > 0 { State::Body } else { State::EndPending };
        // Both parsers keep `path_len` within `MAX_PATH`; the bound spares a check.
        let path = &self.path[..path_len.min(MAX_PATH)];
        Event::Head(Head { method, path, version, content_length, keep_alive })
    }

    /// Back to the start of a request after `End`. The state machine clears the fields
    /// it fills when it starts a head ([`begin_head`](Self::begin_head)); the fast path
    /// fills its own.
    fn reset_request(&mut self) {
        self.state = State::Start;
        self.head_len = 0;
    }

    /// The state machine meets the first byte of a request line: clear what it fills.
    fn begin_head(&mut self) {
        self.method_len = 0;
        self.path_len = 0;
        self.version_len = 0;
        self.facts = HeaderFacts::NONE;
    }

    fn method(&self) -> Method {
        match &self.method[..self.method_len.min(METHOD_CAP)] {
            b"GET" if self.method_len == 3 => Method::Get,
            b"POST" if self.method_len == 4 => Method::Post,
            _ => Method::Other,
        }
    }

    /// Consumes head bytes; `Ok(true)` once the blank line ending the head is consumed.
    #[inline(never)]
    fn parse_head(&mut self, chunk: &[u8], pos: &mut usize) -> Result<bool, HttpError> {
        while let Some(&b) = chunk.get(*pos) {
            *pos += 1;
            self.head_len += 1;
            if self.head_len > self.max_head {
                return Err(HttpError::HeadTooLarge);
            }
            if self.step(b)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Advances the head state machine by one byte; `Ok(true)` at the end of the head.
    fn step(&mut self, b: u8) -> Result<bool, HttpError> {
        use HttpError::{MalformedHeader, MalformedRequestLine};
        match self.state {
            State::Start => match b {
                b'\r' => self.state = State::StartLf,
                _ if is_tchar(b) => {
                    self.begin_head();
                    self.push_method(b);
                    self.state = State::Method;
                }
                _ => return Err(MalformedRequestLine),
            },
            State::StartLf => match b {
                b'\n' => self.state = State::Start,
                _ => return Err(MalformedRequestLine),
            },
            State::Method => match b {
                b' ' => self.state = State::Target,
                _ if is_tchar(b) => self.push_method(b),
                _ => return Err(MalformedRequestLine),
            },
            State::Target => match b {
                b' ' if self.path_len > 0 => self.state = State::Version,
                0x21..=0x7e => {
                    if self.path_len == MAX_PATH {
                        return Err(HttpError::UriTooLong);
                    }
                    self.path[self.path_len] = b;
                    self.path_len += 1;
                }
                _ => return Err(MalformedRequestLine),
            },
            State::Version => match b {
                b'\r' => {
                    self.version = classify_version(&self.version_buf[..self.version_len])?;
                    self.state = State::RequestLineLf;
                }
                _ if self.version_len < VERSION_LEN => {
                    self.version_buf[self.version_len] = b;
                    self.version_len += 1;
                }
                _ => return Err(MalformedRequestLine),
            },
            State::RequestLineLf => match b {
                b'\n' => self.state = State::HeaderStart,
                _ => return Err(MalformedRequestLine),
            },
            State::HeaderStart => match b {
                b'\r' => self.state = State::HeadEndLf,
                _ if is_tchar(b) => {
                    self.name_len = 0;
                    self.push_name(b);
                    self.state = State::Name;
                }
                // Includes SP/HT: obsolete line folding is rejected (RFC 9112 §5.2).
                _ => return Err(MalformedHeader),
            },
            State::HeadEndLf => match b {
                b'\n' => return Ok(true),
                _ => return Err(MalformedHeader),
            },
            State::Name => match b {
                b':' => {
                    self.begin_value()?;
                    self.state = State::ValueWs;
                }
                _ if is_tchar(b) => self.push_name(b),
                // Includes whitespace before the colon (RFC 9112 §5.1).
                _ => return Err(MalformedHeader),
            },
            State::ValueWs => match b {
                b' ' | b'\t' => {}
                b'\r' => self.state = State::ValueLf,
                _ => {
                    self.state = State::Value;
                    self.value_byte(b)?;
                }
            },
            State::Value => match b {
                b'\r' => self.state = State::ValueLf,
                _ => self.value_byte(b)?,
            },
            State::ValueLf => match b {
                b'\n' => {
                    self.end_value()?;
                    self.state = State::HeaderStart;
                }
                _ => return Err(MalformedHeader),
            },
            // `next_event` handles these before calling `parse_head`.
            State::Body | State::EndPending | State::Failed => {}
        }
        Ok(false)
    }

    fn push_method(&mut self, b: u8) {
        if self.method_len < METHOD_CAP {
            self.method[self.method_len] = b;
        }
        self.method_len = self.method_len.saturating_add(1);
    }

    fn push_name(&mut self, b: u8) {
        if self.name_len < NAME_CAP {
            self.name[self.name_len] = b.to_ascii_lowercase();
        }
        self.name_len = self.name_len.saturating_add(1);
    }

    /// Classifies the header name just completed and prepares to read its value.
    fn begin_value(&mut self) -> Result<(), HttpError> {
        let name = if self.name_len <= NAME_CAP { &self.name[..self.name_len] } else { &[][..] };
        self.header = match name {
            b"content-length" => Header::ContentLength,
            b"connection" => Header::Connection,
            b"transfer-encoding" => return Err(HttpError::TransferEncodingUnsupported),
            _ => Header::Other,
        };
        self.cl_value = 0;
        self.cl_digits = 0;
        self.cl_trailing_ws = false;
        self.token_len = 0;
        Ok(())
    }

    /// One byte of a header value (never CR).
    fn value_byte(&mut self, b: u8) -> Result<(), HttpError> {
        if b != b'\t' && (b < 0x20 || b == 0x7f) {
            return Err(HttpError::MalformedHeader);
        }
        match self.header {
            Header::ContentLength => match b {
                b'0'..=b'9' if !self.cl_trailing_ws => {
                    self.cl_value = self
                        .cl_value
                        .checked_mul(10)
                        .and_then(|v| v.checked_add(u64::from(b - b'0')))
                        .ok_or(HttpError::BadContentLength)?;
                    self.cl_digits += 1;
                }
                b' ' | b'\t' if self.cl_digits > 0 => self.cl_trailing_ws = true,
                _ => return Err(HttpError::BadContentLength),
            },
            Header::Connection => match b {
                b',' | b' ' | b'\t' => self.end_token(),
                _ => {
                    if self.token_len < TOKEN_CAP {
                        self.token[self.token_len] = b.to_ascii_lowercase();
                    }
                    self.token_len = self.token_len.saturating_add(1);
                }
            },
            Header::Other => {}
        }
        Ok(())
    }

    /// The CRLF ending a header value has been consumed.
    fn end_value(&mut self) -> Result<(), HttpError> {
        match self.header {
            Header::ContentLength => {
                if self.cl_digits == 0 {
                    return Err(HttpError::BadContentLength);
                }
                if !self.facts.note_content_length(self.cl_value) {
                    return Err(HttpError::BadContentLength);
                }
            }
            Header::Connection => self.end_token(),
            Header::Other => {}
        }
        Ok(())
    }

    /// A `Connection` token has ended (at a comma, whitespace or the end of the value).
    fn end_token(&mut self) {
        match &self.token[..self.token_len.min(TOKEN_CAP)] {
            b"close" if self.token_len == 5 => self.facts.close = true,
            b"keep-alive" if self.token_len == 10 => self.facts.keep_alive = true,
            _ => {}
        }
        self.token_len = 0;
    }
}

/// Maps the bytes between the target and CR to a version.
fn classify_version(v: &[u8]) -> Result<Version, HttpError> {
    match v {
        b"HTTP/1.1" => Ok(Version::Http11),
        b"HTTP/1.0" => Ok(Version::Http10),
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] if major.is_ascii_digit() && minor.is_ascii_digit() => {
            Err(HttpError::UnsupportedVersion)
        }
        _ => Err(HttpError::MalformedRequestLine),
    }
}

/// RFC 9110 `tchar`: the bytes allowed in a method or header name.
fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// Which bytes are `tchar`s: one lookup instead of a chain of comparisons per byte.
static TCHAR: [bool; 256] = tchar_table();

const fn tchar_table() -> [bool; 256] {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            );
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests;
