//! `PasteBackend` on the emulated port with a congested peer: a client that stops
//! reading must not stall another connection on the shared TX ring. The emulated
//! kernel refuses TX slots whose socket is full (`EAGAIN`, txsync stops there, as
//! kernel PASTE does), so this fails if the ring driver puts slots of a connection on
//! the ring without send space.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use paste_rt_core::conformance::Kit;
use paste_rt_core::{PoolConfig, SendData};
use paste_rt_paste::PasteBackend;

#[test]
fn a_peer_that_stops_reading_does_not_stall_another_connection() {
    let mut k = Kit::new(
        PasteBackend::emulated(PoolConfig { count: 1024, ..PoolConfig::default() })
            .expect("paste-emu starts on this machine"),
    );
    let (l, addr) = k.listen();
    k.poll(2);

    // The slow client: a 4 KiB receive buffer, and it never reads.
    let slow = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    slow.set_recv_buffer_size(4096).unwrap();
    slow.connect(&addr.into()).unwrap();
    let slow_t = k.accept(l);
    let slow_fd = k.io.get(slow_t).fd();
    let mut fast = TcpStream::connect(addr).unwrap();
    fast.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let fast_t = k.accept(l);
    k.poll(2);

    // Far more for the slow peer than the loopback socket buffers hold.
    for _ in 0..512 {
        k.send(slow_t, SendData::Owned(vec![0x55; 64 * 1024]));
    }
    for _ in 0..200 {
        k.poll(2);
    }
    let queued_before = k.be.driver().tx_queued(slow_fd);
    assert!(queued_before > 0, "the slow connection's data waits in the runtime");

    // The fast connection: 50 round trips, each answered within a bounded number of
    // ticks, while the slow one stays congested.
    for round in 0..50u32 {
        let msg = format!("reply {round:04}");
        k.send(fast_t, SendData::Owned(msg.clone().into_bytes()));
        let start = Instant::now();
        for _ in 0..500 {
            k.poll(2);
            if k.io.queued(fast_t) == 0 {
                break;
            }
        }
        assert_eq!(k.io.queued(fast_t), 0, "round {round}: the fast connection's send never completed");
        let mut got = vec![0u8; msg.len()];
        fast.read_exact(&mut got).unwrap();
        assert_eq!(got, msg.as_bytes());
        assert!(start.elapsed() < Duration::from_secs(5), "round {round} took {:?}", start.elapsed());
    }
    assert!(k.be.driver().tx_queued(slow_fd) > 0, "the slow peer still reads nothing");
    assert_eq!(k.be.driver().tx_inflight(slow_fd), 0, "none of its data sits in the shared ring");

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
        k.poll(2);
    }
    assert_eq!(reader.join().unwrap().unwrap(), total);
    fast.write_all(b"bye").unwrap();
}
