//! [`SocketEngine::retire`] and [`SocketEngine::close_fd`]: for an owner whose slot id
//! is the fd number, a slot is released only once no operation names it, and the fd
//! stays open until the owner closes it — so the number cannot come back in a new
//! socket while completions of the old one may still arrive.

use std::os::fd::{IntoRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use paste_rt_core::{Delivery, SendStep, Stats, Wait};
use paste_rt_uring_engine::buf_ring::BufRing;
use paste_rt_uring_engine::probe::{open_ring, RingConfig};
use paste_rt_uring_engine::user_data::OpKind;
use paste_rt_uring_engine::{EngineConfig, Sink, SocketEngine};

/// Records what the engine reports; receives nothing useful (the test sends nothing).
#[derive(Default)]
struct Recorder {
    released: Vec<u32>,
}

impl Sink for Recorder {
    fn accepted(&mut self, _listener: u32, _fd: RawFd) -> Option<u32> {
        None
    }
    fn accept_failed(&mut self, _listener: u32, _errno: i32) {}
    fn received(&mut self, _slot: u32, _bid: u16, _bytes: u32) -> Delivery {
        Delivery::Queued
    }
    fn eof(&mut self, _slot: u32) {}
    fn rx_failed(&mut self, _slot: u32, _errno: i32) -> SendStep {
        SendStep::Idle
    }
    fn gather_send(&mut self, _slot: u32, _max: usize, _f: impl FnMut(&[u8])) -> usize {
        0
    }
    fn sent(&mut self, _slot: u32, _bytes: u32) -> SendStep {
        SendStep::Idle
    }
    fn tx_failed(&mut self, _slot: u32, _errno: i32) -> SendStep {
        SendStep::Idle
    }
    fn shutdown_done(&mut self, _slot: u32, _errno: i32) -> SendStep {
        SendStep::Idle
    }
    fn connected(&mut self, _slot: u32, _errno: i32) -> SendStep {
        SendStep::Idle
    }
    fn released(&mut self, slot: u32) {
        self.released.push(slot);
    }
    fn rx_buffers(&self) -> u32 {
        4
    }
    fn other(&mut self, _engine: &mut SocketEngine, _id: u32, _gen: u32, _kind: OpKind, _res: i32, _flags: u32) {}
}

fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor table.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

#[test]
fn a_retired_slot_is_released_after_its_last_completion_and_its_fd_closes_only_when_asked() {
    let (ring, probe) = match open_ring(&RingConfig { sq_entries: 64, cq_entries: 256 }) {
        Ok(r) => r,
        Err(e) => panic!("io_uring is required for this test and could not be set up: {e}"),
    };
    // A receive ring with a few buffers, so the multishot receive stays armed.
    let mut bufs = BufRing::new(&ring.submitter(), 0, 4, 256, 0, 4).expect("register a buffer ring");
    let memory: &'static mut [u8] = Box::leak(vec![0u8; 4 * 256].into_boxed_slice());
    for (bid, chunk) in memory.chunks_mut(256).enumerate() {
        // SAFETY: the memory is leaked (lives forever) and nobody else touches it.
        assert!(unsafe { bufs.push(bid as u16, chunk.as_mut_ptr()) });
    }
    bufs.publish();
    let config = EngineConfig {
        bgid: 0,
        bundle: false,
        recv_limit: 0,
        send_batch: 4,
        accept_retry: Duration::from_millis(100),
        quiet_send_wait: Duration::ZERO,
    };
    let mut engine = SocketEngine::new(ring, probe, config).expect("engine");
    let stats = Stats::default();
    let mut sink = Recorder::default();

    let (ours, peer) = UnixStream::pair().expect("socketpair");
    let fd = ours.into_raw_fd();
    let id = fd as u32;
    engine.register(id, fd, &stats);
    engine.tick(Wait::Poll, &mut sink, &stats).expect("tick");
    assert!(engine.is_open(id));
    assert!(engine.ops_in_flight() >= 2, "the receive (and the wake-up read) are in the kernel");

    let generation = engine.generation(id);
    engine.retire(id, &mut sink, &stats);
    assert!(!engine.is_open(id));
    assert_eq!(engine.generation(id), generation, "still busy: its completions still count");
    assert!(sink.released.is_empty(), "the receive is still in flight: the slot is not free yet");
    assert!(fd_is_open(fd), "retiring cancels; it does not close");

    for _ in 0..100 {
        if !sink.released.is_empty() {
            break;
        }
        engine.tick(Wait::within(Some(Duration::from_millis(10))), &mut sink, &stats).expect("tick");
    }
    assert_eq!(sink.released, vec![id], "released once its cancelled receive completed");
    assert_ne!(engine.generation(id), generation, "a freed slot's generation moves on: no completion names it");
    assert!(fd_is_open(fd), "still open until the owner closes it");

    engine.close_fd(fd, &stats);
    engine.tick(Wait::Poll, &mut sink, &stats).expect("tick");
    for _ in 0..100 {
        if !fd_is_open(fd) {
            break;
        }
        engine.tick(Wait::within(Some(Duration::from_millis(10))), &mut sink, &stats).expect("tick");
    }
    assert!(!fd_is_open(fd), "closed through the ring");
    assert_eq!(engine.live_slots(), 0);
    drop(peer);
    assert!(engine.shutdown(&mut sink, &stats), "nothing left in flight");
}
