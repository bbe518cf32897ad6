//! [`Builder`]: configure and start runtimes — backend choice, buffer pool, each
//! backend's typed settings, and thread-per-core groups.
//!
//! Owns turning the program's settings plus the operator's overrides
//! ([`crate::overrides`]) into started runtimes, and the start of a thread group: the
//! first runtime chooses the backend (resolving `auto` once), every sibling starts
//! exactly that one, and the group runs only if all of them started — otherwise the
//! first error is returned and every started thread is stopped. It must never run a
//! tick itself or pick a backend by any other rule than [`select`].

use std::future::Future;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;

use paste_rt_core::{PoolConfig, PoolMemory};
use paste_rt_epoll::EpollConfig;
use paste_rt_paste::{EmuSettings, KernelConfig};
use paste_rt_uring::UringConfig;

use crate::build_error::BuildError;
use crate::driver::Driver;
use crate::overrides;
use crate::runtime::Runtime;
use crate::select::{self, BackendChoice, BackendSettings, Selection};

/// The environment variable that picks the backend at start:
/// `auto|paste|paste-emu|uring|epoll`. It overrides the program's default
/// ([`Builder::backend`]) so that one binary can be A/B-compared without rebuilding.
/// Every variable the runtime reads is listed in [`crate::overrides`].
pub const BACKEND_ENV: &str = overrides::BACKEND;

/// Configures and starts runtimes.
///
/// ```
/// use paste_rt::runtime::Builder;
/// let rt = Builder::new().backend("epoll").buffers(1024).build().expect("epoll starts everywhere");
/// assert_eq!(rt.block_on(async { 1 }), 1);
/// ```
///
/// Each backend's own settings are typed configs; the pool settings of the builder
/// ([`buffers`](Self::buffers), [`buffer_size`](Self::buffer_size),
/// [`pool_file`](Self::pool_file), [`pool`](Self::pool)) are applied on top of them:
///
/// ```
/// use paste_rt::{config::EpollConfig, runtime::Builder};
/// let rt = Builder::new()
///     .backend("epoll")
///     .epoll_config(EpollConfig { read_budget: 4, ..EpollConfig::default() })
///     .build()
///     .unwrap();
/// assert!(rt.selection().detail.contains("read budget 4"));
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    choice: Result<BackendChoice, String>,
    use_env: bool,
    threads: usize,
    pool: PoolConfig,
    epoll: EpollConfig,
    uring: UringConfig,
    paste: Option<KernelConfig>,
    paste_emu: Option<EmuSettings>,
    quiet: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// Defaults: backend `auto` (or `PASTE_RT_BACKEND`), one thread, 4096 buffers of
    /// 2048 bytes in anonymous memory, each backend's default config.
    pub fn new() -> Builder {
        Builder {
            choice: Ok(BackendChoice::Auto),
            use_env: true,
            threads: 1,
            pool: PoolConfig::default(),
            epoll: EpollConfig::default(),
            uring: UringConfig::default(),
            paste: None,
            paste_emu: None,
            quiet: false,
        }
    }

    /// The program's backend: `auto`, `paste`, `paste-emu`, `uring` or `epoll`.
    /// `PASTE_RT_BACKEND`, when set, overrides it (see [`ignore_env`](Self::ignore_env)).
    /// An unknown name makes [`build`](Self::build) fail with
    /// [`BuildError::UnknownBackend`].
    pub fn backend(mut self, name: &str) -> Builder {
        self.choice = name.parse().map_err(|_| name.to_string());
        self
    }

    /// The backend, typed.
    pub fn backend_choice(mut self, choice: BackendChoice) -> Builder {
        self.choice = Ok(choice);
        self
    }

    /// Do not read `PASTE_RT_BACKEND` (tests and harnesses that pick for themselves,
    /// programs whose own flag already read it). The backends' own overrides
    /// (`PASTE_RT_PASTE_*`) still apply.
    pub fn ignore_env(mut self) -> Builder {
        self.use_env = false;
        self
    }

    /// Thread-per-core: [`run_main`](Self::run_main) starts `n` runtimes, one per
    /// thread (pinned to a core where possible), each running the body; listeners
    /// bound inside share their port through `SO_REUSEPORT`. All of them run the
    /// backend the first one chose.
    pub fn threads(mut self, n: usize) -> Builder {
        self.threads = n.max(1);
        self
    }

    /// Number of pool buffers.
    pub fn buffers(mut self, count: u32) -> Builder {
        self.pool.count = count;
        self
    }

    /// Bytes per pool buffer (default 2048, as netmap).
    pub fn buffer_size(mut self, bytes: u32) -> Builder {
        self.pool.buf_size = bytes;
        self
    }

    /// Back the pool with a file (persistent buffers, see `RxBuf::keep`), keeping
    /// the listed indices out of circulation (buffers kept by a previous run).
    pub fn pool_file(mut self, path: impl Into<PathBuf>, kept: Vec<u32>) -> Builder {
        self.pool.memory = PoolMemory::File(path.into());
        self.pool.kept = kept;
        self
    }

    /// The whole pool configuration.
    pub fn pool(mut self, pool: PoolConfig) -> Builder {
        self.pool = pool;
        self
    }

    /// Settings of the epoll backend. Its `pool` field is replaced by the builder's
    /// pool settings.
    pub fn epoll_config(mut self, config: EpollConfig) -> Builder {
        self.epoll = config;
        self
    }

    /// Settings of the io_uring backend. Its `pool` field is replaced by the
    /// builder's pool settings.
    pub fn uring_config(mut self, config: UringConfig) -> Builder {
        self.uring = config;
        self
    }

    /// Settings of kernel PASTE (`paste`): the NIC, rings, slots, extmem file and
    /// control device. `extra_bufs` is replaced by the builder's
    /// [`buffers`](Self::buffers). The operator's `PASTE_RT_PASTE_*` variables win
    /// over each field they set (see [`crate::overrides`]). Without this call the
    /// NIC must come from `PASTE_RT_PASTE_IF`.
    pub fn paste_config(mut self, config: KernelConfig) -> Builder {
        self.paste = Some(config);
        self
    }

    /// Settings of the emulated PASTE port (`paste-emu`): slots per ring and the
    /// emulated kernel's spare buffers. Its `pool` field is replaced by the builder's
    /// pool settings. Without this call: [`EmuSettings::new`] around the pool.
    pub fn paste_emu_config(mut self, settings: EmuSettings) -> Builder {
        self.paste_emu = Some(settings);
        self
    }

    /// Do not print the one-line backend report on stderr when `auto` chooses and no
    /// `tracing` subscriber is installed (the `tracing` event is emitted regardless).
    pub fn quiet(mut self) -> Builder {
        self.quiet = true;
        self
    }

    /// The backend choice after applying `PASTE_RT_BACKEND`.
    pub fn effective_choice(&self) -> Result<BackendChoice, BuildError> {
        overrides::backend_choice(&overrides::from_process, self.use_env, &self.choice)
    }

    /// What every backend is started with, overrides applied (`get` reads the
    /// environment).
    fn settings(&self, get: &impl Fn(&str) -> Option<String>) -> Result<BackendSettings, BuildError> {
        let pool = &self.pool;
        let paste_emu = match &self.paste_emu {
            Some(s) => EmuSettings { pool: pool.clone(), ..s.clone() },
            None => EmuSettings::new(pool.clone()),
        };
        Ok(BackendSettings {
            epoll: EpollConfig { pool: pool.clone(), ..self.epoll.clone() },
            uring: UringConfig { pool: pool.clone(), ..self.uring.clone() },
            paste: overrides::kernel_config(get, self.paste.as_ref(), pool)?,
            paste_emu,
            pool: pool.clone(),
        })
    }

    /// Starts one runtime on the current thread.
    pub fn build(&self) -> Result<Runtime, BuildError> {
        self.build_with(&overrides::from_process)
    }

    /// [`build`](Self::build) with the environment read through `get`.
    fn build_with(&self, get: &impl Fn(&str) -> Option<String>) -> Result<Runtime, BuildError> {
        let choice = overrides::backend_choice(get, self.use_env, &self.choice)?;
        let (backend, selection) = select::start(choice, &self.settings(get)?)?;
        select::report(&selection, self.quiet);
        Ok(Runtime::from_parts(Driver::new(backend), selection, self.threads))
    }

    /// A sibling of a thread group: exactly `first`'s backend.
    fn build_sibling(&self, first: &Selection) -> Result<Runtime, BuildError> {
        let settings = self.settings(&overrides::from_process)?;
        let (backend, selection) = select::start_same(first, &settings)?;
        Ok(Runtime::from_parts(Driver::new(backend), selection, self.threads))
    }

    /// Runs `body` to completion on [`threads`](Self::threads) runtimes and returns
    /// the first thread's output. If the runtimes cannot start, prints why and exits
    /// with status 1 (what `#[paste_rt::main]` expands to).
    pub fn run_main<F, Fut>(self, body: F) -> Fut::Output
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future + 'static,
    {
        match self.run(body) {
            Ok(out) => out,
            Err(e) => {
                tracing::error!(target: "paste_rt::builder", error = %e, "paste-rt: the runtime did not start");
                eprintln!("paste-rt: {e}");
                std::process::exit(1);
            }
        }
    }

    /// Like [`run_main`](Self::run_main), returning the start error instead.
    ///
    /// With several threads, the calling thread (thread 0) starts its runtime first
    /// and so resolves `auto`; threads 1.. then start exactly that backend. The body
    /// runs only once every runtime has started; if one cannot start, the others are
    /// stopped before they run anything and the first error is returned.
    pub fn run<F, Fut>(self, body: F) -> Result<Fut::Output, BuildError>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future + 'static,
    {
        if self.threads > 1 {
            pin_to_core(0);
        }
        let first = self.build()?;
        if self.threads == 1 {
            return Ok(first.block_on(body()));
        }
        let body = Arc::new(body);
        let siblings = start_siblings(&self, first.selection(), &body)?;
        let out = first.block_on(body());
        siblings.join();
        Ok(out)
    }
}

/// Threads 1.. of a group, running the body.
struct Siblings {
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Siblings {
    /// Waits for every sibling to finish its body; a sibling's panic is re-raised.
    fn join(self) {
        for t in self.threads {
            if let Err(panic) = t.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

/// Starts threads 1.. of `builder`'s group on `first`'s backend. Each reports
/// whether its runtime started, then waits: once all started they are told to run
/// the body; if any failed (or a thread could not be created), the others are told
/// to stop, are joined, and the first error is returned.
fn start_siblings<F, Fut>(builder: &Builder, first: &Selection, body: &Arc<F>) -> Result<Siblings, BuildError>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future + 'static,
{
    let (report_tx, reports) = mpsc::channel::<(usize, Result<(), BuildError>)>();
    let mut go_signals = Vec::new();
    let mut threads = Vec::new();
    let mut first_error = None;
    for index in 1..builder.threads {
        let (go_tx, go) = mpsc::channel::<()>();
        let (builder, first, body, report_tx) = (builder.clone(), first.clone(), body.clone(), report_tx.clone());
        let spawned = std::thread::Builder::new().name(format!("paste-rt-{index}")).spawn(move || {
            pin_to_core(index);
            let started = builder.build_sibling(&first);
            let rt = match started {
                Ok(rt) => {
                    let _ = report_tx.send((index, Ok(())));
                    rt
                }
                Err(e) => {
                    let error = match e {
                        BuildError::Backend(source) => BuildError::Thread { index, source },
                        other => other,
                    };
                    let _ = report_tx.send((index, Err(error)));
                    return;
                }
            };
            drop(report_tx);
            // A closed channel (the group is not starting) means: stop.
            if go.recv().is_ok() {
                tracing::debug!(target: "paste_rt::builder", thread = index, backend = %rt.backend(), "runtime thread running");
                drop(rt.block_on(body()));
            }
        });
        match spawned {
            Ok(t) => {
                threads.push(t);
                go_signals.push(go_tx);
            }
            Err(source) => {
                first_error = Some(BuildError::Spawn { index, source });
                break;
            }
        }
    }
    drop(report_tx);
    // Every thread created reports once, or drops its sender by panicking.
    let mut reported = vec![false; builder.threads];
    for _ in 0..threads.len() {
        match reports.recv() {
            Ok((index, result)) => {
                reported[index] = true;
                if let Err(e) = result {
                    first_error.get_or_insert(e);
                }
            }
            Err(mpsc::RecvError) => {
                let index = (1..=threads.len()).find(|&i| !reported[i]).unwrap_or(1);
                first_error.get_or_insert(BuildError::ThreadLost { index });
                break;
            }
        }
    }
    match first_error {
        None => {
            for go in &go_signals {
                let _ = go.send(());
            }
            Ok(Siblings { threads })
        }
        Some(e) => {
            tracing::error!(target: "paste_rt::builder", error = %e, "a runtime thread did not start; stopping the group");
            drop(go_signals);
            for t in threads {
                let _ = t.join();
            }
            Err(e)
        }
    }
}

/// Pins the calling thread to core `i` modulo the cores it may use. Best effort:
/// where affinity cannot be set (containers), the thread runs unpinned.
fn pin_to_core(i: usize) {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity/setaffinity read and write
    // exactly size_of::<cpu_set_t>() bytes of it.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut allowed) != 0 {
            return;
        }
        let cores: Vec<usize> = (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &allowed)).collect();
        if cores.is_empty() {
            return;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cores[i % cores.len()], &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}
