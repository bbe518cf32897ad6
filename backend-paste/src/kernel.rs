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

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Mutex;

use paste_rt_core::{BackendKind, StartError};

use crate::ring::{DriverConfig, ExportReport, RingDriver};
use crate::sys::abi::{mode, pst, NmreqPoolsInfo};
use crate::sys::addr::PortRegion;
use crate::sys::ioctl;
use crate::sys::request::{self, ExtmemParams, FdRegRequest, RegisterParams};

/// What kernel PASTE needs, appended to every "not available" error.
pub const REQUIREMENTS: &str = "kernel PASTE needs the netmap module built with --enable-paste \
(and --enable-extmem for a file-backed, persistent pool), a Linux kernel no newer than about 6.0 \
(PASTE uses kernel_sendpage and other APIs removed by 6.5), and a NIC with a native netmap driver \
and TX checksum offload enabled, named in PASTE_RT_PASTE_IF";

/// An extmem (user-memory, optionally persistent) pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtmemConfig {
    /// The file mapped `MAP_SHARED` as the port's whole memory.
    pub path: PathBuf,
    /// Bytes, used when the file is smaller (it is grown to this size).
    pub size: u64,
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
            device: "/dev/netmap".into(),
        }
    }
}

fn start_error(reason: String, errno: Option<i32>) -> StartError {
    StartError { backend: BackendKind::Paste, reason, errno }
}

/// A shared mapping, unmapped when the last holder (port or pool) drops it.
#[derive(Debug)]
struct Mapping {
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

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len came from a successful mmap and nobody uses them after the
        // last Rc holder (port and pool) is gone.
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

/// `SO_LINGER {1, 0}`: the socket's close is abortive (RST, no lingering state).
pub fn set_linger_zero(fd: RawFd) -> io::Result<()> {
    let l = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: `l` is a valid linger struct for the duration of the call.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// An open kernel PASTE port (see the module docs).
#[derive(Debug)]
pub struct KernelPort {
    fd: OwnedFd,
    map: Rc<Mapping>,
    region: PortRegion,
    mem_id: u16,
    extra_bufs: u32,
    ifname: String,
    fd_reg: Box<FdRegRequest>,
    registered: BTreeSet<RawFd>,
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

        // Extmem: the port's memory is our own file mapping.
        let mut ext_map = None;
        let mut ext = None;
        if let Some(x) = &cfg.extmem {
            let ctx = |e: io::Error| start_error(format!("extmem file {}: {e}", x.path.display()), e.raw_os_error());
            let file =
                OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&x.path).map_err(ctx)?;
            let len = file.metadata().map_err(ctx)?.len();
            if len < x.size {
                file.set_len(x.size).map_err(ctx)?;
            }
            let len = len.max(x.size) as usize;
            let m = Mapping::map(file.as_raw_fd(), len).map_err(ctx)?;
            ext = Some(ExtmemParams { usrptr: m.ptr, info: extmem_pools(len) });
            ext_map = Some(m);
        }
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
            let reason = match errno {
                Some(libc::EINVAL) | Some(libc::ENXIO) | Some(libc::EOPNOTSUPP) => format!(
                    "REGISTER {}: {e} (netmap is present but has no PASTE support); {REQUIREMENTS}",
                    pst::APP_PORT
                ),
                Some(libc::ENOTTY) => format!(
                    "REGISTER {}: {e} ({} is not a netmap control device); {REQUIREMENTS}",
                    pst::APP_PORT,
                    cfg.device.display()
                ),
                Some(libc::ENOMEM) => format!(
                    "REGISTER {}: {e} (the netmap allocator is too small: use extmem, raise priv_buf_num/priv_ring_num, or ask for fewer extra buffers)",
                    pst::APP_PORT
                ),
                _ => format!("REGISTER {}: {e}", pst::APP_PORT),
            };
            return Err(start_error(reason, errno));
        }
        if let Some(opt) = reg.extmem() {
            if opt.nro_opt.nro_status != 0 {
                let e = io::Error::from_raw_os_error(opt.nro_opt.nro_status as i32);
                return Err(start_error(
                    format!(
                        "REGISTER {} with extmem: option refused: {e} (netmap built without --enable-extmem?)",
                        pst::APP_PORT
                    ),
                    Some(opt.nro_opt.nro_status as i32),
                ));
            }
        }
        let body = *reg.body();
        let map = match ext_map {
            Some(m) => m,
            None => Mapping::map(fd.as_raw_fd(), body.nr_memsize as usize).map_err(|e| {
                start_error(format!("mmap of the {}-byte port memory: {e}", body.nr_memsize), e.raw_os_error())
            })?,
        };
        if body.nr_offset as usize >= map.len {
            return Err(start_error(
                format!("REGISTER returned netmap_if offset {} past the {}-byte region", body.nr_offset, map.len),
                None,
            ));
        }
        let region = PortRegion { base: map.ptr, len: map.len, nifp_offset: body.nr_offset as usize };

        let mut attach = request::pst_attach(&cfg.ifname, body.nr_mem_id)
            .map_err(|e| start_error(format!("building PST_ATTACH: {e}"), None))?;
        // SAFETY: the request lives in `attach` during the call.
        if let Err(e) = unsafe { ioctl::nioc_ctrl(fd.as_raw_fd(), attach.header_ptr()) } {
            let errno = e.raw_os_error();
            let hint = match errno {
                Some(libc::EBUSY) => "a previous PASTE port is still alive (its sockets are still registered; \
                    wait for netmap-pst-kwait to give up, or reload the netmap module)"
                    .to_string(),
                Some(libc::EINVAL) => format!("the NIC's allocator differs from the pst port's, or {} has TX checksum offload disabled", cfg.ifname),
                Some(libc::ENOMEM) => "the allocator cannot hold the NIC's rings and PASTE's kernel buffers: use extmem or raise priv_ring_num/priv_buf_num".into(),
                Some(libc::ENOTSUP) => "the datapath already has a NIC attached".into(),
                Some(libc::ENXIO) | Some(libc::ENODEV) => format!("no such NIC {}, or it has no native netmap driver", cfg.ifname),
                _ => "see dmesg".into(),
            };
            return Err(start_error(format!("PST_ATTACH pst:{}: {e}: {hint}", cfg.ifname), errno));
        }
        let fd_reg = request::pst_fd_reg(pst::APP_PORT, 3)
            .map_err(|e| start_error(format!("building PST_FD_REG: {e}"), None))?;
        sigpipe_ignore();
        Ok(KernelPort {
            fd,
            map: Rc::new(map),
            region,
            mem_id: body.nr_mem_id,
            extra_bufs: body.nr_extra_bufs,
            ifname: cfg.ifname.clone(),
            fd_reg,
            registered: BTreeSet::new(),
        })
    }

    /// Builds the ring driver over this port's memory. The driver's pool keeps the
    /// mapping alive.
    pub fn ring_driver(&self, cfg: DriverConfig) -> Result<RingDriver, StartError> {
        // SAFETY: the region is this port's live mapping, kept alive by the Rc clone
        // handed over as the pool's guard; only the kernel touches the rings besides
        // the driver.
        unsafe { RingDriver::new(self.region, cfg, Box::new(self.map.clone())) }
            .map_err(|e| start_error(format!("attaching the ring driver: {e}"), None))
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
        format!(
            "kernel PASTE: pst:0 on {} (mem id {}, {} bytes mapped, {} extra buffers)",
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

/// Pool sizes for an extmem file of `len` bytes, as phttpd's nmlib sizes them for one
/// thread: 4 interface objects, 12 rings of 256 + 16 × 2048 bytes, the rest 2048-byte
/// buffers (a multiple of 10).
fn extmem_pools(len: usize) -> NmreqPoolsInfo {
    let (if_num, if_size) = (4u32, 1024u32);
    let (ring_num, ring_size) = (12u32, 256 + 16 * pst::MAX_SLOTS);
    let used = if_num as usize * if_size as usize + ring_num as usize * ring_size as usize;
    let bufs = (len.saturating_sub(used) / 2048 / 10 * 10) as u32;
    NmreqPoolsInfo {
        nr_memsize: len as u64,
        nr_if_pool_objtotal: if_num,
        nr_if_pool_objsize: if_size,
        nr_ring_pool_objtotal: ring_num,
        nr_ring_pool_objsize: ring_size,
        nr_buf_pool_objtotal: bufs,
        nr_buf_pool_objsize: 2048,
        ..NmreqPoolsInfo::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth0() -> KernelConfig {
        KernelConfig { ifname: "eth0".into(), ..KernelConfig::default() }
    }

    #[test]
    fn open_without_netmap_names_what_is_missing() {
        let cfg = eth0();
        if cfg.device.exists() {
            // A machine with netmap: this test is about machines without it.
            return;
        }
        let e = KernelPort::open(&cfg).unwrap_err();
        assert_eq!(e.backend, BackendKind::Paste);
        assert_eq!(e.errno, Some(libc::ENOENT));
        let text = e.to_string();
        for needle in [
            "/dev/netmap",
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

    #[test]
    fn extmem_pool_sizes_fit_the_file() {
        let p = extmem_pools(64 << 20);
        let used = 4 * 1024 + 12 * (256 + 16 * 2048) + p.nr_buf_pool_objtotal as usize * 2048;
        assert!(used <= 64 << 20);
        assert_eq!(p.nr_buf_pool_objtotal % 10, 0);
        assert!(p.nr_buf_pool_objtotal > 30_000);
    }
}
