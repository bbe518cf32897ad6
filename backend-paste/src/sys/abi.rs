//! The netmap v14 + PASTE ABI as plain `#[repr(C)]` data (docs/paste-abi.md §1.2, §1.5, §3).
//!
//! Owns the struct layouts and numeric constants, each checked at compile time
//! against the sizes and offsets measured on the paste-branch headers (x86_64 Linux).
//! It must never do I/O or hold state: it is the vocabulary the rest of `sys` and the
//! ring driver share with the kernel.

use std::mem::{offset_of, size_of};

/// `NETMAP_API`: the request version paste-rt speaks.
pub const NETMAP_API: u16 = 14;
/// `NETMAP_REQ_MAXSIZE`: a whole request, options included, must fit in this.
pub const NETMAP_REQ_MAXSIZE: usize = 4096;
/// Length of `nmreq_header.nr_name`, including the terminating NUL.
pub const NETMAP_REQ_IFNAMSIZ: usize = 64;

/// `nr_reqtype` values (the C enum starts at 1).
pub mod reqtype {
    /// `NETMAP_REQ_REGISTER`.
    pub const REGISTER: u16 = 1;
    /// `NETMAP_REQ_PORT_INFO_GET`.
    pub const PORT_INFO_GET: u16 = 2;
    /// `NETMAP_REQ_VALE_ATTACH`.
    pub const VALE_ATTACH: u16 = 3;
    /// `NETMAP_REQ_VALE_DETACH`.
    pub const VALE_DETACH: u16 = 4;
    /// `NETMAP_REQ_VALE_LIST`.
    pub const VALE_LIST: u16 = 5;
    /// `NETMAP_REQ_PORT_HDR_SET`.
    pub const PORT_HDR_SET: u16 = 6;
    /// `NETMAP_REQ_PORT_HDR_GET`.
    pub const PORT_HDR_GET: u16 = 7;
    /// `NETMAP_REQ_VALE_NEWIF`.
    pub const VALE_NEWIF: u16 = 8;
    /// `NETMAP_REQ_VALE_DELIF`.
    pub const VALE_DELIF: u16 = 9;
    /// `NETMAP_REQ_VALE_POLLING_ENABLE`.
    pub const VALE_POLLING_ENABLE: u16 = 10;
    /// `NETMAP_REQ_VALE_POLLING_DISABLE`.
    pub const VALE_POLLING_DISABLE: u16 = 11;
    /// `NETMAP_REQ_POOLS_INFO_GET`.
    pub const POOLS_INFO_GET: u16 = 12;
    /// `NETMAP_REQ_SYNC_KLOOP_START`.
    pub const SYNC_KLOOP_START: u16 = 13;
    /// `NETMAP_REQ_SYNC_KLOOP_STOP`.
    pub const SYNC_KLOOP_STOP: u16 = 14;
    /// `NETMAP_REQ_CSB_ENABLE`.
    pub const CSB_ENABLE: u16 = 15;
    /// `NETMAP_REQ_PST_ATTACH`: attach a NIC to a pst datapath.
    pub const PST_ATTACH: u16 = 16;
    /// `NETMAP_REQ_PST_DETACH`.
    pub const PST_DETACH: u16 = 17;
    /// `NETMAP_REQ_PST_FD_REG`: register an accepted TCP socket with the pst port.
    pub const PST_FD_REG: u16 = 18;
}

/// `nro_reqtype` values of request options.
pub mod opttype {
    /// `NETMAP_REQ_OPT_EXTMEM`: the port's memory is a user mapping.
    pub const EXTMEM: u32 = 1;
    /// `NETMAP_REQ_OPT_SYNC_KLOOP_EVENTFDS`.
    pub const SYNC_KLOOP_EVENTFDS: u32 = 2;
    /// `NETMAP_REQ_OPT_CSB`.
    pub const CSB: u32 = 3;
    /// `NETMAP_REQ_OPT_SYNC_KLOOP_MODE`.
    pub const SYNC_KLOOP_MODE: u32 = 4;
    /// `NETMAP_REQ_OPT_OFFSETS` (PASTE does not need it).
    pub const OFFSETS: u32 = 5;
}

/// `nr_mode` values of `nmreq_register`.
pub mod mode {
    /// `NR_REG_DEFAULT`.
    pub const DEFAULT: u32 = 0;
    /// `NR_REG_ALL_NIC`: every hardware ring.
    pub const ALL_NIC: u32 = 1;
    /// `NR_REG_SW`: the host rings only.
    pub const SW: u32 = 2;
    /// `NR_REG_NIC_SW`: hardware and host rings (how a NIC joins a pst datapath).
    pub const NIC_SW: u32 = 3;
    /// `NR_REG_ONE_NIC`: one hardware ring pair, chosen by `nr_ringid`.
    pub const ONE_NIC: u32 = 4;
    /// `NR_REG_PIPE_MASTER`.
    pub const PIPE_MASTER: u32 = 5;
    /// `NR_REG_PIPE_SLAVE`.
    pub const PIPE_SLAVE: u32 = 6;
    /// `NR_REG_NULL`.
    pub const NULL: u32 = 7;
    /// `NR_REG_ONE_SW`.
    pub const ONE_SW: u32 = 8;
}

/// `nr_flags` bits of `nmreq_register`.
pub mod regflags {
    /// `NR_MONITOR_TX`.
    pub const MONITOR_TX: u64 = 0x100;
    /// `NR_MONITOR_RX`.
    pub const MONITOR_RX: u64 = 0x200;
    /// `NR_ZCOPY_MON`.
    pub const ZCOPY_MON: u64 = 0x400;
    /// `NR_EXCLUSIVE`.
    pub const EXCLUSIVE: u64 = 0x800;
    /// `NR_RX_RINGS_ONLY`.
    pub const RX_RINGS_ONLY: u64 = 0x2000;
    /// `NR_TX_RINGS_ONLY`.
    pub const TX_RINGS_ONLY: u64 = 0x4000;
    /// `NR_ACCEPT_VNET_HDR`.
    pub const ACCEPT_VNET_HDR: u64 = 0x8000;
    /// `NR_DO_RX_POLL`.
    pub const DO_RX_POLL: u64 = 0x10000;
    /// `NR_NO_TX_POLL`: `poll()` does not run txsync.
    pub const NO_TX_POLL: u64 = 0x20000;
}

/// `netmap_slot.flags` bits.
pub mod slotflags {
    /// `NS_BUF_CHANGED`: the slot's `buf_idx` was replaced.
    pub const BUF_CHANGED: u16 = 0x1;
    /// `NS_REPORT`.
    pub const REPORT: u16 = 0x2;
    /// `NS_FORWARD`.
    pub const FORWARD: u16 = 0x4;
    /// `NS_NO_LEARN`.
    pub const NO_LEARN: u16 = 0x8;
    /// `NS_INDIRECT`.
    pub const INDIRECT: u16 = 0x10;
    /// `NS_MOREFRAG`.
    pub const MOREFRAG: u16 = 0x20;
    /// `NS_TXMON`.
    pub const TXMON: u16 = 0x40;
    /// `NS_CSUM`: PASTE/i40e kernel-internal (micchie branch only).
    pub const CSUM: u16 = 0x80;
    /// `NS_PORT_SHIFT` (VALE only).
    pub const PORT_SHIFT: u32 = 8;
}

/// `netmap_if.ni_flags`: `NI_PRIV_MEM`.
pub const NI_PRIV_MEM: u32 = 1;
/// `netmap_ring.dir` of a TX ring.
pub const RING_DIR_TX: u16 = 0;
/// `netmap_ring.dir` of an RX ring.
pub const RING_DIR_RX: u16 = 1;
/// Buffer indices 0 and 1 are netmap's reserved "fake" buffers, never data buffers.
pub const FIRST_DATA_BUF: u32 = 2;

/// PASTE limits (`netmap_paste.h`).
pub mod pst {
    /// `NM_PST_NAME`: the prefix of pst port names.
    pub const NAME_PREFIX: &str = "pst";
    /// The app's own virtual port (phttpd's `PST_NAME`).
    pub const APP_PORT: &str = "pst:0";
    /// `NM_PST_MAXRINGS`.
    pub const MAX_RINGS: u16 = 64;
    /// `NM_PST_RINGSIZE`: the default slot count.
    pub const DEFAULT_SLOTS: u32 = 1024;
    /// `NM_PST_MAXSLOTS`.
    pub const MAX_SLOTS: u32 = 2048;
    /// The kernel accepts fds up to 65535, but its TX table has 65535 entries: keep fds at
    /// or below this.
    pub const MAX_FD: i32 = 65534;
    /// `IPV4TCP_HDRLEN`: the TX data offset the man page and nmlib use.
    pub const TX_DOFF: u16 = 66;
    /// The smallest generic offset (`sizeof(struct nmcb)`) seen on Linux x86_64.
    pub const MIN_GENERIC_OFFSET: u64 = 64;
}

/// `struct nmreq_header`: every `NIOCCTRL` request starts with it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NmreqHeader {
    /// API version, [`NETMAP_API`].
    pub nr_version: u16,
    /// One of [`reqtype`].
    pub nr_reqtype: u16,
    /// Must be 0.
    pub nr_reserved: u32,
    /// Port name, NUL-terminated.
    pub nr_name: [u8; NETMAP_REQ_IFNAMSIZ],
    /// User pointer to the first [`NmreqOption`], or 0.
    pub nr_options: u64,
    /// User pointer to the request body.
    pub nr_body: u64,
}

impl Default for NmreqHeader {
    fn default() -> Self {
        NmreqHeader {
            nr_version: 0,
            nr_reqtype: 0,
            nr_reserved: 0,
            nr_name: [0; NETMAP_REQ_IFNAMSIZ],
            nr_options: 0,
            nr_body: 0,
        }
    }
}

/// `struct nmreq_register`: the body of REGISTER (and, inside
/// [`NmreqValeAttach`], of PST_ATTACH).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NmreqRegister {
    /// Out: offset of the `netmap_if` in the shared region.
    pub nr_offset: u64,
    /// Out: size of the shared region.
    pub nr_memsize: u64,
    /// In/out: slots per TX ring.
    pub nr_tx_slots: u32,
    /// In/out: slots per RX ring.
    pub nr_rx_slots: u32,
    /// In/out: TX rings.
    pub nr_tx_rings: u16,
    /// In/out: RX rings.
    pub nr_rx_rings: u16,
    /// In/out: host TX rings.
    pub nr_host_tx_rings: u16,
    /// In/out: host RX rings.
    pub nr_host_rx_rings: u16,
    /// In/out: memory allocator id.
    pub nr_mem_id: u16,
    /// Ring id for `ONE_NIC`/`ONE_SW`.
    pub nr_ringid: u16,
    /// One of [`mode`].
    pub nr_mode: u32,
    /// In/out: extra buffers wanted / obtained.
    pub nr_extra_bufs: u32,
    /// Padding, zero.
    pub nr_pad: u32,
    /// [`regflags`] bits.
    pub nr_flags: u64,
}

/// `struct nmreq_vale_attach`: the body of PST_ATTACH.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NmreqValeAttach {
    /// Registration parameters (mode and mem id matter for PASTE).
    pub reg: NmreqRegister,
    /// Out: port index in the datapath.
    pub port_index: u32,
    /// Padding, zero.
    pub pad1: u32,
}

/// `struct nmreq_port_info_get`: the body of PORT_INFO_GET (a port's geometry,
/// without registering it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NmreqPortInfoGet {
    /// Out: shared memory size.
    pub nr_memsize: u64,
    /// Out: slots per TX ring.
    pub nr_tx_slots: u32,
    /// Out: slots per RX ring.
    pub nr_rx_slots: u32,
    /// Out: TX rings.
    pub nr_tx_rings: u16,
    /// Out: RX rings.
    pub nr_rx_rings: u16,
    /// Out: host TX rings.
    pub nr_host_tx_rings: u16,
    /// Out: host RX rings.
    pub nr_host_rx_rings: u16,
    /// In/out: allocator id.
    pub nr_mem_id: u16,
    /// Padding, zero.
    pub pad: [u16; 3],
}

/// `struct nmreq_vale_detach`: the body of PST_DETACH.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NmreqValeDetach {
    /// Out: the port index that was detached.
    pub port_index: u32,
    /// Padding, zero.
    pub pad1: u32,
}

/// `struct nmreq_pst_fd_reg`: the body of PST_FD_REG.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NmreqPstFdReg {
    /// The accepted socket.
    pub fd: i32,
    /// Padding, zero.
    pub pad1: u32,
}

/// `struct nmreq_option`: the header of every request option.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NmreqOption {
    /// User pointer to the next option, or 0.
    pub nro_next: u64,
    /// One of [`opttype`].
    pub nro_reqtype: u32,
    /// Out: 0 or an errno.
    pub nro_status: u32,
    /// 0 for fixed-size options.
    pub nro_size: u64,
}

/// `struct nmreq_pools_info`: sizes of the three pools of an allocator.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NmreqPoolsInfo {
    /// Total size.
    pub nr_memsize: u64,
    /// Allocator id.
    pub nr_mem_id: u16,
    /// Padding, zero.
    pub nr_pad1: [u16; 3],
    /// Offset of the interface pool.
    pub nr_if_pool_offset: u64,
    /// Interface objects.
    pub nr_if_pool_objtotal: u32,
    /// Bytes per interface object.
    pub nr_if_pool_objsize: u32,
    /// Offset of the ring pool.
    pub nr_ring_pool_offset: u64,
    /// Ring objects.
    pub nr_ring_pool_objtotal: u32,
    /// Bytes per ring object.
    pub nr_ring_pool_objsize: u32,
    /// Offset of the buffer pool.
    pub nr_buf_pool_offset: u64,
    /// Buffers.
    pub nr_buf_pool_objtotal: u32,
    /// Bytes per buffer.
    pub nr_buf_pool_objsize: u32,
}

/// `struct nmreq_opt_extmem`: REGISTER option placing the port's memory in a user
/// mapping (a file, for persistence).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NmreqOptExtmem {
    /// Option header (`nro_reqtype` = [`opttype::EXTMEM`]).
    pub nro_opt: NmreqOption,
    /// Page-aligned user mapping.
    pub nro_usrptr: u64,
    /// Pool sizes; zero fields take the kernel's minimum.
    pub nro_info: NmreqPoolsInfo,
}

/// `struct netmap_if`: the per-registration interface object in the shared region.
/// `ring_ofs[]` (one `i64` per ring: NIC TX, host TX, NIC RX, host RX) follows it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NetmapIf {
    /// Interface name.
    pub ni_name: [u8; 16],
    /// API version.
    pub ni_version: u32,
    /// [`NI_PRIV_MEM`].
    pub ni_flags: u32,
    /// NIC TX rings.
    pub ni_tx_rings: u32,
    /// NIC RX rings.
    pub ni_rx_rings: u32,
    /// Head of the extra-buffer list (0 = empty).
    pub ni_bufs_head: u32,
    /// Host TX rings.
    pub ni_host_tx_rings: u32,
    /// Host RX rings.
    pub ni_host_rx_rings: u32,
    /// Spare.
    pub ni_spare1: [u32; 3],
    /// Start of the ring offset array.
    pub ring_ofs: [i64; 0],
}

/// `struct timeval` as embedded in `netmap_ring` (x86_64: two 8-byte fields).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RingTimeval {
    /// Seconds.
    pub tv_sec: i64,
    /// Microseconds.
    pub tv_usec: i64,
}

/// The 128-byte-aligned semaphore area of `netmap_ring`.
#[repr(C, align(128))]
#[derive(Clone, Copy, Debug)]
pub struct RingSem(pub [u8; 128]);

/// `struct netmap_ring`: a ring header in the shared region; slots start right after it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NetmapRing {
    /// Signed offset from this ring to buffer 0.
    pub buf_ofs: i64,
    /// Slots in the ring.
    pub num_slots: u32,
    /// Bytes per buffer.
    pub nr_buf_size: u32,
    /// Ring id.
    pub ringid: u16,
    /// [`RING_DIR_TX`] or [`RING_DIR_RX`].
    pub dir: u16,
    /// First slot the application owns.
    pub head: u32,
    /// Wakeup point (normally equal to head).
    pub cur: u32,
    /// First slot the kernel owns (kernel-written).
    pub tail: u32,
    /// Ring flags.
    pub flags: u32,
    /// Padding.
    pub pad0: u32,
    /// Timestamp of the last sync.
    pub ts: RingTimeval,
    /// Mask of the generic offset in `slot.ptr`.
    pub offset_mask: u64,
    /// Buffer alignment.
    pub buf_align: u64,
    /// Padding up to `sem`.
    pub pad1: [u64; 7],
    /// Kernel semaphore area.
    pub sem: RingSem,
}

/// `struct netmap_slot`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetmapSlot {
    /// Buffer index.
    pub buf_idx: u32,
    /// Bytes in the buffer, counted from the generic offset (PASTE: includes `doff`).
    pub len: u16,
    /// [`slotflags`] bits.
    pub flags: u16,
    /// PASTE bit-fields: generic offset, fd, data offset (see `sys::slot`).
    pub ptr: u64,
}

macro_rules! assert_layout {
    ($t:ty, $size:expr, { $($field:ident : $off:expr),* $(,)? }) => {
        const _: () = assert!(size_of::<$t>() == $size);
        $( const _: () = assert!(offset_of!($t, $field) == $off); )*
    };
}

assert_layout!(NmreqHeader, 88, {
    nr_version: 0, nr_reqtype: 2, nr_reserved: 4, nr_name: 8, nr_options: 72, nr_body: 80,
});
assert_layout!(NmreqRegister, 56, {
    nr_offset: 0, nr_memsize: 8, nr_tx_slots: 16, nr_rx_slots: 20, nr_tx_rings: 24, nr_rx_rings: 26,
    nr_host_tx_rings: 28, nr_host_rx_rings: 30, nr_mem_id: 32, nr_ringid: 34, nr_mode: 36,
    nr_extra_bufs: 40, nr_pad: 44, nr_flags: 48,
});
assert_layout!(NmreqValeAttach, 64, { reg: 0, port_index: 56, pad1: 60 });
assert_layout!(NmreqValeDetach, 8, { port_index: 0, pad1: 4 });
assert_layout!(NmreqPortInfoGet, 32, {
    nr_memsize: 0, nr_tx_slots: 8, nr_rx_slots: 12, nr_tx_rings: 16, nr_rx_rings: 18, nr_host_tx_rings: 20,
    nr_host_rx_rings: 22, nr_mem_id: 24, pad: 26,
});
assert_layout!(NmreqPstFdReg, 8, { fd: 0, pad1: 4 });
assert_layout!(NmreqOption, 24, { nro_next: 0, nro_reqtype: 8, nro_status: 12, nro_size: 16 });
assert_layout!(NmreqPoolsInfo, 64, {
    nr_memsize: 0, nr_mem_id: 8, nr_pad1: 10, nr_if_pool_offset: 16, nr_if_pool_objtotal: 24,
    nr_if_pool_objsize: 28, nr_ring_pool_offset: 32, nr_ring_pool_objtotal: 40, nr_ring_pool_objsize: 44,
    nr_buf_pool_offset: 48, nr_buf_pool_objtotal: 56, nr_buf_pool_objsize: 60,
});
assert_layout!(NmreqOptExtmem, 96, { nro_opt: 0, nro_usrptr: 24, nro_info: 32 });
assert_layout!(NetmapIf, 56, {
    ni_name: 0, ni_version: 16, ni_flags: 20, ni_tx_rings: 24, ni_rx_rings: 28, ni_bufs_head: 32,
    ni_host_tx_rings: 36, ni_host_rx_rings: 40, ni_spare1: 44, ring_ofs: 56,
});
assert_layout!(NetmapRing, 256, {
    buf_ofs: 0, num_slots: 8, nr_buf_size: 12, ringid: 16, dir: 18, head: 20, cur: 24, tail: 28,
    flags: 32, ts: 40, offset_mask: 56, buf_align: 64, sem: 128,
});
const _: () = assert!(std::mem::align_of::<NetmapRing>() == 128);
assert_layout!(NetmapSlot, 16, { buf_idx: 0, len: 4, flags: 6, ptr: 8 });
