//! Resets and ICMP errors that netfilter sends (REJECT, nft `reject`)
//! never reach the TCP reset code.
//!
//! Exact, where kprobes exist: netfilter's own `nf_send_reset` /
//! `nf_send_reset6` (resets) and `nf_send_unreach` / `nf_send_unreach6`
//! (ICMP rejects) get the rejected segment; `kfree_skb` with reason
//! NETFILTER_DROP of a segment neither saw is a silent drop.  Nothing runs
//! per packet.
//!
//! From tracepoints alone, the reply itself is matched to the segment it
//! answers, by addresses, ports and sequence numbers (no timing window):
//!
//! 1. the reply's route lookup (`fib_table_lookup` with a protocol 0
//!    flow for a reset from `ip_route_me_harder()`, an ICMP flow for
//!    `icmp_send()`; `fib6_table_lookup` likewise) arms this CPU;
//! 2. the next packet this CPU transmits (`net_dev_queue`, synchronous
//!    inside the rejecting hook) is read if armed: a TCP reset, or an ICMP
//!    error quoting a TCP segment, is kept as the pending reply;
//! 3. `kfree_skb` of the segment with reason NETFILTER_DROP compares it
//!    with the pending reply: a reset whose sequence numbers answer it, an
//!    ICMP error that quotes it, or else a silent drop.

use aya_ebpf::{
    macros::{btf_tracepoint, kprobe, map},
    maps::PerCpuArray,
    programs::{BtfTracePointContext, ProbeContext},
    EbpfContext,
};
use rsttrace_common::event::{
    Endpoints, FirewallEvent, SegmentHdr, HOOK_KPROBE, HOOK_TRACEPOINT, KIND_FIREWALL,
    VERDICT_DROP, VERDICT_ICMP, VERDICT_RESET,
};

use crate::{
    emit::{emit, header},
    kmem::{conf, now_ns, off, read_array, zero, Mem, Probed, Typed},
    net::{netns_filtered, read_packet, read_segment, skb_netns, AF_INET, AF_INET6, TCP_RST},
};

const TCP_SYN: u8 = 0x02;
const TCP_FIN: u8 = 0x01;
const TCP_ACK: u8 = 0x10;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_ICMPV6: u8 = 58;

/// This CPU's reply in flight.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Reply {
    /// A route lookup for a reply was seen: read the next packet sent.
    armed: u32,
    /// VERDICT_RESET or VERDICT_ICMP once the reply was read, else 0.
    kind: u8,
    icmp_type: u8,
    icmp_code: u8,
    _pad: u8,
    /// The segment the reply answers, as it arrived: for a reset, its
    /// addresses reversed and its sequence numbers; for an ICMP error,
    /// the quoted segment itself.
    ends: Endpoints,
    seg: SegmentHdr,
    /// `icmp_send(skb)`: the offending segment.
    icmp_skb: u64,
    /// A segment already reported by the exact hook.
    exact_skb: u64,
}

#[map]
static REPLY: PerCpuArray<Reply> = PerCpuArray::with_max_entries(1, 0);

/// Space to build a record in: on the stack, with its buffers, a record
/// would not fit beside its caller's frame before Linux 6.13 (and its
/// zeroing would become a `memset` subprogram, one more frame).
#[map]
static FIREWALL_SCRATCH: PerCpuArray<FirewallEvent> = PerCpuArray::with_max_entries(1, 0);

/// A zeroed record with this hook, verdict and ICMP type and code.
#[inline(always)]
fn record(
    hook: u8,
    verdict: u8,
    icmp_type: u8,
    icmp_code: u8,
) -> Option<&'static mut FirewallEvent> {
    // SAFETY: this program's own per-CPU slot; the programs using it do
    // not interrupt each other on a CPU (softirq, one segment at a time).
    let ev = unsafe { &mut *FIREWALL_SCRATCH.get_ptr_mut(0)? };
    zero(ev);
    ev.hook = hook;
    ev.verdict = verdict;
    ev.icmp_type = icmp_type;
    ev.icmp_code = icmp_code;
    Some(ev)
}

#[inline(always)]
fn reply() -> Option<&'static mut Reply> {
    // SAFETY: a per-CPU slot; the programs using it run in softirq on
    // this CPU one after the other for one segment.
    REPLY.get_ptr_mut(0).map(|r| unsafe { &mut *r })
}

#[inline(always)]
fn arm() {
    if let Some(r) = reply() {
        r.armed = 1;
    }
}

/// `fib:fib_table_lookup(tb_id, flp, nhc, err)`.  Runs on every route
/// lookup: stops at the first comparison.
#[btf_tracepoint(function = "fib_table_lookup")]
pub(crate) fn fib_table_lookup(ctx: BtfTracePointContext) -> i32 {
    let flp: u64 = ctx.arg(1);
    let proto: u8 = Typed::load(flp, off!(flowi4_proto));
    if proto == 0 || proto == IPPROTO_ICMP {
        arm();
    }
    0
}

/// `fib6:fib6_table_lookup(net, res, table, flp)`.
#[btf_tracepoint(function = "fib6_table_lookup")]
pub(crate) fn fib6_table_lookup(ctx: BtfTracePointContext) -> i32 {
    let flp: u64 = ctx.arg(3);
    let proto: u8 = Typed::load(flp, off!(flowi6_proto));
    if proto == 0 || proto == IPPROTO_TCP || proto == IPPROTO_ICMPV6 {
        arm();
    }
    0
}

/// `icmp:icmp_send(skb, type, code)`: names the offending segment.
#[btf_tracepoint(function = "icmp_send")]
pub(crate) fn icmp_send(ctx: BtfTracePointContext) -> i32 {
    if let Some(r) = reply() {
        r.icmp_skb = ctx.arg(0);
        r.icmp_type = ctx.arg::<u64>(1) as u8;
        r.icmp_code = ctx.arg::<u64>(2) as u8;
        r.armed = 1;
    }
    0
}

/// `net:net_dev_queue(skb)`: every packet sent.  Costs one per-CPU lookup
/// unless a reply's route lookup armed this CPU.
#[btf_tracepoint(function = "net_dev_queue")]
pub(crate) fn net_dev_queue(ctx: BtfTracePointContext) -> i32 {
    let Some(r) = reply() else {
        return 0;
    };
    if r.armed == 0 {
        return 0;
    }
    r.armed = 0;
    let skb: u64 = ctx.arg(0);
    let head: u64 = Typed::load(skb, off!(skb_head));
    let nh: u16 = Typed::load(skb, off!(skb_network_header));
    if head != 0 && nh != 0xffff {
        read_reply(head + nh as u64, r);
    }
    0
}

/// A reset, or an ICMP error quoting a TCP segment, at `ip`.
#[inline(always)]
fn read_reply(ip: u64, r: &mut Reply) {
    let h: [u8; 16] = read_array(ip);
    let (proto, ip_len) = match h[0] >> 4 {
        4 => (h[9], ((h[0] & 0x0f) as u64) * 4),
        6 => (h[6], 40),
        _ => return,
    };
    // The TCP segment to read: the reply itself (a reset), or the one an
    // ICMP error quotes after its 8-byte header.
    let (tcp_ip, kind) = match proto {
        IPPROTO_TCP => (ip, VERDICT_RESET),
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            let icmp: [u8; 2] = read_array(ip + ip_len);
            r.icmp_type = icmp[0];
            r.icmp_code = icmp[1];
            (ip + ip_len + 8, VERDICT_ICMP)
        }
        _ => return,
    };
    let q: [u8; 1] = read_array(tcp_ip);
    let q_len = if q[0] >> 4 == 4 {
        ((q[0] & 0x0f) as u64) * 4
    } else {
        40
    };
    // A quoted segment may end after 8 bytes of TCP header: only ports
    // and the sequence number are compared for ICMP errors.  A reset is
    // parsed as arriving: its remote end is this host.
    if !read_packet(tcp_ip, tcp_ip + q_len, &mut r.ends, &mut r.seg) {
        return;
    }
    if kind == VERDICT_ICMP || r.seg.tcp_flags & TCP_RST != 0 {
        r.kind = kind;
    }
}

/// Whether the reset in `r` answers segment (`ends`, `seg`) that arrived
/// here: its source is this host (the segment's destination), its
/// sequence numbers those RFC 793 gives a reset for that segment.
#[inline(always)]
fn reset_answers(r: &Reply, ends: &Endpoints, seg: &SegmentHdr) -> bool {
    // The reply was parsed as "arriving": its remote end is this host.
    let same_ends = r.ends.remote_port == ends.local_port
        && r.ends.local_port == ends.remote_port
        && same_addr(ends.family, &r.ends.remote_addr, &ends.local_addr)
        && same_addr(ends.family, &r.ends.local_addr, &ends.remote_addr);
    if !same_ends {
        return false;
    }
    if seg.tcp_flags & TCP_ACK != 0 {
        r.seg.seq == seg.ack_seq
    } else {
        let len = seg.payload_len
            + u32::from(seg.tcp_flags & TCP_SYN != 0)
            + u32::from(seg.tcp_flags & TCP_FIN != 0);
        r.seg.ack_seq == seg.seq.wrapping_add(len)
    }
}

/// Whether the ICMP error in `r` quotes segment (`ends`, `seg`).
#[inline(always)]
fn icmp_quotes(r: &Reply, ends: &Endpoints, seg: &SegmentHdr) -> bool {
    r.ends.remote_port == ends.remote_port
        && r.ends.local_port == ends.local_port
        && r.seg.seq == seg.seq
        && same_addr(ends.family, &r.ends.remote_addr, &ends.remote_addr)
}

/// `kfree_skb` with reason NETFILTER_DROP: netfilter dropped a TCP
/// segment, answered with the pending reply, if any.  A subprogram of its
/// own (see `strays::on_no_socket_drop`), hence the helper reads.
#[inline(never)]
pub(crate) fn on_netfilter_drop<C: EbpfContext>(ctx: &C, skb: u64) {
    let Some(r) = reply() else {
        return;
    };
    let exact = r.exact_skb == skb;
    r.exact_skb = 0;
    r.armed = 0;
    let Some(ev) = record(HOOK_TRACEPOINT, VERDICT_DROP, 0, 0) else {
        return;
    };
    // Already reported by an exact hook, or not TCP, or a reset.
    if exact
        || (conf!(want_firewall_tp) == 0 && conf!(want_drops) == 0)
        || !read_segment::<Probed>(skb, &mut ev.ends, &mut ev.seg)
        || ev.seg.tcp_flags & TCP_RST != 0
    {
        r.kind = 0;
        r.icmp_skb = 0;
        return;
    }
    if own_segment(skb, ev) {
        ev.outgoing = 1;
    } else if r.kind == VERDICT_RESET && reset_answers(r, &ev.ends, &ev.seg) {
        ev.verdict = VERDICT_RESET;
    } else if r.icmp_skb == skb || (r.kind == VERDICT_ICMP && icmp_quotes(r, &ev.ends, &ev.seg)) {
        ev.verdict = VERDICT_ICMP;
        ev.icmp_type = r.icmp_type;
        ev.icmp_code = r.icmp_code;
    }
    r.kind = 0;
    r.icmp_skb = 0;
    send(ctx, skb_netns::<Probed>(skb), ev);
}

/// Whether the dropped segment is this host's own, on its way out: it
/// belongs to a socket whose local port is the segment's source (a
/// received segment early demux gave a socket has it as destination).
/// Then `ev`'s ends, parsed as arriving, are turned round.
#[inline(always)]
fn own_segment(skb: u64, ev: &mut FirewallEvent) -> bool {
    let sk: u64 = Probed::load(skb, off!(skb_sk));
    if sk == 0 {
        return false;
    }
    let port: u16 = Probed::load(sk, off!(skc_num));
    if port == 0 || port != ev.ends.remote_port {
        return false;
    }
    core::mem::swap(&mut ev.ends.local_addr, &mut ev.ends.remote_addr);
    core::mem::swap(&mut ev.ends.local_port, &mut ev.ends.remote_port);
    true
}

/// `nf_send_reset(net, sk, oldskb, hook)` and `nf_send_reset6` (same
/// arguments): netfilter answers `oldskb` with a reset.  Exact.
#[kprobe]
pub(crate) fn nf_send_reset_kprobe(ctx: ProbeContext) -> u32 {
    let Some(skb) = ctx.arg::<u64>(2) else {
        return 0;
    };
    let Some(ev) = record(HOOK_KPROBE, VERDICT_RESET, 0, 0) else {
        return 0;
    };
    // nf_reject_ip_tcphdr_get(): never a reset for a reset.
    if !read_segment::<Probed>(skb, &mut ev.ends, &mut ev.seg) || ev.seg.tcp_flags & TCP_RST != 0 {
        return 0;
    }
    if let Some(r) = reply() {
        r.exact_skb = skb;
    }
    send(&ctx, skb_netns::<Probed>(skb), ev);
    0
}

/// `nf_send_unreach(skb_in, code, hook)`: netfilter answers `skb_in` with
/// ICMP destination unreachable `code`.  Exact.
#[kprobe]
pub(crate) fn nf_send_unreach_kprobe(ctx: ProbeContext) -> u32 {
    let (Some(skb), Some(code)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1)) else {
        return 0;
    };
    unreach(&ctx, skb, ICMP_DEST_UNREACH, code as u8);
    0
}

/// `nf_send_unreach6(net, skb_in, code, hooknum)`: the same for IPv6.
#[kprobe]
pub(crate) fn nf_send_unreach6_kprobe(ctx: ProbeContext) -> u32 {
    let (Some(skb), Some(code)) = (ctx.arg::<u64>(1), ctx.arg::<u64>(2)) else {
        return 0;
    };
    unreach(&ctx, skb, ICMPV6_DEST_UNREACH, code as u8);
    0
}

/// ICMP destination unreachable (RFC 792) and its ICMPv6 counterpart
/// (RFC 4443).
const ICMP_DEST_UNREACH: u8 = 3;
const ICMPV6_DEST_UNREACH: u8 = 1;

#[inline(always)]
fn unreach(ctx: &ProbeContext, skb: u64, icmp_type: u8, icmp_code: u8) {
    let Some(ev) = record(HOOK_KPROBE, VERDICT_ICMP, icmp_type, icmp_code) else {
        return;
    };
    if !read_segment::<Probed>(skb, &mut ev.ends, &mut ev.seg) {
        return;
    }
    if let Some(r) = reply() {
        r.exact_skb = skb;
    }
    send(ctx, skb_netns::<Probed>(skb), ev);
}

#[inline(always)]
fn send<C: EbpfContext>(ctx: &C, netns: u32, ev: &mut FirewallEvent) {
    if netns_filtered(netns) {
        return;
    }
    let now = now_ns();
    ev.header = header(KIND_FIREWALL, now);
    ev.netns = netns;
    emit(ctx, ev, now);
}

#[inline(always)]
fn same_addr(family: u16, a: &[u8; 16], b: &[u8; 16]) -> bool {
    if family == AF_INET6 {
        a == b
    } else {
        family == AF_INET && a[..4] == b[..4]
    }
}
