//! rsttrace's eBPF programs: capture every TCP reset the host sends or
//! receives, plus the process-context events that tell which process owns
//! each socket.
//!
//! Attribution never uses the task running when a reset fires: resets in
//! reply to packets run in softirq and timers in no process at all.  Owners
//! are recorded where the running task *is* the owner (connect, listen,
//! accept) in the `SOCKS` table keyed by socket address, and the reset
//! programs look the socket up there.
#![no_std]
#![no_main]

mod emit;
mod firewall;
mod kmem;
mod net;

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_get_smp_processor_id, bpf_jiffies64,
        bpf_ktime_get_boot_ns,
    },
    macros::{btf_tracepoint, map, tracepoint},
    maps::{LruHashMap, PerCpuArray},
    programs::{BtfTracePointContext, TracePointContext},
    EbpfContext,
};
use rsttrace_common::{
    config::ABSENT,
    event::{
        ErrorReportEvent, EventHeader, ListenEvent, ListenKey, Owner, ResetEvent, SockEntry,
        TcpInfo, COUNTER_FILTERED, COUNTER_SEEN, DESTROYED_GRACE_NS, FLAG_BORN_KNOWN,
        FLAG_FULL_SOCK, FLAG_HAS_SK, FLAG_HAS_SKB, FLAG_OWNER_FROM_LISTENER, FLAG_OWNER_KNOWN,
        FLAG_TCP_INFO, KIND_ERROR_REPORT, KIND_LISTEN, KIND_RESET_RECEIVED, KIND_RESET_SENT,
        REASON_ABSENT,
    },
};

use crate::{
    emit::{aggregate, count, emit, should_emit},
    kmem::{conf, load, off, read, zero},
    net::{
        current_comm, current_owner, endpoints_of, is_full_sock, read_segment, skb_netns,
        sock_endpoints, sock_inode, sock_netns, sock_state, AF_INET, AF_INET6,
    },
};

/// Socket address -> owner and start time.  Written in process context
/// (connect, listen, accept) or, for a child not accepted yet, inherited
/// from its listener; removed when the socket is destroyed.
#[map]
static SOCKS: LruHashMap<u64, SockEntry> = LruHashMap::with_max_entries(65536, 0);

/// (netns, port) -> the process listening there, so that a new child
/// socket starts with its listener's owner.
#[map]
static LISTENERS: LruHashMap<ListenKey, Owner> = LruHashMap::with_max_entries(16384, 0);

/// Per-CPU space to build reset records in (too big for the 512-byte
/// stack).  One slot per program: a program never nests with itself on a
/// CPU, but the send, receive and firewall programs can interrupt each
/// other.
#[map]
pub(crate) static SCRATCH: PerCpuArray<ResetEvent> = PerCpuArray::with_max_entries(3, 0);

const SLOT_SENT: u32 = 0;
const SLOT_RECEIVED: u32 = 1;

#[inline(always)]
pub(crate) fn header(kind: u8, now_ns: u64) -> EventHeader {
    EventHeader {
        kind,
        _pad0: 0,
        _pad1: 0,
        cpu: unsafe { bpf_get_smp_processor_id() },
        ts_ns: now_ns,
    }
}

#[inline(always)]
pub(crate) fn netns_filtered(netns: u32) -> bool {
    let want = conf!(netns_filter);
    want != 0 && want != netns
}

/// `tcp:tcp_send_reset(sk, skb, reason)`: this host sends a reset.  `sk`
/// may be NULL (no socket) or a TIME_WAIT mini-socket; `skb` is the segment
/// being answered, NULL for resets the host initiates (close, abort,
/// timers).
#[btf_tracepoint(function = "tcp_send_reset")]
pub fn tcp_send_reset(ctx: BtfTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    let skb: u64 = ctx.arg(1);
    let reason = if conf!(send_reset_has_reason) != 0 {
        ctx.arg::<u64>(2) as u32
    } else {
        REASON_ABSENT
    };
    on_reset(&ctx, KIND_RESET_SENT, SLOT_SENT, sk, skb, reason);
    0
}

/// `tcp:tcp_receive_reset(sk)`: a local socket is reset by its peer.
#[btf_tracepoint(function = "tcp_receive_reset")]
pub fn tcp_receive_reset(ctx: BtfTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    on_reset(
        &ctx,
        KIND_RESET_RECEIVED,
        SLOT_RECEIVED,
        sk,
        0,
        REASON_ABSENT,
    );
    0
}

#[inline(always)]
fn on_reset<C: EbpfContext>(ctx: &C, kind: u8, slot: u32, sk: u64, skb: u64, reason: u32) {
    count(COUNTER_SEEN);
    let netns = if sk != 0 {
        sock_netns(sk)
    } else {
        skb_netns(skb)
    };
    if netns_filtered(netns) {
        count(COUNTER_FILTERED);
        return;
    }
    let Some(ev) = SCRATCH.get_ptr_mut(slot) else {
        return;
    };
    let ev = unsafe { &mut *ev };
    zero(ev);
    ev.header.kind = kind;
    ev.sk = sk;
    ev.reason = reason;
    ev.netns = netns;

    let mut flags = 0u16;
    let mut full = false;
    if sk != 0 {
        flags |= FLAG_HAS_SK;
        ev.state = sock_state(sk);
        full = is_full_sock(ev.state);
        if full {
            flags |= FLAG_FULL_SOCK;
        }
    }
    // The segment being answered names both ends exactly (a listener's
    // socket has no remote address); otherwise the socket does.
    if skb != 0 && read_segment(skb, ev) {
        flags |= FLAG_HAS_SKB;
    } else if sk != 0 {
        sock_endpoints(sk, full, endpoints_of!(ev));
    }
    if sk != 0 {
        if let Some(entry) = unsafe { SOCKS.get(sk) } {
            let alive = entry.destroyed_ns == 0
                || unsafe { bpf_ktime_get_boot_ns() }.wrapping_sub(entry.destroyed_ns)
                    < DESTROYED_GRACE_NS;
            if alive && entry.has_owner != 0 {
                ev.owner = entry.owner;
                flags |= FLAG_OWNER_KNOWN;
                if entry.from_listener != 0 {
                    flags |= FLAG_OWNER_FROM_LISTENER;
                }
            }
            if alive && entry.born_ns != 0 {
                ev.born_ns = entry.born_ns;
                flags |= FLAG_BORN_KNOWN;
            }
        }
    }
    ev.flags = flags;

    // Counting needs no precise time: jiffies are an inlined load, the
    // clock a helper call that shows under storms.
    let jiffies = unsafe { bpf_jiffies64() };
    if !should_emit(jiffies) {
        aggregate(kind, ev, jiffies);
        return;
    }
    let now = unsafe { bpf_ktime_get_boot_ns() };
    ev.header = header(kind, now);

    // The kernel assigns a socket's cookie the first time something asks
    // (ss -e, SO_COOKIE...): ask, so that every record can be matched.
    if sk != 0 && conf!(socket_cookie_helper) != 0 {
        ev.sock_cookie =
            unsafe { aya_ebpf::helpers::bpf_get_socket_cookie(sk as *mut core::ffi::c_void) };
    } else {
        ev.sock_cookie = load(sk, off!(skc_cookie));
    }
    if full {
        ev.sock_ino = sock_inode(sk);
        ev.sk_err = load(sk, off!(sk_err));
        ev.sk_flags = load(sk, off!(sk_flags));
        ev.sk_lingertime = load(sk, off!(sk_lingertime));
        ev.sk_shutdown_byte = load(sk, off!(sk_shutdown_byte));
        if ev.state != conf!(tcp_listen) {
            read_tcp_info(sk, &mut ev.tcp);
            ev.flags |= FLAG_TCP_INFO;
        }
    }
    ev.task_tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    ev.task_comm = current_comm();
    emit(ctx, ev, now);
}

/// TCP counters live in `struct tcp_sock`, beyond the `struct sock` the
/// argument's BTF type names: helper reads.
#[inline(always)]
fn read_tcp_info(sk: u64, t: &mut TcpInfo) {
    t.bytes_received = read(sk, off!(tcp_bytes_received));
    t.bytes_acked = read(sk, off!(tcp_bytes_acked));
    t.bytes_sent = read(sk, off!(tcp_bytes_sent));
    t.snd_una = read(sk, off!(tcp_snd_una));
    t.snd_nxt = read(sk, off!(tcp_snd_nxt));
    t.rcv_nxt = read(sk, off!(tcp_rcv_nxt));
    t.copied_seq = read(sk, off!(tcp_copied_seq));
    t.lsndtime = read(sk, off!(tcp_lsndtime));
    t.rcv_tstamp = read(sk, off!(tcp_rcv_tstamp));
    t.lrcvtime = read(sk, off!(icsk_lrcvtime));
    t.now_jiffies = unsafe { bpf_jiffies64() };
}

/// `sock:inet_sock_set_state(sk, oldstate, newstate)`: records owners.
///
/// - CLOSE -> SYN_SENT is connect() and CLOSE -> LISTEN is listen(): both
///   run in the calling process, so the running task is the owner.
/// - LISTEN -> SYN_RECV is a new child cloned from its listener (softirq):
///   it inherits the listener's owner until accept() says otherwise.
/// - LISTEN -> CLOSE: the listener stops (restart diagnosis).
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: BtfTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    let old = ctx.arg::<u64>(1) as u8;
    let new = ctx.arg::<u64>(2) as u8;
    let family: u16 = load(sk, off!(skc_family));
    if sk == 0 || (family != AF_INET && family != AF_INET6) {
        return 0;
    }
    let now = unsafe { bpf_ktime_get_boot_ns() };
    if new == conf!(tcp_syn_sent) {
        set_owner(sk, current_owner(), now);
    } else if new == conf!(tcp_listen) {
        let owner = current_owner();
        set_owner(sk, owner, now);
        let key = listen_key(sk);
        let _ = LISTENERS.insert(key, owner, 0);
        send_listen(&ctx, key, 1, owner, now);
    } else if old == conf!(tcp_listen) && new == conf!(tcp_syn_recv) {
        let entry = SockEntry {
            owner: unsafe { LISTENERS.get(listen_key(sk)) }
                .copied()
                .unwrap_or_default(),
            born_ns: now,
            has_owner: 1,
            from_listener: 1,
            _pad0: 0,
            _pad1: 0,
            destroyed_ns: 0,
        };
        let _ = SOCKS.insert(sk, entry, 0);
    } else if old == conf!(tcp_listen) {
        let key = listen_key(sk);
        let owner = match unsafe { SOCKS.get(sk) } {
            Some(e) => e.owner,
            None => Owner::default(),
        };
        if let Some(current) = unsafe { LISTENERS.get(key) } {
            // With SO_REUSEPORT several sockets share the key; only the
            // process that registered it clears it.
            if current.tgid == owner.tgid {
                let _ = LISTENERS.remove(key);
            }
        }
        send_listen(&ctx, key, 0, owner, now);
    }
    0
}

#[inline(always)]
fn listen_key(sk: u64) -> ListenKey {
    ListenKey {
        netns: sock_netns(sk),
        port: load(sk, off!(skc_num)),
        _pad: 0,
    }
}

/// Records `owner` for `sk`, with the connection's start time.
#[inline(always)]
fn set_owner(sk: u64, owner: Owner, born_ns: u64) {
    let entry = SockEntry {
        owner,
        born_ns,
        has_owner: 1,
        from_listener: 0,
        _pad0: 0,
        _pad1: 0,
        destroyed_ns: 0,
    };
    let _ = SOCKS.insert(sk, entry, 0);
}

#[inline(always)]
fn send_listen<C: EbpfContext>(ctx: &C, key: ListenKey, listening: u8, owner: Owner, now: u64) {
    if netns_filtered(key.netns) {
        return;
    }
    let ev = ListenEvent {
        header: header(KIND_LISTEN, now),
        netns: key.netns,
        port: key.port,
        listening,
        _pad: 0,
        owner,
    };
    emit(ctx, &ev, now);
}

/// `syscalls:sys_exit_accept4` / `sys_exit_accept`: the caller now owns the
/// returned socket.  The fd is resolved through the task's fd table.
#[tracepoint(category = "syscalls", name = "sys_exit_accept4")]
pub fn sys_exit_accept4(ctx: TracePointContext) -> u32 {
    on_accept(&ctx);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_accept")]
pub fn sys_exit_accept(ctx: TracePointContext) -> u32 {
    on_accept(&ctx);
    0
}

#[inline(always)]
fn on_accept(ctx: &TracePointContext) {
    let ret_off = conf!(accept_ret_offset);
    if ret_off == ABSENT {
        return;
    }
    let Ok(fd) = (unsafe { ctx.read_at::<i64>(ret_off as usize) }) else {
        return;
    };
    if fd < 0 {
        return;
    }
    let task = unsafe { bpf_get_current_task() };
    let files: u64 = read(task, off!(task_files));
    let fdt: u64 = read(files, off!(files_fdt));
    let max_fds: u32 = read(fdt, off!(fdtable_max_fds));
    if fd as u64 >= max_fds as u64 {
        return;
    }
    let fd_array: u64 = read(fdt, off!(fdtable_fd));
    let file: u64 = read(fd_array, (fd as u32) * 8);
    let socket: u64 = read(file, off!(file_private_data));
    let sk: u64 = read(socket, off!(socket_sk));
    if sk == 0 {
        return;
    }
    // Keep when the connection started (the handshake, seen earlier).
    let born = match unsafe { SOCKS.get(sk) } {
        Some(e) => e.born_ns,
        None => 0,
    };
    set_owner(sk, current_owner(), born);
}

/// `tcp:tcp_destroy_sock(sk)`: the socket is gone.  Its entry stays valid
/// for `DESTROYED_GRACE_NS`, because an orphan is destroyed before the
/// reset that follows (`tcp_done()` then the caller's send_reset); after
/// that, a new socket at the same address does not inherit it (and every
/// socket that can be reset is registered again anyway).
#[btf_tracepoint(function = "tcp_destroy_sock")]
pub fn tcp_destroy_sock(ctx: BtfTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    if let Some(entry) = SOCKS.get_ptr_mut(sk) {
        unsafe { (*entry).destroyed_ns = bpf_ktime_get_boot_ns() };
    }
    0
}

/// `sock:inet_sk_error_report(sk)`: the errno a local TCP socket's next
/// call returns (correlated with resets in userspace).
#[btf_tracepoint(function = "inet_sk_error_report")]
pub fn inet_sk_error_report(ctx: BtfTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    if off!(sk_protocol) == ABSENT || load::<u16>(sk, off!(sk_protocol)) != 6 {
        return 0;
    }
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let netns = sock_netns(sk);
    if netns_filtered(netns) {
        return 0;
    }
    let mut ev = ErrorReportEvent {
        header: header(KIND_ERROR_REPORT, now),
        sk,
        sock_ino: sock_inode(sk),
        error: load(sk, off!(sk_err)),
        netns,
        state: sock_state(sk),
        synced: u8::from(read::<u32>(sk, off!(tcp_rcv_nxt)) != 0),
        ..ErrorReportEvent::default()
    };
    sock_endpoints(sk, true, endpoints_of!(ev));
    if let Some(entry) = unsafe { SOCKS.get(sk) } {
        if entry.has_owner != 0 {
            ev.owner = entry.owner;
            ev.flags |= FLAG_OWNER_KNOWN;
        }
    }
    emit(&ctx, &ev, now);
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
