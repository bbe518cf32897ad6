//! `PasteBackend` on the emulated port with a congested peer: a client that stops
//! reading must not stall another connection on the shared TX ring. The emulated
//! kernel refuses TX slots whose socket is full (`EAGAIN`, txsync stops there, as
//! kernel PASTE does), so this fails if the ring driver puts slots of a connection on
//! the ring without send space.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::IntoRawFd;
use std::time::{Duration, Instant};

use paste_rt_core::{Backend, Completion, Op, PoolConfig, SendData, Token};
use paste_rt_paste::PasteBackend;

const LISTENER: Token = Token(0);
const SLOW: Token = Token(1);
const FAST: Token = Token(2);

fn poll(b: &mut PasteBackend, out: &mut Vec<Completion>) {
    b.poll(Some(Duration::from_millis(2)), out).unwrap();
}

/// Registers the next accepted connection as `token`; returns its fd.
fn accept(b: &mut PasteBackend, out: &mut Vec<Completion>, token: Token) -> i32 {
    for _ in 0..2000 {
        if let Some(i) = out.iter().position(|c| matches!(c, Completion::Accepted { listener: LISTENER, .. })) {
            let Completion::Accepted { fd, .. } = out.remove(i) else { unreachable!() };
            b.submit(Op::Register { token, fd });
            return fd;
        }
        poll(b, out);
    }
    panic!("no connection accepted; seen {out:?}");
}

#[test]
fn a_peer_that_stops_reading_does_not_stall_another_connection() {
    let mut b = PasteBackend::emulated(PoolConfig { count: 1024, ..PoolConfig::default() })
        .expect("paste-emu starts on this machine");
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    let mut out = Vec::new();
    b.submit(Op::Listen { token: LISTENER, fd: l.into_raw_fd() });
    poll(&mut b, &mut out);

    // The slow client: a 4 KiB receive buffer, and it never reads.
    let slow = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    slow.set_recv_buffer_size(4096).unwrap();
    slow.connect(&addr.into()).unwrap();
    let slow_fd = accept(&mut b, &mut out, SLOW);
    let mut fast = TcpStream::connect(addr).unwrap();
    fast.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    accept(&mut b, &mut out, FAST);
    poll(&mut b, &mut out);

    // Far more for the slow peer than the loopback socket buffers hold.
    for _ in 0..512 {
        b.submit(Op::Send { token: SLOW, data: SendData::Owned(vec![0x55; 64 * 1024]) });
    }
    for _ in 0..200 {
        poll(&mut b, &mut out);
    }
    out.clear();
    let queued_before = b.driver().tx_queued(slow_fd);
    assert!(queued_before > 0, "the slow connection's data waits in the runtime");

    // The fast connection: 50 round trips, each answered within a bounded number of
    // ticks, while the slow one stays congested.
    for round in 0..50u32 {
        let msg = format!("reply {round:04}");
        b.submit(Op::Send { token: FAST, data: SendData::Owned(msg.clone().into_bytes()) });
        let start = Instant::now();
        let mut sent = 0;
        for _ in 0..500 {
            poll(&mut b, &mut out);
            for c in out.drain(..) {
                if let Completion::Sent { token: FAST, bytes } = c {
                    sent += bytes as usize;
                }
            }
            if sent == msg.len() {
                break;
            }
        }
        assert_eq!(sent, msg.len(), "round {round}: the fast connection's send never completed");
        let mut got = vec![0u8; msg.len()];
        fast.read_exact(&mut got).unwrap();
        assert_eq!(got, msg.as_bytes());
        assert!(start.elapsed() < Duration::from_secs(5), "round {round} took {:?}", start.elapsed());
    }
    assert!(b.driver().tx_queued(slow_fd) > 0, "the slow peer still reads nothing");
    assert_eq!(b.driver().tx_inflight(slow_fd), 0, "none of its data sits in the shared ring");

    // The slow peer reads everything: every byte arrives, in order.
    let mut slow: TcpStream = slow.into();
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let total = 512 * 64 * 1024;
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut n = 0;
        while n < total {
            let k = slow.read(&mut buf)?;
            if k == 0 || buf[..k].iter().any(|&x| x != 0x55) {
                break;
            }
            n += k;
        }
        Ok::<usize, std::io::Error>(n)
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reader.is_finished() && Instant::now() < deadline {
        poll(&mut b, &mut out);
        out.clear();
    }
    assert_eq!(reader.join().unwrap().unwrap(), total);
    fast.write_all(b"bye").unwrap();
}
