//! Incremental parser for memcached text commands.
//!
//! Owns the framing of the text protocol: command lines ending in `\n` (a `\r` before
//! it is dropped), tokens separated by spaces, and the `<bytes>` + `\r\n` data block of
//! storage commands. Commands and data blocks may be split across chunks anywhere.
//! A line or data block that lies inside one chunk is borrowed from it (zero copy);
//! only pieces split across chunks are copied, into buffers the parser keeps and
//! reuses. It decides nothing about the stored items and writes no replies; every
//! malformed request becomes a [`Command::Error`] carrying memcached's reply, except a
//! line too long to be a command, which ends the stream ([`ParseError`]). A command
//! starting with the binary protocol's magic byte (0x80) is read as a binary request
//! header (24 bytes, into a fixed array) and becomes [`Command::Binary`]; the stream
//! ends there.

use std::fmt;

use super::command::{ArithOp, Command, Keys, StoreOp};
use super::response::ErrorReply;
use super::Config;

/// Longest key memcached accepts.
pub const MAX_KEY_LEN: usize = 250;

/// Most tokens any command needs (`cas <key> <flags> <exptime> <bytes> <cas> noreply`).
const MAX_TOKENS: usize = 7;

/// A value buffer larger than this is freed after use rather than kept for reuse.
const VALUE_RETAIN: usize = 64 * 1024;

/// The first byte of every binary-protocol request.
const BINARY_REQUEST_MAGIC: u8 = 0x80;
/// Bytes of a binary-protocol request header.
const BINARY_HEADER: usize = 24;

/// Why the parser gave up on a connection; the server should close it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// A line ran past the limit without a newline (as memcached, which closes the
    /// connection past 2048 bytes unless the line is a `get`/`gets`).
    LineTooLong {
        /// The limit that applied to this line.
        limit: usize,
    },
    /// A binary-protocol request was answered (see [`Command::Binary`]); nothing
    /// after it is read.
    BinaryProtocol,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::LineTooLong { limit } => {
                write!(f, "reading a memcached command: line longer than {limit} bytes, closing the connection")
            }
            ParseError::BinaryProtocol => {
                write!(f, "reading a memcached command: the binary protocol is not supported, closing the connection")
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// A storage command waiting for its data block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    op: StoreOp,
    flags: u32,
    exptime: i64,
    cas_unique: u64,
    bytes: usize,
    noreply: bool,
}

/// Where the parser is in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a command line.
    Line,
    /// Reading the data block of `pending`.
    Data,
    /// Skipping the data block of a too-large value (bytes left).
    Swallow(usize),
    /// Reading a binary-protocol request header (bytes read so far, in `key`).
    Binary(usize),
    Failed(ParseError),
}

/// A byte range of the command line.
type Span = (usize, usize);

/// A command line parsed into positions, before it is tied to where the line lives.
#[derive(Debug, Clone, Copy)]
enum Parsed {
    Get { with_cas: bool, keys: Span },
    Store { pending: Pending, key: Span },
    Delete { key: Span, noreply: bool },
    Arith { op: ArithOp, key: Span, delta: u64, noreply: bool },
    Touch { key: Span, exptime: i64, noreply: bool },
    FlushAll { delay: i64, noreply: bool },
    Version,
    Stats,
    StatsReset,
    Verbosity { noreply: bool },
    Quit,
    Error { reply: ErrorReply, noreply: bool },
}

/// Incremental memcached text-protocol parser for one connection.
///
/// Call [`next_command`](Self::next_command) with each received chunk until it returns
/// `None`, then continue with the next chunk.
#[derive(Debug, Clone)]
pub struct CommandParser {
    max_line: usize,
    max_get_line: usize,
    max_item_size: usize,
    state: State,
    /// The start of a line split across chunks (capacity kept for reuse).
    line: Vec<u8>,
    /// `line` holds a line already handed out; clear it before reading the next.
    line_used: bool,
    /// The key of `pending`, kept while its data block arrives.
    key: [u8; MAX_KEY_LEN],
    key_len: usize,
    /// The data block of `pending`, when split across chunks (capacity kept for reuse).
    value: Vec<u8>,
    pending: Pending,
}

impl CommandParser {
    /// A parser applying `config`'s line and item limits.
    pub fn new(config: &Config) -> Self {
        CommandParser {
            max_line: config.max_line,
            max_get_line: config.max_get_line.max(config.max_line),
            max_item_size: config.max_item_size,
            state: State::Line,
            line: Vec::new(),
            line_used: false,
            key: [0; MAX_KEY_LEN],
            key_len: 0,
            value: Vec::new(),
            pending: Pending { op: StoreOp::Set, flags: 0, exptime: 0, cas_unique: 0, bytes: 0, noreply: false },
        }
    }

    /// Whether the parser is between commands with nothing of the next one seen: a peer
    /// that closes now has not cut a command short.
    pub fn is_idle(&self) -> bool {
        self.state == State::Line && (self.line.is_empty() || self.line_used)
    }

    /// Parses `chunk` from `*pos` up to the end of the next command, advancing `*pos`
    /// past the bytes consumed; `None` when the rest of the chunk is consumed without
    /// completing one.
    ///
    /// `Some(Err(_))` means the stream cannot continue: close the connection. The parser
    /// then stays failed and reports the same error for any further bytes.
    pub fn next_command<'a>(&'a mut self, chunk: &'a [u8], pos: &mut usize) -> Option<Result<Command<'a>, ParseError>> {
        if *pos > chunk.len() {
            *pos = chunk.len();
        }
        loop {
            match self.state {
                State::Failed(e) => {
                    if *pos < chunk.len() {
                        *pos = chunk.len();
                        return Some(Err(e));
                    }
                    return None;
                }
                State::Swallow(left) => {
                    let take = left.min(chunk.len() - *pos);
                    *pos += take;
                    if take < left {
                        self.state = State::Swallow(left - take);
                        return None;
                    }
                    self.state = State::Line;
                }
                State::Data => return self.data(chunk, pos),
                State::Binary(have) => {
                    let take = (BINARY_HEADER - have).min(chunk.len() - *pos);
                    self.key[have..have + take].copy_from_slice(&chunk[*pos..*pos + take]);
                    *pos += take;
                    if have + take < BINARY_HEADER {
                        self.state = State::Binary(have + take);
                        return None;
                    }
                    self.state = State::Failed(ParseError::BinaryProtocol);
                    *pos = chunk.len();
                    let h = &self.key;
                    return Some(Ok(Command::Binary { opcode: h[1], opaque: [h[12], h[13], h[14], h[15]] }));
                }
                State::Line => {
                    self.recycle();
                    let rest = &chunk[*pos..];
                    if rest.is_empty() {
                        return None;
                    }
                    if self.line.is_empty() && rest[0] == BINARY_REQUEST_MAGIC {
                        self.state = State::Binary(0);
                        continue;
                    }
                    let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
                        // The line continues in a later chunk: keep what we have.
                        let total = self.line.len() + rest.len();
                        if total > self.max_line {
                            let limit = self.line_limit(&self.line, rest);
                            if total > limit {
                                return self.fail(chunk, pos, ParseError::LineTooLong { limit });
                            }
                        }
                        if self.line.capacity() == 0 {
                            self.line.reserve_exact(self.max_line);
                        }
                        self.line.extend_from_slice(rest);
                        *pos = chunk.len();
                        return None;
                    };
                    let start = *pos;
                    *pos += newline + 1;
                    if self.line.is_empty() {
                        return self.dispatch(chunk, pos, Some(start), newline);
                    }
                    self.line.extend_from_slice(&rest[..newline]);
                    self.line_used = true;
                    let len = self.line.len();
                    return self.dispatch(chunk, pos, None, len);
                }
            }
        }
    }

    /// Turns a complete line (in `chunk` at `at`, or in `self.line`) into a command.
    fn dispatch<'a>(
        &'a mut self,
        chunk: &'a [u8],
        pos: &mut usize,
        at: Option<usize>,
        len: usize,
    ) -> Option<Result<Command<'a>, ParseError>> {
        let parsed = {
            let line = match at {
                Some(start) => &chunk[start..start + len],
                None => &self.line[..len],
            };
            let limit = self.line_limit(line, &[]);
            if len > limit {
                Err(ParseError::LineTooLong { limit })
            } else {
                Ok(parse_line(line))
            }
        };
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(e) => return self.fail(chunk, pos, e),
        };
        // A storage command's data block: borrowed from this chunk when complete here,
        // skipped when too large, otherwise collected from the following chunks.
        let mut block = None;
        if let Parsed::Store { pending, key } = parsed {
            let need = pending.bytes + 2;
            if pending.bytes > self.max_item_size {
                self.state = State::Swallow(need);
            } else if chunk.len() - *pos >= need {
                block = Some(&chunk[*pos..*pos + need]);
                *pos += need;
            } else {
                let line = match at {
                    Some(start) => &chunk[start..start + len],
                    None => &self.line[..len],
                };
                self.key_len = key.1 - key.0;
                self.key[..self.key_len].copy_from_slice(&line[key.0..key.1]);
                self.pending = pending;
                self.value.clear();
                self.value.extend_from_slice(&chunk[*pos..]);
                *pos = chunk.len();
                self.state = State::Data;
                return None;
            }
        }
        let line: &'a [u8] = match at {
            Some(start) => &chunk[start..start + len],
            None => &self.line[..len],
        };
        let span = |(start, end): Span| &line[start..end];
        let command = match parsed {
            Parsed::Get { with_cas, keys } => Command::Get { keys: Keys::new(span(keys)), with_cas },
            Parsed::Store { pending, key } => match block {
                Some(block) => complete_store(pending, span(key), block),
                None => Command::StoreTooLarge { op: pending.op, key: span(key), noreply: pending.noreply },
            },
            Parsed::Delete { key, noreply } => Command::Delete { key: span(key), noreply },
            Parsed::Arith { op, key, delta, noreply } => Command::Arith { op, key: span(key), delta, noreply },
            Parsed::Touch { key, exptime, noreply } => Command::Touch { key: span(key), exptime, noreply },
            Parsed::FlushAll { delay, noreply } => Command::FlushAll { delay, noreply },
            Parsed::Version => Command::Version,
            Parsed::Stats => Command::Stats,
            Parsed::StatsReset => Command::StatsReset,
            Parsed::Verbosity { noreply } => Command::Verbosity { noreply },
            Parsed::Quit => Command::Quit,
            Parsed::Error { reply, noreply } => Command::Error { reply, noreply },
        };
        Some(Ok(command))
    }

    /// Collects the data block of `self.pending`.
    fn data<'a>(&'a mut self, chunk: &'a [u8], pos: &mut usize) -> Option<Result<Command<'a>, ParseError>> {
        let need = self.pending.bytes + 2;
        let avail = chunk.len() - *pos;
        if self.value.is_empty() && avail >= need {
            // The whole block is in this chunk: no copy.
            let block = &chunk[*pos..*pos + need];
            *pos += need;
            self.state = State::Line;
            return Some(Ok(complete_store(self.pending, &self.key[..self.key_len], block)));
        }
        let take = (need - self.value.len()).min(avail);
        self.value.extend_from_slice(&chunk[*pos..*pos + take]);
        *pos += take;
        if self.value.len() < need {
            return None;
        }
        self.state = State::Line;
        Some(Ok(complete_store(self.pending, &self.key[..self.key_len], &self.value)))
    }

    fn fail<'a>(&mut self, chunk: &[u8], pos: &mut usize, e: ParseError) -> Option<Result<Command<'a>, ParseError>> {
        self.state = State::Failed(e);
        *pos = chunk.len();
        Some(Err(e))
    }

    /// Releases what the previous command borrowed; frees oversized buffers.
    fn recycle(&mut self) {
        if self.line_used {
            self.line_used = false;
            self.line.clear();
            if self.line.capacity() > self.max_line {
                self.line = Vec::new();
            }
        }
        if self.value.capacity() > VALUE_RETAIN {
            self.value = Vec::new();
        }
    }

    /// The length limit of the line starting with `a` followed by `b`: longer for
    /// `get`/`gets`, as in memcached. Only the first `max_line + 1` bytes decide (the
    /// limit matters only past `max_line`), so the answer is the same wherever the
    /// line was cut into chunks: a line of only spaces up to there is not a `get`.
    fn line_limit(&self, a: &[u8], b: &[u8]) -> usize {
        let mut bytes = a.iter().chain(b).copied().take(self.max_line + 1).skip_while(|&c| c == b' ');
        let mut head = [0u8; 5];
        for slot in &mut head {
            match bytes.next() {
                Some(c) => *slot = c,
                None => break,
            }
        }
        if head.starts_with(b"get ") || &head == b"gets " {
            self.max_get_line
        } else {
            self.max_line
        }
    }
}

/// The command for a storage line and its complete data block (`bytes` + 2 long).
fn complete_store<'a>(p: Pending, key: &'a [u8], block: &'a [u8]) -> Command<'a> {
    let (data, end) = block.split_at(p.bytes);
    if end != b"\r\n" {
        return Command::Error { reply: ErrorReply::BadDataChunk, noreply: p.noreply };
    }
    Command::Store {
        op: p.op,
        key,
        flags: p.flags,
        exptime: p.exptime,
        cas_unique: p.cas_unique,
        data,
        noreply: p.noreply,
    }
}

/// Space-separated tokens of a line (memcached splits on spaces only).
struct Tokens {
    spans: [Span; MAX_TOKENS],
    /// Number of tokens, counted up to `MAX_TOKENS + 1` ("too many").
    count: usize,
}

fn tokenize(line: &[u8]) -> Tokens {
    let mut tokens = Tokens { spans: [(0, 0); MAX_TOKENS], count: 0 };
    let mut i = 0;
    while i < line.len() && tokens.count <= MAX_TOKENS {
        if line[i] == b' ' {
            i += 1;
            continue;
        }
        let start = i;
        while i < line.len() && line[i] != b' ' {
            i += 1;
        }
        if tokens.count < MAX_TOKENS {
            tokens.spans[tokens.count] = (start, i);
        }
        tokens.count += 1;
    }
    tokens
}

/// Parses one command line (without its `\n`) the way memcached's
/// `process_command_ascii` does, including which errors a `noreply` silences.
fn parse_line(line: &[u8]) -> Parsed {
    use ErrorReply::{BadFormat, DeleteUsage, InvalidDelta, InvalidExptime, UnknownCommand};
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let tokens = tokenize(line);
    let n = tokens.count;
    let error = |reply, noreply| Parsed::Error { reply, noreply };
    if n == 0 {
        return error(UnknownCommand, false);
    }
    let span = |i: usize| tokens.spans[i];
    let tok = |i: usize| &line[tokens.spans[i].0..tokens.spans[i].1];
    // Callers check `n` before asking, so `n - 1` indexes a kept token.
    let last_is_noreply = || tok(n - 1) == b"noreply";
    let cmd = tok(0);
    if cmd.len() < 2 {
        return error(UnknownCommand, false);
    }
    let storage = |op: StoreOp, with_cas: bool| {
        let args = if with_cas { 6 } else { 5 };
        if n != args && n != args + 1 {
            return error(UnknownCommand, false);
        }
        let noreply = last_is_noreply();
        if !valid_key(tok(1)) {
            return error(BadFormat, noreply);
        }
        let (Some(flags), Some(exptime), Some(bytes)) = (parse_u32(tok(2)), parse_i32(tok(3)), parse_i32(tok(4)))
        else {
            return error(BadFormat, noreply);
        };
        let cas_unique = if with_cas {
            match parse_u64(tok(5)) {
                Some(cas) => cas,
                None => return error(BadFormat, noreply),
            }
        } else {
            0
        };
        let Ok(bytes) = usize::try_from(bytes) else {
            return error(BadFormat, noreply);
        };
        if bytes > i32::MAX as usize - 2 {
            return error(BadFormat, noreply);
        }
        let pending = Pending { op, flags, exptime: i64::from(exptime), cas_unique, bytes, noreply };
        Parsed::Store { pending, key: span(1) }
    };
    match cmd {
        b"get" | b"gets" => {
            if n < 2 {
                return error(UnknownCommand, false);
            }
            let keys = (span(0).1, line.len());
            if !Keys::new(&line[keys.0..keys.1]).all(valid_key) {
                return error(BadFormat, false);
            }
            Parsed::Get { with_cas: cmd == b"gets", keys }
        }
        b"set" => storage(StoreOp::Set, false),
        b"add" => storage(StoreOp::Add, false),
        b"replace" => storage(StoreOp::Replace, false),
        b"append" => storage(StoreOp::Append, false),
        b"prepend" => storage(StoreOp::Prepend, false),
        b"cas" => storage(StoreOp::Cas, true),
        b"delete" => {
            if !(2..=4).contains(&n) {
                return error(UnknownCommand, false);
            }
            let mut noreply = false;
            if n > 2 {
                // memcached still accepts the obsolete hold time, but only "0".
                let hold_is_zero = tok(2) == b"0";
                noreply = last_is_noreply();
                let valid = (n == 3 && (hold_is_zero || noreply)) || (n == 4 && hold_is_zero && noreply);
                if !valid {
                    return error(DeleteUsage, noreply);
                }
            }
            if !valid_key(tok(1)) {
                return error(BadFormat, noreply);
            }
            Parsed::Delete { key: span(1), noreply }
        }
        b"incr" | b"decr" => {
            if n != 3 && n != 4 {
                return error(UnknownCommand, false);
            }
            let noreply = last_is_noreply();
            if !valid_key(tok(1)) {
                return error(BadFormat, noreply);
            }
            let Some(delta) = parse_u64(tok(2)) else {
                return error(InvalidDelta, noreply);
            };
            let op = if cmd == b"incr" { ArithOp::Incr } else { ArithOp::Decr };
            Parsed::Arith { op, key: span(1), delta, noreply }
        }
        b"touch" => {
            if n != 3 && n != 4 {
                return error(UnknownCommand, false);
            }
            let noreply = last_is_noreply();
            if !valid_key(tok(1)) {
                return error(BadFormat, noreply);
            }
            let Some(exptime) = parse_i32(tok(2)) else {
                return error(InvalidExptime, noreply);
            };
            Parsed::Touch { key: span(1), exptime: i64::from(exptime), noreply }
        }
        b"flush_all" => {
            if n > 3 {
                return error(UnknownCommand, false);
            }
            let noreply = last_is_noreply();
            let mut delay = 0;
            let args_without_delay = if noreply { 2 } else { 1 };
            if n != args_without_delay {
                match parse_i32(tok(1)) {
                    Some(d) => delay = i64::from(d),
                    None => return error(InvalidExptime, noreply),
                }
            }
            Parsed::FlushAll { delay, noreply }
        }
        b"version" => Parsed::Version,
        b"stats" => match n {
            1 => Parsed::Stats,
            2 if tok(1) == b"reset" => Parsed::StatsReset,
            // Other groups (settings, items, slabs, …) are not kept; `noreply` is
            // not a stats argument.
            _ => error(UnknownCommand, false),
        },
        b"verbosity" => {
            // memcached: `verbosity <level> [noreply]`; anything but a number as the
            // level is an ERROR, which a trailing `noreply` silences.
            if n != 2 && n != 3 {
                return error(UnknownCommand, false);
            }
            let noreply = last_is_noreply();
            if parse_u32(tok(1)).is_none() {
                return error(UnknownCommand, noreply);
            }
            Parsed::Verbosity { noreply }
        }
        b"quit" => Parsed::Quit,
        _ => error(UnknownCommand, false),
    }
}

/// A key memcached (and this server) accepts: 1..=250 bytes, no spaces or control bytes.
fn valid_key(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.iter().all(|&b| b > b' ' && b != 0x7f)
}

/// An unsigned decimal (an optional `+`, then digits) that fits in 64 bits.
fn parse_u64(token: &[u8]) -> Option<u64> {
    let digits = token.strip_prefix(b"+").unwrap_or(token);
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

fn parse_u32(token: &[u8]) -> Option<u32> {
    u32::try_from(parse_u64(token)?).ok()
}

/// A signed decimal that fits in 32 bits (memcached's `safe_strtol`).
fn parse_i32(token: &[u8]) -> Option<i32> {
    match token.strip_prefix(b"-") {
        Some(digits) if !digits.starts_with(b"+") => {
            let magnitude = i64::try_from(parse_u64(digits)?).ok()?;
            i32::try_from(-magnitude).ok()
        }
        Some(_) => None,
        None => i32::try_from(parse_u64(token)?).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command with everything owned, for comparing runs.
    fn describe(command: &Command<'_>) -> String {
        match command {
            Command::Get { keys, with_cas } => {
                let keys: Vec<String> = keys.clone().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
                format!("get cas={with_cas} {keys:?}")
            }
            Command::Store { op, key, flags, exptime, cas_unique, data, noreply } => format!(
                "{op:?} {} {flags} {exptime} {cas_unique} {:?} {noreply}",
                String::from_utf8_lossy(key),
                String::from_utf8_lossy(data)
            ),
            other => format!("{other:?}"),
        }
    }

    fn parse_chunks(config: &Config, chunks: &[&[u8]]) -> Vec<String> {
        let mut parser = CommandParser::new(config);
        let mut out = Vec::new();
        for chunk in chunks {
            let mut pos = 0;
            while let Some(result) = parser.next_command(chunk, &mut pos) {
                match result {
                    Ok(command) => out.push(describe(&command)),
                    Err(e) => out.push(format!("fatal {e:?}")),
                }
            }
            assert_eq!(pos, chunk.len());
        }
        out
    }

    fn parse_one(line: &[u8]) -> String {
        let all = parse_chunks(&Config::default(), &[line]);
        assert_eq!(all.len(), 1, "{all:?}");
        all.into_iter().next().unwrap_or_default()
    }

    fn err(reply: ErrorReply, noreply: bool) -> String {
        format!("{:?}", Command::Error { reply, noreply })
    }

    #[test]
    fn get_and_gets() {
        assert_eq!(parse_one(b"get a\r\n"), "get cas=false [\"a\"]");
        assert_eq!(parse_one(b"gets a  bb ccc\r\n"), "get cas=true [\"a\", \"bb\", \"ccc\"]");
        assert_eq!(parse_one(b"  get a \n"), "get cas=false [\"a\"]");
        assert_eq!(parse_one(b"get\r\n"), err(ErrorReply::UnknownCommand, false));
        assert_eq!(parse_one(b"get \r\n"), err(ErrorReply::UnknownCommand, false));
        let long = format!("get a {}\r\n", "k".repeat(251));
        assert_eq!(parse_one(long.as_bytes()), err(ErrorReply::BadFormat, false));
        let ok = format!("get {}\r\n", "k".repeat(250));
        assert!(parse_one(ok.as_bytes()).starts_with("get cas=false"));
        assert_eq!(parse_one(b"get a\x01b\r\n"), err(ErrorReply::BadFormat, false));
        assert_eq!(parse_one(b"get a\tb\r\n"), err(ErrorReply::BadFormat, false));
        assert_eq!(parse_one(b"GET a\r\n"), err(ErrorReply::UnknownCommand, false));
    }

    #[test]
    fn storage_commands() {
        assert_eq!(parse_one(b"set k 1 2 3\r\nabc\r\n"), "Set k 1 2 0 \"abc\" false");
        assert_eq!(parse_one(b"add k 0 0 0 noreply\r\n\r\n"), "Add k 0 0 0 \"\" true");
        assert_eq!(parse_one(b"replace k 4294967295 -1 1\r\nx\r\n"), "Replace k 4294967295 -1 0 \"x\" false");
        assert_eq!(parse_one(b"append k 0 0 2\r\n\r\n\r\n"), "Append k 0 0 0 \"\\r\\n\" false");
        assert_eq!(parse_one(b"prepend k 0 0 1 junk\r\nx\r\n"), "Prepend k 0 0 0 \"x\" false");
        assert_eq!(parse_one(b"cas k 0 0 1 99\r\nx\r\n"), "Cas k 0 0 99 \"x\" false");
        assert_eq!(parse_one(b"cas k 0 0 1 99 noreply\r\nx\r\n"), "Cas k 0 0 99 \"x\" true");
        // Data may contain anything, including "\r\n" and command text.
        assert_eq!(parse_one(b"set k 0 0 8\r\nget x\r\nq\r\n"), "Set k 0 0 0 \"get x\\r\\nq\" false");
    }

    #[test]
    fn storage_errors() {
        use ErrorReply::*;
        let cases: &[(&[u8], ErrorReply, bool)] = &[
            (b"set k 0 0\r\n", UnknownCommand, false),
            (b"set k 0 0 1 noreply x\r\n", UnknownCommand, false),
            (b"cas k 0 0 1\r\n", UnknownCommand, false),
            (b"set k x 0 1\r\n", BadFormat, false),
            (b"set k -1 0 1\r\n", BadFormat, false),
            (b"set k 4294967296 0 1\r\n", BadFormat, false),
            (b"set k 0 2147483648 1\r\n", BadFormat, false),
            (b"set k 0 0 -1\r\n", BadFormat, false),
            (b"set k 0 0 2147483646\r\n", BadFormat, false),
            (b"set k 0 0 1x\r\n", BadFormat, false),
            (b"set k 0 0 x noreply\r\n", BadFormat, true),
            (b"cas k 0 0 1 -5\r\n", BadFormat, false),
            (b"set k\x7f 0 0 1\r\n", BadFormat, false),
        ];
        for (line, reply, noreply) in cases {
            assert_eq!(parse_one(line), err(*reply, *noreply), "{}", String::from_utf8_lossy(line));
        }
        let long = format!("set {} 0 0 1\r\n", "k".repeat(251));
        assert_eq!(parse_one(long.as_bytes()), err(BadFormat, false));
    }

    #[test]
    fn bad_data_chunk_consumes_exactly_bytes_plus_two() {
        let all = parse_chunks(&Config::default(), &[b"set k 0 0 3\r\nhello\r\nversion\r\n"]);
        // "hel" + "lo" is not "\r\n"; then "\r\n" is an empty line: ERROR, as memcached.
        assert_eq!(
            all,
            vec![err(ErrorReply::BadDataChunk, false), err(ErrorReply::UnknownCommand, false), "Version".to_string()]
        );
        let all = parse_chunks(&Config::default(), &[b"set k 0 0 1 noreply\r\nxyz\r\n"]);
        assert_eq!(all[0], err(ErrorReply::BadDataChunk, true));
    }

    #[test]
    fn too_large_value_is_skipped() {
        let config = Config { max_item_size: 4, ..Config::default() };
        let input = b"set k 0 0 5\r\nhello\r\nset k 0 0 4 noreply\r\nhell\r\nget k\r\n";
        let expected = vec![
            format!("{:?}", Command::StoreTooLarge { op: StoreOp::Set, key: b"k", noreply: false }),
            "Set k 0 0 0 \"hell\" true".to_string(),
            "get cas=false [\"k\"]".to_string(),
        ];
        for split in 0..=input.len() {
            let (a, b) = input.split_at(split);
            assert_eq!(parse_chunks(&config, &[a, b]), expected, "split at {split}");
        }
    }

    #[test]
    fn other_commands() {
        use ErrorReply::*;
        let d = |key: &'static [u8], noreply| format!("{:?}", Command::Delete { key, noreply });
        assert_eq!(parse_one(b"delete k\r\n"), d(b"k", false));
        assert_eq!(parse_one(b"delete k noreply\r\n"), d(b"k", true));
        assert_eq!(parse_one(b"delete k 0\r\n"), d(b"k", false));
        assert_eq!(parse_one(b"delete k 0 noreply\r\n"), d(b"k", true));
        assert_eq!(parse_one(b"delete k 5\r\n"), err(DeleteUsage, false));
        assert_eq!(parse_one(b"delete k 5 noreply\r\n"), err(DeleteUsage, true));
        assert_eq!(parse_one(b"delete\r\n"), err(UnknownCommand, false));
        assert_eq!(parse_one(b"delete a b c d\r\n"), err(UnknownCommand, false));

        let a = |op, key: &'static [u8], delta, noreply| format!("{:?}", Command::Arith { op, key, delta, noreply });
        assert_eq!(parse_one(b"incr n 5\r\n"), a(ArithOp::Incr, b"n", 5, false));
        assert_eq!(parse_one(b"decr n 18446744073709551615 noreply\r\n"), a(ArithOp::Decr, b"n", u64::MAX, true));
        assert_eq!(parse_one(b"incr n 18446744073709551616\r\n"), err(InvalidDelta, false));
        assert_eq!(parse_one(b"incr n -1\r\n"), err(InvalidDelta, false));
        assert_eq!(parse_one(b"incr n\r\n"), err(UnknownCommand, false));

        let t = |key: &'static [u8], exptime, noreply| format!("{:?}", Command::Touch { key, exptime, noreply });
        assert_eq!(parse_one(b"touch k 10\r\n"), t(b"k", 10, false));
        assert_eq!(parse_one(b"touch k -1 noreply\r\n"), t(b"k", -1, true));
        assert_eq!(parse_one(b"touch k soon\r\n"), err(InvalidExptime, false));

        let f = |delay, noreply| format!("{:?}", Command::FlushAll { delay, noreply });
        assert_eq!(parse_one(b"flush_all\r\n"), f(0, false));
        assert_eq!(parse_one(b"flush_all noreply\r\n"), f(0, true));
        assert_eq!(parse_one(b"flush_all 10\r\n"), f(10, false));
        assert_eq!(parse_one(b"flush_all 10 noreply\r\n"), f(10, true));
        assert_eq!(parse_one(b"flush_all later\r\n"), err(InvalidExptime, false));
        assert_eq!(parse_one(b"flush_all 1 2 3\r\n"), err(UnknownCommand, false));

        assert_eq!(parse_one(b"version\r\n"), "Version");
        assert_eq!(parse_one(b"quit\r\n"), "Quit");
        assert_eq!(parse_one(b"\r\n"), err(UnknownCommand, false));
        assert_eq!(parse_one(b"x\r\n"), err(UnknownCommand, false));
    }

    #[test]
    fn the_line_limit_does_not_depend_on_where_the_line_is_cut() {
        // Found by the memcache_parser fuzz target: a line of spaces past the limit,
        // then `gets`, was refused when it arrived byte by byte and accepted whole.
        let config = Config { max_line: 64, max_get_line: 256, ..Config::default() };
        // A failed parser reports its error again for each later chunk: compare up
        // to the first one.
        let until_fatal = |mut seen: Vec<String>| {
            if let Some(i) = seen.iter().position(|s| s.starts_with("fatal")) {
                seen.truncate(i + 1);
            }
            seen
        };
        let mut line = vec![b' '; 70];
        line.extend_from_slice(b"gets k\r\n");
        let whole = parse_chunks(&config, &[&line]);
        let bytes: Vec<&[u8]> = line.chunks(1).collect();
        assert_eq!(until_fatal(parse_chunks(&config, &bytes)), whole);
        assert_eq!(whole, ["fatal LineTooLong { limit: 64 }"]);
        // A `get` whose keyword lies within the first max_line + 1 bytes keeps the longer limit.
        let mut line = b"  gets".to_vec();
        line.extend(std::iter::repeat_n(b" k", 60).flatten());
        line.extend_from_slice(b"\r\n");
        let bytes: Vec<&[u8]> = line.chunks(1).collect();
        assert_eq!(parse_chunks(&config, &bytes), parse_chunks(&config, &[&line]));
        assert!(parse_chunks(&config, &[&line])[0].starts_with("get cas=true"));
    }

    #[test]
    fn stats_and_verbosity_follow_memcached() {
        use ErrorReply::UnknownCommand;
        assert_eq!(parse_one(b"stats\r\n"), "Stats");
        assert_eq!(parse_one(b"stats reset\r\n"), "StatsReset");
        assert_eq!(parse_one(b"stats noreply\r\n"), err(UnknownCommand, false));
        assert_eq!(parse_one(b"stats slabs\r\n"), err(UnknownCommand, false));

        let v = |noreply| format!("{:?}", Command::Verbosity { noreply });
        assert_eq!(parse_one(b"verbosity 1\r\n"), v(false));
        assert_eq!(parse_one(b"verbosity 0 noreply\r\n"), v(true));
        assert_eq!(parse_one(b"verbosity\r\n"), err(UnknownCommand, false));
        assert_eq!(parse_one(b"verbosity foo bar my\r\n"), err(UnknownCommand, false));
        assert_eq!(parse_one(b"verbosity foo\r\n"), err(UnknownCommand, false));
        // Not a level, but silenced: memcached sends nothing.
        assert_eq!(parse_one(b"verbosity noreply\r\n"), err(UnknownCommand, true));
    }

    #[test]
    fn a_binary_request_header_is_read_across_chunks_and_ends_the_stream() {
        let mut noop = [0u8; BINARY_HEADER];
        noop[0] = BINARY_REQUEST_MAGIC;
        noop[1] = 0x0a; // NOOP
        noop[12..16].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        let binary = format!("{:?}", Command::Binary { opcode: 0x0a, opaque: [0xde, 0xad, 0xbe, 0xef] });
        for split in 1..BINARY_HEADER {
            let (a, b) = noop.split_at(split);
            let mut parser = CommandParser::new(&Config::default());
            let mut pos = 0;
            assert!(parser.next_command(a, &mut pos).is_none());
            assert!(!parser.is_idle(), "a partial header is a command in progress");
            let mut pos = 0;
            let got = parser.next_command(b, &mut pos).map(|r| r.map(|c| format!("{c:?}")));
            assert_eq!(got, Some(Ok(binary.clone())), "split at {split}");
        }
        // After text commands too; whatever follows is not read.
        let mut stream = b"version\r\n".to_vec();
        stream.extend_from_slice(&noop);
        stream.extend_from_slice(b"get k\r\n");
        let all = parse_chunks(&Config::default(), &[&stream, b"version\r\n"]);
        assert_eq!(all, ["Version".to_string(), binary, "fatal BinaryProtocol".into()]);
    }

    #[test]
    fn line_limits() {
        let config = Config { max_line: 32, max_get_line: 64, ..Config::default() };
        let long = format!("set {} 0 0 1\r\n", "k".repeat(40));
        let all = parse_chunks(&config, &[long.as_bytes()]);
        assert_eq!(all, vec![format!("fatal {:?}", ParseError::LineTooLong { limit: 32 })]);
        // A multi-get may be longer, up to its own limit.
        let get = format!("get {}\r\n", ["abcdefgh"; 6].join(" "));
        assert!(get.len() > 32 && get.len() < 64);
        assert!(parse_chunks(&config, &[get.as_bytes()])[0].starts_with("get"));
        let get = format!("get {}\r\n", ["abcdefgh"; 8].join(" "));
        assert_eq!(
            parse_chunks(&config, &[get.as_bytes()]),
            vec![format!("fatal {:?}", ParseError::LineTooLong { limit: 64 })]
        );
        // Without a newline the line is cut off as soon as it passes the limit, and the
        // parser stays failed.
        let mut parser = CommandParser::new(&config);
        let mut pos = 0;
        assert!(parser.next_command(&[b'x'; 20], &mut pos).is_none());
        pos = 0;
        assert_eq!(parser.next_command(&[b'x'; 20], &mut pos), Some(Err(ParseError::LineTooLong { limit: 32 })));
        pos = 0;
        assert_eq!(parser.next_command(b"version\r\n", &mut pos), Some(Err(ParseError::LineTooLong { limit: 32 })));
        assert!(ParseError::LineTooLong { limit: 32 }.to_string().contains("32 bytes"));
    }

    /// A stream with every command, data blocks containing CRLF, and errors.
    fn script() -> Vec<u8> {
        let mut s = Vec::new();
        s.extend_from_slice(b"set a 1 0 5\r\nhello\r\n");
        s.extend_from_slice(b"get a b\r\n");
        s.extend_from_slice(b"gets a\n");
        s.extend_from_slice(b"set big 0 0 10\r\n0123\r\n6789\r\n");
        s.extend_from_slice(b"append a 0 0 2 noreply\r\n!!\r\n");
        s.extend_from_slice(b"cas a 0 0 1 7\r\nz\r\n");
        s.extend_from_slice(b"incr n 1\r\ndecr n 2 noreply\r\ntouch a 0\r\n");
        s.extend_from_slice(b"bogus\r\nset k 0 0 2\r\nabc\r\n");
        s.extend_from_slice(b"delete a\r\nflush_all 0\r\nversion\r\nquit\r\n");
        s
    }

    #[test]
    fn every_split_point_gives_the_same_commands() {
        let config = Config::default();
        let input = script();
        let expected = parse_chunks(&config, &[&input]);
        assert_eq!(expected.len(), 16, "{expected:#?}");
        for split in 0..=input.len() {
            let (a, b) = input.split_at(split);
            assert_eq!(parse_chunks(&config, &[a, b]), expected, "split at {split}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(parse_chunks(&config, &bytes), expected);
    }

    #[test]
    fn idle_between_commands_only() {
        let config = Config::default();
        let mut parser = CommandParser::new(&config);
        assert!(parser.is_idle());
        let mut pos = 0;
        assert!(parser.next_command(b"set k 0 0 1\r\n", &mut pos).is_none());
        assert!(!parser.is_idle());
        pos = 0;
        assert!(parser.next_command(b"x\r\nge", &mut pos).is_some());
        assert!(parser.next_command(b"x\r\nge", &mut pos).is_none());
        assert!(!parser.is_idle());
        pos = 0;
        assert!(parser.next_command(b"t k\r\n", &mut pos).is_some());
        assert!(parser.next_command(b"t k\r\n", &mut pos).is_none());
        assert!(parser.is_idle());
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"+7"), Some(7));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"+"), None);
        assert_eq!(parse_u64(b"1a"), None);
        assert_eq!(parse_i32(b"-2147483648"), Some(i32::MIN));
        assert_eq!(parse_i32(b"-2147483649"), None);
        assert_eq!(parse_i32(b"2147483647"), Some(i32::MAX));
        assert_eq!(parse_i32(b"2147483648"), None);
        assert_eq!(parse_i32(b"-+1"), None);
        assert_eq!(parse_i32(b"-"), None);
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..400),
                                       split in 0usize..400) {
            let config = Config { max_line: 64, max_get_line: 128, max_item_size: 32, ..Config::default() };
            let split = split.min(data.len());
            let _ = parse_chunks(&config, &[&data[..split], &data[split..]]);
        }

        #[test]
        fn arbitrary_splits_agree(cuts in proptest::collection::vec(0usize..300, 0..10)) {
            let input = script();
            let expected = parse_chunks(&Config::default(), &[&input]);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(input.len())).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut last = 0;
            for c in cuts {
                chunks.push(&input[last..c]);
                last = c;
            }
            chunks.push(&input[last..]);
            proptest::prop_assert_eq!(parse_chunks(&Config::default(), &chunks), expected);
        }
    }
}
