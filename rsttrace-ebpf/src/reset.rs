//! One reset, sent or received: the record userspace explains.  The same
//! body serves every hook (tracepoint, fentry, kprobe, raw tracepoint);
//! `M` says how its pointers may be read.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_jiffies64, generated::bpf_skc_to_tcp_sock},
    macros::map,
    maps::PerCpuArray,
    EbpfContext,
};
use rsttrace_common::event::{
    Endpoints, ResetEvent, TcpInfo, COUNTER_FILTERED, COUNTER_SEEN, FLAG_BACKLOG, FLAG_BORN_KNOWN,
    FLAG_CLOSED, FLAG_FULL_SOCK, FLAG_HAS_SK, FLAG_HAS_SKB, FLAG_OWNER_CLOSED,
    FLAG_OWNER_FROM_LISTENER, FLAG_OWNER_KNOWN, FLAG_STACK, FLAG_TCP_INFO, FLAG_TIMEWAIT, FRAMES,
    KIND_RESET_RECEIVED, KIND_RESET_SENT, REASON_ABSENT,
};

use crate::{
    emit::{aggregate, count, emit, header, should_emit},
    handshake::{segment_ttl, take_stashed_ttl},
    kmem::{conf, now_ns, off, plain, read, zero, Mem, Probed, Typed},
    net::{
        current_comm, is_full_sock, netns_filtered, read_segment, skb_netns, sock_endpoints,
        sock_inode, sock_netns, sock_state, TCP_RST,
    },
    owners::{closed_owner, lookup},
    path::last_segment,
    strays::{answered, stray},
};

/// Per-CPU space to build records in (too big for the 512-byte stack).
/// One slot per direction: a program never nests with itself on a CPU,
/// but the send and receive programs can interrupt each other.
#[map]
pub(crate) static SCRATCH: PerCpuArray<ResetEvent> = PerCpuArray::with_max_entries(2, 0);

pub(crate) const SLOT_SENT: u32 = 0;
pub(crate) const SLOT_RECEIVED: u32 = 1;

/// A reset as a hook sees it.
pub(crate) struct Reset {
    pub kind: u8,
    pub slot: u32,
    pub sk: u64,
    /// Sent: the segment answered (0 for resets the host starts itself).
    /// Received: the reset itself where the hook is `tcp_reset()`'s own
    /// (BTF-typed), 0 from the tracepoint.
    pub skb: u64,
    pub reason: u32,
    pub hook: u8,
    /// The functions that build resets also run for an incoming RST,
    /// which they never answer: skip those.
    pub skip_rst: bool,
}

#[inline(always)]
pub(crate) fn on_reset<M: Mem, C: EbpfContext>(ctx: &C, r: Reset) {
    let netns = if r.sk != 0 {
        sock_netns::<M>(r.sk)
    } else {
        skb_netns::<M>(r.skb)
    };
    let Some(ev) = SCRATCH.get_ptr_mut(r.slot) else {
        return;
    };
    // SAFETY: this program's own per-CPU slot (see SCRATCH).
    let ev = unsafe { &mut *ev };
    zero(ev);
    if !read_segment_answered::<M, C>(ctx, &r, netns, ev) {
        return;
    }
    count(COUNTER_SEEN);
    if netns_filtered(netns) {
        count(COUNTER_FILTERED);
        return;
    }
    ev.header.kind = r.kind;
    ev.sk = r.sk;
    ev.reason = r.reason;
    ev.netns = netns;
    ev.hook = r.hook;
    let full = r.sk != 0 && socket_basics::<M>(r.sk, ev);
    owner(r.sk, ev, full);
    if r.kind == KIND_RESET_RECEIVED {
        received_ttl::<M>(&r, ev);
    }
    // Counting needs no precise time: jiffies are an inlined load, the
    // clock a helper call that shows under storms.
    // SAFETY: no arguments.
    let jiffies = unsafe { bpf_jiffies64() };
    if !should_emit(jiffies) {
        aggregate(ctx, r.kind, ev, jiffies);
        if r.kind == KIND_RESET_RECEIVED {
            counted_reset(r.sk);
        }
        return;
    }
    let now = now_ns();
    ev.header = header(r.kind, now);
    details::<M, C>(ctx, r.sk, full, ev);
    emit(ctx, ev, now);
}

/// The segment a sent reset answers, into `ev` (for a received one, the
/// reset's own TTL).  False for an incoming RST the reset functions ran
/// for but never answer (a stray, reported as such, if no socket has it).
#[inline(always)]
fn read_segment_answered<M: Mem, C: EbpfContext>(
    ctx: &C,
    r: &Reset,
    netns: u32,
    ev: &mut ResetEvent,
) -> bool {
    if r.kind == KIND_RESET_RECEIVED {
        ev.rst_ttl = reset_ttl(r.skb);
    } else if r.skb != 0 && read_segment::<M>(r.skb, &mut ev.ends, &mut ev.seg) {
        if r.skip_rst && ev.seg.tcp_flags & TCP_RST != 0 {
            if r.sk == 0 {
                stray(ctx, netns, &ev.ends, &ev.seg);
            }
            return false;
        }
        ev.flags |= FLAG_HAS_SKB;
        if conf!(kfree_skb_has_reason) != 0 {
            answered(r.skb);
        }
    }
    true
}

/// A received reset's TTL where the segment itself was not at hand:
/// from the per-packet hook's note, or the receive path's stash.
#[inline(always)]
fn received_ttl<M: Mem>(r: &Reset, ev: &mut ResetEvent) {
    if conf!(packet_ttls) != 0 {
        ev.rst_ttl = last_reset_ttl(&ev.ends);
    } else if r.skb == 0 && M::TYPED {
        // tcp_reset(sk) without the segment: the receive path's hooks
        // kept its TTL (see handshake.rs).
        ev.rst_ttl = take_stashed_ttl(r.sk);
    }
}

/// The last socket whose received reset this CPU counted instead of
/// reporting: the errno report `tcp_reset()` makes for it right after is
/// no news (and no connection failure of its own).
#[map]
static COUNTED: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn counted_reset(sk: u64) {
    if let Some(c) = COUNTED.get_ptr_mut(0) {
        // SAFETY: a per-CPU slot, written here and read by the errno
        // report that follows in the same call chain on this CPU.
        unsafe { *c = plain(sk) };
    }
}

/// Whether `sk`'s errno report follows a reset this CPU only counted.
#[inline(always)]
pub(crate) fn report_of_counted_reset(sk: u64) -> bool {
    let Some(c) = COUNTED.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: as in `counted_reset`.
    let c = unsafe { &mut *c };
    let counted = *c != 0 && *c == plain(sk);
    *c = 0;
    counted
}

/// A received reset's own TTL, from the segment `tcp_reset()` was handed
/// (where a function hook gives it; 0 otherwise).  Only a reset
/// segment's TTL counts: `tcp_reset()` also runs for data after shutdown
/// (TCP_ABORT_ON_DATA), which resets our own socket.
#[inline(always)]
fn reset_ttl(skb: u64) -> u8 {
    match segment_ttl(skb) {
        (ttl, flags) if flags & TCP_RST != 0 => ttl,
        _ => 0,
    }
}

/// The same from the per-packet receive hook: the last segment this CPU
/// received, if it is a reset between these ends (the one being
/// processed now).
#[inline(always)]
fn last_reset_ttl(ends: &Endpoints) -> u8 {
    match last_segment(ends) {
        Some(l) if l.seg.tcp_flags & TCP_RST != 0 => l.seg.ttl,
        _ => 0,
    }
}

/// State, endpoints (when the segment gave none) and the time-wait
/// substate; returns whether `sk` is a full socket.
#[inline(always)]
fn socket_basics<M: Mem>(sk: u64, ev: &mut ResetEvent) -> bool {
    ev.flags |= FLAG_HAS_SK;
    ev.state = sock_state::<M>(sk);
    let full = is_full_sock(ev.state);
    if full {
        ev.flags |= FLAG_FULL_SOCK;
    }
    // The segment being answered names both ends exactly (a listener's
    // socket has no remote address); otherwise the socket does.
    if ev.flags & FLAG_HAS_SKB == 0 {
        sock_endpoints::<M>(sk, full, &mut ev.ends);
    }
    if ev.state == conf!(tcp_time_wait) {
        // tw_substate lies beyond sock_common: a helper read.
        ev.tw_substate = read(sk, off!(tw_substate));
        ev.flags |= FLAG_TIMEWAIT;
    }
    full
}

/// The owner from the socket table, or for a time-wait socket from the
/// table of closed connections.
#[inline(always)]
fn owner(sk: u64, ev: &mut ResetEvent, full: bool) {
    if full {
        if let Some(entry) = lookup(sk) {
            if entry.has_owner != 0 {
                ev.owner = entry.owner;
                ev.flags |= FLAG_OWNER_KNOWN;
                if entry.from_listener != 0 {
                    ev.flags |= FLAG_OWNER_FROM_LISTENER;
                }
            }
            if entry.born_ns != 0 {
                ev.born_ns = entry.born_ns;
                ev.flags |= FLAG_BORN_KNOWN;
            }
            if entry.closed_ns != 0 {
                ev.closed_ns = entry.closed_ns;
                ev.flags |= FLAG_CLOSED;
            }
            ev.peer_ttl = entry.peer_ttl;
        }
    } else if ev.flags & FLAG_TIMEWAIT != 0 {
        if let Some(c) = closed_owner(ev.netns, &ev.ends) {
            ev.owner = c.owner;
            ev.born_ns = c.born_ns;
            ev.closed_ns = c.closed_ns;
            ev.flags |= FLAG_OWNER_KNOWN | FLAG_OWNER_CLOSED | FLAG_CLOSED | FLAG_BORN_KNOWN;
        }
    }
}

/// What only a reported (not aggregated) reset needs.
#[inline(always)]
fn details<M: Mem, C: EbpfContext>(ctx: &C, sk: u64, full: bool, ev: &mut ResetEvent) {
    // The kernel assigns a socket's cookie the first time something asks
    // (ss -e, SO_COOKIE...): ask, so that every record can be matched.
    ev.sock_cookie = cookie::<M>(sk);
    if full {
        ev.sock_ino = sock_inode::<M>(sk);
        ev.sk_err = M::load(sk, off!(sk_err));
        ev.sk_flags = M::load(sk, off!(sk_flags));
        ev.sk_lingertime = M::load(sk, off!(sk_lingertime));
        ev.sk_shutdown_byte = M::load(sk, off!(sk_shutdown_byte));
        if ev.state != conf!(tcp_listen) {
            read_tcp_info::<M>(sk, &mut ev.tcp);
            ev.flags |= FLAG_TCP_INFO;
        } else if off!(sk_max_ack_backlog) != rsttrace_common::config::ABSENT {
            ev.ack_backlog = M::load(sk, off!(sk_ack_backlog));
            ev.max_ack_backlog = M::load(sk, off!(sk_max_ack_backlog));
            ev.flags |= FLAG_BACKLOG;
        }
    }
    ev.task_tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    ev.task_comm = current_comm();
    if wants_stack(ev) {
        stack(ctx, ev);
    }
}

/// `bpf_get_socket_cookie` creates a missing cookie, but only tracing
/// programs (BTF-typed) may call it, from Linux 5.12.
#[inline(always)]
fn cookie<M: Mem>(sk: u64) -> u64 {
    if sk == 0 {
        return 0;
    }
    if M::TYPED && conf!(socket_cookie_helper) != 0 {
        // SAFETY: `sk` is a BTF-typed socket pointer (M::TYPED).
        return unsafe {
            aya_ebpf::helpers::generated::bpf_get_socket_cookie(sk as *mut core::ffi::c_void)
        };
    }
    M::load(sk, off!(skc_cookie))
}

/// A sent reset whose cause userspace must infer from the call path: the
/// kernel gives no reason, and the state alone does not tell.  Received
/// resets never need it (their cause is the socket's state), and the
/// unwind is most of what a reset costs: under a retry storm it tripled
/// the received-reset program's run time.
#[inline(always)]
fn wants_stack(ev: &ResetEvent) -> bool {
    conf!(want_stack) != 0
        && ev.header.kind == KIND_RESET_SENT
        && ev.sk != 0
        && ev.flags & FLAG_TIMEWAIT == 0
        && (ev.reason == REASON_ABSENT || ev.reason == conf!(reason_not_specified))
}

#[inline(always)]
fn stack<C: EbpfContext>(ctx: &C, ev: &mut ResetEvent) {
    use aya_ebpf::helpers::generated::bpf_get_stack;
    // SAFETY: `frames` is FRAMES u64s inside the record; the helper writes
    // at most that many bytes and returns how many it wrote.
    let n = unsafe {
        bpf_get_stack(
            ctx.as_ptr(),
            ev.frames.as_mut_ptr().cast(),
            (FRAMES * 8) as u32,
            0,
        )
    };
    if n > 0 {
        ev.flags |= FLAG_STACK;
    }
}

/// TCP counters live in `struct tcp_sock`, beyond the `struct sock` the
/// argument's BTF type names.  A typed program asks the kernel for the
/// `tcp_sock` view of the socket (one helper call, Linux 5.9+) and then
/// loads the counters directly; others read each with a helper call.
#[inline(always)]
fn read_tcp_info<M: Mem>(sk: u64, t: &mut TcpInfo) {
    let tp = if M::TYPED {
        // SAFETY: `sk` is a BTF-typed socket pointer (M::TYPED); the
        // helper returns it as a `struct tcp_sock *`, or NULL when it is
        // not a TCP socket.
        unsafe { bpf_skc_to_tcp_sock(sk as *mut core::ffi::c_void) as u64 }
    } else {
        0
    };
    if tp != 0 {
        tcp_counters::<Typed>(tp, t);
    } else {
        tcp_counters::<Probed>(sk, t);
    }
    // SAFETY: no arguments.
    t.now_jiffies = unsafe { bpf_jiffies64() };
}

#[inline(always)]
fn tcp_counters<M: Mem>(tp: u64, t: &mut TcpInfo) {
    t.bytes_received = M::load(tp, off!(tcp_bytes_received));
    t.bytes_acked = M::load(tp, off!(tcp_bytes_acked));
    t.bytes_sent = M::load(tp, off!(tcp_bytes_sent));
    t.snd_una = M::load(tp, off!(tcp_snd_una));
    t.snd_nxt = M::load(tp, off!(tcp_snd_nxt));
    t.rcv_nxt = M::load(tp, off!(tcp_rcv_nxt));
    t.copied_seq = M::load(tp, off!(tcp_copied_seq));
    t.lsndtime = M::load(tp, off!(tcp_lsndtime));
    t.rcv_tstamp = M::load(tp, off!(tcp_rcv_tstamp));
    t.lrcvtime = M::load(tp, off!(icsk_lrcvtime));
    t.linger2 = M::load(tp, off!(tcp_linger2));
}
