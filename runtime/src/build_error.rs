//! [`BuildError`]: why [`Builder`](crate::runtime::Builder) could not start a runtime.
//!
//! Owns the errors of starting, and only of starting: a backend name nobody knows
//! (saying where it came from and which names are valid), a backend that could not
//! start (core's [`StartError`], which names the backend), `auto` finding none, an
//! operator override that cannot be used, and the runtime threads themselves. Each
//! reads as one line a user can act on. It must never describe a failure after
//! start: those are `io::Error`s of the operation that failed.

use std::fmt;
use std::io;

use paste_rt_core::{BackendKind, StartError};

/// Where a backend name came from, for the "unknown backend" message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChoiceOrigin {
    /// The program: [`Builder::backend`](crate::runtime::Builder::backend), which
    /// examples feed from their `--backend` flag.
    Program,
    /// The operator: the `PASTE_RT_BACKEND` environment variable.
    Environment,
}

impl fmt::Display for ChoiceOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChoiceOrigin::Program => f.write_str("set by the program (its --backend flag or Builder::backend)"),
            ChoiceOrigin::Environment => write!(f, "in {}", crate::overrides::BACKEND),
        }
    }
}

/// The names a backend choice accepts, in the order `auto` considers them.
pub fn valid_backend_names() -> String {
    let mut names = vec!["auto"];
    names.extend(BackendKind::ALL.iter().map(|k| k.name()));
    names.join(", ")
}

/// Why a runtime (or a group of runtime threads) did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The backend name is not one paste-rt knows. Nothing was started.
    #[error("unknown backend {name:?} {origin} (expected one of: {})", valid_backend_names())]
    UnknownBackend {
        /// The name as given.
        name: String,
        /// Who gave it.
        origin: ChoiceOrigin,
    },
    /// The backend asked for could not start; the error names it and says why.
    #[error(transparent)]
    Backend(#[from] StartError),
    /// `auto` tried every candidate and none started.
    #[error("no backend could start: {}", join_reasons(.tried))]
    NoBackend {
        /// Each candidate's error, in the order tried.
        tried: Vec<StartError>,
    },
    /// An operator override (environment variable) holds a value that cannot be used.
    #[error("{var}={value:?} cannot be used: {expected}")]
    BadOverride {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What it must be.
        expected: String,
    },
    /// Runtime thread `index` could not start the backend that thread 0 chose (every
    /// thread of a group runs the same backend).
    #[error("runtime thread {index}: {source}")]
    Thread {
        /// The thread (1 and up; thread 0 is the caller's).
        index: usize,
        /// Its start error.
        source: StartError,
    },
    /// The operating system refused to create a runtime thread.
    #[error("cannot create runtime thread {index}: {source}")]
    Spawn {
        /// The thread that could not be created.
        index: usize,
        /// The system's error.
        source: io::Error,
    },
    /// A runtime thread ended (it panicked) before saying whether its runtime started.
    #[error("runtime thread {index} ended before its runtime started (it panicked)")]
    ThreadLost {
        /// The thread.
        index: usize,
    },
}

impl BuildError {
    /// The errno behind the failure, when a system call failed.
    pub fn errno(&self) -> Option<i32> {
        match self {
            BuildError::Backend(e) | BuildError::Thread { source: e, .. } => e.errno,
            BuildError::NoBackend { tried } => tried.last().and_then(|e| e.errno),
            BuildError::Spawn { source, .. } => source.raw_os_error(),
            BuildError::UnknownBackend { .. } | BuildError::BadOverride { .. } | BuildError::ThreadLost { .. } => None,
        }
    }

    /// The backend the error concerns, if it concerns one.
    pub fn backend(&self) -> Option<BackendKind> {
        match self {
            BuildError::Backend(e) | BuildError::Thread { source: e, .. } => Some(e.backend),
            _ => None,
        }
    }
}

fn join_reasons(tried: &[StartError]) -> String {
    tried.iter().map(|e| format!("{}: {}", e.backend, e.reason)).collect::<Vec<_>>().join("; ")
}

impl From<BuildError> for io::Error {
    /// A start error as an `io::Error` (kind `Other`, or the errno's kind), for
    /// programs whose `main` returns `io::Result`.
    fn from(e: BuildError) -> io::Error {
        match e.errno() {
            Some(errno) => io::Error::new(io::Error::from_raw_os_error(errno).kind(), e.to_string()),
            None => io::Error::other(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_name_says_where_it_came_from_and_lists_the_valid_ones() {
        let e = BuildError::UnknownBackend { name: "iouring".into(), origin: ChoiceOrigin::Environment };
        assert_eq!(
            e.to_string(),
            "unknown backend \"iouring\" in PASTE_RT_BACKEND (expected one of: auto, paste, paste-emu, uring, epoll)"
        );
        let e = BuildError::UnknownBackend { name: "bogus".into(), origin: ChoiceOrigin::Program };
        let text = e.to_string();
        assert!(text.starts_with("unknown backend \"bogus\" set by the program"), "{text}");
        assert!(!text.contains("cannot start"), "{text}");
        assert_eq!((e.backend(), e.errno()), (None, None));
    }

    #[test]
    fn auto_finding_none_lists_every_reason() {
        let tried = vec![
            StartError { backend: BackendKind::Paste, reason: "/dev/netmap does not exist".into(), errno: Some(2) },
            StartError { backend: BackendKind::Epoll, reason: "epoll_create1: EMFILE".into(), errno: Some(24) },
        ];
        let e = BuildError::NoBackend { tried };
        assert_eq!(
            e.to_string(),
            "no backend could start: paste: /dev/netmap does not exist; epoll: epoll_create1: EMFILE"
        );
        assert_eq!(e.errno(), Some(24));
        assert_eq!(io::Error::from(e).kind(), io::Error::from_raw_os_error(24).kind());
    }

    #[test]
    fn a_thread_error_names_the_thread_and_the_backend() {
        let source =
            StartError { backend: BackendKind::Uring, reason: "io_uring_setup: EMFILE".into(), errno: Some(24) };
        let e = BuildError::Thread { index: 2, source };
        assert_eq!(e.to_string(), "runtime thread 2: cannot start the uring backend: io_uring_setup: EMFILE");
        assert_eq!(e.backend(), Some(BackendKind::Uring));
    }
}
