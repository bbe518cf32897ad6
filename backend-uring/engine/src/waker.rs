//! The cross-thread wake-up: an eventfd read through the ring.
//!
//! [`RingWaker`] owns an eventfd and the 8-byte buffer a ring READ of it fills. Other
//! threads hold an [`EventfdWake`] (through `Arc<dyn RemoteWake>`): `wake` writes the
//! eventfd, which completes the pending READ and so ends a blocked `io_uring_enter`.
//! Wakes are coalesced: an atomic flag makes repeated wakes write once until the ring
//! thread has consumed the wake-up.
//!
//! The ring thread never reads the eventfd with a system call of its own: the READ SQE
//! does it, inside the tick's one enter. The eventfd is blocking (no `EFD_NONBLOCK`) so
//! that io_uring waits for it by polling instead of failing the READ with `EAGAIN`;
//! writers never block because the counter stays far below its maximum.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use io_uring::{opcode, squeue, types};
use paste_rt_core::RemoteWake;

/// The other threads' side: wakes the ring thread.
#[derive(Debug)]
pub struct EventfdWake {
    fd: OwnedFd,
    /// A wake was written and not yet consumed by the ring thread.
    pending: AtomicBool,
}

impl RemoteWake for EventfdWake {
    fn wake(&self) {
        if self.pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own. A failure can
        // only be EAGAIN on counter overflow, impossible with one write per wake-up.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
}

/// The ring thread's side: the eventfd, its READ buffer and the shared wake handle.
#[derive(Debug)]
pub struct RingWaker {
    shared: Arc<EventfdWake>,
    /// Filled by the READ SQE; boxed so its address is stable while a READ is pending.
    buf: Box<u64>,
}

impl RingWaker {
    /// Creates the eventfd (close-on-exec, blocking).
    pub fn new() -> io::Result<RingWaker> {
        // SAFETY: plain syscall; the result is checked below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh eventfd owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(RingWaker { shared: Arc::new(EventfdWake { fd, pending: AtomicBool::new(false) }), buf: Box::new(0) })
    }

    /// The handle other threads call `wake` on.
    pub fn handle(&self) -> Arc<dyn RemoteWake> {
        self.shared.clone()
    }

    /// The READ of the eventfd to keep queued on the ring (one at a time).
    ///
    /// The returned SQE points into `self`: keep `self` alive (and the READ armed or
    /// completed) until the ring is gone or the READ's completion has been seen.
    pub fn read_sqe(&mut self, user_data: u64) -> squeue::Entry {
        opcode::Read::new(types::Fd(self.shared.fd.as_raw_fd()), (&mut *self.buf as *mut u64).cast(), 8)
            .build()
            .user_data(user_data)
    }

    /// Gives up the READ buffer without freeing it (the READ may still be in flight
    /// when the ring is abandoned).
    pub fn leak_buffer(&mut self) {
        std::mem::forget(std::mem::replace(&mut self.buf, Box::new(0)));
    }

    /// Handles the READ's completion. Returns `true` when it consumed a wake-up (then
    /// the next `wake` writes again); the caller re-arms with [`read_sqe`](Self::read_sqe).
    pub fn on_read(&mut self, res: i32) -> bool {
        if res == 8 {
            self.shared.pending.store(false, Ordering::Release);
            true
        } else {
            false
        }
    }
}
