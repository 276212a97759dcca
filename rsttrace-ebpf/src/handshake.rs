//! Once per connection, where BPF trampolines exist: the functions that
//! finish a handshake give the peer's TTL (for a received reset's origin)
//! and `inet_csk_accept` names who accepted a connection.  On kernels
//! without trampolines the per-packet receive hook (`path.rs`) and the
//! accept syscalls (`owners.rs`) stand in.

use aya_ebpf::{
    macros::{fentry, fexit},
    programs::{FEntryContext, FExitContext},
};
use rsttrace_common::event::{Endpoints, SegmentHdr};

use crate::{
    kmem::{conf, Typed},
    net::read_segment,
    owners::{accepted, set_peer_ttl},
};

/// The IP TTL / hop limit of the segment `skb` (0 when unreadable).
#[inline(always)]
pub fn segment_ttl(skb: u64) -> (u8, u8) {
    let mut ends = Endpoints::default();
    let mut seg = SegmentHdr::default();
    if skb != 0 && read_segment::<Typed>(skb, &mut ends, &mut seg) {
        (seg.ttl, seg.tcp_flags)
    } else {
        (0, 0)
    }
}

/// `tcp_finish_connect(sk, skb)`: a connection we opened is established;
/// `skb` is the peer's SYN-ACK (NULL for a repaired socket).
#[fentry(function = "tcp_finish_connect")]
pub fn tcp_finish_connect(ctx: FEntryContext) -> i32 {
    let (ttl, _) = segment_ttl(ctx.arg(1));
    if ttl != 0 {
        set_peer_ttl(ctx.arg(0), ttl);
    }
    0
}

/// `tcp_v{4,6}_syn_recv_sock(sk, skb, req, dst, req_unhash, own_req
/// [, opt_child_init])` returns the child a listener's handshake made;
/// `skb` is the peer's last handshake segment.  The child got its owner
/// (the listener's) when it was cloned; this adds the peer's TTL.
#[inline(always)]
fn on_syn_recv_sock(ctx: &FExitContext) {
    // The return value follows the arguments, whose number BTF gave.
    let child: u64 = match conf!(syn_recv_ret_arg) {
        6 => ctx.arg(6),
        7 => ctx.arg(7),
        _ => 0,
    };
    if child == 0 {
        return;
    }
    let (ttl, _) = segment_ttl(ctx.arg(1));
    if ttl != 0 {
        set_peer_ttl(child, ttl);
    }
}

#[fexit(function = "tcp_v4_syn_recv_sock")]
pub fn tcp_v4_syn_recv_sock(ctx: FExitContext) -> i32 {
    on_syn_recv_sock(&ctx);
    0
}

#[fexit(function = "tcp_v6_syn_recv_sock")]
pub fn tcp_v6_syn_recv_sock(ctx: FExitContext) -> i32 {
    on_syn_recv_sock(&ctx);
    0
}

/// `inet_csk_accept(...)` returns the accepted socket, in the accepting
/// task: it owns the socket now.
#[fexit(function = "inet_csk_accept")]
pub fn inet_csk_accept(ctx: FExitContext) -> i32 {
    // (sk, flags, err, kern) before Linux 6.10, (sk, arg) since.
    let sk: u64 = match conf!(accept_ret_arg) {
        2 => ctx.arg(2),
        4 => ctx.arg(4),
        _ => 0,
    };
    accepted::<Typed>(sk);
    0
}
