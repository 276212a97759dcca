//! Who owns each socket, recorded where the running task *is* the owner
//! (connect, listen, accept), and who owned a connection after its socket
//! is gone (time-wait).  The reset programs look sockets up here.

use aya_ebpf::{
    helpers::bpf_get_current_task, macros::map, maps::LruHashMap, programs::TracePointContext,
    EbpfContext,
};
use rsttrace_common::{
    config::ABSENT,
    event::{
        ClosedEntry, ConnKey, Endpoints, ListenEvent, ListenKey, Owner, SockEntry,
        DESTROYED_GRACE_NS, KIND_LISTEN,
    },
};

use crate::{
    emit::{emit, header},
    kmem::{conf, now_ns, off, read, Mem},
    net::{current_owner, netns_filtered, sock_endpoints, sock_netns, AF_INET, AF_INET6},
    path::{handshake_ttl, synack_ttl},
};

/// Socket address -> owner and start time.  Written in process context
/// (connect, listen, accept) or, for a child not accepted yet, inherited
/// from its listener; removed when the socket is destroyed.
#[map]
pub static SOCKS: LruHashMap<u64, SockEntry> = LruHashMap::with_max_entries(65536, 0);

/// (netns, port) -> the process listening there, so that a new child
/// socket starts with its listener's owner.
#[map]
static LISTENERS: LruHashMap<ListenKey, Owner> = LruHashMap::with_max_entries(16384, 0);

/// Connections whose socket is gone but which the kernel still holds
/// (time-wait): who owned them and when they closed.  LRU-bounded; an
/// entry is only believed for as long as a time-wait socket can live.
#[map]
static CLOSED: LruHashMap<ConnKey, ClosedEntry> = LruHashMap::with_max_entries(65536, 0);

/// The longest a time-wait socket lives (TCP_TIMEWAIT_LEN, and the
/// FIN_WAIT2 substate's tcp_fin_timeout default).
const TIMEWAIT_NS: u64 = 60_000_000_000;

/// The table entry of a live socket (or one destroyed moments ago).
#[inline(always)]
pub fn lookup(sk: u64) -> Option<&'static SockEntry> {
    // SAFETY: LRU map values are only written whole by these programs;
    // a racing update at worst yields a newer entry.
    let entry = unsafe { SOCKS.get(sk) }?;
    let alive =
        entry.destroyed_ns == 0 || now_ns().wrapping_sub(entry.destroyed_ns) < DESTROYED_GRACE_NS;
    alive.then_some(entry)
}

/// Who owned the connection a time-wait socket stands for.
#[inline(always)]
pub fn closed_owner(netns: u32, ends: &Endpoints) -> Option<&'static ClosedEntry> {
    let key = ConnKey {
        netns,
        _pad: 0,
        ends: *ends,
    };
    // SAFETY: as for `lookup`.
    let entry = unsafe { CLOSED.get(key) }?;
    (now_ns().wrapping_sub(entry.closed_ns) < 2 * TIMEWAIT_NS).then_some(entry)
}

/// `sock:inet_sock_set_state(sk, oldstate, newstate)`.
///
/// - CLOSE -> SYN_SENT is connect() and CLOSE -> LISTEN is listen(): both
///   run in the calling process, so the running task is the owner.
/// - LISTEN -> SYN_RECV is a new child cloned from its listener (softirq):
///   it inherits the listener's owner until accept() says otherwise.
/// - ESTABLISHED -> FIN_WAIT1 and CLOSE_WAIT -> LAST_ACK: our FIN, the
///   application closing.
/// - LISTEN -> CLOSE: the listener stops (restart diagnosis).
#[inline(always)]
pub fn on_set_state<M: Mem, C: EbpfContext>(ctx: &C, sk: u64, old: u8, new: u8) {
    let family: u16 = M::load(sk, off!(skc_family));
    if sk == 0 || (family != AF_INET && family != AF_INET6) {
        return;
    }
    let now = now_ns();
    if new == conf!(tcp_syn_sent) {
        set_owner(sk, current_owner(), now);
    } else if new == conf!(tcp_listen) {
        let owner = current_owner();
        set_owner(sk, owner, now);
        let key = listen_key::<M>(sk);
        let _ = LISTENERS.insert(key, owner, 0);
        send_listen(ctx, key, 1, owner, now);
    } else if old == conf!(tcp_listen) && new == conf!(tcp_syn_recv) {
        inherit_from_listener::<M>(sk, now);
    } else if old == conf!(tcp_listen) {
        stop_listening::<M, C>(ctx, sk, now);
    } else if new == conf!(tcp_fin_wait1) || new == conf!(tcp_last_ack) {
        if let Some(e) = SOCKS.get_ptr_mut(sk) {
            // SAFETY: a pointer into the map value, valid for this program
            // run; a plain store of one field.
            unsafe { (*e).closed_ns = now };
        }
    } else if old == conf!(tcp_syn_sent) && new == conf!(tcp_established) {
        if let Some(e) = SOCKS.get_ptr_mut(sk) {
            let mut ends = Endpoints::default();
            sock_endpoints::<M>(sk, true, &mut ends);
            // SAFETY: as above.
            unsafe { (*e).peer_ttl = synack_ttl(&ends) };
        }
    }
}

#[inline(always)]
fn inherit_from_listener<M: Mem>(sk: u64, now: u64) {
    // SAFETY: as for `lookup`.
    let owner = unsafe { LISTENERS.get(listen_key::<M>(sk)) }
        .copied()
        .unwrap_or_default();
    let entry = SockEntry {
        owner,
        born_ns: now,
        has_owner: 1,
        from_listener: 1,
        // The handshake's last ACK is being processed on this CPU.
        peer_ttl: handshake_ttl(M::load(sk, off!(skc_num))),
        ..SockEntry::default()
    };
    let _ = SOCKS.insert(sk, entry, 0);
}

#[inline(always)]
fn stop_listening<M: Mem, C: EbpfContext>(ctx: &C, sk: u64, now: u64) {
    let key = listen_key::<M>(sk);
    // SAFETY: as for `lookup`.
    let owner = match unsafe { SOCKS.get(sk) } {
        Some(e) => e.owner,
        None => Owner::default(),
    };
    // SAFETY: as for `lookup`.
    if let Some(current) = unsafe { LISTENERS.get(key) } {
        // With SO_REUSEPORT several sockets share the key; only the
        // process that registered it clears it.
        if current.tgid == owner.tgid {
            let _ = LISTENERS.remove(key);
        }
    }
    send_listen(ctx, key, 0, owner, now);
}

#[inline(always)]
fn listen_key<M: Mem>(sk: u64) -> ListenKey {
    ListenKey {
        netns: sock_netns::<M>(sk),
        port: M::load(sk, off!(skc_num)),
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
        ..SockEntry::default()
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

/// `syscalls:sys_exit_accept{,4}`: the caller now owns the returned
/// socket.  The fd is resolved through the task's fd table.
#[inline(always)]
pub fn on_accept(ctx: &TracePointContext) {
    let ret_off = conf!(accept_ret_offset);
    if ret_off == ABSENT {
        return;
    }
    // SAFETY: the offset comes from this tracepoint's format in tracefs.
    let Ok(fd) = (unsafe { ctx.read_at::<i64>(ret_off as usize) }) else {
        return;
    };
    if fd < 0 {
        return;
    }
    // SAFETY: no arguments; the running task's address.
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
    // SAFETY: as for `lookup`.
    let born = match unsafe { SOCKS.get(sk) } {
        Some(e) => e.born_ns,
        None => 0,
    };
    set_owner(sk, current_owner(), born);
}

/// `tcp:tcp_destroy_sock(sk)`: the socket is gone.  Its entry stays valid
/// for `DESTROYED_GRACE_NS`, because an orphan is destroyed before the
/// reset that follows (`tcp_done()` then the caller's send_reset).  A
/// connection the kernel keeps in time-wait moves to the closed table
/// with its owner.
#[inline(always)]
pub fn on_destroy<M: Mem>(sk: u64) {
    let Some(entry) = SOCKS.get_ptr_mut(sk) else {
        return;
    };
    let now = now_ns();
    // SAFETY: a pointer into the map value, valid for this program run.
    let entry = unsafe { &mut *entry };
    entry.destroyed_ns = now;
    if entry.has_owner == 0 || entry.closed_ns == 0 {
        return;
    }
    let mut key = ConnKey {
        netns: sock_netns::<M>(sk),
        ..ConnKey::default()
    };
    sock_endpoints::<M>(sk, true, &mut key.ends);
    if key.ends.remote_port == 0 {
        return;
    }
    let closed = ClosedEntry {
        owner: entry.owner,
        closed_ns: entry.closed_ns,
        born_ns: entry.born_ns,
    };
    let _ = CLOSED.insert(key, closed, 0);
}
