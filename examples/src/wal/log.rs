//! The WAL's on-disk format: a header page and a ring of 32-byte records, each
//! protected by two checksums, plus (copy mode) a data file with one 2 KiB slot per
//! record.
//!
//! Owns encoding, decoding and validation of records and the two file mappings.
//! It never decides which record goes where (that is `store`'s job) and never
//! flushes (the caller writes records back and fences once per batch).
//!
//! A record names one part of one request body:
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | sequence number (0 = empty slot) |
//! | 8..12 | location: pool buffer index (zero copy) or data slot (copy) |
//! | 12..16 | offset of the part inside that buffer or slot |
//! | 16..20 | length of the part |
//! | 20 | part number, 21: number of parts, 22: mode (1 zero copy, 2 copy), 23: 0 |
//! | 24..28 | CRC-32 of the part's bytes |
//! | 28..32 | CRC-32 of bytes 0..28 |
//!
//! A torn record (a crash in the middle of writing it, or its data) fails one of the
//! checksums and is dropped at recovery; a request is recovered only if all its
//! parts are.
//!
//! The header page holds the magic, the format version, the mode and the capacity
//! (bytes 0..32: a log opened with other ones is refused, its records would be
//! misread), and, for a zero-copy log, the pool [`Claim`] (bytes 32..64:
//! `POOLMAP1`, the file offset of buffer 0, the buffer size, the pool file's
//! generation). Logs of earlier versions named a backend there instead
//! ([`HeaderClaim::Legacy`]).

use std::fs::OpenOptions;
use std::io;
use std::path::Path;

use memmap2::MmapMut;

use super::layout::{at, migrating_log_path, Claim, Layout};

/// Bytes per record.
pub const RECORD_SIZE: usize = 32;
/// Bytes per data slot in copy mode.
pub const DATA_SLOT: usize = 2048;
/// Bytes of the header page, before the first record.
pub const HEADER: usize = 4096;
const MAGIC: &[u8; 8] = b"PASTEWAL";
const VERSION: u32 = 1;
const CLAIM_MAGIC: &[u8; 8] = b"POOLMAP1";

/// What a log's header says about its pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderClaim {
    /// Nothing yet (a new log, or a copy-mode one).
    None,
    /// The pool's layout and generation.
    Claim(Claim),
    /// An earlier version's claim: the name of the backend that wrote the log.
    Legacy(String),
}

/// Where request bodies live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// In the pool buffers they were received into (kept, zero copy).
    ZeroCopy = 1,
    /// Copied into the data file.
    Copy = 2,
}

impl Mode {
    fn from_u8(v: u8) -> Option<Mode> {
        match v {
            1 => Some(Mode::ZeroCopy),
            2 => Some(Mode::Copy),
            _ => None,
        }
    }
}

/// One part of one persisted request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Sequence number, from 1, in acknowledgement order.
    pub seq: u64,
    /// Pool buffer index (zero copy) or data slot (copy).
    pub location: u32,
    /// Offset of the bytes inside the buffer or slot.
    pub offset: u32,
    /// Number of bytes.
    pub len: u32,
    /// Which part (0-based).
    pub part: u8,
    /// How many parts the body has.
    pub parts: u8,
    /// Zero copy or copy.
    pub mode: Mode,
    /// CRC-32 of the bytes.
    pub data_crc: u32,
}

impl Record {
    /// The 32 bytes of the record.
    pub fn encode(&self) -> [u8; RECORD_SIZE] {
        let mut b = [0u8; RECORD_SIZE];
        b[0..8].copy_from_slice(&self.seq.to_le_bytes());
        b[8..12].copy_from_slice(&self.location.to_le_bytes());
        b[12..16].copy_from_slice(&self.offset.to_le_bytes());
        b[16..20].copy_from_slice(&self.len.to_le_bytes());
        b[20] = self.part;
        b[21] = self.parts;
        b[22] = self.mode as u8;
        b[24..28].copy_from_slice(&self.data_crc.to_le_bytes());
        let crc = crc32fast::hash(&b[..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a record; `None` for an empty slot or a torn/corrupt one.
    pub fn decode(b: &[u8]) -> Option<Record> {
        let b: &[u8; RECORD_SIZE] = b.try_into().ok()?;
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        if crc32fast::hash(&b[..28]) != u32_at(28) {
            return None;
        }
        let seq = u64::from_le_bytes(b[0..8].try_into().unwrap());
        let (part, parts) = (b[20], b[21]);
        // Byte 23 is reserved (0): a record with it set is not one this version wrote.
        if seq == 0 || parts == 0 || part >= parts || b[23] != 0 {
            return None;
        }
        Some(Record {
            seq,
            location: u32_at(8),
            offset: u32_at(12),
            len: u32_at(16),
            part,
            parts,
            mode: Mode::from_u8(b[22])?,
            data_crc: u32_at(24),
        })
    }
}

/// The record file (and, in copy mode, the data file), mapped.
pub struct LogFiles {
    log: MmapMut,
    data: Option<MmapMut>,
    capacity: u32,
}

impl std::fmt::Debug for LogFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFiles").field("capacity", &self.capacity).finish()
    }
}

fn map_file(path: &Path, len: usize) -> io::Result<MmapMut> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| at(path, "opening", e))?;
    if file.metadata().map_err(|e| at(path, "reading the size of", e))?.len() < len as u64 {
        file.set_len(len as u64).map_err(|e| at(path, "growing", e))?;
    }
    // SAFETY: the WAL files are private to this server (one process owns a WAL
    // directory at a time, enforced by the caller's documentation) and never
    // truncated while mapped.
    unsafe { memmap2::MmapOptions::new().len(len).map_mut(&file) }.map_err(|e| at(path, "mapping", e))
}

impl LogFiles {
    /// Opens or creates `dir/wal.log` (and `dir/wal.data` in copy mode) for
    /// `capacity` records. An existing log written with other settings is an error:
    /// its records would be misread.
    pub fn open(dir: &Path, capacity: u32, mode: Mode) -> io::Result<LogFiles> {
        LogFiles::open_log(&dir.join("wal.log"), dir, capacity, mode)
    }

    /// Opens `dir/wal.log.migrating` (a copy of a zero-copy `wal.log` that a
    /// migration rewrites before renaming it over the original).
    pub fn open_migrating(dir: &Path, capacity: u32) -> io::Result<LogFiles> {
        LogFiles::open_log(&migrating_log_path(dir), dir, capacity, Mode::ZeroCopy)
    }

    fn open_log(path: &Path, dir: &Path, capacity: u32, mode: Mode) -> io::Result<LogFiles> {
        let mut log = map_file(path, HEADER + capacity as usize * RECORD_SIZE)?;
        let mut header = [0u8; 64];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&VERSION.to_le_bytes());
        header[12] = mode as u8;
        header[16..20].copy_from_slice(&capacity.to_le_bytes());
        if log[..8] == [0u8; 8] {
            log[..32].copy_from_slice(&header[..32]);
            log.flush_range(0, 64).map_err(|e| at(path, "writing", e))?;
        } else if log[..32] != header[..32] {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: written with another mode or capacity; recovery needs the same --copy and --capacity",
                    path.display()
                ),
            ));
        }
        let data = match mode {
            Mode::Copy => Some(map_file(&dir.join("wal.data"), capacity as usize * DATA_SLOT)?),
            Mode::ZeroCopy => None,
        };
        Ok(LogFiles { log, data, capacity })
    }

    /// What the header says about the pool (zero-copy logs).
    pub fn claim(&self) -> HeaderClaim {
        let h = &self.log[32..64];
        if h == [0u8; 32] {
            return HeaderClaim::None;
        }
        if &h[..8] != CLAIM_MAGIC {
            return HeaderClaim::Legacy(String::from_utf8_lossy(h).trim_end_matches('\0').to_string());
        }
        let u32_at = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().unwrap());
        HeaderClaim::Claim(Claim {
            layout: Layout { base: u64::from_le_bytes(h[8..16].try_into().unwrap()), buf_size: u32_at(16) },
            generation: u32_at(20),
        })
    }

    /// Records `claim` in the header and writes it back to the file.
    pub fn set_claim(&mut self, claim: &Claim) -> io::Result<()> {
        let mut h = [0u8; 32];
        h[..8].copy_from_slice(CLAIM_MAGIC);
        h[8..16].copy_from_slice(&claim.layout.base.to_le_bytes());
        h[16..20].copy_from_slice(&claim.layout.buf_size.to_le_bytes());
        h[20..24].copy_from_slice(&claim.generation.to_le_bytes());
        self.log[32..64].copy_from_slice(&h);
        self.log.flush_range(0, 64)
    }

    /// Writes the whole record file back to the disk (`msync`).
    pub fn sync(&self) -> io::Result<()> {
        self.log.flush()
    }

    /// Number of record slots.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// The record in `slot`, if valid.
    pub fn record(&self, slot: u32) -> Option<Record> {
        Record::decode(self.slot_bytes(slot))
    }

    fn slot_bytes(&self, slot: u32) -> &[u8] {
        let at = HEADER + slot as usize * RECORD_SIZE;
        &self.log[at..at + RECORD_SIZE]
    }

    /// Writes `record` into `slot`; returns the written bytes (to write back).
    pub fn write(&mut self, slot: u32, record: &Record) -> &[u8] {
        let at = HEADER + slot as usize * RECORD_SIZE;
        self.log[at..at + RECORD_SIZE].copy_from_slice(&record.encode());
        &self.log[at..at + RECORD_SIZE]
    }

    /// Empties `slot` (its old record is being overwritten).
    pub fn clear(&mut self, slot: u32) {
        let at = HEADER + slot as usize * RECORD_SIZE;
        self.log[at..at + RECORD_SIZE].fill(0);
    }

    /// Copy mode: the data slot of record slot `slot`.
    pub fn data_slot_mut(&mut self, slot: u32) -> Option<&mut [u8]> {
        let at = slot as usize * DATA_SLOT;
        self.data.as_mut().map(|d| &mut d[at..at + DATA_SLOT])
    }

    /// Copy mode: `len` bytes at `offset` of data slot `slot`.
    pub fn data(&self, slot: u32, offset: u32, len: u32) -> Option<&[u8]> {
        // A slot past the capacity is not one (found by the wal_recovery fuzz target:
        // an empty part "at" slot `capacity` lay just inside the mapping's bounds).
        if slot >= self.capacity || offset as usize + len as usize > DATA_SLOT {
            return None;
        }
        let at = slot as usize * DATA_SLOT + offset as usize;
        let end = at.checked_add(len as usize)?;
        self.data.as_ref().and_then(|d| d.get(at..end))
    }

    /// The mappings (start, length), for `Persister::add_region`.
    pub fn regions(&self) -> Vec<(*const u8, usize)> {
        let mut r = vec![(self.log.as_ptr(), self.log.len())];
        if let Some(d) = &self.data {
            r.push((d.as_ptr(), d.len()));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_torn_ones_are_rejected() {
        let r = Record {
            seq: 42,
            location: 7,
            offset: 130,
            len: 1024,
            part: 1,
            parts: 2,
            mode: Mode::ZeroCopy,
            data_crc: 9,
        };
        let mut b = r.encode();
        assert_eq!(Record::decode(&b), Some(r));
        for i in 0..RECORD_SIZE {
            b[i] ^= 0x40;
            assert_eq!(Record::decode(&b), None, "flipping byte {i} must be detected");
            b[i] ^= 0x40;
        }
        assert_eq!(Record::decode(&[0u8; RECORD_SIZE]), None, "empty slot");
    }

    #[test]
    fn reopening_with_other_settings_is_refused_and_the_claim_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogFiles::open(dir.path(), 16, Mode::ZeroCopy).unwrap();
        assert_eq!(log.claim(), HeaderClaim::None);
        let claim = Claim { layout: Layout { base: 0x1_0000_2000, buf_size: 2048 }, generation: 3 };
        log.set_claim(&claim).unwrap();
        drop(log);
        let again = LogFiles::open(dir.path(), 16, Mode::ZeroCopy).unwrap();
        assert_eq!(again.claim(), HeaderClaim::Claim(claim));
        for e in [
            LogFiles::open(dir.path(), 32, Mode::ZeroCopy).unwrap_err(),
            LogFiles::open(dir.path(), 16, Mode::Copy).unwrap_err(),
        ] {
            assert!(e.to_string().contains("another mode or capacity") && e.to_string().contains("wal.log"), "{e}");
        }
        // An earlier version's header named the backend.
        let mut old = LogFiles::open(dir.path(), 16, Mode::ZeroCopy).unwrap();
        old.log[32..64].fill(0);
        old.log[32..37].copy_from_slice(b"uring");
        assert_eq!(old.claim(), HeaderClaim::Legacy("uring".into()));
    }

    #[test]
    fn copy_mode_data_lies_in_a_slot_below_the_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let files = LogFiles::open(dir.path(), 1, Mode::Copy).unwrap();
        assert_eq!(files.data(0, 0, 2048).map(<[u8]>::len), Some(2048));
        assert_eq!(files.data(0, 2000, 100), None, "past the slot");
        assert_eq!(files.data(1, 0, 0), None, "slot 1 of a 1-record log");
    }

    #[test]
    fn file_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let e = LogFiles::open(&file, 16, Mode::Copy).unwrap_err();
        assert!(e.to_string().contains(&file.join("wal.log").display().to_string()), "{e}");
    }
}
