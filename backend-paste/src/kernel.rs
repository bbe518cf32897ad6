//! The kernel PASTE provider, control part: `/dev/netmap` with a `pst` port.
//!
//! Owns the port fd, the shared mapping (REGISTER's `mmap`, or the extmem file
//! mapping), the NIC attach, per-socket registration (PST_FD_REG), the syncs (`poll`
//! on the port fd, or the sync ioctls), SIGPIPE being ignored while a port is owned
//! (docs/paste-abi.md §10.1), and an orderly release: registered sockets closed abortively,
//! extra buffers relinked, then the fd closed (§10.3). It must never read or write ring
//! slots (that is [`RingDriver`]'s job) or `read()` a registered socket.
//!
//! When the machine lacks kernel PASTE, [`KernelPort::open`] fails with a
//! [`StartError`] naming what is missing and what is needed.
//!
//! Memory: netmap's own (private to the kernel, mapped with `mmap`), or an extmem file
//! ([`extmem`]): `PASTE_RT_PASTE_EXTMEM=<file>`, or the runtime's file-backed pool
//! (`Builder::pool_file`), which on `paste` *is* the extmem file — that is the only
//! way received data can outlive the process, so a file-backed pool is refused when
//! extmem is switched off (`PASTE_RT_PASTE_EXTMEM=off`) rather than acknowledged and
//! lost. Before REGISTER the NIC is checked ([`nic`]): its geometry sizes an extmem
//! file, and an emulated netmap adapter (an unpatched driver, which registers fine
//! and never answers ARP) is refused.

pub mod extmem;
pub mod nic;

use std::collections::BTreeSet;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;

use paste_rt_core::{BackendKind, PoolConfig, PoolMemory, StartError};

use crate::ring::{DriverConfig, ExportReport, KeptReport, RingDriver};
use crate::sys::abi::{mode, pst};
use crate::sys::addr::PortRegion;
use crate::sys::ioctl;
use crate::sys::request::{self, ExtmemParams, FdRegRequest, RegisterParams};

/// What kernel PASTE needs, appended to every "not available" error.
pub const REQUIREMENTS: &str = "kernel PASTE needs the netmap module built with --enable-paste \
(and --enable-extmem for a file-backed, persistent pool), a Linux kernel no newer than about 6.0 \
(PASTE uses kernel_sendpage and other APIs removed by 6.5), and a NIC with a native netmap driver \
and TX checksum offload enabled, named in PASTE_RT_PASTE_IF";

/// The value of `PASTE_RT_PASTE_EXTMEM` that switches extmem off (the runtime reads
/// the variable; see `KernelConfig::extmem_allowed`).
pub const EXTMEM_OFF: &str = "off";
/// The operator's variable naming the extmem file (quoted in errors).
const ENV_EXTMEM: &str = "PASTE_RT_PASTE_EXTMEM";
/// The operator's variable naming the NIC (quoted in errors).
const ENV_IF: &str = "PASTE_RT_PASTE_IF";
/// The kernel's spare buffers per TX ring (`dev.netmap.paste_extra`), read to size an
/// extmem file.
const PASTE_EXTRA_PARAM: &str = "/sys/module/netmap/parameters/paste_extra";
/// Its default.
const PASTE_EXTRA_DEFAULT: u32 = 2048;

/// An extmem (user-memory, optionally persistent) pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtmemConfig {
    /// The file mapped `MAP_SHARED`: paste-rt's header page, then the port's memory.
    pub path: PathBuf,
    /// Bytes of port memory a new file gets at least.
    pub size: u64,
    /// The runtime's pool file: the application keeps buffers in it across restarts
    /// (the ring driver starts persistent, see [`RingDriver::new_persistent`]).
    pub persistent: bool,
}

/// How to open the kernel port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelConfig {
    /// NIC name (`pst:<ifname>` is attached).
    pub ifname: String,
    /// Rings of the pst port.
    pub rings: u16,
    /// Slots per ring.
    pub slots: u32,
    /// Extra buffers asked for at REGISTER.
    pub extra_bufs: u32,
    /// Extmem pool, if any.
    pub extmem: Option<ExtmemConfig>,
    /// Extmem may be used (`PASTE_RT_PASTE_EXTMEM` is not `off`).
    pub extmem_allowed: bool,
    /// Port memory a new extmem file gets at least (`PASTE_RT_PASTE_EXTMEM_MB`).
    pub extmem_size: u64,
    /// Buffers a previous run kept in the (persistent) extmem file.
    pub kept: Vec<u32>,
    /// The control device.
    pub device: PathBuf,
}

impl Default for KernelConfig {
    /// No NIC named (it must be set), 1 ring of 1024 slots, 4096 extra buffers, kernel
    /// memory, `/dev/netmap`.
    fn default() -> KernelConfig {
        KernelConfig {
            ifname: String::new(),
            rings: 1,
            slots: pst::DEFAULT_SLOTS,
            extra_bufs: 4096,
            extmem: None,
            extmem_allowed: true,
            extmem_size: 256 << 20,
            kept: Vec::new(),
            device: "/dev/netmap".into(),
        }
    }
}

impl KernelConfig {
    /// Applies the runtime's pool: its count is the extra buffers asked for (unless
    /// `PASTE_RT_PASTE_EXTRA_BUFS` said otherwise), and a file-backed pool becomes the
    /// port's extmem file, persistent, with its kept buffers. A file-backed pool is
    /// refused when extmem is off or another extmem file is named: the runtime would
    /// otherwise acknowledge data it cannot recover.
    pub fn with_pool(mut self, pool: &PoolConfig, extra_bufs_from_env: bool) -> Result<KernelConfig, StartError> {
        if !extra_bufs_from_env {
            self.extra_bufs = pool.count;
        }
        match &pool.memory {
            PoolMemory::Anonymous => {
                if !pool.kept.is_empty() {
                    return Err(start_error(
                        format!("{} kept buffers were given for a pool that is not file-backed", pool.kept.len()),
                        Some(libc::EINVAL),
                    ));
                }
            }
            PoolMemory::File(path) => {
                if !self.extmem_allowed {
                    return Err(start_error(
                        format!(
                            "a file-backed pool ({}) asks for received data that survives a restart; on paste the \
                             pool file is the port's extmem memory, and {ENV_EXTMEM}={EXTMEM_OFF} switches extmem \
                             off, so persistence cannot be honoured here and paste-rt refuses rather than \
                             acknowledge data it could not recover. Allow extmem (unset {ENV_EXTMEM}; netmap built \
                             with --enable-extmem), or do not ask for a persistent pool",
                            path.display()
                        ),
                        Some(libc::EOPNOTSUPP),
                    ));
                }
                if let Some(x) = self.extmem.as_ref().filter(|x| &x.path != path) {
                    return Err(start_error(
                        format!(
                            "{ENV_EXTMEM}={} names another extmem file than the pool file {}: on paste the pool \
                             file is the extmem file; unset {ENV_EXTMEM} or name the same file",
                            x.path.display(),
                            path.display()
                        ),
                        Some(libc::EINVAL),
                    ));
                }
                self.extmem = Some(ExtmemConfig { path: path.clone(), size: self.extmem_size, persistent: true });
                self.kept = pool.kept.clone();
            }
        }
        Ok(self)
    }
}

fn start_error(reason: String, errno: Option<i32>) -> StartError {
    StartError { backend: BackendKind::Paste, reason, errno }
}

/// A shared mapping, unmapped when the last holder (port or pool) drops it.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn map(fd: RawFd, len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh shared mapping chosen by the kernel; no existing memory is
        // affected.
        let p = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
        };
        if p == libc::MAP_FAILED {
            Err(io::Error::last_os_error())
        } else {
            Ok(Mapping { ptr: p.cast(), len })
        }
    }
}

// SAFETY: a plain address range; the mapping itself is shared memory any thread may
// read and write under the callers' own contracts, and munmap may run on any thread.
// Needed since a pool's memory guard may drop on whichever thread drops the last
// `Bytes` lent from it.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` gives access to nothing but the address and length.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len came from a successful mmap and nobody uses them after the
        // last Arc holder (port, pool, or a `Bytes` lent from the pool) is gone.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Process-wide SIGPIPE disposition: ignored while at least one port is open.
static SIGPIPE_USERS: Mutex<(usize, Option<libc::sighandler_t>)> = Mutex::new((0, None));

fn sigpipe_ignore() {
    let mut g = SIGPIPE_USERS.lock().unwrap_or_else(|e| e.into_inner());
    if g.0 == 0 {
        // SAFETY: installing SIG_IGN for SIGPIPE; the previous handler is saved.
        let old = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        g.1 = (old != libc::SIG_ERR).then_some(old);
    }
    g.0 += 1;
}

fn sigpipe_restore() {
    let mut g = SIGPIPE_USERS.lock().unwrap_or_else(|e| e.into_inner());
    g.0 = g.0.saturating_sub(1);
    if g.0 == 0 {
        if let Some(old) = g.1.take() {
            // SAFETY: restores the handler that was installed before the first port.
            unsafe { libc::signal(libc::SIGPIPE, old) };
        }
    }
}

/// Runs `f` on socket `fd` through socket2 (the socket options' one place). A negative
/// fd is `EBADF`, as the system call would say.
pub(crate) fn with_socket<T>(fd: RawFd, f: impl FnOnce(socket2::SockRef<'_>) -> io::Result<T>) -> io::Result<T> {
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: `fd` is not -1 (checked above) and stays open for the call: the caller
    // owns it, and the borrow ends with `f`, closing nothing.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    f(socket2::SockRef::from(&fd))
}

/// `SO_LINGER {1, 0}`: the socket's close is abortive (RST, no lingering state).
pub fn set_linger_zero(fd: RawFd) -> io::Result<()> {
    with_socket(fd, |s| s.set_linger(Some(std::time::Duration::ZERO)))
}

/// An open kernel PASTE port (see the module docs).
#[derive(Debug)]
pub struct KernelPort {
    fd: OwnedFd,
    map: Arc<Mapping>,
    region: PortRegion,
    mem_id: u16,
    extra_bufs: u32,
    ifname: String,
    fd_reg: Box<FdRegRequest>,
    registered: BTreeSet<RawFd>,
    /// The extmem file, if any.
    extmem: Option<ExtmemState>,
    /// Kept buffers to reclaim when the ring driver attaches (persistent pool).
    kept: Vec<u32>,
}

/// The extmem file of an open port.
#[derive(Debug, Clone)]
struct ExtmemState {
    path: PathBuf,
    /// A persistent pool (the runtime's pool file).
    persistent: bool,
    /// Created (or laid out) by this start.
    fresh: bool,
    hugetlbfs: bool,
}

/// Why the allocator ran out, with extmem: page contiguity (see [`extmem`]).
fn extmem_enomem_hint(file: &std::path::Path) -> String {
    format!(
        "with extmem, netmap discards every pool object that crosses into a page not physically next to the \
         previous one (page contiguity / hugepages): extmem file {} left too few ring objects or buffers. Put the \
         file on hugetlbfs (hugepages: echo N > /proc/sys/vm/nr_hugepages; mount -t hugetlbfs none DIR) or try \
         a new file; see dmesg (\"no more ... objects\")",
        file.display()
    )
}

impl KernelPort {
    /// Opens `/dev/netmap`, registers `pst:0`, maps its memory and attaches the NIC
    /// (docs/paste-abi.md §1.4). SIGPIPE is ignored from here until the port is dropped.
    pub fn open(cfg: &KernelConfig) -> Result<KernelPort, StartError> {
        let dev = CString::new(cfg.device.as_os_str().as_bytes())
            .map_err(|_| start_error(format!("device path {:?} contains a NUL byte", cfg.device), None))?;
        // SAFETY: dev is a NUL-terminated path.
        let raw = unsafe { libc::open(dev.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if raw < 0 {
            let e = io::Error::last_os_error();
            let why = if e.raw_os_error() == Some(libc::ENOENT) {
                "the netmap module is not loaded".to_string()
            } else {
                "cannot open the netmap control device".to_string()
            };
            return Err(start_error(
                format!("open {}: {e} ({why}); {REQUIREMENTS}", cfg.device.display()),
                e.raw_os_error(),
            ));
        }
        // SAFETY: open just returned this fd; nobody else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        // The NIC: its geometry (to size an extmem file), and refuse an emulated adapter.
        let nic_geometry = nic::port_info(fd.as_raw_fd(), &cfg.ifname).ok();
        if let nic::DriverMode::Emulated { evidence } = nic::driver_mode(&cfg.ifname) {
            return Err(start_error(
                format!("{ENV_IF}={}: {}", cfg.ifname, nic::emulated_refusal(&cfg.ifname, &evidence)),
                Some(libc::ENODEV),
            ));
        }

        // Extmem: the port's memory is our own file mapping, after its header page.
        let mut ext_map = None;
        let mut ext = None;
        let mut ext_state = None;
        if let Some(x) = &cfg.extmem {
            let needs = extmem::PortNeeds {
                rings: cfg.rings,
                slots: cfg.slots,
                extra_bufs: cfg.extra_bufs,
                nic: nic_geometry,
                paste_extra: std::fs::read_to_string(PASTE_EXTRA_PARAM)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(PASTE_EXTRA_DEFAULT),
            };
            let opened = extmem::open(x, &needs)?;
            ext_state = Some(ExtmemState {
                path: x.path.clone(),
                persistent: x.persistent,
                fresh: opened.fresh,
                hugetlbfs: opened.hugetlbfs,
            });
            let memsize = opened.memsize() as u64;
            ext = Some(ExtmemParams { usrptr: opened.usrptr(), info: opened.layout.pools_info(memsize) });
            ext_map = Some(opened.map);
        }
        let ext_path = cfg.extmem.as_ref().map(|x| x.path.clone());
        let params = RegisterParams {
            mode: mode::ALL_NIC,
            tx_rings: cfg.rings,
            rx_rings: cfg.rings,
            tx_slots: cfg.slots,
            rx_slots: cfg.slots,
            extra_bufs: cfg.extra_bufs,
            ..RegisterParams::default()
        };
        let mut reg = request::register(pst::APP_PORT, &params, ext.as_ref())
            .map_err(|e| start_error(format!("building REGISTER: {e}"), None))?;
        // SAFETY: the request and its option live in `reg` (boxed) during the call.
        if let Err(e) = unsafe { ioctl::nioc_ctrl(fd.as_raw_fd(), reg.header_ptr()) } {
            let errno = e.raw_os_error();
            let reason = match (errno, &ext_path) {
                (Some(libc::EINVAL) | Some(libc::ENXIO) | Some(libc::EOPNOTSUPP), _) => format!(
                    "REGISTER {}: {e} (netmap is present but has no PASTE support{}); {REQUIREMENTS}",
                    pst::APP_PORT,
                    match &cfg.extmem {
                        Some(x) if x.persistent => {
                            ", or no extmem support, which a file-backed pool (Builder::pool_file) on paste needs"
                        }
                        Some(_) => ", or no extmem support",
                        None => "",
                    }
                ),
                (Some(libc::ENOTTY), _) => format!(
                    "REGISTER {}: {e} ({} is not a netmap control device); {REQUIREMENTS}",
                    pst::APP_PORT,
                    cfg.device.display()
                ),
                (Some(libc::ENOMEM), Some(file)) => {
                    format!("REGISTER {}: {e}: {}", pst::APP_PORT, extmem_enomem_hint(file))
                }
                (Some(libc::ENOMEM), None) => format!(
                    "REGISTER {}: {e} (netmap's private allocator is too small: use extmem ({ENV_EXTMEM}=FILE), raise \
                     priv_buf_num/priv_ring_num, or ask for fewer extra buffers)",
                    pst::APP_PORT
                ),
                _ => format!("REGISTER {}: {e}", pst::APP_PORT),
            };
            return Err(start_error(reason, errno));
        }
        if let Some(opt) = reg.extmem() {
            if opt.nro_opt.nro_status != 0 {
                let e = io::Error::from_raw_os_error(opt.nro_opt.nro_status as i32);
                let why = if cfg.extmem.as_ref().is_some_and(|x| x.persistent) {
                    " a file-backed pool (Builder::pool_file) on paste needs it"
                } else {
                    ""
                };
                return Err(start_error(
                    format!(
                        "REGISTER {} with extmem: option refused: {e} (netmap built without --enable-extmem?{why})",
                        pst::APP_PORT
                    ),
                    Some(opt.nro_opt.nro_status as i32),
                ));
            }
        }
        let body = *reg.body();
        let (map, netmap_offset) = match ext_map {
            Some(m) => (m, extmem::HEADER_LEN),
            None => (
                Mapping::map(fd.as_raw_fd(), body.nr_memsize as usize).map_err(|e| {
                    start_error(format!("mmap of the {}-byte port memory: {e}", body.nr_memsize), e.raw_os_error())
                })?,
                0,
            ),
        };
        let netmap_len = map.len - netmap_offset;
        if body.nr_offset as usize >= netmap_len {
            return Err(start_error(
                format!("REGISTER returned netmap_if offset {} past the {netmap_len}-byte region", body.nr_offset),
                None,
            ));
        }
        let region = PortRegion {
            base: map.ptr.wrapping_add(netmap_offset),
            len: netmap_len,
            nifp_offset: body.nr_offset as usize,
        };

        let mut attach = request::pst_attach(&cfg.ifname, body.nr_mem_id)
            .map_err(|e| start_error(format!("building PST_ATTACH: {e}"), None))?;
        // SAFETY: the request lives in `attach` during the call.
        if let Err(e) = unsafe { ioctl::nioc_ctrl(fd.as_raw_fd(), attach.header_ptr()) } {
            let errno = e.raw_os_error();
            let hint = match (errno, &ext_path) {
                (Some(libc::EBUSY), _) => "a previous PASTE port is still alive (its sockets are still registered; \
                    wait for netmap-pst-kwait to give up, or reload the netmap module)"
                    .to_string(),
                (Some(libc::EINVAL), _) => format!("the NIC's allocator differs from the pst port's, or {} has TX checksum offload disabled", cfg.ifname),
                (Some(libc::ENOMEM), Some(file)) => extmem_enomem_hint(file),
                (Some(libc::ENOMEM), None) => format!("the allocator cannot hold the NIC's rings and PASTE's kernel buffers: use extmem ({ENV_EXTMEM}=FILE) or raise priv_ring_num/priv_buf_num"),
                (Some(libc::ENOTSUP), _) => "the datapath already has a NIC attached, or the NIC has TX checksum offload disabled".into(),
                (Some(libc::ENXIO) | Some(libc::ENODEV), _) => format!("no such NIC {}, or it has no native netmap driver", cfg.ifname),
                _ => "see dmesg".into(),
            };
            return Err(start_error(format!("PST_ATTACH pst:{}: {e}: {hint}", cfg.ifname), errno));
        }
        let fd_reg = request::pst_fd_reg(pst::APP_PORT, 3)
            .map_err(|e| start_error(format!("building PST_FD_REG: {e}"), None))?;
        sigpipe_ignore();
        Ok(KernelPort {
            fd,
            map: Arc::new(map),
            region,
            mem_id: body.nr_mem_id,
            extra_bufs: body.nr_extra_bufs,
            ifname: cfg.ifname.clone(),
            fd_reg,
            registered: BTreeSet::new(),
            extmem: ext_state,
            kept: cfg.kept.clone(),
        })
    }

    /// Builds the ring driver over this port's memory (persistent over a pool file,
    /// reclaiming the kept buffers). The driver's pool keeps the mapping alive. Call it
    /// once, before the first sync.
    pub fn ring_driver(&self, cfg: DriverConfig) -> Result<RingDriver, StartError> {
        self.ring_driver_with_report(cfg).map(|(d, _)| d)
    }

    /// [`ring_driver`](Self::ring_driver), with what was done with the kept buffers.
    pub fn ring_driver_with_report(&self, cfg: DriverConfig) -> Result<(RingDriver, KeptReport), StartError> {
        let guard = Box::new(self.map.clone());
        let persistent = self.extmem.as_ref().is_some_and(|x| x.persistent);
        let result = if persistent {
            // SAFETY: as below; and no sync has run on the port yet (open does none).
            unsafe { RingDriver::new_persistent(self.region, cfg, guard, &self.kept) }
        } else {
            // SAFETY: the region is this port's live mapping, kept alive by the Arc clone
            // handed over as the pool's guard; only the kernel touches the rings besides
            // the driver.
            unsafe { RingDriver::new(self.region, cfg, guard) }.map(|d| (d, KeptReport::default()))
        };
        result.map_err(|e| start_error(format!("attaching the ring driver: {e}"), None))
    }

    /// The port fd (poll it for `POLLIN`).
    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The mapped region.
    pub fn region(&self) -> PortRegion {
        self.region
    }

    /// The allocator id.
    pub fn mem_id(&self) -> u16 {
        self.mem_id
    }

    /// Extra buffers the kernel actually gave.
    pub fn extra_bufs(&self) -> u32 {
        self.extra_bufs
    }

    /// One line for `Backend::describe`.
    pub fn describe(&self) -> String {
        let memory = match &self.extmem {
            None => "netmap's kernel memory".to_string(),
            Some(x) => format!(
                "{}extmem file {} ({}{})",
                if x.persistent { "persistent pool, " } else { "" },
                x.path.display(),
                if x.fresh { "new" } else { "reopened" },
                if x.hugetlbfs { ", hugetlbfs" } else { "" }
            ),
        };
        format!(
            "kernel PASTE: pst:0 on {} (mem id {}, {} bytes of {memory}, {} extra buffers)",
            self.ifname, self.mem_id, self.region.len, self.extra_bufs
        )
    }

    /// PST_FD_REG of an accepted (or connected) socket, after setting `SO_LINGER {1, 0}`
    /// so its close is abortive (no LAST_ACK limbo keeping the port alive, §10.3).
    /// After this the socket must never be `read()`.
    pub fn register_socket(&mut self, sock: RawFd) -> io::Result<()> {
        self.fd_reg.set_fd(sock).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        set_linger_zero(sock).map_err(|e| io::Error::new(e.kind(), format!("SO_LINGER on fd {sock}: {e}")))?;
        // SAFETY: the request lives in `self.fd_reg` during the call.
        unsafe { ioctl::nioc_ctrl(self.fd.as_raw_fd(), self.fd_reg.header_ptr()) }
            .map_err(|e| io::Error::new(e.kind(), format!("PST_FD_REG of fd {sock}: {e}")))?;
        self.registered.insert(sock);
        Ok(())
    }

    /// Closes a registered socket (abortively). Closing is PASTE's unregister.
    pub fn close_socket(&mut self, sock: RawFd) -> io::Result<()> {
        if !self.registered.remove(&sock) {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("fd {sock} is not registered with the port")));
        }
        // SAFETY: the socket was handed to the port at registration; it is closed once.
        let r = unsafe { libc::close(sock) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// A registered socket found dead (reset): replaces it with `placeholder` (a dup of
    /// `/dev/null`) through `dup2`, which closes the socket abortively — the kernel
    /// unregisters it and skips its TX slots from the next sync on (§10.2) — while the
    /// fd number stays taken until the application closes it.
    pub fn kill_socket(&mut self, sock: RawFd, placeholder: RawFd) -> io::Result<()> {
        if !self.registered.remove(&sock) {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("fd {sock} is not registered with the port")));
        }
        let _ = set_linger_zero(sock);
        // SAFETY: `sock` is a registered socket the port owns and `placeholder` an open
        // fd; dup2 atomically closes the socket and makes `sock` a copy of the placeholder.
        let r = unsafe { libc::dup2(placeholder, sock) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Sockets currently registered.
    pub fn registered(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.registered.iter().copied()
    }

    /// Whether `sock` is registered with the port.
    pub fn is_registered(&self, sock: RawFd) -> bool {
        self.registered.contains(&sock)
    }

    /// How many sockets are registered with the port.
    pub fn registered_count(&self) -> usize {
        self.registered.len()
    }

    /// One sync: `poll()` on the port fd for `POLLIN`, which runs txsync and rxsync, and
    /// waits at most `timeout_ms` (keep it short: kernel-originated packets such as
    /// ACKs leave only at syncs, §4.2). Returns whether the RX ring has slots.
    pub fn sync(&self, timeout_ms: i32) -> io::Result<bool> {
        let mut p = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: `p` is one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted { Ok(false) } else { Err(e) };
        }
        Ok(n > 0 && p.revents & libc::POLLIN != 0)
    }

    /// `NIOCTXSYNC`: hand filled TX slots over without waiting.
    pub fn txsync(&self) -> io::Result<()> {
        ioctl::txsync(self.fd.as_raw_fd())
    }

    /// `NIOCRXSYNC`: release walked RX slots and collect new ones without waiting.
    pub fn rxsync(&self) -> io::Result<()> {
        ioctl::rxsync(self.fd.as_raw_fd())
    }

    /// Orderly release (§10.3): closes every registered socket abortively, relinks the
    /// driver's free buffers onto `ni_bufs_head`, then unregisters the port.
    pub fn release(mut self, driver: Option<&mut RingDriver>) -> Option<ExportReport> {
        self.close_all();
        driver.map(|d| d.export_extra())
        // Drop closes the port fd (the unregister) and restores SIGPIPE.
    }

    fn close_all(&mut self) {
        for sock in std::mem::take(&mut self.registered) {
            // Linger was set to {1, 0} at registration; set again in case the
            // application changed it, then close.
            let _ = set_linger_zero(sock);
            // SAFETY: each registered socket is owned by the port and closed once.
            unsafe { libc::close(sock) };
        }
    }
}

impl Drop for KernelPort {
    fn drop(&mut self) {
        self.close_all();
        sigpipe_restore();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth0() -> KernelConfig {
        KernelConfig { ifname: "eth0".into(), ..KernelConfig::default() }
    }

    #[test]
    fn a_pool_file_is_the_extmem_file_and_is_refused_without_extmem() {
        let base = KernelConfig { ifname: "eth1".into(), ..KernelConfig::default() };
        let file = PoolConfig {
            count: 300,
            memory: PoolMemory::File("/tmp/wal/pool".into()),
            kept: vec![7, 9],
            ..PoolConfig::default()
        };
        let c = base.clone().with_pool(&file, false).unwrap();
        assert_eq!(c.extra_bufs, 300);
        assert_eq!(c.extmem, Some(ExtmemConfig { path: "/tmp/wal/pool".into(), size: 256 << 20, persistent: true }));
        assert_eq!(c.kept, vec![7, 9]);
        assert_eq!(base.clone().with_pool(&file, true).unwrap().extra_bufs, 4096, "the operator's count wins");

        // Extmem switched off: persistence cannot be honoured, so the start is refused.
        let off = KernelConfig { extmem_allowed: false, ..base.clone() };
        let e = off.clone().with_pool(&file, false).unwrap_err();
        assert_eq!(e.errno, Some(libc::EOPNOTSUPP));
        for needle in ["/tmp/wal/pool", "extmem", "PASTE_RT_PASTE_EXTMEM=off", "refuses", "--enable-extmem"] {
            assert!(e.reason.contains(needle), "{needle:?} missing from: {e}");
        }
        // An anonymous pool is fine without extmem; kept buffers without a file are not.
        assert!(off.clone().with_pool(&PoolConfig::default(), false).is_ok());
        let e = off.with_pool(&PoolConfig { kept: vec![3], ..PoolConfig::default() }, false).unwrap_err();
        assert!(e.reason.contains("not file-backed"), "{e}");

        // Another extmem file named by the operator conflicts with the pool file.
        let extmem = |path: &str, size: u64| Some(ExtmemConfig { path: path.into(), size, persistent: false });
        let other = KernelConfig { extmem: extmem("/tmp/other", 256 << 20), ..base.clone() };
        let e = other.with_pool(&file, false).unwrap_err();
        assert!(e.reason.contains("/tmp/other") && e.reason.contains("same file"), "{e}");
        let same = KernelConfig { extmem: extmem("/tmp/wal/pool", 32 << 20), extmem_size: 32 << 20, ..base.clone() }
            .with_pool(&file, false)
            .unwrap();
        assert_eq!(same.extmem.map(|x| (x.size, x.persistent)), Some((32 << 20, true)));
        let sized = KernelConfig { extmem_size: 48 << 20, ..base }.with_pool(&file, false).unwrap();
        assert_eq!(sized.extmem.map(|x| x.size), Some(48 << 20), "the size applies to a pool file too");
    }

    #[test]
    fn an_extmem_enomem_names_page_contiguity_and_hugepages() {
        let text = extmem_enomem_hint(std::path::Path::new("/tmp/x"));
        for needle in ["page contiguity / hugepages", "hugetlbfs", "/tmp/x", "new file"] {
            assert!(text.contains(needle), "{needle:?} missing from: {text}");
        }
    }

    #[test]
    fn open_without_netmap_names_what_is_missing() {
        // A control device that does not exist, as on a machine without netmap (so
        // the test runs on one with netmap too).
        let device = std::env::temp_dir().join(format!("paste-rt-no-netmap-{}", std::process::id()));
        let cfg = KernelConfig { device: device.clone(), ..eth0() };
        let e = KernelPort::open(&cfg).unwrap_err();
        assert_eq!(e.backend, BackendKind::Paste);
        assert_eq!(e.errno, Some(libc::ENOENT));
        let text = e.to_string();
        for needle in [
            &*device.to_string_lossy(),
            "not loaded",
            "--enable-paste",
            "--enable-extmem",
            "6.0",
            "native netmap driver",
            "checksum",
            "PASTE_RT_PASTE_IF",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from: {text}");
        }
    }

    #[test]
    fn open_of_a_non_netmap_device_fails_at_register() {
        let cfg = KernelConfig { device: "/dev/null".into(), ..eth0() };
        let e = KernelPort::open(&cfg).unwrap_err();
        assert_eq!(e.errno, Some(libc::ENOTTY));
        let text = e.to_string();
        assert!(text.contains("REGISTER pst:0") && text.contains("not a netmap control device"), "{text}");
    }
}
