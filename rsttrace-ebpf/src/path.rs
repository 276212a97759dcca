//! The receive path, on kernels without BPF trampolines: every packet this
//! host receives passes `net:netif_receive_skb`.  (Where trampolines
//! exist, the functions that handle handshakes, resets and ICMP errors
//! give the same facts once per event instead: see `handshake.rs` and
//! `icmp.rs`.)  The program keeps only what the next steps of the same
//! packet's processing (on this CPU, in this softirq) need:
//!
//! - the last TCP segment's addresses, TTL / hop limit, flags: a new
//!   connection keeps its peer's TTL; a received reset gets its own
//!   (`rst_ttl`, `peer_ttl`: was it the peer that sent it, or something on
//!   the path?);
//! - ICMP errors about TCP segments this host sent (with `--failures`).
//!
//! Per packet: three loads; for a packet short enough to be a handshake
//! segment or a reset (or every packet with `--failures`), one 56-byte
//! read and a per-CPU store.

use aya_ebpf::{
    macros::{btf_tracepoint, map},
    maps::PerCpuArray,
    programs::BtfTracePointContext,
};
use rsttrace_common::event::{Endpoints, SegmentHdr};

use crate::{
    kmem::{conf, off, read_into, Mem, Typed},
    net::{parse_packet, AF_INET6, PACKET_HEAD},
};

/// `skb->protocol` values as loaded (big-endian ETH_P_IP / ETH_P_IPV6).
const ETH_P_IP: u16 = 0x0800u16.to_be();
const ETH_P_IPV6: u16 = 0x86ddu16.to_be();
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

/// The longest packet (IP header included) worth reading when ICMP errors
/// are not wanted: a SYN-ACK with 40 bytes of options, a bare ACK, or a
/// reset with options (Linux sends none with data).  Requests and
/// responses of ordinary traffic are longer and cost three loads.
const SHORT_V4: u32 = 20 + 60;
const SHORT_V6: u32 = 40 + 60;

/// The last TCP segment this CPU received.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct LastSegment {
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
pub(crate) fn head(which: u32) -> Option<&'static mut [u8; PACKET_HEAD]> {
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
pub(crate) fn netif_receive_skb(ctx: BtfTracePointContext) -> i32 {
    let skb: u64 = ctx.arg(0);
    let proto: u16 = Typed::load(skb, off!(skb_protocol));
    let short = if proto == ETH_P_IP {
        SHORT_V4
    } else if proto == ETH_P_IPV6 {
        SHORT_V6
    } else {
        return 0;
    };
    // ICMP errors can be of any length; everything else rsttrace reads is
    // short.
    if conf!(want_icmp) == 0 && Typed::load::<u32>(skb, off!(skb_len)) > short {
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
            // Before the network header is set: the ICMP header follows
            // the IP header, the segment it quotes follows its 8 bytes.
            crate::icmp::report(&ctx, skb, ip, ip + ip_len, ip + ip_len + 8);
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
pub(crate) fn last_segment(ends: &Endpoints) -> Option<&'static LastSegment> {
    let l = last()?;
    (l.skb != 0 && same_ends(&l.ends, ends)).then_some(l)
}

/// The TTL of the segment that makes a listener's child (its handshake's
/// last ACK, processed now on this CPU), for port `local_port`.
#[inline(always)]
pub(crate) fn handshake_ttl(local_port: u16) -> u8 {
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
pub(crate) fn synack_ttl(ends: &Endpoints) -> u8 {
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
