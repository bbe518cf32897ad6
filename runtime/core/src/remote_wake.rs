//! [`RemoteWake`]: how another thread interrupts a backend's wait.
//!
//! Its own module because both sides of the runtime hold one: the [`Backend`](crate::Backend)
//! hands it out, and the buffer pool keeps it to wake the owning thread when a buffer
//! lent to another thread comes back. It depends on nothing else in the crate.

/// Wakes a backend blocked in `poll` from another thread (an eventfd write or
/// equivalent). Cheap to call repeatedly.
pub trait RemoteWake: Send + Sync + 'static {
    /// Interrupts the current or next wait of the backend.
    fn wake(&self);
}
