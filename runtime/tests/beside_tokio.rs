//! A tokio application with a paste-rt runtime beside it: work goes there and back,
//! a listener moves over, channels are shared, and a graceful shutdown with
//! requests in flight loses no response and does not hang.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use paste_rt::net::TcpListener;
use paste_rt::BackendKind;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const CLIENTS: usize = 20;

/// The listener's code, moved from the tokio app onto paste-rt: an accept loop that
/// stops on shutdown, and connections that finish the request in hand.
async fn serve(listener: TcpListener, received: Arc<AtomicUsize>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let received = received.clone();
                paste_rt::spawn(async move {
                    let (r, mut w) = stream.split();
                    let mut lines = BufReader::new(r).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        received.fetch_add(1, Ordering::SeqCst);
                        paste_rt::time::sleep(Duration::from_millis(30)).await; // work in flight
                        w.write_all(format!("done {line}\n").as_bytes()).await.unwrap();
                        w.flush().await.unwrap();
                        if paste_rt::runtime::is_shutting_down() {
                            break;
                        }
                    }
                });
            }
            _ = paste_rt::runtime::shutdown_requested() => break,
        }
    }
}

fn run_on(kind: BackendKind) {
    let tokio_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    tokio_rt.block_on(async {
        let paste = paste_rt::runtime::Builder::new().ignore_env().backend(kind.name()).quiet().spawn_thread().unwrap();
        assert_eq!(paste.backend(), kind);

        // Work there and back: a JoinHandle is awaitable from tokio.
        let answer = paste.handle().spawn(async { paste_rt::current_backend() }).await.unwrap();
        assert_eq!(answer, Some(kind));

        // A shared tokio channel from a paste-rt task to a tokio task.
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        paste.handle().spawn(async move { tx.send("from paste-rt").await.unwrap() });
        assert_eq!(rx.recv().await, Some("from paste-rt"));

        // Move a listener over: built on paste-rt's thread (it is !Send).
        let received = Arc::new(AtomicUsize::new(0));
        let r2 = received.clone();
        let (port_tx, port_rx) = tokio::sync::oneshot::channel();
        let server = paste.handle().spawn_with(move || async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            port_tx.send(listener.local_addr().unwrap().port()).unwrap();
            serve(listener, r2).await;
        });
        let port = port_rx.await.unwrap();

        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                tokio::spawn(async move {
                    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                    s.write_all(format!("req {i}\n").as_bytes()).await.unwrap();
                    let mut reply = String::new();
                    BufReader::new(&mut s).read_line(&mut reply).await.unwrap();
                    reply
                })
            })
            .collect();
        // Shut down while every request is in flight (received, not answered).
        while received.load(Ordering::SeqCst) < CLIENTS {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let stopped = tokio::task::spawn_blocking(move || paste.shutdown(Duration::from_secs(10)));
        for (i, c) in clients.into_iter().enumerate() {
            assert_eq!(c.await.unwrap(), format!("done req {i}\n"), "{kind}: a response was lost");
        }
        stopped.await.unwrap();
        server.await.unwrap();
    });
}

#[test]
fn tokio_app_drives_paste_rt_and_shuts_down_gracefully() {
    for kind in paste_rt::testing::backends("tokio_app_drives_paste_rt_and_shuts_down_gracefully") {
        run_on(kind);
    }
}
