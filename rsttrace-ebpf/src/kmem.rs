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

/// Loads a `T` at `base + off` where `base` is a BTF-typed kernel pointer:
/// a `tp_btf` argument, or a struct pointer member loaded with `load` from
/// one.  The verifier checks the access against the kernel's BTF (the
/// offset is a constant to it) and turns it into a fault-safe load, which
/// costs a fraction of a `bpf_probe_read_kernel` call: this is what keeps
/// the per-reset cost low under storms.  Only for members of the struct the
/// pointer's BTF type names (not, say, tcp_sock members through a `struct
/// sock *`).  Zero when absent, NULL, or faulting.
#[inline(always)]
pub fn load<T: Copy + Default>(base: u64, off: u32) -> T {
    if off == ABSENT || base == 0 {
        return T::default();
    }
    unsafe { core::ptr::read_volatile((base as *const u8).add(off as usize) as *const T) }
}

/// Reads a `T` at `base + off` for any kernel pointer (helper call); zero
/// when the member is absent on this kernel, `base` is NULL, or the read
/// faults.
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

/// Reads `N` bytes at `addr` into a fresh array without zero-initialising
/// it first (that becomes a `memset` call): the helper zero-fills the
/// buffer itself when the read fails, so every byte is defined.
#[inline(always)]
pub fn read_array<const N: usize>(addr: u64) -> [u8; N] {
    use aya_ebpf::helpers::generated::bpf_probe_read_kernel as probe_read;
    let mut buf = core::mem::MaybeUninit::<[u8; N]>::uninit();
    unsafe {
        probe_read(
            buf.as_mut_ptr().cast(),
            N as u32,
            addr as *const core::ffi::c_void,
        );
        buf.assume_init()
    }
}

/// Zeroes a record with word stores.  `*r = T::default()` on a record this
/// size becomes a call to a byte-wise BPF `memset` subprogram, which under
/// a reset storm cost as much as the rest of the program.
#[inline(always)]
pub fn zero<T>(record: &mut T) {
    let words = record as *mut T as *mut u64;
    for i in 0..core::mem::size_of::<T>() / 8 {
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
    }
}
