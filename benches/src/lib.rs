//! (being written)
//!
//! The A/B harness (`paste-bench`, see docs/benchmarking.md): [`ab`] runs the matrix of
//! [`subject`]s × [`workload`]s × connections × rounds, with servers started as
//! children ([`control`]) and driven by the built-in [`loadgen`] (responses checked
//! by [`validate`] through [`exchange`]) or [`wrk`]; [`system`] reads `/proc`,
//! [`statistics`] and [`record`] summarise, [`report`] and [`charts`] write the
//! outputs, [`environment`] records the machine and the backend probe, and
//! [`alloc_count`] counts the servers' heap allocations. [`callgrind`] counts the
//! servers' user-space instructions per request under valgrind.

pub mod ab;
pub mod alloc_count;
pub mod callgrind;
pub mod charts;
pub mod control;
pub mod environment;
pub mod exchange;
pub mod loadgen;
pub mod peers;
pub mod record;
pub mod report;
pub mod statistics;
pub mod subject;
pub mod system;
pub mod validate;
pub mod workload;
pub mod wrk;
