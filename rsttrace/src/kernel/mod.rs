//! Facts about the running kernel, read at start-up: BTF, tracefs, clocks,
//! the hooks it offers, and the names behind the numbers in events.

pub mod btf;
pub mod caps;
pub mod clock;
pub mod hooks;
pub mod kallsyms;
pub mod layout;
pub mod names;
pub mod tracefs;
