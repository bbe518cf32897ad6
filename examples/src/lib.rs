//! Shared protocol code of the paste-rt examples.
