//! Moving a zero-copy log onto a pool laid out differently: recovery on another
//! backend than the one that wrote the log.
//!
//! Owns the one copy a change of layout needs: every whole request's bodies are
//! read from the old pool file (where the log's claim says its buffers lie),
//! checked against their checksums, copied into buffers of the running pool (a new
//! pool file, the next generation) and kept there; the records are rewritten into
//! a copy of the log (`wal.log.migrating`) that then replaces `wal.log` in one
//! rename, after which the old pool file is removed. A crash at any point leaves
//! either the old log and pool (the next start migrates again) or the new ones; the
//! leftovers are removed at the next start ([`super::layout::remove_stale`]).
//! It runs once, at start, and may allocate.

use std::fs::{self, File};
use std::io;

use memmap2::Mmap;
use paste_rt::core::BufPool;
use paste_rt::persist::{FlushMethod, Persister};

use super::layout::{at, migrating_log_path, pool_path, Claim, Layout};
use super::log::{HeaderClaim, LogFiles, Record};
use super::store::{is_whole, Recovery};

/// Copies the whole requests of `recovery` (a zero-copy log whose claim is `from`)
/// into kept buffers of `pool` — a fresh mapping of pool file generation
/// `to_generation` — and makes the log point there (see the module docs). Returns
/// the recovery of the rewritten log.
pub(super) fn migrate(
    recovery: Recovery,
    pool: &BufPool,
    to_generation: u32,
    method: FlushMethod,
) -> io::Result<Recovery> {
    let HeaderClaim::Claim(from) = recovery.claim().clone() else {
        return Err(io::Error::other("only a log with a layout claim can be migrated"));
    };
    let dir = recovery.dir.clone();
    let capacity = recovery.files.capacity();
    let old_path = pool_path(&dir, from.generation);
    let new_path = pool_path(&dir, to_generation);
    let to = Claim { layout: Layout::of(pool, &new_path)?, generation: to_generation };
    let old = map_read_only(&old_path, recovery.is_empty())?;
    let mut persister = Persister::new(method, 0);
    let bytes = pool.index_limit() as usize * pool.buf_size() as usize;
    persister.add_region(pool.buf_ptr(0), bytes)?;

    let log_path = dir.join("wal.log");
    let migrating = migrating_log_path(&dir);
    fs::copy(&log_path, &migrating).map_err(|e| at(&migrating, "copying the log to", e))?;
    let mut log = LogFiles::open_migrating(&dir, capacity)?;
    let mut dropped = 0;
    for parts in recovery.by_seq.values() {
        for (slot, _) in parts {
            log.clear(*slot);
        }
        let body = |r: &Record| old.as_ref().and_then(|m| old_bytes(m, &from.layout, r));
        if !is_whole(parts, |r| body(r).is_some_and(|d| crc32fast::hash(d) == r.data_crc)) {
            dropped += 1;
            continue;
        }
        for (slot, r) in parts {
            let data = body(r).expect("checked whole above");
            if data.len() > pool.buf_size() as usize {
                return Err(io::Error::other(format!(
                    "migrating {}: a {}-byte body part does not fit this pool's {}-byte buffers",
                    log_path.display(),
                    data.len(),
                    pool.buf_size()
                )));
            }
            let index = pool.alloc().ok_or_else(|| {
                io::Error::other(format!("migrating {}: the buffer pool ran out", log_path.display()))
            })?;
            let dst = pool.buf_ptr(index);
            // SAFETY: `index` was just taken off the free list, so this code owns the
            // buffer; `data` fits in it (checked above) and lies in another mapping.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
            // SAFETY: we own `index` (allocated above) and hand it over; 0 + len fits.
            let rx = unsafe { pool.lend_rx(index, 0, data.len() as u32) };
            persister.write_back(&rx);
            let kept = rx.keep();
            log.write(*slot, &Record { location: kept.index, offset: kept.offset, ..*r });
        }
    }
    persister.fence()?;
    log.set_claim(&to).map_err(|e| at(&migrating, "writing", e))?;
    log.sync().map_err(|e| at(&migrating, "writing", e))?;
    drop(log);
    File::open(&migrating).and_then(|f| f.sync_all()).map_err(|e| at(&migrating, "syncing", e))?;
    // The commit point: from here on the log points into the new pool file.
    fs::rename(&migrating, &log_path).map_err(|e| at(&log_path, "replacing", e))?;
    File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| at(&dir, "syncing", e))?;
    if old.is_some() {
        drop(old);
        fs::remove_file(&old_path).map_err(|e| at(&old_path, "removing", e))?;
    }
    let mut migrated = Recovery::open(&dir, capacity, recovery.mode)?;
    migrated.dropped = recovery.dropped + dropped;
    Ok(migrated)
}

/// The old pool file, read-only; `None` if it is gone and nothing refers to it.
fn map_read_only(path: &std::path::Path, unused: bool) -> io::Result<Option<Mmap>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound && unused => return Ok(None),
        Err(e) => return Err(at(path, "opening the pool file the log points into,", e)),
    };
    // SAFETY: a read-only view of the previous run's pool file, which nothing else
    // maps or writes while this process owns the WAL directory.
    unsafe { Mmap::map(&file) }.map(Some).map_err(|e| at(path, "mapping", e))
}

/// The bytes `r` names in a pool file laid out as `layout`, if inside the file.
fn old_bytes<'m>(map: &'m Mmap, layout: &Layout, r: &Record) -> Option<&'m [u8]> {
    let range = layout.range(r.location, r.offset, r.len)?;
    map.get(usize::try_from(range.start).ok()?..usize::try_from(range.end).ok()?)
}
