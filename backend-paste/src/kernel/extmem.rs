//! The extmem file of a kernel PASTE port: its layout, its sizing, and the checks
//! before netmap may have it.
//!
//! Owns the file's first page — paste-rt's header: a magic string and the pool layout
//! the file was created with — and the choice of that layout. netmap's memory (the
//! `OPT_EXTMEM` mapping) starts right after the header, and netmap lays out in it the
//! interface objects, the ring objects and the buffers, in that order; buffer `i` lives
//! at a fixed offset as long as the layout does not change, so a file keeps its layout
//! for life (a persistent pool's kept buffers are found by index).
//!
//! Sizing (docs/paste-abi.md §10.1 point 7): on ordinary 4 KiB pages netmap discards every pool
//! object that crosses into a page not physically next to the previous one. So every
//! pool starts page-aligned, buffers (2 KiB) never cross a page, ring objects are a
//! whole number of pages sized to the real slot count (the port's and the NIC's, not
//! netmap's maximum), and there are many more ring objects than the rings need, so
//! that enough survive on a file with scattered pages.
//!
//! Which physical pages back a new file is decided when its pages are first written.
//! The first few hundred pages a process faults in come from the per-CPU free lists,
//! scattered (often in descending order), and netmap lays the ring pool out right at
//! the start of its memory — so on a fresh tmpfs file most ring objects were dropped
//! (measured in the test VM: 4 of the first 64 five-page objects kept on a 16 MiB
//! file, against 91 % over the whole file). Worse, a dropped object before a used
//! one can make netmap compute that ring's offset wrongly (it looks objects up by
//! kernel address, dropped ones included). So a new file is written through once
//! before netmap sees it, in ascending order, right after a few MiB of scratch memory
//! have drained those scattered pages: the file then gets the long ascending runs the
//! page allocator hands out in bulk.
//!
//! hugetlbfs (§10.1 point 8): a new hugetlbfs file works, but reopening one that an
//! earlier port used leaves the process spinning unkillable in the kernel — even a
//! read of the file does. Such a file is refused from its metadata alone, before it is
//! mapped or read.
//!
//! It must never read or write netmap's part of the file (everything after the header).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use paste_rt_core::StartError;

use super::{start_error, ExtmemConfig, Mapping};
use crate::sys::abi::{pst, NmreqPoolsInfo};

/// Bytes of paste-rt's header at the start of an extmem file; netmap's memory follows.
pub const HEADER_LEN: usize = 4096;
const PAGE: u64 = 4096;
const MAGIC: [u8; 16] = *b"paste-rt extmem1";
/// `statfs` type of hugetlbfs.
const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;
/// netmap's buffer size.
pub const BUF_SIZE: u32 = 2048;
/// Interface objects (one per registration, plus spares) of 1 KiB.
const IF_NUM: u32 = 8;
const IF_SIZE: u32 = 1024;
/// Ring objects asked for, per ring the port and the NIC need (most of them survive
/// page discarding on a file with scattered pages).
const RING_SPARE_FACTOR: u32 = 4;
/// Fewest ring objects asked for.
const MIN_RING_OBJECTS: u32 = 32;

/// The NIC's netmap geometry (PORT_INFO_GET).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NicGeometry {
    /// Hardware TX rings.
    pub tx_rings: u16,
    /// Hardware RX rings.
    pub rx_rings: u16,
    /// Host TX rings.
    pub host_tx_rings: u16,
    /// Host RX rings.
    pub host_rx_rings: u16,
    /// Slots per TX ring.
    pub tx_slots: u32,
    /// Slots per RX ring.
    pub rx_slots: u32,
}

/// What the port will take from its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortNeeds {
    /// Rings of the pst port (TX and RX each).
    pub rings: u16,
    /// Slots per pst ring.
    pub slots: u32,
    /// Extra buffers the application asks for.
    pub extra_bufs: u32,
    /// The NIC's geometry, when PORT_INFO_GET gave it.
    pub nic: Option<NicGeometry>,
    /// `dev.netmap.paste_extra`: the kernel's spare buffers per TX ring (pst port and
    /// NIC side).
    pub paste_extra: u32,
}

impl PortNeeds {
    /// Slots of the largest ring (the port's or the NIC's; netmap's maximum when the
    /// NIC's geometry is unknown).
    fn max_slots(&self) -> u32 {
        match self.nic {
            Some(n) => self.slots.max(n.tx_slots).max(n.rx_slots),
            None => self.slots.max(pst::MAX_SLOTS),
        }
    }

    /// Rings the port and the NIC need (NIC and host rings; 64 + 64 assumed unknown).
    fn rings_needed(&self) -> u32 {
        let nic = match self.nic {
            Some(n) => u32::from(n.tx_rings) + u32::from(n.rx_rings) + u32::from(n.host_tx_rings + n.host_rx_rings),
            None => 2 * u32::from(pst::MAX_RINGS) + 2,
        };
        2 * u32::from(self.rings) + nic
    }

    /// Buffers the port, the kernel's spare pools, the NIC's rings and the extra list
    /// take, with a tenth more.
    fn buffers_needed(&self) -> u64 {
        let rings = u64::from(self.rings);
        let pst = 2 * rings * u64::from(self.slots) + rings * u64::from(self.paste_extra);
        let nic = match self.nic {
            Some(n) => {
                let slots = u64::from(n.tx_slots.max(n.rx_slots));
                let nic_rings = u64::from(n.tx_rings + n.rx_rings + n.host_tx_rings + n.host_rx_rings);
                nic_rings * slots + u64::from(n.rx_rings + n.host_rx_rings) * u64::from(self.paste_extra)
            }
            None => 2 * 66 * u64::from(pst::MAX_SLOTS) + 65 * u64::from(self.paste_extra),
        };
        let total = u64::from(self.extra_bufs) + pst + nic + 2;
        total + total / 10
    }
}

/// A file's pool layout (kept in its header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolLayout {
    /// Interface objects.
    pub if_num: u32,
    /// Bytes per interface object.
    pub if_size: u32,
    /// Ring objects.
    pub ring_num: u32,
    /// Bytes per ring object (whole pages).
    pub ring_size: u32,
    /// Buffers.
    pub buf_num: u32,
    /// Bytes per buffer.
    pub buf_size: u32,
}

impl PoolLayout {
    /// The layout for `needs`, with at least `min_bytes` of netmap memory.
    pub fn for_needs(needs: &PortNeeds, min_bytes: u64) -> PoolLayout {
        let ring_size = round_up(256 + 16 * u64::from(needs.max_slots()), PAGE) as u32;
        let ring_num = (RING_SPARE_FACTOR * needs.rings_needed()).max(MIN_RING_OBJECTS);
        let fixed = u64::from(IF_NUM * IF_SIZE) + u64::from(ring_num) * u64::from(ring_size);
        let by_size = min_bytes.saturating_sub(fixed) / u64::from(BUF_SIZE);
        let buf_num = needs.buffers_needed().max(by_size).min(u64::from(u32::MAX / 2)) as u32;
        PoolLayout { if_num: IF_NUM, if_size: IF_SIZE, ring_num, ring_size, buf_num, buf_size: BUF_SIZE }
    }

    /// Bytes of netmap memory the layout takes.
    pub fn bytes(&self) -> u64 {
        u64::from(self.if_num) * u64::from(self.if_size)
            + u64::from(self.ring_num) * u64::from(self.ring_size)
            + u64::from(self.buf_num) * u64::from(self.buf_size)
    }

    /// The `OPT_EXTMEM` pool sizes over `memsize` bytes.
    pub fn pools_info(&self, memsize: u64) -> NmreqPoolsInfo {
        NmreqPoolsInfo {
            nr_memsize: memsize,
            nr_if_pool_objtotal: self.if_num,
            nr_if_pool_objsize: self.if_size,
            nr_ring_pool_objtotal: self.ring_num,
            nr_ring_pool_objsize: self.ring_size,
            nr_buf_pool_objtotal: self.buf_num,
            nr_buf_pool_objsize: self.buf_size,
            ..NmreqPoolsInfo::default()
        }
    }

    /// Why this (recorded) layout cannot serve `needs`, if it cannot.
    pub fn misfit(&self, needs: &PortNeeds) -> Option<String> {
        let want = PoolLayout::for_needs(needs, 0);
        if self.buf_size != BUF_SIZE || self.if_num == 0 {
            return Some(format!("buffers of {} bytes (netmap's are {BUF_SIZE})", self.buf_size));
        }
        if self.ring_size < want.ring_size {
            return Some(format!(
                "ring objects of {} bytes, too small for rings of {} slots ({} bytes)",
                self.ring_size,
                needs.max_slots(),
                want.ring_size
            ));
        }
        if self.ring_num < needs.rings_needed() * 2 {
            return Some(format!("{} ring objects for {} rings", self.ring_num, needs.rings_needed()));
        }
        if u64::from(self.buf_num) < needs.buffers_needed() {
            return Some(format!("{} buffers, {} needed", self.buf_num, needs.buffers_needed()));
        }
        None
    }

    fn encode(&self) -> [u8; 64] {
        let mut h = [0u8; 64];
        h[..16].copy_from_slice(&MAGIC);
        let fields = [self.if_num, self.if_size, self.ring_num, self.ring_size, self.buf_num, self.buf_size];
        for (i, v) in fields.iter().enumerate() {
            h[16 + 4 * i..20 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        h
    }

    fn decode(h: &[u8]) -> Option<PoolLayout> {
        if h.len() < 40 || h[..16] != MAGIC {
            return None;
        }
        let f = |i: usize| u32::from_le_bytes([h[16 + 4 * i], h[17 + 4 * i], h[18 + 4 * i], h[19 + 4 * i]]);
        Some(PoolLayout { if_num: f(0), if_size: f(1), ring_num: f(2), ring_size: f(3), buf_num: f(4), buf_size: f(5) })
    }
}

fn round_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

/// An opened extmem file, mapped whole; netmap's memory starts at [`HEADER_LEN`].
#[derive(Debug)]
pub(crate) struct OpenedExtmem {
    /// The whole file's mapping.
    pub map: Mapping,
    /// Its pool layout.
    pub layout: PoolLayout,
    /// The file was new (or had no header): nothing in it is from an earlier run.
    pub fresh: bool,
    /// The file lives on hugetlbfs.
    pub hugetlbfs: bool,
}

impl OpenedExtmem {
    /// Start of netmap's memory (page-aligned).
    pub fn usrptr(&self) -> *mut u8 {
        self.map.ptr.wrapping_add(HEADER_LEN)
    }

    /// Bytes of netmap's memory.
    pub fn memsize(&self) -> usize {
        self.map.len - HEADER_LEN
    }
}

/// The file system type and block size of `path` (or of its directory when it does
/// not exist yet).
fn fs_of(path: &Path) -> io::Result<(i64, u64)> {
    let probe = if path.exists() { path.to_path_buf() } else { path.parent().unwrap_or(Path::new(".")).to_path_buf() };
    let probe = if probe.as_os_str().is_empty() { Path::new(".").to_path_buf() } else { probe };
    let c = std::ffi::CString::new(probe.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: statfs is plain data; zeroed is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is NUL-terminated and st is writable for the call.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((st.f_type as i64, st.f_bsize as u64))
}

/// Whether `fs_type` (from `statfs`) is hugetlbfs.
pub fn is_hugetlbfs(fs_type: i64) -> bool {
    fs_type == HUGETLBFS_MAGIC
}

/// The refusal of a hugetlbfs file an earlier port used (see the module docs).
pub fn hugetlbfs_reuse_refusal(path: &Path, len: u64) -> String {
    format!(
        "extmem file {} is on hugetlbfs and already holds {len} bytes: an earlier PASTE port used it. \
         Reopening a hugetlbfs extmem file that an earlier port used hangs the kernel (netmap PASTE on \
         Linux 5.10: the process spins unkillable in the kernel, and even a plain read of the file hangs \
         until a reboot), so paste-rt refuses it without touching its contents. Delete it and start with a \
         new file; a pool that must outlive a restart cannot live on hugetlbfs (use tmpfs or a disk file)",
        path.display()
    )
}

/// Opens (creating or growing as needed) and maps the extmem file of `cfg` for a port
/// with `needs` (see the module docs). A recorded layout is kept, or the file is
/// refused when it cannot serve `needs`.
pub(crate) fn open(cfg: &ExtmemConfig, needs: &PortNeeds) -> Result<OpenedExtmem, StartError> {
    let path = &cfg.path;
    let ctx = |what: &str, e: io::Error| {
        start_error(format!("extmem file {}: {what}: {e}", path.display()), e.raw_os_error())
    };
    let (fs_type, block) = fs_of(path).map_err(|e| ctx("statfs", e))?;
    let hugetlbfs = is_hugetlbfs(fs_type);
    if hugetlbfs {
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if len > 0 {
            return Err(start_error(hugetlbfs_reuse_refusal(path, len), Some(libc::EBUSY)));
        }
    }
    let file: File = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| ctx("open", e))?;
    let len = file.metadata().map_err(|e| ctx("metadata", e))?.len();
    let recorded = if hugetlbfs || len < HEADER_LEN as u64 { None } else { read_header(&file) };
    let (layout, fresh) = match recorded {
        Some(l) => {
            if let Some(why) = l.misfit(needs) {
                return Err(start_error(
                    format!(
                        "extmem file {} was laid out for other port settings ({why}); start with the settings it \
                         was created with, or with a new file",
                        path.display()
                    ),
                    Some(libc::EINVAL),
                ));
            }
            (l, false)
        }
        None => (PoolLayout::for_needs(needs, cfg.size), true),
    };
    let page = if hugetlbfs { block.max(PAGE) } else { PAGE };
    let want = round_up(HEADER_LEN as u64 + layout.bytes(), page);
    if len < want {
        file.set_len(want).map_err(|e| {
            let hint = if hugetlbfs { " (are enough hugepages reserved? see /proc/sys/vm/nr_hugepages)" } else { "" };
            ctx(&format!("growing to {want} bytes{hint}"), e)
        })?;
    }
    let size = len.max(want);
    let map = Mapping::map(file.as_raw_fd(), size as usize).map_err(|e| {
        let hint = if hugetlbfs { " (are enough hugepages reserved? see /proc/sys/vm/nr_hugepages)" } else { "" };
        ctx(&format!("mmap of {size} bytes{hint}"), e)
    })?;
    if fresh && !hugetlbfs {
        prefault_in_order(&map);
    }
    if fresh {
        let h = layout.encode();
        // SAFETY: the mapping is at least HEADER_LEN long and the header page is ours
        // alone (netmap's memory starts after it).
        unsafe { std::ptr::copy_nonoverlapping(h.as_ptr(), map.ptr, h.len()) };
    }
    Ok(OpenedExtmem { map, layout, fresh, hugetlbfs })
}

/// Scratch memory faulted in first, to drain the scattered pages of the per-CPU free
/// lists (a few hundred pages at most) before the file's pages are allocated.
const DRAIN_BYTES: usize = 8 << 20;

/// Writes one zero byte per page of a new file's mapping, in ascending order, after
/// faulting in [`DRAIN_BYTES`] of scratch memory (see the module docs).
fn prefault_in_order(map: &Mapping) {
    // SAFETY: a fresh private anonymous mapping; MAP_POPULATE faults it in at once.
    let scratch = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            DRAIN_BYTES,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
            -1,
            0,
        )
    };
    for off in (0..map.len).step_by(PAGE as usize) {
        // SAFETY: off < map.len, inside the live mapping of a new file whose bytes
        // are all zero; writing a zero keeps them so and allocates the page.
        unsafe { std::ptr::write_volatile(map.ptr.add(off), 0) };
    }
    if scratch != libc::MAP_FAILED {
        // SAFETY: the scratch mapping made above, unused since.
        unsafe { libc::munmap(scratch, DRAIN_BYTES) };
    }
}

fn read_header(file: &File) -> Option<PoolLayout> {
    use std::os::unix::fs::FileExt;
    let mut h = [0u8; 64];
    file.read_exact_at(&mut h, 0).ok()?;
    PoolLayout::decode(&h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kit_needs() -> PortNeeds {
        // The QEMU kit: e1000 with 1 + 1 queues of 256 slots and one host ring pair.
        let nic =
            NicGeometry { tx_rings: 1, rx_rings: 1, host_tx_rings: 1, host_rx_rings: 1, tx_slots: 256, rx_slots: 256 };
        PortNeeds { rings: 1, slots: 1024, extra_bufs: 4096, nic: Some(nic), paste_extra: 2048 }
    }

    #[test]
    fn ring_objects_are_whole_pages_sized_to_the_real_slots_and_plentiful() {
        let l = PoolLayout::for_needs(&kit_needs(), 0);
        assert_eq!(l.ring_size, 20480, "256 + 16 x 1024 rounded up to 5 pages, not netmap's 2048-slot maximum");
        assert_eq!(l.ring_num, 32, "4 x 6 rings, at least 32");
        assert_eq!((l.if_num * l.if_size) % 4096, 0);
        assert_eq!((l.ring_num * l.ring_size) % 4096, 0, "the buffer pool starts page-aligned");
        assert_eq!(4096 % l.buf_size, 0, "no buffer crosses a page");
        let bufs = 4096 + 2 * 1024 + 2048 + 4 * 256 + 2 * 2048;
        assert!(l.buf_num as usize >= bufs, "{} buffers for {bufs}", l.buf_num);
        assert!(l.misfit(&kit_needs()).is_none());
        // A bigger NIC ring needs bigger objects.
        let mut big = kit_needs();
        big.nic = big.nic.map(|n| NicGeometry { rx_slots: 4096, ..n });
        assert_eq!(PoolLayout::for_needs(&big, 0).ring_size, 69632);
        assert!(l.misfit(&big).unwrap().contains("too small for rings of 4096 slots"));
        // A size asked for is honoured with more buffers.
        let l = PoolLayout::for_needs(&kit_needs(), 256 << 20);
        assert!(l.bytes() <= 256 << 20 && l.bytes() > 255 << 20, "{}", l.bytes());
    }

    #[test]
    fn the_header_round_trips_and_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ExtmemConfig { path: dir.path().join("pool"), size: 8 << 20, persistent: true };
        let first = open(&cfg, &kit_needs()).unwrap();
        assert!(first.fresh && !first.hugetlbfs);
        assert_eq!(first.usrptr() as usize % 4096, 0);
        assert_eq!(first.memsize() as u64, round_up(first.layout.bytes(), 4096));
        let layout = first.layout;
        drop(first);
        // Another run with more extra buffers asked for: the file keeps its layout.
        let again = open(&cfg, &PortNeeds { extra_bufs: 100, ..kit_needs() }).unwrap();
        assert!(!again.fresh);
        assert_eq!(again.layout, layout);
        drop(again);
        // Settings the layout cannot serve are refused, not silently re-laid out.
        let e = open(&cfg, &PortNeeds { slots: 2048, ..kit_needs() }).unwrap_err();
        assert!(e.reason.contains("laid out for other port settings"), "{e}");
    }

    #[test]
    fn a_used_hugetlbfs_file_is_refused_by_its_metadata() {
        let text = hugetlbfs_reuse_refusal(Path::new("/mnt/huge/pool"), 4 << 20);
        for needle in ["hugetlbfs", "earlier PASTE port", "hangs the kernel", "Delete it", "/mnt/huge/pool"] {
            assert!(text.contains(needle), "{needle:?} missing from {text}");
        }
        assert!(is_hugetlbfs(0x9584_58f6));
        let (tmp, _) = fs_of(Path::new("/tmp/no-such-file-here")).unwrap();
        assert!(!is_hugetlbfs(tmp));
    }
}
