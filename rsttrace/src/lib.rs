//! rsttrace: explains every TCP reset on a Linux host.
//!
//! The flow follows the module names: `capture` (the eBPF programs and
//! their buffers) -> `decode` -> `classify` -> `pipeline` (correlation,
//! filters) with `enrich` (owner, container, listener history) -> `output`
//! of the records in `model`.  `kernel` reads what the running kernel
//! looks like (BTF, tracefs); `cmd` has one `execute()` per subcommand.

pub mod capture;
pub mod classify;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod decode;
pub mod enrich;
pub mod hash;
pub mod kernel;
pub mod metrics;
pub mod model;
pub mod output;
pub mod pipeline;
