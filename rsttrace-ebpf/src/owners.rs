//! Who owns each socket, recorded where the running task *is* the owner
//! (connect, listen, accept), and who owned a connection after its socket
//! is gone (time-wait).  The reset programs look sockets up here.
//!
//! Entries live in direct-mapped tables: arrays indexed by a hash of the
//! socket's address (or of the connection), each slot tagged with what it
//! holds.  Registering a connection is a few stores, with no allocation
//! and no lock: a hash map insert cost about 0.8 µs and socket-local
//! storage 1.5 µs per connection on this project's machines, more than
//! all the rest of a short connection's hooks.  A slot taken by another
//! socket loses the older entry (the owner is then found through /proc,
//! by the socket's inode); an entry left by a freed socket is overwritten
//! when the next socket at that address registers, which every socket a
//! reset can concern does when it is born (connect, listen, a listener's
//! child).

use aya_ebpf::{
    helpers::bpf_get_current_task, macros::map, maps::Array, programs::TracePointContext,
    EbpfContext,
};
use rsttrace_common::{
    config::ABSENT,
    event::{
        ClosedEntry, ConnKey, Endpoints, ListenEvent, ListenKey, Owner, SockEntry, KIND_LISTEN,
    },
};

use crate::{
    emit::{emit, header},
    kmem::{conf, now_ns, off, plain, read, Mem, Probed},
    net::{current_owner, netns_filtered, sock_endpoints, sock_netns, AF_INET, AF_INET6},
    path::{handshake_ttl, synack_ttl},
};

/// Slots of each direct-mapped table (a power of two).
const SLOT_BITS: u32 = 16;
const SLOTS: u32 = 1 << SLOT_BITS;

/// A socket's entry, tagged with the socket's address (0: free).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct SockSlot {
    sk: u64,
    entry: SockEntry,
}

/// A closed connection's entry, tagged with its key.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct ClosedSlot {
    key: ConnKey,
    entry: ClosedEntry,
}

#[map]
static SOCKS: Array<SockSlot> = Array::with_max_entries(SLOTS, 0);

/// Connections whose socket is gone but which the kernel still holds
/// (time-wait): who owned them and when they closed.  An entry is only
/// believed for as long as a time-wait socket can live.
#[map]
static CLOSED: Array<ClosedSlot> = Array::with_max_entries(SLOTS, 0);

/// A listener's owner, tagged with its (netns, port).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct ListenSlot {
    key: ListenKey,
    owner: Owner,
}

/// (netns, port) -> the process listening there, so that a new child
/// socket starts with its listener's owner: written per listen(), read
/// per connection, direct-mapped like the tables above.
#[map]
static LISTENERS: Array<ListenSlot> = Array::with_max_entries(SLOTS, 0);

#[inline(always)]
fn listen_slot(key: &ListenKey) -> Option<&'static mut ListenSlot> {
    let i = slot_of(u64::from(key.netns) << 16 | u64::from(key.port));
    // SAFETY: as for `sock_slot`.
    LISTENERS.get_ptr_mut(i).map(|p| unsafe { &mut *p })
}

/// The process listening on `key`, if one registered.
#[inline(always)]
fn listener(key: &ListenKey) -> Option<Owner> {
    let slot = listen_slot(key)?;
    (slot.key == *key).then_some(slot.owner)
}

/// The longest a time-wait socket lives (TCP_TIMEWAIT_LEN, and the
/// FIN_WAIT2 substate's tcp_fin_timeout default).
const TIMEWAIT_NS: u64 = 60_000_000_000;

/// Fibonacci hashing of a 64-bit value onto the slots.
#[inline(always)]
fn slot_of(v: u64) -> u32 {
    (v.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SLOT_BITS)) as u32
}

/// The two slots a socket may use (2-way: two sockets whose addresses
/// hash alike can both keep their entries).
#[inline(always)]
fn sock_slots(sk: u64) -> [u32; 2] {
    // Sockets are slab objects: the low bits of their addresses say little.
    let i = slot_of(sk >> 6);
    [i, i ^ 1]
}

#[inline(always)]
fn sock_slot(i: u32) -> Option<&'static mut SockSlot> {
    // SAFETY: an array value, valid for this program run; slots are only
    // written by these programs, tag last (see `store`).
    SOCKS.get_ptr_mut(i).map(|p| unsafe { &mut *p })
}

/// The entry of a full socket (time-wait and request mini-sockets are
/// never registered).
#[inline(always)]
pub(crate) fn lookup(sk: u64) -> Option<&'static mut SockEntry> {
    if sk == 0 {
        return None;
    }
    let sk = plain(sk);
    for i in sock_slots(sk) {
        if let Some(s) = sock_slot(i) {
            if s.sk == sk {
                return Some(&mut s.entry);
            }
        }
    }
    None
}

/// Sets `sk`'s entry to `entry`: its own slot, else a free one, else the
/// one whose connection is older.
#[inline(always)]
fn store(sk: u64, entry: &SockEntry) {
    let sk = plain(sk);
    let [a, b] = sock_slots(sk);
    let (Some(a), Some(b)) = (sock_slot(a), sock_slot(b)) else {
        return;
    };
    let slot = if a.sk == sk || a.sk == 0 {
        a
    } else if b.sk == sk || b.sk == 0 || b.entry.born_ns < a.entry.born_ns {
        b
    } else {
        a
    };
    // Untagged while written, so that a reader never takes a half-written
    // entry for this socket's.
    slot.sk = 0;
    slot.entry = *entry;
    slot.sk = sk;
}

/// Who owned the connection a time-wait socket stands for.
#[inline(always)]
pub(crate) fn closed_owner(netns: u32, ends: &Endpoints) -> Option<&'static ClosedEntry> {
    let key = ConnKey {
        netns,
        _pad: 0,
        ends: *ends,
    };
    let slot = closed_slot(&key)?;
    let live = slot.key == key && now_ns().wrapping_sub(slot.entry.closed_ns) < 2 * TIMEWAIT_NS;
    live.then_some(&slot.entry)
}

/// The slot of a connection: a hash of its namespace, ports and the
/// remote address's ends (IPv4 sits in the first four bytes).
#[inline(always)]
fn closed_slot(key: &ConnKey) -> Option<&'static mut ClosedSlot> {
    let e = &key.ends;
    let ports =
        u64::from(key.netns) << 32 | u64::from(e.local_port) << 16 | u64::from(e.remote_port);
    let r = &e.remote_addr;
    let addr = u64::from_ne_bytes([r[0], r[1], r[2], r[3], r[12], r[13], r[14], r[15]]);
    let i = slot_of(ports ^ addr.rotate_left(29));
    // SAFETY: as for `sock_slot`.
    CLOSED.get_ptr_mut(i).map(|p| unsafe { &mut *p })
}

/// `sock:inet_sock_set_state(sk, oldstate, newstate)`: runs on every
/// state change of every TCP socket, so it decides on the two states
/// alone and reads nothing for the changes it does not need.
///
/// - CLOSE -> SYN_SENT is connect() and CLOSE -> LISTEN is listen(): both
///   run in the calling process, so the running task is the owner.
/// - LISTEN -> SYN_RECV is a new child cloned from its listener (softirq):
///   it inherits the listener's owner until accept() says otherwise.
/// - LISTEN -> CLOSE: the listener stops (restart diagnosis).
/// - ESTABLISHED -> FIN_WAIT1 and CLOSE_WAIT -> LAST_ACK: our FIN, the
///   application closing.
/// - FIN_WAIT1/FIN_WAIT2/CLOSING -> CLOSE: tcp_time_wait() hands the
///   connection to a time-wait socket, which no table entry stands for.
#[inline(always)]
pub(crate) fn on_set_state<M: Mem, C: EbpfContext>(ctx: &C, sk: u64, old: u8, new: u8) {
    if new == conf!(tcp_syn_sent) {
        if is_inet::<M>(sk) {
            register(sk, current_owner::<M>(), now_ns());
        }
    } else if new == conf!(tcp_listen) {
        if is_inet::<M>(sk) {
            start_listening::<M, C>(ctx, sk);
        }
    } else if old == conf!(tcp_listen) {
        if !is_inet::<M>(sk) {
        } else if new == conf!(tcp_syn_recv) {
            inherit_from_listener::<M>(sk);
        } else {
            stop_listening::<M, C>(ctx, sk);
        }
    } else if new == conf!(tcp_fin_wait1) || new == conf!(tcp_last_ack) {
        if let Some(e) = lookup(sk) {
            e.closed_ns = now_ns();
        }
    } else if new == conf!(tcp_close)
        && (old == conf!(tcp_fin_wait2) || old == conf!(tcp_fin_wait1) || old == conf!(tcp_closing))
    {
        remember_closed::<M>(sk);
    } else if conf!(packet_ttls) != 0 && old == conf!(tcp_syn_sent) && new == conf!(tcp_established)
    {
        if let Some(e) = lookup(sk) {
            let mut ends = Endpoints::default();
            sock_endpoints::<M>(sk, true, &mut ends);
            e.peer_ttl = synack_ttl(&ends);
        }
    }
}

#[inline(always)]
fn is_inet<M: Mem>(sk: u64) -> bool {
    let family: u16 = M::load(sk, off!(skc_family));
    sk != 0 && (family == AF_INET || family == AF_INET6)
}

#[inline(always)]
fn start_listening<M: Mem, C: EbpfContext>(ctx: &C, sk: u64) {
    let owner = current_owner::<M>();
    let now = now_ns();
    register(sk, owner, now);
    let key = listen_key::<M>(sk);
    if let Some(slot) = listen_slot(&key) {
        // Untagged while written (see `store`).
        slot.key.netns = 0;
        slot.owner = owner;
        slot.key = key;
    }
    send_listen(ctx, key, 1, owner, now);
}

#[inline(always)]
fn inherit_from_listener<M: Mem>(sk: u64) {
    let owner = listener(&listen_key::<M>(sk)).unwrap_or_default();
    let peer_ttl = if conf!(packet_ttls) != 0 {
        // The handshake's last ACK is being processed on this CPU.
        handshake_ttl(M::load(sk, off!(skc_num)))
    } else {
        // Set by the handshake hook once the child exists.
        0
    };
    let entry = SockEntry {
        owner,
        born_ns: now_ns(),
        has_owner: 1,
        from_listener: 1,
        peer_ttl,
        ..SockEntry::default()
    };
    store(sk, &entry);
}

#[inline(always)]
fn stop_listening<M: Mem, C: EbpfContext>(ctx: &C, sk: u64) {
    let key = listen_key::<M>(sk);
    let owner = match lookup(sk) {
        Some(e) => e.owner,
        None => Owner::default(),
    };
    if let Some(slot) = listen_slot(&key) {
        // With SO_REUSEPORT several sockets share the key; only the
        // process that registered it clears it.
        if slot.key == key && slot.owner.tgid == owner.tgid {
            slot.key.netns = 0;
        }
    }
    send_listen(ctx, key, 0, owner, now_ns());
}

/// The connection moves to a time-wait socket: keep who owned it and
/// when it closed, by its addresses.
#[inline(always)]
fn remember_closed<M: Mem>(sk: u64) {
    let Some(entry) = lookup(sk) else {
        return;
    };
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
    let Some(slot) = closed_slot(&key) else {
        return;
    };
    // Untagged while written (see `store`).
    slot.key.netns = 0;
    slot.entry = ClosedEntry {
        owner: entry.owner,
        closed_ns: entry.closed_ns,
        born_ns: entry.born_ns,
    };
    slot.key = key;
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
fn register(sk: u64, owner: Owner, born_ns: u64) {
    let entry = SockEntry {
        owner,
        born_ns,
        has_owner: 1,
        ..SockEntry::default()
    };
    store(sk, &entry);
}

/// The running task accepted `sk`: it owns it now.  The connection's
/// start (its handshake, seen earlier) and peer TTL are kept.
#[inline(always)]
pub(crate) fn accepted<M: Mem>(sk: u64) {
    if sk == 0 {
        return;
    }
    let owner = current_owner::<M>();
    match lookup(sk) {
        Some(e) => {
            e.owner = owner;
            e.has_owner = 1;
            e.from_listener = 0;
        }
        None => register(sk, owner, 0),
    }
}

/// The peer's TTL of a connection's handshake, from the hook that sees the
/// segment (`tcp_finish_connect`, `tcp_v{4,6}_syn_recv_sock`).
#[inline(always)]
pub(crate) fn set_peer_ttl(sk: u64, ttl: u8) {
    if let Some(e) = lookup(sk) {
        e.peer_ttl = ttl;
    }
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

/// `syscalls:sys_exit_accept{,4}` (kernels without BPF trampolines): the
/// caller now owns the returned socket, found through its fd table.
#[inline(always)]
pub(crate) fn on_accept_syscall(ctx: &TracePointContext) {
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
    accepted::<Probed>(read(socket, off!(socket_sk)));
}
