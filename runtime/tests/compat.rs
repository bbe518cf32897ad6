//! tokio/futures compatibility: codecs over `TcpStream`, futures' I/O extension
//! traits, and tokio's runtime-agnostic pieces (`select!`, `sync`) inside tasks.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use paste_rt::net::{TcpListener, TcpStream};
use support::off_thread;
use tokio_util::codec::{Framed, LinesCodec};

#[paste_rt::test_each_backend]
async fn framed_lines_codec_round_trips() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = off_thread(move || {
        let s = std::net::TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        let mut replies = Vec::new();
        for i in 0..100 {
            // One write per line: `writeln!` would split it into several segments.
            w.write_all(format!("line {i}\n").as_bytes()).unwrap();
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            replies.push(l);
        }
        replies
    });
    let (stream, _) = listener.accept().await.unwrap();
    let mut framed = Framed::new(stream, LinesCodec::new());
    for _ in 0..100 {
        let line = framed.next().await.unwrap().unwrap();
        framed.send(line.to_uppercase()).await.unwrap();
    }
    let replies = client.await;
    assert_eq!(replies.len(), 100);
    assert_eq!(replies[42], "LINE 42\n");
}

#[paste_rt::test_each_backend]
async fn futures_io_traits_copy_between_halves() {
    use futures_util::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let echo = paste_rt::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (mut r, mut w) = stream.split();
        let n = futures_util::io::copy(&mut r, &mut w).await.unwrap();
        w.close().await.unwrap();
        n
    });
    let mut c = TcpStream::connect(addr).await.unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    AsyncWriteExt::write_all(&mut c, &data).await.unwrap();
    AsyncWriteExt::flush(&mut c).await.unwrap();
    c.shutdown().await.unwrap();
    let mut back = Vec::new();
    AsyncReadExt::read_to_end(&mut c, &mut back).await.unwrap();
    assert!(back == data, "echoed bytes differ ({} of {})", back.len(), data.len());
    assert_eq!(echo.await.unwrap(), data.len() as u64);
}

#[paste_rt::test_each_backend]
async fn tokio_select_and_sync_work_inside_tasks() {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<u32>(8);
    let notify = std::sync::Arc::new(tokio::sync::Notify::new());
    let n2 = notify.clone();
    // A plain thread feeds the channel: wakes cross threads into the runtime.
    std::thread::spawn(move || {
        for i in 0..5 {
            tx.blocking_send(i).unwrap();
        }
        n2.notify_one();
    });
    let mut got = Vec::new();
    let mut notified = false;
    while !(notified && got.len() == 5) {
        tokio::select! {
            Some(v) = rx.recv() => got.push(v),
            _ = notify.notified(), if !notified => notified = true,
            _ = paste_rt::time::sleep(Duration::from_secs(10)) => panic!("nothing arrived"),
        }
    }
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
    let mutex = tokio::sync::Mutex::new(0);
    *mutex.lock().await += 1;
    assert_eq!(*mutex.lock().await, 1);
}
