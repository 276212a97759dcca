//! The receive path: every packet this host receives passes
//! `net:netif_receive_skb`.  The program keeps only what the next steps
//! of the same packet's processing (on this CPU, in this softirq) need:
//!
//! - the last TCP segment's addresses, TTL / hop limit, flags: a new
//!   connection keeps its peer's TTL; a received reset gets its own
//!   (`rst_ttl`, `peer_ttl`: was it the peer that sent it, or something on
//!   the path?); a reset for no socket at all is recognised when the
//!   kernel drops it;
//! - ICMP errors about TCP segments this host sent (with `--failures`).
//!
//! Per packet: two loads, one 56-byte read and a per-CPU store.

use aya_ebpf::{
    macros::{btf_tracepoint, map},
    maps::PerCpuArray,
    programs::BtfTracePointContext,
    EbpfContext,
};
use rsttrace_common::event::{
    Endpoints, IcmpEvent, SegmentHdr, StrayEvent, COUNTER_STRAY, KIND_ICMP, KIND_STRAY,
};

use crate::{
    emit::{count, emit, header},
    kmem::{conf, now_ns, off, read_array, read_into, zero, Mem, Probed, Typed},
    net::{netns_filtered, parse_packet, skb_netns, AF_INET6, PACKET_HEAD, TCP_RST},
};

/// `skb->protocol` values as loaded (big-endian ETH_P_IP / ETH_P_IPV6).
const ETH_P_IP: u16 = 0x0800u16.to_be();
const ETH_P_IPV6: u16 = 0x86ddu16.to_be();
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

/// The last TCP segment this CPU received.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct LastSegment {
    pub skb: u64,
    pub ends: Endpoints,
    pub seg: SegmentHdr,
}

#[map]
static LAST: PerCpuArray<LastSegment> = PerCpuArray::with_max_entries(1, 0);

/// The first bytes of the packet received (0) and of the segment an ICMP
/// error quotes (1).  In a map rather than on the stack: before Linux 6.13
/// (no private stacks for tracing programs) a program and the subprogram
/// it calls share 512 bytes of stack, and two such buffers do not fit.
#[map]
static HEAD: PerCpuArray<[u8; PACKET_HEAD]> = PerCpuArray::with_max_entries(2, 0);

#[inline(always)]
fn head(which: u32) -> Option<&'static mut [u8; PACKET_HEAD]> {
    // SAFETY: a per-CPU slot, used within one packet's processing on
    // this CPU.
    HEAD.get_ptr_mut(which).map(|h| unsafe { &mut *h })
}

#[inline(always)]
fn last() -> Option<&'static mut LastSegment> {
    // SAFETY: a per-CPU slot, written and read within one packet's
    // processing on this CPU.
    LAST.get_ptr_mut(0).map(|l| unsafe { &mut *l })
}

/// `net:netif_receive_skb(skb)`.  Before `__netif_receive_skb_core()` sets
/// the network header: the packet starts at `skb->data`.
#[btf_tracepoint(function = "netif_receive_skb")]
pub fn netif_receive_skb(ctx: BtfTracePointContext) -> i32 {
    let skb: u64 = ctx.arg(0);
    let proto: u16 = Typed::load(skb, off!(skb_protocol));
    if proto != ETH_P_IP && proto != ETH_P_IPV6 {
        return 0;
    }
    let ip: u64 = Typed::load(skb, off!(skb_data));
    let Some(h) = head(0) else {
        return 0;
    };
    // One read for everything below (it is the cost of this program).
    read_into(h, ip);
    let (l4, ip_len) = if h[0] >> 4 == 4 {
        (h[9], ((h[0] & 0x0f) as u64) * 4)
    } else {
        (h[6], 40)
    };
    if l4 == IPPROTO_ICMP || l4 == IPPROTO_ICMPV6 {
        if conf!(want_icmp) != 0 {
            on_icmp(&ctx, skb, ip, ip_len);
        }
        return 0;
    }
    let Some(l) = last() else {
        return 0;
    };
    l.skb = 0;
    // Nothing reads a bare SYN back (handshake TTLs come from the SYN-ACK
    // and the final ACK, rst_ttl from resets): a SYN flood or a scan of
    // closed ports costs the read above and no more.
    if pure_syn(h, ip_len) {
        return 0;
    }
    if parse_packet(h, ip, ip + ip_len, &mut l.ends, &mut l.seg) {
        l.skb = skb;
    }
    0
}

/// A SYN without ACK, when the TCP header follows a fixed IP header.
#[inline(always)]
fn pure_syn(h: &[u8; PACKET_HEAD], ip_len: u64) -> bool {
    let flags = match (h[0] >> 4, ip_len) {
        (4, 20) => h[20 + 13],
        (6, 40) => h[40 + 13],
        _ => return false,
    };
    flags & (TCP_SYN | TCP_ACK) == TCP_SYN
}

/// The last segment, if it is `skb` (0: any) and between `ends`.
#[inline(always)]
pub fn last_segment(ends: &Endpoints) -> Option<&'static LastSegment> {
    let l = last()?;
    (l.skb != 0 && same_ends(&l.ends, ends)).then_some(l)
}

/// The TTL of the segment that makes a listener's child (its handshake's
/// last ACK, processed now on this CPU), for port `local_port`.
#[inline(always)]
pub fn handshake_ttl(local_port: u16) -> u8 {
    match last() {
        Some(l)
            if l.skb != 0 && l.ends.local_port == local_port && l.seg.tcp_flags & TCP_SYN == 0 =>
        {
            l.seg.ttl
        }
        _ => 0,
    }
}

/// The TTL of the SYN-ACK that establishes a connection we opened.
#[inline(always)]
pub fn synack_ttl(ends: &Endpoints) -> u8 {
    match last_segment(ends) {
        Some(l) if l.seg.tcp_flags & TCP_SYN != 0 => l.seg.ttl,
        _ => 0,
    }
}

#[inline(always)]
fn same_ends(a: &Endpoints, b: &Endpoints) -> bool {
    a.local_port == b.local_port
        && a.remote_port == b.remote_port
        && if a.family == AF_INET6 {
            a.local_addr == b.local_addr && a.remote_addr == b.remote_addr
        } else {
            a.local_addr[..4] == b.local_addr[..4] && a.remote_addr[..4] == b.remote_addr[..4]
        }
}

/// `kfree_skb` with reason NO_SOCKET: if the segment is the last one
/// received and a reset, it was a reset for no socket.
#[inline(always)]
pub fn on_no_socket<C: EbpfContext>(ctx: &C, skb: u64) {
    let Some(l) = last() else {
        return;
    };
    if l.skb != skb || l.seg.tcp_flags & TCP_RST == 0 {
        return;
    }
    l.skb = 0;
    let netns = skb_netns::<Typed>(skb);
    if netns_filtered(netns) {
        return;
    }
    // Counted in the traced namespaces, reported only if asked.
    count(COUNTER_STRAY);
    if conf!(want_stray) == 0 {
        return;
    }
    let now = now_ns();
    let ev = StrayEvent {
        header: header(KIND_STRAY, now),
        netns,
        _pad: 0,
        ends: l.ends,
        seg: l.seg,
    };
    emit(ctx, &ev, now);
}

/// Space for an ICMP record (the program's stack is full).
#[map]
static ICMP_SCRATCH: PerCpuArray<IcmpEvent> = PerCpuArray::with_max_entries(1, 0);

/// An ICMP(v6) error quoting one of our TCP segments.  A function of its
/// own (a BPF subprogram with its own stack frame) so that the common
/// path does not carry its buffers.
#[inline(never)]
fn on_icmp(ctx: &BtfTracePointContext, skb: u64, ip: u64, ip_len: u64) {
    let Some(ev) = ICMP_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this program's own per-CPU slot.
    let ev = unsafe { &mut *ev };
    zero(ev);
    let icmp: [u8; 2] = read_array(ip + ip_len);
    ev.icmp_type = icmp[0];
    ev.icmp_code = icmp[1];
    let quoted = ip + ip_len + 8;
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
    // The ICMP packet itself (read by the caller): who sent it, its TTL.
    let Some(h) = head(0) else {
        return;
    };
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
