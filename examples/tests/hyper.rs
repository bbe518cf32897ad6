//! The hyper example on every backend, checked with hyper's own client on a tokio
//! current-thread runtime (a real HTTP client, off the server's thread): HTTP/1.1
//! and h2c answered with phttpd's body, 1 000 keep-alive requests on one
//! connection, graceful shutdown, and the `hyper` binary exiting 0 on Ctrl-C.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use paste_rt::net::TcpListener;
use paste_rt_examples::http::BODY_PATTERN;
use paste_rt_examples::hyper_server;
use support::off_thread;

/// What the client saw: status, HTTP version and body of each response.
type Seen = Vec<(StatusCode, hyper::Version, Bytes)>;

/// Runs `client` on a fresh tokio current-thread runtime on a helper thread,
/// started at once; the returned future awaits its result.
fn with_tokio<F, Fut>(client: F) -> impl std::future::Future<Output = Fut::Output>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future,
    Fut::Output: Send + 'static,
{
    off_thread(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(20), client()).await.expect("client timed out") })
    })
}

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(path).header("host", "127.0.0.1").body(Empty::new()).unwrap()
}

/// `n` GETs of `path` over one HTTP/1.1 connection.
async fn http1_gets(addr: SocketAddr, path: &'static str, n: usize) -> Seen {
    let io = TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    let conn = tokio::spawn(conn);
    let mut seen = Vec::with_capacity(n);
    for _ in 0..n {
        let response = sender.send_request(get(path)).await.unwrap();
        let (status, version) = (response.status(), response.version());
        seen.push((status, version, response.into_body().collect().await.unwrap().to_bytes()));
    }
    drop(sender);
    conn.await.unwrap().unwrap();
    seen
}

/// `n` concurrent GETs of `/` over one h2c (prior knowledge) connection.
async fn h2c_gets(addr: SocketAddr, n: usize) -> Seen {
    let io = TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.unwrap();
    let conn = tokio::spawn(conn);
    let requests = (0..n).map(|_| {
        let mut sender = sender.clone();
        tokio::spawn(async move {
            let response = sender.send_request(get("http://127.0.0.1/")).await.unwrap();
            let (status, version) = (response.status(), response.version());
            (status, version, response.into_body().collect().await.unwrap().to_bytes())
        })
    });
    let mut seen = Vec::with_capacity(n);
    for r in requests.collect::<Vec<_>>() {
        seen.push(r.await.unwrap());
    }
    drop(sender);
    conn.await.unwrap().unwrap();
    seen
}

#[paste_rt::test_each_backend]
async fn http1_and_h2c_are_answered_with_the_phttpd_body() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = paste_rt::spawn(hyper_server::serve(listener));
    let (h1, missing, h2) = with_tokio(move || async move {
        (http1_gets(addr, "/", 3).await, http1_gets(addr, "/missing", 1).await, h2c_gets(addr, 8).await)
    })
    .await;
    for (status, version, body) in &h1 {
        assert_eq!((*status, *version), (StatusCode::OK, hyper::Version::HTTP_11));
        assert_eq!(&body[..], &BODY_PATTERN[..]);
    }
    assert_eq!(h1.len(), 3);
    assert_eq!(missing[0].0, StatusCode::NOT_FOUND);
    assert!(missing[0].2.is_empty());
    assert_eq!(h2.len(), 8);
    for (status, version, body) in &h2 {
        assert_eq!((*status, *version), (StatusCode::OK, hyper::Version::HTTP_2));
        assert_eq!(&body[..], &BODY_PATTERN[..]);
    }
    paste_rt::runtime::request_shutdown();
    server.await.unwrap().unwrap();
}

#[paste_rt::test_each_backend]
async fn a_thousand_keep_alive_requests_on_one_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let before = paste_rt::stats();
    let server = paste_rt::spawn(hyper_server::serve(listener));
    let seen = with_tokio(move || http1_gets(addr, "/", 1000)).await;
    assert_eq!(seen.len(), 1000);
    assert!(seen.iter().all(|(s, _, b)| *s == StatusCode::OK && b[..] == BODY_PATTERN[..]));
    assert_eq!((paste_rt::stats() - before).accepts, 1, "keep-alive: one connection carries every request");
    paste_rt::runtime::request_shutdown();
    server.await.unwrap().unwrap();
}

/// An idle keep-alive connection does not hold shutdown up: the server closes it
/// (the client sees its connection end) and `serve` returns.
#[paste_rt::test_each_backend]
async fn graceful_shutdown_closes_idle_connections() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = paste_rt::spawn(hyper_server::serve(listener));
    let (answered_tx, answered_rx) = futures_channel::oneshot::channel();
    let client = with_tokio(move || async move {
        let io = TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        let conn = tokio::spawn(conn);
        let status = sender.send_request(get("/")).await.unwrap().status();
        answered_tx.send(status).unwrap();
        // Kept open (the sender is alive) until the server closes the connection.
        let ended = conn.await.unwrap();
        drop(sender);
        ended.is_ok()
    });
    assert_eq!(answered_rx.await.unwrap(), StatusCode::OK);
    paste_rt::runtime::request_shutdown();
    server.await.unwrap().unwrap();
    assert!(client.await, "the client's connection ended with an error");
}

/// The binary: serves, and on SIGINT stops gracefully and exits 0.
#[test]
fn the_binary_serves_and_exits_0_on_ctrl_c() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hyper"))
        .args(["--port", "0", "--bind", "127.0.0.1", "--backend", "epoll"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let Some(addr) = line.split_whitespace().nth(3).and_then(|a| a.trim_end_matches(',').parse::<SocketAddr>().ok())
    else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("no address in {line:?}");
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let seen = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), async {
            (http1_gets(addr, "/", 2).await, h2c_gets(addr, 2).await)
        })
        .await
    });
    // SAFETY: kill with a valid signal on our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the hyper binary did not exit after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (h1, h2) = seen.expect("client timed out");
    assert!(h1.iter().chain(&h2).all(|(s, _, b)| *s == StatusCode::OK && b[..] == BODY_PATTERN[..]));
    assert!(status.success(), "exit status {status:?}");
}
