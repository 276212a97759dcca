//! Reading kernel memory at offsets resolved at start-up.
//!
//! rustc emits no CO-RE relocations, so struct members are never accessed
//! through compiled-in layouts: every read is `bpf_probe_read_kernel` at an
//! offset from the `CONFIG` global.  The verifier sees `CONFIG` as constant,
//! so a read of an [`ABSENT`] member is pruned before verification.

use aya_ebpf::helpers::{bpf_probe_read_kernel, bpf_probe_read_kernel_buf};
use rsttrace_common::config::{Config, ABSENT};

/// Filled in by the daemon before load (`EbpfLoader::override_global`).
#[unsafe(no_mangle)]
pub static CONFIG: Config = Config::empty();

/// Reads one field of `CONFIG` so that LLVM keeps the load (and the verifier
/// can see its constant value) instead of folding in `Config::empty()`.
macro_rules! conf {
    ($($field:ident).+) => {
        unsafe { core::ptr::read_volatile(&$crate::kmem::CONFIG.$($field).+) }
    };
}
pub(crate) use conf;

/// Offset of a kernel struct member, or [`ABSENT`].
macro_rules! off {
    ($field:ident) => {
        $crate::kmem::conf!(offsets.$field)
    };
}
pub(crate) use off;

/// Reads a `T` at `base + off`; zero when the member is absent on this
/// kernel, `base` is NULL, or the read faults.
#[inline(always)]
pub fn read<T: Copy + Default>(base: u64, off: u32) -> T {
    if off == ABSENT || base == 0 {
        return T::default();
    }
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T) }.unwrap_or_default()
}

/// Reads `dst.len()` bytes at `base + off`; leaves `dst` zeroed on failure.
#[inline(always)]
pub fn read_buf(base: u64, off: u32, dst: &mut [u8]) {
    if off == ABSENT || base == 0 {
        return;
    }
    if unsafe { bpf_probe_read_kernel_buf((base + off as u64) as *const u8, dst) }.is_err() {
        dst.fill(0);
    }
}
