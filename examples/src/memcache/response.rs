//! memcached's reply lines.
//!
//! Owns the exact bytes of every reply the server sends and the [`ResponseSink`] they
//! are appended to. Formats numbers on the stack; never allocates, never decides what
//! to reply (that is the store's job).

/// Where replies go: the server appends them to its outgoing buffers.
pub trait ResponseSink {
    /// Appends `bytes` to the reply stream.
    fn put(&mut self, bytes: &[u8]);
}

impl ResponseSink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// An error reply line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorReply {
    /// `ERROR`: unknown command or wrong number of arguments.
    UnknownCommand,
    /// `CLIENT_ERROR bad command line format`: bad key or number.
    BadFormat,
    /// `delete` with arguments other than `0` and `noreply`.
    DeleteUsage,
    /// `CLIENT_ERROR invalid exptime argument` (`touch`, `flush_all`).
    InvalidExptime,
    /// `CLIENT_ERROR invalid numeric delta argument` (`incr`, `decr`).
    InvalidDelta,
    /// `CLIENT_ERROR bad data chunk`: the data block did not end in CRLF.
    BadDataChunk,
    /// `SERVER_ERROR object too large for cache`.
    TooLarge,
    /// `CLIENT_ERROR cannot increment or decrement non-numeric value`.
    NonNumeric,
    /// `SERVER_ERROR out of memory storing object`.
    OutOfMemory,
}

impl ErrorReply {
    /// The full reply line, CRLF included.
    pub fn line(self) -> &'static [u8] {
        match self {
            ErrorReply::UnknownCommand => b"ERROR\r\n",
            ErrorReply::BadFormat => b"CLIENT_ERROR bad command line format\r\n",
            ErrorReply::DeleteUsage => b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n",
            ErrorReply::InvalidExptime => b"CLIENT_ERROR invalid exptime argument\r\n",
            ErrorReply::InvalidDelta => b"CLIENT_ERROR invalid numeric delta argument\r\n",
            ErrorReply::BadDataChunk => b"CLIENT_ERROR bad data chunk\r\n",
            ErrorReply::TooLarge => b"SERVER_ERROR object too large for cache\r\n",
            ErrorReply::NonNumeric => b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
            ErrorReply::OutOfMemory => b"SERVER_ERROR out of memory storing object\r\n",
        }
    }
}

/// Length of the binary "unknown command" error packet: a 24-byte header and the
/// message.
pub const BINARY_UNKNOWN_COMMAND_LEN: usize = 24 + BINARY_UNKNOWN_MESSAGE.len();
const BINARY_UNKNOWN_MESSAGE: &[u8] = b"Unknown command";

/// Writes the binary protocol's "unknown command" error (status 0x0081) answering
/// a request with `opcode` and `opaque`.
pub(super) fn put_binary_unknown_command(out: &mut impl ResponseSink, opcode: u8, opaque: [u8; 4]) {
    let mut packet = [0u8; BINARY_UNKNOWN_COMMAND_LEN];
    packet[0] = 0x81; // response magic
    packet[1] = opcode;
    // key length 0, extras length 0, data type 0
    packet[6..8].copy_from_slice(&0x0081u16.to_be_bytes()); // status: unknown command
    packet[8..12].copy_from_slice(&(BINARY_UNKNOWN_MESSAGE.len() as u32).to_be_bytes());
    packet[12..16].copy_from_slice(&opaque);
    // cas 0
    packet[24..].copy_from_slice(BINARY_UNKNOWN_MESSAGE);
    out.put(&packet);
}

pub(super) const STORED: &[u8] = b"STORED\r\n";
pub(super) const NOT_STORED: &[u8] = b"NOT_STORED\r\n";
pub(super) const EXISTS: &[u8] = b"EXISTS\r\n";
pub(super) const NOT_FOUND: &[u8] = b"NOT_FOUND\r\n";
pub(super) const DELETED: &[u8] = b"DELETED\r\n";
pub(super) const TOUCHED: &[u8] = b"TOUCHED\r\n";
pub(super) const OK: &[u8] = b"OK\r\n";
pub(super) const RESET: &[u8] = b"RESET\r\n";
pub(super) const END: &[u8] = b"END\r\n";
pub(super) const CRLF: &[u8] = b"\r\n";

/// Longest `VALUE` line: "VALUE " key " " u32 " " u64 " " u64 "\r\n".
const VALUE_LINE_MAX: usize = 6 + super::parser::MAX_KEY_LEN + 1 + 10 + 1 + 20 + 1 + 20 + 2;

/// Largest value written in one piece with its `VALUE` line and closing CRLF: a
/// reply of a few short pieces costs the sink a call each (on paste-rt, a look at
/// the pool buffer being filled), so a small one is assembled first.
const VALUE_INLINE_MAX: usize = 128;

/// Writes one `get` hit: `VALUE <key> <flags> <bytes>[ <cas>]\r\n<data>\r\n`.
pub(super) fn put_value(out: &mut impl ResponseSink, key: &[u8], flags: u32, data: &[u8], cas: Option<u64>) {
    // Keys reaching here are at most MAX_KEY_LEN; a longer one (a hand-built command)
    // is written in pieces rather than overflowing the line buffer.
    if key.len() > super::parser::MAX_KEY_LEN {
        out.put(b"VALUE ");
        out.put(key);
        let mut line = [0u8; VALUE_LINE_MAX];
        let n = value_line_numbers(&mut line, flags, data.len(), cas);
        out.put(&line[..n]);
        out.put(data);
        out.put(CRLF);
        return;
    }
    let mut reply = [0u8; VALUE_LINE_MAX + VALUE_INLINE_MAX + 2];
    let mut n = 0;
    for part in [&b"VALUE "[..], key] {
        reply[n..n + part.len()].copy_from_slice(part);
        n += part.len();
    }
    n += value_line_numbers(&mut reply[n..], flags, data.len(), cas);
    if data.len() <= VALUE_INLINE_MAX {
        // The common small value: line, data and CRLF in one piece.
        reply[n..n + data.len()].copy_from_slice(data);
        n += data.len();
        reply[n..n + 2].copy_from_slice(CRLF);
        out.put(&reply[..n + 2]);
    } else {
        out.put(&reply[..n]);
        out.put(data);
        out.put(CRLF);
    }
}

/// Writes `" <flags> <bytes>[ <cas>]\r\n"` at the start of `line`; returns its length.
fn value_line_numbers(line: &mut [u8], flags: u32, len: usize, cas: Option<u64>) -> usize {
    let mut digits = itoa::Buffer::new();
    let mut n = 0;
    let numbers = [Some(u64::from(flags)), Some(len as u64), cas];
    for number in numbers.into_iter().flatten() {
        line[n] = b' ';
        let d = digits.format(number).as_bytes();
        line[n + 1..n + 1 + d.len()].copy_from_slice(d);
        n += 1 + d.len();
    }
    line[n..n + 2].copy_from_slice(CRLF);
    n + 2
}

/// Writes an `incr`/`decr` result line.
pub(super) fn put_number(out: &mut impl ResponseSink, value: u64) {
    let mut line = [0u8; 22];
    let mut digits = itoa::Buffer::new();
    let d = digits.format(value).as_bytes();
    line[..d.len()].copy_from_slice(d);
    line[d.len()..d.len() + 2].copy_from_slice(CRLF);
    out.put(&line[..d.len() + 2]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_lines() {
        let mut out = Vec::new();
        put_value(&mut out, b"key", 0, b"hello", None);
        put_value(&mut out, b"k2", u32::MAX, b"", Some(u64::MAX));
        assert_eq!(out, b"VALUE key 0 5\r\nhello\r\nVALUE k2 4294967295 0 18446744073709551615\r\n\r\n");
    }

    #[test]
    fn longest_value_line_fits() {
        let key = [b'k'; super::super::parser::MAX_KEY_LEN];
        let mut out = Vec::new();
        put_value(&mut out, &key, u32::MAX, b"x", Some(u64::MAX));
        assert!(out.starts_with(b"VALUE kkk"));
        assert!(out.ends_with(b" 4294967295 1 18446744073709551615\r\nx\r\n"));
        let mut out = Vec::new();
        put_value(&mut out, &[b'k'; 300], 1, b"x", None);
        assert_eq!(out.len(), 6 + 300 + 6 + 3);
    }

    #[test]
    fn values_of_every_size_around_the_inline_limit() {
        let longest = [b'k'; super::super::parser::MAX_KEY_LEN];
        for key in [&b"a"[..], &longest[..]] {
            for len in [0, 1, VALUE_INLINE_MAX - 1, VALUE_INLINE_MAX, VALUE_INLINE_MAX + 1, 1000] {
                for cas in [None, Some(u64::MAX)] {
                    let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
                    let mut out = Vec::new();
                    put_value(&mut out, key, u32::MAX, &data, cas);
                    let cas = cas.map_or(String::new(), |c| format!(" {c}"));
                    let mut expected =
                        format!("VALUE {} {} {len}{cas}\r\n", String::from_utf8_lossy(key), u32::MAX).into_bytes();
                    expected.extend_from_slice(&data);
                    expected.extend_from_slice(b"\r\n");
                    assert_eq!(out, expected, "key of {} bytes, {len}-byte value", key.len());
                }
            }
        }
    }

    #[test]
    fn numbers() {
        let mut out = Vec::new();
        put_number(&mut out, 0);
        put_number(&mut out, u64::MAX);
        assert_eq!(out, b"0\r\n18446744073709551615\r\n");
    }
}
