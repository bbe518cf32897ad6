//! Proves the protocol code allocates nothing per request in steady state.
//!
//! A counting global allocator counts the allocations made by the current thread
//! (tests run on parallel threads), while 10 000 pipelined requests are fed in random
//! splits of 1..=2048 bytes, the way received pool buffers arrive.

use paste_rt_examples::http::{self, Event, RequestParser, ResponseTemplate};
use paste_rt_examples::memcache::{CommandParser, Config, Flow, ResponseSink, Store};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

#[global_allocator]
static GLOBAL: counting_alloc::CountingAllocator = counting_alloc::CountingAllocator;

/// Allocations made by this thread while `f` runs.
fn allocations_during<R>(f: impl FnOnce() -> R) -> (u64, R) {
    let before = counting_alloc::allocations();
    let result = f();
    (counting_alloc::allocations() - before, result)
}

/// xorshift64*: deterministic split points without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Cuts `stream` into chunks of 1..=2048 bytes.
    fn chunks<'a>(&mut self, stream: &'a [u8]) -> Vec<&'a [u8]> {
        let mut chunks = Vec::new();
        let mut at = 0;
        while at < stream.len() {
            let len = (1 + self.next() % 2048) as usize;
            let end = (at + len).min(stream.len());
            chunks.push(&stream[at..end]);
            at = end;
        }
        chunks
    }
}

#[test]
fn the_counter_sees_allocations() {
    let (n, v) = allocations_during(|| vec![1u8; 10]);
    assert_eq!(n, 1);
    assert_eq!(v.len(), 10);
}

#[test]
fn http_parsing_and_responding_allocate_nothing() {
    const REQUESTS: usize = 10_000;
    let body = [b'w'; 1024];
    let mut post = vec![0u8; http::post_request_len(4, 18, body.len())];
    http::write_post_request(b"/wal", b"192.168.11.3:60000", &body, &mut post);
    let mut stream = Vec::new();
    for i in 0..REQUESTS {
        match i % 4 {
            0 => stream.extend_from_slice(&post),
            1 => stream.extend_from_slice(b"GET /42 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"),
            _ => stream.extend_from_slice(http::WRK_GET_PAPER),
        }
    }
    let chunks = Rng(0x9e37_79b9_7f4a_7c15).chunks(&stream);
    assert!(chunks.len() > 1000);
    let template = ResponseTemplate::new(64);
    let mut tx = [0u8; 2048];

    let (allocations, (heads, body_bytes, ends, errors, sent)) = allocations_during(|| {
        let mut parser = RequestParser::new();
        let (mut heads, mut body_bytes, mut ends, mut errors, mut sent) = (0usize, 0usize, 0usize, 0usize, 0usize);
        for chunk in &chunks {
            parser.feed(chunk, |event| match event {
                Event::Head(_) => heads += 1,
                Event::Body(range) => {
                    assert!(chunk[range.clone()].iter().all(|&b| b == b'w'));
                    body_bytes += range.len();
                }
                Event::End => {
                    ends += 1;
                    // Alternate the cached and the freshly written response.
                    let n = if ends % 2 == 0 {
                        tx[..template.as_bytes().len()].copy_from_slice(template.as_bytes());
                        template.as_bytes().len()
                    } else {
                        http::write_ok_response(64, &mut tx)
                    };
                    sent += n;
                }
                Event::Error(_) => errors += 1,
            });
        }
        (heads, body_bytes, ends, errors, sent)
    });
    assert_eq!(allocations, 0, "allocations while parsing {REQUESTS} requests");
    assert_eq!((heads, ends, errors), (REQUESTS, REQUESTS, 0));
    assert_eq!(body_bytes, REQUESTS / 4 * 1024);
    assert_eq!(sent, REQUESTS * 151);
}

/// A response sink over a fixed buffer: appending never allocates.
struct FixedSink {
    buf: Vec<u8>,
}

impl ResponseSink for FixedSink {
    fn put(&mut self, bytes: &[u8]) {
        assert!(self.buf.len() + bytes.len() <= self.buf.capacity(), "sink sized too small");
        self.buf.extend_from_slice(bytes);
    }
}

fn run_memcache(parser: &mut CommandParser, store: &mut Store, chunks: &[&[u8]], out: &mut FixedSink) -> usize {
    let mut commands = 0;
    for chunk in chunks {
        let mut pos = 0;
        while let Some(command) = parser.next_command(chunk, &mut pos) {
            let command = command.expect("well-formed stream");
            assert_eq!(store.execute(command, out), Flow::Continue);
            commands += 1;
        }
    }
    commands
}

fn key(i: usize) -> String {
    format!("key:{:04}", i % 100)
}

fn value_len(i: usize) -> usize {
    if i % 100 < 50 {
        64
    } else {
        1024
    }
}

#[test]
fn memcache_get_hits_allocate_nothing() {
    const GETS: usize = 10_000;
    let config = Config::default();
    let mut parser = CommandParser::new(&config);
    let mut store = Store::new(&config);
    let mut setup = Vec::new();
    for i in 0..100 {
        setup.extend_from_slice(format!("set {} {i} 0 {}\r\n", key(i), value_len(i)).as_bytes());
        setup.resize(setup.len() + value_len(i), b'a' + (i % 26) as u8);
        setup.extend_from_slice(b"\r\n");
    }
    let mut sink = FixedSink { buf: Vec::with_capacity(1 << 16) };
    assert_eq!(run_memcache(&mut parser, &mut store, &[&setup], &mut sink), 100);
    assert_eq!(sink.buf, b"STORED\r\n".repeat(100));

    let mut stream = Vec::new();
    let mut expected = Vec::new();
    for i in 0..GETS {
        let k = key(i * 7);
        stream.extend_from_slice(format!("get {k}\r\n").as_bytes());
        let item = store.get(k.as_bytes()).expect("stored above");
        expected.extend_from_slice(format!("VALUE {k} {} {}\r\n", item.flags(), item.value().len()).as_bytes());
        expected.extend_from_slice(item.value());
        expected.extend_from_slice(b"\r\nEND\r\n");
    }
    let mut sink = FixedSink { buf: Vec::with_capacity(expected.len()) };

    // First pass: the only allocation allowed is the parser's line buffer (2 KiB),
    // made once per connection the first time a command line is split across chunks.
    let chunks = Rng(7).chunks(&stream);
    let (allocations, commands) = allocations_during(|| run_memcache(&mut parser, &mut store, &chunks, &mut sink));
    assert!(allocations <= 1, "{allocations} allocations in the first {GETS} get hits");
    assert_eq!(commands, GETS);
    assert!(sink.buf == expected, "replies differ from the stored values");

    // Steady state: none at all.
    sink.buf.clear();
    let chunks = Rng(8).chunks(&stream);
    let (allocations, commands) = allocations_during(|| run_memcache(&mut parser, &mut store, &chunks, &mut sink));
    assert_eq!(allocations, 0, "allocations while serving {GETS} get hits");
    assert_eq!(commands, GETS);
    assert!(sink.buf == expected, "replies differ from the stored values");
}

#[test]
fn memcache_kv_mix_allocates_nothing_once_warm() {
    // The kv workload: 90 % get, 10 % set of existing keys, values of 64 or 1024 bytes.
    let config = Config::default();
    let mut parser = CommandParser::new(&config);
    let mut store = Store::new(&config);
    let mix = |seed: u64| {
        let mut rng = Rng(seed);
        let mut stream = Vec::new();
        for i in 0..10_000 {
            let k = key(rng.next() as usize);
            let len = value_len(k[4..].parse::<usize>().unwrap_or(0));
            if i < 100 || rng.next() % 10 == 0 {
                stream.extend_from_slice(format!("set {k} 0 0 {len}\r\n").as_bytes());
                stream.resize(stream.len() + len, b'v');
                stream.extend_from_slice(b"\r\n");
            } else {
                stream.extend_from_slice(format!("get {k}\r\n").as_bytes());
            }
        }
        stream
    };
    let mut sink = FixedSink { buf: Vec::with_capacity(16 << 20) };
    // Warm-up: every key stored, and a 1 KiB value split across chunks so the parser's
    // buffers reach their working size.
    for i in 0..100 {
        let head = format!("set {} 0 0 {}\r\n", key(i), value_len(i));
        let mut command = head.into_bytes();
        command.resize(command.len() + value_len(i), b'v');
        command.extend_from_slice(b"\r\n");
        let (a, b) = command.split_at(command.len() / 2);
        run_memcache(&mut parser, &mut store, &[a, b], &mut sink);
    }
    let warm = mix(11);
    run_memcache(&mut parser, &mut store, &Rng(12).chunks(&warm), &mut sink);

    let measured = mix(13);
    let chunks = Rng(14).chunks(&measured);
    sink.buf.clear();
    let (allocations, commands) = allocations_during(|| run_memcache(&mut parser, &mut store, &chunks, &mut sink));
    assert_eq!(allocations, 0, "allocations in the warm kv mix");
    assert_eq!(commands, 10_000);
    let stored = sink.buf.windows(8).filter(|w| w == b"STORED\r\n").count();
    let ends = sink.buf.windows(5).filter(|w| w == b"END\r\n").count();
    assert_eq!(stored + ends, 10_000);
    assert!(stored >= 100 && ends > 8000, "{stored} sets, {ends} gets");
}
