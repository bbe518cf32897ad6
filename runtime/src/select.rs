//! Choosing and starting a backend (DESIGN.md §5), and the enum that dispatches to
//! it statically.
//!
//! `auto` tries kernel PASTE, then io_uring, then epoll, and reports one line naming
//! the backend chosen and why each earlier one was skipped. An explicitly requested
//! backend that cannot start is an error carrying its reason — never a silent
//! substitute. This module owns no I/O state of its own.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use paste_rt_core::{
    Backend, BackendKind, BufPool, Capabilities, IoTable, PoolConfig, RemoteWake, StartError, Stats, Token,
};
use paste_rt_epoll::{EpollBackend, EpollConfig};
use paste_rt_paste::PasteBackend;
use paste_rt_uring::{UringBackend, UringConfig};

/// Which backend to run: one by name, or `auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// The best that starts here: paste, then uring, then epoll.
    #[default]
    Auto,
    /// Exactly this one, or an error.
    Only(BackendKind),
}

impl FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "auto" | "" => Ok(BackendChoice::Auto),
            other => other.parse().map(BackendChoice::Only).map_err(|e: String| e.replace("one of:", "one of: auto,")),
        }
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendChoice::Auto => f.write_str("auto"),
            BackendChoice::Only(k) => f.write_str(k.name()),
        }
    }
}

/// What was chosen and why: the backend, what it uses, and for `auto` the reason
/// each earlier candidate was skipped.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The backend running.
    pub kind: BackendKind,
    /// How it was asked for.
    pub choice: BackendChoice,
    /// The backend's own description (probed features).
    pub detail: String,
    /// Candidates `auto` tried first, with the reason each did not start.
    pub skipped: Vec<(BackendKind, String)>,
}

impl fmt::Display for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "backend {} ({}; {})", self.kind, self.choice, self.detail)?;
        for (k, why) in &self.skipped {
            write!(f, "; skipped {k}: {why}")?;
        }
        Ok(())
    }
}

/// Settings every backend receives.
#[derive(Debug, Clone, Default)]
pub(crate) struct BackendSettings {
    pub(crate) pool: PoolConfig,
}

/// The compiled-in backends, dispatched with a `match` (no boxing per op).
/// One lives per runtime thread, so variant sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum AnyBackend {
    Epoll(EpollBackend),
    Uring(Box<UringBackend>),
    Paste(Box<PasteBackend>),
}

macro_rules! each {
    ($self:expr, $b:ident => $e:expr) => {
        match $self {
            AnyBackend::Epoll($b) => $e,
            AnyBackend::Uring($b) => $e,
            AnyBackend::Paste($b) => $e,
        }
    };
}

impl AnyBackend {
    pub(crate) fn describe(&self) -> String {
        each!(self, b => b.describe())
    }
    pub(crate) fn capabilities(&self) -> Capabilities {
        each!(self, b => b.capabilities())
    }
    pub(crate) fn pool(&self) -> &BufPool {
        each!(self, b => b.pool())
    }
    pub(crate) fn stats(&self) -> &Stats {
        each!(self, b => b.stats())
    }
    pub(crate) fn listen(&mut self, io: &mut IoTable, token: Token) {
        each!(self, b => b.listen(io, token))
    }
    pub(crate) fn register(&mut self, io: &mut IoTable, token: Token) {
        each!(self, b => b.register(io, token))
    }
    pub(crate) fn connect(&mut self, io: &mut IoTable, token: Token, addr: SocketAddr) {
        each!(self, b => b.connect(io, token, addr))
    }
    pub(crate) fn bind_dgram(&mut self, io: &mut IoTable, token: Token) {
        each!(self, b => b.bind_dgram(io, token))
    }
    #[inline]
    pub(crate) fn resume_recv(&mut self, io: &mut IoTable, token: Token) {
        each!(self, b => b.resume_recv(io, token))
    }
    #[inline]
    pub(crate) fn send(&mut self, io: &mut IoTable, token: Token) {
        each!(self, b => b.send(io, token))
    }
    pub(crate) fn close(&mut self, io: &mut IoTable, token: Token) {
        each!(self, b => b.close(io, token))
    }
    #[inline]
    pub(crate) fn poll(&mut self, io: &mut IoTable, timeout: Option<Duration>) -> io::Result<()> {
        each!(self, b => b.poll(io, timeout))
    }
    pub(crate) fn remote_waker(&self) -> Arc<dyn RemoteWake> {
        each!(self, b => b.remote_waker())
    }
}

/// Starts one backend.
fn start_one(kind: BackendKind, settings: &BackendSettings) -> Result<AnyBackend, StartError> {
    match kind {
        BackendKind::Epoll => EpollBackend::new(EpollConfig { pool: settings.pool.clone(), ..EpollConfig::default() })
            .map(AnyBackend::Epoll),
        BackendKind::Uring => UringBackend::new(&UringConfig { pool: settings.pool.clone(), ..UringConfig::default() })
            .map(|b| AnyBackend::Uring(Box::new(b))),
        BackendKind::Paste => PasteBackend::kernel(settings.pool.clone()).map(|b| AnyBackend::Paste(Box::new(b))),
        BackendKind::PasteEmu => PasteBackend::emulated(settings.pool.clone()).map(|b| AnyBackend::Paste(Box::new(b))),
    }
}

/// Starts the chosen backend; for `auto`, the first that starts.
pub(crate) fn start(choice: BackendChoice, settings: &BackendSettings) -> Result<(AnyBackend, Selection), StartError> {
    match choice {
        BackendChoice::Only(kind) => {
            let b = start_one(kind, settings)?;
            let detail = b.describe();
            Ok((b, Selection { kind, choice, detail, skipped: vec![] }))
        }
        BackendChoice::Auto => {
            let mut skipped = vec![];
            let order = [BackendKind::Paste, BackendKind::Uring, BackendKind::Epoll];
            let mut last = None;
            for kind in order {
                match start_one(kind, settings) {
                    Ok(b) => {
                        let detail = b.describe();
                        return Ok((b, Selection { kind, choice, detail, skipped }));
                    }
                    Err(e) => {
                        skipped.push((kind, e.reason.clone()));
                        last = Some(e);
                    }
                }
            }
            Err(last.expect("auto has candidates"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_choices() {
        assert_eq!("auto".parse::<BackendChoice>().unwrap(), BackendChoice::Auto);
        assert_eq!("paste-emu".parse::<BackendChoice>().unwrap(), BackendChoice::Only(BackendKind::PasteEmu));
        let e = "iouring".parse::<BackendChoice>().unwrap_err();
        assert!(e.contains("auto, paste, paste-emu, uring, epoll"), "{e}");
    }
}
