//! phttpd's response bytes.
//!
//! Owns the exact bytes the phttpd example sends: the `200 OK` header of PASTE's
//! phttpd (`HTTP/1.1 200 OK`, `Connection: keep-alive`, `Server: Apache/2.2.800`,
//! `Content-Length: N`), the body pattern, a prebuilt [`ResponseTemplate`], and the
//! fixed error responses. It writes into caller buffers and never allocates, except
//! once in [`ResponseTemplate::new`].
//!
//! phttpd itself sends whatever the TX buffer held as body; we send a fixed, checkable
//! pattern instead: byte `i` of every body is `BODY_PATTERN[i % 64]`, so a 64-byte body
//! is [`BODY_PATTERN`] exactly.

use std::fmt;

/// The body pattern: body byte `i` is `BODY_PATTERN[i % BODY_PATTERN.len()]`.
pub const BODY_PATTERN: &[u8; 64] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_";

/// The `400 Bad Request` response: empty body, connection closed after it.
pub const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

/// The `408 Request Timeout` response (a request head or body did not arrive in
/// time): empty body, connection closed after it.
pub const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

/// The `404 Not Found` response: empty body, connection kept open.
pub const NOT_FOUND: &[u8] =
    b"HTTP/1.1 404 Not Found\r\nConnection: keep-alive\r\nServer: Apache/2.2.800\r\nContent-Length: 0\r\n\r\n";

/// Everything of the `200 OK` header before the Content-Length digits (81 bytes).
const OK_PREFIX: &[u8] = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nServer: Apache/2.2.800\r\nContent-Length: ";
/// Ends the Content-Length line and the header.
const HEADER_END: &[u8] = b"\r\n\r\n";

/// Body byte at offset `i`.
pub fn body_byte(i: usize) -> u8 {
    BODY_PATTERN[i % BODY_PATTERN.len()]
}

/// Fills `out` with the body pattern, as bytes `offset..offset + out.len()` of a body.
pub fn fill_body(out: &mut [u8], offset: usize) {
    for (i, b) in out.iter_mut().enumerate() {
        *b = body_byte(offset + i);
    }
}

/// Whether `bytes` are bytes `offset..offset + bytes.len()` of a pattern body (for
/// clients checking responses that arrive in pieces).
pub fn is_pattern_body(bytes: &[u8], offset: usize) -> bool {
    bytes.iter().enumerate().all(|(i, &b)| b == body_byte(offset + i))
}

/// Length of the `200 OK` header for a body of `body_len` bytes (87 for 64).
pub fn ok_header_len(body_len: usize) -> usize {
    OK_PREFIX.len() + decimal_len(body_len as u64) + HEADER_END.len()
}

/// Length of the whole `200 OK` response for a body of `body_len` bytes (151 for 64).
pub fn ok_response_len(body_len: usize) -> usize {
    ok_header_len(body_len) + body_len
}

/// Writes the `200 OK` header announcing `body_len` body bytes; returns its length.
///
/// # Panics
/// If `out` is shorter than [`ok_header_len`]`(body_len)`.
pub fn write_ok_header(body_len: usize, out: &mut [u8]) -> usize {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(body_len as u64).as_bytes();
    let mut n = put(out, 0, OK_PREFIX);
    n = put(out, n, digits);
    put(out, n, HEADER_END)
}

/// Writes the phttpd response: the `200 OK` header and `body_len` bytes of the body
/// pattern. Returns the number of bytes written ([`ok_response_len`]).
///
/// # Panics
/// If `out` is shorter than [`ok_response_len`]`(body_len)`.
pub fn write_ok_response(body_len: usize, out: &mut [u8]) -> usize {
    let n = write_ok_header(body_len, out);
    fill_body(&mut out[n..n + body_len], 0);
    n + body_len
}

/// Writes a `200 OK` response carrying `body` (for example a record read back from a
/// log). Returns the number of bytes written.
///
/// # Panics
/// If `out` is shorter than [`ok_response_len`]`(body.len())`.
pub fn write_ok_response_with_body(body: &[u8], out: &mut [u8]) -> usize {
    let n = write_ok_header(body.len(), out);
    put(out, n, body)
}

/// A `200 OK` response built once and sent many times (phttpd's `-c` option).
#[derive(Clone, PartialEq, Eq)]
pub struct ResponseTemplate {
    bytes: Box<[u8]>,
    header_len: usize,
}

impl ResponseTemplate {
    /// Builds the response for a pattern body of `body_len` bytes.
    pub fn new(body_len: usize) -> Self {
        let mut bytes = vec![0u8; ok_response_len(body_len)].into_boxed_slice();
        let written = write_ok_response(body_len, &mut bytes);
        debug_assert_eq!(written, bytes.len());
        ResponseTemplate { bytes, header_len: ok_header_len(body_len) }
    }

    /// The whole response, header and body.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Length of the header part.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// Length of the body part.
    pub fn body_len(&self) -> usize {
        self.bytes.len() - self.header_len
    }
}

impl fmt::Debug for ResponseTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseTemplate")
            .field("len", &self.bytes.len())
            .field("header_len", &self.header_len)
            .finish()
    }
}

/// Copies `bytes` into `out` at `at`; returns the position after them.
fn put(out: &mut [u8], at: usize, bytes: &[u8]) -> usize {
    out[at..at + bytes.len()].copy_from_slice(bytes);
    at + bytes.len()
}

/// Number of decimal digits of `n`.
fn decimal_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_lengths() {
        for n in [0u64, 7, 10, 99, 100, 12345, u64::MAX] {
            assert_eq!(decimal_len(n), n.to_string().len());
        }
    }

    #[test]
    fn phttpd_response_for_64_bytes_is_151_bytes() {
        let mut out = [0u8; 256];
        let n = write_ok_response(64, &mut out);
        assert_eq!(n, 151);
        assert_eq!(ok_header_len(64), 87);
        assert_eq!(ok_response_len(64), 151);
        let mut expected =
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nServer: Apache/2.2.800\r\nContent-Length: 64\r\n\r\n"
                .to_vec();
        assert_eq!(expected.len(), 87);
        expected.extend_from_slice(BODY_PATTERN);
        assert_eq!(&out[..n], &expected[..]);
    }

    #[test]
    fn template_matches_direct_write() {
        for len in [0usize, 1, 9, 10, 64, 65, 1000, 4096] {
            let t = ResponseTemplate::new(len);
            let mut out = vec![0u8; ok_response_len(len)];
            assert_eq!(write_ok_response(len, &mut out), out.len());
            assert_eq!(t.as_bytes(), &out[..]);
            assert_eq!(t.header_len() + t.body_len(), out.len());
            assert_eq!(t.body_len(), len);
            let header = std::str::from_utf8(&out[..t.header_len()]).unwrap();
            assert!(header.ends_with(&format!("Content-Length: {len}\r\n\r\n")));
            assert!(is_pattern_body(&out[t.header_len()..], 0));
        }
    }

    #[test]
    fn arbitrary_body() {
        let mut out = [0u8; 128];
        let n = write_ok_response_with_body(b"record-7", &mut out);
        assert_eq!(
            &out[..n],
            &b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nServer: Apache/2.2.800\r\nContent-Length: 8\r\n\r\nrecord-7"[..]
        );
    }

    #[test]
    fn pattern_checks_offsets() {
        let mut body = [0u8; 100];
        fill_body(&mut body, 0);
        assert!(is_pattern_body(&body, 0));
        assert!(is_pattern_body(&body[70..], 70));
        assert!(!is_pattern_body(&body[70..], 71));
        body[99] ^= 1;
        assert!(!is_pattern_body(&body, 0));
    }

    #[test]
    fn fixed_responses() {
        assert_eq!(BAD_REQUEST, b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        assert!(NOT_FOUND.starts_with(b"HTTP/1.1 404 Not Found\r\n"));
        assert!(NOT_FOUND.ends_with(b"Content-Length: 0\r\n\r\n"));
    }
}
