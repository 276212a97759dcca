//! Facts about the running kernel, read at start-up: BTF, tracefs, clocks,
//! the hooks it offers, and the names behind the numbers in events.

pub(crate) mod btf;
pub(crate) mod caps;
pub(crate) mod clock;
pub(crate) mod hooks;
pub(crate) mod kallsyms;
pub(crate) mod layout;
pub(crate) mod names;
pub(crate) mod tracefs;

use thiserror::Error;

/// What makes this kernel's BTF unusable: found while resolving the
/// layout and the hooks.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum LayoutError {
    #[error("this kernel is not supported: its BTF has {0}")]
    MissingMember(String),
    #[error("kernel BTF has no BTF tracepoint {0} (Linux >= 5.5 with CONFIG_DEBUG_INFO_BTF is required)")]
    MissingTracepoint(String),
    #[error("BTF tracepoint {name} has arguments ({found}) where rsttrace expects ({expected})")]
    UnexpectedSignature {
        name: String,
        found: String,
        expected: String,
    },
    #[error("kernel BTF has no enumerator {0}")]
    MissingEnumerator(String),
}
