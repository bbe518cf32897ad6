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

use std::fs::OpenOptions;
use std::io;
use std::path::Path;

use memmap2::MmapMut;

/// Bytes per record.
pub const RECORD_SIZE: usize = 32;
/// Bytes per data slot in copy mode.
pub const DATA_SLOT: usize = 2048;
const HEADER: usize = 4096;
const MAGIC: &[u8; 8] = b"PASTEWAL";
const VERSION: u32 = 1;

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
        if seq == 0 || parts == 0 || part >= parts {
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
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
    if file.metadata()?.len() < len as u64 {
        file.set_len(len as u64)?;
    }
    // SAFETY: the WAL files are private to this server (one process owns a WAL
    // directory at a time, enforced by the caller's documentation) and never
    // truncated while mapped.
    unsafe { memmap2::MmapOptions::new().len(len).map_mut(&file) }
}

impl LogFiles {
    /// Opens or creates `dir/wal.log` (and `dir/wal.data` in copy mode) for
    /// `capacity` records. An existing log written with other settings is an error:
    /// its records would be misread.
    pub fn open(dir: &Path, capacity: u32, mode: Mode) -> io::Result<LogFiles> {
        let mut log = map_file(&dir.join("wal.log"), HEADER + capacity as usize * RECORD_SIZE)?;
        let mut header = [0u8; 64];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&VERSION.to_le_bytes());
        header[12] = mode as u8;
        header[16..20].copy_from_slice(&capacity.to_le_bytes());
        if log[..8] == [0u8; 8] {
            log[..32].copy_from_slice(&header[..32]);
            log.flush_range(0, 64)?;
        } else if log[..32] != header[..32] {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: written with another mode or capacity; recovery needs the same --copy and --capacity",
                    dir.join("wal.log").display()
                ),
            ));
        }
        let data = match mode {
            Mode::Copy => Some(map_file(&dir.join("wal.data"), capacity as usize * DATA_SLOT)?),
            Mode::ZeroCopy => None,
        };
        Ok(LogFiles { log, data, capacity })
    }

    /// Records which backend's buffer layout the log refers to, or checks that it
    /// is `backend`: pool buffer indices mean different file offsets on different
    /// backends, so a zero-copy log can only be recovered by the backend that wrote it.
    pub fn claim_backend(&mut self, backend: &str) -> io::Result<()> {
        let mut name = [0u8; 32];
        name[..backend.len().min(32)].copy_from_slice(&backend.as_bytes()[..backend.len().min(32)]);
        if self.log[32..64] == [0u8; 32] {
            self.log[32..64].copy_from_slice(&name);
            self.log.flush_range(0, 64)?;
            Ok(())
        } else if self.log[32..64] == name {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "this WAL was written on the {} backend; recover it with --backend {0} (buffer indices are backend-specific)",
                    String::from_utf8_lossy(&self.log[32..64]).trim_end_matches('\0')
                ),
            ))
        }
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
        let at = slot as usize * DATA_SLOT + offset as usize;
        let end = at.checked_add(len as usize)?;
        if offset as usize + len as usize > DATA_SLOT {
            return None;
        }
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
    fn reopening_with_other_settings_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        LogFiles::open(dir.path(), 16, Mode::Copy).unwrap().claim_backend("epoll").unwrap();
        let mut again = LogFiles::open(dir.path(), 16, Mode::Copy).unwrap();
        again.claim_backend("epoll").unwrap();
        let e = again.claim_backend("uring").unwrap_err();
        assert!(e.to_string().contains("epoll backend"), "{e}");
        assert!(LogFiles::open(dir.path(), 32, Mode::Copy).is_err());
        assert!(LogFiles::open(dir.path(), 16, Mode::ZeroCopy).is_err());
    }
}
