//! `raw-uring`: the reference with no runtime at all, a hand-written io_uring loop.
//!
//! Owns one thread's ring and the loop that drives it: a multishot accept, per
//! connection a multishot recv over a provided buffer ring ([`buf_ring`]), and exactly
//! one `io_uring_enter` (`submit_and_wait(1)`) per loop iteration, which submits
//! everything queued and reaps every completion. `rpc` requests go through the same
//! [`RequestParser`] as every other subject; their responses are sent straight from a
//! static buffer holding the canned response repeated (no copy per request). `echo`
//! copies the received bytes into the connection's output buffer. All sends of one
//! connection made ready in one iteration go out as one send.
//!
//! It must never serve other workloads (it is the practical limit of the transport,
//! not a server), never block outside `io_uring_enter`, and never free memory the
//! kernel may still write (buffers and the canned response are leaked on purpose).

mod buf_ring;

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};

use io_uring::{cqueue, opcode, squeue, types, IoUring, SubmissionQueue, Submitter};
use paste_rt_examples::http::{Event, RequestParser, ResponseTemplate, BAD_REQUEST};

use self::buf_ring::BufRing;
use super::{Peer, PeerConfig, PeerError, Workload};

/// Submission queue entries.
const SQ_ENTRIES: u32 = 4096;
/// Completion queue entries (room for a recv and a send per connection of a large run).
const CQ_ENTRIES: u32 = 4 * SQ_ENTRIES;
/// Responses in the canned send buffer: up to this many pipelined responses go out in
/// one send without copying.
const CANNED_REPEAT: usize = 32;

/// What a completion belongs to: the high 32 bits of its user data (the low 32 bits
/// hold the connection's descriptor).
const ACCEPT: u64 = 1;
const RECV: u64 = 2;
const SEND: u64 = 3;
const CANCEL: u64 = 4;
const CLOSE: u64 = 5;

fn user_data(kind: u64, fd: RawFd) -> u64 {
    (kind << 32) | u64::from(fd as u32)
}

/// A multishot recv of `fd` into buffer group `bgid`.
fn recv_entry(fd: RawFd, bgid: u16) -> squeue::Entry {
    opcode::RecvMulti::new(types::Fd(fd), bgid).build().user_data(user_data(RECV, fd))
}

/// Whether io_uring can be set up here (it may be disabled by sysctl or seccomp).
pub(super) fn probe() -> io::Result<()> {
    IoUring::new(2).map(drop)
}

/// Serves `workload` (`rpc` or `echo`) on `listener` until the process is killed.
pub(super) fn serve(workload: Workload, listener: TcpListener, config: &PeerConfig) -> Result<(), PeerError> {
    let err = |what: &'static str| move |e| PeerError::io(Peer::RawUring, what, e);
    let mode = match workload {
        Workload::Rpc => {
            let response = ResponseTemplate::new(config.body_len);
            let canned: &'static [u8] = Box::leak(response.as_bytes().repeat(CANNED_REPEAT).into_boxed_slice());
            Mode::Rpc { canned, response_len: response.as_bytes().len() }
        }
        Workload::Echo => Mode::Echo,
        Workload::Wal | Workload::Kv => {
            return Err(PeerError::Unsupported {
                peer: Peer::RawUring,
                workload,
                reason: "raw-uring serves rpc and echo only".into(),
            })
        }
    };
    // The kernel polls the socket itself; a blocking descriptor keeps it from ever
    // reporting EAGAIN to us.
    listener.set_nonblocking(false).map_err(err("making the listener blocking"))?;
    let mut ring = build_ring().map_err(err("setting up the io_uring"))?;
    let (submitter, mut sq, mut cq) = ring.split();
    let bufs = BufRing::register(&submitter, 0).map_err(err("registering the provided-buffer ring"))?;
    let mut server = Server { listener: listener.as_raw_fd(), mode, conns: Vec::new(), ready: Vec::new(), bufs };
    push(&submitter, &mut sq, &server.accept_entry()).map_err(err("submitting the accept"))?;
    let result = (|| loop {
        server.bufs.publish();
        sq.sync();
        cq.sync();
        match submitter.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY | libc::EAGAIN)) => {}
            Err(e) => return Err(PeerError::io(Peer::RawUring, "waiting for completions", e)),
        }
        cq.sync();
        for cqe in &mut cq {
            server.complete(&cqe, &submitter, &mut sq)?;
        }
        server.send_ready(&submitter, &mut sq).map_err(err("submitting sends"))?;
    })();
    // Sends in flight still point into the connections' buffers: never free them.
    std::mem::forget(server);
    drop(listener);
    result
}

/// A ring with the flags a single-threaded server wants, or a plain one where the
/// kernel does not know them.
fn build_ring() -> io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(CQ_ENTRIES)
        .build(SQ_ENTRIES)
        .or_else(|_| IoUring::builder().setup_cqsize(CQ_ENTRIES).build(SQ_ENTRIES))
}

/// Queues `entry`, submitting first when the queue is full.
fn push(submitter: &Submitter<'_>, sq: &mut SubmissionQueue<'_>, entry: &squeue::Entry) -> io::Result<()> {
    loop {
        // SAFETY: every entry this module builds points at memory that outlives the
        // operation: the leaked canned response and buffer ring, connection output
        // buffers kept until the send completes (connections are dropped only with no
        // send in flight, and never on the error path), or no memory at all.
        if unsafe { sq.push(entry) }.is_ok() {
            return Ok(());
        }
        sq.sync();
        match submitter.submit() {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY | libc::EAGAIN)) => {}
            Err(e) => return Err(e),
        }
        sq.sync();
    }
}

/// What the server answers with.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// HTTP requests answered with the canned response (repeated `CANNED_REPEAT` times).
    Rpc { canned: &'static [u8], response_len: usize },
    /// Bytes echoed back.
    Echo,
}

/// Bytes a connection owes its client.
#[derive(Debug)]
enum Output {
    /// `rpc`: `owed` bytes of the repeated canned response, starting `phase` bytes into
    /// a response, then `tail[tail_sent..]` (the `400`, on a parse error).
    Canned { parser: RequestParser, owed: usize, phase: usize, tail: &'static [u8], tail_sent: usize },
    /// `echo`: `sending[sent..]` is in flight or next; `pending` collects what arrives
    /// meanwhile.
    Copied { sending: Vec<u8>, sent: usize, pending: Vec<u8> },
}

/// One connection's state.
#[derive(Debug)]
struct Conn {
    /// A multishot recv is armed.
    recv_armed: bool,
    /// A cancel of the recv has been queued.
    cancel_queued: bool,
    /// A send is in flight.
    send_inflight: bool,
    /// The connection is listed in `Server::ready`.
    listed: bool,
    /// No more input is wanted: close once the output is sent (or the socket broke).
    closing: bool,
    /// A send failed: drop the output, close.
    broken: bool,
    out: Output,
}

#[derive(Debug)]
struct Server {
    listener: RawFd,
    mode: Mode,
    /// Connections by descriptor.
    conns: Vec<Option<Box<Conn>>>,
    /// Connections with output to send at the end of this iteration.
    ready: Vec<RawFd>,
    bufs: BufRing,
}

impl Server {
    fn accept_entry(&self) -> squeue::Entry {
        opcode::AcceptMulti::new(types::Fd(self.listener))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data(ACCEPT, self.listener))
    }

    /// Handles one completion.
    fn complete(
        &mut self,
        cqe: &cqueue::Entry,
        submitter: &Submitter<'_>,
        sq: &mut SubmissionQueue<'_>,
    ) -> Result<(), PeerError> {
        let err = |what: &'static str| move |e| PeerError::io(Peer::RawUring, what, e);
        let kind = cqe.user_data() >> 32;
        let fd = cqe.user_data() as u32 as RawFd;
        let result = cqe.result();
        let more = cqueue::more(cqe.flags());
        match kind {
            ACCEPT => {
                if result >= 0 {
                    self.open(result, submitter, sq).map_err(err("submitting a recv"))?;
                } else {
                    let e = io::Error::from_raw_os_error(-result);
                    if !super::accept_error_is_transient(&e) {
                        return Err(PeerError::io(Peer::RawUring, "accepting connections (multishot)", e));
                    }
                    super::back_off_after_accept_error(Peer::RawUring, &e);
                }
                if !more {
                    push(submitter, sq, &self.accept_entry()).map_err(err("re-arming the accept"))?;
                }
            }
            RECV => self.received(fd, result, cqe.flags(), submitter, sq)?,
            SEND => {
                let mode = self.mode;
                if let Some(conn) = self.conn(fd) {
                    conn.send_inflight = false;
                    if result < 0 {
                        conn.broken = true;
                        conn.closing = true;
                    } else {
                        conn.sent(result as usize, mode);
                    }
                }
                self.send_or_close(fd, submitter, sq).map_err(err("submitting a send"))?;
            }
            _ => {} // CANCEL, CLOSE: nothing to do.
        }
        Ok(())
    }

    fn conn(&mut self, fd: RawFd) -> Option<&mut Conn> {
        self.conns.get_mut(usize::try_from(fd).ok()?)?.as_deref_mut()
    }

    /// Starts serving an accepted connection.
    fn open(&mut self, fd: RawFd, submitter: &Submitter<'_>, sq: &mut SubmissionQueue<'_>) -> io::Result<()> {
        set_nodelay(fd);
        let out = match self.mode {
            Mode::Rpc { .. } => {
                Output::Canned { parser: RequestParser::new(), owed: 0, phase: 0, tail: &[], tail_sent: 0 }
            }
            Mode::Echo => Output::Copied { sending: Vec::new(), sent: 0, pending: Vec::new() },
        };
        let index = fd as usize;
        if self.conns.len() <= index {
            self.conns.resize_with(index + 1, || None);
        }
        self.conns[index] = Some(Box::new(Conn {
            recv_armed: true,
            cancel_queued: false,
            send_inflight: false,
            listed: false,
            closing: false,
            broken: false,
            out,
        }));
        push(submitter, sq, &recv_entry(fd, self.bufs.bgid()))
    }

    /// Handles a recv completion of `fd`.
    fn received(
        &mut self,
        fd: RawFd,
        result: i32,
        flags: u32,
        submitter: &Submitter<'_>,
        sq: &mut SubmissionQueue<'_>,
    ) -> Result<(), PeerError> {
        let err = |what: &'static str| move |e| PeerError::io(Peer::RawUring, what, e);
        let more = cqueue::more(flags);
        let bid = cqueue::buffer_select(flags);
        let mode = self.mode;
        let bgid = self.bufs.bgid();
        let Some(conn) = self.conns.get_mut(fd as usize).and_then(|c| c.as_deref_mut()) else {
            if let Some(bid) = bid {
                self.bufs.push(bid);
            }
            return Ok(());
        };
        if !more {
            conn.recv_armed = false;
        }
        if let Some(bid) = bid {
            if result > 0 && !conn.closing {
                conn.input(self.bufs.bytes(bid, result as usize), mode);
                if !conn.listed {
                    conn.listed = true;
                    self.ready.push(fd);
                }
            }
            self.bufs.push(bid);
        }
        match result {
            0 => conn.closing = true,
            r if r == -libc::EINVAL => {
                return Err(PeerError::io(
                    Peer::RawUring,
                    "receiving (multishot recv over a buffer ring needs Linux 6.0)",
                    io::Error::from_raw_os_error(libc::EINVAL),
                ))
            }
            // The ring ran dry: re-armed below once buffers are back.
            r if r == -libc::ENOBUFS || r == -libc::ECANCELED => {}
            r if r < 0 => conn.closing = true,
            _ => {}
        }
        if !conn.recv_armed && !conn.closing {
            conn.recv_armed = true;
            push(submitter, sq, &recv_entry(fd, bgid)).map_err(err("re-arming a recv"))?;
        }
        if conn.closing && conn.recv_armed && !conn.cancel_queued {
            conn.cancel_queued = true;
            let entry = opcode::AsyncCancel::new(user_data(RECV, fd)).build().user_data(user_data(CANCEL, fd));
            push(submitter, sq, &entry).map_err(err("cancelling a recv"))?;
        }
        if !conn.listed {
            self.send_or_close(fd, submitter, sq).map_err(err("closing a connection"))?;
        }
        Ok(())
    }

    /// Sends the output of every connection that received this iteration.
    fn send_ready(&mut self, submitter: &Submitter<'_>, sq: &mut SubmissionQueue<'_>) -> io::Result<()> {
        let ready = std::mem::take(&mut self.ready);
        for &fd in &ready {
            if let Some(conn) = self.conn(fd) {
                conn.listed = false;
            }
            self.send_or_close(fd, submitter, sq)?;
        }
        self.ready = ready;
        self.ready.clear();
        Ok(())
    }

    /// Starts the next send of `fd` if one is due, or closes it once it is done.
    fn send_or_close(&mut self, fd: RawFd, submitter: &Submitter<'_>, sq: &mut SubmissionQueue<'_>) -> io::Result<()> {
        let mode = self.mode;
        let Some(conn) = self.conn(fd) else { return Ok(()) };
        if conn.send_inflight || conn.listed {
            return Ok(());
        }
        if !conn.broken {
            if let Some((ptr, len)) = conn.next_send(mode) {
                conn.send_inflight = true;
                let entry = opcode::Send::new(types::Fd(fd), ptr, len)
                    .flags(libc::MSG_NOSIGNAL)
                    .build()
                    .user_data(user_data(SEND, fd));
                return push(submitter, sq, &entry);
            }
        }
        if conn.closing && !conn.recv_armed {
            self.conns[fd as usize] = None;
            push(submitter, sq, &opcode::Close::new(types::Fd(fd)).build().user_data(user_data(CLOSE, fd)))?;
        }
        Ok(())
    }
}

impl Conn {
    /// Handles received bytes.
    fn input(&mut self, bytes: &[u8], mode: Mode) {
        match (&mut self.out, mode) {
            (Output::Canned { parser, owed, tail, .. }, Mode::Rpc { response_len, .. }) => {
                let mut keep_alive = true;
                let mut pos = 0;
                while let Some(event) = parser.next_event(bytes, &mut pos) {
                    match event {
                        Event::Head(head) => keep_alive = head.keep_alive,
                        Event::Body(_) => {}
                        Event::End => {
                            *owed += response_len;
                            if !keep_alive {
                                self.closing = true;
                                return;
                            }
                        }
                        Event::Error(_) => {
                            *tail = BAD_REQUEST;
                            self.closing = true;
                            return;
                        }
                    }
                }
            }
            (Output::Copied { pending, .. }, _) => pending.extend_from_slice(bytes),
            (Output::Canned { .. }, Mode::Echo) => {}
        }
    }

    /// The next bytes to send, if any.
    fn next_send(&mut self, mode: Mode) -> Option<(*const u8, u32)> {
        match &mut self.out {
            Output::Canned { owed, phase, tail, tail_sent, .. } => {
                if *owed > 0 {
                    let Mode::Rpc { canned, .. } = mode else { return None };
                    let len = (*owed).min(canned.len() - *phase);
                    return Some((canned[*phase..].as_ptr(), len as u32));
                }
                (*tail_sent < tail.len()).then(|| (tail[*tail_sent..].as_ptr(), (tail.len() - *tail_sent) as u32))
            }
            Output::Copied { sending, sent, pending } => {
                if *sent == sending.len() {
                    sending.clear();
                    *sent = 0;
                    std::mem::swap(sending, pending);
                }
                (*sent < sending.len()).then(|| (sending[*sent..].as_ptr(), (sending.len() - *sent) as u32))
            }
        }
    }

    /// Accounts for `n` bytes sent by the send that just completed.
    fn sent(&mut self, n: usize, mode: Mode) {
        match &mut self.out {
            Output::Canned { owed, phase, tail_sent, .. } => {
                if *owed > 0 {
                    let Mode::Rpc { response_len, .. } = mode else { return };
                    *owed -= n.min(*owed);
                    *phase = (*phase + n) % response_len;
                } else {
                    *tail_sent += n;
                }
            }
            Output::Copied { sent, .. } => *sent += n,
        }
    }
}

/// Turns Nagle off on an accepted socket (as the other peers do); a failure only
/// costs latency, so it is ignored.
fn set_nodelay(fd: RawFd) {
    let on: libc::c_int = 1;
    // SAFETY: `on` is a valid c_int for the duration of the call; `fd` is a socket we
    // own.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paste_rt_examples::http::WRK_GET_PAPER;

    fn rpc_mode() -> Mode {
        let response = ResponseTemplate::new(64);
        let canned: &'static [u8] = Box::leak(response.as_bytes().repeat(CANNED_REPEAT).into_boxed_slice());
        Mode::Rpc { canned, response_len: 151 }
    }

    fn conn(mode: Mode) -> Conn {
        let out = match mode {
            Mode::Rpc { .. } => {
                Output::Canned { parser: RequestParser::new(), owed: 0, phase: 0, tail: &[], tail_sent: 0 }
            }
            Mode::Echo => Output::Copied { sending: Vec::new(), sent: 0, pending: Vec::new() },
        };
        Conn {
            recv_armed: true,
            cancel_queued: false,
            send_inflight: false,
            listed: false,
            closing: false,
            broken: false,
            out,
        }
    }

    /// Drains the connection's output through sends of at most `chunk` bytes.
    fn drain(conn: &mut Conn, mode: Mode, chunk: usize) -> Vec<u8> {
        let mut wire = Vec::new();
        while let Some((ptr, len)) = conn.next_send(mode) {
            let n = (len as usize).min(chunk);
            // SAFETY: `next_send` points at `len` live bytes of the canned buffer or
            // the connection's output.
            wire.extend_from_slice(unsafe { std::slice::from_raw_parts(ptr, n) });
            conn.sent(n, mode);
        }
        wire
    }

    #[test]
    fn canned_output_survives_partial_sends_and_pipelining() {
        let mode = rpc_mode();
        let mut c = conn(mode);
        let requests = WRK_GET_PAPER.repeat(40);
        c.input(&requests[..1000], mode);
        c.input(&requests[1000..], mode);
        let wire = drain(&mut c, mode, 97);
        assert_eq!(wire, ResponseTemplate::new(64).as_bytes().repeat(40));
        assert!(!c.closing);
    }

    #[test]
    fn canned_output_ends_with_400_on_a_parse_error() {
        let mode = rpc_mode();
        let mut c = conn(mode);
        c.input(&[WRK_GET_PAPER, b"NOT HTTP\r\n\r\n", WRK_GET_PAPER].concat(), mode);
        assert!(c.closing);
        let wire = drain(&mut c, mode, 1 << 20);
        assert_eq!(wire, [ResponseTemplate::new(64).as_bytes(), BAD_REQUEST].concat());
    }

    #[test]
    fn copied_output_keeps_order_across_sends() {
        let mut c = conn(Mode::Echo);
        c.input(b"hello ", Mode::Echo);
        let (ptr, len) = c.next_send(Mode::Echo).expect("first send");
        assert_eq!(len, 6);
        // More arrives while the first send is in flight.
        c.input(b"world", Mode::Echo);
        // SAFETY: `ptr` points at `len` bytes of the connection's `sending` buffer,
        // untouched by `input`.
        assert_eq!(unsafe { std::slice::from_raw_parts(ptr, 4) }, b"hell");
        c.sent(4, Mode::Echo);
        assert_eq!(drain(&mut c, Mode::Echo, 3), b"o world");
    }
}
