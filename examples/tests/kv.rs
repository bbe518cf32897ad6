//! The kv server over TCP on every backend, with a hand-written client: every
//! command's exact reply, noreply, errors, oversized values, quit, fatal lines,
//! and one store shared by the connections of a runtime.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use paste_rt::net::TcpListener;
use paste_rt_examples::kv::{self, Config};
use support::{assert_silent, connect, off_thread, read_n, read_to_eof, round_trip};

/// Starts kv with 1 KiB items on a fresh loopback port.
async fn start() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Config { max_item_size: 1024, ..Config::default() };
    let _server = paste_rt::spawn(kv::serve(listener, config));
    addr
}

#[paste_rt::test_each_backend]
async fn storage_retrieval_and_counters() {
    let addr = start().await;
    off_thread(move || {
        let mut c = connect(addr);
        round_trip(&mut c, b"get k\r\n", b"END\r\n");
        round_trip(&mut c, b"set k 42 0 5\r\nhello\r\n", b"STORED\r\n");
        round_trip(&mut c, b"get k\r\n", b"VALUE k 42 5\r\nhello\r\nEND\r\n");
        round_trip(&mut c, b"add k 0 0 1\r\nx\r\n", b"NOT_STORED\r\n");
        round_trip(&mut c, b"replace nope 0 0 1\r\nx\r\n", b"NOT_STORED\r\n");
        round_trip(&mut c, b"append k 0 0 3\r\n!!!\r\n", b"STORED\r\n");
        round_trip(&mut c, b"prepend k 0 0 2\r\n>>\r\n", b"STORED\r\n");
        round_trip(&mut c, b"set n 0 0 2\r\n10\r\n", b"STORED\r\n");
        round_trip(&mut c, b"get k n missing\r\n", b"VALUE k 42 10\r\n>>hello!!!\r\nVALUE n 0 2\r\n10\r\nEND\r\n");
        round_trip(&mut c, b"incr n 5\r\n", b"15\r\n");
        round_trip(&mut c, b"decr n 100\r\n", b"0\r\n");
        round_trip(&mut c, b"incr missing 1\r\n", b"NOT_FOUND\r\n");
        round_trip(&mut c, b"incr k 1\r\n", b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n");
        round_trip(&mut c, b"delete n\r\n", b"DELETED\r\n");
        round_trip(&mut c, b"delete n\r\n", b"NOT_FOUND\r\n");
        round_trip(&mut c, b"touch k 100\r\n", b"TOUCHED\r\n");
        round_trip(&mut c, b"version\r\n", b"VERSION 1.6.0-paste-rt\r\n");
        round_trip(&mut c, b"flush_all\r\n", b"OK\r\n");
        round_trip(&mut c, b"get k\r\n", b"END\r\n");
    })
    .await;
}

#[paste_rt::test_each_backend]
async fn gets_and_cas() {
    let addr = start().await;
    off_thread(move || {
        let mut c = connect(addr);
        round_trip(&mut c, b"set k 0 0 1\r\na\r\n", b"STORED\r\n");
        c.write_all(b"gets k\r\n").unwrap();
        let head = b"VALUE k 0 1 ";
        let mut reply = read_n(&mut c, head.len());
        assert_eq!(reply, head);
        loop {
            reply.extend(read_n(&mut c, 1));
            if reply.ends_with(b"\r\n") {
                break;
            }
        }
        let unique: u64 = std::str::from_utf8(&reply[head.len()..reply.len() - 2]).unwrap().parse().unwrap();
        assert_eq!(read_n(&mut c, 8), b"a\r\nEND\r\n");
        let cas = |u: u64, v: &str| format!("cas k 0 0 {} {u}\r\n{v}\r\n", v.len()).into_bytes();
        round_trip(&mut c, &cas(unique + 1, "b"), b"EXISTS\r\n");
        round_trip(&mut c, &cas(unique, "c"), b"STORED\r\n");
        round_trip(&mut c, &cas(unique, "d"), b"EXISTS\r\n");
        round_trip(&mut c, b"cas gone 0 0 1 1\r\nx\r\n", b"NOT_FOUND\r\n");
        round_trip(&mut c, b"get k\r\n", b"VALUE k 0 1\r\nc\r\nEND\r\n");
    })
    .await;
}

#[paste_rt::test_each_backend]
async fn noreply_is_silent_and_pipelining_is_ordered() {
    let addr = start().await;
    off_thread(move || {
        let mut c = connect(addr);
        c.write_all(
            b"set a 0 0 1 noreply\r\n1\r\nset b 0 0 1 noreply\r\n2\r\nincr a 9 noreply\r\ndelete b noreply\r\n",
        )
        .unwrap();
        assert_silent(&mut c, Duration::from_millis(50));
        // One write, many commands, replies in order; a data block split across writes.
        round_trip(&mut c, b"get a\r\nget b\r\nset c 0 0 4\r\nab", b"VALUE a 0 2\r\n10\r\nEND\r\nEND\r\n");
        round_trip(&mut c, b"cd\r\nget c\r\n", b"STORED\r\nVALUE c 0 4\r\nabcd\r\nEND\r\n");
        // A command split byte by byte.
        for &b in b"get c\r" {
            c.write_all(&[b]).unwrap();
        }
        round_trip(&mut c, b"\n", b"VALUE c 0 4\r\nabcd\r\nEND\r\n");
    })
    .await;
}

#[paste_rt::test_each_backend]
async fn errors_and_oversized_values_keep_the_connection() {
    let addr = start().await;
    off_thread(move || {
        let mut c = connect(addr);
        round_trip(&mut c, b"bogus\r\n", b"ERROR\r\n");
        round_trip(&mut c, b"set k abc 0 1\r\n", b"CLIENT_ERROR bad command line format\r\n");
        // "yz" is not the block's CRLF; the "\r\n" after it is an empty line (as memcached).
        round_trip(&mut c, b"set k 0 0 1\r\nxyz\r\n", b"CLIENT_ERROR bad data chunk\r\nERROR\r\n");
        round_trip(&mut c, b"incr k x\r\n", b"CLIENT_ERROR invalid numeric delta argument\r\n");
        // 1025 bytes with a 1 KiB limit: refused, its data skipped, not parsed.
        let mut big = b"set big 0 0 1025\r\n".to_vec();
        big.extend(b"get big\r\n".repeat(114).iter().take(1025));
        big.extend_from_slice(b"\r\n");
        round_trip(&mut c, &big, b"SERVER_ERROR object too large for cache\r\n");
        round_trip(&mut c, b"set ok 0 0 1024\r\n", b"");
        round_trip(&mut c, &[b'v'; 1024], b"");
        round_trip(&mut c, b"\r\nget big\r\n", b"STORED\r\nEND\r\n");
        c.write_all(b"get ok\r\n").unwrap();
        let reply = read_n(&mut c, b"VALUE ok 0 1024\r\n".len() + 1024 + 7);
        assert!(reply.starts_with(b"VALUE ok 0 1024\r\nvvvv") && reply.ends_with(b"v\r\nEND\r\n"));
    })
    .await;
}

#[paste_rt::test_each_backend]
async fn quit_and_fatal_lines_close_the_connection() {
    let addr = start().await;
    off_thread(move || {
        let mut c = connect(addr);
        c.write_all(b"set k 0 0 1\r\nx\r\nquit\r\nget k\r\n").unwrap();
        assert_eq!(read_to_eof(&mut c), b"STORED\r\n");
        // A line past memcached's 2048 bytes without a newline ends the connection.
        let mut c = connect(addr);
        c.write_all(b"version\r\n").unwrap();
        c.write_all(&[b'x'; 4096]).unwrap();
        assert_eq!(read_to_eof(&mut c), b"VERSION 1.6.0-paste-rt\r\n");
    })
    .await;
}

#[paste_rt::test_each_backend]
async fn connections_share_one_store() {
    let addr = start().await;
    off_thread(move || {
        let mut a = connect(addr);
        let mut b = connect(addr);
        round_trip(&mut a, b"set shared 1 0 3\r\nabc\r\n", b"STORED\r\n");
        round_trip(&mut b, b"get shared\r\n", b"VALUE shared 1 3\r\nabc\r\nEND\r\n");
        round_trip(&mut b, b"delete shared\r\n", b"DELETED\r\n");
        round_trip(&mut a, b"get shared\r\n", b"END\r\n");
    })
    .await;
}

/// Reads `stats` lines up to `END` into (name, value) pairs.
fn read_stats(c: &mut std::net::TcpStream) -> Vec<(String, String)> {
    let mut text = Vec::new();
    while !text.ends_with(b"END\r\n") {
        text.extend(read_n(c, 1));
    }
    let text = String::from_utf8(text).unwrap();
    let mut stats = Vec::new();
    for line in text.lines() {
        if line == "END" {
            break;
        }
        let mut parts = line.splitn(3, ' ');
        assert_eq!(parts.next(), Some("STAT"), "{line:?}");
        let (name, value) = (parts.next().unwrap(), parts.next().unwrap_or_else(|| panic!("{line:?}")));
        stats.push((name.to_string(), value.to_string()));
    }
    stats
}

fn stat<'a>(stats: &'a [(String, String)], name: &str) -> &'a str {
    stats.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("no STAT {name}"))
}

#[paste_rt::test_each_backend]
async fn stats_reports_memcacheds_general_fields() {
    let addr = start().await;
    off_thread(move || {
        let mut other = connect(addr);
        round_trip(&mut other, b"version\r\n", b"VERSION 1.6.0-paste-rt\r\n");
        let mut c = connect(addr);
        round_trip(&mut c, b"set a 0 0 1\r\n1\r\nset b 0 0 2\r\n22\r\n", b"STORED\r\nSTORED\r\n");
        round_trip(&mut c, b"get a b missing\r\n", b"VALUE a 0 1\r\n1\r\nVALUE b 0 2\r\n22\r\nEND\r\n");
        round_trip(&mut c, b"incr a 1\r\nincr nope 1\r\n", b"2\r\nNOT_FOUND\r\n");
        c.write_all(b"stats\r\n").unwrap();
        let stats = read_stats(&mut c);
        for name in [
            "pid",
            "uptime",
            "time",
            "version",
            "curr_connections",
            "total_connections",
            "cmd_get",
            "cmd_set",
            "get_hits",
            "get_misses",
            "curr_items",
            "bytes",
            "limit_maxbytes",
            "threads",
            "evictions",
        ] {
            stat(&stats, name);
        }
        assert_eq!(stat(&stats, "pid"), std::process::id().to_string(), "kv runs in this test's process");
        assert_eq!(stat(&stats, "version"), "1.6.0-paste-rt");
        assert_eq!(stat(&stats, "curr_connections"), "2");
        assert_eq!(stat(&stats, "total_connections"), "2");
        assert_eq!((stat(&stats, "cmd_get"), stat(&stats, "get_hits"), stat(&stats, "get_misses")), ("3", "2", "1"));
        assert_eq!(stat(&stats, "cmd_set"), "2");
        assert_eq!((stat(&stats, "incr_hits"), stat(&stats, "incr_misses")), ("1", "1"));
        assert_eq!(stat(&stats, "curr_items"), "2");
        assert_eq!(stat(&stats, "limit_maxbytes"), (64u64 << 20).to_string());
        assert_eq!(stat(&stats, "threads"), "1");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let time: u64 = stat(&stats, "time").parse().unwrap();
        assert!(time.abs_diff(now) <= 5, "time {time} vs now {now}");
        assert!(stat(&stats, "bytes").parse::<u64>().unwrap() > 3);

        // `stats noreply` is no stats command (memccapable checks this).
        round_trip(&mut c, b"stats noreply\r\n", b"ERROR\r\n");
        round_trip(&mut c, b"stats reset\r\n", b"RESET\r\n");
        c.write_all(b"stats\r\n").unwrap();
        let stats = read_stats(&mut c);
        assert_eq!((stat(&stats, "cmd_get"), stat(&stats, "curr_connections")), ("0", "2"));
        drop(other);
    })
    .await;
}

#[paste_rt::test_each_backend]
async fn verbosity_is_accepted_as_memcached_does() {
    let addr = start().await;
    off_thread(move || {
        let mut c = connect(addr);
        round_trip(&mut c, b"verbosity foo bar my\r\n", b"ERROR\r\n");
        round_trip(&mut c, b"verbosity\r\n", b"ERROR\r\n");
        round_trip(&mut c, b"verbosity 1\r\n", b"OK\r\n");
        // Silenced, the bad one too.
        round_trip(&mut c, b"verbosity noreply\r\nverbosity 0 noreply\r\nversion\r\n", b"VERSION 1.6.0-paste-rt\r\n");
        round_trip(&mut c, b"verbosity 0\r\n", b"OK\r\n");
    })
    .await;
}

#[paste_rt::test_each_backend]
async fn a_binary_protocol_request_gets_the_binary_error_and_a_close() {
    let addr = start().await;
    off_thread(move || {
        let mut c = connect(addr);
        let mut noop = [0u8; 24];
        noop[0] = 0x80; // request magic
        noop[1] = 0x0a; // NOOP
        noop[12..16].copy_from_slice(&0xdead_beef_u32.to_be_bytes());
        // Split inside the header.
        c.write_all(&noop[..7]).unwrap();
        assert_silent(&mut c, Duration::from_millis(30));
        c.write_all(&noop[7..]).unwrap();
        let reply = read_to_eof(&mut c);
        assert_eq!(reply.len(), paste_rt_examples::memcache::BINARY_UNKNOWN_COMMAND_LEN, "{reply:?}");
        assert_eq!((reply[0], reply[1]), (0x81, 0x0a), "response magic, opcode echoed");
        assert_eq!(&reply[6..8], &[0x00, 0x81], "status: unknown command");
        assert_eq!(u32::from_be_bytes(reply[8..12].try_into().unwrap()), 15, "body length");
        assert_eq!(&reply[12..16], &0xdead_beef_u32.to_be_bytes(), "opaque echoed");
        assert_eq!(&reply[24..], b"Unknown command");
    })
    .await;
}
