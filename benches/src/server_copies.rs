//! Thread-per-core serving: N copies of one server, each on its own thread and
//! core, sharing one port through `SO_REUSEPORT` (the kernel spreads new
//! connections over the copies' listeners).
//!
//! Owns the port the copies share ([`SharedPort`], for copies that bind for
//! themselves, as paste-rt runtimes do), binding N listeners up front for peers
//! ([`reuseport_listeners`]), and running peer copies on pinned threads
//! ([`run_copies`]). It never speaks a protocol and never measures.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// How long a copy waits for the first copy to pick the port.
const PORT_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct PortState {
    /// The first copy is binding the requested port 0.
    claimed: bool,
    /// The port every copy binds.
    chosen: Option<u16>,
    /// Why the first copy could not bind.
    failed: Option<String>,
    /// Copies bound so far.
    bound: usize,
}

/// One port for `copies` copies that each bind their own listener. With port 0
/// the first copy binds any free port and the others wait for it and bind the
/// same one.
#[derive(Debug)]
pub struct SharedPort {
    requested: u16,
    copies: usize,
    state: Mutex<PortState>,
    changed: Condvar,
}

impl SharedPort {
    /// The port `requested` (0: any) for `copies` copies.
    pub fn new(requested: u16, copies: usize) -> SharedPort {
        SharedPort { requested, copies: copies.max(1), state: Mutex::default(), changed: Condvar::new() }
    }

    /// The port this copy binds: the requested one; with port 0, 0 for the first
    /// copy to ask (which must then report [`bound`](Self::bound) or
    /// [`failed`](Self::failed)) and the first copy's port for the others.
    ///
    /// # Errors
    /// The first copy failed, or did not bind within 10 s.
    pub fn port_to_bind(&self) -> Result<u16, String> {
        if self.requested != 0 {
            return Ok(self.requested);
        }
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !s.claimed {
            s.claimed = true;
            return Ok(0);
        }
        loop {
            if let Some(port) = s.chosen {
                return Ok(port);
            }
            if let Some(why) = &s.failed {
                return Err(format!("the first copy could not bind: {why}"));
            }
            let (next, timeout) = self.changed.wait_timeout(s, PORT_WAIT).unwrap_or_else(|e| e.into_inner());
            s = next;
            if timeout.timed_out() && s.chosen.is_none() && s.failed.is_none() {
                return Err(format!("the first copy did not bind within {} s", PORT_WAIT.as_secs()));
            }
        }
    }

    /// A copy is listening on `port`; `true` for the last of the copies.
    pub fn bound(&self, port: u16) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.chosen.get_or_insert(port);
        s.bound += 1;
        self.changed.notify_all();
        s.bound == self.copies
    }

    /// The copy that was to pick the port could not bind.
    pub fn failed(&self, why: String) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.failed.get_or_insert(why);
        self.changed.notify_all();
    }
}

fn bind_one(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// `copies` listeners on `addr` (port 0: any free port, the same for all), sharing
/// it with `SO_REUSEPORT` when there are several.
///
/// # Errors
/// The failed bind, saying which address and copy.
pub fn reuseport_listeners(addr: SocketAddr, copies: usize) -> io::Result<Vec<TcpListener>> {
    let copies = copies.max(1);
    let first = bind_one(addr, copies > 1).map_err(|e| io::Error::new(e.kind(), format!("binding {addr}: {e}")))?;
    let bound = first.local_addr()?;
    let mut listeners = vec![first];
    for i in 1..copies {
        let l = bind_one(bound, true)
            .map_err(|e| io::Error::new(e.kind(), format!("binding {bound} for copy {i} (SO_REUSEPORT): {e}")))?;
        listeners.push(l);
    }
    Ok(listeners)
}

/// Runs `serve` once per listener: copy `i` on its own thread pinned to
/// `cores[i % cores.len()]` (no pinning without cores), copy 0 on the calling
/// thread. Copies serve until the process ends; one that stops with an error ends
/// the process (status 1, the error on stderr), since the run it serves is then
/// no longer what was asked for.
pub fn run_copies<T, F>(name: &str, listeners: Vec<T>, cores: &[usize], serve: F) -> io::Result<()>
where
    T: Send + 'static,
    F: Fn(T) -> io::Result<()> + Send + Sync + Clone + 'static,
{
    let core_of = |i: usize| (!cores.is_empty()).then(|| cores[i % cores.len()]);
    let pin = |copy: &str, core: Option<usize>| {
        if let Some(core) = core {
            if let Err(e) = crate::system::pin_current_thread(core) {
                eprintln!("paste-bench serve: {copy}: {e}");
            }
        }
    };
    let mut listeners = listeners.into_iter().enumerate();
    let Some((_, first)) = listeners.next() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no listener to serve"));
    };
    for (i, listener) in listeners {
        let (serve, copy, core) = (serve.clone(), format!("{name}-{i}"), core_of(i));
        std::thread::Builder::new().name(copy.clone()).spawn(move || {
            pin(&copy, core);
            let outcome = serve(listener);
            eprintln!("paste-bench serve: {copy} stopped: {outcome:?}");
            std::process::exit(1);
        })?;
    }
    pin(&format!("{name}-0"), core_of(0));
    serve(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn copies_binding_port_zero_end_up_on_one_port() {
        let shared = Arc::new(SharedPort::new(0, 4));
        let copies: Vec<_> = (0..4)
            .map(|_| {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let port = shared.port_to_bind().unwrap();
                    let l = bind_one(SocketAddr::from(([127, 0, 0, 1], port)), true).unwrap();
                    let got = l.local_addr().unwrap().port();
                    (got, shared.bound(got), l)
                })
            })
            .collect();
        let results: Vec<_> = copies.into_iter().map(|c| c.join().unwrap()).collect();
        let port = results[0].0;
        assert!(
            port != 0 && results.iter().all(|r| r.0 == port),
            "{:?}",
            results.iter().map(|r| r.0).collect::<Vec<_>>()
        );
        assert_eq!(results.iter().filter(|r| r.1).count(), 1, "exactly one copy is the last");
    }

    #[test]
    fn a_first_copy_that_fails_fails_the_others() {
        let shared = SharedPort::new(0, 2);
        assert_eq!(shared.port_to_bind(), Ok(0));
        shared.failed("EADDRINUSE".into());
        assert_eq!(shared.port_to_bind(), Err("the first copy could not bind: EADDRINUSE".into()));
        assert_eq!(SharedPort::new(8080, 3).port_to_bind(), Ok(8080));
    }

    #[test]
    fn reuseport_listeners_share_one_port_and_all_accept() {
        let listeners = reuseport_listeners(SocketAddr::from(([127, 0, 0, 1], 0)), 3).unwrap();
        let port = listeners[0].local_addr().unwrap().port();
        assert!(listeners.iter().all(|l| l.local_addr().unwrap().port() == port));
        let single = reuseport_listeners(SocketAddr::from(([127, 0, 0, 1], 0)), 1).unwrap();
        assert_eq!(single.len(), 1);
        // A second plain bind of a single (non-reuseport) listener's port fails.
        let taken = single[0].local_addr().unwrap();
        assert!(bind_one(taken, true).is_err());
    }
}
