//! Where a zero-copy log's bodies lie: which pool file, and where its buffers are
//! in it.
//!
//! A record names a pool buffer by index; the byte the index means depends on the
//! backend that laid the pool file out (epoll and io_uring put buffer `i` at
//! `i * size`; emulated PASTE puts its rings first). This module owns that
//! [`Layout`] — measured on a running pool from the process's memory map, so it
//! holds for any backend — the [`Claim`] a log's header records (the layout and
//! the pool file's generation), the pool file names ([`pool_path`]), and removing
//! the files an interrupted migration or a probe left behind ([`remove_stale`]).
//! It never reads or writes a body.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use paste_rt::core::BufPool;

/// How a pool file's buffers are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Byte offset of buffer 0 in the pool file.
    pub base: u64,
    /// Bytes per buffer.
    pub buf_size: u32,
}

/// What a zero-copy log's header says about the pool its records point into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The layout of the pool file.
    pub layout: Layout,
    /// Which pool file: generation 0 is `pool`, generation `n` is `pool.<n>` (each
    /// migration to another layout writes a new one).
    pub generation: u32,
}

/// The pool file of `generation` in `dir`.
pub fn pool_path(dir: &Path, generation: u32) -> PathBuf {
    if generation == 0 {
        dir.join("pool")
    } else {
        dir.join(format!("pool.{generation}"))
    }
}

/// The pool file a probe runtime maps to learn a backend's layout.
pub fn probe_path(dir: &Path) -> PathBuf {
    dir.join("pool.probe")
}

/// The log being written by a migration, renamed over `wal.log` when complete.
pub fn migrating_log_path(dir: &Path) -> PathBuf {
    dir.join("wal.log.migrating")
}

/// Removes every pool file of `dir` but generation `keep`'s, the probe's and an
/// unfinished migration's log: leftovers of a crash in the middle of a migration
/// (before its log replaced `wal.log`: the new pool; after: the old one).
pub fn remove_stale(dir: &Path, keep: u32) -> io::Result<()> {
    let keep = pool_path(dir, keep);
    let entries = fs::read_dir(dir).map_err(|e| at(dir, "listing", e))?;
    for entry in entries {
        let path = entry.map_err(|e| at(dir, "listing", e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let generation =
            name.strip_prefix("pool.").is_some_and(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit()));
        let stale = (name == "pool" || generation || path == probe_path(dir) || path == migrating_log_path(dir))
            && path != keep;
        if stale {
            fs::remove_file(&path).map_err(|e| at(&path, "removing", e))?;
        }
    }
    Ok(())
}

impl Layout {
    /// The layout of `pool`, whose memory is a shared mapping of `file`: the file
    /// offset of buffer 0, found in `/proc/self/maps` (the mapping that holds it,
    /// and that mapping's offset in the file).
    pub fn of(pool: &BufPool, file: &Path) -> io::Result<Layout> {
        let file = fs::canonicalize(file).map_err(|e| at(file, "resolving", e))?;
        let address = pool.buf_ptr(0) as u64;
        let maps = fs::read_to_string("/proc/self/maps").map_err(|e| at(Path::new("/proc/self/maps"), "reading", e))?;
        for line in maps.lines() {
            let Some(mapping) = Mapping::parse(line) else { continue };
            if mapping.path == file && (mapping.start..mapping.end).contains(&address) {
                return Ok(Layout { base: mapping.offset + (address - mapping.start), buf_size: pool.buf_size() });
            }
        }
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("the buffer pool is not a mapping of {} (no such line in /proc/self/maps)", file.display()),
        ))
    }

    /// Byte range in the pool file of `len` bytes at `offset` in buffer `index`, if
    /// they lie inside the buffer.
    pub fn range(&self, index: u32, offset: u32, len: u32) -> Option<std::ops::Range<u64>> {
        if u64::from(offset) + u64::from(len) > u64::from(self.buf_size) {
            return None;
        }
        let start = self.base + u64::from(index) * u64::from(self.buf_size) + u64::from(offset);
        Some(start..start + u64::from(len))
    }
}

/// One line of `/proc/self/maps`.
struct Mapping<'a> {
    start: u64,
    end: u64,
    offset: u64,
    path: &'a Path,
}

impl<'a> Mapping<'a> {
    /// `start-end perms offset dev inode path` (the path may hold spaces).
    fn parse(line: &'a str) -> Option<Mapping<'a>> {
        let mut fields = line.splitn(6, ' ');
        let (start, end) = fields.next()?.split_once('-')?;
        let _perms = fields.next()?;
        let offset = fields.next()?;
        let _dev = fields.next()?;
        let _inode = fields.next()?;
        let path = fields.next()?.trim_start();
        Some(Mapping {
            start: u64::from_str_radix(start, 16).ok()?,
            end: u64::from_str_radix(end, 16).ok()?,
            offset: u64::from_str_radix(offset, 16).ok()?,
            path: Path::new(path),
        })
    }
}

/// `e` with the path and what was being done.
pub(super) fn at(path: &Path, doing: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{doing} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use paste_rt::core::{PoolConfig, PoolMemory};

    #[test]
    fn a_file_backed_pool_starts_at_offset_0_and_maps_lines_parse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool");
        let cfg = PoolConfig { buf_size: 2048, count: 16, memory: PoolMemory::File(path.clone()), kept: vec![] };
        let pool = BufPool::new(&cfg, 0).unwrap();
        assert_eq!(Layout::of(&pool, &path).unwrap(), Layout { base: 0, buf_size: 2048 });
        let other = dir.path().join("other");
        fs::write(&other, b"x").unwrap();
        assert!(Layout::of(&pool, &other).is_err(), "not that file's mapping");

        let m = Mapping::parse("7f00a000-7f00c000 rw-s 00003000 fd:01 1234   /tmp/a dir/pool").unwrap();
        assert_eq!((m.start, m.end, m.offset, m.path), (0x7f00a000, 0x7f00c000, 0x3000, Path::new("/tmp/a dir/pool")));
        let l = Layout { base: 4096, buf_size: 2048 };
        assert_eq!(l.range(2, 10, 100), Some(4096 + 4096 + 10..4096 + 4096 + 110));
        assert_eq!(l.range(2, 2000, 100), None, "past the buffer");
    }

    #[test]
    fn stale_pools_probes_and_unfinished_migrations_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["pool", "pool.1", "pool.2", "pool.probe", "wal.log.migrating", "wal.log", "pool.notes"] {
            fs::write(dir.path().join(name), b"x").unwrap();
        }
        remove_stale(dir.path(), 1).unwrap();
        let mut left: Vec<String> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["pool.1", "pool.notes", "wal.log"]);
    }
}
