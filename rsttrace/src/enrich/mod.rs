//! Enrichment: who owns a socket, which container it runs in, and who
//! listened on a port.  The slow lookups run on the scanner thread.

pub mod bounded;
pub mod container;
pub mod listeners;
pub mod owner;
pub mod procfs;
pub mod runtime;
pub mod scanner;
