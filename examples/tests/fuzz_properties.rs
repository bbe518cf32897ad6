//! The fuzz targets' properties, bounded, on stable: the harnesses of `fuzz/harness/`
//! (the same files the cargo-fuzz targets run) driven by proptest with a fixed seed
//! and a fixed number of cases, a few seconds each. The inputs are built to reach
//! deep: well-formed HTTP requests and memcached commands mixed with broken ones and
//! random bytes, cut anywhere; crafted WAL directories; ring interleavings. For the
//! long, coverage-guided libFuzzer run, see the README ("Fuzzing").

#[path = "../../fuzz/harness/mod.rs"]
mod harness;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use harness::input::split_then_stream;

/// Fixed seed and case count: the same inputs on every run; no regression files.
fn config(cases: u32) -> Config {
    Config { cases, rng_seed: RngSeed::Fixed(0x9a57_e5eed), failure_persistence: None, ..Config::default() }
}

/// A stream cut at up to 7 random points, encoded as the harnesses read it.
fn cut(stream: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (stream, proptest::collection::vec(any::<u16>(), 0..8)).prop_map(|(s, cuts)| split_then_stream(&s, &cuts))
}

fn concat(pieces: Vec<Vec<u8>>) -> Vec<u8> {
    pieces.concat()
}

/// One HTTP request, usually well-formed, sometimes broken in one place.
fn http_request() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![Just("GET"), Just("POST"), Just("DELETE"), Just("G T"), Just("")];
    let path = "/[a-z0-9/]{0,70}";
    let version = prop_oneof![8 => Just("HTTP/1.1"), 2 => Just("HTTP/1.0"), 1 => Just("HTTP/2.0"), 1 => Just("HTTX")];
    let header = prop_oneof![
        Just("Host: x".to_string()),
        Just("Connection: close".to_string()),
        Just("Connection: keep-alive".to_string()),
        Just("Connection: Keep-Alive, close".to_string()),
        Just("Transfer-Encoding: chunked".to_string()),
        Just("Content-Length: 12x".to_string()),
        Just("Content-Length: 99999999999999999999".to_string()),
        Just("NoColon".to_string()),
        "X-[a-z]{1,8}: [ -~]{0,40}",
        (1usize..10_000).prop_map(|n| format!("X-Long: {}", "a".repeat(n))),
    ];
    let eol = prop_oneof![6 => Just("\r\n"), 1 => Just("\n")];
    let body = proptest::option::of(proptest::collection::vec(any::<u8>(), 0..3000));
    (method, path, version, proptest::collection::vec(header, 0..4), eol, body, any::<u8>(), any::<u16>()).prop_map(
        |(method, path, version, headers, eol, body, flip, at)| {
            let mut r = format!("{method} {path} {version}{eol}").into_bytes();
            for h in headers {
                r.extend_from_slice(h.as_bytes());
                r.extend_from_slice(eol.as_bytes());
            }
            if let Some(body) = &body {
                r.extend_from_slice(format!("Content-Length: {}{eol}", body.len()).as_bytes());
            }
            r.extend_from_slice(eol.as_bytes());
            if let Some(body) = body {
                r.extend_from_slice(&body);
            }
            // One request in eight gets a byte changed somewhere.
            if flip % 8 == 0 && !r.is_empty() {
                let i = at as usize % r.len();
                r[i] = r[i].wrapping_add(flip | 1);
            }
            r
        },
    )
}

/// One memcached command line (with its data block), usually well-formed.
fn memcache_command() -> impl Strategy<Value = Vec<u8>> {
    let key = prop_oneof![Just("k".to_string()), Just("n".to_string()), "[a-z]{1,3}", "[!-~]{0,260}"];
    let noreply = prop_oneof![4 => Just(""), 1 => Just(" noreply")];
    let eol = prop_oneof![6 => Just("\r\n"), 1 => Just("\n")];
    let op = prop_oneof![Just("set"), Just("add"), Just("replace"), Just("append"), Just("prepend")];
    let data = proptest::collection::vec(any::<u8>(), 0..150);
    prop_oneof![
        3 => (key.clone(), eol.clone()).prop_map(|(k, e)| format!("get {k} {k}x{e}").into_bytes()),
        3 => (op, key.clone(), any::<u16>(), data.clone(), noreply.clone(), eol.clone(), any::<bool>()).prop_map(
            |(op, k, flags, d, nr, e, lie)| {
                let len = if lie { d.len() + 1 } else { d.len() };
                let mut c = format!("{op} {k} {flags} 0 {len}{nr}{e}").into_bytes();
                c.extend_from_slice(&d);
                c.extend_from_slice(e.as_bytes());
                c
            }
        ),
        1 => (key.clone(), data, any::<u8>()).prop_map(|(k, d, u)| {
            let mut c = format!("cas {k} 0 0 {} {u}\r\n", d.len()).into_bytes();
            c.extend_from_slice(&d);
            c.extend_from_slice(b"\r\n");
            c
        }),
        2 => (prop_oneof![Just("incr"), Just("decr")], key.clone(), "[0-9+-]{0,22}", noreply.clone())
            .prop_map(|(op, k, n, nr)| format!("{op} {k} {n}{nr}\r\n").into_bytes()),
        1 => (key.clone(), noreply.clone()).prop_map(|(k, nr)| format!("delete {k}{nr}\r\n").into_bytes()),
        1 => (key, "-?[0-9]{0,11}").prop_map(|(k, t)| format!("touch {k} {t}\r\n").into_bytes()),
        1 => prop_oneof![
            Just(b"flush_all\r\n".to_vec()),
            Just(b"flush_all 10 noreply\r\n".to_vec()),
            Just(b"version\r\n".to_vec()),
            Just(b"stats\r\n".to_vec()),
            Just(b"stats reset\r\n".to_vec()),
            Just(b"stats noreply\r\n".to_vec()),
            Just(b"verbosity 1\r\n".to_vec()),
            Just(b"verbosity noreply\r\n".to_vec()),
            Just(b"verbosity\r\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"quit\r\n".to_vec()),
        ],
        1 => proptest::collection::vec(any::<u8>(), 0..80),
        1 => (1usize..400).prop_map(|n| vec![b'x'; n]),
        1 => proptest::collection::vec(any::<u8>(), 24..30).prop_map(|mut b| {
            b[0] = 0x80;
            b
        }),
    ]
}

proptest! {
    #![proptest_config(config(1000))]

    /// The HTTP request parser reports the same events whole, cut, and byte by byte.
    #[test]
    fn http_parser_events_do_not_depend_on_where_the_stream_is_cut(
        data in cut(proptest::collection::vec(http_request(), 1..5).prop_map(concat))
    ) {
        harness::http::run(&data);
    }
}

proptest! {
    #![proptest_config(config(5000))]

    /// The same holds for random bytes (never a panic, never a stall).
    #[test]
    fn http_parser_survives_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        harness::http::run(&data);
    }
}

proptest! {
    #![proptest_config(config(5000))]

    /// The memcached parser and store: the same commands and replies whole, cut, and
    /// byte by byte; the store stays within its budget.
    #[test]
    fn memcache_commands_and_replies_do_not_depend_on_where_the_stream_is_cut(
        data in cut(proptest::collection::vec(memcache_command(), 1..12).prop_map(concat))
    ) {
        harness::memcache::run(&data);
    }
}

proptest! {
    #![proptest_config(config(2000))]

    /// WAL recovery over crafted logs and pool files brings back exactly the whole
    /// requests, keeps exactly their buffers, and logging goes on.
    #[test]
    fn wal_recovery_brings_back_exactly_the_whole_requests(data in proptest::collection::vec(any::<u8>(), 0..700)) {
        harness::wal::run(&data);
    }
}

proptest! {
    #![proptest_config(config(2000))]

    /// The PASTE ring driver against the emulated kernel: order and one owner per
    /// buffer after every step, nothing lost after a flush.
    #[test]
    fn paste_ring_driver_keeps_order_and_buffers_under_any_interleaving(
        data in proptest::collection::vec(any::<u8>(), 0..900)
    ) {
        harness::ring::run(&data);
    }
}

/// Inputs the fuzz targets found failing, kept as regressions.
#[test]
fn inputs_the_fuzzers_found_stay_fixed() {
    // A line of spaces past the line limit, then `gets`: refused byte by byte,
    // accepted whole (memcache parser: the limit now depends only on the line's
    // first max_line + 1 bytes).
    harness::memcache::run(&[&b"quit touch  \xb8s )\x80\n"[..], &[b' '; 62], b"gets", &[b' '; 52]].concat());
    // A copy-mode record naming data slot `capacity` with an empty part: recovered,
    // though no such slot exists (LogFiles::data now checks the slot).
    harness::wal::run(b"POOLMAP1\x00\x00\x00\x00\x00@\x00\x00\x00\x00\x00\x04\x00\x00\x00\x1b\x00\x00\x00\x00%");
    // 263 KB queued on one fd of a port of two rings of eight slots, one send in
    // flight per fd: the final flush's fixed 200 rounds moved 248 KB of it, and the
    // harness took the rest for lost (it was not: the flush now runs until rounds
    // stop moving bytes).
    harness::ring::run(include_bytes!("../../fuzz/regressions/paste_ring-large-send-small-port.bin"));
}
