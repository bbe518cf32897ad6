//! Zero-copy persistence: making bytes that sit in file-backed memory durable.
//!
//! PASTE's second idea (NSDI'18 §4): received data is kept *in place* in a
//! file-backed pool ([`RxBuf::keep`](crate::RxBuf::keep)) and made durable by writing
//! its cache lines back, then one fence for the whole batch — before the batch's
//! responses leave at the next poll. Because every backend receives into the pool,
//! this works on every backend whose pool is file-backed.
//!
//! [`Persister`] owns the flush method (detected at run time: `clwb`, else
//! `clflushopt`, else `clflush`, or `msync` when asked) and the emulated PM latency.
//! It never allocates after construction.
//!
//! What "durable" means depends on the memory: cache-line write-back reaches the
//! medium only on DAX-mapped persistent memory. On an ordinary file it orders the
//! writes into the page cache, which survives a process crash (SIGKILL) but not a
//! power loss; [`FlushMethod::Msync`] is the choice for power-loss durability on
//! ordinary storage (one `msync` per touched region per fence).

use std::io;
use std::time::{Duration, Instant};

/// Cache line size assumed for write-back (x86_64).
pub const CACHE_LINE: usize = 64;

/// How cache lines are written back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushMethod {
    /// `clwb`: write back, keep the line cached (best).
    Clwb,
    /// `clflushopt`: write back and evict, weakly ordered.
    ClflushOpt,
    /// `clflush`: write back and evict, strongly ordered (oldest).
    Clflush,
    /// `msync(MS_SYNC)` of the touched pages at each fence: durable on ordinary
    /// files, one system call per region per fence.
    Msync,
}

impl FlushMethod {
    /// The best cache-line write-back this CPU has (`cpuid`), `Msync` if none.
    pub fn detect() -> FlushMethod {
        #[cfg(target_arch = "x86_64")]
        {
            // cpuid is safe on x86_64; leaf 7 is read only when the max leaf has it.
            use std::arch::x86_64::{__cpuid, __cpuid_count};
            let max = __cpuid(0).eax;
            let l7 = if max >= 7 { __cpuid_count(7, 0).ebx } else { 0 };
            let l1 = __cpuid(1).edx;
            if l7 & (1 << 24) != 0 {
                return FlushMethod::Clwb;
            }
            if l7 & (1 << 23) != 0 {
                return FlushMethod::ClflushOpt;
            }
            if l1 & (1 << 19) != 0 {
                return FlushMethod::Clflush;
            }
        }
        FlushMethod::Msync
    }

    /// Name for reports.
    pub fn name(self) -> &'static str {
        match self {
            FlushMethod::Clwb => "clwb",
            FlushMethod::ClflushOpt => "clflushopt",
            FlushMethod::Clflush => "clflush",
            FlushMethod::Msync => "msync",
        }
    }
}

/// Most distinct mappings a [`Persister`] tracks for `msync`.
const MAX_REGIONS: usize = 8;

/// Writes back and fences persistent data; see the module docs.
///
/// ```
/// use paste_rt::persist::{FlushMethod, Persister};
/// let mut p = Persister::new(FlushMethod::detect(), 0);
/// let data = vec![7u8; 1024];
/// p.write_back(&data);
/// p.fence().unwrap();
/// assert_eq!(p.fences(), 1);
/// ```
#[derive(Debug)]
pub struct Persister {
    method: FlushMethod,
    pm_latency: Duration,
    /// For `Msync`: page-aligned dirty range per touched mapping.
    dirty: [(usize, usize); MAX_REGIONS],
    dirty_len: usize,
    regions: [(usize, usize); MAX_REGIONS],
    regions_len: usize,
    pending: bool,
    fences: u64,
}

impl Persister {
    /// A persister using `method`, busy-waiting `pm_latency_ns` at every fence that
    /// follows a write-back (the paper's emulation of slow persistent memory).
    pub fn new(method: FlushMethod, pm_latency_ns: u64) -> Persister {
        Persister {
            method,
            pm_latency: Duration::from_nanos(pm_latency_ns),
            dirty: [(0, 0); MAX_REGIONS],
            dirty_len: 0,
            regions: [(0, 0); MAX_REGIONS],
            regions_len: 0,
            pending: false,
            fences: 0,
        }
    }

    /// The method in use.
    pub fn method(&self) -> FlushMethod {
        self.method
    }

    /// Declares a mapping (start, length) whose writes `Msync` must sync; other
    /// methods ignore it. Up to 8 mappings.
    pub fn add_region(&mut self, start: *const u8, len: usize) -> io::Result<()> {
        if self.regions_len == MAX_REGIONS {
            return Err(io::Error::other("persist: too many regions"));
        }
        self.regions[self.regions_len] = (start as usize, start as usize + len);
        self.regions_len += 1;
        Ok(())
    }

    /// Starts writing `data`'s cache lines back (no ordering until [`fence`](Self::fence)).
    pub fn write_back(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.pending = true;
        let start = data.as_ptr() as usize & !(CACHE_LINE - 1);
        let end = data.as_ptr() as usize + data.len();
        match self.method {
            FlushMethod::Msync => self.mark_dirty(data.as_ptr() as usize, end),
            method => {
                let mut line = start;
                while line < end {
                    // SAFETY: `line` lies within a cache line that overlaps `data`,
                    // which is valid memory for the borrow's duration; the write-back
                    // instructions only move that line's contents to memory.
                    unsafe { write_back_line(method, line as *const u8) };
                    line += CACHE_LINE;
                }
            }
        }
    }

    /// Waits until every write-back since the last fence has completed, then the
    /// emulated PM latency; with `Msync`, syncs the touched pages.
    pub fn fence(&mut self) -> io::Result<()> {
        if !self.pending {
            return Ok(());
        }
        self.pending = false;
        self.fences += 1;
        match self.method {
            FlushMethod::Msync => self.sync_dirty()?,
            // SAFETY: sfence has no memory-safety preconditions.
            _ => unsafe { sfence() },
        }
        if !self.pm_latency.is_zero() {
            let until = Instant::now() + self.pm_latency;
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
        Ok(())
    }

    /// Fences issued (those that had something to order).
    pub fn fences(&self) -> u64 {
        self.fences
    }

    fn mark_dirty(&mut self, start: usize, end: usize) {
        let page = 4096;
        let (s, e) = (start & !(page - 1), (end + page - 1) & !(page - 1));
        let region = self.regions[..self.regions_len].iter().position(|&(rs, re)| start >= rs && end <= re);
        let Some(r) = region else { return };
        let (rs, re) = self.regions[r];
        let (s, e) = (s.max(rs & !(page - 1)), e.min((re + page - 1) & !(page - 1)));
        // One dirty range per region: widen it.
        if let Some(d) = self.dirty[..self.dirty_len].iter_mut().find(|d| d.0 < re && d.1 > rs) {
            d.0 = d.0.min(s);
            d.1 = d.1.max(e);
        } else if self.dirty_len < MAX_REGIONS {
            self.dirty[self.dirty_len] = (s, e);
            self.dirty_len += 1;
        }
    }

    fn sync_dirty(&mut self) -> io::Result<()> {
        for &(s, e) in &self.dirty[..self.dirty_len] {
            // SAFETY: (s, e) is a page-aligned range inside a mapping declared with
            // add_region, which the caller keeps mapped; msync only writes it back.
            if unsafe { libc::msync(s as *mut libc::c_void, e - s, libc::MS_SYNC) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        self.dirty_len = 0;
        Ok(())
    }
}

/// Writes one cache line back with `method`.
///
/// # Safety
/// `line` must point into mapped memory.
#[inline]
unsafe fn write_back_line(method: FlushMethod, line: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller guarantees `line` is mapped; the CPU supports the
    // instruction (FlushMethod::detect chose it, or the caller did knowingly).
    unsafe {
        match method {
            FlushMethod::Clwb => std::arch::asm!("clwb [{0}]", in(reg) line, options(nostack, preserves_flags)),
            FlushMethod::ClflushOpt => {
                std::arch::asm!("clflushopt [{0}]", in(reg) line, options(nostack, preserves_flags))
            }
            FlushMethod::Clflush => std::arch::asm!("clflush [{0}]", in(reg) line, options(nostack, preserves_flags)),
            FlushMethod::Msync => {}
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (method, line);
}

/// Orders every earlier write-back before later stores.
///
/// # Safety
/// None beyond running on x86_64 (always true where compiled).
#[inline]
unsafe fn sfence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: sfence is available on every x86_64 CPU.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
    #[cfg(not(target_arch = "x86_64"))]
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_runs_and_counts_fences() {
        let data = vec![1u8; 4096 * 2];
        for method in [FlushMethod::detect(), FlushMethod::Clflush, FlushMethod::Msync] {
            let mut p = Persister::new(method, 0);
            p.fence().unwrap();
            assert_eq!(p.fences(), 0, "nothing written back, nothing to fence");
            p.write_back(&data[100..3000]);
            p.fence().unwrap();
            assert_eq!(p.fences(), 1);
        }
    }

    #[test]
    fn msync_syncs_a_file_mapping() {
        let dir = std::env::temp_dir().join(format!("paste-rt-persist-{}", std::process::id()));
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&dir).unwrap();
        file.set_len(3 * 4096).unwrap();
        // SAFETY: the file is private to this test and not resized while mapped.
        let mut map = unsafe { memmap2::MmapMut::map_mut(&file).unwrap() };
        map[5000..5010].copy_from_slice(b"persistent");
        let mut p = Persister::new(FlushMethod::Msync, 0);
        p.add_region(map.as_ptr(), map.len()).unwrap();
        p.write_back(&map[5000..5010]);
        p.fence().unwrap();
        assert_eq!(&std::fs::read(&dir).unwrap()[5000..5010], b"persistent");
        drop(map);
        let _ = std::fs::remove_file(&dir);
    }
}
