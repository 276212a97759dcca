//! Types shared by the eBPF programs and the userspace daemon.
//!
//! Everything here is `#[repr(C)]` plain data: the eBPF side writes these
//! records into the ring/perf buffer and the daemon reads them back from raw
//! bytes.  The daemon also fills [`config::Config`] from the running kernel's
//! BTF and tracefs and hands it to the eBPF programs as a read-only global,
//! so nothing in the eBPF object depends on one kernel's struct layout.
#![no_std]
#![warn(missing_docs)]

pub mod config;
pub mod event;

/// Length of `task_struct.comm` (TASK_COMM_LEN in the kernel ABI).
pub const COMM_LEN: usize = 16;
