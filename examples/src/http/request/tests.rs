//! Tests of the request parser: the state machine, the whole-head fast path, and that
//! the two agree.

use proptest::prelude::*;

use super::*;

/// An event with the body bytes resolved, so runs with different splits compare equal.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    Head { method: Method, path: Vec<u8>, version: Version, content_length: u64, keep_alive: bool },
    Body(Vec<u8>),
    End,
    Error(HttpError),
}

/// Feeds `chunks` in order and returns the events, adjacent body pieces merged.
fn run_chunks(parser: &mut RequestParser, chunks: &[&[u8]]) -> Vec<Owned> {
    let mut events: Vec<Owned> = Vec::new();
    for chunk in chunks {
        parser.feed(chunk, |event| {
            let owned = match event {
                Event::Head(h) => Owned::Head {
                    method: h.method,
                    path: h.path.to_vec(),
                    version: h.version,
                    content_length: h.content_length,
                    keep_alive: h.keep_alive,
                },
                Event::Body(range) => {
                    assert!(!range.is_empty(), "empty body range");
                    if let Some(Owned::Body(bytes)) = events.last_mut() {
                        bytes.extend_from_slice(&chunk[range]);
                        return;
                    }
                    Owned::Body(chunk[range].to_vec())
                }
                Event::End => Owned::End,
                Event::Error(e) => Owned::Error(e),
            };
            events.push(owned);
        });
    }
    events
}

fn run(input: &[u8]) -> Vec<Owned> {
    run_chunks(&mut RequestParser::new(), &[input])
}

fn head(method: Method, path: &[u8], content_length: u64, keep_alive: bool) -> Owned {
    Owned::Head { method, path: path.to_vec(), version: Version::Http11, content_length, keep_alive }
}

fn first_error(input: &[u8]) -> Option<HttpError> {
    run(input).into_iter().find_map(|e| match e {
        Owned::Error(e) => Some(e),
        _ => None,
    })
}

const WRK_GET: &[u8] = b"GET / HTTP/1.1\r\nHost: 192.168.11.3:60000\r\n\r\n";

#[test]
fn wrk_get_is_one_keep_alive_request() {
    assert_eq!(WRK_GET.len(), 44);
    assert_eq!(run(WRK_GET), vec![head(Method::Get, b"/", 0, true), Owned::End]);
}

#[test]
fn post_reports_body_as_ranges_of_the_chunk() {
    let req = b"POST /wal HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
    let mut parser = RequestParser::new();
    let mut events = Vec::new();
    let mut pos = 0;
    while let Some(e) = parser.next_event(req, &mut pos) {
        events.push(format!("{e:?}"));
    }
    let body_start = req.len() - 5;
    assert_eq!(
        events,
        vec![
            format!(
                "{:?}",
                Event::Head(Head {
                    method: Method::Post,
                    path: b"/wal",
                    version: Version::Http11,
                    content_length: 5,
                    keep_alive: true
                })
            ),
            format!("{:?}", Event::Body(body_start..req.len())),
            format!("{:?}", Event::End),
        ]
    );
    assert_eq!(pos, req.len());
    assert!(parser.is_idle());
}

#[test]
fn pipelined_requests_in_one_chunk() {
    let mut input = Vec::new();
    input.extend_from_slice(WRK_GET);
    input.extend_from_slice(b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz");
    input.extend_from_slice(b"PUT /b HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
    input.extend_from_slice(WRK_GET);
    assert_eq!(
        run(&input),
        vec![
            head(Method::Get, b"/", 0, true),
            Owned::End,
            head(Method::Post, b"/a", 3, true),
            Owned::Body(b"xyz".to_vec()),
            Owned::End,
            head(Method::Other, b"/b", 0, true),
            Owned::End,
            head(Method::Get, b"/", 0, true),
            Owned::End,
        ]
    );
}

/// A stream exercising every state, including bodies and leading blank lines.
fn mixed_stream() -> Vec<u8> {
    let mut input = Vec::new();
    input.extend_from_slice(WRK_GET);
    input.extend_from_slice(b"POST /wal/1 HTTP/1.1\r\nHost: x\r\nCONTENT-LENGTH:  12 \r\nX-A:\t v \r\n\r\n");
    input.extend_from_slice(b"0123456789\r\n");
    input.extend_from_slice(b"\r\nGET /x HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    input.extend_from_slice(b"GET /y HTTP/1.1\r\nConnection: foo, close\r\n\r\n");
    input.extend_from_slice(b"POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nZ");
    input
}

fn mixed_expected() -> Vec<Owned> {
    vec![
        head(Method::Get, b"/", 0, true),
        Owned::End,
        head(Method::Post, b"/wal/1", 12, true),
        Owned::Body(b"0123456789\r\n".to_vec()),
        Owned::End,
        Owned::Head {
            method: Method::Get,
            path: b"/x".to_vec(),
            version: Version::Http10,
            content_length: 0,
            keep_alive: true,
        },
        Owned::End,
        head(Method::Get, b"/y", 0, false),
        Owned::End,
        head(Method::Post, b"/", 1, true),
        Owned::Body(b"Z".to_vec()),
        Owned::End,
    ]
}

#[test]
fn mixed_stream_unsplit() {
    assert_eq!(run(&mixed_stream()), mixed_expected());
}

#[test]
fn every_single_split_point_gives_the_same_events() {
    let input = mixed_stream();
    let expected = mixed_expected();
    for split in 0..=input.len() {
        let (a, b) = input.split_at(split);
        let events = run_chunks(&mut RequestParser::new(), &[a, b]);
        assert_eq!(events, expected, "split at {split}");
    }
}

#[test]
fn every_pair_of_split_points_gives_the_same_events() {
    // Three chunks: catches state carried across an empty middle chunk, too.
    let input = mixed_stream();
    let expected = mixed_expected();
    for i in 0..=input.len() {
        for j in (i..=input.len()).step_by(7) {
            let events = run_chunks(&mut RequestParser::new(), &[&input[..i], &input[i..j], &input[j..]]);
            assert_eq!(events, expected, "splits at {i} and {j}");
        }
    }
}

#[test]
fn byte_at_a_time_gives_the_same_events() {
    let input = mixed_stream();
    let chunks: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(run_chunks(&mut RequestParser::new(), &chunks), mixed_expected());
}

#[test]
fn keep_alive_defaults_and_overrides() {
    let cases: &[(&[u8], bool)] = &[
        (b"GET / HTTP/1.1\r\n\r\n", true),
        (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false),
        (b"GET / HTTP/1.1\r\nConnection: CLOSE\r\n\r\n", false),
        (b"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n", true),
        (b"GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n", false),
        (b"GET / HTTP/1.1\r\nConnection: closed\r\n\r\n", true),
        (b"GET / HTTP/1.0\r\n\r\n", false),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
        (b"GET / HTTP/1.0\r\nconnection:upgrade,keep-alive\r\n\r\n", true),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", false),
        (b"GET / HTTP/1.0\r\nX-Connection: keep-alive\r\n\r\n", false),
    ];
    for (input, keep_alive) in cases {
        match &run(input)[..] {
            [Owned::Head { keep_alive: k, .. }, Owned::End] => {
                assert_eq!(k, keep_alive, "{}", String::from_utf8_lossy(input))
            }
            other => panic!("{}: {other:?}", String::from_utf8_lossy(input)),
        }
    }
}

#[test]
fn content_length_forms() {
    let ok: &[(&[u8], u64)] = &[
        (b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 0),
        (b"POST / HTTP/1.1\r\ncOnTeNt-LeNgTh:2\r\n\r\nab", 2),
        (b"POST / HTTP/1.1\r\nContent-Length: 007\r\n\r\n1234567", 7),
        (b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab", 2),
        (b"POST / HTTP/1.1\r\nContent-Length-X: 9\r\n\r\n", 0),
    ];
    for (input, len) in ok {
        match &run(input)[..] {
            [Owned::Head { content_length, .. }, rest @ ..] => {
                assert_eq!(content_length, len);
                assert_eq!(rest.last(), Some(&Owned::End));
            }
            other => panic!("{other:?}"),
        }
    }
    let max = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", u64::MAX);
    assert!(matches!(&run(max.as_bytes())[..], [Owned::Head { content_length: u64::MAX, .. }]));
}

#[test]
fn bad_content_lengths_are_errors() {
    let bad: &[&[u8]] = &[
        b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1,1\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ];
    for input in bad {
        assert_eq!(first_error(input), Some(HttpError::BadContentLength), "{}", String::from_utf8_lossy(input));
    }
}

#[test]
fn malformed_inputs_are_errors() {
    use HttpError::*;
    let cases: &[(&[u8], HttpError)] = &[
        (b"\x00\x01\x02garbage", MalformedRequestLine),
        (b"GET / HTTP/1.1\n\n", MalformedRequestLine),
        (b"GET / HTTP/1.1\r\nHost: x\n\r\n", MalformedHeader),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\n", MalformedHeader),
        (b"GET / HTTP/1.1\r\nHost: x\rX\r\n\r\n", MalformedHeader),
        (b"GET  / HTTP/1.1\r\n\r\n", MalformedRequestLine),
        (b"GET /  HTTP/1.1\r\n\r\n", MalformedRequestLine),
        (b"GET /\r\n\r\n", MalformedRequestLine),
        (b" GET / HTTP/1.1\r\n\r\n", MalformedRequestLine),
        (b"GET / HTTP/1.1 \r\n\r\n", MalformedRequestLine),
        (b"GET / HTTP/1.10\r\n\r\n", MalformedRequestLine),
        (b"GET / http/1.1\r\n\r\n", MalformedRequestLine),
        (b"GET / HTTP/2.0\r\n\r\n", UnsupportedVersion),
        (b"GET / HTTP/1.1\r\n: v\r\n\r\n", MalformedHeader),
        (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", MalformedHeader),
        (b"GET / HTTP/1.1\r\nHost\r\n\r\n", MalformedHeader),
        (b"GET / HTTP/1.1\r\nA: b\r\n  folded\r\n\r\n", MalformedHeader),
        (b"GET / HTTP/1.1\r\nA: b\x01c\r\n\r\n", MalformedHeader),
        (b"GET /\xff HTTP/1.1\r\n\r\n", MalformedRequestLine),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", TransferEncodingUnsupported),
        (b"POST / HTTP/1.1\r\ntransfer-encoding: identity\r\n\r\n", TransferEncodingUnsupported),
    ];
    for (input, error) in cases {
        assert_eq!(first_error(input), Some(*error), "{}", String::from_utf8_lossy(input));
    }
}

#[test]
fn path_limit() {
    let mut ok = b"GET /".to_vec();
    ok.resize(4 + MAX_PATH, b'a');
    ok.extend_from_slice(b" HTTP/1.1\r\n\r\n");
    assert!(matches!(&run(&ok)[..], [Owned::Head { path, .. }, Owned::End] if path.len() == MAX_PATH));
    let mut long = b"GET /".to_vec();
    long.resize(5 + MAX_PATH, b'a');
    long.extend_from_slice(b" HTTP/1.1\r\n\r\n");
    assert_eq!(first_error(&long), Some(HttpError::UriTooLong));
    assert_eq!(HttpError::UriTooLong.status(), 414);
}

#[test]
fn head_limit() {
    let mut input = b"GET / HTTP/1.1\r\n".to_vec();
    while input.len() < DEFAULT_MAX_HEAD {
        input.extend_from_slice(b"X-Filler: 0123456789012345678901234567890123456789\r\n");
    }
    input.extend_from_slice(b"\r\n");
    assert_eq!(first_error(&input), Some(HttpError::HeadTooLarge));
    // Exactly at the limit is accepted.
    let exact = b"GET / HTTP/1.1\r\nA: bc\r\n\r\n";
    let events = run_chunks(&mut RequestParser::with_max_head(exact.len()), &[exact]);
    assert_eq!(events, vec![head(Method::Get, b"/", 0, true), Owned::End]);
    let events = run_chunks(&mut RequestParser::with_max_head(exact.len() - 1), &[exact]);
    assert_eq!(events, vec![Owned::Error(HttpError::HeadTooLarge)]);
    // An endless header line is cut off at the limit, whatever the split.
    let mut parser = RequestParser::new();
    let filler = [b'a'; 1000];
    let mut errors = 0;
    parser.feed(b"GET / HTTP/1.1\r\nX: ", |_| {});
    for _ in 0..20 {
        parser.feed(&filler, |e| {
            assert_eq!(e, Event::Error(HttpError::HeadTooLarge));
            errors += 1;
        });
    }
    assert_eq!(errors, 12, "reported once per chunk fed after failing");
}

#[test]
fn error_is_terminal_and_valid_input_after_it_is_refused() {
    let mut parser = RequestParser::new();
    let events = run_chunks(&mut parser, &[b"BAD\x01", WRK_GET, b""]);
    assert_eq!(events, vec![Owned::Error(HttpError::MalformedRequestLine); 2]);
    assert_eq!(parser.error(), Some(HttpError::MalformedRequestLine));
    assert!(!parser.is_idle());
}

#[test]
fn error_responses_close_the_connection() {
    for e in [
        HttpError::MalformedRequestLine,
        HttpError::UnsupportedVersion,
        HttpError::UriTooLong,
        HttpError::MalformedHeader,
        HttpError::BadContentLength,
        HttpError::HeadTooLarge,
        HttpError::TransferEncodingUnsupported,
    ] {
        let r = e.response();
        let status = format!("HTTP/1.1 {} ", e.status());
        assert!(r.starts_with(status.as_bytes()), "{e}");
        assert!(r.ends_with(b"\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"), "{e}");
        assert!(e.to_string().contains(&e.status().to_string()));
    }
}

#[test]
fn idle_only_between_requests() {
    let mut parser = RequestParser::new();
    assert!(parser.is_idle());
    parser.feed(b"GET / HT", |_| {});
    assert!(!parser.is_idle());
    parser.feed(b"TP/1.1\r\n\r\n", |_| {});
    assert!(parser.is_idle());
    parser.feed(b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\na", |_| {});
    assert!(!parser.is_idle());
    parser.feed(b"b", |_| {});
    assert!(parser.is_idle());
}

#[test]
fn large_body_across_many_chunks() {
    let mut parser = RequestParser::new();
    let mut events = run_chunks(&mut parser, &[b"POST / HTTP/1.1\r\nContent-Length: 100000\r\n\r\n"]);
    let piece = [7u8; 2048];
    let mut sent = 0;
    while sent < 100_000 {
        let n = piece.len().min(100_000 - sent);
        events.extend(run_chunks(&mut parser, &[&piece[..n]]));
        sent += n;
    }
    let body: usize = events.iter().map(|e| if let Owned::Body(b) = e { b.len() } else { 0 }).sum();
    assert_eq!(body, 100_000);
    assert_eq!(events.last(), Some(&Owned::End));
}

#[test]
fn position_past_the_end_is_clamped() {
    let mut parser = RequestParser::new();
    let mut pos = 10;
    assert!(parser.next_event(b"GET", &mut pos).is_none());
    assert_eq!(pos, 3);
    assert!(parser.is_idle());
}

/// Events up to and including the first error (a failed parser repeats it per chunk).
fn until_error(mut events: Vec<Owned>) -> Vec<Owned> {
    if let Some(at) = events.iter().position(|e| matches!(e, Owned::Error(_))) {
        events.truncate(at + 1);
    }
    events
}

/// The stream parsed whole (fast path wherever a head is complete) and byte by byte
/// (state machine only), with any head limit.
fn fast_and_slow(input: &[u8], max_head: usize) -> (Vec<Owned>, Vec<Owned>) {
    let whole = run_chunks(&mut RequestParser::with_max_head(max_head), &[input]);
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    let slow = run_chunks(&mut RequestParser::with_max_head(max_head), &bytes);
    (until_error(whole), until_error(slow))
}

/// Requests that take every branch of the whole-head fast path.
fn fast_path_stream() -> Vec<u8> {
    let mut input = mixed_stream();
    input.extend_from_slice(b"GET /0123456789abcdef0123456789abcdef HTTP/1.1\r\nX-Hi: a\tb\xfe\x80 c\xff\r\n\r\n");
    input.extend_from_slice(
        b"DELETE /k?a=b HTTP/1.0\r\nCONNECTION: Keep-Alive, Close\r\ncontent-length:\t3\t\r\n\r\nabc",
    );
    input.extend_from_slice(
        b"POST /p HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\nX!#$%&'*+.^_`|~: \r\n\r\nok",
    );
    input.extend_from_slice(b"GET / HTTP/1.1\r\nHost: 192.168.11.3:60000\r\n\r\n");
    input
}

#[test]
fn fast_path_agrees_with_the_state_machine() {
    let input = fast_path_stream();
    let (fast, slow) = fast_and_slow(&input, DEFAULT_MAX_HEAD);
    assert_eq!(fast, slow);
    assert_eq!(fast.iter().filter(|e| matches!(e, Owned::End)).count(), 9);
    assert!(!fast.iter().any(|e| matches!(e, Owned::Error(_))));
    // Every head limit around the sizes of the heads in the stream.
    for max_head in 16..200 {
        let (fast, slow) = fast_and_slow(&input, max_head);
        assert_eq!(fast, slow, "max_head {max_head}");
    }
}

/// Every `tchar`, for generated names and methods.
const TCHARS: &[u8] = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The fixed seed of the generated-stream property tests, so that a run is repeatable.
const SEED: u64 = 0x5eed_0f4e_114e_ad00;

/// `word` with each letter's case chosen at random.
fn any_case(word: &'static str) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(proptest::bool::ANY, word.len()).prop_map(move |upper| {
        word.bytes()
            .zip(upper)
            .map(|(b, up)| if up { b.to_ascii_uppercase() } else { b.to_ascii_lowercase() })
            .collect()
    })
}

/// Optional whitespace: a few SP and HTAB.
fn ows() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(proptest::sample::select(vec![b' ', b'\t']), 0..3)
}

/// A byte of the given set.
fn one_of(bytes: &'static [u8]) -> impl Strategy<Value = u8> {
    proptest::sample::select(bytes.to_vec())
}

fn method() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        30 => proptest::sample::select(vec!["GET", "POST", "PUT", "DELETE", "OPTIONS", "G", "GETS", "POS", "get"])
            .prop_map(|m| m.as_bytes().to_vec()),
        3 => proptest::collection::vec(one_of(TCHARS), 1..9),
        1 => proptest::collection::vec(proptest::num::u8::ANY, 0..4),
    ]
}

fn target() -> impl Strategy<Value = Vec<u8>> {
    let visible: Vec<u8> = (0x21..=0x7e).collect();
    prop_oneof![
        // Mostly short, sometimes up to past MAX_PATH.
        30 => proptest::collection::vec(proptest::sample::select(visible.clone()), 0..12)
            .prop_map(|rest| [&b"/"[..], &rest].concat()),
        4 => proptest::collection::vec(proptest::sample::select(visible), 0..70)
            .prop_map(|rest| [&b"/"[..], &rest].concat()),
        1 => proptest::collection::vec(proptest::num::u8::ANY, 0..6),
    ]
}

fn version() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        24 => Just(b"HTTP/1.1".to_vec()),
        6 => Just(b"HTTP/1.0".to_vec()),
        1 => proptest::sample::select(vec!["HTTP/2.0", "HTTP/1.10", "http/1.1", "HTTP/1.", "HTTP/11", "HTTP/1.1 "])
            .prop_map(|v| v.as_bytes().to_vec()),
    ]
}

/// What a Content-Length may say: mostly valid (mostly 0, so that no body swallows the
/// next request), sometimes not.
fn content_length_value() -> impl Strategy<Value = Vec<u8>> {
    let digits = prop_oneof![
        8 => Just("0"),
        4 => proptest::sample::select(vec!["1", "5", "007", "12", "18446744073709551615"]),
        2 => proptest::sample::select(vec![
            "18446744073709551616", "99999999999999999999", "", "-1", "+1", "1 2", "1,1", "0x10", "3\x7f",
        ]),
    ];
    (ows(), digits, ows()).prop_map(|(a, n, b)| [&a[..], n.as_bytes(), &b].concat())
}

/// Connection tokens between commas and whitespace.
fn connection_value() -> impl Strategy<Value = Vec<u8>> {
    let token = proptest::sample::select(vec!["close", "keep-alive", "Keep-Alive", "CLOSE", "upgrade", "closed", ""]);
    let separator = proptest::sample::select(vec![",", ", ", " ", "\t", " ,"]);
    proptest::collection::vec((token, separator), 0..4)
        .prop_map(|tokens| tokens.into_iter().flat_map(|(t, sep)| [t.as_bytes(), sep.as_bytes()].concat()).collect())
}

/// Any other value: visible ASCII, SP, HTAB and obs-text, or now and then anything.
fn other_value() -> impl Strategy<Value = Vec<u8>> {
    let value_bytes: Vec<u8> = (0x20..=0x7e).chain([b'\t', 0x80, 0xa0, 0xfe, 0xff]).collect();
    prop_oneof![
        40 => proptest::collection::vec(proptest::sample::select(value_bytes), 0..40),
        1 => proptest::collection::vec(proptest::num::u8::ANY, 0..8),
    ]
}

/// A header name and value, the value shaped for the name.
fn header() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let near_misses = proptest::sample::select(vec![
        "Connectio_",
        "X-Conn-Len",
        "Content-Lengt",
        "Content-Lengths",
        "Content-Lengtx",
        "Transfer-Encodinx",
        "Hos",
        "Hostt",
        "Host-",
        "Xost",
        "Contentxlength",
        "connection2",
    ]);
    prop_oneof![
        // The names the parser reads (and Host, which the fast path spots), in any case.
        12 => (any_case("Host"), other_value()),
        6 => (any_case("Content-Length"), content_length_value()),
        6 => (any_case("Connection"), connection_value()),
        1 => (any_case("Transfer-Encoding"), other_value()),
        // As long as those, or nearly them, but not them.
        6 => (near_misses.prop_map(|name| name.as_bytes().to_vec()), prop_oneof![content_length_value(), other_value()]),
        // Any `tchar` name; now and then anything.
        8 => (proptest::collection::vec(one_of(TCHARS), 1..24), other_value()),
        1 => (proptest::collection::vec(proptest::num::u8::ANY, 0..6), other_value()),
    ]
}

/// How a line ends: CRLF, now and then not quite.
fn line_end() -> impl Strategy<Value = &'static [u8]> {
    prop_oneof![100 => Just(&b"\r\n"[..]), 1 => Just(&b"\n"[..]), 1 => Just(&b"\r"[..]), 1 => Just(&b"\r\r\n"[..])]
}

fn header_line() -> impl Strategy<Value = Vec<u8>> {
    let colon = prop_oneof![80 => Just(&b":"[..]), 1 => Just(&b" :"[..]), 1 => Just(&b""[..])];
    (header(), colon, ows(), line_end())
        .prop_map(|((name, value), colon, ws, end)| [&name[..], colon, &ws, &value, end].concat())
}

/// One request: perhaps empty lines first, the request line, header lines, the blank
/// line, and now and then a few bytes of body (as many as it says, or not).
fn request() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(Just(&b"\r\n"[..]), 0..2),
        method(),
        prop_oneof![80 => Just(&b" "[..]), 1 => Just(&b"  "[..]), 1 => Just(&b"\t"[..])],
        target(),
        version(),
        line_end(),
        proptest::collection::vec(header_line(), 0..6),
        line_end(),
        prop_oneof![20 => Just(Vec::new()), 1 => proptest::collection::vec(proptest::num::u8::ANY, 0..12)],
    )
        .prop_map(|(empty, method, sp, target, version, end, headers, blank, body)| {
            let mut bytes = empty.concat();
            for part in [&method[..], sp, &target, b" ", &version, end] {
                bytes.extend_from_slice(part);
            }
            bytes.extend(headers.concat());
            bytes.extend_from_slice(blank);
            bytes.extend(body);
            bytes
        })
}

/// Pipelined requests, a few bytes of them overwritten.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(request(), 1..4),
        proptest::collection::vec((proptest::num::usize::ANY, proptest::num::u8::ANY), 0..3),
        proptest::bool::weighted(0.85),
    )
        .prop_map(|(requests, edits, clean)| {
            let mut bytes = requests.concat();
            if !clean && !bytes.is_empty() {
                for (at, byte) in edits {
                    let at = at % bytes.len();
                    bytes[at] = byte;
                }
            }
            bytes
        })
}

/// Events (up to the first error) and the parser's state after `chunks`.
fn outcome(max_head: usize, chunks: &[&[u8]]) -> (Vec<Owned>, Option<HttpError>, bool) {
    let mut parser = RequestParser::with_max_head(max_head);
    let events = until_error(run_chunks(&mut parser, chunks));
    (events, parser.error(), parser.is_idle())
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config {
        cases: 1024,
        rng_seed: proptest::test_runner::RngSeed::Fixed(SEED),
        ..proptest::test_runner::Config::default()
    })]

    /// Generated streams (valid heads with any names, values, whitespace and case,
    /// pipelined, some garbled) give the same events and end state whether parsed whole
    /// (the fast path takes every head it can), a byte at a time (the state machine
    /// only) or split at random points.
    #[test]
    fn generated_streams_parse_the_same_whole_split_and_byte_by_byte(
        input in stream(),
        cuts in proptest::collection::vec(proptest::num::usize::ANY, 0..4),
        max_head in proptest::sample::select(vec![40usize, 64, 100, 256, DEFAULT_MAX_HEAD]),
    ) {
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        let slow = outcome(max_head, &bytes);
        proptest::prop_assert_eq!(&outcome(max_head, &[&input]), &slow, "whole");
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (input.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut last = 0;
        for cut in cuts {
            chunks.push(&input[last..cut]);
            last = cut;
        }
        chunks.push(&input[last..]);
        proptest::prop_assert_eq!(&outcome(max_head, &chunks), &slow, "split at {:?}", chunks.iter().map(|c| c.len()).collect::<Vec<_>>());
    }

    /// Where the fast path takes a head, the state machine reports the same head after
    /// consuming exactly as many bytes.
    #[test]
    fn the_fast_path_consumes_what_the_state_machine_does(
        input in stream(),
        max_head in proptest::sample::select(vec![40usize, 64, 100, 256, DEFAULT_MAX_HEAD]),
    ) {
        let mut fast = RequestParser::with_max_head(max_head);
        let mut pos = 0;
        let Some(Event::Head(head)) = fast.next_event(&input, &mut pos) else {
            return Ok(());
        };
        let head = format!("{head:?}");
        let mut slow = RequestParser::with_max_head(max_head);
        let consumed = (1..=input.len()).find(|&n| {
            let mut at = 0;
            matches!(slow.next_event(&input[n - 1..n], &mut at), Some(Event::Head(h)) if format!("{h:?}") == head)
        });
        proptest::prop_assert_eq!(consumed, Some(pos));
    }
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config {
        rng_seed: proptest::test_runner::RngSeed::Fixed(SEED),
        ..proptest::test_runner::Config::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
                                   split in 0usize..600) {
        let split = split.min(data.len());
        let mut parser = RequestParser::with_max_head(256);
        for chunk in [&data[..split], &data[split..]] {
            parser.feed(chunk, |event| {
                if let Event::Body(range) = event {
                    assert!(range.end <= chunk.len() && !range.is_empty());
                }
            });
        }
    }

    #[test]
    fn arbitrary_splits_of_valid_streams_agree(cuts in proptest::collection::vec(0usize..400, 0..8)) {
        let input = mixed_stream();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(input.len())).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut last = 0;
        for c in cuts {
            chunks.push(&input[last..c]);
            last = c;
        }
        chunks.push(&input[last..]);
        proptest::prop_assert_eq!(run_chunks(&mut RequestParser::new(), &chunks), mixed_expected());
    }

    #[test]
    fn mutated_requests_parse_the_same_fast_and_slow(
        edits in proptest::collection::vec((0usize..1000, proptest::sample::select(vec![
            b' ', b'\t', b'\r', b'\n', b':', b',', b'0', b'9', b'a', b'Z', b'-', b'/', 0u8, 0x7f, 0x80, 0xff, b'"',
        ])), 1..4),
        max_head in proptest::sample::select(vec![40usize, 64, 100, DEFAULT_MAX_HEAD]),
    ) {
        let mut input = fast_path_stream();
        for (at, byte) in edits {
            let at = at % input.len();
            input[at] = byte;
        }
        let (fast, slow) = fast_and_slow(&input, max_head);
        proptest::prop_assert_eq!(fast, slow);
    }

    #[test]
    fn mutated_requests_never_panic(pos in 0usize..200, byte in proptest::num::u8::ANY) {
        let mut input = mixed_stream();
        let pos = pos.min(input.len() - 1);
        input[pos] = byte;
        let _ = run(&input);
    }
}
