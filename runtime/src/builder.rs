//! [`Builder`]: configure and start runtimes — backend choice, buffer pool, and
//! thread-per-core groups.

use std::future::Future;
use std::path::PathBuf;

use paste_rt_core::{PoolConfig, PoolMemory, StartError};

use crate::driver::Driver;
use crate::runtime::Runtime;
use crate::select::{self, BackendChoice, BackendSettings};

/// The environment variable that picks the backend at start:
/// `auto|paste|paste-emu|uring|epoll`. It overrides the program's default
/// ([`Builder::backend`]) so that one binary can be A/B-compared without rebuilding.
pub const BACKEND_ENV: &str = "PASTE_RT_BACKEND";

/// Configures and starts runtimes.
///
/// ```
/// use paste_rt::runtime::Builder;
/// let rt = Builder::new().backend("epoll").buffers(1024).build().expect("epoll starts everywhere");
/// assert_eq!(rt.block_on(async { 1 }), 1);
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    choice: Result<BackendChoice, String>,
    use_env: bool,
    threads: usize,
    pool: PoolConfig,
    quiet: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// Defaults: backend `auto` (or `PASTE_RT_BACKEND`), one thread, 4096 buffers of
    /// 2048 bytes in anonymous memory.
    pub fn new() -> Builder {
        Builder {
            choice: Ok(BackendChoice::Auto),
            use_env: true,
            threads: 1,
            pool: PoolConfig::default(),
            quiet: false,
        }
    }

    /// The program's backend: `auto`, `paste`, `paste-emu`, `uring` or `epoll`.
    /// `PASTE_RT_BACKEND`, when set, overrides it (see [`ignore_env`](Self::ignore_env)).
    /// An unknown name makes [`build`](Self::build) fail.
    pub fn backend(mut self, name: &str) -> Builder {
        self.choice = name.parse();
        self
    }

    /// The backend, typed.
    pub fn backend_choice(mut self, choice: BackendChoice) -> Builder {
        self.choice = Ok(choice);
        self
    }

    /// Do not read `PASTE_RT_BACKEND` (tests and harnesses that pick for themselves).
    pub fn ignore_env(mut self) -> Builder {
        self.use_env = false;
        self
    }

    /// Thread-per-core: [`run_main`](Self::run_main) starts `n` runtimes, one per
    /// thread (pinned to a core where possible), each running the body; listeners
    /// bound inside share their port through `SO_REUSEPORT`.
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

    /// Do not print the one-line backend report when `auto` chooses.
    pub fn quiet(mut self) -> Builder {
        self.quiet = true;
        self
    }

    /// The backend choice after applying `PASTE_RT_BACKEND`.
    pub fn effective_choice(&self) -> Result<BackendChoice, StartError> {
        let bad = |reason: String| StartError { backend: paste_rt_core::BackendKind::Epoll, reason, errno: None };
        if self.use_env {
            if let Ok(v) = std::env::var(BACKEND_ENV) {
                return v.parse().map_err(|e| bad(format!("{BACKEND_ENV}={v}: {e}")));
            }
        }
        self.choice.clone().map_err(bad)
    }

    /// Starts one runtime on the current thread.
    pub fn build(&self) -> Result<Runtime, StartError> {
        let choice = self.effective_choice()?;
        let settings = BackendSettings { pool: self.pool.clone() };
        let (backend, selection) = select::start(choice, &settings)?;
        if choice == BackendChoice::Auto && !self.quiet {
            eprintln!("paste-rt: {selection}");
        }
        Ok(Runtime::from_parts(Driver::new(backend), selection, self.threads))
    }

    /// Runs `body` to completion on [`threads`](Self::threads) runtimes and returns
    /// the first thread's output. If a backend cannot start, prints why and exits
    /// with status 1 (what `#[paste_rt::main]` expands to).
    pub fn run_main<F, Fut>(self, body: F) -> Fut::Output
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future + 'static,
    {
        match self.run(body) {
            Ok(out) => out,
            Err(e) => {
                eprintln!("paste-rt: {e}");
                std::process::exit(1);
            }
        }
    }

    /// Like [`run_main`](Self::run_main), returning the start error instead.
    pub fn run<F, Fut>(self, body: F) -> Result<Fut::Output, StartError>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future + 'static,
    {
        let body = std::sync::Arc::new(body);
        let mut others = Vec::new();
        for i in 1..self.threads {
            let (builder, body) = (self.clone().quiet(), body.clone());
            let spawned = std::thread::Builder::new().name(format!("paste-rt-{i}")).spawn(move || {
                pin_to_core(i);
                builder.build().map(|rt| drop(rt.block_on(body())))
            });
            match spawned {
                Ok(h) => others.push(h),
                Err(e) => {
                    return Err(StartError {
                        backend: paste_rt_core::BackendKind::Epoll,
                        reason: format!("spawning runtime thread {i}: {e}"),
                        errno: e.raw_os_error(),
                    })
                }
            }
        }
        if self.threads > 1 {
            pin_to_core(0);
        }
        let first = self.build().map(|rt| rt.block_on(body()));
        for h in others {
            match h.join() {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        first
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
