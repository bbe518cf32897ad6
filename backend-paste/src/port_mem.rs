//! Memory of an emulated PASTE port, laid out exactly like a kernel `pst:0` port.
//!
//! Owns the mapping (anonymous, or a shared file mapping for persistence) and writes
//! into it what the kernel writes at REGISTER: the `netmap_if` with its `ring_ofs[]`
//! (NIC TX, host TX, NIC RX, host RX; host rings present but unbound, offset 0), the
//! ring headers (`num_slots`, `nr_buf_size`, `buf_ofs`, `offset_mask` 0xff, generic
//! offset G in every slot's `ptr`), the slots with their buffers, and the extra-buffer
//! list linked at `ni_bufs_head`. Buffers 0 and 1 are reserved, as in netmap. The
//! remaining buffers are the emulated kernel's spares
//! ([`kernel_buffers`](PortMemory::kernel_buffers)).
//!
//! Like extmem, a file keeps buffer *contents* across runs but not allocation state:
//! every open lays the headers out again. It must never interpret ring contents after
//! layout: that is the ring driver's and the emulated kernel's job.

use std::fs::OpenOptions;
use std::io;
use std::mem::offset_of;
use std::path::PathBuf;

use crate::sys::abi::{
    pst, NetmapIf, NetmapRing, NetmapSlot, FIRST_DATA_BUF, NETMAP_API, NI_PRIV_MEM, RING_DIR_RX, RING_DIR_TX,
};
use crate::sys::addr::{self, PortRegion};

const PAGE: usize = 4096;

/// Geometry of an emulated port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmuPortConfig {
    /// NIC TX rings (1..=64).
    pub tx_rings: u16,
    /// NIC RX rings (1..=64).
    pub rx_rings: u16,
    /// Slots per ring (2..=2048).
    pub slots: u32,
    /// Extra buffers handed to the application through `ni_bufs_head`.
    pub extra_bufs: u32,
    /// Spare buffers of the emulated kernel (received data waits in them; TX slots get
    /// them back in exchange), like PASTE's `paste_extra`.
    pub kernel_bufs: u32,
    /// Bytes per buffer.
    pub buf_size: u32,
    /// The generic offset written in every slot (the kernel's `sizeof(struct nmcb)`).
    pub generic_offset: u8,
    /// Back the port with this file (buffer contents persist) instead of anonymous memory.
    pub file: Option<PathBuf>,
    /// Buffers a previous run kept (zero-copy persistence): laid out nowhere — not in
    /// a ring slot, on the extra list or among the kernel's spares — so their contents
    /// survive; they count against `extra_bufs`.
    pub kept: Vec<u32>,
}

impl Default for EmuPortConfig {
    fn default() -> Self {
        EmuPortConfig {
            tx_rings: 1,
            rx_rings: 1,
            slots: pst::DEFAULT_SLOTS,
            extra_bufs: 1024,
            kernel_bufs: 2048,
            buf_size: 2048,
            generic_offset: 64,
            file: None,
            kept: Vec::new(),
        }
    }
}

/// Byte offsets and index ranges of an emulated port's layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmuLayout {
    /// Offset of each NIC TX ring, then each NIC RX ring.
    pub ring_offsets: Vec<usize>,
    /// Offset of buffer 0.
    pub buf_base: usize,
    /// Total buffers, reserved ones included.
    pub buf_count: u32,
    /// Total bytes.
    pub len: usize,
}

/// The mapped memory of an emulated port (see the module docs).
pub struct PortMemory {
    base: *mut u8,
    layout: EmuLayout,
    cfg: EmuPortConfig,
    _map: memmap2::MmapMut,
}

// SAFETY: the raw `base` points into `_map`, which is Send + Sync; `&PortMemory`
// hands out only addresses and layout, and every write through them is an unsafe
// operation under its caller's contract. Needed since a pool's memory guard may drop
// on whichever thread drops the last `Bytes` lent from it.
unsafe impl Send for PortMemory {}
// SAFETY: as above.
unsafe impl Sync for PortMemory {}

impl std::fmt::Debug for PortMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortMemory").field("layout", &self.layout).field("file", &self.cfg.file).finish()
    }
}

fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("emulated PASTE port: {msg}"))
}

impl EmuPortConfig {
    /// Computes the layout, refusing geometries a kernel pst port would refuse.
    pub fn layout(&self) -> io::Result<EmuLayout> {
        let rings_ok = |n: u16| (1..=pst::MAX_RINGS).contains(&n);
        if !rings_ok(self.tx_rings) || !rings_ok(self.rx_rings) {
            return Err(invalid(format!("{} TX / {} RX rings (1..=64 each)", self.tx_rings, self.rx_rings)));
        }
        if !(2..=pst::MAX_SLOTS).contains(&self.slots) {
            return Err(invalid(format!("{} slots per ring (2..=2048)", self.slots)));
        }
        let min_buf = self.generic_offset as u32 + pst::TX_DOFF as u32 + 1;
        if self.buf_size < min_buf.max(64) || self.buf_size > u16::MAX as u32 || self.buf_size % 64 != 0 {
            return Err(invalid(format!("buffer size {} (a multiple of 64 in {min_buf}..=65535)", self.buf_size)));
        }
        let nrings = self.tx_rings as usize + self.rx_rings as usize;
        let if_len = size_of::<NetmapIf>() + 8 * (nrings + 2);
        let ring_len = round_up(size_of::<NetmapRing>() + self.slots as usize * size_of::<NetmapSlot>(), PAGE);
        let first_ring = round_up(if_len, PAGE);
        let ring_offsets: Vec<usize> = (0..nrings).map(|i| first_ring + i * ring_len).collect();
        let buf_base = first_ring + nrings * ring_len;
        let buf_count = FIRST_DATA_BUF as u64
            + nrings as u64 * self.slots as u64
            + self.extra_bufs as u64
            + self.kernel_bufs as u64;
        if buf_count > u32::MAX as u64 / 2 {
            return Err(invalid(format!("{buf_count} buffers")));
        }
        if self.kept.len() > self.extra_bufs as usize
            || self.kept.iter().any(|&k| k < FIRST_DATA_BUF || k as u64 >= buf_count)
        {
            return Err(invalid(format!(
                "{} kept buffers do not fit this port's {} extra buffers (indices {FIRST_DATA_BUF}..{buf_count})",
                self.kept.len(),
                self.extra_bufs
            )));
        }
        let len = buf_base + buf_count as usize * self.buf_size as usize;
        Ok(EmuLayout { ring_offsets, buf_base, buf_count: buf_count as u32, len })
    }
}

impl PortMemory {
    /// Maps the memory and lays the port out (see the module docs).
    pub fn new(cfg: &EmuPortConfig) -> io::Result<PortMemory> {
        let layout = cfg.layout()?;
        let mut map = match &cfg.file {
            None => memmap2::MmapMut::map_anon(layout.len)?,
            Some(path) => {
                let ctx =
                    |e: io::Error| io::Error::new(e.kind(), format!("emulated PASTE port: {}: {e}", path.display()));
                let file =
                    OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(ctx)?;
                if file.metadata().map_err(ctx)?.len() < layout.len as u64 {
                    file.set_len(layout.len as u64).map_err(ctx)?;
                }
                // SAFETY: a shared mapping of a file this process opened; paste-rt is
                // its only writer while the port lives (documented on `file`), and the
                // mapping is reached only through raw pointers checked against its length.
                unsafe { memmap2::MmapOptions::new().len(layout.len).map_mut(&file).map_err(ctx)? }
            }
        };
        let base = map.as_mut_ptr();
        let mut cfg = cfg.clone();
        cfg.kept.sort_unstable();
        cfg.kept.dedup();
        let mem = PortMemory { base, layout, cfg, _map: map };
        mem.lay_out();
        Ok(mem)
    }

    /// The region, as the ring driver and the emulated kernel view it.
    pub fn region(&self) -> PortRegion {
        PortRegion { base: self.base, len: self.layout.len, nifp_offset: 0 }
    }

    /// The layout.
    pub fn layout(&self) -> &EmuLayout {
        &self.layout
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &EmuPortConfig {
        &self.cfg
    }

    /// Data buffer indices in layout order, kept ones left out.
    fn layout_order(&self) -> impl Iterator<Item = u32> + '_ {
        (FIRST_DATA_BUF..self.layout.buf_count).filter(|i| self.cfg.kept.binary_search(i).is_err())
    }

    fn ring_slot_count(&self) -> usize {
        (self.cfg.tx_rings as usize + self.cfg.rx_rings as usize) * self.cfg.slots as usize
    }

    /// Indices that start out in ring slots (in slot order, ring by ring).
    pub fn ring_buffers(&self) -> Vec<u32> {
        self.layout_order().take(self.ring_slot_count()).collect()
    }

    /// Indices that start out on the extra-buffer list (in list order).
    pub fn extra_buffers(&self) -> Vec<u32> {
        let extras = self.cfg.extra_bufs as usize - self.cfg.kept.len();
        self.layout_order().skip(self.ring_slot_count()).take(extras).collect()
    }

    /// Indices that start out as the emulated kernel's spares.
    pub fn kernel_buffers(&self) -> Vec<u32> {
        let skip = self.ring_slot_count() + self.cfg.extra_bufs as usize - self.cfg.kept.len();
        self.layout_order().skip(skip).take(self.cfg.kernel_bufs as usize).collect()
    }

    /// Address of buffer `idx`, or `None` past the end.
    pub fn buf_ptr(&self, idx: u32) -> Option<*mut u8> {
        (idx < self.layout.buf_count).then(|| {
            // SAFETY: idx < buf_count, so the buffer lies inside the mapping.
            unsafe { self.base.add(self.layout.buf_base + idx as usize * self.cfg.buf_size as usize) }
        })
    }

    fn nifp(&self) -> *mut NetmapIf {
        // SAFETY: the netmap_if sits at offset 0 of the mapping.
        unsafe { addr::netmap_if(self.base, 0) }
    }

    /// The extra-buffer list currently linked at `ni_bufs_head` (stops at the first
    /// invalid or repeated index).
    pub fn extra_list(&self) -> Vec<u32> {
        let mut out = Vec::new();
        let mut seen = vec![false; self.layout.buf_count as usize];
        // SAFETY: the netmap_if lies at offset 0 of the mapping.
        let mut idx = unsafe { addr::read_if_u32(self.nifp(), offset_of!(NetmapIf, ni_bufs_head)) };
        while idx >= FIRST_DATA_BUF && idx < self.layout.buf_count && !seen[idx as usize] {
            seen[idx as usize] = true;
            out.push(idx);
            let p = self.buf_ptr(idx).unwrap_or(std::ptr::null_mut());
            // SAFETY: idx < buf_count (loop condition), so p is a valid buffer address.
            idx = unsafe { std::ptr::read_unaligned(p.cast::<u32>()) };
        }
        out
    }

    fn lay_out(&self) {
        let cfg = &self.cfg;
        let nifp = self.nifp();
        let (ntx, nrx) = (cfg.tx_rings as usize, cfg.rx_rings as usize);
        // SAFETY: every write below lands inside the mapping: the netmap_if and its
        // ring_ofs array fit before the first ring (layout()), ring headers and slots
        // fit in their ring objects, buffers lie below buf_count.
        unsafe {
            let name = b"pst:0";
            let np = nifp.cast::<u8>();
            std::ptr::write_bytes(np, 0, size_of::<NetmapIf>());
            std::ptr::copy_nonoverlapping(name.as_ptr(), np, name.len());
            addr::write_if_u32(nifp, offset_of!(NetmapIf, ni_version), NETMAP_API as u32);
            addr::write_if_u32(nifp, offset_of!(NetmapIf, ni_flags), NI_PRIV_MEM);
            addr::write_if_u32(nifp, offset_of!(NetmapIf, ni_tx_rings), ntx as u32);
            addr::write_if_u32(nifp, offset_of!(NetmapIf, ni_rx_rings), nrx as u32);
            addr::write_if_u32(nifp, offset_of!(NetmapIf, ni_host_tx_rings), 1);
            addr::write_if_u32(nifp, offset_of!(NetmapIf, ni_host_rx_rings), 1);
            // ring_ofs order: NIC TX, host TX, NIC RX, host RX. Host rings are unbound.
            let entries = (0..ntx).map(Some).chain([None]).chain((ntx..ntx + nrx).map(Some)).chain([None]);
            for (slot, ring) in entries.enumerate() {
                let ofs = ring.map_or(0, |r| self.layout.ring_offsets[r] as i64);
                addr::set_ring_ofs(nifp, slot, ofs);
            }
            let mut ring_bufs = self.ring_buffers().into_iter();
            for (r, &ofs) in self.layout.ring_offsets.iter().enumerate() {
                let is_tx = r < ntx;
                let ring = self.base.add(ofs).cast::<NetmapRing>();
                std::ptr::write_bytes(ring.cast::<u8>(), 0, size_of::<NetmapRing>());
                let hdr = NetmapRing {
                    buf_ofs: self.layout.buf_base as i64 - ofs as i64,
                    num_slots: cfg.slots,
                    nr_buf_size: cfg.buf_size,
                    ringid: if is_tx { r as u16 } else { (r - ntx) as u16 },
                    dir: if is_tx { RING_DIR_TX } else { RING_DIR_RX },
                    head: 0,
                    cur: 0,
                    tail: if is_tx { cfg.slots - 1 } else { 0 },
                    flags: 0,
                    pad0: 0,
                    ts: Default::default(),
                    offset_mask: 0xff,
                    buf_align: 0,
                    pad1: [0; 7],
                    sem: crate::sys::abi::RingSem([0; 128]),
                };
                // The ring object is page-aligned, so the 128-byte alignment holds.
                ring.write(hdr);
                let slots = ring.cast::<u8>().add(size_of::<NetmapRing>()).cast::<NetmapSlot>();
                for i in 0..cfg.slots as usize {
                    slots.add(i).write(NetmapSlot {
                        buf_idx: ring_bufs.next().unwrap_or(0),
                        len: 0,
                        flags: 0,
                        ptr: cfg.generic_offset as u64,
                    });
                }
            }
            let extras = self.extra_buffers();
            for (i, &idx) in extras.iter().enumerate() {
                let next = extras.get(i + 1).copied().unwrap_or(0);
                if let Some(p) = self.buf_ptr(idx) {
                    std::ptr::write_unaligned(p.cast::<u32>(), next);
                }
            }
            let head = extras.first().copied().unwrap_or(0);
            addr::write_if_u32(nifp, offset_of!(NetmapIf, ni_bufs_head), head);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::addr::RingPtr;
    use crate::sys::slot;

    fn small() -> EmuPortConfig {
        EmuPortConfig { tx_rings: 2, rx_rings: 1, slots: 8, extra_bufs: 5, kernel_bufs: 6, ..EmuPortConfig::default() }
    }

    #[test]
    fn lays_out_like_a_kernel_port() {
        let mem = PortMemory::new(&small()).unwrap();
        let region = mem.region();
        let nifp = mem.nifp();
        // SAFETY: the mapping is alive for the whole test; offsets come from the layout.
        unsafe {
            assert_eq!(addr::read_if_u32(nifp, offset_of!(NetmapIf, ni_tx_rings)), 2);
            assert_eq!(addr::read_if_u32(nifp, offset_of!(NetmapIf, ni_version)), 14);
            assert_ne!(addr::ring_ofs(nifp, 0), 0);
            assert_ne!(addr::ring_ofs(nifp, 1), 0);
            assert_eq!(addr::ring_ofs(nifp, 2), 0, "host TX ring unbound");
            assert_ne!(addr::ring_ofs(nifp, 3), 0, "NIC RX ring after host TX");
            assert_eq!(addr::ring_ofs(nifp, 4), 0, "host RX ring unbound");
            let rx = RingPtr::new(&region, addr::rxring(nifp, 0)).unwrap();
            let tx1 = RingPtr::new(&region, addr::txring(nifp, 1)).unwrap();
            assert_eq!(rx.as_ptr() as usize - region.base as usize, mem.layout().ring_offsets[2]);
            assert_eq!((rx.num_slots(), rx.buf_size(), rx.offset_mask()), (8, 2048, 0xff));
            assert_eq!((tx1.head(), tx1.cur(), tx1.tail()), (0, 0, 7));
            assert_eq!((rx.head(), rx.tail()), (0, 0));
            assert_eq!(rx.buf_base(), tx1.buf_base(), "every ring reaches the same buffer 0");
            assert_eq!(rx.buf_base() as usize - region.base as usize, mem.layout().buf_base);
            assert_eq!(tx1.slot(0).buf_idx, 10, "ring 0 holds 2..10");
            assert_eq!(rx.slot(7).buf_idx, 25);
            for i in 0..8 {
                assert_eq!(slot::generic_offset(rx.slot(i).ptr, 0xff), 64);
            }
            let p = rx.buf(25);
            assert_eq!(addr::netmap_buf_idx(rx.as_ptr(), rx.buf_ofs(), rx.buf_size(), p.add(100)), 25);
        }
        assert_eq!(mem.extra_list(), vec![26, 27, 28, 29, 30]);
        assert_eq!(mem.kernel_buffers(), (31..37).collect::<Vec<u32>>());
        assert_eq!(mem.layout().buf_count, 37);
    }

    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot map a file")]
    fn file_backed_port_keeps_buffer_contents() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = EmuPortConfig { file: Some(dir.path().join("port")), ..small() };
        {
            let mem = PortMemory::new(&cfg).unwrap();
            let p = mem.buf_ptr(33).unwrap();
            // SAFETY: buffer 33 lies in the mapping; bytes past the generic offset.
            unsafe { std::ptr::copy_nonoverlapping(b"durable".as_ptr(), p.add(130), 7) };
        }
        let mem = PortMemory::new(&cfg).unwrap();
        let p = mem.buf_ptr(33).unwrap();
        // SAFETY: as above.
        let got = unsafe { std::slice::from_raw_parts(p.add(130), 7) };
        assert_eq!(got, b"durable");
        assert_eq!(mem.extra_list().len(), 5, "headers laid out again");
    }

    #[test]
    fn refuses_impossible_geometry() {
        assert!(EmuPortConfig { slots: 4096, ..small() }.layout().is_err());
        assert!(EmuPortConfig { rx_rings: 0, ..small() }.layout().is_err());
        assert!(EmuPortConfig { buf_size: 128, ..small() }.layout().is_err());
    }
}
