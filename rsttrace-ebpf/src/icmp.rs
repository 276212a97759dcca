//! ICMP errors about TCP segments this host sent (`--failures`): who sent
//! the error (a router on the path, or the destination), its TTL, its type
//! and code, and the segment it quotes.
//!
//! Where BPF trampolines exist, TCP's own error handlers (`tcp_v4_err`,
//! `tcp_v6_err`) hand the error over once per ICMP error; elsewhere the
//! per-packet receive hook (`path.rs`) finds them among all packets.

use aya_ebpf::{
    macros::{fentry, map},
    maps::PerCpuArray,
    programs::FEntryContext,
    EbpfContext,
};
use rsttrace_common::event::{IcmpEvent, KIND_ICMP};

use crate::{
    emit::{emit, header},
    kmem::{conf, now_ns, off, read_array, read_into, zero, Mem, Probed, Typed},
    net::{netns_filtered, parse_packet, skb_netns, AF_INET6},
    path::head,
};

/// Space for an ICMP record (the callers' stacks are full).
#[map]
static ICMP_SCRATCH: PerCpuArray<IcmpEvent> = PerCpuArray::with_max_entries(1, 0);

/// `tcp_v4_err(skb, info)`: an ICMP error for a TCP socket.  The outer IP
/// header is at the network header, the ICMP header at the transport
/// header, and `skb->data` points at the IP header it quotes.
#[fentry(function = "tcp_v4_err")]
pub(crate) fn tcp_v4_err(ctx: FEntryContext) -> i32 {
    on_tcp_err(&ctx, ctx.arg(0));
    0
}

/// `tcp_v6_err(skb, opt, type, code, offset, info)`: the same for IPv6.
#[fentry(function = "tcp_v6_err")]
pub(crate) fn tcp_v6_err(ctx: FEntryContext) -> i32 {
    on_tcp_err(&ctx, ctx.arg(0));
    0
}

#[inline(always)]
fn on_tcp_err(ctx: &FEntryContext, skb: u64) {
    if conf!(want_icmp) == 0 {
        return;
    }
    let head_ptr: u64 = Typed::load(skb, off!(skb_head));
    let nh: u16 = Typed::load(skb, off!(skb_network_header));
    let th: u16 = Typed::load(skb, off!(skb_transport_header));
    let quoted: u64 = Typed::load(skb, off!(skb_data));
    if head_ptr == 0 || nh == 0xffff || th == 0xffff || quoted == 0 {
        return;
    }
    report(ctx, skb, head_ptr + nh as u64, head_ptr + th as u64, quoted);
}

/// Reports the ICMP error whose IP header is at `outer`, ICMP header at
/// `icmp`, quoted IP header at `quoted`.  A function of its own (a BPF
/// subprogram with its own stack frame) so that its callers' common paths
/// do not carry its buffers.
#[inline(never)]
pub(crate) fn report<C: EbpfContext>(ctx: &C, skb: u64, outer: u64, icmp: u64, quoted: u64) {
    let Some(ev) = ICMP_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this program's own per-CPU slot.
    let ev = unsafe { &mut *ev };
    zero(ev);
    let t: [u8; 2] = read_array(icmp);
    ev.icmp_type = t[0];
    ev.icmp_code = t[1];
    let Some(q) = head(1) else {
        return;
    };
    read_into(q, quoted);
    let q_len = if q[0] >> 4 == 4 {
        ((q[0] & 0x0f) as u64) * 4
    } else {
        40
    };
    if !parse_packet(q, quoted, quoted + q_len, &mut ev.ends, &mut ev.seg) {
        return;
    }
    // The quoted segment is one we sent: its source is this host.
    core::mem::swap(&mut ev.ends.local_addr, &mut ev.ends.remote_addr);
    core::mem::swap(&mut ev.ends.local_port, &mut ev.ends.remote_port);
    // The ICMP packet itself: who sent it, its TTL.
    let h: [u8; 24] = read_array(outer);
    if ev.ends.family == AF_INET6 {
        ev.ttl = h[7];
        ev.from.copy_from_slice(&h[8..24]);
    } else {
        ev.ttl = h[8];
        ev.from[..4].copy_from_slice(&h[12..16]);
    }
    // A subprogram's arguments are plain values to older verifiers:
    // helper reads.
    let netns = skb_netns::<Probed>(skb);
    if netns_filtered(netns) {
        return;
    }
    let now = now_ns();
    ev.header = header(KIND_ICMP, now);
    ev.netns = netns;
    emit(ctx, ev, now);
}
