//! The `hyper-tokio` peer: hyper 1.x on tokio's current-thread runtime serving the
//! same service as paste-rt's `hyper` example (`paste_rt_examples::hyper_server::respond`),
//! so the pair `hyper-paste-rt-*` / `hyper-tokio` differs only in the runtime.

use std::io;
use std::net::TcpListener;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;

/// Serves until the process is killed.
pub(super) fn serve(listener: TcpListener) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).keep_alive(true);
        builder.http2().timer(TokioTimer::new());
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            let builder = builder.clone();
            tokio::spawn(async move {
                let service = service_fn(paste_rt_examples::hyper_server::respond);
                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
            });
        }
    })
}
