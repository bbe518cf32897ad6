//! Tests of the request parser: the state machine, the whole-head fast path, and that
//! the two agree.

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

#[test]
fn word_classifiers_match_the_byte_table() {
    // Each byte value at each position of a word, among bytes that never stop a scan.
    for b in 0..=255u8 {
        for at in 0..8 {
            let mut word = *b"aaaaaaaa";
            word[at] = b;
            let w = u64::from_le_bytes(word);
            let flagged = |stops: u64| if stops == 0 { 8 } else { stops.trailing_zeros() as usize / 8 };
            let class = CLASS[usize::from(b)];
            let expect = |stops_here: bool| if stops_here { at } else { 8 };
            assert_eq!(flagged(target_stops(w)), expect(class & TARGET == 0), "target {b:#x} at {at}");
            assert_eq!(flagged(value_stops(w)), expect(class & VALUE == 0 || b == b'\t'), "value {b:#x} at {at}");
            let name_char = b.is_ascii_alphanumeric() || b == b'-';
            assert_eq!(flagged(name_stops(w)), expect(!name_char), "name {b:#x} at {at}");
        }
    }
}

#[test]
fn words_past_the_end_read_as_zero() {
    let buf = b"0123456789";
    assert_eq!(word_from(buf, 0), u64::from_le_bytes(*b"01234567"));
    assert_eq!(word_from(buf, 2), u64::from_le_bytes(*b"23456789"));
    assert_eq!(word_from(buf, 7), u64::from_le_bytes(*b"789\0\0\0\0\0"));
    assert_eq!(word_from(buf, 9), u64::from(b'9'));
    assert_eq!(word_from(b"abc", 1), 0, "shorter than a word: no bytes");
    assert_eq!(scan(buf, 0, value_stops), buf.len());
    assert_eq!(scan(b"ab\rcdefghijk", 0, value_stops), 2);
    assert_eq!(scan(b"abcdefghij\r", 3, value_stops), 10);
}

proptest::proptest! {
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
