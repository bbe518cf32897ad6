//! What a connection sends: [`SendData`] and the per-connection [`SendQueue`].
//!
//! The queue keeps its first item inline, so the common connection with one pending
//! send never touches the heap; items behind it wait in a `VecDeque`, boxed (one word
//! in the record of every idle connection rather than four) and allocated only the
//! first time a connection has two sends pending at once (kept, with its capacity,
//! after that). A backend reads the queue's front in place — one item for a
//! plain send, up to N for a gathered one — and reports what the kernel took with
//! [`SendQueue::advance`]; the queue drops each item (returning pool buffers) once it
//! is fully sent. A backend that copies queued bytes into its own buffers (PASTE's TX
//! slots) copies from the front in place with [`SendQueue::copy_front`] rather than
//! taking the item out. It never makes a system call and never copies.

use std::cell::Cell;
use std::collections::VecDeque;

use bytes::Bytes;

use crate::buf::TxBuf;

/// Bytes to send: a pool buffer (zero copy on every backend) or owned bytes
/// (sent in place on epoll and io_uring, copied into port buffers on PASTE).
#[derive(Debug)]
pub enum SendData {
    /// A filled pool buffer.
    Pool(TxBuf),
    /// Owned bytes.
    Owned(Vec<u8>),
    /// Bytes that live forever (a canned response): sent without a copy on epoll and
    /// io_uring.
    Static(&'static [u8]),
    /// A [`bytes::Bytes`] (hyper bodies, codec frames, a `Bytes` made from a received
    /// buffer): kept alive in the queue until the kernel has taken it and sent in
    /// place on epoll and io_uring (no copy; several queued items go out in one
    /// gathered send). PASTE transmits only from its port buffers, so there it is
    /// copied once into TX slots — even a `Bytes` made from a pool buffer, whose
    /// buffer cannot be handed to the kernel (other clones may still read it, and
    /// `bytes` offers no way to take a buffer back from a `Bytes`).
    Bytes(Bytes),
}

thread_local! {
    /// Bytes of queued sends that backends on this thread copied into their own
    /// buffers before the kernel took them (see [`SendData::count_copy`]).
    static COPIED: Cell<u64> = const { Cell::new(0) };
}

impl SendData {
    /// Number of bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Whether there is nothing to send.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        match self {
            SendData::Pool(b) => b,
            SendData::Owned(v) => v,
            SendData::Static(s) => s,
            SendData::Bytes(b) => b,
        }
    }

    /// A backend copied `n` bytes of a queued send into its own buffers (PASTE, into
    /// TX slots): counted per thread, for tests and diagnostics (epoll and io_uring
    /// never copy, so their count stays 0).
    #[inline]
    pub fn count_copy(n: usize) {
        COPIED.with(|c| c.set(c.get() + n as u64));
    }

    /// Bytes of queued sends copied by backends on this thread so far (see
    /// [`count_copy`](Self::count_copy)); subtract two readings for a window.
    pub fn copied_on_this_thread() -> u64 {
        COPIED.with(Cell::get)
    }
}

impl From<Bytes> for SendData {
    /// Sends a `Bytes` in place; see [`SendData::Bytes`].
    ///
    /// ```
    /// # use paste_rt_core::SendData;
    /// let body = bytes::Bytes::from_static(b"hello");
    /// let data = SendData::from(body.clone());
    /// assert_eq!(data.as_slice().as_ptr(), body.as_ptr()); // the same memory: no copy
    /// ```
    fn from(bytes: Bytes) -> SendData {
        SendData::Bytes(bytes)
    }
}

impl From<TxBuf> for SendData {
    fn from(buf: TxBuf) -> SendData {
        SendData::Pool(buf)
    }
}

impl From<Vec<u8>> for SendData {
    fn from(bytes: Vec<u8>) -> SendData {
        SendData::Owned(bytes)
    }
}

impl From<&'static [u8]> for SendData {
    fn from(bytes: &'static [u8]) -> SendData {
        SendData::Static(bytes)
    }
}

/// Which half of a connection to shut down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// No more sends (a FIN after the queued data).
    Write,
    /// No more receives.
    Read,
    /// Both.
    Both,
}

impl Shutdown {
    /// The `how` argument of `shutdown(2)`.
    pub fn how(self) -> i32 {
        match self {
            Shutdown::Write => libc::SHUT_WR,
            Shutdown::Read => libc::SHUT_RD,
            Shutdown::Both => libc::SHUT_RDWR,
        }
    }

    /// Both halves if `self` and `other` differ.
    pub fn merge(self, other: Shutdown) -> Shutdown {
        if self == other {
            self
        } else {
            Shutdown::Both
        }
    }
}

/// The items behind the first: a `VecDeque` boxed on first use (see the module
/// docs). It only forwards to the deque.
// The box is the point: `Option<Box<_>>` is one word, an empty `VecDeque` four.
#[allow(clippy::box_collection)]
#[derive(Debug)]
struct Rest(Option<Box<VecDeque<SendData>>>);

impl Rest {
    #[inline]
    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |q| q.len())
    }

    #[inline]
    fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|q| q.is_empty())
    }

    #[inline]
    fn push_back(&mut self, data: SendData) {
        self.0.get_or_insert_with(Box::default).push_back(data);
    }

    #[inline]
    fn push_front(&mut self, data: SendData) {
        self.0.get_or_insert_with(Box::default).push_front(data);
    }

    #[inline]
    fn pop_front(&mut self) -> Option<SendData> {
        self.0.as_mut()?.pop_front()
    }

    #[inline]
    fn iter(&self) -> impl Iterator<Item = &SendData> {
        self.0.iter().flat_map(|q| q.iter())
    }

    fn clear(&mut self) {
        if let Some(q) = &mut self.0 {
            q.clear();
        }
    }

    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.0.as_ref().map_or(0, |q| q.capacity())
    }
}

/// One connection's pending sends, oldest first; see the module docs.
#[derive(Debug)]
pub struct SendQueue {
    first: Option<SendData>,
    rest: Rest,
    /// The unsent bytes of `first` (null and 0 when there is none): a cache of its
    /// slice, so the per-request looks (gather, advance) need no match on the
    /// variant and no pool address computation. Every [`SendData`] keeps its bytes
    /// outside the value (heap, pool memory or static), so they stay where this
    /// points while `first` is moved.
    front_ptr: *const u8,
    front_len: usize,
    /// Bytes queued and not yet taken.
    bytes: u64,
    /// Shut down this half once everything queued has been taken.
    shutdown: Option<Shutdown>,
}

impl Default for SendQueue {
    fn default() -> SendQueue {
        SendQueue::new()
    }
}

impl SendQueue {
    /// An empty queue (allocates nothing).
    pub const fn new() -> SendQueue {
        SendQueue { first: None, rest: Rest(None), front_ptr: std::ptr::null(), front_len: 0, bytes: 0, shutdown: None }
    }

    /// Appends `data` (not empty).
    #[inline]
    pub fn push(&mut self, data: SendData) {
        let len = data.len();
        self.push_len(data, len);
    }

    /// Appends `data` (not empty), whose length the caller already knows.
    #[inline]
    pub fn push_len(&mut self, data: SendData, len: usize) {
        debug_assert_eq!(len, data.len());
        debug_assert!(len > 0, "empty sends are not queued");
        self.bytes += len as u64;
        if self.first.is_none() {
            self.front_ptr = data.as_slice().as_ptr();
            self.front_len = len;
            // `first` is None: replaced and forgotten, so no call into the drop glue.
            std::mem::forget(self.first.replace(data));
        } else {
            self.rest.push_back(data);
        }
    }

    /// Appends `data` unless it is empty (then it is dropped); returns whether it was
    /// queued. One look at the variant for both its length and its bytes.
    #[inline(always)]
    pub fn push_if_nonempty(&mut self, data: SendData) -> bool {
        let (ptr, len) = {
            let s = data.as_slice();
            (s.as_ptr(), s.len())
        };
        if len == 0 {
            return false;
        }
        self.bytes += len as u64;
        if self.first.is_none() {
            self.front_ptr = ptr;
            self.front_len = len;
            // `first` is None: replaced and forgotten, so no call into the drop glue.
            std::mem::forget(self.first.replace(data));
        } else {
            self.rest.push_back(data);
        }
        true
    }

    /// Items waiting.
    #[inline]
    pub fn len(&self) -> usize {
        self.first.is_some() as usize + self.rest.len()
    }

    /// Whether no data waits (a pending shutdown does not count).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    /// Bytes queued and not yet taken by the kernel.
    #[inline]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The unsent bytes of the oldest item.
    #[inline]
    pub fn front(&self) -> Option<&[u8]> {
        self.first.as_ref()?;
        // SAFETY: front_ptr/front_len describe the unsent tail of `first`'s bytes,
        // which live outside the SendData (see the field's docs) and stay valid while
        // `first` is held, i.e. for as long as `&self` is borrowed.
        Some(unsafe { std::slice::from_raw_parts(self.front_ptr, self.front_len) })
    }

    /// Calls `f` with the unsent bytes of the oldest `max` items, oldest first;
    /// returns how many items that was.
    #[inline]
    pub fn gather(&self, max: usize, mut f: impl FnMut(&[u8])) -> usize {
        let Some(front) = self.front() else { return 0 };
        if max == 0 {
            return 0;
        }
        f(front);
        let mut n = 1;
        for item in self.rest.iter().take(max - 1) {
            f(item.as_slice());
            n += 1;
        }
        n
    }

    /// The kernel took `n` more bytes: drops every item fully sent. Returns whether
    /// data is still waiting.
    #[inline]
    pub fn advance(&mut self, n: u64) -> bool {
        self.bytes = self.bytes.saturating_sub(n);
        if n as usize == self.front_len && self.rest.is_empty() {
            // The common case: the one queued item went out whole. A canned response
            // has nothing to drop: no call into the drop glue for it.
            self.front_ptr = std::ptr::null();
            self.front_len = 0;
            match self.first.take() {
                // Owns nothing: forgetting it skips the drop glue's call.
                Some(canned @ SendData::Static(_)) => std::mem::forget(canned),
                Some(other) => drop(other),
                None => {}
            }
            return false;
        }
        let mut n = n as usize;
        while n > 0 && self.first.is_some() {
            if n < self.front_len {
                // SAFETY: n < front_len: the pointer stays inside `first`'s bytes.
                self.front_ptr = unsafe { self.front_ptr.add(n) };
                self.front_len -= n;
                return true;
            }
            n -= self.front_len;
            let next = self.rest.pop_front();
            self.set_first(next);
        }
        self.first.is_some()
    }

    /// Lets `copy` copy from the oldest item in place (PASTE copying queued bytes into
    /// its TX slots, without taking the item out): it gets the item and its unsent
    /// bytes and returns how many of those it copied, from their start. They leave
    /// the queue as if sent ([`advance`](Self::advance)): a fully copied item is
    /// dropped, a partly copied one stays in front with the rest, and the items
    /// behind it keep their order. A count above the unsent length is held to it.
    /// Returns the bytes copied, or `None` (without calling `copy`) when nothing is
    /// queued.
    #[inline]
    pub fn copy_front(&mut self, copy: impl FnOnce(&SendData, &[u8]) -> usize) -> Option<usize> {
        let first = self.first.as_ref()?;
        // SAFETY: as in `front`: front_ptr/front_len describe the unsent tail of
        // `first`'s bytes, which stay valid while `first` is held (until `advance`
        // below, after the last use of the slice).
        let unsent = unsafe { std::slice::from_raw_parts(self.front_ptr, self.front_len) };
        let n = copy(first, unsent).min(self.front_len);
        if n > 0 {
            self.advance(n as u64);
        }
        Some(n)
    }

    /// Makes `data` the oldest item, none of its bytes sent (the old one is dropped).
    #[inline]
    fn set_first(&mut self, data: Option<SendData>) {
        (self.front_ptr, self.front_len) = match &data {
            Some(d) => (d.as_slice().as_ptr(), d.len()),
            None => (std::ptr::null(), 0),
        };
        self.first = data;
    }

    /// How many bytes of the oldest item were already sent.
    fn first_sent(&self) -> u32 {
        self.first.as_ref().map_or(0, |d| (d.len() - self.front_len) as u32)
    }

    /// Takes the oldest item whole (a datagram-style queue, or PASTE copying items
    /// into port buffers), with how many of its bytes were already sent.
    pub fn pop(&mut self) -> Option<(SendData, u32)> {
        let sent = self.first_sent();
        let unsent = self.front_len;
        let first = self.first.take()?;
        let next = self.rest.pop_front();
        self.set_first(next);
        self.bytes = self.bytes.saturating_sub(unsent as u64);
        Some((first, sent))
    }

    /// Puts an item back at the front, `sent` of its bytes already taken (the
    /// opposite of [`pop`](Self::pop)).
    pub fn push_front(&mut self, data: SendData, sent: u32) {
        let unsent = &data.as_slice()[sent as usize..];
        let (ptr, len) = (unsent.as_ptr(), unsent.len());
        self.bytes += len as u64;
        if let Some(old) = self.first.replace(data) {
            debug_assert_eq!(old.len(), self.front_len, "only an unsent item moves back");
            self.rest.push_front(old);
        }
        self.front_ptr = ptr;
        self.front_len = len;
    }

    /// Queues a shutdown after what is queued now (merged with one already queued).
    pub fn queue_shutdown(&mut self, how: Shutdown) {
        self.shutdown = Some(self.shutdown.map_or(how, |s| s.merge(how)));
    }

    /// Whether a shutdown waits.
    pub fn shutdown_pending(&self) -> bool {
        self.shutdown.is_some()
    }

    /// Takes the pending shutdown once no data is left before it.
    pub fn take_shutdown(&mut self) -> Option<Shutdown> {
        if self.first.is_none() {
            self.shutdown.take()
        } else {
            None
        }
    }

    /// Drops everything queued (the connection failed or is gone).
    pub fn clear(&mut self) {
        self.set_first(None);
        self.rest.clear();
        self.bytes = 0;
        self.shutdown = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn first_item_stays_inline() {
        let mut q = SendQueue::new();
        q.push(SendData::Static(b"hello"));
        assert_eq!(q.rest.capacity(), 0, "one pending send allocates nothing");
        assert_eq!(q.front(), Some(&b"hello"[..]));
        assert!(!q.advance(5));
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn gather_advance_and_shutdown_after_data() {
        let mut q = SendQueue::new();
        q.push(SendData::Static(b"ab"));
        q.push(SendData::Owned(b"cde".to_vec()));
        q.push(SendData::Static(b"f"));
        q.queue_shutdown(Shutdown::Write);
        let mut seen = vec![];
        assert_eq!(q.gather(2, |b| seen.push(b.to_vec())), 2);
        assert_eq!(seen, vec![b"ab".to_vec(), b"cde".to_vec()]);
        assert_eq!(q.take_shutdown(), None, "data first");
        assert!(q.advance(3));
        assert_eq!(q.front(), Some(&b"de"[..]));
        assert_eq!(q.bytes(), 3);
        assert!(!q.advance(3));
        assert_eq!(q.take_shutdown(), Some(Shutdown::Write));
    }

    #[test]
    fn a_partly_copied_front_keeps_its_rest_before_the_next_item() {
        let mut q = SendQueue::new();
        assert_eq!(q.copy_front(|_, _| unreachable!("nothing queued")), None);
        q.push(SendData::Static(b"abcdef"));
        q.push(SendData::Owned(b"gh".to_vec()));
        let mut seen = vec![];
        assert_eq!(
            q.copy_front(|_, b| {
                seen.extend_from_slice(&b[..4]);
                4
            }),
            Some(4)
        );
        assert_eq!(q.front(), Some(&b"ef"[..]));
        assert_eq!((q.len(), q.bytes()), (2, 4));
        // A count past the unsent bytes is held to them: the next item stays whole.
        assert_eq!(
            q.copy_front(|d, b| {
                assert_eq!(d.len(), 6);
                seen.extend_from_slice(b);
                99
            }),
            Some(2)
        );
        assert_eq!(q.front(), Some(&b"gh"[..]));
        assert_eq!(q.copy_front(|_, _| 0), Some(0), "nothing copied, nothing moves");
        assert_eq!(
            q.copy_front(|_, b| {
                seen.extend_from_slice(b);
                b.len()
            }),
            Some(2)
        );
        assert!(q.is_empty());
        assert_eq!((q.bytes(), seen), (0, b"abcdefgh".to_vec()));
    }

    proptest! {
        /// Whatever the kernel takes at a time, the bytes come out in order, once.
        #[test]
        fn bytes_leave_in_order(items in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..20), 1..10),
                                takes in proptest::collection::vec(1u64..30, 1..40)) {
            let mut q = SendQueue::new();
            let mut expect = vec![];
            for it in &items {
                expect.extend_from_slice(it);
                q.push(SendData::Owned(it.clone()));
            }
            let mut out = vec![];
            for t in takes {
                let Some(front) = q.front() else { break };
                let mut avail = vec![];
                q.gather(8, |b| avail.extend_from_slice(b));
                prop_assert!(avail.starts_with(front));
                let n = (t as usize).min(avail.len());
                out.extend_from_slice(&avail[..n]);
                q.advance(n as u64);
                prop_assert_eq!(q.bytes() as usize, expect.len() - out.len());
            }
            while let Some((d, sent)) = q.pop() {
                out.extend_from_slice(&d.as_slice()[sent as usize..]);
            }
            prop_assert_eq!(out, expect);
        }
    }
}
