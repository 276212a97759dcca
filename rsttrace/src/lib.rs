//! rsttrace: explains every TCP reset on a Linux host.
//!
//! The flow follows the module names: `capture` (the eBPF programs and
//! their buffers) -> `decode` -> `classify` -> `pipeline` (correlation,
//! filters) with `enrich` (owner, container, listener history) -> `output`
//! of the records in `model`.  `kernel` reads what the running kernel
//! looks like (BTF, tracefs); `cmd` has one `execute()` per subcommand.

#![warn(missing_docs)]

pub(crate) mod capture;
pub(crate) mod classify;
pub mod cli;
pub mod cmd;
pub(crate) mod config;
pub(crate) mod decode;
pub(crate) mod enrich;
pub(crate) mod hash;
pub(crate) mod kernel;
pub(crate) mod metrics;
pub(crate) mod model;
pub(crate) mod output;
pub(crate) mod pipeline;
pub(crate) mod vocab;
