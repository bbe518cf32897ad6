//! Choosing and starting a backend (docs/architecture.md, choosing a backend), and
//! the enum that dispatches to it statically.
//!
//! `auto` tries kernel PASTE, then io_uring, then epoll, and reports one line naming
//! the backend chosen and why each earlier one was skipped (a `tracing` event, see
//! [`report`]). An explicitly requested backend that cannot start is an error carrying
//! its reason — never a silent substitute. Sibling runtimes of a thread group start
//! exactly the backend the first one chose ([`start_same`]). This module owns no I/O
//! state of its own and reads no environment (the overrides are applied before).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use paste_rt_core::{Backend, BackendKind, BufPool, Capabilities, IoTable, RemoteWake, StartError, Stats, Token, Wait};
use paste_rt_epoll::{EpollBackend, EpollConfig};
use paste_rt_paste::{EmuSettings, KernelConfig, PasteBackend};
use paste_rt_uring::{UringBackend, UringConfig};

use crate::build_error::BuildError;

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

/// What each backend is started with: the program's typed configs with the
/// builder's pool set in each, and the operator's overrides already applied.
#[derive(Debug, Clone)]
pub(crate) struct BackendSettings {
    pub(crate) epoll: EpollConfig,
    pub(crate) uring: UringConfig,
    pub(crate) paste: KernelConfig,
    pub(crate) paste_emu: EmuSettings,
    /// The pool every backend gets (kernel PASTE applies it to its configuration when
    /// it starts: a file-backed pool is its extmem file).
    pub(crate) pool: paste_rt_core::PoolConfig,
}

/// The compiled-in backends, dispatched with a `match` (no boxing per op).
/// One lives per runtime thread, so variant sizes do not matter. The tag is a
/// byte of its own (`repr(u8)`): each dispatch is one compare, where a tag folded
/// into a niche of the epoll variant's fields costs a decode of several
/// instructions, several times per request.
#[allow(clippy::large_enum_variant)]
#[repr(u8)]
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
    #[inline(always)]
    pub(crate) fn send_queued_data(&mut self, io: &mut IoTable, token: Token) {
        each!(self, b => b.send_queued_data(io, token))
    }
    pub(crate) fn close(&mut self, io: &mut IoTable, token: Token) {
        each!(self, b => b.close(io, token))
    }
    #[inline]
    pub(crate) fn poll(&mut self, io: &mut IoTable, wait: Wait) -> io::Result<()> {
        each!(self, b => b.poll(io, wait))
    }
    pub(crate) fn remote_waker(&self) -> Arc<dyn RemoteWake> {
        each!(self, b => b.remote_waker())
    }
}

/// Starts one backend.
fn start_one(kind: BackendKind, settings: &BackendSettings) -> Result<AnyBackend, StartError> {
    match kind {
        BackendKind::Epoll => EpollBackend::new(settings.epoll.clone()).map(AnyBackend::Epoll),
        BackendKind::Uring => UringBackend::new(&settings.uring).map(|b| AnyBackend::Uring(Box::new(b))),
        BackendKind::Paste => {
            PasteBackend::kernel(&settings.paste, &settings.pool).map(|b| AnyBackend::Paste(Box::new(b)))
        }
        BackendKind::PasteEmu => {
            PasteBackend::emulated_with(settings.paste_emu.clone()).map(|b| AnyBackend::Paste(Box::new(b)))
        }
    }
}

/// The order `auto` tries backends in (paste-emu is a stand-in, never chosen).
pub(crate) const AUTO_ORDER: [BackendKind; 3] = [BackendKind::Paste, BackendKind::Uring, BackendKind::Epoll];

/// Starts the chosen backend; for `auto`, the first that starts.
pub(crate) fn start(choice: BackendChoice, settings: &BackendSettings) -> Result<(AnyBackend, Selection), BuildError> {
    match choice {
        BackendChoice::Only(kind) => {
            let b = start_one(kind, settings)?;
            let detail = b.describe();
            Ok((b, Selection { kind, choice, detail, skipped: vec![] }))
        }
        BackendChoice::Auto => {
            let mut tried = vec![];
            for kind in AUTO_ORDER {
                match start_one(kind, settings) {
                    Ok(b) => {
                        let detail = b.describe();
                        let skipped = tried.into_iter().map(|e: StartError| (e.backend, e.reason)).collect();
                        return Ok((b, Selection { kind, choice, detail, skipped }));
                    }
                    Err(e) => tried.push(e),
                }
            }
            Err(BuildError::NoBackend { tried })
        }
    }
}

/// Starts exactly the backend `first` runs (a sibling of a thread group), reporting
/// the same selection: a group never mixes backends, and `auto` is resolved once.
pub(crate) fn start_same(first: &Selection, settings: &BackendSettings) -> Result<(AnyBackend, Selection), StartError> {
    let b = start_one(first.kind, settings)?;
    let detail = b.describe();
    Ok((b, Selection { kind: first.kind, choice: first.choice, detail, skipped: first.skipped.clone() }))
}

/// Reports a selection through `tracing` (target `paste_rt::select`): one `INFO`
/// event naming the backend and why earlier candidates were skipped, and one
/// `DEBUG` event per skipped candidate. A process with no `tracing` subscriber at
/// all gets the same line on stderr instead when `auto` chose, unless `quiet`, so
/// that a plain program still says which backend it runs.
pub(crate) fn report(selection: &Selection, quiet: bool) {
    for (kind, why) in &selection.skipped {
        tracing::debug!(target: "paste_rt::select", backend = %kind, reason = %why, "backend skipped");
    }
    tracing::info!(
        target: "paste_rt::select",
        backend = %selection.kind,
        choice = %selection.choice,
        detail = %selection.detail,
        skipped = selection.skipped.len(),
        "paste-rt: {selection}"
    );
    let no_subscriber = tracing::dispatcher::get_default(|d| d.is::<tracing::subscriber::NoSubscriber>());
    if no_subscriber && selection.choice == BackendChoice::Auto && !quiet {
        eprintln!("paste-rt: {selection}");
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

    fn settings() -> BackendSettings {
        let pool = paste_rt_core::PoolConfig { count: 256, ..Default::default() };
        BackendSettings {
            epoll: EpollConfig { pool: pool.clone(), ..EpollConfig::default() },
            uring: UringConfig { pool: pool.clone(), ..UringConfig::default() },
            paste: KernelConfig { device: "/nonexistent/netmap".into(), ..KernelConfig::default() },
            paste_emu: EmuSettings::new(pool.clone()),
            pool,
        }
    }

    #[test]
    fn a_sibling_starts_exactly_the_first_threads_backend_or_fails() {
        // Thread 0 resolved `auto` to uring; on this sibling uring cannot start (here:
        // its pool cannot be made), while epoll could. `auto` would fall back; a
        // sibling must not.
        let first = Selection {
            kind: BackendKind::Uring,
            choice: BackendChoice::Auto,
            detail: String::new(),
            skipped: vec![(BackendKind::Paste, "no netmap".into())],
        };
        let mut refused = settings();
        refused.uring.pool.buf_size = 0;
        let (_, fallback) = start(BackendChoice::Auto, &refused).unwrap();
        assert_eq!(fallback.kind, BackendKind::Epoll, "the scenario needs auto to fall back here");
        let e = start_same(&first, &refused).err().expect("a sibling must not fall back");
        assert_eq!(e.backend, BackendKind::Uring);
        // Where it can start, the sibling reports the first thread's selection.
        let epoll_first = Selection { kind: BackendKind::Epoll, ..first };
        let (_, same) = start_same(&epoll_first, &settings()).unwrap();
        assert_eq!(
            (same.kind, same.choice, same.skipped),
            (BackendKind::Epoll, BackendChoice::Auto, epoll_first.skipped)
        );
    }
}
