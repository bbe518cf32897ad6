//! Request bytes a phttpd client sends.
//!
//! Owns the request shapes of the rpc and wal workloads, for load generators and
//! tests. Writes into caller buffers; never allocates, never does I/O.

/// wrk's default request to `127.0.0.1:60000` (41 bytes).
pub const WRK_GET_LOCAL: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:60000\r\n\r\n";

/// wrk's default request with an 18-character `host:port`, as in the PASTE paper's
/// setup (`192.168.11.3:60000`): the paper's 44-byte RPC request.
pub const WRK_GET_PAPER: &[u8] = b"GET / HTTP/1.1\r\nHost: 192.168.11.3:60000\r\n\r\n";

/// Length of the request written by [`write_get_request`].
pub const fn get_request_len(path_len: usize, host_len: usize) -> usize {
    // "GET " path " HTTP/1.1\r\n" "Host: " host "\r\n" "\r\n"
    4 + path_len + 11 + 6 + host_len + 2 + 2
}

/// Writes wrk's request shape, `GET <path> HTTP/1.1\r\nHost: <host>\r\n\r\n`; returns
/// its length.
///
/// # Panics
/// If `out` is shorter than [`get_request_len`].
pub fn write_get_request(path: &[u8], host: &[u8], out: &mut [u8]) -> usize {
    let mut n = put(out, 0, b"GET ");
    n = put(out, n, path);
    n = put(out, n, b" HTTP/1.1\r\nHost: ");
    n = put(out, n, host);
    put(out, n, b"\r\n\r\n")
}

/// Length of the request written by [`write_post_request`].
pub fn post_request_len(path_len: usize, host_len: usize, body_len: usize) -> usize {
    // "POST " path " HTTP/1.1\r\n" "Host: " host "\r\n" "Content-Length: " N "\r\n\r\n" body
    let mut digits = itoa::Buffer::new();
    5 + path_len + 11 + 6 + host_len + 2 + 16 + digits.format(body_len as u64).len() + 4 + body_len
}

/// Writes `POST <path> HTTP/1.1\r\nHost: <host>\r\nContent-Length: N\r\n\r\n<body>`
/// (the wal workload's request); returns its length.
///
/// # Panics
/// If `out` is shorter than [`post_request_len`].
pub fn write_post_request(path: &[u8], host: &[u8], body: &[u8], out: &mut [u8]) -> usize {
    let mut digits = itoa::Buffer::new();
    let mut n = put(out, 0, b"POST ");
    n = put(out, n, path);
    n = put(out, n, b" HTTP/1.1\r\nHost: ");
    n = put(out, n, host);
    n = put(out, n, b"\r\nContent-Length: ");
    n = put(out, n, digits.format(body.len() as u64).as_bytes());
    n = put(out, n, b"\r\n\r\n");
    put(out, n, body)
}

fn put(out: &mut [u8], at: usize, bytes: &[u8]) -> usize {
    out[at..at + bytes.len()].copy_from_slice(bytes);
    at + bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Event, Method, RequestParser};

    #[test]
    fn wrk_requests() {
        assert_eq!(WRK_GET_PAPER.len(), 44);
        assert_eq!(WRK_GET_LOCAL.len(), 41);
        let mut out = [0u8; 64];
        let n = write_get_request(b"/", b"192.168.11.3:60000", &mut out);
        assert_eq!(&out[..n], WRK_GET_PAPER);
        assert_eq!(get_request_len(1, 18), 44);
        let n = write_get_request(b"/", b"127.0.0.1:60000", &mut out);
        assert_eq!(&out[..n], WRK_GET_LOCAL);
    }

    #[test]
    fn post_request_round_trips_through_the_parser() {
        let body = [b'k'; 1024];
        let mut out = vec![0u8; post_request_len(1, 18, body.len())];
        let n = write_post_request(b"/", b"192.168.11.3:60000", &body, &mut out);
        assert_eq!(n, out.len());
        assert_eq!(n, 1024 + 67);
        let mut got = (None, 0, false);
        RequestParser::new().feed(&out, |e| match e {
            Event::Head(h) => got.0 = Some((h.method, h.content_length)),
            Event::Body(r) => got.1 += r.len(),
            Event::End => got.2 = true,
            Event::Error(e) => panic!("{e}"),
        });
        assert_eq!(got, (Some((Method::Post, 1024)), 1024, true));
    }
}
