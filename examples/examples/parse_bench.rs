//! Instruction-count bench for the request parser: run under callgrind and divide.
//!
//! `valgrind --tool=callgrind target/release/examples/parse_bench get 100000` feeds the
//! 44-byte wrk GET (one request per chunk, as a server receives it) N times; `post`
//! feeds a POST with a 1 KiB body instead. Compare against N = 0 to subtract start-up:
//! instructions per request = (Ir(N) - Ir(0)) / N. It measures nothing by itself.

use std::hint::black_box;

use paste_rt_examples::http::{self, Event, RequestParser};

/// Parses `chunk` `n` times as one request per receive; returns (heads, body bytes, ends).
#[inline(never)]
fn run(parser: &mut RequestParser, chunk: &[u8], n: usize) -> (usize, usize, usize) {
    let (mut heads, mut body, mut ends) = (0, 0, 0);
    for _ in 0..n {
        let chunk = black_box(chunk);
        let mut pos = 0;
        while let Some(event) = parser.next_event(chunk, &mut pos) {
            match event {
                Event::Head(h) => {
                    black_box(h);
                    heads += 1;
                }
                Event::Body(range) => body += range.len(),
                Event::End => ends += 1,
                Event::Error(e) => panic!("{e}"),
            }
        }
    }
    (heads, body, ends)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "get".into());
    let n: usize = args.next().map_or(100_000, |s| s.parse().expect("N must be a number"));
    let chunk = match kind.as_str() {
        "get" => b"GET / HTTP/1.1\r\nHost: 192.168.11.3:60000\r\n\r\n".to_vec(),
        "post" => {
            let body = vec![b'w'; 1024];
            let mut post = vec![0u8; http::post_request_len(4, 18, body.len())];
            http::write_post_request(b"/wal", b"192.168.11.3:60000", &body, &mut post);
            post
        }
        other => panic!("unknown request kind {other:?} (get | post)"),
    };
    let mut parser = RequestParser::new();
    let (heads, body, ends) = run(&mut parser, &chunk, n);
    assert_eq!((heads, ends), (n, n));
    println!("{kind}: {n} requests, {} bytes each, {body} body bytes", chunk.len());
}
