//! Helpers shared by the runtime's integration tests.
#![allow(dead_code)]

use std::future::Future;

/// Runs blocking `f` on a plain thread and awaits its result without blocking the
/// runtime thread.
pub fn off_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> impl Future<Output = T> {
    let (tx, rx) = futures_channel::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    async move { rx.await.expect("helper thread panicked") }
}

/// `n` std client threads, each running `client` with its number, off the runtime
/// thread; completes once every one has finished (a client's panic fails it).
pub fn client_threads(n: usize, client: impl Fn(usize) + Send + Sync + 'static) -> impl Future<Output = ()> {
    let client = std::sync::Arc::new(client);
    off_thread(move || {
        let threads: Vec<_> = (0..n)
            .map(|i| {
                let client = client.clone();
                std::thread::spawn(move || client(i))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
    })
}

/// A deterministic byte pattern (so reordering or loss is detectable).
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// A listener, a std client thread running `client` on its connection, and the
/// accepted server side.
pub async fn connected<T: Send + 'static>(
    client: impl FnOnce(std::net::TcpStream) -> T + Send + 'static,
) -> (paste_rt::net::TcpStream, impl Future<Output = T>) {
    let listener = paste_rt::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = off_thread(move || client(std::net::TcpStream::connect(addr).unwrap()));
    let (server, _) = listener.accept().await.unwrap();
    (server, client)
}
