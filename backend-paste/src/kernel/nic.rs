//! The NIC a kernel PASTE port attaches to: its netmap geometry, and whether netmap
//! drives it natively.
//!
//! Owns two questions asked before REGISTER. PORT_INFO_GET on the NIC's name gives its
//! rings and slots (to size an extmem file). And the unpatched-driver trap (paste-abi
//! §10.1 point 6): with the kernel's own driver instead of netmap's patched one, netmap
//! falls back to its emulated ("generic") adapter; REGISTER and PST_ATTACH succeed, the
//! server says it listens, and no ARP is ever answered. No ioctl reports it, so the
//! evidence is read where the kernel leaves it: the kernel log
//! (`generic_netmap_attach: Emulated adapter for <if> created`, against the patched
//! driver's `<if>: netmap queues/slots: ...`), and sysfs (a patched driver module uses
//! netmap, so it is listed in `/sys/module/netmap/holders/`).
//!
//! It must never change the NIC or netmap's settings.

use std::fs;
use std::io::{self, Read};
use std::os::fd::RawFd;
use std::path::Path;

use super::extmem::NicGeometry;
use crate::sys::{ioctl, request};

/// PORT_INFO_GET on `ifname` through the control fd `fd`.
pub fn port_info(fd: RawFd, ifname: &str) -> io::Result<NicGeometry> {
    let mut req = request::port_info(ifname).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: the request lives in `req` (boxed) during the call.
    unsafe { ioctl::nioc_ctrl(fd, req.header_ptr()) }?;
    let b = req.body();
    Ok(NicGeometry {
        tx_rings: b.nr_tx_rings,
        rx_rings: b.nr_rx_rings,
        host_tx_rings: b.nr_host_tx_rings,
        host_rx_rings: b.nr_host_rx_rings,
        tx_slots: b.nr_tx_slots,
        rx_slots: b.nr_rx_slots,
    })
}

/// How netmap drives the NIC, as far as the evidence goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DriverMode {
    /// netmap's patched driver (native netmap mode).
    Native,
    /// netmap's emulated adapter: the driver is not netmap's patched one.
    Emulated {
        /// What showed it.
        evidence: String,
    },
    /// No evidence either way (kernel log unreadable, netmap or the driver built in).
    Unknown,
}

/// What the kernel log says last about `ifname`'s netmap adapter.
pub fn mode_from_kernel_log(log: &str, ifname: &str) -> DriverMode {
    let emulated = format!("Emulated adapter for {ifname} ");
    let native = format!("{ifname}: netmap queues/slots");
    let mut verdict = DriverMode::Unknown;
    for line in log.lines() {
        if line.contains(&emulated) {
            let text = line.split_once(';').map_or(line, |(_, m)| m).trim();
            verdict = DriverMode::Emulated { evidence: format!("the kernel log says \"{text}\"") };
        } else if line.contains(&native) {
            verdict = DriverMode::Native;
        }
    }
    verdict
}

/// What sysfs under `sys` says about `ifname`'s driver module and netmap.
pub fn mode_from_sysfs(sys: &Path, ifname: &str) -> DriverMode {
    let holders = sys.join("module/netmap/holders");
    if !holders.is_dir() {
        return DriverMode::Unknown;
    }
    let Ok(link) = fs::read_link(sys.join("class/net").join(ifname).join("device/driver/module")) else {
        return DriverMode::Unknown;
    };
    let Some(module) = link.file_name().map(|m| m.to_string_lossy().into_owned()) else { return DriverMode::Unknown };
    if holders.join(&module).exists() {
        DriverMode::Native
    } else {
        DriverMode::Emulated {
            evidence: format!(
                "its driver module {module} does not use netmap (not in {}/module/netmap/holders): it is the kernel's \
                 own {module}, not netmap's patched one",
                sys.display()
            ),
        }
    }
}

/// The kernel log, as far as `/dev/kmsg` lets us read it (`None` without the right).
pub fn read_kernel_log() -> Option<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open("/dev/kmsg").ok()?;
    let mut out = String::new();
    let mut rec = vec![0u8; 8192];
    // Each read returns one record, EAGAIN at the end; bounded.
    for _ in 0..100_000 {
        match f.read(&mut rec) {
            Ok(0) => break,
            Ok(n) => {
                out.push_str(&String::from_utf8_lossy(&rec[..n]));
                if !out.ends_with('\n') {
                    out.push('\n');
                }
            }
            // Records overwritten while reading: the next read goes on.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(_) => break,
        }
    }
    Some(out)
}

/// The verdict on `ifname`: the kernel log's latest word first, then sysfs.
pub fn driver_mode(ifname: &str) -> DriverMode {
    if let Some(log) = read_kernel_log() {
        let v = mode_from_kernel_log(&log, ifname);
        if v != DriverMode::Unknown {
            return v;
        }
    }
    mode_from_sysfs(Path::new("/sys"), ifname)
}

/// The start error's text for an emulated adapter.
pub fn emulated_refusal(ifname: &str, evidence: &str) -> String {
    format!(
        "netmap drives {ifname} through its emulated (generic) adapter, not natively: {evidence}. With an \
         unpatched NIC driver, PASTE registers and attaches, the server listens, and no ARP is ever answered \
         (dmesg shows \"generic_netmap_attach: Emulated adapter for {ifname} created\"). Load netmap's patched \
         driver for this NIC (built with netmap's LINUX/configure --drivers=..., it replaces the kernel's \
         module; then dmesg shows \"{ifname}: netmap queues/slots: ...\")"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn the_kernel_log_tells_an_emulated_adapter_from_a_native_one() {
        let emulated = "4,512,3000,-;generic_netmap_attach: Emulated adapter for eth0 created (prev was NULL)\n";
        let native = "6,300,2000,-;net eth0: netmap queues/slots: TX 1/256, RX 1/256\n";
        assert!(
            matches!(mode_from_kernel_log(emulated, "eth0"), DriverMode::Emulated { evidence } if evidence.contains("Emulated adapter for eth0"))
        );
        assert_eq!(mode_from_kernel_log(native, "eth0"), DriverMode::Native);
        // The latest word counts: the patched driver loaded after the kernel's own.
        assert_eq!(mode_from_kernel_log(&format!("{emulated}{native}"), "eth0"), DriverMode::Native);
        assert!(matches!(mode_from_kernel_log(&format!("{native}{emulated}"), "eth0"), DriverMode::Emulated { .. }));
        // Another interface's lines say nothing about this one.
        assert_eq!(mode_from_kernel_log(emulated, "eth1"), DriverMode::Unknown);
        assert_eq!(mode_from_kernel_log(emulated, "eth"), DriverMode::Unknown);
    }

    #[test]
    fn sysfs_tells_whether_the_driver_module_uses_netmap() {
        let sys = tempfile::tempdir().unwrap();
        let root = sys.path();
        assert_eq!(mode_from_sysfs(root, "eth0"), DriverMode::Unknown, "no netmap module: no evidence");
        fs::create_dir_all(root.join("module/netmap/holders")).unwrap();
        fs::create_dir_all(root.join("module/e1000")).unwrap();
        fs::create_dir_all(root.join("devices/pci0/0000:00:03.0/driver")).unwrap();
        fs::create_dir_all(root.join("class/net/eth0")).unwrap();
        symlink(root.join("devices/pci0/0000:00:03.0"), root.join("class/net/eth0/device")).unwrap();
        symlink("../../../../module/e1000", root.join("devices/pci0/0000:00:03.0/driver/module")).unwrap();
        let v = mode_from_sysfs(root, "eth0");
        assert!(matches!(&v, DriverMode::Emulated { evidence } if evidence.contains("e1000")), "{v:?}");
        symlink("../../e1000", root.join("module/netmap/holders/e1000")).unwrap();
        assert_eq!(mode_from_sysfs(root, "eth0"), DriverMode::Native);
        assert_eq!(mode_from_sysfs(root, "eth9"), DriverMode::Unknown);
    }

    #[test]
    fn the_refusal_names_the_trap_and_the_fix() {
        let text = emulated_refusal("eth0", "the kernel log says \"...\"");
        for needle in ["emulated (generic) adapter", "no ARP", "generic_netmap_attach: Emulated adapter", "patched"] {
            assert!(text.contains(needle), "{needle:?} missing from {text}");
        }
    }
}
