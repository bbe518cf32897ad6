//! Incremental HTTP/1.x request parser.
//!
//! Owns the byte-level state machine that turns a stream of received chunks into
//! request events. It never buffers a request: every field it must remember (method,
//! a path of at most [`MAX_PATH`] bytes, the header being read, Content-Length digits)
//! lives in fixed-size fields, so a request may be split anywhere across chunks, one
//! chunk may hold many pipelined requests, and parsing allocates nothing. It never
//! panics on input: anything it does not accept ends in [`Event::Error`].

use std::fmt;
use std::ops::Range;

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
    Failed(HttpError),
}

/// Which header's value is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Header {
    ContentLength,
    Connection,
    Other,
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
    content_length: Option<u64>,
    conn_close: bool,
    conn_keep_alive: bool,
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
            max_head,
            head_len: 0,
            method_len: 0,
            method: [0; METHOD_CAP],
            path_len: 0,
            path: [0; MAX_PATH],
            version_len: 0,
            version_buf: [0; VERSION_LEN],
            version: Version::Http11,
            name_len: 0,
            name: [0; NAME_CAP],
            header: Header::Other,
            cl_value: 0,
            cl_digits: 0,
            cl_trailing_ws: false,
            token_len: 0,
            token: [0; TOKEN_CAP],
            content_length: None,
            conn_close: false,
            conn_keep_alive: false,
            remaining: 0,
        }
    }

    /// The error the parser stopped at, if any.
    pub fn error(&self) -> Option<HttpError> {
        match self.state {
            State::Failed(e) => Some(e),
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
    pub fn next_event<'p>(&'p mut self, chunk: &[u8], pos: &mut usize) -> Option<Event<'p>> {
        if *pos > chunk.len() {
            *pos = chunk.len();
        }
        match self.state {
            State::Failed(e) => {
                if *pos < chunk.len() {
                    *pos = chunk.len();
                    return Some(Event::Error(e));
                }
                return None;
            }
            State::EndPending => {
                self.reset_request();
                return Some(Event::End);
            }
            State::Body => {
                let avail = chunk.len() - *pos;
                if avail == 0 {
                    return None;
                }
                // `take` is at most `avail`, so it fits in usize.
                let take = self.remaining.min(avail as u64) as usize;
                let start = *pos;
                *pos += take;
                self.remaining -= take as u64;
                if self.remaining == 0 {
                    self.state = State::EndPending;
                }
                return Some(Event::Body(start..start + take));
            }
            // Head states: nothing to do without bytes (the state machine would consume none).
            _ if *pos == chunk.len() => return None,
            _ => {}
        }
        self.head_step(chunk, pos)
    }

    /// Parses head bytes from `chunk[*pos..]` (at least one) up to the end of the head or
    /// of the chunk. Out of line, so the per-event dispatch in `next_event` stays cheap.
    #[inline(never)]
    fn head_step(&mut self, chunk: &[u8], pos: &mut usize) -> Option<Event<'_>> {
        if self.state == State::Start {
            // Fast path: the whole head is in this chunk and plainly valid. Anything else
            // (a split head, an error, an oversized head) is left to the byte-at-a-time
            // state machine below, which then starts from the same position.
            if let Some((end, method)) = self.parse_complete_head(chunk, *pos) {
                *pos = end;
                return Some(self.head_event(method));
            }
        }
        match self.parse_head(chunk, pos) {
            Ok(false) => None,
            Ok(true) => {
                let method = self.method();
                Some(self.head_event(method))
            }
            Err(e) => {
                self.state = State::Failed(e);
                *pos = chunk.len();
                Some(Event::Error(e))
            }
        }
    }

    /// The head is complete and its fields stored: move on to the body and report it.
    fn head_event(&mut self, method: Method) -> Event<'_> {
        let content_length = self.content_length.unwrap_or(0);
        let keep_alive = match self.version {
            Version::Http11 => !self.conn_close,
            Version::Http10 => self.conn_keep_alive && !self.conn_close,
        };
        self.remaining = content_length;
        self.state = if content_length > 0 { State::Body } else { State::EndPending };
        Event::Head(Head {
            method,
            path: &self.path[..self.path_len],
            version: self.version,
            content_length,
            keep_alive,
        })
    }

    /// Clears the per-request fields after `End`.
    fn reset_request(&mut self) {
        self.state = State::Start;
        self.head_len = 0;
        self.method_len = 0;
        self.path_len = 0;
        self.version_len = 0;
        self.content_length = None;
        self.conn_close = false;
        self.conn_keep_alive = false;
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
            State::Body | State::EndPending | State::Failed(_) => {}
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
                match self.content_length {
                    Some(previous) if previous != self.cl_value => return Err(HttpError::BadContentLength),
                    _ => self.content_length = Some(self.cl_value),
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
            b"close" if self.token_len == 5 => self.conn_close = true,
            b"keep-alive" if self.token_len == 10 => self.conn_keep_alive = true,
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
    CLASS[usize::from(b)] & TCHAR != 0
}

/// [`CLASS`] bit: an RFC 9110 `tchar`.
const TCHAR: u8 = 1;
/// [`CLASS`] bit: a byte allowed in a request target (visible ASCII, 0x21..=0x7e).
const TARGET: u8 = 2;
/// [`CLASS`] bit: a byte allowed in a header value (HTAB, SP, visible ASCII, 0x80..=0xff).
const VALUE: u8 = 4;

/// Byte classes, one lookup instead of a chain of comparisons per byte.
static CLASS: [u8; 256] = byte_classes();

const fn byte_classes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut class = 0;
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            )
        {
            class |= TCHAR;
        }
        if b >= 0x21 && b <= 0x7e {
            class |= TARGET;
        }
        if b == b'\t' || (b >= 0x20 && b != 0x7f) {
            class |= VALUE;
        }
        table[i] = class;
        i += 1;
    }
    table
}

/// Eight bytes of `buf` from `i` as a little-endian word, if there are eight.
#[inline(always)]
fn word_at(buf: &[u8], i: usize) -> Option<u64> {
    buf.get(i..)?.first_chunk::<8>().map(|w| u64::from_le_bytes(*w))
}

/// Eight bytes of `buf` from `i < buf.len()` as a little-endian word, zero bytes past
/// the end (read as the buffer's last eight bytes, shifted; no per-byte tail loop).
#[inline(always)]
fn word_from(buf: &[u8], i: usize) -> u64 {
    if let Some(w) = word_at(buf, i) {
        return w;
    }
    match buf.len().checked_sub(8).and_then(|last| word_at(buf, last)) {
        // Here buf.len() - 8 < i < buf.len(), so the shift is 8..=56 bits.
        Some(w) => w >> ((i + 8 - buf.len()) * 8),
        None => 0,
    }
}

/// Every byte's low seven bits.
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
/// Every byte's top bit.
const TOP: u64 = 0x8080_8080_8080_8080;
/// `n` in every byte.
const fn splat(n: u8) -> u64 {
    0x0101_0101_0101_0101 * n as u64
}

/// Per byte of `low` (every byte below 0x80), top bit set when the byte is at least `n`
/// (`1 <= n <= 0x80`). The sums stay below 0x100, so nothing carries between bytes.
#[inline(always)]
const fn at_least(low: u64, n: u8) -> u64 {
    (low + splat(0x80 - n)) & TOP
}

/// Flags (top bit per byte) the bytes that may not appear in a request target: at most
/// 0x20 or at least 0x7f.
#[inline(always)]
fn target_stops(w: u64) -> u64 {
    let low = w & LOW7;
    (!at_least(low, 0x21) | at_least(low, 0x7f) | w) & TOP
}

/// Flags the bytes a header value does not simply continue with: below 0x20 (CR, LF,
/// controls and HTAB, which the caller steps over) and 0x7f. Bytes from 0x80 are allowed.
#[inline(always)]
fn value_stops(w: u64) -> u64 {
    let low = w & LOW7;
    (!at_least(low, 0x20) | at_least(low, 0x7f)) & !w & TOP
}

/// Flags the bytes of a header name that are not ASCII letters, digits or '-' (the
/// `tchar`s real header names use; the caller checks any other byte against [`CLASS`]).
#[inline(always)]
fn name_stops(w: u64) -> u64 {
    let low = w & LOW7;
    let folded = low | splat(0x20);
    let letter = at_least(folded, 0x61) & !at_least(folded, 0x7b);
    let digit = at_least(low, 0x30) & !at_least(low, 0x3a);
    let dash = at_least(low, 0x2d) & !at_least(low, 0x2e);
    !((letter | digit | dash) & !w) & TOP
}

/// Index of the first byte at or after `i` that `stops` flags, or `buf.len()`.
#[inline(always)]
fn scan(buf: &[u8], mut i: usize, stops: impl Fn(u64) -> u64) -> usize {
    while i < buf.len() {
        let flagged = stops(word_from(buf, i));
        if flagged != 0 {
            return (i + (flagged.trailing_zeros() / 8) as usize).min(buf.len());
        }
        i += 8;
    }
    buf.len()
}

/// First index at or after `i` whose byte is not in `class` (or `buf.len()`).
#[inline(always)]
fn skip_class(buf: &[u8], mut i: usize, class: u8) -> usize {
    while let Some(&b) = buf.get(i) {
        if CLASS[usize::from(b)] & class == 0 {
            break;
        }
        i += 1;
    }
    i
}

/// First index at or after `i` whose byte is not a `tchar` (or `buf.len()`).
#[inline(always)]
fn skip_name(buf: &[u8], mut i: usize) -> usize {
    loop {
        i = scan(buf, i, name_stops);
        match buf.get(i) {
            Some(&b) if b != b':' && CLASS[usize::from(b)] & TCHAR != 0 => i += 1,
            _ => return i,
        }
    }
}

/// First index at or after `i` whose byte may not appear in a header value (or `buf.len()`).
#[inline(always)]
fn skip_value(buf: &[u8], mut i: usize) -> usize {
    loop {
        i = scan(buf, i, value_stops);
        if buf.get(i) != Some(&b'\t') {
            return i;
        }
        i += 1;
    }
}

impl RequestParser {
    /// Parses a request head that starts at `chunk[start]` and ends, blank line included,
    /// within the chunk and within the head limit; `None` for anything else (a head cut
    /// off by the end of the chunk, a leading empty line, any error, a `Content-Length`
    /// that is not plain digits), which the byte-at-a-time state machine then handles.
    ///
    /// It accepts a subset of what the state machine accepts, and for those heads stores
    /// exactly the fields the state machine would have: on success it returns the index
    /// just past the head and the method; on `None` it leaves the parser as it found it.
    #[inline(never)]
    fn parse_complete_head(&mut self, chunk: &[u8], start: usize) -> Option<(usize, Method)> {
        let parsed = self.parse_complete_head_into(chunk, start);
        if parsed.is_none() {
            // Undo what the attempt stored: the state machine starts from exactly these
            // (they hold these values whenever the parser is in `State::Start`).
            self.path_len = 0;
            self.content_length = None;
            self.conn_close = false;
            self.conn_keep_alive = false;
        }
        parsed
    }

    /// [`parse_complete_head`](Self::parse_complete_head) minus the undo: stores fields
    /// as it goes (fewer values live in registers), possibly returning `None` after.
    #[inline(always)]
    fn parse_complete_head_into(&mut self, chunk: &[u8], start: usize) -> Option<(usize, Method)> {
        let buf = chunk.get(start..)?;
        // Request line: method SP target SP version CRLF.
        let first = word_at(buf, 0)?;
        let (method, path_start) = if first & 0xffff_ffff == u64::from(u32::from_le_bytes(*b"GET ")) {
            (Method::Get, 4)
        } else if first & 0xff_ffff_ffff == u64::from_le_bytes(*b"POST \0\0\0") {
            (Method::Post, 5)
        } else {
            let end = skip_class(buf, 0, TCHAR);
            if end == 0 || buf.get(end) != Some(&b' ') {
                return None;
            }
            let method = match &buf[..end] {
                b"GET" => Method::Get,
                b"POST" => Method::Post,
                _ => Method::Other,
            };
            (method, end + 1)
        };
        let mut i = scan(buf, path_start, target_stops);
        let path_len = i - path_start;
        if path_len == 0 || path_len > MAX_PATH || buf.get(i) != Some(&b' ') {
            return None;
        }
        self.version = match word_at(buf, i + 1)? {
            w if w == u64::from_le_bytes(*b"HTTP/1.1") => Version::Http11,
            w if w == u64::from_le_bytes(*b"HTTP/1.0") => Version::Http10,
            _ => return None,
        };
        if buf.get(i + 9..i + 11)? != b"\r\n" {
            return None;
        }
        if path_len <= 8 {
            // Short path (the common case): one word, bytes past the path are ignored.
            self.path[..8].copy_from_slice(&word_from(buf, path_start).to_le_bytes());
        } else {
            self.path[..path_len].copy_from_slice(&buf[path_start..path_start + path_len]);
        }
        self.path_len = path_len;
        i += 11;
        // Header lines: name ":" OWS value CRLF, until the empty line.
        loop {
            if *buf.get(i)? == b'\r' {
                break;
            }
            let name_start = i;
            i = skip_name(buf, i);
            if i == name_start || buf.get(i) != Some(&b':') {
                return None;
            }
            let name = &buf[name_start..i];
            i += 1;
            while let Some(b' ' | b'\t') = buf.get(i) {
                i += 1;
            }
            let value_start = i;
            i = skip_value(buf, i);
            if buf.get(i..i + 2)? != b"\r\n" {
                return None;
            }
            // Only three header names matter; the length picks the one to compare.
            match name.len() {
                14 if name.eq_ignore_ascii_case(b"content-length") => {
                    let n = parse_content_length(&buf[value_start..i])?;
                    if self.content_length.is_some_and(|previous| previous != n) {
                        return None;
                    }
                    self.content_length = Some(n);
                }
                10 if name.eq_ignore_ascii_case(b"connection") => {
                    for token in buf[value_start..i].split(|&b| matches!(b, b',' | b' ' | b'\t')) {
                        if token.eq_ignore_ascii_case(b"close") {
                            self.conn_close = true;
                        } else if token.eq_ignore_ascii_case(b"keep-alive") {
                            self.conn_keep_alive = true;
                        }
                    }
                }
                17 if name.eq_ignore_ascii_case(b"transfer-encoding") => return None,
                _ => {}
            }
            i += 2;
        }
        if buf.get(i + 1) != Some(&b'\n') {
            return None;
        }
        let end = i + 2;
        // The state machine would stop with `HeadTooLarge` on a longer head.
        if end > self.max_head.saturating_sub(self.head_len) {
            return None;
        }
        self.head_len += end;
        Some((start + end, method))
    }
}

/// A `Content-Length` value (after leading whitespace): digits, then optional SP/HTAB.
fn parse_content_length(value: &[u8]) -> Option<u64> {
    let digits = value.iter().position(|b| !b.is_ascii_digit()).unwrap_or(value.len());
    if digits == 0 || !value[digits..].iter().all(|&b| b == b' ' || b == b'\t') {
        return None;
    }
    value[..digits].iter().try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

#[cfg(test)]
mod tests;
