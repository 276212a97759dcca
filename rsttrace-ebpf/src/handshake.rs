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
    kmem::Typed,
    net::read_segment,
    owners::{accepted, set_peer_ttl},
};

/// The IP TTL / hop limit of the segment `skb` (0 when unreadable).
#[inline(always)]
pub(crate) fn segment_ttl(skb: u64) -> (u8, u8) {
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
pub(crate) fn tcp_finish_connect(ctx: FEntryContext) -> i32 {
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
fn on_syn_recv_sock(skb: u64, child: u64) {
    if child == 0 {
        return;
    }
    let (ttl, _) = segment_ttl(skb);
    if ttl != 0 {
        set_peer_ttl(child, ttl);
    }
}

/// An fexit program reads the return value after the arguments, so each
/// number of arguments a kernel gives the function is a program of its own
/// (BTF says which one loads; the offset must be a constant).
macro_rules! syn_recv_exit {
    ($name:ident, $function:literal, $ret:literal) => {
        #[fexit(function = $function)]
        pub(crate) fn $name(ctx: FExitContext) -> i32 {
            on_syn_recv_sock(ctx.arg(1), ctx.arg($ret));
            0
        }
    };
}

syn_recv_exit!(tcp_v4_syn_recv_sock_6, "tcp_v4_syn_recv_sock", 6);
syn_recv_exit!(tcp_v4_syn_recv_sock_7, "tcp_v4_syn_recv_sock", 7);
syn_recv_exit!(tcp_v6_syn_recv_sock_6, "tcp_v6_syn_recv_sock", 6);
syn_recv_exit!(tcp_v6_syn_recv_sock_7, "tcp_v6_syn_recv_sock", 7);

/// `inet_csk_accept(...)` returns the accepted socket, in the accepting
/// task: it owns it now.  `(sk, flags, err, kern)` before Linux 6.10,
/// `(sk, arg)` since.
macro_rules! accept_exit {
    ($name:ident, $ret:literal) => {
        #[fexit(function = "inet_csk_accept")]
        pub(crate) fn $name(ctx: FExitContext) -> i32 {
            accepted::<Typed>(ctx.arg($ret));
            0
        }
    };
}

accept_exit!(inet_csk_accept_2, 2);
accept_exit!(inet_csk_accept_4, 4);

/// The last reset segment TCP's receive path looked at on this CPU, for
/// kernels whose `tcp_reset(sk)` is not handed the segment (Debian's
/// 5.10): the reset being processed when `tcp_reset` runs.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct ResetSegment {
    sk: u64,
    ttl: u8,
    _pad: [u8; 7],
}

#[aya_ebpf::macros::map]
static RESET_SEGMENT: aya_ebpf::maps::PerCpuArray<ResetSegment> =
    aya_ebpf::maps::PerCpuArray::with_max_entries(1, 0);

/// Keeps `skb`'s TTL for `sk` when it is a reset.
#[inline(always)]
fn stash_reset(sk: u64, skb: u64) {
    let (ttl, flags) = segment_ttl(skb);
    if flags & crate::net::TCP_RST == 0 {
        return;
    }
    if let Some(s) = RESET_SEGMENT.get_ptr_mut(0) {
        // SAFETY: a per-CPU slot, written and read within one segment's
        // processing on this CPU.
        unsafe {
            (*s).sk = crate::kmem::plain(sk);
            (*s).ttl = ttl;
        }
    }
}

/// The TTL stashed for `sk`, taken (0 when none).
#[inline(always)]
pub(crate) fn take_stashed_ttl(sk: u64) -> u8 {
    let Some(s) = RESET_SEGMENT.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: as in `stash_reset`.
    let s = unsafe { &mut *s };
    let sk = crate::kmem::plain(sk);
    let ttl = if s.sk == sk { s.ttl } else { 0 };
    s.sk = 0;
    ttl
}

/// `tcp_rcv_state_process(sk, skb)`: every segment of a socket not yet
/// (or no longer) established, a connection refused among them.
#[fentry(function = "tcp_rcv_state_process")]
pub(crate) fn tcp_rcv_state_process(ctx: FEntryContext) -> i32 {
    stash_reset(ctx.arg(0), ctx.arg(1));
    0
}

/// `tcp_validate_incoming(sk, skb, th, syn_inerr)`: an established
/// connection's segment off the fast path, where its resets are checked.
#[fentry(function = "tcp_validate_incoming")]
pub(crate) fn tcp_validate_incoming(ctx: FEntryContext) -> i32 {
    stash_reset(ctx.arg(0), ctx.arg(1));
    0
}
