//! The PASTE paper's phttpd protocol: HTTP/1.x requests in, fixed-shape responses out.
//!
//! Owns the pure protocol logic of the phttpd and wal examples: an incremental request
//! parser ([`RequestParser`]) that works over received chunks as they arrive, the exact
//! phttpd response bytes ([`write_ok_response`], [`ResponseTemplate`]) and the request
//! bytes a client sends ([`WRK_GET_PAPER`], [`write_get_request`]).
//!
//! It must never do I/O, never need a request to be contiguous in memory, and never
//! allocate per request: the parser keeps its whole state in fixed-size fields, body
//! bytes are reported as ranges of the caller's chunk (so a write-ahead log can persist
//! them where they were received), and responses are written into caller buffers.
//!
//! ```
//! use paste_rt_examples::http::{Event, RequestParser, ResponseTemplate, WRK_GET_PAPER};
//!
//! let response = ResponseTemplate::new(64);
//! let mut parser = RequestParser::new();
//! let mut out = Vec::new();
//! // The request arrives in two pieces, split inside "HTTP/1.1".
//! let (a, b) = WRK_GET_PAPER.split_at(10);
//! for chunk in [a, b] {
//!     parser.feed(chunk, |event| {
//!         if let Event::End = event {
//!             out.extend_from_slice(response.as_bytes());
//!         }
//!     });
//! }
//! assert_eq!(out.len(), 151);
//! ```

mod client;
mod request;
mod response;

pub use client::{
    get_request_len, post_request_len, write_get_request, write_post_request, WRK_GET_LOCAL, WRK_GET_PAPER,
};
pub use request::{Event, Head, HttpError, Method, RequestParser, Version, DEFAULT_MAX_HEAD, MAX_PATH};
pub use response::{
    body_byte, fill_body, is_pattern_body, ok_header_len, ok_response_len, write_ok_header, write_ok_response,
    write_ok_response_with_body, ResponseTemplate, BAD_REQUEST, BODY_PATTERN, NOT_FOUND, REQUEST_TIMEOUT,
};
