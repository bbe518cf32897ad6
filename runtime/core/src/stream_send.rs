//! [`StreamSend`]: one stream's send side, looked up once for a backend's write
//! loop, and the rule that picks the next [`SendStep`].
//!
//! A backend that writes from the queue itself (epoll's `send`, io_uring's send
//! SQE) asks what to do, reads the queue's front, reports what the kernel took and
//! asks again. Through [`IoTable::stream_send`](crate::IoTable::stream_send) that is
//! one record lookup for the whole loop instead of one per call.

use crate::record::{flag, IoRecord, TX_HIGH_WATER};
use crate::send::SendQueue;
use crate::table::SendStep;

/// The next step on a stream's send path; counts a wake of its sender into
/// `wakes`. [`SendStep::Idle`] and [`SendStep::Close`] disengage the backend.
#[inline]
fn next_send_step(r: &mut IoRecord, wakes: &mut u64) -> SendStep {
    if r.tx_errno == 0 {
        if !r.tx.is_empty() {
            return SendStep::Data;
        }
        if r.tx_taken > 0 {
            return SendStep::Wait;
        }
        if let Some(how) = r.tx.take_shutdown() {
            return SendStep::Shutdown(how);
        }
    }
    r.flags &= !flag::SEND_ENGAGED;
    *wakes += r.wake_tx() as u64;
    idle_or_close(r)
}

/// The step of a send path the backend just left: [`SendStep::Close`] when the
/// handle is gone (its close waited for the sends, and waits no longer), else
/// [`SendStep::Idle`].
#[inline(always)]
pub(crate) fn idle_or_close(r: &mut IoRecord) -> SendStep {
    if r.flags & flag::LINGER != 0 {
        r.flags = (r.flags & !flag::LINGER) | flag::CLOSED;
        SendStep::Close
    } else {
        SendStep::Idle
    }
}

/// A live stream's send side, borrowed from its [`IoTable`](crate::IoTable) for one
/// write loop (see the module docs).
#[derive(Debug)]
pub struct StreamSend<'a> {
    record: &'a mut IoRecord,
    wakes: &'a mut u64,
}

impl<'a> StreamSend<'a> {
    #[inline]
    pub(crate) fn new(record: &'a mut IoRecord, wakes: &'a mut u64) -> StreamSend<'a> {
        StreamSend { record, wakes }
    }

    /// What to do next: the same answer as
    /// [`IoTable::send_step`](crate::IoTable::send_step).
    #[inline]
    pub fn step(&mut self) -> SendStep {
        next_send_step(self.record, self.wakes)
    }

    /// What waits to be sent.
    #[inline]
    pub fn queue(&self) -> &SendQueue {
        &self.record.tx
    }

    /// The kernel took `bytes` more of the queued bytes: the same as
    /// [`IoTable::sent`](crate::IoTable::sent). Wakes a sender waiting for room and
    /// returns the next step.
    #[inline]
    pub fn sent(&mut self, bytes: u64) -> SendStep {
        self.record.tx.advance(bytes);
        step_after_progress(self.record, self.wakes)
    }
}

/// The next step once the kernel took some of `r`'s queue (sent, or taken from a
/// backend's own ring): a sender waiting for room is woken once what is pending is
/// back under the limit. (`Idle` and `Close` woke it already: the common case
/// looks once.)
#[inline]
pub(crate) fn step_after_progress(r: &mut IoRecord, wakes: &mut u64) -> SendStep {
    let step = next_send_step(r, wakes);
    if matches!(step, SendStep::Data | SendStep::Wait | SendStep::Shutdown(_)) && r.tx_pending() <= TX_HIGH_WATER {
        *wakes += r.wake_tx() as u64;
    }
    step
}
