//! Enrichment: who owns a socket, which container it runs in, and who
//! listened on a port.

pub mod container;
pub mod listeners;
pub mod owner;
