//! The ring driver against the emulated kernel: the slot protocol, zero-copy swaps,
//! backpressure, dead connections, the extra-buffer list, and (proptest) payload order
//! plus buffer conservation under random interleavings.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::tx_state::{narrow_credit, FdTx};
use super::*;
use crate::emu_kernel::{
    Arrival, EmuKernel, KernelHold, SendJob, SocketState, TxStall, EMU_SKB_OVERHEAD, EMU_SNDBUF, RX_BATCH_PER_FD,
};
use crate::port_mem::EmuPortConfig;
use crate::sys::abi::slotflags;
use paste_rt_core::{KeptBuf, SendData};

fn setup(cfg: &EmuPortConfig, dcfg: DriverConfig) -> (EmuKernel, RingDriver) {
    let k = EmuKernel::new(cfg).unwrap();
    // SAFETY: the region is the kernel's port memory; the Rc clone keeps it alive for
    // the pool, and only the emulated kernel touches the rings besides the driver.
    let d = unsafe { RingDriver::new(k.region(), dcfg, Box::new(k.memory().clone())) }.unwrap();
    (k, d)
}

fn small(slots: u32, extra: u32, kernel: u32) -> EmuPortConfig {
    EmuPortConfig { slots, extra_bufs: extra, kernel_bufs: kernel, ..EmuPortConfig::default() }
}

/// A byte stream per fd that makes any reordering or loss visible.
fn stream_byte(fd: i32, i: u64) -> u8 {
    ((i.wrapping_mul(2_654_435_761).wrapping_add(fd as u64 * 97)) >> 13) as u8
}

/// Delivers `data` for `fd` through the emulated kernel, one receive buffer per chunk
/// of at most `chunk` bytes. Returns the bytes delivered (fewer when the kernel runs
/// out of spare buffers).
fn arrive(k: &mut EmuKernel, fd: i32, data: &[u8], chunk: usize) -> usize {
    let mut done = 0;
    for part in data.chunks(chunk.min(k.rx_capacity())) {
        let Some(idx) = k.rx_buffer() else { break };
        k.rx_payload_mut(idx).unwrap()[..part.len()].copy_from_slice(part);
        assert!(k.rx_complete(fd, idx, part.len()).unwrap());
        done += part.len();
    }
    done
}

/// Drains the kernel's send jobs onto a per-fd "wire".
fn drain_sends(k: &mut EmuKernel, wire: &mut BTreeMap<i32, Vec<u8>>, max: usize) {
    for _ in 0..max {
        let Some(job) = k.next_send() else { break };
        wire.entry(job.fd).or_default().extend_from_slice(k.send_payload(&job).unwrap());
        k.send_done(job.buf).unwrap();
    }
}

/// Every buffer index (2..count) has exactly one owner: a ring slot, the kernel, the
/// pool's free list, the application, a queued send, or the extra list.
fn check_conservation(k: &EmuKernel, d: &RingDriver, app: &[RxBuf]) -> Result<(), String> {
    let n = k.memory().layout().buf_count as usize;
    let mut owners = vec![0u32; n];
    let mut bad = Vec::new();
    let mut mark = |i: u32, who: &str| match owners.get_mut(i as usize) {
        Some(c) if i >= 2 => *c += 1,
        _ => bad.push(format!("{who} holds invalid index {i}")),
    };
    k.for_each_ring_buffer(|i| mark(i, "ring"));
    k.for_each_held(|i, _| mark(i, "kernel"));
    for i in 0..n as u32 {
        if d.pool().is_free(i) {
            mark(i, "pool");
        }
    }
    for b in app {
        mark(b.index(), "app");
    }
    let mut queued = 0;
    d.for_each_queued_pool_buf(|i| {
        queued += 1;
        mark(i, "queue")
    });
    for i in k.memory().extra_list() {
        mark(i, "extra list");
    }
    if !bad.is_empty() {
        return Err(bad.join("; "));
    }
    if let Some(i) = (2..n).find(|&i| owners[i] != 1) {
        return Err(format!("buffer {i} has {} owners", owners[i]));
    }
    let p = d.pool();
    if p.in_use() as usize != app.len() + queued {
        return Err(format!("pool lends {} buffers, app {} + queued {}", p.in_use(), app.len(), queued));
    }
    Ok(())
}

#[test]
fn attaches_and_imports_the_extra_list() {
    let (k, d) = setup(&small(16, 10, 20), DriverConfig::default());
    assert_eq!(d.generic_offset(), 64);
    assert_eq!(d.pool().capacity(), 10);
    assert_eq!(d.pool().free_count(), 10);
    assert_eq!(d.pool().tx_headroom(), 64 + 66);
    assert!(k.memory().extra_list().is_empty(), "ni_bufs_head cleared: the list lives in the pool");
    assert_eq!(d.tx_space(), 15);
    check_conservation(&k, &d, &[]).unwrap();
}

#[test]
fn rx_walk_lends_payload_zero_copy_grouped_by_fd_with_eof() {
    let (mut k, mut d) = setup(&small(16, 10, 20), DriverConfig::default());
    for fd in [5, 7] {
        k.register_fd(fd, SocketState::Connected).unwrap();
    }
    arrive(&mut k, 5, b"hello ", 1448);
    arrive(&mut k, 7, b"other", 1448);
    arrive(&mut k, 5, b"world", 1448);
    assert!(k.rx_eof(5));
    let rep = k.rxsync();
    assert_eq!((rep.rx_data, rep.rx_eofs), (3, 1));
    let region = k.region();
    // SAFETY: the emulated port's memory is alive (held by `k`).
    let ring = unsafe { RingPtr::new(&region, addr::rxring(region.base.cast(), 0)) }.unwrap();
    let before: Vec<_> = (0..4).map(|i| ring.slot(i)).collect();
    assert_eq!(before[0].ptr, 0x0000_4200_0000_0540, "doff 66, fd 5, G 64");
    assert_eq!(before[0].len, 66 + 6);

    let mut got = Vec::new();
    let walk = d.rx_walk(u32::MAX, |ev| got.push(ev));
    assert_eq!((walk.slots, walk.data, walk.eofs, walk.bytes), (4, 3, 1, 16));
    let seen: Vec<(i32, Vec<u8>)> = got
        .iter()
        .map(|e| match e {
            RxEvent::Data { fd, buf } => (*fd, buf.to_vec()),
            RxEvent::Eof { fd } => (*fd, b"<eof>".to_vec()),
        })
        .collect();
    let expect: Vec<(i32, Vec<u8>)> =
        vec![(5, b"hello ".to_vec()), (5, b"world".to_vec()), (5, b"<eof>".to_vec()), (7, b"other".to_vec())];
    assert_eq!(seen, expect, "grouped by fd, in order, EOF after the data");
    for (i, e) in got.iter().enumerate() {
        let s = ring.slot(i as u32);
        assert_eq!(s.ptr, before[i].ptr, "ptr bits untouched");
        if let RxEvent::Data { buf, .. } = e {
            assert_eq!(buf.index(), before[i].buf_idx, "the ring's own buffer is lent");
            assert_eq!(buf.offset(), 64 + 66);
            assert_ne!(s.buf_idx, before[i].buf_idx, "a pool buffer was swapped in");
            assert_ne!(s.flags & slotflags::BUF_CHANGED, 0);
        } else {
            assert_eq!(s.buf_idx, before[i].buf_idx, "EOF slot keeps its buffer");
        }
    }
    assert_eq!((ring.head(), ring.cur()), (4, 4));
    let app: Vec<RxBuf> = got
        .into_iter()
        .filter_map(|e| match e {
            RxEvent::Data { buf, .. } => Some(buf),
            RxEvent::Eof { .. } => None,
        })
        .collect();
    check_conservation(&k, &d, &app).unwrap();
    drop(app);
    assert_eq!(d.pool().free_count(), 10);
    check_conservation(&k, &d, &[]).unwrap();
}

#[test]
fn rx_walk_skips_a_slot_whose_buffer_the_pool_already_owns_and_keeps_its_spare() {
    let (mut k, mut d) = setup(&small(16, 4, 20), DriverConfig::default());
    k.register_fd(4, SocketState::Connected).unwrap();
    arrive(&mut k, 4, b"bad", 1448);
    arrive(&mut k, 4, b"good", 1448);
    k.rxsync();
    let region = k.region();
    // SAFETY: the emulated port's memory is alive (held by `k`).
    let ring = unsafe { RingPtr::new(&region, addr::rxring(region.base.cast(), 0)) }.unwrap();
    let owned = (0..d.index_limit()).find(|&i| d.pool().is_free(i)).unwrap();
    let mut s = ring.slot(0);
    s.buf_idx = owned;
    ring.set_slot(0, s);
    let mut got = Vec::new();
    let w = d.rx_walk(u32::MAX, |e| {
        if let RxEvent::Data { buf, .. } = e {
            got.push(buf)
        }
    });
    assert_eq!((w.slots, w.bad_slots, w.data), (2, 1, 1));
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0][..], b"good");
    assert_eq!(ring.slot(0).buf_idx, owned, "the bad slot is left as it was");
    assert!(d.pool().is_free(owned), "still on the free list, not lent");
    assert_eq!((d.pool().free_count(), d.pool().capacity()), (3, 4), "one spare swapped for the good slot's buffer");
}

#[test]
fn rx_walk_stops_when_the_pool_is_empty_and_resumes_later() {
    let (mut k, mut d) = setup(&small(16, 2, 20), DriverConfig::default());
    k.register_fd(4, SocketState::Connected).unwrap();
    for i in 0..5u8 {
        arrive(&mut k, 4, &[i; 10], 1448);
    }
    k.rxsync();
    let mut held = Vec::new();
    let w = d.rx_walk(u32::MAX, |e| {
        if let RxEvent::Data { buf, .. } = e {
            held.push(buf)
        }
    });
    assert!(w.pool_exhausted);
    assert_eq!(w.data, 2);
    assert_eq!(d.rx_ready(), 3, "the rest stays in the ring, nothing dropped");
    assert!(d.rx_left(), "the walk says it left slots (the tick then does not wait)");
    check_conservation(&k, &d, &held).unwrap();
    held.clear();
    let w = d.rx_walk(u32::MAX, |e| {
        if let RxEvent::Data { buf, .. } = e {
            held.push(buf)
        }
    });
    assert_eq!(w.data, 2);
    held.clear();
    let mut order = Vec::new();
    d.rx_walk(u32::MAX, |e| {
        if let RxEvent::Data { buf, .. } = e {
            order.push(buf[0])
        }
    });
    assert_eq!(order, vec![4]);
    assert_eq!(d.rx_ready(), 0);
    assert!(!d.rx_left(), "a walk to the end leaves nothing");
}

#[test]
fn tx_fill_copies_owned_bytes_per_mss_and_swaps_pool_buffers() {
    let (mut k, mut d) = setup(&small(16, 10, 20), DriverConfig::default());
    k.register_fd(9, SocketState::Connected).unwrap();
    let big: Vec<u8> = (0..3000u64).map(|i| stream_byte(9, i)).collect();
    d.tx_queue(9, SendData::Owned(big.clone())).unwrap();
    let mut tb = d.pool().tx_buf().unwrap();
    tb.extend_from_slice(b"zero copy");
    let tb_idx = tb.index();
    d.tx_queue(9, SendData::Pool(tb)).unwrap();
    d.tx_queue(9, SendData::Static(b"")).unwrap();
    assert!(matches!(d.tx_queue(65535, SendData::Static(b"x")), Err(RingError::FdOutOfRange(65535))));
    assert!(matches!(d.tx_queue(-1, SendData::Static(b"x")), Err(RingError::FdOutOfRange(-1))));

    let region = k.region();
    // SAFETY: the emulated port's memory is alive (held by `k`).
    let ring = unsafe { RingPtr::new(&region, addr::txring(region.base.cast(), 0)) }.unwrap();
    let fill = d.tx_fill();
    assert_eq!((fill.slots, fill.zero_copy, fill.bytes), (4, 1, 3009));
    let lens: Vec<u16> = (0..4).map(|i| ring.slot(i).len).collect();
    assert_eq!(lens, vec![66 + 1448, 66 + 1448, 66 + 104, 66 + 9]);
    for i in 0..4 {
        let s = ring.slot(i);
        assert_eq!((slot::get_fd(s.ptr), slot::get_doff(s.ptr), slot::generic_offset(s.ptr, 0xff)), (9, 66, 64));
    }
    assert_eq!(ring.slot(3).buf_idx, tb_idx, "the TxBuf's buffer went into the slot");
    assert_eq!((ring.head(), ring.cur()), (4, 4));
    check_conservation(&k, &d, &[]).unwrap();

    let before: Vec<u32> = (0..4).map(|i| ring.slot(i).buf_idx).collect();
    let rep = k.txsync();
    assert_eq!(rep.tx_taken, 4);
    assert_eq!(ring.tail(), 3, "tail = hwcur - 1");
    for i in 0..4 {
        let s = ring.slot(i);
        assert_ne!(s.buf_idx, before[i as usize], "TX slots come back with a different buffer");
        assert_eq!(
            (s.len, slot::get_fd(s.ptr), slot::get_doff(s.ptr), slot::generic_offset(s.ptr, 0xff)),
            (0, 0, 0, 64)
        );
    }
    check_conservation(&k, &d, &[]).unwrap();
    let mut wire = BTreeMap::new();
    drain_sends(&mut k, &mut wire, usize::MAX);
    let mut expect = big;
    expect.extend_from_slice(b"zero copy");
    assert_eq!(wire[&9], expect);
    let mut sent = Vec::new();
    assert_eq!(d.tx_reclaim(|fd, n| sent.push((fd, n))), 4);
    assert_eq!(sent, vec![(9, 1448), (9, 1448), (9, 104), (9, 9)], "one report per slot taken");
    assert_eq!(d.tx_inflight(9), 0);
    assert_eq!(d.tx_space(), 15);
    check_conservation(&k, &d, &[]).unwrap();
}

#[test]
fn a_dead_fd_does_not_stall_the_others() {
    let dcfg = DriverConfig { max_inflight_per_fd: 4, ..DriverConfig::default() };
    let (mut k, mut d) = setup(&small(32, 16, 64), dcfg);
    let (dead, live) = (5, 6);
    k.register_fd(dead, SocketState::Connected).unwrap();
    k.register_fd(live, SocketState::Connected).unwrap();
    // The dead connection has far more queued than the ring holds.
    d.tx_queue(dead, SendData::Owned(vec![0xDD; 100 * 1448])).unwrap();
    d.tx_queue(live, SendData::Static(b"live response")).unwrap();
    let fill = d.tx_fill();
    assert_eq!(fill.slots, 5, "the in-flight bound keeps the dead fd to 4 slots; the live fd gets its slot");
    assert_eq!(d.tx_inflight(dead), 4);
    assert_eq!(d.tx_inflight(live), 1);

    // The peer reset: the socket refuses data and the kernel stops in front of it.
    k.set_send_error(dead, Some(libc::EPIPE));
    let rep = k.txsync();
    assert_eq!(rep.tx_stall, Some(TxStall::SendError { fd: dead, errno: libc::EPIPE }));
    let mut wire = BTreeMap::new();
    drain_sends(&mut k, &mut wire, usize::MAX);
    assert!(!wire.contains_key(&live), "stalled behind the dead slot, as on the live kernel");

    // The runtime notices the reset: drops the fd's queue and closes the socket.
    let dropped = d.tx_drop_fd(dead);
    assert_eq!(dropped, 100 * 1448 - 4 * 1448);
    assert!(k.unregister_fd(dead));
    let rep = k.txsync();
    assert_eq!((rep.tx_unregistered, rep.tx_taken, rep.tx_stall), (4, 1, None));
    drain_sends(&mut k, &mut wire, usize::MAX);
    assert_eq!(wire[&live], b"live response");
    let mut reports = Vec::new();
    d.tx_reclaim(|fd, n| reports.push((fd, n)));
    assert_eq!(reports, vec![(live, 13)], "the dead fd's slots are not reported as sent");
    assert_eq!(d.tx_queued(dead), 0);
    assert_eq!(d.tx_fill().slots, 0, "nothing of the dead fd is placed again");
    check_conservation(&k, &d, &[]).unwrap();

    // The fd number is reused by a new connection: its slots are its own.
    k.register_fd(dead, SocketState::Connected).unwrap();
    d.tx_queue(dead, SendData::Static(b"new")).unwrap();
    d.tx_fill();
    k.txsync();
    let mut reports = Vec::new();
    d.tx_reclaim(|fd, n| reports.push((fd, n)));
    assert_eq!(reports, vec![(dead, 3)]);
}

#[test]
fn export_relinks_free_buffers_for_the_kernel() {
    let (mut k, mut d) = setup(&small(8, 6, 12), DriverConfig::default());
    k.register_fd(3, SocketState::Connected).unwrap();
    arrive(&mut k, 3, b"abc", 1448);
    k.rxsync();
    let mut held = Vec::new();
    d.rx_walk(8, |e| {
        if let RxEvent::Data { buf, .. } = e {
            held.push(buf)
        }
    });
    let queued = d.pool().tx_buf().unwrap();
    d.tx_queue(3, SendData::Pool(queued)).unwrap();
    let rep = d.export_extra();
    assert_eq!(rep, ExportReport { returned: 5, outstanding: 1 });
    assert_eq!(k.memory().extra_list().len(), 5);
    assert_eq!(d.pool().capacity(), 1, "only the buffer the app still holds");
    check_conservation(&k, &d, &held).unwrap();
}

#[test]
fn fd_registration_follows_the_kernel_rules() {
    let mut k = EmuKernel::new(&small(8, 2, 4)).unwrap();
    let errno = |r: Result<(), crate::emu_kernel::FdRegError>| r.err().map(|e| e.errno);
    assert_eq!(errno(k.register_fd(2, SocketState::Connected)), Some(libc::EINVAL));
    assert_eq!(errno(k.register_fd(70000, SocketState::Connected)), Some(libc::ENOMEM));
    assert_eq!(errno(k.register_fd(10, SocketState::Listening)), Some(libc::EINVAL));
    assert_eq!(errno(k.register_fd(10, SocketState::NotSocket)), Some(libc::EINVAL));
    assert_eq!(errno(k.register_fd(10, SocketState::Unconnected)), Some(libc::EINVAL));
    assert_eq!(errno(k.register_fd(10, SocketState::Dead)), Some(libc::EINVAL));
    assert_eq!(errno(k.register_fd(10, SocketState::Connected)), None);
    assert_eq!(errno(k.register_fd(10, SocketState::Connected)), Some(libc::EBUSY));
    assert_eq!(errno(k.register_fd(65535, SocketState::Connected)), None);
}

#[test]
#[cfg_attr(miri, ignore = "Miri has no sockets")]
fn probe_socket_classifies_real_sockets() {
    use crate::emu_kernel::probe_socket;
    use std::os::fd::AsRawFd;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (a, _) = l.accept().unwrap();
    assert_eq!(probe_socket(l.as_raw_fd()), SocketState::Listening);
    assert_eq!(probe_socket(a.as_raw_fd()), SocketState::Connected);
    assert_eq!(probe_socket(c.as_raw_fd()), SocketState::Connected);
    let f = std::fs::File::open("/dev/null").unwrap();
    assert_eq!(probe_socket(f.as_raw_fd()), SocketState::NotSocket);
    // SAFETY: plain syscall; the fd is owned by `s` right away.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(raw >= 0);
    // SAFETY: `raw` is a fresh fd nobody else owns.
    let s = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    assert_eq!(probe_socket(s.as_raw_fd()), SocketState::Unconnected);
}

#[test]
fn unregistered_tx_slots_are_skipped_and_later_slots_still_go_out() {
    let (mut k, mut d) = setup(&small(8, 4, 8), DriverConfig::default());
    k.register_fd(4, SocketState::Connected).unwrap();
    d.tx_queue(3, SendData::Static(b"nobody")).unwrap();
    d.tx_queue(4, SendData::Static(b"somebody")).unwrap();
    d.tx_fill();
    let rep = k.txsync();
    assert_eq!((rep.tx_unregistered, rep.tx_taken), (1, 1));
    let mut wire = BTreeMap::new();
    drain_sends(&mut k, &mut wire, usize::MAX);
    assert_eq!(wire.keys().copied().collect::<Vec<_>>(), vec![4]);
    let held: Vec<KernelHold> = {
        let mut v = Vec::new();
        k.for_each_held(|_, h| v.push(h));
        v
    };
    assert!(held.iter().all(|&h| h == KernelHold::Free));
}

/// Hands `data` for `fd` to the emulated kernel as received during a sync (one
/// buffer); returns what became of it.
fn arrive_now(k: &mut EmuKernel, fd: i32, data: &[u8]) -> Arrival {
    let idx = k.rx_buffer().expect("a spare buffer");
    k.rx_payload_mut(idx).unwrap()[..data.len()].copy_from_slice(data);
    k.rx_arrived(fd, idx, data.len()).unwrap()
}

#[test]
fn an_arrivals_spare_is_lent_for_receiving_when_asked_exactly_when_rx_buffer_would_lend_it() {
    let (mut k, mut d) = setup(&small(16, 4, 20), DriverConfig::default());
    k.register_fd(4, SocketState::Connected).unwrap();
    let free = k.free_count();
    // Asked: the slot's old buffer comes back lent for receiving, with its memory.
    let idx = k.rx_buffer().unwrap();
    k.rx_payload_mut(idx).unwrap()[..3].copy_from_slice(b"one");
    let (arrival, spare) = k.rx_arrived_lending(4, idx, 3, true).unwrap();
    assert_eq!(arrival, Arrival::Placed);
    let (spare, base) = spare.expect("a spare, lent");
    assert_ne!(spare, idx);
    let (payload, _) = k.rx_payload_ptr(spare).expect("held for receiving");
    assert_eq!(payload, base.wrapping_add((d.generic_offset() + 66) as usize));
    assert_eq!(k.free_count(), free - 1, "it did not join the free ones");
    k.rx_abandon(spare).unwrap();
    // Not asked: it joins the free ones, as rx_arrived files it.
    let idx = k.rx_buffer().unwrap();
    let (_, none) = k.rx_arrived_lending(4, idx, 3, false).unwrap();
    assert!(none.is_none());
    assert_eq!(k.free_count(), free);
    // With the spares down to the TX reserve: lent exactly when rx_buffer would lend
    // the spare once filed.
    let mut taken = vec![];
    while let Some(i) = k.rx_buffer() {
        taken.push(i);
    }
    let idx = taken.pop().unwrap();
    let (_, spare) = k.rx_arrived_lending(4, idx, 3, true).unwrap();
    let idx = taken.pop().unwrap();
    let filed = k.rx_arrived(4, idx, 3).unwrap();
    assert_eq!(filed, Arrival::Placed);
    assert_eq!(spare.is_some(), k.rx_buffer().is_some());
    k.rxsync();
    assert_eq!(walk_all(&mut d).len(), 4, "every arrival reached the ring");
}

/// Walks the RX ring: (fd, payload or "<eof>") per slot.
fn walk_all(d: &mut RingDriver) -> Vec<(i32, Vec<u8>)> {
    let mut seen = Vec::new();
    d.rx_walk(u32::MAX, |e| match e {
        RxEvent::Data { fd, buf } => seen.push((fd, buf.to_vec())),
        RxEvent::Eof { fd } => seen.push((fd, b"<eof>".to_vec())),
    });
    seen
}

#[test]
fn received_data_lands_in_the_ring_at_once_and_each_fds_slots_stay_together() {
    let (mut k, mut d) = setup(&small(16, 10, 40), DriverConfig::default());
    for fd in [5, 7] {
        k.register_fd(fd, SocketState::Connected).unwrap();
    }
    k.rxsync();
    assert_eq!(arrive_now(&mut k, 5, b"a1"), Arrival::Placed);
    assert_eq!(arrive_now(&mut k, 5, b"a2"), Arrival::Placed, "fd 5's slots are the last ones: it may go on");
    assert_eq!(arrive_now(&mut k, 7, b"b1"), Arrival::Placed);
    assert_eq!(
        arrive_now(&mut k, 5, b"a3"),
        Arrival::Backlogged { backlog: 1 },
        "fd 5 already has slots in this batch, and fd 7's come after them"
    );
    assert!(k.rx_eof_arrived(7));
    assert!(walk_all(&mut d).is_empty(), "nothing is visible before the tail is published");
    k.rx_publish();
    let seen = walk_all(&mut d);
    let expect: Vec<(i32, Vec<u8>)> =
        vec![(5, b"a1".to_vec()), (5, b"a2".to_vec()), (7, b"b1".to_vec()), (7, b"<eof>".to_vec())];
    assert_eq!(seen, expect);
    assert_eq!(k.rx_backlog(5), 1);
    // The next batch starts with the backlog; new data of the fd goes behind it.
    k.rxsync();
    assert_eq!(k.rx_backlog(5), 0);
    assert_eq!(arrive_now(&mut k, 5, b"a4"), Arrival::Placed);
    k.rx_publish();
    assert_eq!(walk_all(&mut d), vec![(5, b"a3".to_vec()), (5, b"a4".to_vec())]);
    check_conservation(&k, &d, &[]).unwrap();
}

#[test]
fn a_reused_rx_slot_carries_only_the_flags_the_kernel_wrote_into_it() {
    // rxsync leaves the NS_BUF_CHANGED the walk set on the slots it released: the
    // kernel writes a slot's flags whole when it fills it again, so the application
    // sees the same slots as if they had been cleared.
    let (mut k, mut d) = setup(&small(4, 10, 40), DriverConfig::default());
    k.register_fd(5, SocketState::Connected).unwrap();
    let region = k.region();
    // SAFETY: the emulated port's memory is alive (held by `k`).
    let ring = unsafe { RingPtr::new(&region, addr::rxring(region.base.cast(), 0)) }.unwrap();
    k.rxsync();
    for part in [&b"a1"[..], b"a2", b"a3"] {
        assert_eq!(arrive_now(&mut k, 5, part), Arrival::Placed);
    }
    k.rx_publish();
    assert_eq!(walk_all(&mut d).len(), 3);
    assert!((0..3).all(|i| ring.slot(i).flags & slotflags::BUF_CHANGED != 0), "the walk swapped buffers in");
    k.rxsync();
    assert_eq!(arrive_now(&mut k, 5, b"b1"), Arrival::Placed);
    assert!(k.rx_eof_arrived(5));
    k.rx_publish();
    let (data, eof) = (ring.slot(3), ring.slot(0));
    assert_eq!(data.flags, slotflags::BUF_CHANGED, "a data slot says its buffer changed, nothing else");
    assert_eq!(eof.flags, 0, "an EOF slot reused after a swap says nothing");
    assert_eq!(walk_all(&mut d), vec![(5, b"b1".to_vec()), (5, b"<eof>".to_vec())]);
    check_conservation(&k, &d, &[]).unwrap();
}

#[test]
fn a_full_rx_ring_backlogs_received_data_until_the_application_makes_room() {
    let (mut k, mut d) = setup(&small(4, 10, 40), DriverConfig::default());
    k.register_fd(5, SocketState::Connected).unwrap();
    k.rxsync();
    for i in 0..3u8 {
        assert_eq!(arrive_now(&mut k, 5, &[i]), Arrival::Placed, "slot {i}");
    }
    assert_eq!(arrive_now(&mut k, 5, &[3]), Arrival::Backlogged { backlog: 1 }, "a 4-slot ring holds 3");
    assert!(k.rx_eof_arrived(5));
    assert_eq!(k.rx_backlog(5), 2, "the FIN waits behind the data");
    assert!(!k.rx_waiting(), "nothing can move before the application releases slots");
    k.rx_publish();
    assert_eq!(walk_all(&mut d).len(), 3);
    assert!(k.rx_waiting());
    k.rxsync();
    assert_eq!(walk_all(&mut d), vec![(5, vec![3]), (5, b"<eof>".to_vec())]);
    // An unregistered fd's buffer goes back to the spares at once.
    let spares = k.free_count();
    assert_eq!(arrive_now(&mut k, 9, b"x"), Arrival::Unregistered);
    assert_eq!(k.free_count(), spares);
    check_conservation(&k, &d, &[]).unwrap();
}

#[test]
fn one_fd_gets_at_most_a_batch_budget_of_slots_directly() {
    let (mut k, mut d) = setup(&small(128, 10, 200), DriverConfig::default());
    k.register_fd(5, SocketState::Connected).unwrap();
    k.rxsync();
    for i in 0..RX_BATCH_PER_FD {
        assert_eq!(arrive_now(&mut k, 5, &[i as u8]), Arrival::Placed);
    }
    assert_eq!(arrive_now(&mut k, 5, b"more"), Arrival::Backlogged { backlog: 1 });
    k.rx_publish();
    assert_eq!(walk_all(&mut d).len(), RX_BATCH_PER_FD as usize);
    k.rxsync();
    assert_eq!(walk_all(&mut d), vec![(5, b"more".to_vec())]);
}

#[test]
fn send_queues_are_read_in_place_and_retired_as_the_socket_takes_them() {
    let (mut k, mut d) = setup(&small(16, 10, 40), DriverConfig::default());
    for fd in [4, 6] {
        k.register_fd(fd, SocketState::Connected).unwrap();
    }
    d.tx_queue(4, SendData::Static(b"first")).unwrap();
    d.tx_queue(6, SendData::Static(b"other")).unwrap();
    d.tx_queue(4, SendData::Static(b"second")).unwrap();
    d.tx_fill();
    assert_eq!(k.txsync().tx_taken, 3);
    let mut ready = Vec::new();
    while let Some(fd) = k.take_tx_ready() {
        ready.push(fd);
    }
    ready.sort();
    assert_eq!(ready, vec![4, 6], "each fd with payloads named once");
    assert_eq!(k.take_tx_ready(), None);
    let mut parts = Vec::new();
    assert_eq!(k.sends_gather(4, 16, |p| parts.push(p.to_vec())), 2);
    assert_eq!(parts, vec![b"first".to_vec(), b"second".to_vec()]);
    // All 11 bytes and no other count: what a send of the whole queue carries.
    assert!(k.sends_queued_are(4, 11) && k.sends_queued_are(6, 5));
    assert!(!k.sends_queued_are(4, 5) && !k.sends_queued_are(4, 12));
    let queued = k.queued_in_socket(4).unwrap();
    assert_eq!(queued, 11 + 2 * u64::from(EMU_SKB_OVERHEAD));
    // A short send: the rest of the first payload goes again, in place.
    assert!(k.sends_done(4, 3));
    let mut parts = Vec::new();
    k.sends_gather(4, 1, |p| parts.push(p.to_vec()));
    assert_eq!(parts, vec![b"st".to_vec()]);
    assert!(k.sends_queued_are(4, 8), "the rest of the first payload and the second");
    assert_eq!(k.queued_in_socket(4), Some(queued), "charged until the payload is fully sent");
    assert!(k.sends_done(4, 2));
    assert_eq!(k.queued_in_socket(4), Some(6 + u64::from(EMU_SKB_OVERHEAD)));
    assert!(!k.sends_done(4, 6), "the queue is empty");
    assert!(k.sends_queued_are(4, 0) && k.sends_queued_are(99, 0));
    assert_eq!(k.queued_in_socket(4), Some(0));
    // A socket whose sending failed drops its queue, and its later slots are skipped.
    k.sends_fail(6);
    assert!(!k.has_sends(6));
    d.tx_reclaim(|_, _| {});
    d.tx_queue(6, SendData::Static(b"late")).unwrap();
    d.tx_fill();
    let rep = k.txsync();
    assert_eq!((rep.tx_taken, rep.tx_unregistered), (0, 1));
    check_conservation(&k, &d, &[]).unwrap();
}

#[test]
fn an_fd_is_named_for_sending_once_per_run_of_its_slots_and_its_whole_queue_goes_at_the_first() {
    let (mut k, mut d) = setup(&small(8, 8, 16), DriverConfig::default());
    for fd in [4, 6] {
        k.register_fd(fd, SocketState::Connected).unwrap();
        d.tx_set_budget(fd, EMU_SNDBUF).unwrap();
    }
    // Slots 4, 4, 6, 4: fd 4 in two runs, fd 6 in one.
    for (fd, data) in [(4, &b"a"[..]), (4, b"b"), (6, b"x"), (4, b"c")] {
        assert_eq!(d.tx_copy(fd, data), 1);
    }
    assert_eq!(k.txsync().tx_taken, 4);
    let mut named = Vec::new();
    let mut sent: BTreeMap<i32, Vec<u8>> = BTreeMap::new();
    while let Some(fd) = k.take_tx_ready() {
        named.push(fd);
        // What a provider does per naming: send the whole queue, retire it.
        let mut bytes = Vec::new();
        k.sends_gather(fd, usize::MAX, |p| bytes.extend_from_slice(p));
        assert!(!k.sends_done(fd, bytes.len() as u64));
        sent.entry(fd).or_default().extend_from_slice(&bytes);
    }
    named.sort();
    assert_eq!(named, vec![4, 4, 6], "once per run of slots");
    assert_eq!((sent[&4].as_slice(), sent[&6].as_slice()), (&b"abc"[..], &b"x"[..]), "each byte once, in order");
    assert_eq!(k.take_tx_ready(), None);
    // A later txsync with one run per fd names each once.
    d.tx_reclaim(|_, _| {});
    for fd in [6, 4] {
        assert_eq!(d.tx_copy(fd, b"y"), 1);
    }
    k.txsync();
    let mut again = Vec::new();
    while let Some(fd) = k.take_tx_ready() {
        again.push(fd);
    }
    again.sort();
    assert_eq!(again, vec![4, 6]);
}

#[test]
fn a_send_with_nothing_queued_goes_straight_into_a_slot() {
    let (mut k, mut d) = setup(&small(8, 8, 16), DriverConfig::default());
    k.register_fd(4, SocketState::Connected).unwrap();
    d.tx_set_budget(4, EMU_SNDBUF).unwrap();
    let mut b = d.pool().tx_buf().unwrap();
    b.put(b"zero copy");
    let idx = b.index();
    assert_eq!(d.tx_send(4, SendData::Pool(b)).unwrap(), 1, "placed at once");
    assert_eq!((d.tx_queued(4), d.tx_inflight(4)), (0, 1));
    let ring = d.tx[0].ring;
    assert_eq!((ring.head(), ring.cur()), (1, 1));
    assert_eq!(ring.slot(0).buf_idx, idx, "the pool buffer itself is in the slot");
    // Owned bytes are copied into a slot the same way; behind data already queued a
    // send waits its turn.
    assert_eq!(d.tx_send(4, SendData::Owned(b"copied".to_vec())).unwrap(), 1);
    d.tx_queue(4, SendData::Static(b"queued")).unwrap();
    assert_eq!(d.tx_send(4, SendData::Static(b"behind")).unwrap(), 0);
    assert_eq!(d.tx_fill().slots, 2);
    k.txsync();
    let mut wire = BTreeMap::new();
    drain_sends(&mut k, &mut wire, usize::MAX);
    assert_eq!(wire[&4], b"zero copycopiedqueuedbehind");
    let mut reported = 0;
    d.tx_reclaim(|_, n| reported += n);
    assert_eq!(reported, 27);
    check_conservation(&k, &d, &[]).unwrap();
}

#[test]
fn a_full_tx_buf_of_the_ports_pool_fits_one_slot_and_goes_in_whole() {
    // 2 KiB buffers hold more than one MSS (1448 bytes here, as on a NIC): the pool
    // lends TxBufs of one slot's payload, so a full one is swapped in, never copied.
    let (mut k, mut d) = setup(&small(8, 8, 16), DriverConfig::default());
    assert!(d.pool().buf_size() - d.pool().tx_headroom() > DEFAULT_MSS);
    assert_eq!((d.pool().tx_capacity(), d.tx_slot_payload()), (DEFAULT_MSS, DEFAULT_MSS));
    k.register_fd(4, SocketState::Connected).unwrap();
    d.tx_set_budget(4, EMU_SNDBUF).unwrap();
    let mut b = d.pool().tx_buf().unwrap();
    let payload: Vec<u8> = (0..u64::from(DEFAULT_MSS)).map(|i| stream_byte(4, i)).collect();
    b.put(&payload);
    assert_eq!(b.remaining(), 0, "full at one slot's payload");
    let idx = b.index();
    let copied = SendData::copied_on_this_thread();
    assert_eq!(d.tx_send(4, SendData::Pool(b)).unwrap(), 1, "one slot");
    assert_eq!(d.tx[0].ring.slot(0).buf_idx, idx, "the buffer itself is in the slot");
    assert_eq!(SendData::copied_on_this_thread(), copied, "nothing copied");
    k.txsync();
    let mut wire = BTreeMap::new();
    drain_sends(&mut k, &mut wire, usize::MAX);
    assert_eq!(wire[&4], payload);
    check_conservation(&k, &d, &[]).unwrap();
}

#[test]
fn bytes_copied_in_place_fill_free_slots_and_their_rest_queues_without_a_copy() {
    // A 4-slot ring holds 3 slots in flight: a 5000-byte send copied a slot at a time
    // fills them (1448 bytes each), and the rest joins the fd's queue as the same
    // item, its placed part skipped.
    let (mut k, mut d) = setup(&small(4, 8, 16), DriverConfig::default());
    k.register_fd(4, SocketState::Connected).unwrap();
    k.register_fd(5, SocketState::Connected).unwrap();
    d.tx_set_budget(4, EMU_SNDBUF).unwrap();
    d.tx_set_budget(5, EMU_SNDBUF).unwrap();
    let data: Vec<u8> = (0..5000u64).map(|i| stream_byte(4, i)).collect();
    let copied_before = SendData::copied_on_this_thread();
    let mut placed = 0;
    for _ in 0..3 {
        let n = d.tx_copy(4, &data[placed..]);
        assert_eq!(n, DEFAULT_MSS as usize, "one slot's worth");
        placed += n;
    }
    assert_eq!(d.tx_copy(4, &data[placed..]), 0, "the ring is full");
    assert_eq!((d.tx_inflight(4), d.tx_queued(4)), (3, 0), "copied, nothing queued");
    assert_eq!(d.tx_send_from(4, SendData::Owned(data.clone()), placed).unwrap(), 0);
    assert_eq!(d.tx_queued(4), (5000 - placed) as u64, "the rest, in place");
    // Behind queued data nothing is placed directly: order and fairness hold.
    assert_eq!(d.tx_copy(5, b"other"), 0);
    assert_eq!(d.tx_copy(4, b"later"), 0);
    let mut wire = BTreeMap::new();
    let mut reported = 0;
    while d.tx_queued(4) > 0 || d.tx_inflight(4) > 0 {
        k.txsync();
        drain_sends(&mut k, &mut wire, usize::MAX);
        d.tx_send_space(4, k.send_space(4).unwrap());
        d.tx_reclaim(|fd, n| {
            assert_eq!(fd, 4);
            reported += n;
        });
        d.tx_fill();
    }
    assert_eq!(wire[&4], data, "in order, once");
    assert_eq!(reported, 5000);
    assert_eq!(SendData::copied_on_this_thread() - copied_before, 5000, "each byte copied once");
    // Nothing queued any more: a copy goes straight into a slot again.
    assert_eq!(d.tx_copy(5, b"other"), 5);
    check_conservation(&k, &d, &[]).unwrap();
}

#[test]
fn a_tx_slot_with_a_raised_generic_offset_takes_only_what_fits_after_it() {
    // 192-byte buffers, G = 64, doff 66: a slot at the port's offset holds 62 bytes.
    // The kernel may hand back a slot with another generic offset: a copy into it
    // takes what fits after that offset, and none when nothing does.
    let cfg = EmuPortConfig { buf_size: 192, ..small(4, 8, 16) };
    let (mut k, mut d) = setup(&cfg, DriverConfig::default());
    k.register_fd(4, SocketState::Connected).unwrap();
    d.tx_set_budget(4, EMU_SNDBUF).unwrap();
    let ring = d.tx[0].ring;
    let raise = |g: u64| {
        let head = ring.head();
        let mut s = ring.slot(head);
        s.ptr = slot::set_generic_offset(s.ptr, ring.offset_mask(), g);
        ring.set_slot(head, s);
    };
    let data: Vec<u8> = (0..200u64).map(|i| stream_byte(4, i)).collect();
    raise(126);
    assert_eq!(d.tx_copy(4, &data), 0, "no room after offset 126 + doff 66");
    assert_eq!(d.tx_inflight(4), 0, "nothing placed");
    raise(100);
    assert_eq!(d.tx_copy(4, &data), 26, "192 - 100 - 66");
    assert_eq!(d.tx_copy(4, &data[26..]), 62, "the port's own offset: 192 - 64 - 66");
    k.txsync();
    let mut wire = BTreeMap::new();
    drain_sends(&mut k, &mut wire, usize::MAX);
    assert_eq!(wire[&4], data[..88], "each slot's bytes read at its own offset, in order");
    check_conservation(&k, &d, &[]).unwrap();
}

#[test]
fn taken_slots_are_reported_once_however_often_the_driver_looks() {
    // The driver looks at the kernel's TX tail after each sync (tx_reclaim), and again
    // when a socket is reported writable or a send looks for a slot; a look that finds
    // the tail where it was must find nothing new, and a full trip round the ring
    // between two reclaims must still be reported whole.
    let (mut k, mut d) = setup(&small(4, 16, 16), DriverConfig::default());
    k.register_fd(4, SocketState::Connected).unwrap();
    d.tx_set_budget(4, EMU_SNDBUF).unwrap();
    let mut wire = BTreeMap::new();
    let mut reported = 0;
    for round in 0..5u64 {
        // Three slots (a 4-slot ring's whole space), taken by one txsync.
        for _ in 0..3 {
            assert_eq!(d.tx_send(4, SendData::Static(b"0123456789")).unwrap(), 1);
        }
        k.txsync();
        drain_sends(&mut k, &mut wire, usize::MAX);
        d.tx_send_space(4, k.send_space(4).unwrap());
        d.tx_writable(4);
        d.tx_reclaim(|_, n| reported += n);
        d.tx_reclaim(|_, n| reported += n);
        assert_eq!(reported, 30 * (round + 1), "round {round}");
        assert_eq!(d.tx_inflight(4), 0);
    }
    assert_eq!(wire[&4].len(), 150);
    check_conservation(&k, &d, &[]).unwrap();
}

/// Completes the kernel's send jobs of the fds in `reading` (their peers read),
/// onto the wire; the jobs of other fds stay in flight (their peers do not read).
fn drain_readers(k: &mut EmuKernel, wire: &mut BTreeMap<i32, Vec<u8>>, held: &mut Vec<SendJob>, reading: &[i32]) {
    while let Some(job) = k.next_send() {
        held.push(job);
    }
    let mut keep = Vec::new();
    for job in held.drain(..) {
        if reading.contains(&job.fd) {
            wire.entry(job.fd).or_default().extend_from_slice(k.send_payload(&job).unwrap());
            k.send_done(job.buf).unwrap();
        } else {
            keep.push(job);
        }
    }
    *held = keep;
}

/// What a provider does after a sync: the fds the driver wants send space for whose
/// socket has it are reported writable.
fn report_writable(k: &EmuKernel, d: &mut RingDriver) -> Vec<i32> {
    let fds: Vec<i32> = d.tx_space_waiters().filter(|&fd| k.writable(fd)).collect();
    for &fd in &fds {
        d.tx_writable(fd);
    }
    fds
}

#[test]
fn a_full_socket_stalls_the_emulated_txsync_as_the_kernel_does() {
    // No budget: the driver does not hold the fd back, and the emulated kernel stops
    // at the first slot its socket cannot take, with every later slot behind it.
    let (mut k, mut d) = setup(&small(64, 48, 96), DriverConfig::default());
    let (slow, other) = (5, 6);
    for fd in [slow, other] {
        k.register_fd(fd, SocketState::Connected).unwrap();
    }
    assert!(k.set_sndbuf(slow, 4096));
    d.tx_queue(slow, SendData::Owned(vec![1; 6 * 1448])).unwrap();
    d.tx_fill();
    d.tx_queue(other, SendData::Static(b"other")).unwrap();
    d.tx_fill();
    let rep = k.txsync();
    assert_eq!(rep.tx_stall, Some(TxStall::SendError { fd: slow, errno: libc::EAGAIN }));
    assert_eq!(rep.tx_taken, 2, "two slots fit: 2 x (1448 + 1280) > 4096 only after the second");
    assert!(!k.writable(slow));
    let (mut wire, mut held) = (BTreeMap::new(), Vec::new());
    drain_readers(&mut k, &mut wire, &mut held, &[other]);
    assert!(!wire.contains_key(&other), "the other connection waits behind the full socket");
    d.tx_reclaim(|_, _| {});
    assert!(!d.tx_wants_space(slow), "left by one sync: maybe only not handed back yet");
    assert_eq!(k.txsync().tx_taken, 0, "still stalled");
    d.tx_reclaim(|_, _| {});
    assert!(d.tx_wants_space(slow), "a fd whose slot the kernel left by two syncs in a row wants space");
    assert!(!d.tx_wants_space(other), "the other fd waits too, but only the slow fd's socket must drain");
}

#[test]
fn a_congested_connection_keeps_its_data_off_the_ring_and_never_stalls_the_others() {
    let (mut k, mut d) = setup(&small(64, 48, 96), DriverConfig::default());
    let (slow, fast) = (5, 6);
    for fd in [slow, fast] {
        k.register_fd(fd, SocketState::Connected).unwrap();
        assert!(k.set_sndbuf(fd, 16 * 1024));
        d.tx_set_budget(fd, k.sndbuf(fd).unwrap()).unwrap();
    }
    let big: Vec<u8> = (0..200_000u64).map(|i| stream_byte(slow, i)).collect();
    d.tx_queue(slow, SendData::Owned(big.clone())).unwrap();
    let (mut wire, mut held) = (BTreeMap::new(), Vec::new());
    let mut expect_fast = Vec::new();
    for round in 0..50u32 {
        let msg = format!("response {round}\n").into_bytes();
        d.tx_queue(fast, SendData::Owned(msg.clone())).unwrap();
        expect_fast.extend_from_slice(&msg);
        // Two ticks at most: one more when the fast fd's own credit ran out and its
        // (writable) socket gives it back after the sync.
        for _ in 0..2 {
            let fill = d.tx_fill();
            assert_eq!(fill.bad_slots, 0);
            let rep = k.txsync();
            assert_eq!(rep.tx_stall, None, "round {round}: txsync stopped at a slot");
            // The slow peer never reads: its sends stay in flight and its socket full.
            drain_readers(&mut k, &mut wire, &mut held, &[fast]);
            d.tx_reclaim(|_, _| {});
            report_writable(&k, &mut d);
        }
        assert_eq!(wire.get(&fast).map_or(0, Vec::len), expect_fast.len(), "round {round}: the fast fd waited");
        assert_eq!(d.tx_inflight(slow), 0, "nothing of the slow fd is left in the ring");
    }
    assert_eq!(wire[&fast], expect_fast);
    let on_wire_slow = held.iter().map(|j| j.len as usize).sum::<usize>();
    assert!(on_wire_slow < 16 * 1024, "the socket took no more than its buffer: {on_wire_slow}");
    assert_eq!(d.tx_queued(slow) as usize, big.len() - on_wire_slow, "the rest waits in the driver's queue");
    assert!(d.tx_wants_space(slow));
    assert_eq!(d.tx_space_waiters().collect::<Vec<_>>(), vec![slow]);

    // The slow peer reads again: its socket drains, POLLOUT, credit, and the rest of
    // its data goes out in order.
    for _ in 0..400 {
        drain_readers(&mut k, &mut wire, &mut held, &[fast, slow]);
        d.tx_reclaim(|_, _| {});
        report_writable(&k, &mut d);
        d.tx_fill();
        assert_eq!(k.txsync().tx_stall, None);
        if wire.get(&slow).map_or(0, Vec::len) == big.len() {
            break;
        }
    }
    assert_eq!(wire[&slow], big, "every byte of the slow fd, in order");
    assert!(!d.tx_wants_space(slow));
    check_conservation(&k, &d, &[]).unwrap();
}

#[test]
fn a_congested_fd_cannot_starve_the_pool_with_queued_sends() {
    let (mut k, mut d) = setup(&small(64, 40, 96), DriverConfig::default());
    let (slow, other) = (5, 6);
    for fd in [slow, other] {
        k.register_fd(fd, SocketState::Connected).unwrap();
        assert!(k.set_sndbuf(fd, 2048));
        d.tx_set_budget(fd, 2048).unwrap();
    }
    // The slow fd queues most of the pool, in pool buffers.
    let mut expect = Vec::new();
    for i in 0..38u8 {
        let mut b = d.pool().tx_buf().unwrap();
        b.put(&[i; 1000]);
        expect.extend_from_slice(&[i; 1000]);
        d.tx_queue(slow, SendData::Pool(b)).unwrap();
    }
    assert_eq!(d.pool().free_count(), 2);
    let fill = d.tx_fill();
    assert!(fill.blocked > 0, "the slow fd ran out of send credit");
    assert!(fill.pool_relieved > 30, "{fill:?}");
    assert!(d.pool().free_count() >= 32, "the pool got its buffers back: {}", d.pool().free_count());
    assert_eq!(d.tx_queued(slow) as usize + d.tx_inflight(slow) as usize * 1000, expect.len());
    // Receives go on; the slow fd's bytes still go out in order once it drains.
    k.register_fd(7, SocketState::Connected).unwrap();
    arrive(&mut k, 7, b"still receiving", 1448);
    k.rxsync();
    let mut got = Vec::new();
    assert_eq!(d.rx_walk(u32::MAX, |e| got.push(e)).data, 1);
    drop(got);
    let mut wire = BTreeMap::new();
    for _ in 0..200 {
        k.txsync();
        drain_sends(&mut k, &mut wire, usize::MAX);
        d.tx_reclaim(|_, _| {});
        report_writable(&k, &mut d);
        d.tx_fill();
    }
    assert_eq!(wire[&slow], expect);
    check_conservation(&k, &d, &[]).unwrap();
}

#[test]
fn send_credit_follows_budget_charges_and_pollout() {
    let dcfg = DriverConfig { tx_slot_overhead: 1000, lists_low_credit: true, ..DriverConfig::default() };
    let (mut k, mut d) = setup(&small(64, 48, 96), dcfg);
    k.register_fd(7, SocketState::Connected).unwrap();
    assert_eq!(d.tx_credit(7), None, "no budget: never held back");
    d.tx_set_budget(7, 9000).unwrap();
    assert_eq!(d.tx_credit(7), Some(9000));
    d.tx_queue(7, SendData::Owned(vec![7; 10 * 1448])).unwrap();
    let fill = d.tx_fill();
    // 2448 per full slot: 9000 -> 6552 -> 4104 -> 1656 -> -792, then blocked.
    assert_eq!((fill.slots, fill.blocked), (4, 1));
    assert_eq!(d.tx_credit(7), Some(-792));
    assert!(d.tx_wants_space(7));
    // POLLOUT with the slots still in the ring: a third of the budget less them.
    d.tx_writable(7);
    assert_eq!(d.tx_credit(7), Some(-792), "3000 - 4 x 2448 is below the credit");
    k.txsync();
    d.tx_writable(7);
    assert_eq!(d.tx_credit(7), Some(3000), "taken slots no longer count against the bound");
    assert!(!d.tx_wants_space(7));
    assert_eq!(d.tx_fill().slots, 2);
    assert_eq!(d.tx_low_credit().collect::<Vec<_>>(), vec![7], "below half the budget");
    // An exact report (an emulated port knows the free space): the credit is that,
    // less what still waits in the ring.
    d.tx_send_space(7, 8000);
    assert_eq!(d.tx_credit(7), Some(8000 - 2 * 2448));
    k.txsync();
    d.tx_send_space(7, 8000);
    assert_eq!(d.tx_credit(7), Some(8000));
    assert_eq!(d.tx_low_credit().count(), 0, "topped up above half the budget");
    assert_eq!(d.tx_drop_fd(7), 4 * 1448);
    assert_eq!(d.tx_credit(7), None, "a new connection on the number sets its own budget");
    assert!(matches!(d.tx_set_budget(70_000, 1), Err(RingError::FdOutOfRange(70_000))));
}

#[test]
fn low_credit_is_listed_only_for_a_provider_that_tops_it_up() {
    // Kernel PASTE cannot read a socket's free space: nothing would ever unlist a
    // low fd, so the list is not kept (it would grow with every connection that
    // ever sent, and each fill would walk it).
    let dcfg = DriverConfig { tx_slot_overhead: 1000, ..DriverConfig::default() };
    assert!(!dcfg.lists_low_credit);
    let (_k, mut d) = setup(&small(64, 48, 96), dcfg);
    for fd in 7..10 {
        d.tx_set_budget(fd, 9000).unwrap();
        d.tx_queue(fd, SendData::Owned(vec![7; 3 * 1448])).unwrap();
    }
    d.tx_fill();
    assert!((7..10).all(|fd| d.tx_credit(fd).is_some_and(|c| c < 4500)), "all below half their budget");
    assert_eq!(d.tx_low_credit().count(), 0);
    assert!(!d.tx_any_low_credit());
}

#[derive(Clone, Debug)]
enum Step {
    /// Data arrives: through the backlog (`direct` false) or during a sync
    /// (`rx_arrived`: into the ring at once when the rules allow).
    Arrive {
        fd: usize,
        len: usize,
        direct: bool,
    },
    Eof {
        fd: usize,
        direct: bool,
    },
    RxSync,
    /// The end of a sync: the tails of what arrived during it are published.
    Publish,
    Walk {
        budget: u32,
        keep: bool,
    },
    Release {
        n: usize,
    },
    /// A send: queued (`tx_queue`), placed at once when nothing waits (`tx_send`),
    /// or (`copy`, as the backend does from a record's queue) copied into slots in
    /// place a slot at a time (`tx_copy`) and the rest handed over (`tx_send_from`).
    Queue {
        fd: usize,
        len: usize,
        pool: bool,
        direct: bool,
        copy: bool,
    },
    Fill,
    TxSync,
    /// Sends taken by the provider: job by job (`next_send`), or a socket's whole
    /// queue read in place and retired in two parts (`sends_gather`, `sends_done`).
    Drain {
        n: usize,
        in_place: bool,
    },
    Reclaim,
    Writable,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..4usize, 1..4000usize, any::<bool>()).prop_map(|(fd, len, direct)| Step::Arrive { fd, len, direct }),
        1 => (0..4usize, any::<bool>()).prop_map(|(fd, direct)| Step::Eof { fd, direct }),
        3 => Just(Step::RxSync),
        2 => Just(Step::Publish),
        3 => (1..20u32, any::<bool>()).prop_map(|(budget, keep)| Step::Walk { budget, keep }),
        2 => (0..8usize).prop_map(|n| Step::Release { n }),
        3 => (0..4usize, 0..5000usize, any::<bool>(), any::<bool>(), any::<bool>())
            .prop_map(|(fd, len, pool, direct, copy)| Step::Queue { fd, len, pool, direct, copy }),
        3 => Just(Step::Fill),
        3 => Just(Step::TxSync),
        2 => (0..6usize, any::<bool>()).prop_map(|(n, in_place)| Step::Drain { n, in_place }),
        2 => Just(Step::Reclaim),
        2 => Just(Step::Writable),
    ]
}

/// The model: what each fd should have received / sent, in order.
#[derive(Default)]
struct Model {
    rx_expected: BTreeMap<i32, Vec<u8>>,
    rx_got: BTreeMap<i32, Vec<u8>>,
    eof_sent: BTreeMap<i32, usize>,
    eof_seen: BTreeMap<i32, bool>,
    tx_expected: BTreeMap<i32, Vec<u8>>,
    tx_wire: BTreeMap<i32, Vec<u8>>,
    tx_reported: BTreeMap<i32, u64>,
}

struct Harness {
    k: EmuKernel,
    d: RingDriver,
    app: Vec<RxBuf>,
    m: Model,
    fds: [i32; 4],
    /// Per RX ring: where the current batch (since the last rxsync) starts.
    batch_start: Vec<u32>,
}

impl Harness {
    /// The end of a batch (before an rxsync): publishes what arrived during it and
    /// checks that each fd's slots of the batch are contiguous.
    fn end_batch(&mut self) -> Result<(), TestCaseError> {
        self.k.rx_publish();
        for (r, ring) in self.d.rx.iter().enumerate() {
            let (n, tail) = (ring.num_slots(), ring.tail());
            let mut runs: Vec<i32> = Vec::new();
            let mut i = self.batch_start[r];
            while i != tail {
                let fd = slot::get_fd(ring.slot(i).ptr);
                if runs.last() != Some(&fd) {
                    prop_assert!(!runs.contains(&fd), "fd {}'s slots of one batch are split: {:?}", fd, runs);
                    runs.push(fd);
                }
                i = slot::ring_next(i, n);
            }
            self.batch_start[r] = tail;
        }
        Ok(())
    }

    /// Every send queue read in place: a socket's payloads gathered, then retired in
    /// two parts (the first a short send), their bytes onto the wire.
    fn drain_in_place(&mut self) {
        while let Some(fd) = self.k.take_tx_ready() {
            let mut bytes = Vec::new();
            self.k.sends_gather(fd, usize::MAX, |p| bytes.extend_from_slice(p));
            let half = bytes.len() as u64 / 2;
            self.k.sends_done(fd, half);
            assert!(!self.k.sends_done(fd, bytes.len() as u64 - half), "all of fd {fd}'s queue was sent");
            self.m.tx_wire.entry(fd).or_default().extend_from_slice(&bytes);
        }
    }

    fn walk(&mut self, budget: u32, keep: bool) -> Result<(), TestCaseError> {
        let mut events = Vec::new();
        self.d.rx_walk(budget, |e| events.push(e));
        for e in events {
            match e {
                RxEvent::Data { fd, buf } => {
                    prop_assert!(!self.m.eof_seen.get(&fd).copied().unwrap_or(false), "data after EOF on {}", fd);
                    self.m.rx_got.entry(fd).or_default().extend_from_slice(&buf);
                    if keep {
                        self.app.push(buf);
                    }
                }
                RxEvent::Eof { fd } => {
                    let got = self.m.rx_got.get(&fd).map_or(0, |v| v.len());
                    prop_assert_eq!(Some(&got), self.m.eof_sent.get(&fd), "EOF before all data of fd {}", fd);
                    self.m.eof_seen.insert(fd, true);
                }
            }
        }
        Ok(())
    }

    fn txsync(&mut self) -> Result<(), TestCaseError> {
        let rep = self.k.txsync();
        // Every fd has a budget: the driver must never hand the kernel a slot its
        // socket cannot take.
        prop_assert!(
            !matches!(rep.tx_stall, Some(TxStall::SendError { errno: libc::EAGAIN, .. })),
            "txsync stalled at a full socket: {:?}",
            rep.tx_stall
        );
        Ok(())
    }

    fn reclaim(&mut self) {
        let rep = &mut self.m.tx_reported;
        self.d.tx_reclaim(|fd, n| *rep.entry(fd).or_default() += n);
    }

    fn apply(&mut self, s: &Step) -> Result<(), TestCaseError> {
        match *s {
            Step::Arrive { fd, len, direct } => {
                let fd = self.fds[fd];
                if self.m.eof_sent.contains_key(&fd) {
                    return Ok(());
                }
                let exp = self.m.rx_expected.entry(fd).or_default();
                let start = exp.len() as u64;
                let data: Vec<u8> = (start..start + len as u64).map(|i| stream_byte(fd, i)).collect();
                let n = if direct {
                    let mut done = 0;
                    for part in data.chunks(1448) {
                        let Some(idx) = self.k.rx_buffer() else { break };
                        self.k.rx_payload_mut(idx).unwrap()[..part.len()].copy_from_slice(part);
                        prop_assert_ne!(self.k.rx_arrived(fd, idx, part.len()).unwrap(), Arrival::Unregistered);
                        done += part.len();
                    }
                    done
                } else {
                    arrive(&mut self.k, fd, &data, 1448)
                };
                self.m.rx_expected.get_mut(&fd).unwrap().extend_from_slice(&data[..n]);
            }
            Step::Eof { fd, direct } => {
                let fd = self.fds[fd];
                if !self.m.eof_sent.contains_key(&fd) {
                    let registered = if direct { self.k.rx_eof_arrived(fd) } else { self.k.rx_eof(fd) };
                    prop_assert!(registered);
                    let n = self.m.rx_expected.get(&fd).map_or(0, |v| v.len());
                    self.m.eof_sent.insert(fd, n);
                }
            }
            Step::RxSync => {
                self.end_batch()?;
                self.k.rxsync();
            }
            Step::Publish => self.k.rx_publish(),
            Step::Walk { budget, keep } => self.walk(budget, keep)?,
            Step::Release { n } => {
                let n = n.min(self.app.len());
                self.app.drain(..n);
            }
            Step::Queue { fd, len, pool, direct, copy } => {
                let fd = self.fds[fd];
                let exp = self.m.tx_expected.entry(fd).or_default();
                let start = exp.len() as u64;
                let mut data: Vec<u8> = (start..start + len as u64).map(|i| stream_byte(fd + 100, i)).collect();
                let send = if pool {
                    match self.d.pool().tx_buf() {
                        Some(mut b) => {
                            let n = b.put(&data);
                            data.truncate(n);
                            SendData::Pool(b)
                        }
                        None => return Ok(()),
                    }
                } else {
                    SendData::Owned(data.clone())
                };
                if copy {
                    let mut placed = 0;
                    while placed < send.len() {
                        let n = self.d.tx_copy(fd, &send.as_slice()[placed..]);
                        if n == 0 {
                            break;
                        }
                        placed += n;
                    }
                    if placed < send.len() {
                        self.d.tx_send_from(fd, send, placed).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    }
                } else if direct {
                    self.d.tx_send(fd, send).map_err(|e| TestCaseError::fail(e.to_string()))?;
                } else {
                    self.d.tx_queue(fd, send).map_err(|e| TestCaseError::fail(e.to_string()))?;
                }
                self.m.tx_expected.get_mut(&fd).unwrap().extend_from_slice(&data);
            }
            Step::Fill => {
                let f = self.d.tx_fill();
                prop_assert_eq!(f.bad_slots, 0);
            }
            Step::TxSync => self.txsync()?,
            Step::Writable => {
                report_writable(&self.k, &mut self.d);
            }
            Step::Drain { n, in_place: false } => drain_sends(&mut self.k, &mut self.m.tx_wire, n),
            Step::Drain { in_place: true, .. } => self.drain_in_place(),
            Step::Reclaim => self.reclaim(),
        }
        Ok(())
    }

    fn check(&self) -> Result<(), TestCaseError> {
        check_conservation(&self.k, &self.d, &self.app).map_err(TestCaseError::fail)?;
        for (fd, got) in &self.m.rx_got {
            let exp = &self.m.rx_expected[fd];
            prop_assert!(exp.starts_with(got), "fd {} received bytes out of order", fd);
        }
        for (fd, wire) in &self.m.tx_wire {
            let exp = &self.m.tx_expected[fd];
            prop_assert!(exp.starts_with(wire), "fd {} sent bytes out of order", fd);
            let reported = self.m.tx_reported.get(fd).copied().unwrap_or(0);
            prop_assert!(reported <= exp.len() as u64);
        }
        Ok(())
    }

    /// Runs both directions until nothing is left anywhere.
    fn flush(&mut self) -> Result<(), TestCaseError> {
        self.app.clear();
        for _ in 0..200 {
            self.d.tx_fill();
            self.txsync()?;
            drain_sends(&mut self.k, &mut self.m.tx_wire, usize::MAX);
            self.reclaim();
            report_writable(&self.k, &mut self.d);
            self.end_batch()?;
            self.k.rxsync();
            self.walk(u32::MAX, false)?;
            self.check()?;
        }
        Ok(())
    }
}

fn run(steps: &[Step], rings: u16, slots: u32, extra: u32, kernel: u32, sndbuf: u32) -> Result<(), TestCaseError> {
    let cfg = EmuPortConfig {
        tx_rings: rings,
        rx_rings: rings,
        slots,
        extra_bufs: extra,
        kernel_bufs: kernel,
        ..EmuPortConfig::default()
    };
    let dcfg = DriverConfig { max_inflight_per_fd: 3, ..DriverConfig::default() };
    let (mut k, mut d) = setup(&cfg, dcfg);
    let fds = [3, 4, 7, 10];
    for fd in fds {
        k.register_fd(fd, SocketState::Connected).unwrap();
        k.set_sndbuf(fd, sndbuf);
        d.tx_set_budget(fd, sndbuf).unwrap();
    }
    // The kernel's headroom [0, G) must never be written while a buffer circulates
    // (bytes 0..4 excepted: the extra-list link).
    let count = k.memory().layout().buf_count;
    let headroom = |k: &EmuKernel, i: u32| {
        // SAFETY: every index below buf_count is a buffer of the live mapping; bytes
        // 4..64 lie inside it.
        unsafe { std::slice::from_raw_parts_mut(k.memory().buf_ptr(i).unwrap().add(4), 60) }
    };
    for i in 2..count {
        headroom(&k, i).fill(0xA5);
    }
    let batch_start = d.rx.iter().map(|r| r.tail()).collect();
    let mut h = Harness { k, d, app: Vec::new(), m: Model::default(), fds, batch_start };
    for s in steps {
        h.apply(s)?;
        h.check()?;
    }
    h.flush()?;
    for fd in fds {
        let exp = h.m.rx_expected.get(&fd).cloned().unwrap_or_default();
        let got = h.m.rx_got.get(&fd).cloned().unwrap_or_default();
        prop_assert_eq!(got.len(), exp.len(), "fd {} did not receive everything", fd);
        prop_assert_eq!(h.m.eof_seen.get(&fd).copied().unwrap_or(false), h.m.eof_sent.contains_key(&fd));
        let exp = h.m.tx_expected.get(&fd).cloned().unwrap_or_default();
        let wire = h.m.tx_wire.get(&fd).cloned().unwrap_or_default();
        prop_assert_eq!(wire.len(), exp.len(), "fd {} did not send everything", fd);
        prop_assert_eq!(h.m.tx_reported.get(&fd).copied().unwrap_or(0), exp.len() as u64);
    }
    h.d.export_extra();
    check_conservation(&h.k, &h.d, &[]).map_err(TestCaseError::fail)?;
    for i in 2..count {
        prop_assert!(headroom(&h.k, i).iter().all(|&b| b == 0xA5), "headroom of buffer {} written", i);
    }
    prop_assert_eq!(h.d.pool().capacity(), 0);
    Ok(())
}

proptest! {
    // (Under Miri, scripts/miri, a case takes seconds: a few still walk every path.)
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 4 } else { 96 }, ..ProptestConfig::default() })]

    /// Payload bytes and per-fd order survive any interleaving of arrivals, syncs,
    /// walks, kept buffers, sends, drains and writability reports, every buffer has
    /// exactly one owner after every step, and txsync never meets a slot whose socket
    /// is full (each fd's slots stay within its send budget).
    #[test]
    fn ring_protocol_preserves_data_and_buffers(
        steps in proptest::collection::vec(step(), 1..120),
        rings in 1u16..=2,
        slots in prop_oneof![Just(4u32), Just(8), Just(16)],
        extra in 1u32..12,
        kernel in 2u32..24,
        sndbuf in prop_oneof![Just(4608u32), Just(8192), Just(87_040)],
    ) {
        run(&steps, rings, slots, extra, kernel, sndbuf)?;
    }
}

fn setup_persistent(cfg: &EmuPortConfig, kept: &[u32]) -> Result<(EmuKernel, RingDriver, KeptReport), RingError> {
    let k = EmuKernel::new(cfg).unwrap();
    // SAFETY: as in `setup`; no sync has run on the port yet.
    let (d, rep) =
        unsafe { RingDriver::new_persistent(k.region(), DriverConfig::default(), Box::new(k.memory().clone()), kept) }?;
    Ok((k, d, rep))
}

/// Writes `tag` at offset 200 of buffer `i`, where a previous run's payload would be.
fn tag(k: &EmuKernel, i: u32, tag: &[u8]) {
    // SAFETY: i is a buffer of the live mapping; 200 + tag.len() < buf_size.
    unsafe { std::ptr::copy_nonoverlapping(tag.as_ptr(), k.memory().buf_ptr(i).unwrap().add(200), tag.len()) };
}

#[test]
fn a_persistent_start_reclaims_kept_buffers_from_the_extra_list_and_the_ring_slots() {
    // Layout of small(8, 10, 20): ring slots hold 2..18 (TX ring 2..10, RX ring
    // 10..18), the extra list 18..28, the kernel's spares 28..48.
    let cfg = small(8, 10, 20);
    let k0 = EmuKernel::new(&cfg).unwrap();
    assert_eq!(k0.memory().ring_buffers(), (2..18).collect::<Vec<u32>>());
    assert_eq!(k0.memory().extra_buffers(), (18..28).collect::<Vec<u32>>());
    drop(k0);
    let kept = [3, 11, 20];
    let (mut k, mut d, rep) = setup_persistent(&cfg, &kept).unwrap();
    for &i in &kept {
        tag(&k, i, format!("kept {i}").as_bytes());
    }
    assert_eq!(rep, KeptReport { from_extra_list: 1, from_ring_slots: 2 });
    assert!(d.is_persistent());
    assert_eq!(d.pool().kept_count(), 3);
    assert_eq!(d.pool().capacity(), 10, "kept buffers count against the pool");
    for &i in &kept {
        assert!(!d.pool().is_free(i));
        let buf = KeptBuf { index: i, offset: 200, len: format!("kept {i}").len() as u32 };
        assert_eq!(d.pool().kept_slice(&buf).unwrap(), format!("kept {i}").as_bytes());
    }
    let mut in_rings = Vec::new();
    k.for_each_ring_buffer(|i| in_rings.push(i));
    assert!(kept.iter().all(|i| !in_rings.contains(i)), "no kept buffer is left in a ring slot");
    let region = k.region();
    // SAFETY: the emulated port's memory is alive (held by `k`).
    let tx = unsafe { RingPtr::new(&region, addr::txring(region.base.cast(), 0)) }.unwrap();
    assert_ne!(tx.slot(1).flags & slotflags::BUF_CHANGED, 0, "the swapped slot says so");

    // Received payload in a buffer that is not home (the emulated kernel's spare) is
    // copied into a home one; the kept buffers stay untouched.
    k.register_fd(5, SocketState::Connected).unwrap();
    arrive(&mut k, 5, b"after restart", 1448);
    k.rxsync();
    let mut got = Vec::new();
    let walk = d.rx_walk(u32::MAX, |e| {
        if let RxEvent::Data { buf, .. } = e {
            got.push(buf)
        }
    });
    assert_eq!((walk.data, walk.copied), (1, 1));
    assert_eq!(&got[0][..], b"after restart");
    assert!((18..28).contains(&got[0].index()), "lent buffer {} is home", got[0].index());
    drop(got);

    // A zero-copy send into a slot whose buffer came back from the kernel (not home)
    // is copied: no foreign buffer enters the pool.
    // Send until the TX ring's head slot holds a buffer the kernel gave back that is
    // not home (one of its spares).
    let foreign_head = |tx: &RingPtr| !(2..28).contains(&tx.slot(tx.head()).buf_idx);
    for _ in 0..20 {
        if foreign_head(&tx) {
            break;
        }
        d.tx_queue(5, SendData::Static(b"x")).unwrap();
        d.tx_fill();
        k.txsync();
        d.tx_reclaim(|_, _| {});
    }
    assert!(foreign_head(&tx));
    let mut tb = d.pool().tx_buf().unwrap();
    tb.put(b"zero copy?");
    let idx = tb.index();
    d.tx_queue(5, SendData::Pool(tb)).unwrap();
    let fill = d.tx_fill();
    assert_eq!((fill.slots, fill.zero_copy), (1, 0));
    assert!(d.pool().is_free(idx), "copied, and the TxBuf's buffer went back to the pool");
    let mut free = 0;
    for i in 0..64 {
        if d.pool().is_free(i) {
            assert!((2..28).contains(&i), "foreign buffer {i} in the pool");
            free += 1;
        }
    }
    assert_eq!(free, 7);
}

#[test]
fn a_kept_buffer_the_kernel_holds_refuses_the_start() {
    // 30 is among the emulated kernel's spares: out of the application's reach.
    let e = setup_persistent(&small(8, 10, 20), &[19, 30, 31]).unwrap_err();
    assert_eq!(e, RingError::KeptOutOfReach { count: 2, first: 30 });
    let text = e.to_string();
    assert!(text.contains("same settings"), "{text}");
    assert!(matches!(setup_persistent(&small(8, 10, 20), &[0]), Err(RingError::KeptOutOfReach { .. })));
}

#[test]
fn an_idle_fd_costs_the_driver_thirty_two_bytes() {
    // Every fd the driver ever sent on keeps an entry, so its size is memory per
    // idle connection (it was 64 bytes before the queue was boxed on first use and
    // the unreported bytes moved to `sent_fds`).
    assert_eq!(size_of::<FdTx>(), 32);
}

#[test]
fn a_credit_beyond_the_i32_range_is_held_at_its_end() {
    assert_eq!(narrow_credit(-5), -5);
    assert_eq!(narrow_credit(i64::from(i32::MAX) + 1), i32::MAX);
    assert_eq!(narrow_credit(i64::MIN), i32::MIN);
}

#[test]
fn a_tx_slot_overhead_that_could_overflow_the_untaken_charge_is_refused() {
    let k = EmuKernel::new(&small(8, 8, 8)).unwrap();
    let dcfg = DriverConfig { tx_slot_overhead: MAX_TX_SLOT_OVERHEAD + 1, ..DriverConfig::default() };
    // SAFETY: as in `setup`.
    let r = unsafe { RingDriver::new(k.region(), dcfg, Box::new(k.memory().clone())) };
    assert!(matches!(r, Err(RingError::Config(_))), "{:?}", r.err());
    // The bound itself fits: a full ring of the largest slots plus it stays in 32 bits.
    assert!(u64::from(pst::MAX_SLOTS) * (u64::from(u16::MAX) + u64::from(MAX_TX_SLOT_OVERHEAD)) <= u64::from(u32::MAX));
}
