//! Resets that arrive for no socket at all: the kernel drops them without
//! a word (it never answers a reset).  Counted in the traced namespaces,
//! reported with `--stray-resets`.
//!
//! They are seen where the kernel gives up on them: `kfree_skb` with
//! reason NO_SOCKET (Linux 5.17+), or, where rsttrace hooks the functions
//! that build resets, their call for an incoming reset with no socket
//! (which they return from without sending anything).

use aya_ebpf::{macros::map, maps::PerCpuArray, EbpfContext};
use rsttrace_common::event::{Endpoints, SegmentHdr, StrayEvent, COUNTER_STRAY, KIND_STRAY};

use crate::{
    emit::{count, emit, header},
    kmem::{conf, now_ns, zero, Probed},
    net::{netns_filtered, read_segment, skb_netns, TCP_RST},
};

/// The last segment this CPU answered with a reset: its NO_SOCKET drop
/// that follows is no stray, and costs no read.
#[map]
static ANSWERED: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Space to build a record in, off the stack (see `firewall.rs`).
#[map]
static STRAY_SCRATCH: PerCpuArray<StrayEvent> = PerCpuArray::with_max_entries(1, 0);

/// A reset is being sent in reply to `skb` on this CPU.
#[inline(always)]
pub(crate) fn answered(skb: u64) {
    if let Some(a) = ANSWERED.get_ptr_mut(0) {
        // SAFETY: a per-CPU slot, written and read within one segment's
        // processing on this CPU.
        unsafe { *a = skb };
    }
}

/// `kfree_skb` with reason NO_SOCKET: a reset among these is a stray.  A
/// subprogram of its own, so that `kfree_skb`'s frame stays small (before
/// Linux 6.13 a program and its subprograms share 512 bytes of stack); a
/// subprogram's arguments are plain values to older verifiers, hence the
/// helper reads.
#[inline(never)]
pub(crate) fn on_no_socket_drop<C: EbpfContext>(ctx: &C, skb: u64) {
    if let Some(a) = ANSWERED.get(0) {
        if *a == skb {
            return;
        }
    }
    let Some(ev) = scratch() else {
        return;
    };
    if !read_segment::<Probed>(skb, &mut ev.ends, &mut ev.seg) || ev.seg.tcp_flags & TCP_RST == 0 {
        return;
    }
    ev.netns = skb_netns::<Probed>(skb);
    send(ctx, ev);
}

/// A zeroed record, off the stack: beside their callers' frames (before
/// Linux 6.13 a program and its subprograms share 512 bytes) records do
/// not fit, and zeroing one there becomes a `memset` subprogram.
#[inline(always)]
fn scratch() -> Option<&'static mut StrayEvent> {
    // SAFETY: a per-CPU slot, filled and sent within one program run.
    let ev = unsafe { &mut *STRAY_SCRATCH.get_ptr_mut(0)? };
    zero(ev);
    Some(ev)
}

/// Counts (and with `--stray-resets` reports) a reset for no socket seen
/// by the functions that build resets.
#[inline(always)]
pub(crate) fn stray<C: EbpfContext>(ctx: &C, netns: u32, ends: &Endpoints, seg: &SegmentHdr) {
    let Some(ev) = scratch() else {
        return;
    };
    ev.netns = netns;
    ev.ends = *ends;
    ev.seg = *seg;
    send(ctx, ev);
}

#[inline(always)]
fn send<C: EbpfContext>(ctx: &C, ev: &mut StrayEvent) {
    if netns_filtered(ev.netns) {
        return;
    }
    count(COUNTER_STRAY);
    if conf!(want_stray) == 0 {
        return;
    }
    let now = now_ns();
    ev.header = header(KIND_STRAY, now);
    emit(ctx, ev, now);
}
