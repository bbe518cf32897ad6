//! A connection's queue of pending sends, written with one `writev` per flush.
//!
//! Owns the [`SendData`] until the kernel has taken every byte of it, remembers how
//! far into the front item a partial write got, and never allocates after the
//! queue's first growth (a `VecDeque` reused for the connection's life).

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;

use paste_rt_core::{SendData, Stats};

use crate::sys;

/// Most buffers gathered into one `writev`.
const MAX_IOV: usize = 64;

/// Pending sends of one connection.
#[derive(Debug, Default)]
pub struct TxQueue {
    items: VecDeque<SendData>,
    /// Bytes of `items[0]` already written.
    front_done: usize,
}

/// What a flush achieved.
#[derive(Debug, PartialEq, Eq)]
pub enum Flushed {
    /// Everything queued was written; `bytes` taken by the kernel.
    All { bytes: usize },
    /// The socket buffer is full; `bytes` were taken, wait for `EPOLLOUT`.
    Blocked { bytes: usize },
}

impl TxQueue {
    /// Queues `data` after everything queued before.
    pub fn push(&mut self, data: SendData) {
        if !data.is_empty() {
            self.items.push_back(data);
        }
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Drops everything queued (the connection failed or closed).
    pub fn clear(&mut self) {
        self.items.clear();
        self.front_done = 0;
    }

    /// Writes as much as the socket takes. One syscall per `MAX_IOV` buffers.
    pub fn flush(&mut self, stats: &Stats, fd: RawFd) -> io::Result<Flushed> {
        let mut total = 0;
        while !self.items.is_empty() {
            let want = self.queued_bytes_upto(MAX_IOV);
            let result = if self.items.len() == 1 {
                sys::send(stats, fd, &self.items[0].as_slice()[self.front_done..])
            } else {
                let mut iov = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; MAX_IOV];
                let mut n = 0;
                for (i, item) in self.items.iter().take(MAX_IOV).enumerate() {
                    let s = if i == 0 { &item.as_slice()[self.front_done..] } else { item.as_slice() };
                    iov[n] = libc::iovec { iov_base: s.as_ptr() as *mut libc::c_void, iov_len: s.len() };
                    n += 1;
                }
                sys::writev(stats, fd, &iov[..n])
            };
            let written = match result {
                Ok(w) => w,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flushed::Blocked { bytes: total }),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            Stats::add(&stats.tx_bytes, written as u64);
            total += written;
            self.consume(written);
            if written < want {
                return Ok(Flushed::Blocked { bytes: total });
            }
        }
        Ok(Flushed::All { bytes: total })
    }

    fn queued_bytes_upto(&self, n: usize) -> usize {
        self.items.iter().take(n).map(SendData::len).sum::<usize>() - self.front_done
    }

    fn consume(&mut self, mut n: usize) {
        while n > 0 {
            let front_left = self.items[0].len() - self.front_done;
            if n >= front_left {
                n -= front_left;
                self.items.pop_front();
                self.front_done = 0;
            } else {
                self.front_done += n;
                n = 0;
            }
        }
    }
}
