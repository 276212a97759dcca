//! rsttrace: explains every TCP reset on a Linux host.
//!
//! The flow follows the module names: `capture` (the eBPF programs and
//! their buffers) -> `decode` -> `pipeline` (correlation) -> `enrich`
//! (owner, container, listener history) -> `classify` -> `output`.
//! `kernel` reads what the running kernel looks like (BTF, tracefs).

pub mod capture;
pub mod classify;
pub mod cli;
pub mod decode;
pub mod enrich;
pub mod kernel;
pub mod output;
pub mod pipeline;
pub mod report;
pub mod trace;
