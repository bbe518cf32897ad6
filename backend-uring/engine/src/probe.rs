//! Ring setup and feature probing: which io_uring this kernel offers, and why not.
//!
//! Owns the creation of the [`IoUring`] (setup-flag fallbacks), the [`UringProbe`]
//! record of what the kernel supports (flags on existing opcodes are inferred from the
//! version, except the multishot recv byte limit, which is tried once on a socketpair),
//! and [`SetupError`], the readable reason a ring
//! could not be made (seccomp, `kernel.io_uring_disabled`, `RLIMIT_MEMLOCK`, a kernel
//! too old). It is shared with the PASTE backend's emulated provider.
//!
//! It must never fall back silently to something that is not io_uring (the runtime
//! chooses the next backend and says why), and never keeps a ring it cannot use:
//! [`open_ring`] either returns a ring that has everything [`UringProbe::check_required`]
//! demands, or an error naming what is missing.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use io_uring::types::CancelBuilder;
use io_uring::{cqueue, opcode, IoUring, Probe};
use paste_rt_core::{BackendKind, StartError};

use crate::buf_ring::BufRing;
use crate::recv;
use crate::submit::{self, QuietCompletions, Wait};

/// The oldest kernel this crate runs on: multishot recv with provided buffer rings
/// arrived in Linux 6.0.
pub const MIN_KERNEL: (u32, u32) = (6, 0);

/// Ring sizes asked of the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingConfig {
    /// Submission queue entries (rounded up to a power of two by the kernel, clamped
    /// to its maximum).
    pub sq_entries: u32,
    /// Completion queue entries (at least `sq_entries`; clamped likewise).
    pub cq_entries: u32,
}

/// How the kernel runs completion work for this ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskrunMode {
    /// `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN` (6.1+): completion work
    /// runs only inside our `io_uring_enter`, never interrupting the thread.
    DeferTaskrun,
    /// `IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG` (5.19+).
    CoopTaskrun,
    /// Neither: completion work interrupts the thread (signals-style task work).
    Default,
}

impl TaskrunMode {
    fn name(self) -> &'static str {
        match self {
            TaskrunMode::DeferTaskrun => "single_issuer+defer_taskrun",
            TaskrunMode::CoopTaskrun => "coop_taskrun",
            TaskrunMode::Default => "default_taskrun",
        }
    }
}

/// What the running kernel's io_uring offers, as probed when the ring was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UringProbe {
    /// `uname -r`.
    pub kernel_release: String,
    /// Major and minor version parsed from `kernel_release` (0.0 if unparsable).
    pub kernel: (u32, u32),
    /// The task-run setup flags the ring was created with.
    pub taskrun: TaskrunMode,
    /// Whether `IORING_SETUP_SUBMIT_ALL` is set (a bad SQE does not stop the batch).
    pub submit_all: bool,
    /// Submission queue entries granted.
    pub sq_entries: u32,
    /// Completion queue entries granted.
    pub cq_entries: u32,
    /// `IORING_FEAT_EXT_ARG` (5.11): a timeout passed to `io_uring_enter` itself.
    pub ext_arg: bool,
    /// `IORING_FEAT_NODROP`: completions are never dropped on CQ overflow.
    pub nodrop: bool,
    /// `IORING_REGISTER_PBUF_RING` (5.19): provided buffer rings.
    pub buf_ring: bool,
    /// Multishot accept (5.19).
    pub multishot_accept: bool,
    /// Multishot recv (6.0).
    pub multishot_recv: bool,
    /// `IORING_FEAT_RECVSEND_BUNDLE` (6.10): one recv completion may fill several buffers.
    pub recv_bundle: bool,
    /// A byte limit per multishot recv arming (`sqe->optlen`, "mshot_total_len", 6.16):
    /// the multishot ends without `IORING_CQE_F_MORE` once that many bytes arrived.
    /// Probed by arming one on a socketpair, not inferred from the version.
    pub recv_limit: bool,
    /// `IORING_FEAT_MIN_TIMEOUT` (6.12): a wait for several completions that settles
    /// for any one once a shorter first timeout passes (`min_wait_usec`); lets a tick
    /// leave send completions nobody waits for in the completion queue (see
    /// [`EngineConfig::quiet_send_wait`](crate::EngineConfig::quiet_send_wait)).
    pub min_timeout: bool,
    /// Opcodes this crate needs that the kernel does not report as supported.
    pub missing_opcodes: Vec<&'static str>,
}

impl UringProbe {
    /// One line: kernel, setup flags, sizes and features.
    pub fn describe(&self) -> String {
        let flag = |on: bool, name: &str| if on { name.to_string() } else { format!("no-{name}") };
        format!(
            "kernel {} {}{} sq={} cq={} {} {} {} {} {} {} {} {}",
            self.kernel_release,
            self.taskrun.name(),
            if self.submit_all { "+submit_all" } else { "" },
            self.sq_entries,
            self.cq_entries,
            flag(self.ext_arg, "ext_arg"),
            flag(self.nodrop, "nodrop"),
            flag(self.buf_ring, "buf_ring"),
            flag(self.multishot_accept, "multishot_accept"),
            flag(self.multishot_recv, "multishot_recv"),
            flag(self.recv_bundle, "recv_bundle"),
            flag(self.recv_limit, "recv_limit"),
            flag(self.min_timeout, "min_timeout"),
        )
    }

    /// Checks what the data path cannot do without, naming the kernel version that
    /// brought the missing piece.
    pub fn check_required(&self) -> Result<(), SetupError> {
        let too_old = |what: &str, since: &str| SetupError {
            what: "io_uring probe",
            reason: format!(
                "kernel {} lacks {what} (Linux {since}+); paste-rt's io_uring backend needs Linux {}.{} or newer",
                self.kernel_release, MIN_KERNEL.0, MIN_KERNEL.1
            ),
            errno: None,
        };
        if !self.ext_arg {
            return Err(too_old("IORING_FEAT_EXT_ARG (a wait timeout inside io_uring_enter)", "5.11"));
        }
        if !self.buf_ring {
            return Err(too_old("provided buffer rings (IORING_REGISTER_PBUF_RING)", "5.19"));
        }
        if !self.multishot_accept {
            return Err(too_old("multishot accept", "5.19"));
        }
        if !self.multishot_recv {
            return Err(too_old("multishot recv", "6.0"));
        }
        if !self.missing_opcodes.is_empty() {
            return Err(too_old(&format!("the opcodes {}", self.missing_opcodes.join(", ")), "6.0"));
        }
        Ok(())
    }
}

/// Why a ring could not be made or used, readable by a user.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct SetupError {
    /// The step that failed (e.g. `"io_uring_setup"`).
    pub what: &'static str,
    /// What happened and what to do about it.
    pub reason: String,
    /// The errno, when a system call failed.
    pub errno: Option<i32>,
}

impl SetupError {
    /// A failed system call, with the errno explained where paste-rt knows more.
    pub fn os(what: &'static str, err: &io::Error) -> SetupError {
        SetupError { what, reason: err.to_string(), errno: err.raw_os_error() }
    }

    /// The same failure as a [`StartError`] of the backend `backend`.
    pub fn into_start_error(self, backend: BackendKind) -> StartError {
        StartError { backend, reason: self.to_string(), errno: self.errno }
    }
}

/// Creates a ring with the best task-run mode the kernel accepts, probes it, and
/// checks the features the data path needs ([`UringProbe::check_required`]).
///
/// Setup flags are tried in order `SINGLE_ISSUER|DEFER_TASKRUN`, `COOP_TASKRUN|TASKRUN_FLAG`,
/// none (each with `SUBMIT_ALL`, then without anything); only `EINVAL` (flag unknown to
/// this kernel) moves on to the next, every other error is reported. With
/// `DEFER_TASKRUN` the ring may only be entered from the thread that created it.
pub fn open_ring(config: &RingConfig) -> Result<(IoUring, UringProbe), SetupError> {
    let attempts = [
        (TaskrunMode::DeferTaskrun, true),
        (TaskrunMode::CoopTaskrun, true),
        (TaskrunMode::Default, true),
        (TaskrunMode::Default, false),
    ];
    let sq = config.sq_entries.max(1);
    let cq = config.cq_entries.max(sq);
    let mut last = None;
    for (mode, submit_all) in attempts {
        let mut builder = IoUring::builder();
        builder.setup_clamp().setup_cqsize(cq);
        match mode {
            TaskrunMode::DeferTaskrun => {
                builder.setup_single_issuer().setup_defer_taskrun();
            }
            TaskrunMode::CoopTaskrun => {
                builder.setup_coop_taskrun().setup_taskrun_flag();
            }
            TaskrunMode::Default => {}
        }
        if submit_all {
            builder.setup_submit_all();
        }
        match builder.build(sq) {
            Ok(mut ring) => {
                let mut probe = probe_ring(&ring, mode, submit_all);
                probe.check_required()?;
                probe.recv_limit = probe_recv_limit(&mut ring);
                return Ok((ring, probe));
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(e) => return Err(explain_setup_error(&e)),
        }
    }
    let e = last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL));
    Err(SetupError {
        what: "io_uring_setup",
        reason: format!("{e}: the kernel rejects even a plain ring (io_uring too old or broken)"),
        errno: e.raw_os_error(),
    })
}

fn probe_ring(ring: &IoUring, taskrun: TaskrunMode, submit_all: bool) -> UringProbe {
    let (kernel_release, kernel) = kernel_version();
    let params = ring.params();
    let mut probe = Probe::new();
    let have_probe = ring.submitter().register_probe(&mut probe).is_ok();
    let needed: [(u8, &'static str); 9] = [
        (opcode::AcceptMulti::CODE, "ACCEPT"),
        (opcode::RecvMulti::CODE, "RECV"),
        (opcode::Send::CODE, "SEND"),
        (opcode::SendMsg::CODE, "SENDMSG"),
        (opcode::Connect::CODE, "CONNECT"),
        (opcode::Close::CODE, "CLOSE"),
        (opcode::Shutdown::CODE, "SHUTDOWN"),
        (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
        (opcode::Read::CODE, "READ"),
    ];
    let missing_opcodes = if have_probe {
        needed.iter().filter(|(code, _)| !probe.is_supported(*code)).map(|(_, name)| *name).collect()
    } else {
        needed.iter().map(|(_, name)| *name).collect()
    };
    UringProbe {
        kernel_release,
        kernel,
        taskrun,
        submit_all,
        sq_entries: params.sq_entries(),
        cq_entries: params.cq_entries(),
        ext_arg: params.is_feature_ext_arg(),
        nodrop: params.is_feature_nodrop(),
        buf_ring: probe_buf_ring(ring),
        // Flags on existing opcodes cannot be probed; they came with these releases.
        multishot_accept: kernel >= (5, 19),
        multishot_recv: kernel >= (6, 0),
        recv_bundle: params.is_feature_recvsend_bundle(),
        // Needs `&mut IoUring`: probed by `open_ring` once the rest is known.
        recv_limit: false,
        min_timeout: params.is_feature_min_timeout(),
        missing_opcodes,
    }
}

/// Whether multishot recv honours a byte limit per arming (`sqe->optlen`, 6.16).
///
/// Arms a multishot recv limited to 1 byte on a socketpair that holds 3 bytes, with a
/// one-buffer ring under a group id nobody uses. A kernel with the limit ends the
/// multishot with the data and without `F_MORE`; an older one rejects the non-zero
/// `optlen` with `EINVAL` (a kernel that ignored it would keep the multishot going:
/// also "no"). The ring is fresh, so every completion seen here is the probe's; it
/// leaves the completion queue empty. System calls are fine here: no tick runs yet.
fn probe_recv_limit(ring: &mut IoUring) -> bool {
    const PROBE_BGID: u16 = u16::MAX;
    const UD: u64 = u64::MAX;
    let mut fds = [-1; 2];
    // SAFETY: `fds` is a valid array of two ints for socketpair to fill.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return false;
    }
    // SAFETY: both fds were just created by socketpair and are owned by nobody else.
    let (rx, tx) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: writes 3 bytes from a live array to a socket we own.
    if unsafe { libc::write(tx.as_raw_fd(), b"abc".as_ptr().cast(), 3) } != 3 {
        return false;
    }
    let Ok(mut buf_ring) = BufRing::new(&ring.submitter(), PROBE_BGID, 1, 64, 0, 1) else { return false };
    // The kernel may write into this buffer until the recv is over; it is leaked
    // below if that cannot be established.
    let data = Box::leak(vec![0u8; 64].into_boxed_slice());
    // SAFETY: `data` is 64 writable bytes that nothing else touches while the ring
    // may hold it (it is only freed once the recv is known to be over).
    unsafe { buf_ring.push(0, data.as_mut_ptr()) };
    buf_ring.publish();
    let entry = recv::multishot_recv(rx.as_raw_fd(), PROBE_BGID, false, 1).user_data(UD);
    // SAFETY: the SQE points at the registered buffer ring and `data`, both kept alive
    // until the recv is over (or leaked).
    let pushed = unsafe { ring.submission().push(&entry) }.is_ok();
    let mut first: Option<(i32, u32)> = None;
    let mut over = !pushed;
    let wait = Wait::For(Duration::from_millis(500));
    // SAFETY: `ring` is borrowed mutably here, so no view of it lives elsewhere; the
    // SQE's memory is kept as said above.
    if pushed && unsafe { submit::enter(ring, wait, QuietCompletions::NONE) }.is_ok() {
        for cqe in ring.completion() {
            if cqe.user_data() == UD {
                first.get_or_insert((cqe.result(), cqe.flags()));
                over |= !cqueue::more(cqe.flags());
            }
        }
    }
    if !over {
        // Still armed (the limit was ignored, or no completion came): cancel it and
        // wait for its last completion.
        let timeout = io_uring::types::Timespec::new().sec(1);
        over = ring.submitter().register_sync_cancel(Some(timeout), CancelBuilder::user_data(UD)).is_ok();
        if over {
            // SAFETY: as for the enter above.
            let _ = unsafe { submit::enter(ring, Wait::No, QuietCompletions::NONE) };
            ring.completion().for_each(drop);
        }
    }
    if over && buf_ring.unregister(&ring.submitter()).is_ok() {
        // SAFETY: leaked above; the recv is over and the ring unregistered, so the
        // kernel no longer writes it, and this is the only pointer left.
        drop(unsafe { Box::from_raw(data as *mut [u8]) });
    }
    matches!(first, Some((res, flags)) if res > 0 && !cqueue::more(flags))
}

/// Registers and unregisters a one-entry buffer ring under a group id nobody uses.
fn probe_buf_ring(ring: &IoUring) -> bool {
    const PROBE_BGID: u16 = u16::MAX;
    let page = 4096;
    // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
    let mem = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if mem == libc::MAP_FAILED {
        return false;
    }
    // SAFETY: `mem` is a page-aligned, zeroed page that outlives the registration
    // (it is unregistered right below, before the unmap).
    let ok = unsafe { ring.submitter().register_buf_ring_with_flags(mem as u64, 1, PROBE_BGID, 0) }.is_ok();
    if ok {
        let _ = ring.submitter().unregister_buf_ring(PROBE_BGID);
    }
    // SAFETY: `mem` came from the mmap above and is no longer registered.
    unsafe { libc::munmap(mem, page) };
    ok
}

/// `uname -r` and its parsed major.minor.
pub fn kernel_version() -> (String, (u32, u32)) {
    // SAFETY: utsname is plain old data; uname fills it in.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return (String::from("unknown"), (0, 0));
    }
    // SAFETY: uname NUL-terminates `release` within the array.
    let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) }.to_string_lossy().into_owned();
    let version = parse_version(&release);
    (release, version)
}

fn parse_version(release: &str) -> (u32, u32) {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let minor = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (major, minor)
}

/// What `/proc/sys/kernel/io_uring_disabled` says, if it exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DisabledSysctl {
    /// 1: only members of `kernel.io_uring_group` (and root) may create rings.
    GroupOnly,
    /// 2: nobody may create rings.
    All,
}

impl fmt::Display for DisabledSysctl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisabledSysctl::GroupOnly => f.write_str(
                "io_uring is restricted by /proc/sys/kernel/io_uring_disabled = 1 \
                 (only the group in kernel.io_uring_group may use it)",
            ),
            DisabledSysctl::All => f.write_str("io_uring is disabled by /proc/sys/kernel/io_uring_disabled = 2"),
        }
    }
}

fn read_disabled_sysctl() -> Option<DisabledSysctl> {
    let text = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok()?;
    match text.trim() {
        "1" => Some(DisabledSysctl::GroupOnly),
        "2" => Some(DisabledSysctl::All),
        _ => None,
    }
}

fn explain_setup_error(err: &io::Error) -> SetupError {
    let errno = err.raw_os_error();
    let reason = match errno {
        Some(libc::EPERM) => match read_disabled_sysctl() {
            Some(sysctl) => format!("EPERM: {sysctl}"),
            None => "EPERM: io_uring is blocked by a seccomp filter or container policy \
                     (e.g. Docker's default seccomp profile)"
                .to_string(),
        },
        Some(libc::ENOSYS) => match read_disabled_sysctl() {
            Some(sysctl) => format!("ENOSYS: {sysctl}"),
            None => "ENOSYS: this kernel has no io_uring (built without CONFIG_IO_URING, \
                     or a seccomp filter hides it)"
                .to_string(),
        },
        Some(libc::ENOMEM) => format!(
            "ENOMEM: cannot lock the ring memory; RLIMIT_MEMLOCK is {} (raise it with `ulimit -l` \
             or LimitMEMLOCK=, or ask for fewer ring entries)",
            memlock_limit()
        ),
        _ => err.to_string(),
    };
    SetupError { what: "io_uring_setup", reason, errno }
}

fn memlock_limit() -> String {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return "unknown".to_string();
    }
    if lim.rlim_cur == libc::RLIM_INFINITY {
        "unlimited".to_string()
    } else {
        format!("{} KiB", lim.rlim_cur / 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_versions() {
        assert_eq!(parse_version("6.18.44-fc-v769"), (6, 18));
        assert_eq!(parse_version("5.4.0-150-generic"), (5, 4));
        assert_eq!(parse_version("garbage"), (0, 0));
    }

    #[test]
    fn explains_errnos() {
        let perm = explain_setup_error(&io::Error::from_raw_os_error(libc::EPERM));
        assert_eq!(perm.errno, Some(libc::EPERM));
        assert!(perm.reason.contains("seccomp") || perm.reason.contains("io_uring_disabled"), "{perm}");
        let nomem = explain_setup_error(&io::Error::from_raw_os_error(libc::ENOMEM));
        assert!(nomem.reason.contains("RLIMIT_MEMLOCK"), "{nomem}");
        let nosys = explain_setup_error(&io::Error::from_raw_os_error(libc::ENOSYS));
        assert!(nosys.to_string().starts_with("io_uring_setup: ENOSYS"), "{nosys}");
    }

    #[test]
    fn old_kernels_are_named() {
        let (ring, mut probe) = open_ring(&RingConfig { sq_entries: 8, cq_entries: 16 }).unwrap();
        drop(ring);
        probe.ext_arg = false;
        let err = probe.check_required().unwrap_err().into_start_error(BackendKind::Uring);
        assert!(err.reason.contains("5.11") && err.reason.contains("6.0"), "{err}");
        probe.ext_arg = true;
        probe.buf_ring = false;
        assert!(probe.check_required().unwrap_err().reason.contains("5.19"));
    }

    #[test]
    fn this_kernel_has_everything() {
        let (_ring, probe) = open_ring(&RingConfig { sq_entries: 8, cq_entries: 16 }).unwrap();
        assert!(probe.ext_arg && probe.buf_ring && probe.multishot_recv, "{}", probe.describe());
        assert!(probe.missing_opcodes.is_empty());
        assert!(!probe.describe().contains('\n'));
        // The byte limit per multishot recv arrived in 6.16; the probe must agree.
        assert_eq!(probe.recv_limit, probe.kernel >= (6, 16), "{}", probe.describe());
        assert!(probe.describe().contains("recv_limit"));
        // The two-stage wait arrived in 6.12.
        assert_eq!(probe.min_timeout, probe.kernel >= (6, 12), "{}", probe.describe());
    }
}
