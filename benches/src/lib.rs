//! (being written)

pub mod ab;
pub mod alloc_count;
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
