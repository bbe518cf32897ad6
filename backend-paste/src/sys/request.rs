//! Builders for the `NIOCCTRL` requests the PASTE backend issues: REGISTER (with an
//! optional `OPT_EXTMEM` option), PORT_INFO_GET, PST_ATTACH, PST_FD_REG and
//! PST_DETACH.
//!
//! Each builder returns an owned, heap-pinned request (header + body + options in one
//! `Box`) whose `nr_body`/`nr_options` pointers already point into that box, so the
//! request can be passed to `ioctl` as is and its outputs read back afterwards. The
//! fields are private so a request can never be moved out of its box (which would leave
//! the pointers dangling). It must never issue the ioctl itself.

use super::abi::{
    mode, opttype, pst, reqtype, NmreqHeader, NmreqOptExtmem, NmreqPoolsInfo, NmreqPortInfoGet, NmreqPstFdReg,
    NmreqRegister, NmreqValeAttach, NmreqValeDetach, NETMAP_API, NETMAP_REQ_IFNAMSIZ,
};

/// Why a request could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The port name does not fit `nr_name` (63 bytes plus the NUL).
    #[error("netmap port name {0:?} is longer than 63 bytes")]
    NameTooLong(String),
    /// The port name is empty or contains a NUL byte.
    #[error("netmap port name {0:?} is empty or contains a NUL byte")]
    BadName(String),
    /// The fd cannot be registered with PASTE (negative or above 65534).
    #[error("fd {0} cannot be registered with PASTE (valid range 0..=65534)")]
    FdOutOfRange(i32),
}

fn header(name: &str, reqtype: u16) -> Result<NmreqHeader, RequestError> {
    if name.is_empty() || name.as_bytes().contains(&0) {
        return Err(RequestError::BadName(name.to_owned()));
    }
    if name.len() >= NETMAP_REQ_IFNAMSIZ {
        return Err(RequestError::NameTooLong(name.to_owned()));
    }
    let mut hdr = NmreqHeader { nr_version: NETMAP_API, nr_reqtype: reqtype, ..NmreqHeader::default() };
    hdr.nr_name[..name.len()].copy_from_slice(name.as_bytes());
    Ok(hdr)
}

fn addr<T>(r: &T) -> u64 {
    r as *const T as u64
}

/// What REGISTER asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegisterParams {
    /// One of [`mode`] (default `ALL_NIC`).
    pub mode: u32,
    /// Ring id for `ONE_NIC`.
    pub ringid: u16,
    /// TX rings (1..=64 for pst).
    pub tx_rings: u16,
    /// RX rings (1..=64 for pst).
    pub rx_rings: u16,
    /// Slots per TX ring (0 = kernel default 1024, max 2048).
    pub tx_slots: u32,
    /// Slots per RX ring.
    pub rx_slots: u32,
    /// Extra buffers wanted.
    pub extra_bufs: u32,
    /// Allocator id to share (0 = none).
    pub mem_id: u16,
    /// `nr_flags` bits.
    pub flags: u64,
}

impl Default for RegisterParams {
    fn default() -> Self {
        RegisterParams {
            mode: mode::ALL_NIC,
            ringid: 0,
            tx_rings: 1,
            rx_rings: 1,
            tx_slots: pst::DEFAULT_SLOTS,
            rx_slots: pst::DEFAULT_SLOTS,
            extra_bufs: 0,
            mem_id: 0,
            flags: 0,
        }
    }
}

/// The `OPT_EXTMEM` option's inputs: a page-aligned user mapping and pool sizes.
#[derive(Clone, Copy, Debug)]
pub struct ExtmemParams {
    /// Start of the user mapping.
    pub usrptr: *mut u8,
    /// `nr_memsize` must be the mapping's size; zero pool fields take kernel minimums.
    pub info: NmreqPoolsInfo,
}

/// A REGISTER request: header, `nmreq_register` body, and an `OPT_EXTMEM` option that
/// is chained in only when extmem was asked for.
#[repr(C)]
#[derive(Debug)]
pub struct RegisterRequest {
    hdr: NmreqHeader,
    body: NmreqRegister,
    extmem: NmreqOptExtmem,
}

impl RegisterRequest {
    /// The header to pass to `NIOCCTRL`.
    pub fn header_ptr(&mut self) -> *mut NmreqHeader {
        &mut self.hdr
    }

    /// The header.
    pub fn header(&self) -> &NmreqHeader {
        &self.hdr
    }

    /// The body; after a successful ioctl it holds the kernel's outputs.
    pub fn body(&self) -> &NmreqRegister {
        &self.body
    }

    /// The extmem option, if chained; after the ioctl `nro_opt.nro_status` holds 0 or an errno.
    pub fn extmem(&self) -> Option<&NmreqOptExtmem> {
        (self.hdr.nr_options != 0).then_some(&self.extmem)
    }
}

/// Builds REGISTER for `name` (e.g. `pst:0`).
pub fn register(
    name: &str,
    params: &RegisterParams,
    extmem: Option<&ExtmemParams>,
) -> Result<Box<RegisterRequest>, RequestError> {
    let hdr = header(name, reqtype::REGISTER)?;
    let body = NmreqRegister {
        nr_tx_slots: params.tx_slots,
        nr_rx_slots: params.rx_slots,
        nr_tx_rings: params.tx_rings,
        nr_rx_rings: params.rx_rings,
        nr_mem_id: params.mem_id,
        nr_ringid: params.ringid,
        nr_mode: params.mode,
        nr_extra_bufs: params.extra_bufs,
        nr_flags: params.flags,
        ..NmreqRegister::default()
    };
    let mut req = Box::new(RegisterRequest { hdr, body, extmem: NmreqOptExtmem::default() });
    req.hdr.nr_body = addr(&req.body);
    if let Some(x) = extmem {
        req.extmem.nro_opt.nro_reqtype = opttype::EXTMEM;
        req.extmem.nro_usrptr = x.usrptr as u64;
        req.extmem.nro_info = x.info;
        req.hdr.nr_options = addr(&req.extmem);
    }
    Ok(req)
}

/// A PORT_INFO_GET request (body `nmreq_port_info_get`).
#[repr(C)]
#[derive(Debug)]
pub struct PortInfoRequest {
    hdr: NmreqHeader,
    body: NmreqPortInfoGet,
}

impl PortInfoRequest {
    /// The header to pass to `NIOCCTRL`.
    pub fn header_ptr(&mut self) -> *mut NmreqHeader {
        &mut self.hdr
    }

    /// The header.
    pub fn header(&self) -> &NmreqHeader {
        &self.hdr
    }

    /// The body; after a successful ioctl it holds the port's geometry.
    pub fn body(&self) -> &NmreqPortInfoGet {
        &self.body
    }
}

/// Builds PORT_INFO_GET for `name` (a NIC such as `eth1`, or a port name).
pub fn port_info(name: &str) -> Result<Box<PortInfoRequest>, RequestError> {
    let hdr = header(name, reqtype::PORT_INFO_GET)?;
    let mut req = Box::new(PortInfoRequest { hdr, body: NmreqPortInfoGet::default() });
    req.hdr.nr_body = addr(&req.body);
    Ok(req)
}

/// A PST_ATTACH request (body `nmreq_vale_attach`).
#[repr(C)]
#[derive(Debug)]
pub struct AttachRequest {
    hdr: NmreqHeader,
    body: NmreqValeAttach,
}

impl AttachRequest {
    /// The header to pass to `NIOCCTRL`.
    pub fn header_ptr(&mut self) -> *mut NmreqHeader {
        &mut self.hdr
    }

    /// The header.
    pub fn header(&self) -> &NmreqHeader {
        &self.hdr
    }

    /// The body.
    pub fn body(&self) -> &NmreqValeAttach {
        &self.body
    }
}

/// Builds PST_ATTACH of NIC `ifname` (header name `pst:<ifname>`), joining the
/// allocator `mem_id` of the already registered pst port, with `NR_REG_NIC_SW`.
pub fn pst_attach(ifname: &str, mem_id: u16) -> Result<Box<AttachRequest>, RequestError> {
    let hdr = header(&format!("{}:{ifname}", pst::NAME_PREFIX), reqtype::PST_ATTACH)?;
    if ifname.is_empty() {
        return Err(RequestError::BadName(ifname.to_owned()));
    }
    let mut body = NmreqValeAttach::default();
    body.reg.nr_mem_id = mem_id;
    body.reg.nr_mode = mode::NIC_SW;
    let mut req = Box::new(AttachRequest { hdr, body });
    req.hdr.nr_body = addr(&req.body);
    Ok(req)
}

/// A PST_DETACH request (body `nmreq_vale_detach`).
#[repr(C)]
#[derive(Debug)]
pub struct DetachRequest {
    hdr: NmreqHeader,
    body: NmreqValeDetach,
}

impl DetachRequest {
    /// The header to pass to `NIOCCTRL`.
    pub fn header_ptr(&mut self) -> *mut NmreqHeader {
        &mut self.hdr
    }

    /// The header.
    pub fn header(&self) -> &NmreqHeader {
        &self.hdr
    }

    /// The body.
    pub fn body(&self) -> &NmreqValeDetach {
        &self.body
    }
}

/// Builds PST_DETACH of NIC `ifname` (header name `pst:<ifname>`).
pub fn pst_detach(ifname: &str) -> Result<Box<DetachRequest>, RequestError> {
    if ifname.is_empty() {
        return Err(RequestError::BadName(ifname.to_owned()));
    }
    let hdr = header(&format!("{}:{ifname}", pst::NAME_PREFIX), reqtype::PST_DETACH)?;
    let mut req = Box::new(DetachRequest { hdr, body: NmreqValeDetach::default() });
    req.hdr.nr_body = addr(&req.body);
    Ok(req)
}

/// A PST_FD_REG request (body `nmreq_pst_fd_reg`); reusable for every accepted socket
/// through [`set_fd`](Self::set_fd).
#[repr(C)]
#[derive(Debug)]
pub struct FdRegRequest {
    hdr: NmreqHeader,
    body: NmreqPstFdReg,
}

impl FdRegRequest {
    /// The header to pass to `NIOCCTRL`.
    pub fn header_ptr(&mut self) -> *mut NmreqHeader {
        &mut self.hdr
    }

    /// The header.
    pub fn header(&self) -> &NmreqHeader {
        &self.hdr
    }

    /// The body.
    pub fn body(&self) -> &NmreqPstFdReg {
        &self.body
    }

    /// Points the request at another socket.
    pub fn set_fd(&mut self, fd: i32) -> Result<(), RequestError> {
        if !(0..=pst::MAX_FD).contains(&fd) {
            return Err(RequestError::FdOutOfRange(fd));
        }
        self.body.fd = fd;
        Ok(())
    }
}

/// Builds PST_FD_REG of socket `fd` on the bare pst port name `port` (e.g. `pst:0`,
/// never with a `-N` or `@...` suffix).
pub fn pst_fd_reg(port: &str, fd: i32) -> Result<Box<FdRegRequest>, RequestError> {
    let hdr = header(port, reqtype::PST_FD_REG)?;
    let mut req = Box::new(FdRegRequest { hdr, body: NmreqPstFdReg::default() });
    req.hdr.nr_body = addr(&req.body);
    req.set_fd(fd)?;
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of<T>(v: &T) -> &[u8] {
        // SAFETY: every request struct is repr(C) with explicit padding fields, so all
        // of its bytes are initialised.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }
    }

    fn u16_at(b: &[u8], o: usize) -> u16 {
        u16::from_ne_bytes(b[o..o + 2].try_into().unwrap())
    }
    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_ne_bytes(b[o..o + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from_ne_bytes(b[o..o + 8].try_into().unwrap())
    }

    fn check_header(h: &[u8], reqtype: u16, name: &str) {
        assert_eq!(h.len(), 88);
        assert_eq!(u16_at(h, 0), 14, "version");
        assert_eq!(u16_at(h, 2), reqtype);
        assert_eq!(u32_at(h, 4), 0, "reserved");
        let n = name.len();
        assert_eq!(&h[8..8 + n], name.as_bytes());
        assert!(h[8 + n..72].iter().all(|&b| b == 0), "name NUL-terminated and zero-filled");
    }

    #[test]
    fn register_bytes_without_extmem() {
        let p = RegisterParams { tx_slots: 512, rx_slots: 256, extra_bufs: 1000, ..RegisterParams::default() };
        let req = register("pst:0", &p, None).unwrap();
        let h = bytes_of(req.header());
        check_header(h, 1, "pst:0");
        assert_eq!(u64_at(h, 72), 0, "no options");
        assert_eq!(u64_at(h, 80), req.body() as *const _ as u64, "body pointer patched");
        let b = bytes_of(req.body());
        assert_eq!(b.len(), 56);
        assert_eq!(u64_at(b, 0), 0);
        assert_eq!(u64_at(b, 8), 0);
        assert_eq!(u32_at(b, 16), 512);
        assert_eq!(u32_at(b, 20), 256);
        assert_eq!(u16_at(b, 24), 1);
        assert_eq!(u16_at(b, 26), 1);
        assert_eq!(u16_at(b, 28), 0);
        assert_eq!(u16_at(b, 30), 0);
        assert_eq!(u16_at(b, 32), 0, "mem id");
        assert_eq!(u16_at(b, 34), 0, "ringid");
        assert_eq!(u32_at(b, 36), mode::ALL_NIC);
        assert_eq!(u32_at(b, 40), 1000);
        assert_eq!(u32_at(b, 44), 0, "padding");
        assert_eq!(u64_at(b, 48), 0, "flags");
        assert!(req.extmem().is_none());
    }

    #[test]
    fn register_bytes_with_extmem_option() {
        let mut mem = vec![0u8; 4096];
        let info = NmreqPoolsInfo { nr_memsize: 4096, nr_buf_pool_objtotal: 7, ..NmreqPoolsInfo::default() };
        let x = ExtmemParams { usrptr: mem.as_mut_ptr(), info };
        let req = register("pst:0", &RegisterParams::default(), Some(&x)).unwrap();
        let h = bytes_of(req.header());
        check_header(h, 1, "pst:0");
        let opt = req.extmem().unwrap();
        assert_eq!(u64_at(h, 72), opt as *const _ as u64, "option pointer patched");
        let o = bytes_of(opt);
        assert_eq!(o.len(), 96);
        assert_eq!(u64_at(o, 0), 0, "end of option chain");
        assert_eq!(u32_at(o, 8), opttype::EXTMEM);
        assert_eq!(u32_at(o, 12), 0, "status");
        assert_eq!(u64_at(o, 16), 0, "fixed size");
        assert_eq!(u64_at(o, 24), mem.as_ptr() as u64);
        assert_eq!(u64_at(o, 32), 4096, "nr_memsize");
        assert_eq!(u32_at(o, 32 + 56), 7, "buf objtotal");
        assert!(o[34..88].iter().all(|&b| b == 0));
        assert!(o[92..96].iter().all(|&b| b == 0));
    }

    #[test]
    fn attach_bytes() {
        let req = pst_attach("eth1", 5).unwrap();
        let h = bytes_of(req.header());
        check_header(h, 16, "pst:eth1");
        assert_eq!(u64_at(h, 72), 0);
        assert_eq!(u64_at(h, 80), req.body() as *const _ as u64);
        let b = bytes_of(req.body());
        assert_eq!(b.len(), 64);
        assert_eq!(u16_at(b, 32), 5, "mem id");
        assert_eq!(u32_at(b, 36), mode::NIC_SW);
        let nonzero: Vec<usize> = (0..64).filter(|&i| b[i] != 0).collect();
        assert_eq!(nonzero, vec![32, 36], "everything else zero");
    }

    #[test]
    fn fd_reg_bytes_and_reuse() {
        let mut req = pst_fd_reg("pst:0", 7).unwrap();
        let h = bytes_of(req.header());
        check_header(h, 18, "pst:0");
        assert_eq!(u64_at(h, 80), req.body() as *const _ as u64);
        assert_eq!(bytes_of(req.body()), &[7, 0, 0, 0, 0, 0, 0, 0]);
        req.set_fd(65534).unwrap();
        assert_eq!(bytes_of(req.body()), &[0xFE, 0xFF, 0, 0, 0, 0, 0, 0]);
        assert_eq!(req.set_fd(65535), Err(RequestError::FdOutOfRange(65535)));
        assert_eq!(req.body().fd, 65534, "a refused fd leaves the request unchanged");
    }

    #[test]
    fn port_info_bytes() {
        let r = port_info("eth1").unwrap();
        check_header(bytes_of(r.header()), reqtype::PORT_INFO_GET, "eth1");
        assert_eq!(r.header().nr_body, &*r as *const PortInfoRequest as u64 + 88);
        assert!(bytes_of(r.body()).iter().all(|&b| b == 0));
    }

    #[test]
    fn detach_bytes() {
        let req = pst_detach("eth1").unwrap();
        let h = bytes_of(req.header());
        check_header(h, 17, "pst:eth1");
        assert_eq!(u64_at(h, 80), req.body() as *const _ as u64);
        assert_eq!(bytes_of(req.body()), &[0; 8]);
    }

    #[test]
    fn rejects_bad_names() {
        let long = "x".repeat(64);
        assert!(matches!(register(&long, &RegisterParams::default(), None), Err(RequestError::NameTooLong(_))));
        assert!(register(&"y".repeat(63), &RegisterParams::default(), None).is_ok());
        assert!(matches!(pst_fd_reg("pst\0:0", 4), Err(RequestError::BadName(_))));
        assert!(matches!(pst_attach("", 1), Err(RequestError::BadName(_))));
    }
}
