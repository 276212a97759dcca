//! Facts about the running kernel, read at start-up: BTF, tracefs, clocks.

pub mod btf;
pub mod clock;
pub mod layout;
pub mod tracefs;
