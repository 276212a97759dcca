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
