//! Reading kernel memory at offsets resolved at start-up.
//!
//! rustc emits no CO-RE relocations, so struct members are never accessed
//! through compiled-in layouts: every read is at an offset from the
//! `CONFIG` global.  The verifier sees `CONFIG` as constant, so a read of
//! an [`ABSENT`] member is pruned before verification.

use aya_ebpf::helpers::{bpf_probe_read_kernel, bpf_probe_read_kernel_buf};
use rsttrace_common::config::{Config, ABSENT};

/// Filled in by the daemon before load (`EbpfLoader::override_global`).
// SAFETY: nothing else in the BPF object (no C code, no other crate) defines
// a symbol `CONFIG`, so the unmangled name clashes with none; it is how the
// loader finds the global.
#[unsafe(no_mangle)]
pub(crate) static CONFIG: Config = Config::empty();

/// Reads one field of `CONFIG` so that LLVM keeps the load (and the verifier
/// can see its constant value) instead of folding in `Config::empty()`.
macro_rules! conf {
    ($($field:ident).+) => {
        // SAFETY: CONFIG is a plain static, read-only once loaded; a
        // volatile read of it is always valid.
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

/// How a program may read the kernel structures its arguments point to.
pub(crate) trait Mem {
    /// Whether pointers are BTF-typed (tracing programs).
    const TYPED: bool;
    /// Loads a `T` at `base + off`, where `base` points to a struct of the
    /// type the argument (or a pointer member loaded from it) names and
    /// `off` is one of its members.  Zero when absent, NULL, or faulting.
    fn load<T: Copy + Default>(base: u64, off: u32) -> T;
}

/// Arguments typed by BTF (`tp_btf`, `fentry`): the verifier checks a
/// direct load against the kernel's BTF (the offset is a constant to it)
/// and makes it fault-safe, at a fraction of the cost of a helper call.
/// This is what keeps the per-reset cost low under storms.
pub(crate) struct Typed;

/// Plain kernel addresses (`kprobe`, `raw_tp`): every read is a
/// `bpf_probe_read_kernel`.
pub(crate) struct Probed;

impl Mem for Typed {
    const TYPED: bool = true;
    #[inline(always)]
    fn load<T: Copy + Default>(base: u64, off: u32) -> T {
        if off == ABSENT || base == 0 {
            return T::default();
        }
        // SAFETY: `base` is a BTF-typed kernel pointer and `off` one of its
        // members: the verifier checks the access against BTF and turns it
        // into a load that yields zero if it faults.
        unsafe { core::ptr::read_volatile((base as *const u8).add(off as usize) as *const T) }
    }
}

impl Mem for Probed {
    const TYPED: bool = false;
    #[inline(always)]
    fn load<T: Copy + Default>(base: u64, off: u32) -> T {
        read(base, off)
    }
}

/// Reads a `T` at `base + off` for any kernel pointer (helper call); zero
/// when the member is absent on this kernel, `base` is NULL, or the read
/// faults.
#[inline(always)]
pub(crate) fn read<T: Copy + Default>(base: u64, off: u32) -> T {
    if off == ABSENT || base == 0 {
        return T::default();
    }
    // SAFETY: bpf_probe_read_kernel copies from any kernel address and
    // reports a fault instead of taking it.
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T) }.unwrap_or_default()
}

/// Reads `dst.len()` bytes at `base + off`; leaves `dst` zeroed on failure.
#[inline(always)]
pub(crate) fn read_buf(base: u64, off: u32, dst: &mut [u8]) {
    if off == ABSENT || base == 0 {
        return;
    }
    // SAFETY: as for `read`; `dst` is a valid buffer of its length.
    if unsafe { bpf_probe_read_kernel_buf((base + off as u64) as *const u8, dst) }.is_err() {
        dst.fill(0);
    }
}

/// Reads `N` bytes at `addr` into a fresh array without zero-initialising
/// it first (that becomes a `memset` call): the helper zero-fills the
/// buffer itself when the read fails, so every byte is defined.
#[inline(always)]
pub(crate) fn read_array<const N: usize>(addr: u64) -> [u8; N] {
    use aya_ebpf::helpers::generated::bpf_probe_read_kernel as probe_read;
    let mut buf = core::mem::MaybeUninit::<[u8; N]>::uninit();
    // SAFETY: the helper writes all N bytes, the data or zeros on a fault.
    unsafe {
        probe_read(
            buf.as_mut_ptr().cast(),
            N as u32,
            addr as *const core::ffi::c_void,
        );
        buf.assume_init()
    }
}

/// `read_array` into memory that is not the stack (a map value): for
/// buffers a program's frames cannot hold.
#[inline(always)]
pub(crate) fn read_into<const N: usize>(dst: &mut [u8; N], addr: u64) {
    use aya_ebpf::helpers::generated::bpf_probe_read_kernel as probe_read;
    // SAFETY: `dst` is N writable bytes; the helper writes all of them,
    // the data or zeros on a fault.
    unsafe {
        probe_read(
            dst.as_mut_ptr().cast(),
            N as u32,
            addr as *const core::ffi::c_void,
        );
    }
}

/// A kernel pointer as a plain number, for hashing.  The verifier allows
/// no arithmetic on a typed pointer but adding offsets, and refuses to
/// read a spilled pointer back in parts; a copy made by a helper is a
/// plain value.
#[inline(always)]
pub(crate) fn plain(ptr: u64) -> u64 {
    let spill = ptr;
    let mut out = 0u64;
    // SAFETY: copies 8 bytes from `spill` (this frame) into `out`.
    unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_kernel(
            (&mut out as *mut u64).cast(),
            8,
            (&spill as *const u64).cast(),
        );
    }
    out
}

/// Zeroes a record with word stores.  `*r = T::default()` on a record this
/// size becomes a call to a byte-wise BPF `memset` subprogram, which under
/// a reset storm cost as much as the rest of the program.
#[inline(always)]
pub(crate) fn zero<T>(record: &mut T) {
    let words = record as *mut T as *mut u64;
    for i in 0..core::mem::size_of::<T>() / 8 {
        // SAFETY: every record type is #[repr(C)] plain integers, a
        // multiple of 8 bytes long (asserted in rsttrace-common), and
        // `record` is an exclusive reference to one.
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
    }
}

/// The clock records carry: boot time where the kernel has it (>= 5.8),
/// else monotonic.
#[inline(always)]
pub(crate) fn now_ns() -> u64 {
    use aya_ebpf::helpers::{bpf_ktime_get_boot_ns, bpf_ktime_get_ns};
    // SAFETY: both helpers take no arguments and cannot fail; the
    // verifier prunes the branch this kernel lacks (CONFIG is constant).
    if conf!(boot_clock) != 0 {
        // SAFETY: no arguments, cannot fail; kept only where the kernel has it.
        unsafe { bpf_ktime_get_boot_ns() }
    } else {
        // SAFETY: no arguments, cannot fail.
        unsafe { bpf_ktime_get_ns() }
    }
}
