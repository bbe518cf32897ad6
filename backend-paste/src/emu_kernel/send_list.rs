//! A socket's send queue in the emulated kernel: a list threaded through one table
//! of per-buffer entries ([`QueuedSend`]), so an idle socket's queue is two words
//! and queueing never allocates.

/// Names no buffer in a [`SendList`]: buffer 0 is reserved (netmap's), never a data
/// buffer.
pub(super) const NO_BUF: u32 = 0;

/// One taken TX payload in its socket's send queue, stored by its buffer index (a
/// buffer is in at most one send queue at a time). The all-zero value is "none", so
/// the table starts as untouched zero pages.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct QueuedSend {
    /// The next buffer of the same send queue ([`NO_BUF`]: the last).
    pub(super) next: u32,
    /// Payload offset in the buffer (`G + doff`, moved on by a partial send).
    pub(super) off: u32,
    /// Payload bytes not yet sent.
    pub(super) len: u32,
    /// What the payload counts against its socket's send buffer.
    pub(super) charge: u32,
}

/// A socket's send queue: a list threaded through the per-buffer [`QueuedSend`]
/// table, oldest first. An idle socket's queue is two words and no allocation.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct SendList {
    pub(super) head: u32,
    pub(super) tail: u32,
}

impl SendList {
    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.head == NO_BUF
    }

    /// Appends buffer `buf` (its entry in `table` is overwritten).
    #[inline]
    pub(super) fn push(&mut self, table: &mut [QueuedSend], buf: u32, off: u32, len: u32, charge: u32) {
        table[buf as usize] = QueuedSend { next: NO_BUF, off, len, charge };
        if self.tail == NO_BUF {
            self.head = buf;
        } else {
            table[self.tail as usize].next = buf;
        }
        self.tail = buf;
    }

    /// Takes the oldest entry: its buffer and what was queued.
    #[inline]
    pub(super) fn pop(&mut self, table: &[QueuedSend]) -> Option<(u32, QueuedSend)> {
        if self.head == NO_BUF {
            return None;
        }
        let buf = self.head;
        let q = table[buf as usize];
        self.head = q.next;
        if self.head == NO_BUF {
            self.tail = NO_BUF;
        }
        Some((buf, q))
    }
}
