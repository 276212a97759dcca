//! Rare diagnostics from the programs, through aya-log: a table that
//! filled, say.  Each is said at most once per CPU (a full table stays
//! full for the rest of a storm), never per event, and only when the
//! loader enabled logging (`rsttrace -v` sets `AYA_LOG_LEVEL`; otherwise
//! the verifier prunes the branch).  aya-log's buffer is a BPF ring
//! buffer, so only the ring-buffer object has them; the perf-buffer
//! object (kernels before 5.8) stays silent and counts as before.

use aya_ebpf::{macros::map, maps::PerCpuArray, EbpfContext};

/// Which diagnostic (index into `SAID`).
#[derive(Clone, Copy)]
pub(crate) enum Diag {
    /// The storm aggregation table is full.
    AggFull = 0,
}

const DIAGS: u32 = 1;

/// Whether a diagnostic was already said on this CPU.
#[map]
static SAID: PerCpuArray<u8> = PerCpuArray::with_max_entries(DIAGS, 0);

/// True the first time `d` happens on this CPU.
#[inline(always)]
fn first(d: Diag) -> bool {
    let Some(said) = SAID.get_ptr_mut(d as u32) else {
        return false;
    };
    // SAFETY: a per-CPU array slot; programs on one CPU do not run
    // concurrently (nested runs are skipped), so the access is exclusive.
    let said = unsafe { &mut *said };
    let first = *said == 0;
    *said = 1;
    first
}

/// Says `d` once per CPU.
#[inline(always)]
pub(crate) fn say<C: EbpfContext>(ctx: &C, d: Diag) {
    if !first(d) {
        return;
    }
    #[cfg(feature = "ringbuf")]
    match d {
        Diag::AggFull => aya_log_ebpf::warn!(
            ctx,
            "storm table full on this CPU (--storm-keys): further storm resets are counted without a key"
        ),
    }
    #[cfg(not(feature = "ringbuf"))]
    let _ = ctx;
}
