//! Batch servers' groups: each server's ready list of the connections with news,
//! looked at once a tick, and the member events a batch walks.

use super::{Group, IoTable, MemberEvent};
use crate::buf::RxBuf;
use crate::record::{flag, RecordKind, Token, NO_GROUP};

impl IoTable {
    /// A new batch group (a batch server's ready list).
    pub fn add_group(&mut self) -> u32 {
        if let Some(i) = self.groups.iter().position(|g| !g.live) {
            self.groups[i].live = true;
            return i as u32;
        }
        self.groups.push(Group { live: true, ..Group::default() });
        (self.groups.len() - 1) as u32
    }

    /// Forgets a batch group. Records still in it (closing ones) leave it: a group
    /// made later in the same place starts empty.
    pub fn remove_group(&mut self, group: u32) {
        let Some(g) = self.groups.get_mut(group as usize) else { return };
        if g.members > 0 {
            for r in self.records.iter_mut().filter(|r| r.group == group) {
                r.group = NO_GROUP;
            }
        }
        *g = Group::default();
    }

    /// Adopts `token` into `group`: its events go to the group's ready list from now
    /// on. Returns whether it already has news (it is listed at once).
    pub fn join_group(&mut self, token: Token, group: u32) -> bool {
        let r = &mut self.records[token.index()];
        if r.group != group {
            r.group = group;
            self.groups[group as usize].members += 1;
        }
        r.rx_waker = None;
        r.flags &= !flag::RX_WANT;
        let news = !r.rx.is_empty() || r.rx_ended() || r.tx_errno != 0;
        if news {
            r.flags |= flag::IN_READY;
            self.groups[group as usize].ready.push(token);
        }
        news
    }

    /// Swaps `group`'s ready list with `into` (empty): the batch in hand.
    pub fn take_ready(&mut self, group: u32, into: &mut Vec<Token>) {
        if let Some(g) = self.groups.get_mut(group as usize) {
            std::mem::swap(&mut g.ready, into);
        }
    }

    /// Puts tokens the handler did not get to back on `group`'s ready list.
    pub fn requeue_ready(&mut self, group: u32, tokens: impl IntoIterator<Item = Token>) {
        if let Some(g) = self.groups.get_mut(group as usize) {
            g.ready.extend(tokens);
        }
    }

    /// Whether `group` has news: members listed since its last batch (a batch
    /// server's look once a tick).
    #[inline]
    pub fn group_has_news(&self, group: u32) -> bool {
        self.groups.get(group as usize).is_some_and(|g| !g.ready.is_empty())
    }

    /// Whether any record (closing ones included) still belongs to `group`.
    pub fn group_has_members(&self, group: u32) -> bool {
        self.groups.get(group as usize).is_some_and(|g| g.members > 0)
    }

    /// The open members of `group` (with `unreported`, only those whose end was not
    /// reported yet).
    pub fn group_members(&self, group: u32, unreported: bool) -> Vec<Token> {
        self.iter()
            .filter(|(_, r)| r.group == group && r.is_open() && (!unreported || r.flags & flag::END_REPORTED == 0))
            .map(|(t, _)| t)
            .collect()
    }

    /// The next event of a batch member: a buffer, or (once) its end with the error.
    /// `Done` when it has nothing more; it then leaves the ready state, and the
    /// returned flag says whether receiving may resume. A last buffer with nothing
    /// else pending comes as `Last`, the member out of the ready state already.
    pub fn next_member_event(&mut self, token: Token) -> MemberEvent {
        let Some(r) = self.records.get_mut(token.index()).filter(|r| r.kind == RecordKind::Stream) else {
            return MemberEvent::Done { resume: false };
        };
        if !r.is_open() {
            r.flags &= !flag::IN_READY;
            return MemberEvent::Done { resume: false };
        }
        if let Some(buf) = r.rx.pop(&self.pool) {
            // The common case, one buffer and nothing else to say: the member leaves
            // the ready state now, saving the batch a second look for `Done`.
            let quiet = r.rx.is_empty()
                && r.flags & (flag::TIMED_OUT | flag::PAUSED | flag::EOF) == 0
                && r.rx_errno == 0
                && r.tx_errno == 0;
            if quiet {
                r.flags &= !flag::IN_READY;
                return MemberEvent::Last(buf);
            }
            return MemberEvent::Data(buf);
        }
        r.flags &= !flag::IN_READY;
        if r.flags & flag::TIMED_OUT != 0 {
            r.flags &= !flag::TIMED_OUT;
            return MemberEvent::TimedOut;
        }
        let ended = r.rx_ended() || r.tx_errno != 0;
        if ended && r.flags & flag::END_REPORTED == 0 {
            r.flags |= flag::END_REPORTED;
            let errno = if r.rx_errno != 0 { r.rx_errno } else { r.tx_errno };
            return MemberEvent::End((errno != 0).then_some(errno));
        }
        let resume = r.flags & flag::PAUSED != 0;
        if resume {
            r.flags &= !flag::PAUSED;
        }
        MemberEvent::Done { resume }
    }

    /// A batch member's common news, cheaply: when `token`'s only news is one
    /// received buffer (nothing else queued, no end, error, pause or timeout), takes
    /// it and takes the member out of the ready state, as a
    /// [`MemberEvent::Last`] from [`next_member_event`](Self::next_member_event)
    /// would. `None`, changing nothing, in every other case.
    #[inline]
    pub fn take_only_buffer(&mut self, token: Token) -> Option<RxBuf> {
        let r = self.records.get_mut(token.index())?;
        let quiet = r.kind == RecordKind::Stream
            && r.rx.len() == 1
            && r.flags & (flag::LINGER | flag::CLOSED | flag::TIMED_OUT | flag::PAUSED | flag::EOF) == 0
            && r.rx_errno == 0
            && r.tx_errno == 0;
        if !quiet {
            return None;
        }
        r.flags &= !flag::IN_READY;
        Some(r.rx.pop_only(&self.pool))
    }

    /// Marks `token`'s end as reported (the handler closes it). Returns `false` if it
    /// was already.
    pub fn mark_end_reported(&mut self, token: Token) -> bool {
        match self.records.get_mut(token.index()) {
            Some(r) if r.kind == RecordKind::Stream && r.flags & flag::END_REPORTED == 0 => {
                r.flags |= flag::END_REPORTED;
                true
            }
            _ => false,
        }
    }
}
