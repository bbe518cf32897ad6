//! [`TcpListener`]: accepting connections through the backend.

use std::future::poll_fn;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::task::{Context, Poll};

use paste_rt_core::Token;

use crate::context;
use crate::net::socket;
use crate::net::TcpStream;
use crate::runtime::Inner;

/// How to bind a listener.
#[derive(Debug, Clone, Copy)]
pub struct ListenOptions {
    /// Share the port with other sockets (`SO_REUSEPORT`): how thread-per-core
    /// runtimes split one port. `None` = on when the runtime runs several threads.
    pub reuse_port: Option<bool>,
    /// The kernel's accept queue length.
    pub backlog: i32,
    /// Set `TCP_NODELAY` on every accepted connection.
    pub nodelay: bool,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions { reuse_port: None, backlog: 1024, nodelay: false }
    }
}

/// A TCP listener. Connections are accepted by the backend as soon as they arrive
/// (and start receiving at once); [`accept`](Self::accept) hands them out.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use paste_rt::net::TcpListener;
/// let listener = TcpListener::bind("127.0.0.1:0").await?;
/// loop {
///     let (stream, peer) = listener.accept().await?;
///     paste_rt::spawn(async move {
///         while let Ok(Some(buf)) = stream.recv().await {
///             let _ = (&buf[..], peer); // zero-copy view of the received bytes
///         }
///     });
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct TcpListener {
    rt: Rc<Inner>,
    token: Token,
    local: SocketAddr,
    nodelay: bool,
}

impl TcpListener {
    /// Binds with default options (SO_REUSEADDR; SO_REUSEPORT when the runtime runs
    /// several threads).
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        TcpListener::bind_with(addr, ListenOptions::default())
    }

    /// Binds with explicit options. Synchronous: binding never waits.
    pub fn bind_with(addr: impl ToSocketAddrs, options: ListenOptions) -> io::Result<TcpListener> {
        let rt = context::current();
        let addr = socket::resolve(addr)?;
        let reuse_port = options.reuse_port.unwrap_or(rt.threads > 1);
        let (fd, local) = socket::listen(addr, reuse_port, options.backlog)?;
        let token = start_listening(&rt, fd);
        Ok(TcpListener { rt, token, local, nodelay: options.nodelay })
    }

    /// The bound address (with the actual port when bound to port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    /// Waits for the next connection; returns it with the peer's address.
    ///
    /// An error (such as `EMFILE`, out of file descriptors) is returned once; the
    /// backend keeps retrying by itself, without spinning, and the next call waits
    /// for the next connection.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let stream = poll_fn(|cx| self.poll_accept(cx)).await?;
        let peer = stream.peer_addr()?;
        Ok((stream, peer))
    }

    /// The runtime and token behind this listener (for the batch server).
    pub(crate) fn parts(&self) -> (Rc<Inner>, Token) {
        (self.rt.clone(), self.token)
    }

    /// Whether accepted connections get `TCP_NODELAY` ([`ListenOptions::nodelay`]).
    pub(crate) fn nodelay(&self) -> bool {
        self.nodelay
    }

    /// Polls for the next accepted connection.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<TcpStream>> {
        poll_backlog(&self.rt, self.token, cx).map_ok(|token| {
            let stream = TcpStream::from_token(self.rt.clone(), token);
            if self.nodelay {
                let _ = stream.set_nodelay(true);
            }
            stream
        })
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        close_listener(&self.rt, self.token);
    }
}

/// Polls a listener's backlog (TCP or Unix: the backend accepts on both alike) for
/// the token of the next accepted, already registered connection; an accept error is
/// returned once.
pub(crate) fn poll_backlog(rt: &Inner, listener: Token, cx: &mut Context<'_>) -> Poll<io::Result<Token>> {
    rt.driver.borrow_mut().io.poll_accept(listener, cx)
}

pub(crate) fn start_listening(rt: &Inner, fd: std::os::fd::RawFd) -> Token {
    rt.driver.borrow_mut().listen(fd)
}

pub(crate) fn close_listener(rt: &Inner, listener: Token) {
    if let Ok(mut d) = rt.driver.try_borrow_mut() {
        d.close(listener);
    }
}
