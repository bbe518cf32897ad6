//! The WAL's record decoder and recovery scan (`paste_rt_examples::wal`), over logs
//! and pool (or data) files the fuzzer crafts: records that name any buffer, offset
//! and length, checksums right or wrong, parts missing or repeated, the reserved
//! byte set. Recovery must not panic; it must bring back exactly the requests whose
//! parts are all there and intact (and count the others as dropped), keep exactly
//! the pool buffers those reference, serve their bytes unchanged, and go on logging:
//! what is committed afterwards comes back after the next recovery.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use paste_rt::core::{BufPool, PoolConfig, PoolMemory};
use paste_rt::persist::{FlushMethod, Persister};
use paste_rt_examples::wal::log::{LogFiles, Mode, Record, DATA_SLOT, HEADER, RECORD_SIZE};
use paste_rt_examples::wal::store::{Pending, Recovery, MAX_PARTS};

use super::input::Input;

/// Pool buffers (zero copy), of the default size.
const BUFFERS: u32 = 24;
const BUF_SIZE: usize = 2048;

/// Reads and checks one crafted WAL directory (see the module docs).
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let capacity = 1 + input.below(24) as u32;
    let mode = if input.u8() & 1 == 0 { Mode::ZeroCopy } else { Mode::Copy };
    let dir = scratch_dir();
    drop(LogFiles::open(dir.path(), capacity, mode).expect("a new log"));

    // The bodies' file: the pool (zero copy) or the data file (copy), patterned.
    let (body_file, body_len) = match mode {
        Mode::ZeroCopy => (dir.path().join("pool"), BUFFERS as usize * BUF_SIZE),
        Mode::Copy => (dir.path().join("wal.data"), capacity as usize * DATA_SLOT),
    };
    let mut bodies = vec![0u8; body_len];
    for (i, chunk) in bodies.chunks_mut(512).enumerate() {
        let seed = input.u8();
        for (j, b) in chunk.iter_mut().enumerate() {
            *b = seed.wrapping_add((i * 7 + j * 13) as u8);
        }
    }
    std::fs::write(&body_file, &bodies).expect("writing the bodies");

    // Records, written raw into the log's slots.
    let log = OpenOptions::new().write(true).open(dir.path().join("wal.log")).expect("the log");
    for _ in 0..input.below(2 * capacity as usize + 1) {
        let slot = input.below(capacity as usize) as u32;
        let location = match mode {
            Mode::ZeroCopy => input.below(BUFFERS as usize + 3) as u32,
            Mode::Copy if input.u8() & 3 == 0 => input.below(capacity as usize + 2) as u32,
            Mode::Copy => slot,
        };
        let (offset, len) = (input.below(2100) as u32, input.below(2100) as u32);
        let named = named_bytes(&bodies, mode, location, offset, len);
        let mut record = Record {
            seq: 1 + input.below(10) as u64,
            location,
            offset,
            len,
            part: input.below(4) as u8,
            parts: 1 + input.below(3) as u8,
            mode,
            data_crc: named.map_or(input.u32(), crc32fast::hash),
        };
        let damage = input.u8() % 8;
        if damage == 0 {
            record.data_crc ^= 1;
        }
        let mut bytes = record.encode();
        match damage {
            1 => bytes[input.below(RECORD_SIZE)] ^= 0x10,
            2 => bytes[23] = 1,
            _ => {}
        }
        log.write_all_at(&bytes, (HEADER + slot as usize * RECORD_SIZE) as u64).expect("writing a record");
    }
    drop(log);

    // What recovery should find: the decodable records, and which requests are whole.
    let raw = std::fs::read(dir.path().join("wal.log")).expect("reading the log back");
    let mut by_seq: BTreeMap<u64, Vec<Record>> = BTreeMap::new();
    for slot in 0..capacity as usize {
        let at = HEADER + slot * RECORD_SIZE;
        if let Some(r) = Record::decode(&raw[at..at + RECORD_SIZE]) {
            let again = r.encode();
            assert_eq!(&again[..], &raw[at..at + RECORD_SIZE], "decode then encode changed a record");
            by_seq.entry(r.seq).or_default().push(r);
        }
    }
    let whole: BTreeMap<u64, Vec<Record>> = by_seq
        .iter()
        .filter(|(_, parts)| {
            parts.len() == parts[0].parts as usize
                && parts.len() <= MAX_PARTS
                && (0..parts.len()).all(|p| parts.iter().filter(|r| r.part as usize == p).count() == 1)
                && parts.iter().all(|r| {
                    named_bytes(&bodies, mode, r.location, r.offset, r.len)
                        .is_some_and(|b| crc32fast::hash(b) == r.data_crc)
                })
        })
        .map(|(s, p)| (*s, p.clone()))
        .collect();

    let recovery = Recovery::open(dir.path(), capacity, mode).expect("recovery opens a log with a valid header");
    let kept = recovery.kept_indices();
    let pool = pool(dir.path(), mode, kept);
    let mut wal = recovery.attach(pool.clone(), persister()).expect("attach");
    let stats = wal.stats();
    assert_eq!(stats.recovered, whole.len() as u64, "recovered requests");
    assert_eq!(stats.dropped, (by_seq.len() - whole.len()) as u64, "dropped requests");
    if mode == Mode::ZeroCopy {
        let referenced: BTreeSet<u32> = whole.values().flatten().map(|r| r.location).collect();
        assert_eq!(pool.kept_count() as usize, referenced.len(), "kept buffers are exactly the referenced ones");
    }
    for (seq, parts) in &whole {
        let mut got = Vec::new();
        if wal.read(*seq, |d| got.push(d.to_vec())) {
            assert_eq!(got.len(), parts.len());
            for (i, d) in got.iter().enumerate() {
                let r = parts.iter().find(|r| r.part as usize == i).expect("whole");
                assert_eq!(crc32fast::hash(d), r.data_crc, "request {seq} part {i} served torn");
            }
        }
    }

    // Logging goes on: new requests commit, evict the oldest, and come back again.
    let mut committed = Vec::new();
    for _ in 0..input.below(3 * capacity as usize + 1) {
        let len = 1 + input.below(300);
        let body = input.bytes(len).to_vec();
        if body.is_empty() {
            break;
        }
        let Some(seq) = commit(&mut wal, &pool, &body) else { break };
        let mut got = Vec::new();
        assert!(wal.read(seq, |d| got.extend_from_slice(d)), "a request just committed");
        assert_eq!(got, body);
        committed.push((seq, body));
        if mode == Mode::ZeroCopy {
            assert!(pool.kept_count() <= capacity, "more buffers kept than the log has records");
        }
    }
    drop(wal);
    let recovery = Recovery::open(dir.path(), capacity, mode).expect("reopening");
    let kept = recovery.kept_indices();
    drop(pool);
    let pool = self::pool(dir.path(), mode, kept);
    let wal = recovery.attach(pool, persister()).expect("attach again");
    let newest = committed.len().saturating_sub(capacity as usize);
    for (seq, body) in &committed[newest..] {
        let mut got = Vec::new();
        assert!(wal.read(*seq, |d| got.extend_from_slice(d)), "request {seq} lost across a restart");
        assert_eq!(&got, body, "request {seq} changed across a restart");
    }
}

/// A fresh directory, in memory when the machine has a tmpfs at /dev/shm: the log's
/// header writes are msync'ed, which on a disk would dominate each run.
fn scratch_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("paste-rt-fuzz-wal")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("a temporary directory")
}

/// The bytes a record names in the bodies' file, if they lie where it may point.
fn named_bytes(bodies: &[u8], mode: Mode, location: u32, offset: u32, len: u32) -> Option<&[u8]> {
    let (limit, size) = match mode {
        Mode::ZeroCopy => (BUFFERS, BUF_SIZE),
        Mode::Copy => ((bodies.len() / DATA_SLOT) as u32, DATA_SLOT),
    };
    if location >= limit || offset as usize + len as usize > size {
        return None;
    }
    let at = location as usize * size + offset as usize;
    bodies.get(at..at + len as usize)
}

fn pool(dir: &std::path::Path, mode: Mode, kept: Vec<u32>) -> BufPool {
    let memory = match mode {
        Mode::ZeroCopy => PoolMemory::File(dir.join("pool")),
        Mode::Copy => PoolMemory::Anonymous,
    };
    BufPool::new(&PoolConfig { buf_size: BUF_SIZE as u32, count: BUFFERS, memory, kept }, 0).expect("a pool")
}

fn persister() -> Persister {
    Persister::new(FlushMethod::detect(), 0)
}

/// Commits `body` as the server does; `None` when the pool has no buffer left.
fn commit(wal: &mut paste_rt_examples::wal::Wal, pool: &BufPool, body: &[u8]) -> Option<u64> {
    let mut tx = pool.tx_buf()?;
    let n = tx.put(body);
    assert_eq!(n, body.len());
    let (index, len) = tx.into_raw();
    // SAFETY: `index` was just taken from the pool by `tx_buf` and is lent once.
    let rx = unsafe { pool.lend_rx(index, 0, len) };
    let mut pending = Pending::default();
    wal.add_part(&mut pending, &rx, index, 0, true).expect("a completing part always fits");
    let seq = wal.commit(&mut pending);
    wal.fence().expect("fence");
    if wal.must_keep(index) {
        rx.keep();
    }
    Some(seq)
}
