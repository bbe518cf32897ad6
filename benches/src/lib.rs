//! The A/B harness (`paste-bench`): [`ab`] runs the matrix of server-core counts ×
//! [`subject`]s × [`workload`]s × connections × rounds. [`cores`] splits the cores
//! of each cell between the server and the load; servers are started as children
//! ([`control`] over [`child_process`]), on several cores as thread-per-core copies
//! ([`server_copies`]), and driven by load generator processes ([`load_process`],
//! each running [`load_threads`] of the built-in [`loadgen`], their figures merged
//! by [`load_report`]; responses checked by [`validate`] through [`exchange`]) or by
//! [`wrk`]. [`system`] reads `/proc`, [`syscall_count`] counts the servers' system
//! calls from outside with perf, [`machine_load`] records how busy the machine was,
//! [`statistics`] and [`record`] summarise, [`report`] and [`charts`] write the
//! outputs, [`environment`] records the machine, the backend probe and perf, and
//! [`alloc_count`] counts the servers' heap allocations. [`callgrind`] counts the
//! servers' user-space instructions per request under valgrind, reading its files
//! with [`callgrind_output`].

pub mod ab;
pub mod alloc_count;
pub mod callgrind;
pub mod callgrind_output;
pub mod charts;
pub mod child_process;
pub mod control;
pub mod cores;
pub mod cpu_limit;
pub mod environment;
pub mod exchange;
pub mod load_process;
pub mod load_report;
pub mod load_threads;
pub mod loadgen;
pub mod machine_load;
pub mod peers;
pub mod record;
pub mod report;
pub mod server_copies;
pub mod statistics;
pub mod subject;
pub mod syscall_count;
pub mod system;
pub mod validate;
pub mod window;
pub mod workload;
pub mod wrk;
