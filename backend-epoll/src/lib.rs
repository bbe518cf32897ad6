//! # paste-rt-epoll — the baseline backend
//!
//! Edge-triggered epoll with one `read` per ready connection into pool buffers and
//! one `send`/`sendmsg` per connection with queued data, written at the tick
//! (docs/architecture.md, the backends). Same
//! contract as the io_uring and PASTE backends, and exactly the per-connection
//! system calls PASTE removes — which is what makes it the honest baseline of the A/B
//! comparison.
//!
//! Each connection is registered once for `IN | OUT | RDHUP`, edge-triggered, so it
//! never needs `epoll_ctl(MOD)`. A connection is read as its readiness event is
//! applied; it is listed for a later read only when its read budget ran out or the
//! pool was dry. A read that returns less than a buffer drained the socket (the
//! next arrival is a new edge), so there is no extra read to see `EAGAIN`; after a
//! hang-up is seen, reading goes on until the EOF or the error. Received buffers land
//! in the connection's record as they are read, and sends are written straight from
//! the record's queue; a partial write waits for `EPOLLOUT`. Counters are added once
//! per walk over the ready sockets, not once per call.
//!
//! The wait ends at the runtime's next timer or deadline sweep through a timerfd in
//! the epoll set, armed once per instant rather than a timeout on every
//! `epoll_wait` (`wake_timer`).
//!
//! Datagram (UDP) sockets are read with one `recvfrom` per datagram into pool
//! buffers (until `EAGAIN` or the read budget) and written with one `sendto` per
//! queued datagram.
//!
//! The backend owns every fd handed to it and closes it when its record closes. It
//! never touches the executor, and makes every system call inside
//! [`Backend::poll`](paste_rt_core::Backend::poll) (see `sys`, where each one is
//! counted): what the runtime asks between ticks (a listener, a connect, a close)
//! is noted and done at the next tick. Sends use `MSG_NOSIGNAL`; the process's
//! SIGPIPE disposition is never changed.
//!
//! Modules: `backend` (the state, the tick and its events, with one child module per
//! walk of a tick: `accept`, `read`, `write`), `config`, `sys` (every system call,
//! each counted) and `wake_timer`.

mod backend;
mod config;
mod sys;
mod wake_timer;

pub use backend::EpollBackend;
pub use config::EpollConfig;
