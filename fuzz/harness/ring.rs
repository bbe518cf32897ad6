//! The PASTE ring driver (`paste_rt_paste::RingDriver`) against the emulated kernel
//! (`paste_rt_paste::EmuKernel`), through their public API only: the fuzzer picks a
//! port geometry and then any interleaving of arrivals, EOFs, syncs, walks (keeping
//! or dropping the lent buffers), sends (owned bytes or pool buffers), fills, drains,
//! reclaims, sockets refusing data for a while, and connections the application
//! drops. After every step: each connection's bytes arrive in order in both
//! directions, and every buffer has exactly one owner (a ring slot, the kernel, the
//! pool's free list, the application, a queued send, or the extra list). At the end,
//! once everything is flushed: nothing was lost, and no buffer's kernel headroom
//! was written.

use std::collections::{BTreeMap, BTreeSet};

use paste_rt::{RxBuf, SendData};
use paste_rt_paste::{DriverConfig, EmuKernel, EmuPortConfig, RingDriver, RxEvent, SocketState};

use super::input::Input;

const FDS: [i32; 4] = [3, 4, 7, 10];

/// A byte of `fd`'s stream at `i`: any reordering or loss shows.
fn stream_byte(fd: i32, i: u64) -> u8 {
    ((i.wrapping_mul(2_654_435_761).wrapping_add(fd as u64 * 97)) >> 13) as u8
}

/// What each connection should have received and sent, and what it did.
#[derive(Default)]
struct Model {
    rx_expected: BTreeMap<i32, Vec<u8>>,
    rx_got: BTreeMap<i32, Vec<u8>>,
    eof_sent: BTreeMap<i32, usize>,
    eof_seen: BTreeSet<i32>,
    tx_expected: BTreeMap<i32, Vec<u8>>,
    tx_wire: BTreeMap<i32, Vec<u8>>,
    tx_reported: BTreeMap<i32, u64>,
    /// Connections the application dropped (their unsent data may be discarded).
    dropped: BTreeSet<i32>,
}

struct Harness {
    k: EmuKernel,
    d: RingDriver,
    app: Vec<RxBuf>,
    m: Model,
}

impl Harness {
    fn arrive(&mut self, fd: i32, len: usize) {
        if self.m.eof_sent.contains_key(&fd) {
            return;
        }
        let start = self.m.rx_expected.get(&fd).map_or(0, Vec::len) as u64;
        let data: Vec<u8> = (start..start + len as u64).map(|i| stream_byte(fd, i)).collect();
        let mut done = 0;
        for part in data.chunks(1448.min(self.k.rx_capacity())) {
            let Some(idx) = self.k.rx_buffer() else { break };
            self.k.rx_payload_mut(idx).expect("a receiving buffer")[..part.len()].copy_from_slice(part);
            assert!(self.k.rx_complete(fd, idx, part.len()).expect("completing a receive"));
            done += part.len();
        }
        self.m.rx_expected.entry(fd).or_default().extend_from_slice(&data[..done]);
    }

    fn walk(&mut self, budget: u32, keep: bool) {
        let mut events = Vec::new();
        self.d.rx_walk(budget, |e| events.push(e));
        for e in events {
            match e {
                RxEvent::Data { fd, buf } => {
                    assert!(!self.m.eof_seen.contains(&fd), "data after EOF on fd {fd}");
                    self.m.rx_got.entry(fd).or_default().extend_from_slice(&buf);
                    if keep {
                        self.app.push(buf);
                    }
                }
                RxEvent::Eof { fd } => {
                    let got = self.m.rx_got.get(&fd).map_or(0, Vec::len);
                    assert_eq!(Some(&got), self.m.eof_sent.get(&fd), "EOF before all data of fd {fd}");
                    self.m.eof_seen.insert(fd);
                }
            }
        }
    }

    fn queue(&mut self, fd: i32, len: usize, pool: bool) {
        if self.m.dropped.contains(&fd) {
            return;
        }
        let start = self.m.tx_expected.get(&fd).map_or(0, Vec::len) as u64;
        let mut data: Vec<u8> = (start..start + len as u64).map(|i| stream_byte(fd + 100, i)).collect();
        let send = if pool {
            let Some(mut b) = self.d.pool().tx_buf() else { return };
            let n = b.put(&data);
            data.truncate(n);
            SendData::Pool(b)
        } else {
            SendData::Owned(data.clone())
        };
        self.d.tx_queue(fd, send).expect("queueing on a valid fd");
        self.m.tx_expected.entry(fd).or_default().extend_from_slice(&data);
    }

    fn drain(&mut self, n: usize) {
        for _ in 0..n {
            let Some(job) = self.k.next_send() else { break };
            let payload = self.k.send_payload(&job).expect("a send job's payload");
            self.m.tx_wire.entry(job.fd).or_default().extend_from_slice(payload);
            self.k.send_done(job.buf).expect("finishing a send");
        }
    }

    fn reclaim(&mut self) {
        let reported = &mut self.m.tx_reported;
        self.d.tx_reclaim(|fd, n| *reported.entry(fd).or_default() += n);
    }

    /// Every buffer index has one owner; bytes are in order so far.
    fn check(&self) {
        let n = self.k.memory().layout().buf_count as usize;
        let mut owners = vec![0u32; n];
        let mut mark = |i: u32, who: &str| match owners.get_mut(i as usize) {
            Some(c) if i >= 2 => *c += 1,
            _ => panic!("{who} holds invalid buffer index {i}"),
        };
        self.k.for_each_ring_buffer(|i| mark(i, "a ring slot"));
        self.k.for_each_held(|i, _| mark(i, "the kernel"));
        for i in 0..n as u32 {
            if self.d.pool().is_free(i) {
                mark(i, "the pool's free list");
            }
        }
        for b in &self.app {
            mark(b.index(), "the application");
        }
        let mut queued = 0;
        self.d.for_each_queued_pool_buf(|i| {
            queued += 1;
            mark(i, "a queued send")
        });
        for i in self.k.memory().extra_list() {
            mark(i, "the extra list");
        }
        if let Some(i) = (2..n).find(|&i| owners[i] != 1) {
            panic!("buffer {i} has {} owners", owners[i]);
        }
        assert_eq!(self.d.pool().in_use() as usize, self.app.len() + queued, "buffers the pool lends");
        for (fd, got) in &self.m.rx_got {
            assert!(self.m.rx_expected[fd].starts_with(got), "fd {fd} received bytes out of order");
        }
        for (fd, wire) in &self.m.tx_wire {
            let expected = &self.m.tx_expected[fd];
            assert!(expected.starts_with(wire), "fd {fd} sent bytes out of order");
            assert!(self.m.tx_reported.get(fd).copied().unwrap_or(0) <= expected.len() as u64);
        }
    }

    /// Bytes moved so far in both directions, and bytes reported sent: a round of
    /// [`flush`](Self::flush) that changes none of them made no progress.
    fn moved(&self) -> (usize, usize, u64) {
        let rx = self.m.rx_got.values().map(Vec::len).sum();
        let tx = self.m.tx_wire.values().map(Vec::len).sum();
        let reported = self.m.tx_reported.values().sum();
        (rx, tx, reported)
    }

    /// Runs both directions until nothing is left anywhere: round after round while
    /// any round moves bytes (a small port with one slot in flight per fd moves one
    /// slot's worth per round), then a few more, which must move nothing.
    fn flush(&mut self) {
        self.app.clear();
        for fd in FDS {
            self.k.set_send_error(fd, None);
        }
        let mut idle_rounds = 0;
        while idle_rounds < 8 {
            let before = self.moved();
            self.d.tx_fill();
            self.k.txsync();
            self.drain(usize::MAX);
            self.reclaim();
            self.k.rxsync();
            self.walk(u32::MAX, false);
            self.check();
            idle_rounds = if self.moved() == before { idle_rounds + 1 } else { 0 };
        }
    }
}

/// Runs the interleaving `data` describes (see the module docs).
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let rings = 1 + input.below(2) as u16;
    let slots = [4, 8, 16][input.below(3)];
    let cfg = EmuPortConfig {
        tx_rings: rings,
        rx_rings: rings,
        slots,
        extra_bufs: 1 + input.below(12) as u32,
        kernel_bufs: 2 + input.below(22) as u32,
        ..EmuPortConfig::default()
    };
    let dcfg = DriverConfig { max_inflight_per_fd: 1 + input.below(4) as u32, ..DriverConfig::default() };
    let mut k = EmuKernel::new(&cfg).expect("an emulated port");
    // SAFETY: the region is the emulated kernel's port memory; the Rc clone keeps it
    // alive for the pool, and only the emulated kernel touches the rings besides the
    // driver.
    let d = unsafe { RingDriver::new(k.region(), dcfg, Box::new(k.memory().clone())) }.expect("a ring driver");
    for fd in FDS {
        k.register_fd(fd, SocketState::Connected).expect("registering a connected socket");
    }
    // Mark the kernel's headroom [4, G) of every buffer: it must never be written
    // while buffers circulate (bytes 0..4 hold the extra list's links).
    let count = k.memory().layout().buf_count;
    let headroom = |k: &EmuKernel, i: u32| {
        let ptr = k.memory().buf_ptr(i).expect("an index below buf_count");
        // SAFETY: every index below buf_count is a buffer of the live mapping; bytes
        // 4..64 lie inside it, and nothing else reads or writes them meanwhile.
        unsafe { std::slice::from_raw_parts_mut(ptr.add(4), 60) }
    };
    for i in 2..count {
        headroom(&k, i).fill(0xA5);
    }
    let mut h = Harness { k, d, app: Vec::new(), m: Model::default() };
    for _ in 0..300 {
        if input.is_empty() {
            break;
        }
        let fd = FDS[input.below(FDS.len())];
        match input.u8() % 13 {
            0 | 1 => h.arrive(fd, 1 + input.below(4000)),
            2 => {
                if !h.m.eof_sent.contains_key(&fd) {
                    assert!(h.k.rx_eof(fd));
                    let n = h.m.rx_expected.get(&fd).map_or(0, Vec::len);
                    h.m.eof_sent.insert(fd, n);
                }
            }
            3 => {
                h.k.rxsync();
            }
            4 => {
                let (budget, keep) = (1 + input.below(20) as u32, input.u8() & 1 == 1);
                h.walk(budget, keep);
            }
            5 => {
                let n = input.below(8).min(h.app.len());
                h.app.drain(..n);
            }
            6 | 7 => {
                let (len, pool) = (input.below(5000), input.u8() & 1 == 1);
                h.queue(fd, len, pool);
            }
            8 => assert_eq!(h.d.tx_fill().bad_slots, 0, "the driver filled a slot the kernel refuses"),
            9 => {
                h.k.txsync();
            }
            10 => h.drain(input.below(6)),
            11 => h.reclaim(),
            _ => match input.u8() % 3 {
                0 => h.k.set_send_error(fd, Some(libc::EAGAIN)),
                1 => h.k.set_send_error(fd, None),
                _ => {
                    h.d.tx_drop_fd(fd);
                    h.m.dropped.insert(fd);
                }
            },
        }
        h.check();
    }
    h.flush();
    for fd in FDS {
        let expected = h.m.rx_expected.get(&fd).map_or(0, Vec::len);
        let got = h.m.rx_got.get(&fd).map_or(0, Vec::len);
        assert_eq!(got, expected, "fd {fd} did not receive everything");
        assert_eq!(h.m.eof_seen.contains(&fd), h.m.eof_sent.contains_key(&fd), "fd {fd}'s EOF");
        let expected = h.m.tx_expected.get(&fd).map_or(0, Vec::len) as u64;
        let wire = h.m.tx_wire.get(&fd).map_or(0, Vec::len) as u64;
        let reported = h.m.tx_reported.get(&fd).copied().unwrap_or(0);
        if h.m.dropped.contains(&fd) {
            assert!(wire <= expected && reported <= expected, "fd {fd} sent more than it was given");
        } else {
            assert_eq!(wire, expected, "fd {fd} did not send everything");
            assert_eq!(reported, expected, "fd {fd}'s sent bytes were not all reported");
        }
    }
    h.d.export_extra();
    h.check();
    for i in 2..count {
        assert!(headroom(&h.k, i).iter().all(|&b| b == 0xA5), "the kernel headroom of buffer {i} was written");
    }
    assert_eq!(h.d.pool().capacity(), 0, "every extra buffer went back to the kernel");
}
