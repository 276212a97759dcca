//! rsttrace's eBPF programs: capture every TCP reset the host sends or
//! receives, plus the process-context events that tell which process owns
//! each socket.
//!
//! Every hook exists in the variants kernels offer, chosen at start-up by
//! the daemon: BTF tracepoints where the kernel has BTF, raw tracepoints
//! where it does not (`--btf`), and, for the functions that build resets
//! on kernels whose `tcp_send_reset` tracepoint misses most of them
//! (before 6.10), fentry or kprobes.  The bodies are shared; `Typed` or
//! `Probed` says how a variant may read its pointers.
//!
//! Attribution never uses the task running when a reset fires: resets in
//! reply to packets run in softirq and timers in no process at all.
#![no_std]
#![no_main]

mod diag;
mod emit;
mod firewall;
mod handshake;
mod icmp;
mod kmem;
mod net;
mod owners;
mod path;
mod reset;
mod strays;

use aya_ebpf::{
    macros::{btf_tracepoint, fentry, kprobe, raw_tracepoint, tracepoint},
    programs::{
        BtfTracePointContext, FEntryContext, ProbeContext, RawTracePointContext, TracePointContext,
    },
    EbpfContext,
};
use rsttrace_common::event::{
    ErrorReportEvent, FLAG_OWNER_KNOWN, HOOK_FENTRY, HOOK_KPROBE, HOOK_RAW_TRACEPOINT,
    HOOK_TRACEPOINT, KIND_ERROR_REPORT, KIND_RESET_RECEIVED, KIND_RESET_SENT, REASON_ABSENT,
};

use crate::{
    emit::{emit, header},
    kmem::{conf, now_ns, off, read, Mem, Probed, Typed},
    net::{netns_filtered, sock_endpoints, sock_inode, sock_netns, sock_state},
    owners::{lookup, on_accept_syscall, on_set_state},
    reset::{on_reset, Reset, SLOT_RECEIVED, SLOT_SENT},
};

// ---- sent resets -------------------------------------------------------

/// The reason argument, where the tracepoint has one (Linux >= 6.10).
#[inline(always)]
fn reason_arg(raw: u64) -> u32 {
    if conf!(send_reset_has_reason) != 0 {
        raw as u32
    } else {
        REASON_ABSENT
    }
}

#[inline(always)]
fn sent(sk: u64, skb: u64, reason: u32, hook: u8, skip_rst: bool) -> Reset {
    Reset {
        kind: KIND_RESET_SENT,
        slot: SLOT_SENT,
        sk,
        skb,
        reason,
        hook,
        skip_rst,
    }
}

/// `tcp:tcp_send_reset(sk, skb, reason)`: this host sends a reset.  `sk`
/// may be NULL (no socket) or a TIME_WAIT mini-socket; `skb` is the
/// segment being answered, NULL for resets the host initiates (close,
/// abort, timers).  Before 6.10 it fires only for full sockets.
#[btf_tracepoint(function = "tcp_send_reset")]
pub(crate) fn tcp_send_reset(ctx: BtfTracePointContext) -> i32 {
    let r = sent(
        ctx.arg(0),
        ctx.arg(1),
        reason_arg(ctx.arg(2)),
        HOOK_TRACEPOINT,
        false,
    );
    on_reset::<Typed, _>(&ctx, r);
    0
}

#[raw_tracepoint(tracepoint = "tcp_send_reset")]
pub(crate) fn tcp_send_reset_raw(ctx: RawTracePointContext) -> i32 {
    let r = sent(
        ctx.arg(0),
        ctx.arg(1),
        reason_arg(ctx.arg(2)),
        HOOK_RAW_TRACEPOINT,
        false,
    );
    on_reset::<Probed, _>(&ctx, r);
    0
}

/// `tcp_v4_send_reset(sk, skb)`: every reset the host sends in reply to a
/// segment (no socket, time-wait, listener, full socket).  It returns
/// without sending for an incoming RST.
#[fentry(function = "tcp_v4_send_reset")]
pub(crate) fn tcp_v4_send_reset_fentry(ctx: FEntryContext) -> i32 {
    on_reset::<Typed, _>(
        &ctx,
        sent(ctx.arg(0), ctx.arg(1), REASON_ABSENT, HOOK_FENTRY, true),
    );
    0
}

#[fentry(function = "tcp_v6_send_reset")]
pub(crate) fn tcp_v6_send_reset_fentry(ctx: FEntryContext) -> i32 {
    on_reset::<Typed, _>(
        &ctx,
        sent(ctx.arg(0), ctx.arg(1), REASON_ABSENT, HOOK_FENTRY, true),
    );
    0
}

/// `tcp_send_active_reset(sk, ...)`: resets the host starts itself.
#[fentry(function = "tcp_send_active_reset")]
pub(crate) fn tcp_send_active_reset_fentry(ctx: FEntryContext) -> i32 {
    on_reset::<Typed, _>(&ctx, sent(ctx.arg(0), 0, REASON_ABSENT, HOOK_FENTRY, false));
    0
}

/// The same two as kprobes (one program attached to both v4 and v6).
#[kprobe]
pub(crate) fn send_reset_kprobe(ctx: ProbeContext) -> u32 {
    let (Some(sk), Some(skb)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1)) else {
        return 0;
    };
    on_reset::<Probed, _>(&ctx, sent(sk, skb, REASON_ABSENT, HOOK_KPROBE, true));
    0
}

#[kprobe]
pub(crate) fn active_reset_kprobe(ctx: ProbeContext) -> u32 {
    let Some(sk) = ctx.arg::<u64>(0) else {
        return 0;
    };
    on_reset::<Probed, _>(&ctx, sent(sk, 0, REASON_ABSENT, HOOK_KPROBE, false));
    0
}

// ---- received resets ---------------------------------------------------

#[inline(always)]
fn received(sk: u64, skb: u64, hook: u8) -> Reset {
    Reset {
        kind: KIND_RESET_RECEIVED,
        slot: SLOT_RECEIVED,
        sk,
        skb,
        reason: REASON_ABSENT,
        hook,
        skip_rst: false,
    }
}

/// `tcp:tcp_receive_reset(sk)`: a local socket is reset by its peer.
#[btf_tracepoint(function = "tcp_receive_reset")]
pub(crate) fn tcp_receive_reset(ctx: BtfTracePointContext) -> i32 {
    on_reset::<Typed, _>(&ctx, received(ctx.arg(0), 0, HOOK_TRACEPOINT));
    0
}

/// `tcp_reset(sk[, skb])`, whose first line is that tracepoint: the same
/// event, plus the reset segment itself (its TTL says who sent it)
/// without watching every packet received.
#[fentry(function = "tcp_reset")]
pub(crate) fn tcp_reset_fentry(ctx: FEntryContext) -> i32 {
    let skb = if conf!(tcp_reset_has_skb) != 0 {
        ctx.arg(1)
    } else {
        0
    };
    on_reset::<Typed, _>(&ctx, received(ctx.arg(0), skb, HOOK_FENTRY));
    0
}

#[raw_tracepoint(tracepoint = "tcp_receive_reset")]
pub(crate) fn tcp_receive_reset_raw(ctx: RawTracePointContext) -> i32 {
    on_reset::<Probed, _>(&ctx, received(ctx.arg(0), 0, HOOK_RAW_TRACEPOINT));
    0
}

// ---- owners ------------------------------------------------------------

#[btf_tracepoint(function = "inet_sock_set_state")]
pub(crate) fn inet_sock_set_state(ctx: BtfTracePointContext) -> i32 {
    let (old, new) = (ctx.arg::<u64>(1) as u8, ctx.arg::<u64>(2) as u8);
    on_set_state::<Typed, _>(&ctx, ctx.arg(0), old, new);
    0
}

#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub(crate) fn inet_sock_set_state_raw(ctx: RawTracePointContext) -> i32 {
    let (old, new) = (ctx.arg::<u64>(1) as u8, ctx.arg::<u64>(2) as u8);
    on_set_state::<Probed, _>(&ctx, ctx.arg(0), old, new);
    0
}

/// `syscalls:sys_exit_accept4` / `sys_exit_accept`: the caller now owns
/// the returned socket (kernels without BPF trampolines; elsewhere
/// `inet_csk_accept` says so once per accept, see handshake.rs).
#[tracepoint(category = "syscalls", name = "sys_exit_accept4")]
pub(crate) fn sys_exit_accept4(ctx: TracePointContext) -> u32 {
    on_accept_syscall(&ctx);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_accept")]
pub(crate) fn sys_exit_accept(ctx: TracePointContext) -> u32 {
    on_accept_syscall(&ctx);
    0
}

// ---- drops -------------------------------------------------------------

/// `skb:kfree_skb(skb, location, reason, ...)`: a segment netfilter
/// dropped (a firewall verdict), or a reset that found no socket.
/// Everything else returns at the first comparisons.
#[btf_tracepoint(function = "kfree_skb")]
pub(crate) fn kfree_skb(ctx: BtfTracePointContext) -> i32 {
    if conf!(kfree_skb_has_reason) == 0 {
        return 0;
    }
    let reason = ctx.arg::<u64>(2) as u32;
    if reason == conf!(drop_reason_netfilter) {
        firewall::on_netfilter_drop(&ctx, ctx.arg(0));
    } else if reason == conf!(drop_reason_no_socket) {
        strays::on_no_socket_drop(&ctx, ctx.arg(0));
    }
    0
}

// ---- errors delivered --------------------------------------------------

/// `sock:inet_sk_error_report(sk)`: the errno a local TCP socket's next
/// call returns (correlated with resets in userspace).
#[btf_tracepoint(function = "inet_sk_error_report")]
pub(crate) fn inet_sk_error_report(ctx: BtfTracePointContext) -> i32 {
    on_error_report::<Typed, _>(&ctx, ctx.arg(0));
    0
}

#[raw_tracepoint(tracepoint = "inet_sk_error_report")]
pub(crate) fn inet_sk_error_report_raw(ctx: RawTracePointContext) -> i32 {
    on_error_report::<Probed, _>(&ctx, ctx.arg(0));
    0
}

/// `sock_def_error_report(sk)`: the same report on kernels before 5.14,
/// which have no such tracepoint (a TCP socket's `sk_error_report`
/// callback, called wherever the tracepoint is on newer kernels).
#[fentry(function = "sock_def_error_report")]
pub(crate) fn sock_def_error_report(ctx: FEntryContext) -> i32 {
    on_error_report::<Typed, _>(&ctx, ctx.arg(0));
    0
}

/// IPPROTO_TCP in `sk_protocol`.
const TCP: u16 = 6;

#[inline(always)]
fn on_error_report<M: Mem, C: EbpfContext>(ctx: &C, sk: u64) {
    if off!(sk_protocol) == rsttrace_common::config::ABSENT
        || M::load::<u16>(sk, off!(sk_protocol)) != TCP
    {
        return;
    }
    // Error 0 (tcp_disconnect(), the error queue, timestamps) is no
    // failure and no reset's errno: not worth a record.  Except on a
    // connecting socket with --failures: there it is an ICMP error queued
    // while connect() held the socket, which tcp_v4_err() then only keeps
    // in sk_err_soft.  The application takes that error through SO_ERROR
    // at once and may give up, so no report with the errno ever follows:
    // this one, with the ICMP error before it, is all there is.
    let error: i32 = M::load(sk, off!(sk_err));
    let state = sock_state::<M>(sk);
    let queued_icmp = conf!(want_icmp) != 0 && state == conf!(tcp_syn_sent);
    if (error == 0 && !queued_icmp) || reset::report_of_counted_reset(sk) {
        return;
    }
    let netns = sock_netns::<M>(sk);
    if netns_filtered(netns) {
        return;
    }
    let now = now_ns();
    let mut ev = ErrorReportEvent {
        header: header(KIND_ERROR_REPORT, now),
        sk,
        sock_ino: sock_inode::<M>(sk),
        error,
        netns,
        state,
        synced: u8::from(read::<u32>(sk, off!(tcp_rcv_nxt)) != 0),
        ..ErrorReportEvent::default()
    };
    sock_endpoints::<M>(sk, true, &mut ev.ends);
    if let Some(entry) = lookup(sk) {
        if entry.has_owner != 0 {
            ev.owner = entry.owner;
            ev.flags |= FLAG_OWNER_KNOWN;
        }
    }
    emit(ctx, &ev, now);
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// The programs' licence as the kernel reads it: GPL-compatible, which the
/// helpers they call (bpf_probe_read_kernel, bpf_get_current_task, ...)
/// require.  The crate is offered under MIT or GPL-2.0 (see Cargo.toml).
#[unsafe(link_section = "license")]
// SAFETY: no other symbol of the object is named LICENSE; the loader
// reads the `license` section.
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
