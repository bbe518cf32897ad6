//! The HTTP request parser (`paste_rt_examples::http::RequestParser`): the byte
//! stream is cut into chunks where the fuzzer says; the events must be the same as
//! when the stream is fed whole (heads field by field, each request's body bytes,
//! ends, and the first error), body ranges must lie in their chunk, and the parser
//! must make progress on every call. This also compares the parser's one-pass path
//! for whole heads with its byte-at-a-time path for split ones.

use paste_rt_examples::http::{Event, HttpError, Method, RequestParser, Version};

use super::input::chunks;

/// One parser event, owned, with the bodies of a request merged.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Head { method: Method, path: Vec<u8>, version: Version, content_length: u64, keep_alive: bool },
    Body(Vec<u8>),
    End,
    Error(HttpError),
}

/// Everything the parser reports for `chunks`, in order, up to its first error.
fn parse(chunks: &[&[u8]]) -> Vec<Seen> {
    let mut parser = RequestParser::new();
    let mut seen: Vec<Seen> = Vec::new();
    for chunk in chunks {
        let mut pos = 0;
        let mut calls = 0;
        loop {
            let before = pos;
            let Some(event) = parser.next_event(chunk, &mut pos) else { break };
            assert!(
                pos >= before && pos <= chunk.len(),
                "position moved from {before} to {pos} in a {}-byte chunk",
                chunk.len()
            );
            calls += 1;
            assert!(calls <= 2 * chunk.len() + 2, "no progress: {calls} events from a {}-byte chunk", chunk.len());
            match event {
                Event::Head(h) => seen.push(Seen::Head {
                    method: h.method,
                    path: h.path.to_vec(),
                    version: h.version,
                    content_length: h.content_length,
                    keep_alive: h.keep_alive,
                }),
                Event::Body(range) => {
                    assert!(!range.is_empty() && range.end <= chunk.len(), "body range {range:?} outside the chunk");
                    match seen.last_mut() {
                        Some(Seen::Body(b)) => b.extend_from_slice(&chunk[range]),
                        _ => seen.push(Seen::Body(chunk[range].to_vec())),
                    }
                }
                Event::End => seen.push(Seen::End),
                Event::Error(e) => {
                    assert_eq!(parser.error(), Some(e), "error() disagrees with the event");
                    seen.push(Seen::Error(e));
                    return seen;
                }
            }
        }
        assert_eq!(pos, chunk.len(), "the chunk was not consumed");
    }
    seen
}

/// Checks the parser on the stream and cuts encoded in `data` (see the module docs).
pub fn run(data: &[u8]) {
    let (stream, split) = chunks(data);
    let whole = parse(&[stream]);
    let pieces = parse(&split);
    assert_eq!(
        pieces,
        whole,
        "split at {:?} the parser saw other events",
        split.iter().map(|c| c.len()).collect::<Vec<_>>()
    );
    // Byte by byte too, for short streams.
    if stream.len() <= 512 {
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(parse(&bytes), whole, "byte by byte the parser saw other events");
    }
    // Every head is followed by exactly `content_length` body bytes before its end.
    let mut expect: Option<u64> = None;
    for s in &whole {
        match s {
            Seen::Head { content_length, .. } => expect = Some(*content_length),
            Seen::Body(b) => *expect.as_mut().expect("body before a head") -= b.len() as u64,
            Seen::End => assert_eq!(expect.take(), Some(0), "a request ended before its body"),
            Seen::Error(_) => {}
        }
    }
}
