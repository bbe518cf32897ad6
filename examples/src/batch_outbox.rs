//! [`BatchOutbox`]: replies written during a batch handler (`paste_rt::batch`),
//! into pool buffers, one connection at a time.
//!
//! Owns the buffer being filled and which connection it is for; a buffer is queued
//! when it fills, when the handler moves on to another connection, or at
//! [`finish`](BatchOutbox::finish). It never decides what to reply, and allocates
//! only when the pool is exhausted (the bytes then go as an owned copy). A canned
//! reply that is its connection's only one in the batch is queued as it is; several
//! small ones (answers to pipelined requests) are copied together into a pool
//! buffer, as in [`Outbox`](crate::outbox::Outbox): one queued item per connection
//! and batch.

use paste_rt::batch::{Batch, ConnId};
use paste_rt::{SendData, TxBuf};

use crate::outbox::{put_within, COPY_CANNED_MAX};

/// Replies of the connection being handled in a batch.
#[derive(Debug, Default)]
pub struct BatchOutbox {
    tx: Option<TxBuf>,
    /// A canned reply put while nothing else was: queued as it is when the
    /// connection's turn ends, copied when more follows (never set with `tx`).
    canned: Option<&'static [u8]>,
    conn: Option<ConnId>,
}

impl BatchOutbox {
    /// An empty outbox.
    pub fn new() -> BatchOutbox {
        BatchOutbox::default()
    }

    /// Directs the following replies to `conn` (queueing what was written for the
    /// previous connection).
    #[inline]
    pub fn start(&mut self, batch: &mut Batch<'_>, conn: ConnId) {
        if self.conn != Some(conn) {
            if self.canned.is_some() || self.tx.is_some() {
                self.queue_pending(batch, false);
            }
            self.conn = Some(conn);
        }
    }

    /// Appends `bytes` to the current connection's replies.
    #[inline]
    pub fn put(&mut self, batch: &mut Batch<'_>, bytes: &[u8]) {
        // The common case, inlined into the handler: answers to pipelined requests
        // after the first, short pieces of a reply. (A held canned reply never comes
        // with a buffer.)
        if !put_within(&mut self.tx, bytes) {
            self.put_slow(batch, bytes);
        }
    }

    /// [`put`](Self::put) when there is no buffer yet, or `bytes` fill it up.
    #[inline(never)]
    fn put_slow(&mut self, batch: &mut Batch<'_>, bytes: &[u8]) {
        if let Some(canned) = self.canned.take() {
            // More than one reply for this connection: the held one goes first,
            // copied when small.
            match self.conn {
                Some(conn) if canned.len() > COPY_CANNED_MAX => {
                    let _ = batch.send_more(conn, SendData::Static(canned));
                }
                _ => self.copy(batch, canned),
            }
        }
        self.copy(batch, bytes);
    }

    /// Copies `bytes` into pool buffers for the current connection.
    fn copy(&mut self, batch: &mut Batch<'_>, mut bytes: &[u8]) {
        let Some(conn) = self.conn else { return };
        while !bytes.is_empty() {
            if self.tx.as_ref().is_some_and(|t| t.remaining() == 0) {
                self.queue_pending(batch, true);
            }
            let tx = match &mut self.tx {
                Some(tx) => tx,
                None => match batch.tx_buf() {
                    Some(tx) => self.tx.insert(tx),
                    None => {
                        let _ = batch.send_more(conn, SendData::Owned(bytes.to_vec()));
                        return;
                    }
                },
            };
            let n = tx.put(bytes);
            bytes = &bytes[n..];
        }
    }

    /// Appends bytes that live for ever (a canned response) for the current
    /// connection, after whatever was put before them: its only reply in the batch
    /// is queued as it is (no copy on io_uring and epoll), one of several is copied
    /// with the others when it is at most [`COPY_CANNED_MAX`] bytes, and queued as
    /// it is when larger.
    #[inline]
    pub fn put_static(&mut self, batch: &mut Batch<'_>, bytes: &'static [u8]) {
        if self.tx.is_none() && self.canned.is_none() {
            self.canned = Some(bytes);
        } else {
            self.put_static_behind(batch, bytes);
        }
    }

    /// [`put_static`](Self::put_static) after another reply.
    #[inline(never)]
    fn put_static_behind(&mut self, batch: &mut Batch<'_>, bytes: &'static [u8]) {
        // Only tail calls here (the copy's `memcpy`, the slow paths), so the common
        // copy needs no stack frame.
        if bytes.len() <= COPY_CANNED_MAX {
            self.put(batch, bytes);
        } else {
            self.queue_large_static(batch, bytes);
        }
    }

    /// A canned reply too large to copy, after others: queued as it is.
    #[cold]
    #[inline(never)]
    fn queue_large_static(&mut self, batch: &mut Batch<'_>, bytes: &'static [u8]) {
        self.queue_pending(batch, true);
        if let Some(conn) = self.conn {
            let _ = batch.send_more(conn, SendData::Static(bytes));
        }
    }

    /// Queues what was written and forgets the connection. (A handler that finishes
    /// each connection once its data is answered queues the common lone canned reply
    /// right here.)
    #[inline(always)]
    pub fn finish(&mut self, batch: &mut Batch<'_>) {
        if let Some(canned) = self.canned.take() {
            if let Some(conn) = self.conn {
                let _ = batch.send(conn, SendData::Static(canned));
            }
        } else if self.tx.is_some() {
            self.queue_pending(batch, false);
        }
        self.conn = None;
    }

    /// Queues what was put and not queued yet: the held canned reply or the buffer
    /// being filled (never both). Replies put with no connection started are
    /// dropped. `more`: in the middle of the connection's replies (the buffer filled
    /// up, or a large canned reply follows), queued with more to follow
    /// ([`Batch::send_more`]), so that the pieces leave in one send.
    #[inline(never)]
    fn queue_pending(&mut self, batch: &mut Batch<'_>, more: bool) {
        let (canned, tx) = (self.canned.take(), self.tx.take());
        let Some(conn) = self.conn else { return };
        let data = match (canned, tx) {
            (Some(canned), _) => SendData::Static(canned),
            (None, Some(tx)) => SendData::Pool(tx),
            (None, None) => return,
        };
        let _ = if more { batch.send_more(conn, data) } else { batch.send(conn, data) };
    }
}
