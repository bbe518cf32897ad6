//! live_client: the checks `scripts/paste-live` runs against the example servers on a
//! live PASTE kernel (from the client side of the test VM), each a subcommand that
//! prints `ok: ...` and exits 0, or prints `FAIL: ...` and exits 1.
//!
//! Plain blocking std sockets with timeouts on every read and write, so that a check
//! can fail but never hang; every loop is bounded in count. The expected responses are
//! written out here, independently of the servers' code: phttpd's `200 OK` of an
//! 87-byte header and a body of the 64-character pattern, the wal's records.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

/// Client-side checks of the live PASTE suite (see `scripts/paste-live`).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// COUNT keep-alive GETs on one connection, each response checked byte for byte.
    Get {
        #[command(flatten)]
        t: Target,
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
    /// COUNT GETs written at once, then COUNT responses checked.
    Pipeline {
        #[command(flatten)]
        t: Target,
        #[arg(long, default_value_t = 100)]
        count: u32,
    },
    /// Requests split at every byte position and sent in pieces.
    Split {
        #[command(flatten)]
        t: Target,
    },
    /// COUNT POSTs with a SIZE-byte body on one connection.
    Post {
        #[command(flatten)]
        t: Target,
        #[arg(long)]
        size: usize,
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
    /// A GET, then the client's FIN: the response arrives, then the server's FIN.
    Fin {
        #[command(flatten)]
        t: Target,
    },
    /// A GET and the client's FIN in one TCP segment (corked): the response arrives,
    /// then the server's FIN.
    FinSameSegment {
        #[command(flatten)]
        t: Target,
    },
    /// A client that resets (half a request, then RST); the server keeps serving.
    Rst {
        #[command(flatten)]
        t: Target,
    },
    /// COUNT connect / GET / close cycles (`--rst`: closed with a reset).
    Cycles {
        #[command(flatten)]
        t: Target,
        #[arg(long, default_value_t = 100)]
        count: u32,
        #[arg(long)]
        rst: bool,
    },
    /// COUNT pipelined GETs read back slowly, a few hundred bytes at a time.
    SlowReader {
        #[command(flatten)]
        t: Target,
        #[arg(long, default_value_t = 200)]
        count: u32,
    },
    /// A congested connection must not stall another one: A (4 KiB receive buffer)
    /// pipelines PIPELINE GETs and stops reading; B then makes ROUNDS keep-alive
    /// requests, each answered within LIMIT_MS; A resets; B goes on.
    Congestion {
        #[command(flatten)]
        t: Target,
        #[arg(long, default_value_t = 2000)]
        pipeline: u32,
        #[arg(long, default_value_t = 20)]
        rounds: u32,
        #[arg(long, default_value_t = 2000)]
        limit_ms: u64,
    },
    /// SIZE bytes sent to an echo server come back in order.
    Echo {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 100_000)]
        size: usize,
    },
    /// COUNT wal records POSTed (record N's body is `record(N)`), each acknowledged.
    WalPost {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 110)]
        count: u32,
        /// Sequence number of the first record.
        #[arg(long, default_value_t = 1)]
        first: u64,
    },
    /// `GET /N` of COUNT wal records returns exactly what was POSTed.
    WalCheck {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 110)]
        count: u32,
        #[arg(long, default_value_t = 1)]
        first: u64,
    },
    /// On a paste runtime (PASTE_RT_BACKEND=paste), a UDP socket is refused with its
    /// message.
    UdpRefused,
    /// A TCP connect succeeds within a second (the server is reachable).
    Probe {
        #[arg(long)]
        addr: SocketAddr,
    },
}

/// The server and its response body length.
#[derive(Debug, Clone, clap::Args)]
struct Target {
    #[arg(long)]
    addr: SocketAddr,
    /// phttpd's --body-len.
    #[arg(long, default_value_t = 64)]
    body_len: usize,
}

const TIMEOUT: Duration = Duration::from_secs(20);
const BODY_PATTERN: &[u8; 64] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_";

/// A check's outcome: what was shown, or what failed.
type Outcome = Result<String, String>;

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Get { t, count } => get(&t, count),
        Command::Pipeline { t, count } => pipeline(&t, count),
        Command::Split { t } => split(&t),
        Command::Post { t, size, count } => post(&t, size, count),
        Command::Fin { t } => fin(&t),
        Command::FinSameSegment { t } => fin_same_segment(&t),
        Command::Rst { t } => rst(&t),
        Command::Cycles { t, count, rst } => cycles(&t, count, rst),
        Command::SlowReader { t, count } => slow_reader(&t, count),
        Command::Congestion { t, pipeline, rounds, limit_ms } => congestion(&t, pipeline, rounds, limit_ms),
        Command::Echo { addr, size } => echo(addr, size),
        Command::WalPost { addr, count, first } => wal_post(addr, count, first),
        Command::WalCheck { addr, count, first } => wal_check(addr, count, first),
        Command::UdpRefused => udp_refused(),
        Command::Probe { addr } => TcpStream::connect_timeout(&addr, Duration::from_secs(1))
            .map(|_| format!("{addr} accepts connections"))
            .map_err(|err| format!("connect {addr}: {err}")),
    };
    match result {
        Ok(msg) => {
            println!("ok: {msg}");
            ExitCode::SUCCESS
        }
        Err(msg) => {
            println!("FAIL: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn e(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> String {
    move |err| format!("{what}: {err}")
}

fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(e(format!("connect {addr}")))?;
    s.set_read_timeout(Some(TIMEOUT)).map_err(e("read timeout"))?;
    s.set_write_timeout(Some(TIMEOUT)).map_err(e("write timeout"))?;
    s.set_nodelay(true).map_err(e("nodelay"))?;
    Ok(s)
}

fn get_request(addr: SocketAddr) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes()
}

/// phttpd's exact response: `200 OK`, keep-alive, `Server: Apache/2.2.800`, the body
/// pattern (151 bytes for a 64-byte body).
fn expected_ok(body_len: usize) -> Vec<u8> {
    let mut v = format!(
        "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nServer: Apache/2.2.800\r\nContent-Length: {body_len}\r\n\r\n"
    )
    .into_bytes();
    v.extend((0..body_len).map(|i| BODY_PATTERN[i % 64]));
    v
}

fn read_exactly(s: &mut TcpStream, n: usize, what: &str) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match s.read(&mut buf[got..]) {
            Ok(0) => return Err(format!("{what}: connection closed after {got} of {n} bytes")),
            Ok(k) => got += k,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(format!("{what}: after {got} of {n} bytes: {err}")),
        }
    }
    Ok(buf)
}

fn expect_response(s: &mut TcpStream, expected: &[u8], what: &str) -> Result<(), String> {
    let got = read_exactly(s, expected.len(), what)?;
    if got != expected {
        let at = got.iter().zip(expected).position(|(a, b)| a != b).unwrap_or(0);
        return Err(format!(
            "{what}: response differs at byte {at}: got {:?}",
            String::from_utf8_lossy(&got[at.saturating_sub(8)..(at + 24).min(got.len())])
        ));
    }
    Ok(())
}

/// Reads one HTTP response: (status line, body).
fn read_response(s: &mut TcpStream, what: &str) -> Result<(String, Vec<u8>), String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 {
            return Err(format!("{what}: response head longer than 8 KiB"));
        }
        match s.read(&mut byte) {
            Ok(0) => return Err(format!("{what}: connection closed in the response head")),
            Ok(_) => head.push(byte[0]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(format!("{what}: reading the response head: {err}")),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head.lines().next().unwrap_or("").to_string();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .ok_or_else(|| format!("{what}: no Content-Length in {head:?}"))?;
    let body = read_exactly(s, len, what)?;
    Ok((status, body))
}

fn get(t: &Target, count: u32) -> Outcome {
    let mut s = connect(t.addr)?;
    let (req, expected) = (get_request(t.addr), expected_ok(t.body_len));
    for i in 0..count {
        s.write_all(&req).map_err(e(format!("request {i}")))?;
        expect_response(&mut s, &expected, &format!("request {i}"))?;
    }
    Ok(format!("{count} keep-alive GETs, each response exact ({} bytes)", expected.len()))
}

fn pipeline(t: &Target, count: u32) -> Outcome {
    let mut s = connect(t.addr)?;
    let req = get_request(t.addr).repeat(count as usize);
    let writer = {
        let mut w = s.try_clone().map_err(e("clone"))?;
        std::thread::spawn(move || w.write_all(&req))
    };
    let expected = expected_ok(t.body_len);
    for i in 0..count {
        expect_response(&mut s, &expected, &format!("pipelined response {i}"))?;
    }
    writer.join().map_err(|_| "writer panicked".to_string())?.map_err(e("pipelined write"))?;
    Ok(format!("{count} pipelined GETs in one write, {count} exact responses"))
}

fn split(t: &Target) -> Outcome {
    let req = get_request(t.addr);
    let expected = expected_ok(t.body_len);
    let mut s = connect(t.addr)?;
    for cut in 1..req.len() {
        s.write_all(&req[..cut]).map_err(e("first part"))?;
        std::thread::sleep(Duration::from_millis(5));
        s.write_all(&req[cut..]).map_err(e("second part"))?;
        expect_response(&mut s, &expected, &format!("request split at {cut}"))?;
    }
    // Byte by byte, and two requests whose boundary falls inside a write.
    for b in &req {
        s.write_all(std::slice::from_ref(b)).map_err(e("byte"))?;
        std::thread::sleep(Duration::from_millis(2));
    }
    expect_response(&mut s, &expected, "request sent byte by byte")?;
    let two = req.repeat(2);
    let mid = req.len() + req.len() / 2;
    s.write_all(&two[..mid]).map_err(e("one and a half"))?;
    std::thread::sleep(Duration::from_millis(5));
    s.write_all(&two[mid..]).map_err(e("the rest"))?;
    expect_response(&mut s, &expected, "first of two")?;
    expect_response(&mut s, &expected, "second of two")?;
    Ok(format!("a request split at each of {} positions, byte by byte, and across requests", req.len() - 1))
}

fn post(t: &Target, size: usize, count: u32) -> Outcome {
    let mut s = connect(t.addr)?;
    let body: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    let mut req = format!("POST /upload HTTP/1.1\r\nHost: {}\r\nContent-Length: {size}\r\n\r\n", t.addr).into_bytes();
    req.extend_from_slice(&body);
    let expected = expected_ok(t.body_len);
    for i in 0..count {
        let mut w = s.try_clone().map_err(e("clone"))?;
        let r = req.clone();
        let writer = std::thread::spawn(move || w.write_all(&r));
        expect_response(&mut s, &expected, &format!("POST {i} of {size} bytes"))?;
        writer.join().map_err(|_| "writer panicked".to_string())?.map_err(e("POST write"))?;
    }
    Ok(format!("{count} POST(s) of {size} bytes answered"))
}

fn fin(t: &Target) -> Outcome {
    let mut s = connect(t.addr)?;
    s.write_all(&get_request(t.addr)).map_err(e("request"))?;
    s.shutdown(Shutdown::Write).map_err(e("shutdown"))?;
    expect_response(&mut s, &expected_ok(t.body_len), "response after the client's FIN")?;
    let mut rest = [0u8; 64];
    match s.read(&mut rest) {
        Ok(0) => Ok("response after the client's FIN, then the server's FIN".into()),
        Ok(n) => Err(format!("{n} unexpected bytes after the response")),
        Err(err) => Err(format!("waiting for the server's FIN: {err}")),
    }
}

fn fin_same_segment(t: &Target) -> Outcome {
    let mut s = connect(t.addr)?;
    s.set_nodelay(false).map_err(e("nodelay off"))?;
    let sock = socket2::SockRef::from(&s);
    sock.set_cork(true).map_err(e("TCP_CORK on"))?;
    s.write_all(&get_request(t.addr)).map_err(e("request"))?;
    // With the request corked, the FIN joins its segment.
    s.shutdown(Shutdown::Write).map_err(e("shutdown"))?;
    socket2::SockRef::from(&s).set_cork(false).map_err(e("TCP_CORK off"))?;
    expect_response(&mut s, &expected_ok(t.body_len), "response to a request carrying the FIN")?;
    let mut rest = [0u8; 64];
    match s.read(&mut rest) {
        Ok(0) => Ok("request and FIN in one segment: response, then the server's FIN".into()),
        Ok(n) => Err(format!("{n} unexpected bytes after the response")),
        Err(err) => Err(format!("waiting for the server's FIN after a request that carried the client's: {err}")),
    }
}

fn reset(s: TcpStream) -> Result<(), String> {
    socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).map_err(e("SO_LINGER"))?;
    drop(s);
    Ok(())
}

fn rst(t: &Target) -> Outcome {
    let mut s = connect(t.addr)?;
    s.write_all(&get_request(t.addr)).map_err(e("request"))?;
    expect_response(&mut s, &expected_ok(t.body_len), "before the reset")?;
    s.write_all(b"GET / HT").map_err(e("half a request"))?;
    std::thread::sleep(Duration::from_millis(100));
    reset(s)?;
    // A reset while a response is on its way.
    let mut s = connect(t.addr)?;
    s.write_all(&get_request(t.addr).repeat(50)).map_err(e("requests"))?;
    reset(s)?;
    std::thread::sleep(Duration::from_millis(300));
    get(t, 3).map(|_| "two connections reset (mid-request, mid-response); the server still answers".into())
}

fn cycles(t: &Target, count: u32, rst: bool) -> Outcome {
    let (req, expected) = (get_request(t.addr), expected_ok(t.body_len));
    for i in 0..count {
        let mut s = connect(t.addr).map_err(|m| format!("cycle {i}: {m}"))?;
        s.write_all(&req).map_err(e(format!("cycle {i}")))?;
        expect_response(&mut s, &expected, &format!("cycle {i}"))?;
        if rst {
            reset(s)?;
        }
    }
    Ok(format!("{count} connect/GET/close cycles{}", if rst { " closed with RST" } else { "" }))
}

fn slow_reader(t: &Target, count: u32) -> Outcome {
    let mut s = connect(t.addr)?;
    s.write_all(&get_request(t.addr).repeat(count as usize)).map_err(e("requests"))?;
    let expected = expected_ok(t.body_len).repeat(count as usize);
    let mut got = Vec::with_capacity(expected.len());
    let mut buf = [0u8; 300];
    let start = Instant::now();
    while got.len() < expected.len() {
        let want = buf.len().min(expected.len() - got.len());
        let n = s.read(&mut buf[..want]).map_err(e(format!("after {} bytes", got.len())))?;
        if n == 0 {
            return Err(format!("closed after {} of {} bytes", got.len(), expected.len()));
        }
        got.extend_from_slice(&buf[..n]);
        std::thread::sleep(Duration::from_millis(1));
        if start.elapsed() > Duration::from_secs(120) {
            return Err(format!("too slow: {} of {} bytes in 120 s", got.len(), expected.len()));
        }
    }
    if got != expected {
        return Err("the slowly read responses differ from the expected ones".into());
    }
    Ok(format!("{count} responses ({} bytes) read 300 bytes at a time, intact", expected.len()))
}

fn congestion(t: &Target, pipeline: u32, rounds: u32, limit_ms: u64) -> Outcome {
    let limit = Duration::from_millis(limit_ms);
    // A: a small receive buffer, many requests, then it reads nothing.
    let a = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).map_err(e("socket"))?;
    a.set_recv_buffer_size(4096).map_err(e("SO_RCVBUF"))?;
    a.connect_timeout(&t.addr.into(), TIMEOUT).map_err(e("connect A"))?;
    let a: TcpStream = a.into();
    a.set_write_timeout(Some(TIMEOUT)).map_err(e("write timeout"))?;
    let mut b = connect(t.addr)?;
    let (req, expected) = (get_request(t.addr), expected_ok(t.body_len));
    b.write_all(&req).map_err(e("B's first request"))?;
    expect_response(&mut b, &expected, "B before A congests")?;
    let flood = req.repeat(pipeline as usize);
    let writer = {
        let mut w = a.try_clone().map_err(e("clone A"))?;
        std::thread::spawn(move || w.write_all(&flood))
    };
    // Let the server answer A until A's socket is full.
    std::thread::sleep(Duration::from_millis(1500));
    let mut worst = Duration::ZERO;
    for i in 0..rounds {
        let start = Instant::now();
        b.write_all(&req).map_err(e(format!("B round {i}")))?;
        b.set_read_timeout(Some(limit * 3)).map_err(e("read timeout"))?;
        expect_response(&mut b, &expected, &format!("B round {i} while A is congested"))?;
        let took = start.elapsed();
        worst = worst.max(took);
        if took > limit {
            return Err(format!("B round {i} took {took:?} while A was congested (limit {limit:?})"));
        }
    }
    let flood_done = writer.is_finished();
    reset(a)?;
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..5 {
        b.write_all(&req).map_err(e(format!("B after A's reset, round {i}")))?;
        expect_response(&mut b, &expected, &format!("B after A's reset, round {i}"))?;
    }
    let _ = writer.join();
    Ok(format!(
        "A pipelined {pipeline} GETs (4 KiB receive buffer, never read{}); B: {rounds} requests, slowest {worst:?} \
         (limit {limit:?}); B still served after A's reset",
        if flood_done { "" } else { ", its writes blocked" }
    ))
}

fn echo(addr: SocketAddr, size: usize) -> Outcome {
    let mut s = connect(addr)?;
    let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    let writer = {
        let mut w = s.try_clone().map_err(e("clone"))?;
        let d = data.clone();
        std::thread::spawn(move || w.write_all(&d))
    };
    let got = read_exactly(&mut s, size, "echo")?;
    writer.join().map_err(|_| "writer panicked".to_string())?.map_err(e("echo write"))?;
    if got != data {
        return Err("echoed bytes differ".into());
    }
    Ok(format!("{size} bytes echoed in order"))
}

/// Record `seq`'s body: about 1 KiB, different for every record.
fn record(seq: u64) -> Vec<u8> {
    let unit = format!("record {seq:06} ");
    unit.repeat(1000 / unit.len() + 1).into_bytes()
}

fn wal_post(addr: SocketAddr, count: u32, first: u64) -> Outcome {
    let mut s = connect(addr)?;
    let ack = expected_ok(64);
    for seq in first..first + u64::from(count) {
        let body = record(seq);
        let mut req =
            format!("POST /log HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        req.extend_from_slice(&body);
        s.write_all(&req).map_err(e(format!("POST of record {seq}")))?;
        expect_response(&mut s, &ack, &format!("acknowledgement of record {seq}"))?;
    }
    Ok(format!("{count} records POSTed and acknowledged (from {first})"))
}

fn wal_check(addr: SocketAddr, count: u32, first: u64) -> Outcome {
    let mut s = connect(addr)?;
    for seq in first..first + u64::from(count) {
        s.write_all(format!("GET /{seq} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
            .map_err(e(format!("GET /{seq}")))?;
        let (status, body) = read_response(&mut s, &format!("GET /{seq}"))?;
        if !status.starts_with("HTTP/1.1 200") {
            return Err(format!("GET /{seq}: {status}"));
        }
        if body != record(seq) {
            return Err(format!("GET /{seq}: the body differs from what was POSTed ({} bytes)", body.len()));
        }
    }
    Ok(format!("GET /{first}..{} returned every record exactly", first + u64::from(count) - 1))
}

fn udp_refused() -> Outcome {
    let rt = paste_rt::runtime::Builder::new()
        .backend("paste")
        .build()
        .map_err(|err| format!("the paste runtime did not start: {err}"))?;
    let r = rt.block_on(async { paste_rt::net::UdpSocket::bind("0.0.0.0:0").await.map(|_| ()) });
    match r {
        Ok(()) => Err("a UDP socket was bound on a paste runtime".into()),
        Err(err)
            if err.kind() == io::ErrorKind::Unsupported
                && err.to_string().contains("UDP is not supported by the paste backend") =>
        {
            Ok(format!("UDP refused on paste: {err}"))
        }
        Err(err) => Err(format!("UDP failed otherwise than refused: {:?}: {err}", err.kind())),
    }
}
