//! Accepting: the listeners a tick walks, each up to its budget, and the retry of
//! listeners that ran out of fds.

use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Instant;

use paste_rt_core::{IoTable, Stats, Token};

use super::{EpollBackend, Role, SockFlags, ACCEPT_RETRY};
use crate::sys;

impl EpollBackend {
    /// Accepts from every listener that is ready (or starved and due for a retry).
    /// The test for none is inlined into the tick; the walk is not.
    #[inline(always)]
    pub(super) fn accept_ready(&mut self, io: &mut IoTable) {
        let freed = std::mem::take(&mut self.fd_freed);
        if !(self.to_accept.is_empty() && self.starved.is_empty()) {
            self.accept_listed(io, freed);
        }
    }

    /// Accepts from the listed listeners and the starved ones due for a retry
    /// (`freed`: an fd was closed since the last look).
    #[inline(never)]
    fn accept_listed(&mut self, io: &mut IoTable, freed: bool) {
        let mut list = std::mem::take(&mut self.to_accept);
        // Starved listeners are retried when an fd was closed or the backoff passed.
        for &(t, since) in &self.starved {
            if (freed || since.elapsed() >= ACCEPT_RETRY) && !list.contains(&t) {
                list.push(t);
            }
        }
        for t in list.drain(..) {
            self.accept_from(io, t);
        }
        // accept_from re-queues listeners whose budget ran out into the fresh list:
        // keep them (edge-triggered epoll will not report them again).
        list.append(&mut self.to_accept);
        self.to_accept = list;
    }

    fn accept_from(&mut self, io: &mut IoTable, t: Token) {
        for _ in 0..self.config.accept_budget {
            let Some(l) = self.socks.get_mut(t.index()).filter(|s| s.role == Role::Listener) else { return };
            match sys::accept(&self.stats, l.fd) {
                Ok(fd) => {
                    if !self.starved.is_empty() {
                        self.starved.retain(|&(l, _)| l != t);
                    }
                    Stats::add(&self.stats.accepts, 1);
                    match io.accepted(t, fd) {
                        Some(new) => self.watch_stream(io, new, false),
                        // SAFETY: the kernel just handed us this fd; nobody else has it.
                        None => sys::close(&self.stats, unsafe { OwnedFd::from_raw_fd(fd) }),
                    }
                }
                Err(e) => match e.raw_os_error() {
                    Some(libc::EAGAIN) => {
                        l.flags.set(SockFlags::ACCEPT_READY, false);
                        self.starved.retain(|&(l, _)| l != t);
                        return;
                    }
                    Some(libc::EINTR | libc::ECONNABORTED | libc::EPROTO) => continue,
                    Some(code) => {
                        // EMFILE, ENFILE, ENOBUFS, ENOMEM: report once per episode,
                        // then retry after a close or the backoff, never in a loop.
                        l.flags.set(SockFlags::ACCEPT_READY, true);
                        let now = Instant::now();
                        let first = match self.starved.iter_mut().find(|(l, _)| *l == t) {
                            Some((_, since)) => {
                                *since = now;
                                false
                            }
                            None => {
                                self.starved.push((t, now));
                                true
                            }
                        };
                        if first {
                            io.accept_failed(t, code);
                        }
                        return;
                    }
                    None => return,
                },
            }
        }
        // Budget used up: more may be waiting.
        if let Some(l) = self.sock(t) {
            l.flags.set(SockFlags::ACCEPT_READY, true);
        }
        self.to_accept.push(t);
    }

    /// Listener `t` has connections waiting: list it for accepting (unless it is
    /// starved: then it waits for its retry). Out of line: not per request.
    #[inline(never)]
    pub(super) fn listener_ready(&mut self, t: Token) {
        let Some(l) = self.socks.get_mut(t.index()) else { return };
        l.flags.set(SockFlags::ACCEPT_READY, true);
        if !self.starved.iter().any(|&(s, _)| s == t) && !self.to_accept.contains(&t) {
            self.to_accept.push(t);
        }
    }
}
