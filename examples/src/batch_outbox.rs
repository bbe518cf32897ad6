//! [`BatchOutbox`]: replies written during a batch handler (`paste_rt::batch`),
//! into pool buffers, one connection at a time.
//!
//! Owns the buffer being filled and which connection it is for; a buffer is queued
//! when it fills, when the handler moves on to another connection, or at
//! [`finish`](BatchOutbox::finish). It never decides what to reply, and allocates
//! only when the pool is exhausted (the bytes then go as an owned copy). A
//! connection's first canned reply of a batch is queued as it is; the small ones
//! after it (pipelined requests) are copied together into a pool buffer, as in
//! [`Outbox`](crate::outbox::Outbox).

use paste_rt::batch::{Batch, ConnId};
use paste_rt::{SendData, TxBuf};

use crate::outbox::COPY_CANNED_MAX;

/// Replies of the connection being handled in a batch.
#[derive(Debug, Default)]
pub struct BatchOutbox {
    tx: Option<TxBuf>,
    conn: Option<ConnId>,
    /// The connection a canned reply was last queued as it is for: the small ones
    /// after it, until another connection has its turn, are copied.
    canned_for: Option<ConnId>,
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
        if self.tx.is_some() {
            // Something written for the previous connection is queued first.
            self.start_after_written(batch, conn);
        } else {
            self.conn = Some(conn);
        }
    }

    /// [`start`](Self::start) when a buffer is being filled (out of the per-request
    /// path: canned responses go without one).
    #[inline(never)]
    fn start_after_written(&mut self, batch: &mut Batch<'_>, conn: ConnId) {
        if self.conn != Some(conn) {
            self.finish(batch);
            self.conn = Some(conn);
        }
    }

    /// Appends `bytes` to the current connection's replies.
    pub fn put(&mut self, batch: &mut Batch<'_>, mut bytes: &[u8]) {
        let Some(conn) = self.conn else { return };
        while !bytes.is_empty() {
            if self.tx.as_ref().is_some_and(|t| t.remaining() == 0) {
                self.queue(batch);
            }
            let tx = match &mut self.tx {
                Some(tx) => tx,
                None => match batch.tx_buf() {
                    Some(tx) => self.tx.insert(tx),
                    None => {
                        let _ = batch.send(conn, SendData::Owned(bytes.to_vec()));
                        return;
                    }
                },
            };
            let n = tx.put(bytes);
            bytes = &bytes[n..];
        }
    }

    /// Appends bytes that live for ever (a canned response) for the current
    /// connection, after whatever was put before them. The first is queued as it is,
    /// with no copy on io_uring and epoll; later ones of at most [`COPY_CANNED_MAX`]
    /// bytes (answers to pipelined requests) are copied together into a pool
    /// buffer, larger ones queued as they are.
    #[inline]
    pub fn put_static(&mut self, batch: &mut Batch<'_>, bytes: &'static [u8]) {
        let Some(conn) = self.conn else { return };
        if self.tx.is_none() && self.canned_for != Some(conn) {
            self.canned_for = Some(conn);
            let _ = batch.send(conn, SendData::Static(bytes));
        } else {
            self.put_static_behind(batch, bytes);
        }
    }

    /// [`put_static`](Self::put_static) after another reply.
    #[inline(never)]
    fn put_static_behind(&mut self, batch: &mut Batch<'_>, bytes: &'static [u8]) {
        if bytes.len() <= COPY_CANNED_MAX {
            self.put(batch, bytes);
            return;
        }
        let Some(conn) = self.conn else { return };
        if self.tx.is_some() {
            self.queue(batch);
        }
        let _ = batch.send(conn, SendData::Static(bytes));
    }

    /// Queues what was written and forgets the connection.
    #[inline]
    pub fn finish(&mut self, batch: &mut Batch<'_>) {
        // Canned responses leave no buffer behind: then there is nothing to queue.
        if self.tx.is_some() {
            self.queue(batch);
        }
        self.conn = None;
        self.canned_for = None;
    }

    #[inline(never)]
    fn queue(&mut self, batch: &mut Batch<'_>) {
        if let (Some(tx), Some(conn)) = (self.tx.take(), self.conn) {
            let _ = batch.send(conn, SendData::Pool(tx));
        }
    }
}
