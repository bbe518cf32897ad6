//! The peers' write-ahead log: request bodies copied into a file-backed shared mapping
//! and flushed before the request is answered, as a straightforward server would.
//!
//! Owns the mapping and record placement. Flushing is paste-rt's own [`Persister`]
//! (the same detection of `clwb`, `clflushopt` or `clflush` followed by `sfence`,
//! `msync` where the CPU has none, and the same emulated persistent-memory busy wait
//! per fence), so only the batching differs from paste-rt's wal: one write-back and
//! one fence per request. A record is a 16-byte header (sequence: u64,
//! length: u32, CRC-32 of the body: u32, little-endian; paste-rt's wal checksums its
//! bodies with the same CRC), the body, and padding to the next 64-byte line. The log is circular: a record that does not fit before the end
//! starts again at offset 0 (the benchmark measures the write path, nobody reads the
//! log back). The file is unlinked as soon as it is mapped, so a killed server leaves
//! nothing behind.
//!
//! It must never answer for a record it has not flushed, and never write outside its
//! mapping.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use paste_rt::persist::{FlushMethod, Persister};

/// Size of the log file (64 MiB).
pub(crate) const LOG_CAPACITY: usize = 64 * 1024 * 1024;
/// Largest body one record may hold.
pub(crate) const MAX_RECORD_BODY: usize = 1024 * 1024;
/// Record header: sequence (u64), length (u32), zero (u32).
const HEADER_LEN: usize = 16;
/// Records start on cache lines.
const LINE: usize = 64;

/// A reserved record: where its body goes and how much of it has arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record {
    start: usize,
    body_len: usize,
    written: usize,
}

/// Why the log could not take or persist a record.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WalError {
    /// Setting the log file up failed.
    #[error("setting up the write-ahead log {path}: {what}: {source}")]
    Setup {
        /// The log file.
        path: PathBuf,
        /// What was attempted.
        what: &'static str,
        /// The failure, with its errno.
        #[source]
        source: io::Error,
    },
    /// A body larger than [`MAX_RECORD_BODY`].
    #[error("a {len}-byte body exceeds the log's record limit of {MAX_RECORD_BODY} bytes")]
    TooLarge {
        /// The announced body length.
        len: u64,
    },
    /// The flush (`msync`) failed.
    #[error("flushing a write-ahead log record: {0}")]
    Flush(#[source] io::Error),
}

/// A file-backed, memory-mapped, circular write-ahead log.
#[derive(Debug)]
pub(crate) struct WalLog {
    base: NonNull<u8>,
    capacity: usize,
    /// Where the next record starts.
    tail: usize,
    next_seq: u64,
    persister: Persister,
}

/// Distinguishes the logs of one process (tests start several servers).
static LOG_ID: AtomicU64 = AtomicU64::new(0);

impl WalLog {
    /// Creates a `capacity`-byte log file in `dir`, maps it shared and unlinks it.
    pub(crate) fn create(
        dir: &Path,
        capacity: usize,
        method: FlushMethod,
        pm_latency_ns: u64,
    ) -> Result<WalLog, WalError> {
        let id = LOG_ID.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("paste-bench-peer-{}-{id}.wal", std::process::id()));
        let setup = |what, source| WalError::Setup { path: path.clone(), what, source };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| setup("creating the file", e))?;
        let mapped = (|| {
            file.set_len(capacity as u64).map_err(|e| setup("sizing the file", e))?;
            // SAFETY: a fresh shared mapping of a file we just sized to `capacity`;
            // no existing memory is affected.
            let addr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    capacity,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    file.as_raw_fd(),
                    0,
                )
            };
            if addr == libc::MAP_FAILED {
                return Err(setup("mapping the file", io::Error::last_os_error()));
            }
            NonNull::new(addr.cast::<u8>()).ok_or_else(|| setup("mapping the file", io::ErrorKind::Other.into()))
        })();
        // The mapping keeps the file alive; the name is not needed.
        let removed = std::fs::remove_file(&path);
        let base = mapped?;
        // Built before the checks below, so that its Drop unmaps on failure.
        let mut log = WalLog { base, capacity, tail: 0, next_seq: 0, persister: Persister::new(method, pm_latency_ns) };
        log.persister.add_region(base.as_ptr(), capacity).map_err(|e| setup("declaring the mapping", e))?;
        removed.map_err(|e| setup("unlinking the file", e))?;
        Ok(log)
    }

    /// How records are flushed.
    pub(crate) fn method(&self) -> FlushMethod {
        self.persister.method()
    }

    /// Reserves room for a record of `body_len` bytes.
    pub(crate) fn reserve(&mut self, body_len: u64) -> Result<Record, WalError> {
        if body_len > MAX_RECORD_BODY as u64 {
            return Err(WalError::TooLarge { len: body_len });
        }
        let body_len = body_len as usize;
        let len = record_len(body_len);
        if len > self.capacity {
            return Err(WalError::TooLarge { len: body_len as u64 });
        }
        if self.tail + len > self.capacity {
            self.tail = 0;
        }
        let record = Record { start: self.tail, body_len, written: 0 };
        self.tail += len;
        Ok(record)
    }

    /// Copies the next `bytes` of `record`'s body into the log; bytes past the
    /// announced length are ignored (the HTTP parser never reports any).
    pub(crate) fn append(&mut self, record: &mut Record, bytes: &[u8]) {
        let take = bytes.len().min(record.body_len - record.written);
        let at = record.start + HEADER_LEN + record.written;
        self.slice_mut(at, take).copy_from_slice(&bytes[..take]);
        record.written += take;
    }

    /// Writes `record`'s header, writes the whole record back and fences (then the
    /// emulated latency). Returns the record's sequence number.
    pub(crate) fn commit(&mut self, record: Record) -> Result<u64, WalError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let body_at = record.start + HEADER_LEN;
        let crc = crc32fast::hash(self.slice_mut(body_at, record.written));
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(&seq.to_le_bytes());
        header[8..12].copy_from_slice(&(record.written as u32).to_le_bytes());
        header[12..].copy_from_slice(&crc.to_le_bytes());
        self.slice_mut(record.start, HEADER_LEN).copy_from_slice(&header);
        let whole = HEADER_LEN + record.written;
        // SAFETY: see `slice_mut`; the range is inside the mapping (it was reserved
        // there) and only read here.
        let bytes = unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(record.start), whole) };
        self.persister.write_back(bytes);
        self.persister.fence().map_err(WalError::Flush)?;
        Ok(seq)
    }

    /// The mapped bytes `at..at + len`.
    fn slice_mut(&mut self, at: usize, len: usize) -> &mut [u8] {
        assert!(at + len <= self.capacity, "record outside the log");
        // SAFETY: `base..base + capacity` is our live, writable mapping (unmapped only
        // in Drop); the range is inside it (asserted), and `&mut self` makes the
        // returned slice the only reference into it.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(at), len) }
    }
}

impl Drop for WalLog {
    fn drop(&mut self) {
        // SAFETY: `base..base + capacity` is the mapping made in `create`; no slice
        // into it outlives `&mut self`.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.capacity);
        }
    }
}

/// Bytes a record of `body_len` occupies, header and padding included.
fn record_len(body_len: usize) -> usize {
    (HEADER_LEN + body_len).div_ceil(LINE) * LINE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_back(log: &mut WalLog, at: usize, len: usize) -> Vec<u8> {
        log.slice_mut(at, len).to_vec()
    }

    #[test]
    fn records_are_laid_out_and_flushed_with_every_method() {
        let dir = std::env::temp_dir();
        for method in [FlushMethod::detect(), FlushMethod::Msync] {
            let mut log = WalLog::create(&dir, 4096, method, 0).expect("log");
            let mut a = log.reserve(5).expect("reserve");
            let mut b = log.reserve(100).expect("reserve");
            // Bodies may arrive in pieces and records interleave.
            log.append(&mut a, b"he");
            log.append(&mut b, &[7u8; 100]);
            log.append(&mut a, b"llo and more");
            assert_eq!(log.commit(b).expect("commit"), 0);
            assert_eq!(log.commit(a).expect("commit"), 1);
            let crc = crc32fast::hash(b"hello").to_le_bytes();
            assert_eq!(
                read_back(&mut log, 0, 21),
                [&1u64.to_le_bytes()[..], &5u32.to_le_bytes(), &crc, b"hello"].concat()
            );
            let crc = crc32fast::hash(&[7u8; 100]).to_le_bytes();
            assert_eq!(read_back(&mut log, 64, 16), [&0u64.to_le_bytes()[..], &100u32.to_le_bytes(), &crc].concat());
            assert_eq!(read_back(&mut log, 80, 100), vec![7u8; 100]);
        }
    }

    #[test]
    fn the_log_wraps_and_rejects_oversized_bodies() {
        let mut log = WalLog::create(&std::env::temp_dir(), 256, FlushMethod::Msync, 0).expect("log");
        let first = log.reserve(100).expect("reserve");
        let second = log.reserve(100).expect("reserve");
        assert_eq!((first.start, second.start), (0, 128));
        let third = log.reserve(100).expect("reserve");
        assert_eq!(third.start, 0, "wraps to the start");
        assert!(matches!(log.reserve(300), Err(WalError::TooLarge { len: 300 })));
        assert!(matches!(log.reserve(u64::MAX), Err(WalError::TooLarge { .. })));
    }

    #[test]
    fn the_file_is_gone_once_mapped() {
        let dir = std::env::temp_dir().join(format!("paste-bench-wal-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let log = WalLog::create(&dir, 4096, FlushMethod::Msync, 0).expect("log");
        assert_eq!(std::fs::read_dir(&dir).expect("read dir").count(), 0);
        drop(log);
        std::fs::remove_dir(&dir).expect("remove dir");
        let missing = WalLog::create(&dir, 4096, FlushMethod::Msync, 0);
        assert!(matches!(missing, Err(WalError::Setup { what: "creating the file", .. })));
    }
}
