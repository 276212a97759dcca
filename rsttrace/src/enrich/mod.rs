//! Enrichment: who owns a socket, which container it runs in, and who
//! listened on a port.  The slow lookups run on the scanner thread.

pub(crate) mod bounded;
pub(crate) mod container;
pub(crate) mod listeners;
pub(crate) mod owner;
pub(crate) mod procfs;
pub(crate) mod runtime;
pub(crate) mod scanner;
