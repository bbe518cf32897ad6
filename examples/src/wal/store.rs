//! The WAL's state: which slot holds which record, which request is where, which
//! pool buffers are kept for it — and recovery.
//!
//! Owns slot allocation (a ring: the oldest record is evicted when the log wraps),
//! the bound on slots held by requests still arriving (so slow partial bodies
//! cannot starve complete ones: [`WalError::Busy`]), the sequence-number index used
//! to serve `GET /<seq>`, the reference count of every kept pool buffer, and the
//! persister (write-back now, one fence per batch). It allocates nothing per
//! request; recovery (once, at start) may.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use paste_rt::core::{BufPool, KeptBuf};
use paste_rt::persist::Persister;

use super::layout::{at, pool_path, remove_stale, Claim, Layout};
use super::log::{HeaderClaim, LogFiles, Mode, Record, DATA_SLOT};

/// Most parts (received buffers) one request body may span.
pub const MAX_PARTS: usize = 16;
const NONE: u32 = u32::MAX;

/// Why a body part was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalError {
    /// The body spans more than [`MAX_PARTS`] buffers.
    TooManyParts,
    /// Every slot is reserved by requests still in progress.
    Full,
    /// The part would leave its request incomplete, and requests still arriving
    /// already hold as many slots as they may (`max_partial`): try again later.
    Busy,
}

#[derive(Clone, Copy, Debug)]
struct SlotMeta {
    /// Sequence number of the committed record in the slot (0: none).
    seq: u64,
    /// Pool buffer it references (zero copy), else `NONE`.
    buf: u32,
    /// Reserved by a request that is not committed yet.
    pending: bool,
}

#[derive(Clone, Copy, Debug)]
struct SeqEntry {
    seq: u64,
    parts: u8,
    slots: [u32; MAX_PARTS],
}

/// One reserved part of a request in progress.
#[derive(Clone, Copy, Debug, Default)]
struct Part {
    slot: u32,
    location: u32,
    offset: u32,
    len: u32,
    crc: u32,
}

/// The parts of one request body received so far (per connection).
#[derive(Debug, Default)]
pub struct Pending {
    parts: [Part; MAX_PARTS],
    n: usize,
}

impl Pending {
    /// Whether no part is reserved.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}

/// Counters for reports and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WalStats {
    /// Requests persisted since start.
    pub committed: u64,
    /// Requests recovered at start.
    pub recovered: u64,
    /// Requests found at start but dropped (torn or incomplete).
    pub dropped: u64,
    /// Fences issued.
    pub fences: u64,
    /// Body parts refused because requests still arriving held all the slots they
    /// may ([`WalError::Busy`]).
    pub refused: u64,
}

/// The write-ahead log of persisted request bodies.
pub struct Wal {
    files: LogFiles,
    mode: Mode,
    pool: BufPool,
    persister: Persister,
    next_seq: u64,
    cursor: u32,
    slots: Vec<SlotMeta>,
    seqs: Vec<SeqEntry>,
    /// Records referencing each pool buffer (a buffer may hold many small bodies).
    refs: Vec<u32>,
    stats: WalStats,
    /// Slots reserved by requests not committed yet.
    reserved: u32,
    /// Most slots that parts leaving their request incomplete may hold.
    max_partial: u32,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("mode", &self.mode).field("stats", &self.stats).finish()
    }
}

/// What was found on disk, before the runtime (and its pool) starts.
#[derive(Debug)]
pub struct Recovery {
    pub(super) dir: PathBuf,
    pub(super) files: LogFiles,
    pub(super) mode: Mode,
    pub(super) by_seq: BTreeMap<u64, Vec<(u32, Record)>>,
    pub(super) max_seq: u64,
    pub(super) claim: HeaderClaim,
    /// Requests a migration found torn or incomplete (and did not carry over).
    pub(super) dropped: u64,
}

/// Whether the records of one request are all there, each once, and `intact`
/// says each one's bytes match its checksum.
pub(super) fn is_whole(parts: &[(u32, Record)], mut intact: impl FnMut(&Record) -> bool) -> bool {
    parts.len() == parts[0].1.parts as usize
        && parts.len() <= MAX_PARTS
        && (0..parts.len()).all(|p| parts.iter().filter(|(_, r)| r.part as usize == p).count() == 1)
        && parts.iter().all(|(_, r)| intact(r))
}

impl Recovery {
    /// Reads the log in `dir` (creating both if new), and removes what an
    /// interrupted migration left behind.
    pub fn open(dir: &Path, capacity: u32, mode: Mode) -> io::Result<Recovery> {
        std::fs::create_dir_all(dir).map_err(|e| at(dir, "creating the WAL directory", e))?;
        let files = LogFiles::open(dir, capacity, mode)?;
        let claim = files.claim();
        let generation = match &claim {
            HeaderClaim::Claim(c) => c.generation,
            HeaderClaim::None | HeaderClaim::Legacy(_) => 0,
        };
        remove_stale(dir, generation)?;
        let mut by_seq: BTreeMap<u64, Vec<(u32, Record)>> = BTreeMap::new();
        let mut max_seq = 0;
        for slot in 0..capacity {
            if let Some(r) = files.record(slot) {
                max_seq = max_seq.max(r.seq);
                by_seq.entry(r.seq).or_default().push((slot, r));
            }
        }
        Ok(Recovery { dir: dir.to_path_buf(), files, mode, by_seq, max_seq, claim, dropped: 0 })
    }

    /// What the log's header says about its pool.
    pub fn claim(&self) -> &HeaderClaim {
        &self.claim
    }

    /// The pool file the log's records point into (zero copy): the runtime's pool
    /// must be built over it.
    pub fn pool_file(&self) -> PathBuf {
        match &self.claim {
            HeaderClaim::Claim(c) => pool_path(&self.dir, c.generation),
            HeaderClaim::None | HeaderClaim::Legacy(_) => pool_path(&self.dir, 0),
        }
    }

    /// Whether the log holds records.
    pub fn is_empty(&self) -> bool {
        self.by_seq.is_empty()
    }

    /// Pool buffers that records reference: they must start out kept (pass them to
    /// `Builder::pool_file`) so the runtime does not receive into them.
    pub fn kept_indices(&self) -> Vec<u32> {
        if self.mode != Mode::ZeroCopy {
            return Vec::new();
        }
        let mut v: Vec<u32> = self.by_seq.values().flatten().map(|(_, r)| r.location).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Validates every record against its data and builds the WAL over `pool`, the
    /// pool of the runtime. Zero copy: `pool` must be a mapping of
    /// [`pool_file`](Self::pool_file) laid out as the log's claim says (a log written
    /// with another layout is migrated first, see [`super::migrate`]); a new log
    /// claims the pool's layout.
    pub fn attach(self, pool: BufPool, mut persister: Persister) -> io::Result<Wal> {
        let pool_file = self.pool_file();
        let Recovery { mut files, mode, by_seq, max_seq, claim, dropped, .. } = self;
        if mode == Mode::ZeroCopy {
            let layout = Layout::of(&pool, &pool_file)?;
            match claim {
                HeaderClaim::Claim(c) if c.layout != layout => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{}: its buffers are laid out as {layout:?}, the log's records as {:?}: the log must be \
                             migrated first",
                            pool_file.display(),
                            c.layout
                        ),
                    ))
                }
                HeaderClaim::Claim(_) => {}
                HeaderClaim::None | HeaderClaim::Legacy(_) => files
                    .set_claim(&Claim { layout, generation: 0 })
                    .map_err(|e| at(&pool_file, "claiming the layout of", e))?,
            }
        }
        let cap = files.capacity();
        for (start, len) in files.regions() {
            persister.add_region(start, len)?;
        }
        if mode == Mode::ZeroCopy {
            let bytes = pool.index_limit() as usize * pool.buf_size() as usize;
            persister.add_region(pool.buf_ptr(0), bytes)?;
        }
        let candidates: Vec<u32> = if mode == Mode::ZeroCopy {
            let mut v: Vec<u32> = by_seq.values().flatten().map(|(_, r)| r.location).collect();
            v.sort_unstable();
            v.dedup();
            v
        } else {
            Vec::new()
        };
        let empty_seq = SeqEntry { seq: 0, parts: 0, slots: [NONE; MAX_PARTS] };
        let mut wal = Wal {
            files,
            mode,
            refs: vec![0; pool.index_limit() as usize],
            pool,
            persister,
            next_seq: max_seq + 1,
            cursor: 0,
            slots: vec![SlotMeta { seq: 0, buf: NONE, pending: false }; cap as usize],
            seqs: vec![empty_seq; cap as usize],
            stats: WalStats { dropped, ..WalStats::default() },
            reserved: 0,
            max_partial: default_max_partial(cap),
        };
        let mut newest_slot = None;
        for (seq, parts) in by_seq {
            let whole = is_whole(&parts, |r| wal.data_of(r).is_some_and(|d| crc32fast::hash(d) == r.data_crc));
            if !whole {
                wal.stats.dropped += 1;
                continue;
            }
            let mut entry = SeqEntry { seq, parts: parts.len() as u8, slots: [NONE; MAX_PARTS] };
            for (slot, r) in &parts {
                entry.slots[r.part as usize] = *slot;
                let buf = if mode == Mode::ZeroCopy { r.location } else { NONE };
                wal.slots[*slot as usize] = SlotMeta { seq, buf, pending: false };
                if buf != NONE {
                    wal.refs[buf as usize] += 1;
                }
                newest_slot = Some(*slot);
            }
            wal.seqs[(seq % cap as u64) as usize] = entry;
            wal.stats.recovered += 1;
        }
        for index in candidates {
            if wal.refs.get(index as usize).is_some_and(|&r| r == 0) {
                wal.pool.release_kept(KeptBuf { index, offset: 0, len: 0 });
            }
        }
        wal.cursor = newest_slot.map_or(0, |s| (s + 1) % cap);
        Ok(wal)
    }
}

/// Default bound on the slots incomplete requests may hold: half the log.
pub fn default_max_partial(capacity: u32) -> u32 {
    capacity / 2
}

impl Wal {
    /// Bounds the slots that requests still arriving may hold (parts that leave
    /// their request incomplete); a part beyond it gets [`WalError::Busy`]. At most
    /// the capacity less one whole request's parts, so a request completing at once
    /// always finds a slot. Default: half the capacity.
    pub fn set_max_partial(&mut self, slots: u32) {
        self.max_partial = slots.min((self.slots.len() as u32).saturating_sub(MAX_PARTS as u32));
    }

    /// Slots held by requests not committed yet.
    pub fn reserved(&self) -> u32 {
        self.reserved
    }

    /// The bytes a record names, if its location is valid.
    fn data_of(&self, r: &Record) -> Option<&[u8]> {
        match self.mode {
            Mode::ZeroCopy => self.pool.kept_slice(&KeptBuf { index: r.location, offset: r.offset, len: r.len }),
            Mode::Copy => self.files.data(r.location, r.offset, r.len),
        }
    }

    /// The storage mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Counters.
    pub fn stats(&self) -> WalStats {
        WalStats { fences: self.persister.fences(), ..self.stats }
    }

    /// Highest sequence number assigned or recovered.
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Takes the next free slot, evicting the oldest record if the log is full.
    fn reserve_slot(&mut self) -> Result<u32, WalError> {
        let cap = self.slots.len() as u32;
        for _ in 0..cap {
            let slot = self.cursor;
            self.cursor = (self.cursor + 1) % cap;
            let meta = self.slots[slot as usize];
            if meta.pending {
                continue;
            }
            if meta.seq != 0 {
                let e = &mut self.seqs[(meta.seq % cap as u64) as usize];
                if e.seq == meta.seq {
                    e.seq = 0;
                }
                self.unref(meta.buf);
                self.files.clear(slot);
            }
            self.slots[slot as usize] = SlotMeta { seq: 0, buf: NONE, pending: true };
            return Ok(slot);
        }
        Err(WalError::Full)
    }

    fn unref(&mut self, buf: u32) {
        if buf == NONE {
            return;
        }
        let r = &mut self.refs[buf as usize];
        *r -= 1;
        if *r == 0 {
            // Not kept yet if the request was aborted inside the buffer that held
            // it; then release_kept is a no-op and the caller simply drops the RxBuf.
            self.pool.release_kept(KeptBuf { index: buf, offset: 0, len: 0 });
        }
    }

    /// Adds a part of a request body: `bytes` received in pool buffer `index` at
    /// `offset`; `completes` says whether it is the body's last part (the request is
    /// committed right after). Zero copy: the bytes stay where they are (the caller
    /// keeps the buffer when [`must_keep`](Self::must_keep) says so); copy: they are
    /// copied into the data file. Either way their cache lines are written back now.
    pub fn add_part(
        &mut self,
        pending: &mut Pending,
        bytes: &[u8],
        index: u32,
        offset: u32,
        completes: bool,
    ) -> Result<(), WalError> {
        if pending.n == MAX_PARTS {
            return Err(WalError::TooManyParts);
        }
        if !completes && self.reserved >= self.max_partial {
            self.stats.refused += 1;
            return Err(WalError::Busy);
        }
        let slot = self.reserve_slot()?;
        self.reserved += 1;
        let crc = crc32fast::hash(bytes);
        let part = match self.mode {
            Mode::ZeroCopy => {
                self.refs[index as usize] += 1;
                self.slots[slot as usize].buf = index;
                self.persister.write_back(bytes);
                Part { slot, location: index, offset, len: bytes.len() as u32, crc }
            }
            Mode::Copy => {
                let n = bytes.len().min(DATA_SLOT);
                let data = self.files.data_slot_mut(slot).expect("copy mode has a data file");
                data[..n].copy_from_slice(&bytes[..n]);
                self.persister.write_back(&data[..n]);
                Part { slot, location: slot, offset: 0, len: n as u32, crc }
            }
        };
        pending.parts[pending.n] = part;
        pending.n += 1;
        Ok(())
    }

    /// Whether pool buffer `index` holds a part and must be kept (zero copy).
    pub fn must_keep(&self, index: u32) -> bool {
        self.mode == Mode::ZeroCopy && self.refs.get(index as usize).is_some_and(|&r| r > 0)
    }

    /// Completes a request: writes its records (written back, fenced with the
    /// batch) and returns its sequence number. The caller acknowledges only after
    /// [`fence`](Self::fence).
    pub fn commit(&mut self, pending: &mut Pending) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let cap = self.slots.len() as u64;
        let mut entry = SeqEntry { seq, parts: pending.n as u8, slots: [NONE; MAX_PARTS] };
        for (i, p) in pending.parts[..pending.n].iter().enumerate() {
            let record = Record {
                seq,
                location: p.location,
                offset: p.offset,
                len: p.len,
                part: i as u8,
                parts: pending.n as u8,
                mode: self.mode,
                data_crc: p.crc,
            };
            let written = self.files.write(p.slot, &record);
            self.persister.write_back(written);
            let meta = &mut self.slots[p.slot as usize];
            meta.seq = seq;
            meta.pending = false;
            entry.slots[i] = p.slot;
        }
        self.seqs[(seq % cap) as usize] = entry;
        self.reserved -= pending.n as u32;
        pending.n = 0;
        self.stats.committed += 1;
        seq
    }

    /// Forgets a request in progress (its connection failed).
    pub fn abort(&mut self, pending: &mut Pending) {
        for i in 0..pending.n {
            let p = pending.parts[i];
            let meta = self.slots[p.slot as usize];
            self.slots[p.slot as usize] = SlotMeta { seq: 0, buf: NONE, pending: false };
            self.unref(meta.buf);
        }
        self.reserved -= pending.n as u32;
        pending.n = 0;
    }

    /// Makes everything written back since the last fence durable (one fence for
    /// the whole batch, plus the emulated PM latency).
    pub fn fence(&mut self) -> io::Result<()> {
        self.persister.fence()
    }

    /// Calls `out` with each part of request `seq`'s body, in order. `false` if the
    /// request is unknown or was evicted.
    pub fn read(&self, seq: u64, mut out: impl FnMut(&[u8])) -> bool {
        let cap = self.slots.len() as u64;
        let e = &self.seqs[(seq % cap) as usize];
        if seq == 0 || e.seq != seq {
            return false;
        }
        for &slot in &e.slots[..e.parts as usize] {
            let Some(r) = self.files.record(slot) else { return false };
            match self.data_of(&r) {
                Some(d) => out(d),
                None => return false,
            }
        }
        true
    }

    /// Total body length of request `seq`, if present.
    pub fn body_len(&self, seq: u64) -> Option<usize> {
        let mut n = 0;
        self.read(seq, |d| n += d.len()).then_some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paste_rt::core::{PoolConfig, PoolMemory};
    use paste_rt::persist::FlushMethod;

    fn pool(dir: &Path, kept: Vec<u32>) -> BufPool {
        let cfg = PoolConfig { buf_size: 2048, count: 64, memory: PoolMemory::File(dir.join("pool")), kept };
        BufPool::new(&cfg, 0).unwrap()
    }

    /// Persists one body the way the server does: receive into a pool buffer,
    /// add it as a part, commit, keep the buffer if the log references it.
    fn persist(wal: &mut Wal, pool: &BufPool, body: &[u8]) -> u64 {
        let mut tx = pool.tx_buf().unwrap();
        tx.put(body);
        let (index, len) = tx.into_raw();
        // SAFETY: index was just allocated and is lent exactly once.
        let rx = unsafe { pool.lend_rx(index, 0, len) };
        let mut pending = Pending::default();
        wal.add_part(&mut pending, &rx, index, 0, true).unwrap();
        let seq = wal.commit(&mut pending);
        wal.fence().unwrap();
        if wal.must_keep(index) {
            rx.keep();
        }
        seq
    }

    #[test]
    fn wrapping_evicts_oldest_releases_buffers_and_recovers_newest() {
        let dir = tempfile::tempdir().unwrap();
        let cap = 8;
        let p = pool(dir.path(), vec![]);
        let rec = Recovery::open(dir.path(), cap, Mode::ZeroCopy).unwrap();
        let mut wal = rec.attach(p.clone(), Persister::new(FlushMethod::detect(), 0)).unwrap();
        for i in 0..20u64 {
            assert_eq!(persist(&mut wal, &p, format!("body {i}").as_bytes()), i + 1);
            assert!(p.kept_count() <= cap, "kept buffers bounded by the log");
        }
        assert!(!wal.read(5, |_| {}), "evicted");
        let mut got = Vec::new();
        assert!(wal.read(20, |d| got.extend_from_slice(d)));
        assert_eq!(got, b"body 19");
        drop(wal);
        drop(p);

        let rec = Recovery::open(dir.path(), cap, Mode::ZeroCopy).unwrap();
        let kept = rec.kept_indices();
        assert_eq!(kept.len(), cap as usize);
        let p = pool(dir.path(), kept);
        let wal = rec.attach(p.clone(), Persister::new(FlushMethod::detect(), 0)).unwrap();
        assert_eq!(wal.stats().recovered, cap as u64);
        assert_eq!(wal.last_seq(), 20);
        for seq in 13..=20 {
            let mut got = Vec::new();
            assert!(wal.read(seq, |d| got.extend_from_slice(d)), "seq {seq}");
            assert_eq!(got, format!("body {}", seq - 1).as_bytes());
        }
        // A log whose records point into a pool laid out otherwise is not attached
        // as it is (it must be migrated).
        let mut files = LogFiles::open(dir.path(), cap, Mode::ZeroCopy).unwrap();
        files.set_claim(&Claim { layout: Layout { base: 4096, buf_size: 2048 }, generation: 0 }).unwrap();
        drop(files);
        let other = Recovery::open(dir.path(), cap, Mode::ZeroCopy).unwrap();
        let e = other.attach(p, Persister::new(FlushMethod::detect(), 0)).unwrap_err();
        assert!(e.to_string().contains("migrated"), "{e}");
    }

    #[test]
    fn incomplete_requests_hold_at_most_their_share_and_completing_parts_always_fit() {
        let dir = tempfile::tempdir().unwrap();
        let p = pool(dir.path(), vec![]);
        let rec = Recovery::open(dir.path(), 32, Mode::Copy).unwrap();
        let mut wal = rec.attach(p, Persister::new(FlushMethod::detect(), 0)).unwrap();
        wal.set_max_partial(1000);
        assert_eq!(wal.max_partial, 32 - MAX_PARTS as u32, "clamped: a whole request always fits");
        wal.set_max_partial(3);
        let mut slow: Vec<Pending> = (0..3).map(|_| Pending::default()).collect();
        for p in &mut slow {
            wal.add_part(p, b"part", 0, 0, false).unwrap();
        }
        let mut late = Pending::default();
        assert_eq!(wal.add_part(&mut late, b"part", 0, 0, false), Err(WalError::Busy));
        assert_eq!(wal.stats().refused, 1);
        for _ in 0..100 {
            let mut whole = Pending::default();
            wal.add_part(&mut whole, b"whole", 0, 0, true).unwrap();
            wal.commit(&mut whole);
        }
        assert_eq!(wal.reserved(), 3, "the slow ones still hold theirs");
        wal.abort(&mut slow[0]);
        wal.add_part(&mut late, b"part", 0, 0, false).unwrap();
        assert_eq!(wal.reserved(), 3);
    }

    #[test]
    fn a_torn_body_is_dropped_at_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let p = pool(dir.path(), vec![]);
        let rec = Recovery::open(dir.path(), 8, Mode::ZeroCopy).unwrap();
        let mut wal = rec.attach(p.clone(), Persister::new(FlushMethod::detect(), 0)).unwrap();
        persist(&mut wal, &p, b"intact");
        persist(&mut wal, &p, b"will be torn");
        drop(wal);
        drop(p);
        let rec = Recovery::open(dir.path(), 8, Mode::ZeroCopy).unwrap();
        let kept = rec.kept_indices();
        let p = pool(dir.path(), kept.clone());
        // Corrupt the second body in the pool file, as a crash mid-write would.
        let ptr = p.buf_ptr(kept[1].max(kept[0]));
        // SAFETY: the buffer is kept (nobody else uses it) and 2048 bytes long.
        unsafe { *ptr ^= 0xff };
        let wal = rec.attach(p.clone(), Persister::new(FlushMethod::detect(), 0)).unwrap();
        assert_eq!((wal.stats().recovered, wal.stats().dropped), (1, 1));
        assert_eq!(p.kept_count(), 1, "the torn record's buffer went back to the pool");
    }
}
