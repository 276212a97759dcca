//! Resets that netfilter sends (REJECT --reject-with tcp-reset, nft
//! `reject with tcp reset`) never reach tcp_send_reset.  What tracepoints
//! do see, on the CPU handling the rejected segment, in this order:
//!
//! 1. the reset's route lookup, from `ip_route_me_harder()`: a
//!    `fib_table_lookup`/`fib6_table_lookup` whose flow has protocol 0 and
//!    the segment's source as destination (an ICMP reject looks up an ICMP
//!    flow and calls `icmp_send()` with the segment instead);
//! 2. `kfree_skb` of the segment with reason NETFILTER_DROP.
//!
//! The first steps leave a per-CPU hint; step 2 reads it to tell a reset,
//! an ICMP error and a silent drop apart.

use aya_ebpf::{
    helpers::bpf_ktime_get_boot_ns,
    macros::{btf_tracepoint, map},
    maps::PerCpuArray,
    programs::BtfTracePointContext,
};
use rsttrace_common::event::{
    FLAG_FIREWALL, FLAG_HAS_SKB, KIND_FIREWALL, VERDICT_DROP, VERDICT_ICMP, VERDICT_RESET,
};

use crate::{
    emit::emit,
    header,
    kmem::{conf, load, off, zero},
    net::{read_segment, skb_netns, AF_INET6},
    netns_filtered, SCRATCH,
};

/// How long a hint stays valid: the steps above run back to back.
const HINT_NS: u64 = 1_000_000;
const SLOT_FIREWALL: u32 = 2;
const TCP_RST: u8 = 0x04;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct RejectHint {
    ts_ns: u64,
    /// VERDICT_RESET (route lookup seen) or VERDICT_ICMP (icmp_send seen).
    kind: u32,
    _pad: u32,
    /// icmp_send: the offending packet (0 when matched by address).
    skb: u64,
    /// icmp_send: `type << 8 | code`.
    icmp: u32,
    _pad2: u32,
    /// Route lookup: its destination.
    addr: [u8; 16],
}

#[map]
static REJECT_HINT: PerCpuArray<RejectHint> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn hint() -> Option<&'static mut RejectHint> {
    REJECT_HINT.get_ptr_mut(0).map(|h| unsafe { &mut *h })
}

/// `fib:fib_table_lookup(tb_id, flp, nhc, err)`.
#[btf_tracepoint(function = "fib_table_lookup")]
pub fn fib_table_lookup(ctx: BtfTracePointContext) -> i32 {
    let flp: u64 = ctx.arg(1);
    // `flp` is a BTF-typed argument: direct loads (see kmem::load).  This
    // runs on every route lookup, so it stops at the first comparison.
    if load::<u8>(flp, off!(flowi4_proto)) != 0 {
        return 0;
    }
    if let Some(h) = hint() {
        h.ts_ns = unsafe { bpf_ktime_get_boot_ns() };
        h.kind = VERDICT_RESET;
        h.skb = 0;
        zero(&mut h.addr);
        h.addr[..4].copy_from_slice(&load::<[u8; 4]>(flp, off!(flowi4_daddr)));
    }
    0
}

/// IPPROTO_ICMPV6: IPv6 has no icmp_send tracepoint, so an ICMPv6 error's
/// route lookup marks an ICMP reject.
const ICMPV6: u8 = 58;

/// `fib6:fib6_table_lookup(net, res, table, flp)`.
#[btf_tracepoint(function = "fib6_table_lookup")]
pub fn fib6_table_lookup(ctx: BtfTracePointContext) -> i32 {
    let flp: u64 = ctx.arg(3);
    let kind = match load::<u8>(flp, off!(flowi6_proto)) {
        0 => VERDICT_RESET,
        ICMPV6 => VERDICT_ICMP,
        _ => return 0,
    };
    if let Some(h) = hint() {
        h.ts_ns = unsafe { bpf_ktime_get_boot_ns() };
        h.kind = kind;
        h.skb = 0;
        h.icmp = 0;
        h.addr = load(flp, off!(flowi6_daddr));
    }
    0
}

/// `icmp:icmp_send(skb, type, code)`.
#[btf_tracepoint(function = "icmp_send")]
pub fn icmp_send(ctx: BtfTracePointContext) -> i32 {
    let skb: u64 = ctx.arg(0);
    let icmp_type = ctx.arg::<u64>(1) as u32 & 0xff;
    let icmp_code = ctx.arg::<u64>(2) as u32 & 0xff;
    if let Some(h) = hint() {
        h.ts_ns = unsafe { bpf_ktime_get_boot_ns() };
        h.kind = VERDICT_ICMP;
        h.skb = skb;
        h.icmp = icmp_type << 8 | icmp_code;
    }
    0
}

/// `skb:kfree_skb(skb, location, reason, ...)`: netfilter dropped a TCP
/// segment.  Everything else returns at the first comparison.
#[btf_tracepoint(function = "kfree_skb")]
pub fn kfree_skb(ctx: BtfTracePointContext) -> i32 {
    if conf!(kfree_skb_has_reason) == 0 {
        return 0;
    }
    let reason = ctx.arg::<u64>(2) as u32;
    if reason != conf!(drop_reason_netfilter) {
        return 0;
    }
    let skb: u64 = ctx.arg(0);
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let netns = skb_netns(skb);
    if netns_filtered(netns) {
        return 0;
    }
    let Some(ev) = SCRATCH.get_ptr_mut(SLOT_FIREWALL) else {
        return 0;
    };
    let ev = unsafe { &mut *ev };
    zero(ev);
    if !read_segment(skb, ev) || ev.tcp_flags & TCP_RST != 0 {
        return 0;
    }
    ev.header = header(KIND_FIREWALL, now);
    ev.netns = netns;
    ev.flags = FLAG_HAS_SKB | FLAG_FIREWALL;
    ev.reason = VERDICT_DROP;
    if let Some(h) = hint() {
        if now.wrapping_sub(h.ts_ns) < HINT_NS {
            let by_addr = h.skb == 0 && same_addr(ev.family, &h.addr, &ev.remote_addr);
            if h.kind == VERDICT_ICMP && (h.skb == skb || by_addr) {
                ev.reason = VERDICT_ICMP;
                // The ICMP type and code, for the errno the peer gets.
                ev.sk_err = h.icmp as i32;
            } else if h.kind == VERDICT_RESET && same_addr(ev.family, &h.addr, &ev.remote_addr) {
                ev.reason = VERDICT_RESET;
            }
        }
        h.ts_ns = 0;
    }
    emit(&ctx, ev, now);
    0
}

#[inline(always)]
fn same_addr(family: u16, a: &[u8; 16], b: &[u8; 16]) -> bool {
    if family == AF_INET6 {
        a == b
    } else {
        a[..4] == b[..4]
    }
}
