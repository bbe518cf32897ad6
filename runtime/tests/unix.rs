//! Unix stream sockets on every backend: a 1 MB echo with a std peer (and no
//! syscall outside poll), EOF versus reset, many connections accepted at once with
//! paste-rt clients through tokio's I/O traits. On PASTE (TCP only) binding and
//! connecting must fail with `Unsupported`.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use paste_rt::net::{UnixListener, UnixStream};
use paste_rt::BackendKind;
use support::{off_thread, pattern};

/// A fresh socket path for this test and backend (removed first).
fn sock_path(test: &str) -> PathBuf {
    let backend = paste_rt::current_backend().unwrap();
    let p = std::env::temp_dir().join(format!("paste-rt-{}-{test}-{backend}.sock", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

/// Binds, or checks the PASTE refusal (of both bind and connect) and returns `None`.
async fn bind_or_refused(path: &PathBuf) -> Option<UnixListener> {
    let result = UnixListener::bind(path);
    match paste_rt::current_backend().unwrap() {
        BackendKind::Paste | BackendKind::PasteEmu => {
            let err = result.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
            assert!(err.to_string().contains("PASTE registers TCP sockets only"), "{err}");
            let _std = std::os::unix::net::UnixListener::bind(path).unwrap();
            let err = UnixStream::connect(path).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
            let _ = std::fs::remove_file(path);
            None
        }
        _ => Some(result.unwrap()),
    }
}

#[paste_rt::test_each_backend]
async fn echo_one_megabyte_with_a_std_peer() {
    const LEN: usize = 1 << 20;
    let path = sock_path("echo");
    let Some(listener) = bind_or_refused(&path).await else { return };
    assert_eq!(listener.local_addr().unwrap().as_pathname(), Some(path.as_path()));
    paste_rt::yield_now().await;
    let baseline = paste_rt::stats().pool_in_use;
    let before = paste_rt::stats();
    let p = path.clone();
    let client = off_thread(move || {
        let s = std::os::unix::net::UnixStream::connect(&p).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut w = s.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            w.write_all(&pattern(LEN)).unwrap();
            w.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let mut got = Vec::with_capacity(LEN);
        (&s).read_to_end(&mut got).unwrap();
        writer.join().unwrap();
        got
    });
    let (s, peer) = listener.accept().await.unwrap();
    assert!(peer.is_unnamed(), "a std client does not bind: {peer:?}");
    assert_eq!(s.local_addr().unwrap().as_pathname(), Some(path.as_path()));
    let mut echoed = 0;
    while let Some(buf) = s.recv().await.unwrap() {
        echoed += buf.len();
        let mut tx = s.tx_buf().unwrap();
        tx.put(&buf);
        drop(buf);
        s.send(tx).await.unwrap();
    }
    s.shutdown().await.unwrap();
    drop(s);
    let got = client.await;
    assert_eq!((echoed, got.len()), (LEN, LEN));
    assert!(got == pattern(LEN), "echoed bytes differ");
    let d = paste_rt::stats() - before;
    assert_eq!(d.syscalls_outside_poll, 0, "{d:?}");
    paste_rt::yield_now().await;
    assert_eq!(paste_rt::stats().pool_in_use, baseline, "every buffer came back");
    let _ = std::fs::remove_file(&path);
}

#[paste_rt::test_each_backend]
async fn half_close_and_reset_are_distinct() {
    let path = sock_path("eof-reset");
    let Some(listener) = bind_or_refused(&path).await else { return };

    // Half-close: data, then EOF; the server can still answer.
    let p = path.clone();
    let client = off_thread(move || {
        let mut s = std::os::unix::net::UnixStream::connect(&p).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"abc").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).unwrap();
        reply
    });
    let (mut s, _) = listener.accept().await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 16];
    loop {
        let n = s.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"abc");
    assert!(s.recv().await.unwrap().is_none(), "EOF stays EOF");
    s.write_all(b"after-eof").await.unwrap();
    s.flush().await.unwrap();
    drop(s);
    assert_eq!(client.await, b"after-eof");

    // Reset: a Unix peer that closes with unread data makes our next read fail with
    // ECONNRESET.
    let p = path.clone();
    let client = off_thread(move || {
        let s = std::os::unix::net::UnixStream::connect(&p).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut one = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        assert_eq!(socket2::SockRef::from(&s).peek(&mut one).unwrap(), 1, "unread data waits");
        drop(s);
    });
    let (s, _) = listener.accept().await.unwrap();
    let mut tx = s.tx_buf().unwrap();
    tx.put(b"never read");
    s.send(tx).await.unwrap();
    // The peer may close (and the reset arrive) in the same tick the data leaves.
    if let Err(e) = s.flush().await {
        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
    }
    client.await;
    let err = s.recv().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    let _ = std::fs::remove_file(&path);
}

/// 64 paste-rt clients connect at once (tokio's `AsyncRead`/`AsyncWrite` on the
/// client side); the listener accepts every one and each gets its own reply.
#[paste_rt::test_each_backend]
async fn accepts_many_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const N: usize = 64;
    let path = sock_path("many");
    let Some(listener) = bind_or_refused(&path).await else { return };
    let server = paste_rt::spawn(async move {
        let mut handlers = vec![];
        for _ in 0..N {
            let (s, _) = listener.accept().await.unwrap();
            handlers.push(paste_rt::spawn(async move {
                let mut got = Vec::new();
                while let Some(b) = s.recv().await.unwrap() {
                    got.extend_from_slice(&b);
                }
                let mut tx = s.tx_buf().unwrap();
                tx.put(b"hello ");
                tx.put(&got);
                s.send(tx).await.unwrap();
                s.shutdown().await.unwrap();
            }));
        }
        for h in handlers {
            h.await.unwrap();
        }
    });
    let mut clients = vec![];
    for i in 0..N {
        let p = path.clone();
        clients.push(paste_rt::spawn(async move {
            let mut c = UnixStream::connect(&p).await.unwrap();
            assert_eq!(c.peer_addr().unwrap().as_pathname(), Some(p.as_path()));
            AsyncWriteExt::write_all(&mut c, format!("client {i}").as_bytes()).await.unwrap();
            AsyncWriteExt::shutdown(&mut c).await.unwrap();
            let mut reply = String::new();
            AsyncReadExt::read_to_string(&mut c, &mut reply).await.unwrap();
            assert_eq!(reply, format!("hello client {i}"));
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    server.await.unwrap();
    let _ = std::fs::remove_file(&path);
}

#[paste_rt::test_each_backend]
async fn connect_to_nothing_is_an_error() {
    if matches!(paste_rt::current_backend(), Some(BackendKind::Paste | BackendKind::PasteEmu)) {
        return; // covered by bind_or_refused
    }
    let path = sock_path("nothing");
    let err = UnixStream::connect(&path).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}
