//! The whole-head fast path of [`RequestParser`]: one pass over a request head that
//! lies complete in one chunk, eight bytes at a time.
//!
//! Owns [`RequestParser::parse_complete_head`] and the word classifiers it scans with.
//! It must never accept anything the byte-at-a-time state machine would not accept in
//! exactly the same way: for every head it takes it reports the same fields and
//! consumes the same bytes, and for anything else it answers `None` having changed
//! nothing the state machine reads, so that the state machine parses the head from the
//! same position. It never reports an error itself and never reads outside the chunk.
//!
//! It takes a head when all of this holds, and leaves it to the state machine otherwise:
//! - the whole head, blank line included, is in the chunk and within the head limit;
//! - it starts with the method (no empty lines before it);
//! - the request line is `METHOD SP target SP HTTP/1.1 CRLF` (or `HTTP/1.0`), with a
//!   target of 1 to [`MAX_PATH`] visible ASCII bytes;
//! - each header line is `name ":" value CRLF`: a name of `tchar`s, a value of HTAB,
//!   SP, visible ASCII and bytes from 0x80;
//! - `Content-Length` (any case) is digits between optional SP/HTAB, fits in 64 bits
//!   and agrees with any earlier one; no `Transfer-Encoding`.
//!
//! So a split head, an error of any kind, leading empty lines or an oversized head go
//! the slow way; the answer is the same either way, only the cost differs.
//!
//! What keeps it cheap (the `parse_bench` example counts the instructions):
//! - `GET ` and `POST ` are one comparison each; other methods take a byte loop;
//! - the target, header names and values are scanned a word at a time with SWAR
//!   classifiers: a few arithmetic operations and one branch per eight bytes, whatever
//!   the bytes are;
//! - `Host:` in any case, which every HTTP/1.1 request has, is one masked comparison;
//! - only names as long as `Content-Length`, `Connection` or `Transfer-Encoding` are
//!   compared, a word at a time and out of line, so other headers cost just their scan;
//! - every word is read at a position just compared with `len - 8`, so the bounds checks
//!   fold away; the bytes left at the end of the buffer are read as its last word.

use std::num::NonZeroUsize;

use super::{is_tchar, HeaderFacts, Method, RequestParser, Version, MAX_PATH};

/// The shortest complete head: `A / HTTP/1.1\r\n\r\n`.
const MIN_HEAD: usize = 16;
/// `GET `, as the low half of a little-endian word.
const GET_SP: u32 = u32::from_le_bytes(*b"GET ");
/// `POST `, as the low five bytes of a little-endian word, and the mask of those bytes.
const POST_SP: u64 = u64::from_le_bytes(*b"POST \0\0\0");
const POST_SP_MASK: u64 = 0xff_ffff_ffff;
const HTTP_1_1: u64 = u64::from_le_bytes(*b"HTTP/1.1");
const HTTP_1_0: u64 = u64::from_le_bytes(*b"HTTP/1.0");
const CRLF: u16 = u16::from_le_bytes(*b"\r\n");

impl RequestParser {
    /// Parses a request head that starts at `chunk[start]` and ends, blank line included,
    /// within the chunk and within the head limit; `None` for anything else (see the
    /// module docs), which the byte-at-a-time state machine then handles.
    ///
    /// On success it has stored the path and counted the head in `head_len`, as the state
    /// machine would have; on `None` it has changed nothing the state machine reads (it
    /// may have written into `path` and `facts`, which the state machine fills or resets
    /// before it reads them).
    ///
    /// Written as explicit index arithmetic over one slice: every word read is at most
    /// `len - 8`, which a comparison just before establishes, so the compiler drops the
    /// bounds checks and keeps the whole parse in registers.
    ///
    /// Out of line: `next_event`, inlined where events are pulled, builds the event from
    /// what it returns in registers.
    #[inline(never)]
    pub(super) fn parse_complete_head(&mut self, chunk: &[u8], start: usize) -> Option<(NonZeroUsize, bool)> {
        let buf = chunk.get(start..)?;
        let len = buf.len();
        if len < MIN_HEAD {
            return None;
        }
        // The last index a word can be read from.
        let last = len - 8;

        // Request line: method SP target SP version CRLF.
        let first = word_at(buf, 0);
        let (method, path_start) = if first as u32 == GET_SP {
            (Method::Get, 4)
        } else if first & POST_SP_MASK == POST_SP {
            (Method::Post, 5)
        } else {
            method_token(buf)?
        };
        if path_start > last {
            return None;
        }
        let path_word = word_at(buf, path_start);
        let path_end = match target_stops(path_word) {
            0 => scan(buf, path_start + 8, target_stops),
            stops => path_start + first_flagged(stops),
        };
        let path_len = path_end - path_start;
        if path_len.wrapping_sub(1) >= MAX_PATH {
            return None;
        }
        // SP "HTTP/1.x" CRLF, and the two bytes of the next line.
        if path_end + 13 > len || buf[path_end] != b' ' || u16_at(buf, path_end + 9) != CRLF {
            return None;
        }
        self.version = match word_at(buf, path_end + 1) {
            HTTP_1_1 => Version::Http11,
            HTTP_1_0 => Version::Http10,
            _ => return None,
        };
        if path_len <= 8 {
            // Short path (the common case): the word already read; bytes past the path
            // land beyond `path_len`, where nobody reads them.
            self.path[..8].copy_from_slice(&path_word.to_le_bytes());
        } else {
            self.path[..path_len].copy_from_slice(&buf[path_start..path_end]);
        }
        self.path_len = path_len;
        self.fast_method = method;
        // Whether a header that matters was seen, so `self.facts` holds what it said.
        let mut read_facts = false;

        // Header lines, until the empty line. `next` is the first two bytes of the line at
        // `i`, read when the line before it was checked to have them.
        let mut i = path_end + 11;
        let mut next = u16_at(buf, i);
        loop {
            if next == CRLF {
                let end = i + 2;
                // The state machine fails a head longer than the limit.
                if end > self.max_head.saturating_sub(self.head_len) {
                    return None;
                }
                self.head_len += end;
                return Some((NonZeroUsize::new(start + end)?, read_facts));
            }
            // name ":" OWS value CRLF. The optional whitespace needs no skipping: SP and
            // HTAB are value bytes, and the values read below trim it themselves.
            let (colon, may_matter) = if i <= last && is_host(word_at(buf, i)) {
                // The header every HTTP/1.1 request has, without a scan.
                (i + 4, false)
            } else {
                // Only three header names matter; the length says whether to compare.
                let colon = name_end(buf, i)?;
                (colon, matches!(colon - i, 10 | 14 | 17))
            };
            let cr = value_end(buf, colon + 1)?;
            if may_matter {
                if !read_facts {
                    self.facts = HeaderFacts::NONE;
                    read_facts = true;
                }
                read_header(&mut self.facts, &buf[i..colon], &buf[colon + 1..cr])?;
            }
            i = cr + 2;
            next = u16_at(buf, i);
        }
    }
}

/// Reads a header whose name is as long as one that matters, if it is one; `None`
/// where the state machine would fail (or a `Content-Length` it must judge).
#[inline(never)]
fn read_header(facts: &mut HeaderFacts, name: &[u8], value: &[u8]) -> Option<()> {
    if name_is(name, b"content-length") {
        if !facts.note_content_length(parse_content_length(value)?) {
            return None;
        }
    } else if name_is(name, b"connection") {
        for token in value.split(|&b| matches!(b, b',' | b' ' | b'\t')) {
            if token.eq_ignore_ascii_case(b"close") {
                facts.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                facts.keep_alive = true;
            }
        }
    } else if name_is(name, b"transfer-encoding") {
        return None;
    }
    Some(())
}

/// Whether a header name (`tchar`s only) is `lower` (lower-case letters and '-', 8 to
/// 24 bytes) in any case, a word at a time. Setting bit 5 maps each letter's two cases,
/// and among `tchar`s nothing else, to the lower case; '-' has it set already.
fn name_is(name: &[u8], lower: &[u8]) -> bool {
    let n = lower.len();
    let same = |at: usize| word_at(name, at) | splat(0x20) == word_at(lower, at);
    name.len() == n && (8..=24).contains(&n) && same(0) && same((n - 8).min(8)) && same(n - 8)
}

/// A method other than `GET`/`POST` (or one of them not followed by SP): the method and
/// the index of the target, if `buf` starts with `tchar`s and SP.
#[cold]
fn method_token(buf: &[u8]) -> Option<(Method, usize)> {
    let end = buf.iter().position(|&b| !is_tchar(b))?;
    if end == 0 || buf[end] != b' ' {
        return None;
    }
    let method = match &buf[..end] {
        b"GET" => Method::Get,
        b"POST" => Method::Post,
        _ => Method::Other,
    };
    Some((method, end + 1))
}

/// Index of the ':' ending a header name that starts at `start` (at most `buf.len()`),
/// if the name is one or more `tchar`s followed by ':'.
#[inline(always)]
fn name_end(buf: &[u8], start: usize) -> Option<usize> {
    let mut i = scan(buf, start, name_stops);
    loop {
        match *buf.get(i)? {
            b':' if i > start => return Some(i),
            // A `tchar` other than a letter ('-', a digit, '_'...): step over it.
            b if is_tchar(b) => i = scan(buf, i + 1, name_stops),
            _ => return None,
        }
    }
}

/// Whether the word starts with `Host:`, in any case.
#[inline(always)]
fn is_host(w: u64) -> bool {
    // Setting bit 5 maps exactly the upper and lower case of each letter to the latter.
    (w | 0x20_2020_2020) & 0xff_ffff_ffff == u64::from_le_bytes(*b"host:\0\0\0")
}

/// Index of the CR of the CRLF ending a header value that starts at `start` (at most
/// `buf.len()`), if every byte before it is HTAB, SP, visible ASCII or from 0x80 and two
/// more bytes follow the CRLF, as they do after every header line of a complete head.
#[inline(always)]
fn value_end(buf: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    loop {
        let stop = scan(buf, i, value_stops);
        if stop + 4 > buf.len() {
            return None;
        }
        if u16_at(buf, stop) == CRLF {
            return Some(stop);
        }
        match buf[stop] {
            // Allowed bytes the word scan stops at: HTAB and obs-text.
            b'\t' | 0x80.. => i = stop + 1,
            _ => return None,
        }
    }
}

/// A `Content-Length` value: optional SP/HTAB, digits, optional SP/HTAB.
fn parse_content_length(value: &[u8]) -> Option<u64> {
    // The value holds no byte below 0x20 but HTAB, so ASCII whitespace here is SP/HTAB.
    let value = value.trim_ascii();
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &d| match d {
        b'0'..=b'9' => n.checked_mul(10)?.checked_add(u64::from(d - b'0')),
        _ => None,
    })
}

/// The eight bytes of `bytes` from `at` as a little-endian word; zero where fewer than
/// eight are left, which callers rule out before they read.
#[inline(always)]
fn word_at(bytes: &[u8], at: usize) -> u64 {
    bytes.get(at..).and_then(<[u8]>::first_chunk::<8>).map_or(0, |w| u64::from_le_bytes(*w))
}

/// The two bytes of `bytes` from `at` as a little-endian `u16`; zero where fewer than two
/// are left, which callers rule out before they read.
#[inline(always)]
fn u16_at(bytes: &[u8], at: usize) -> u16 {
    bytes.get(at..).and_then(<[u8]>::first_chunk::<2>).map_or(0, |w| u16::from_le_bytes(*w))
}

/// Every byte's top bit.
const TOP: u64 = 0x8080_8080_8080_8080;

/// `n` in every byte.
const fn splat(n: u8) -> u64 {
    0x0101_0101_0101_0101 * n as u64
}

/// Index of the byte whose top bit is the lowest one set in `flags` (not zero).
#[inline(always)]
fn first_flagged(flags: u64) -> usize {
    (flags.trailing_zeros() / 8) as usize
}

/// Index of the first byte at or after `start` that `stops` flags, or `buf.len()` when
/// none does (callers start at most at `buf.len()`).
#[inline(always)]
fn scan(buf: &[u8], start: usize, stops: impl Fn(u64) -> u64) -> usize {
    let Some(last) = buf.len().checked_sub(8) else {
        return scan_short(buf, start, stops);
    };
    if start > last {
        // Fewer than eight bytes from the start: the last word, shifted so that it starts
        // at `start`, with zero bytes (which every classifier flags) above the end.
        let w = word_at(buf, last).checked_shr(8 * (start - last) as u32).unwrap_or(0);
        return (start + first_flagged(stops(w))).min(buf.len());
    }
    let mut i = start;
    while i <= last {
        let flagged = stops(word_at(buf, i));
        if flagged != 0 {
            return i + first_flagged(flagged);
        }
        i += 8;
    }
    // Fewer than eight bytes left: read the last word of the buffer. Its bytes before `i`
    // were scanned already and stop nothing, so its lowest flag is the first stop.
    match stops(word_at(buf, last)) {
        0 => buf.len(),
        flagged => last + first_flagged(flagged),
    }
}

/// [`scan`] in a buffer shorter than a word.
#[cold]
fn scan_short(buf: &[u8], start: usize, stops: impl Fn(u64) -> u64) -> usize {
    let tail = buf.get(start..).unwrap_or_default();
    // The bytes with zero bytes above, which every classifier flags.
    let w = tail.iter().rev().fold(0, |w, &b| (w << 8) | u64::from(b));
    start + first_flagged(stops(w)).min(tail.len())
}

// The classifiers below set the top bit of each byte that stops a scan. Only the lowest
// flag is exact: a borrow or carry out of a flagged byte may flag the bytes above it,
// which nobody looks at. A byte below every true stop neither borrows nor carries.

/// Flags the bytes that may not appear in a request target: below 0x21 (SP ends it),
/// DEL and everything from 0x80.
#[inline(always)]
fn target_stops(w: u64) -> u64 {
    outside_visible(w, 0x21)
}

/// Flags the bytes a header value does not simply continue with: below 0x20 (CR, LF,
/// other controls, and HTAB, which the caller steps over), DEL, and everything from
/// 0x80 (obs-text, which the caller steps over too).
#[inline(always)]
fn value_stops(w: u64) -> u64 {
    outside_visible(w, 0x20)
}

/// Flags the bytes below `low` (1..=0x7f), DEL and everything from 0x80.
///
/// Less `low`, the bytes below it wrap to the top half; plus one, DEL and 0x80..=0xfe
/// reach it, and 0xff wraps to zero but is caught by the subtraction. A byte in
/// `low..=0x7e` lands below 0x80 both ways, and only a flagged byte borrows or carries.
#[inline(always)]
fn outside_visible(w: u64, low: u8) -> u64 {
    (w.wrapping_sub(splat(low)) | w.wrapping_add(splat(1))) & TOP
}

/// Flags the bytes of a header name that are not ASCII letters (the `tchar`s most
/// names are made of; the caller checks any other byte, '-' included, itself).
///
/// Folding case maps the letters, and only them, onto 0x61..=0x7a; less 0x61 that is
/// 0..=0x19, which neither borrows nor, plus 0x66, carries or reaches the top bit.
#[inline(always)]
fn name_stops(w: u64) -> u64 {
    let from_a = (w | splat(0x20)).wrapping_sub(splat(b'a'));
    (from_a.wrapping_add(splat(0x80 - 26)) | from_a) & TOP
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index of the first stop in one word, computed byte by byte.
    fn first_stop_in_word(bytes: [u8; 8], stops_at: impl Fn(u8) -> bool) -> usize {
        bytes.iter().position(|&b| stops_at(b)).unwrap_or(8)
    }

    fn flagged(stops: u64) -> usize {
        if stops == 0 {
            8
        } else {
            first_flagged(stops)
        }
    }

    fn target_byte_stops(b: u8) -> bool {
        !(0x21..=0x7e).contains(&b)
    }

    fn value_byte_stops(b: u8) -> bool {
        !(0x20..=0x7e).contains(&b)
    }

    fn name_byte_stops(b: u8) -> bool {
        !b.is_ascii_alphabetic()
    }

    #[test]
    fn word_classifiers_find_the_first_stop_of_every_byte_pair() {
        // Two bytes of every value at two positions among bytes that never stop a scan:
        // the lowest flag is the first stopping byte, whatever comes after it.
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                for (pa, pb) in [(0, 1), (2, 5), (6, 7)] {
                    let mut bytes = *b"aaaaaaaa";
                    bytes[pa] = a;
                    bytes[pb] = b;
                    let w = u64::from_le_bytes(bytes);
                    assert_eq!(
                        flagged(target_stops(w)),
                        first_stop_in_word(bytes, target_byte_stops),
                        "target {bytes:?}"
                    );
                    assert_eq!(flagged(value_stops(w)), first_stop_in_word(bytes, value_byte_stops), "value {bytes:?}");
                    assert_eq!(flagged(name_stops(w)), first_stop_in_word(bytes, name_byte_stops), "name {bytes:?}");
                }
            }
        }
    }

    #[test]
    fn every_classifier_stops_at_a_zero_byte() {
        // Words past the end read as zero, which is what ends every scan.
        assert_eq!(flagged(target_stops(0)), 0);
        assert_eq!(flagged(value_stops(0)), 0);
        assert_eq!(flagged(name_stops(0)), 0);
    }

    /// What [`scan`] must answer, byte by byte.
    fn first_stop_bytewise(bytes: &[u8], stops_at: impl Fn(u8) -> bool) -> usize {
        bytes.iter().position(|&b| stops_at(b)).unwrap_or(bytes.len())
    }

    #[test]
    fn scans_agree_with_the_bytes_at_every_length_and_stop() {
        // Up to three words with one stop at each position (or none), after a prefix the
        // scan does not see: covers whole words, the overlapping last word, and inputs
        // shorter than a word.
        for len in 0..=24 {
            for stop_at in 0..=len {
                let mut buf = b"\r\n\r\n\r\n\r\n".to_vec();
                buf.resize(8 + len, b'a');
                if let Some(b) = buf.get_mut(8 + stop_at) {
                    *b = b'\r';
                }
                // From the start of the prefix, and from every position after it.
                for start in 0..=buf.len() {
                    let what = format!("len {len}, stop at {stop_at}, start {start}");
                    let want = |stops_at: fn(u8) -> bool| start + first_stop_bytewise(&buf[start..], stops_at);
                    assert_eq!(scan(&buf, start, value_stops), want(value_byte_stops), "{what}");
                    assert_eq!(scan(&buf, start, target_stops), want(target_byte_stops), "{what}");
                    assert_eq!(scan(&buf, start, name_stops), want(name_byte_stops), "{what}");
                }
                // Buffers shorter than a word.
                let short = &buf[8..(8 + len).min(15)];
                for start in 0..=short.len() {
                    let want = |stops_at: fn(u8) -> bool| start + first_stop_bytewise(&short[start..], stops_at);
                    assert_eq!(scan(short, start, value_stops), want(value_byte_stops), "short {short:?} from {start}");
                    assert_eq!(scan(short, start, name_stops), want(name_byte_stops), "short {short:?} from {start}");
                }
            }
        }
    }

    #[test]
    fn header_values_end_at_crlf() {
        // After a prefix the scan must not look at, as in a head.
        let value = |bytes: &[u8]| value_end(&[&b"\r\n\r\n\r\nX:"[..], bytes].concat(), 8).map(|cr| cr - 8);
        assert_eq!(value(b"a\tb\t\tc\xff\r\n\r\n"), Some(7));
        assert_eq!(value(b"0123456789abcdef\t\x80\r\nXY: z"), Some(18));
        assert_eq!(value(b" x\r\n\r\n"), Some(2));
        assert_eq!(value(b"\r\n\r\n"), Some(0));
        assert_eq!(value(b"a\tb\t\tc\xff\r\nX"), None, "the next line is cut off");
        assert_eq!(value(b"a\tb\t\tc\xff\r"), None, "no LF yet");
        assert_eq!(value(b"a\x7f\r\n\r\n"), None);
        assert_eq!(value(b"a\nb\r\n\r\n"), None);
        assert_eq!(value(b"a\rb\r\n\r\n"), None);
    }

    #[test]
    fn long_names_compare_in_any_case() {
        for name in [&b"content-length"[..], b"connection", b"transfer-encoding"] {
            let upper = name.to_ascii_uppercase();
            assert!(name_is(name, name) && name_is(&upper, name), "{}", String::from_utf8_lossy(name));
            for at in 0..name.len() {
                let mut other = name.to_vec();
                other[at] ^= 0x01;
                assert!(!name_is(&other, name), "{}", String::from_utf8_lossy(&other));
            }
            assert!(!name_is(&name[1..], name) && !name_is(&[name, b"s"].concat(), name));
        }
    }

    #[test]
    fn host_is_recognised_in_any_case_and_nothing_else_is() {
        for yes in [&b"Host: x\r\n"[..], b"host:xyz", b"HOST:   ", b"hOsT:\r\n\r\n"] {
            assert!(is_host(u64::from_le_bytes(*yes.first_chunk().unwrap())), "{}", String::from_utf8_lossy(yes));
        }
        for no in [&b"Hos: xyz"[..], b"Hostx: y", b"Host : y", b"(ost: xy", b"H\x0fst: xy", b"Hos\x14: xy"] {
            assert!(!is_host(u64::from_le_bytes(*no.first_chunk().unwrap())), "{}", String::from_utf8_lossy(no));
        }
        // Exhaustively: only the two cases of each letter pass.
        for at in 0..4 {
            for b in 0..=255u8 {
                let mut w = *b"Host: xy";
                w[at] = b;
                assert_eq!(is_host(u64::from_le_bytes(w)), b.eq_ignore_ascii_case(&b"host"[at]), "{b:#x} at {at}");
            }
        }
    }

    #[test]
    fn names_end_at_their_colon() {
        let name = |line: &[u8]| name_end(&[&b"\r\n\r\n\r\n\r\n"[..], line].concat(), 8).map(|colon| colon - 8);
        assert_eq!(name(b"Host: x"), Some(4));
        let long = b"X!#$%&'*+.^_`|~-Long-Name-9: v";
        assert_eq!(name(long), Some(27));
        for bad in [&b": v"[..], b"Ho st: x", b"Host", b"Ho\"st: x", b"Ho\xffst: x", b"Host\r\n", b"Ho-"] {
            assert_eq!(name(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn content_length_values() {
        assert_eq!(parse_content_length(b" \t42\t "), Some(42));
        assert_eq!(parse_content_length(b"18446744073709551615"), Some(u64::MAX));
        for bad in [&b""[..], b"  ", b"18446744073709551616", b"4 2", b"+1", b"0x1", b"1\xff"] {
            assert_eq!(parse_content_length(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
