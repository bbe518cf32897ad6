//! The operator's overrides: every `PASTE_RT_*` environment variable the runtime
//! reads is named, read and applied here, and nowhere else.
//!
//! A program configures its runtime through [`Builder`](crate::runtime::Builder)
//! (backend, pool, typed backend configs). The environment stays the operator's way
//! to change that at start without rebuilding: a variable that is set (and not
//! empty) wins over what the program configured; an unset or empty one changes
//! nothing. A value that cannot be used is a start error naming the variable, never
//! silently ignored. `docs/configuration.md` lists every variable; a test checks that
//! it lists each one of [`ALL`].
//!
//! This module owns the variables' names and their parsing. It must never start a
//! backend or decide which one runs: it only turns the program's settings plus the
//! environment into the settings that are used.

use std::path::PathBuf;

use paste_rt_core::PoolConfig;
use paste_rt_paste::{ExtmemConfig, KernelConfig};

use crate::build_error::{BuildError, ChoiceOrigin};
use crate::select::BackendChoice;

/// The backend: `auto|paste|paste-emu|uring|epoll` (wins over `Builder::backend`).
pub const BACKEND: &str = "PASTE_RT_BACKEND";
/// Kernel PASTE: the NIC the `pst` port attaches to (`KernelConfig::ifname`).
pub const PASTE_IF: &str = "PASTE_RT_PASTE_IF";
/// Kernel PASTE: rings of the port, 1 to 64 (`KernelConfig::rings`).
pub const PASTE_RINGS: &str = "PASTE_RT_PASTE_RINGS";
/// Kernel PASTE: slots per ring, 1 to 2048 (`KernelConfig::slots`).
pub const PASTE_SLOTS: &str = "PASTE_RT_PASTE_SLOTS";
/// Kernel PASTE: extra buffers asked for at registration (else the builder's
/// `buffers`).
pub const PASTE_EXTRA_BUFS: &str = "PASTE_RT_PASTE_EXTRA_BUFS";
/// Kernel PASTE: the extmem file backing the whole port (persistent pool).
pub const PASTE_EXTMEM: &str = "PASTE_RT_PASTE_EXTMEM";
/// Kernel PASTE: the extmem size in MiB when the file is created or grown (default 256).
pub const PASTE_EXTMEM_MB: &str = "PASTE_RT_PASTE_EXTMEM_MB";
/// Kernel PASTE: the netmap control device (default `/dev/netmap`).
pub const PASTE_DEVICE: &str = "PASTE_RT_PASTE_DEVICE";

/// Every variable the runtime reads at start.
pub const ALL: [&str; 8] =
    [BACKEND, PASTE_IF, PASTE_RINGS, PASTE_SLOTS, PASTE_EXTRA_BUFS, PASTE_EXTMEM, PASTE_EXTMEM_MB, PASTE_DEVICE];

/// Default extmem size when neither the program nor the operator gives one.
const DEFAULT_EXTMEM_MB: u64 = 256;

/// The process environment: a set, non-empty variable's value.
pub(crate) fn from_process(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.is_empty())
}

/// The backend choice: `PASTE_RT_BACKEND` when `use_env` and set, else the
/// program's (`program` holds the name it gave when that name was not valid).
pub(crate) fn backend_choice(
    get: &impl Fn(&str) -> Option<String>,
    use_env: bool,
    program: &Result<BackendChoice, String>,
) -> Result<BackendChoice, BuildError> {
    if use_env {
        if let Some(name) = get(BACKEND) {
            return name.parse().map_err(|_| BuildError::UnknownBackend { name, origin: ChoiceOrigin::Environment });
        }
    }
    program.clone().map_err(|name| BuildError::UnknownBackend { name, origin: ChoiceOrigin::Program })
}

/// The kernel PASTE configuration used: the program's (or the defaults, with no NIC
/// named), the pool's buffer count as extra buffers, then every variable set.
pub(crate) fn kernel_config(
    get: &impl Fn(&str) -> Option<String>,
    program: Option<&KernelConfig>,
    pool: &PoolConfig,
) -> Result<KernelConfig, BuildError> {
    let mut cfg = program.cloned().unwrap_or_default();
    cfg.extra_bufs = pool.count;
    if let Some(ifname) = get(PASTE_IF) {
        cfg.ifname = ifname;
    }
    if let Some(rings) = number(get, PASTE_RINGS, "a number of rings from 1 to 64")? {
        cfg.rings = rings;
    }
    if let Some(slots) = number(get, PASTE_SLOTS, "a number of slots per ring from 1 to 2048")? {
        cfg.slots = slots;
    }
    if let Some(extra) = number(get, PASTE_EXTRA_BUFS, "a number of buffers")? {
        cfg.extra_bufs = extra;
    }
    let size_mb: Option<u64> = number(get, PASTE_EXTMEM_MB, "a size in MiB")?;
    if let Some(mb) = size_mb {
        cfg.extmem_size = mb << 20;
    }
    match get(PASTE_EXTMEM) {
        // `off`: never extmem (a file-backed pool is then refused on paste).
        Some(v) if v == paste_rt_paste::kernel::EXTMEM_OFF => {
            cfg.extmem_allowed = false;
            cfg.extmem = None;
        }
        Some(path) => {
            let size = cfg.extmem.as_ref().map_or(DEFAULT_EXTMEM_MB << 20, |e| e.size);
            cfg.extmem = Some(ExtmemConfig { path: PathBuf::from(path), size, persistent: false });
        }
        None => {}
    }
    if let (Some(mb), Some(extmem)) = (size_mb, cfg.extmem.as_mut()) {
        extmem.size = mb << 20;
    }
    if let Some(device) = get(PASTE_DEVICE) {
        cfg.device = PathBuf::from(device);
    }
    Ok(cfg)
}

/// A numeric variable: `None` when unset, an error naming it when not a number.
fn number<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    expected: &str,
) -> Result<Option<T>, BuildError> {
    match get(var) {
        None => Ok(None),
        Some(value) => match value.trim().parse() {
            Ok(n) => Ok(Some(n)),
            Err(_) => Err(BuildError::BadOverride { var, value, expected: expected.to_string() }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paste_rt_core::BackendKind;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|(name, _)| *name == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn the_environment_wins_over_the_program_backend_unless_ignored() {
        let program = Ok(BackendChoice::Only(BackendKind::Epoll));
        let uring = env(&[(BACKEND, "uring")]);
        assert_eq!(backend_choice(&uring, true, &program).unwrap(), BackendChoice::Only(BackendKind::Uring));
        assert_eq!(backend_choice(&uring, false, &program).unwrap(), BackendChoice::Only(BackendKind::Epoll));
        assert_eq!(backend_choice(&env(&[]), true, &program).unwrap(), BackendChoice::Only(BackendKind::Epoll));
    }

    #[test]
    fn an_unknown_backend_name_is_blamed_on_whoever_gave_it() {
        let e = backend_choice(&env(&[(BACKEND, "iouring")]), true, &Ok(BackendChoice::Auto)).unwrap_err();
        assert!(
            matches!(&e, BuildError::UnknownBackend { name, origin: ChoiceOrigin::Environment } if name == "iouring")
        );
        let e = backend_choice(&env(&[]), true, &Err("bogus".into())).unwrap_err();
        assert!(matches!(&e, BuildError::UnknownBackend { name, origin: ChoiceOrigin::Program } if name == "bogus"));
        // The operator's valid choice repairs a program's bad one.
        assert_eq!(
            backend_choice(&env(&[(BACKEND, "epoll")]), true, &Err("bogus".into())).unwrap(),
            BackendChoice::Only(BackendKind::Epoll)
        );
    }

    #[test]
    fn kernel_settings_come_from_the_program_and_each_set_variable_wins() {
        let program = KernelConfig {
            ifname: "eth1".into(),
            rings: 2,
            slots: 512,
            extmem: Some(ExtmemConfig { path: "/pm/a".into(), size: 8 << 20, persistent: false }),
            ..KernelConfig::default()
        };
        let pool = PoolConfig { count: 777, ..PoolConfig::default() };
        let cfg = kernel_config(&env(&[]), Some(&program), &pool).unwrap();
        assert_eq!((cfg.ifname.as_str(), cfg.rings, cfg.slots, cfg.extra_bufs), ("eth1", 2, 512, 777));
        assert_eq!(cfg.device, PathBuf::from("/dev/netmap"));

        let operator = env(&[
            (PASTE_IF, "eth7"),
            (PASTE_SLOTS, "256"),
            (PASTE_EXTRA_BUFS, "99"),
            (PASTE_EXTMEM_MB, "64"),
            (PASTE_DEVICE, "/dev/other"),
        ]);
        let cfg = kernel_config(&operator, Some(&program), &pool).unwrap();
        assert_eq!((cfg.ifname.as_str(), cfg.rings, cfg.slots, cfg.extra_bufs), ("eth7", 2, 256, 99));
        assert_eq!(cfg.extmem, Some(ExtmemConfig { path: "/pm/a".into(), size: 64 << 20, persistent: false }));
        assert_eq!(cfg.device, PathBuf::from("/dev/other"));

        // Nothing from the program: the defaults, then the operator's.
        let cfg = kernel_config(&env(&[(PASTE_EXTMEM, "/pm/b")]), None, &pool).unwrap();
        assert_eq!(cfg.ifname, "");
        assert_eq!(cfg.extmem, Some(ExtmemConfig { path: "/pm/b".into(), size: 256 << 20, persistent: false }));
    }

    #[test]
    fn a_malformed_number_is_an_error_naming_the_variable() {
        let e = kernel_config(&env(&[(PASTE_RINGS, "two")]), None, &PoolConfig::default()).unwrap_err();
        assert_eq!(e.to_string(), "PASTE_RT_PASTE_RINGS=\"two\" cannot be used: a number of rings from 1 to 64");
    }
}
