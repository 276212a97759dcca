//! Records the eBPF programs send to userspace.  Every record starts with an
//! [`EventHeader`]; the decoder dispatches on `header.kind`.

use crate::COMM_LEN;

/// `header.kind` values.
pub const KIND_RESET_SENT: u8 = 1;
pub const KIND_RESET_RECEIVED: u8 = 2;
/// `sock:inet_sk_error_report`: the errno delivered to a local socket.
pub const KIND_ERROR_REPORT: u8 = 3;
/// A socket entered or left TCP_LISTEN (restart diagnosis).
pub const KIND_LISTEN: u8 = 4;
/// Netfilter dropped or rejected a TCP segment ([`FirewallEvent`]).
pub const KIND_FIREWALL: u8 = 5;
/// An ICMP error arrived about one of our TCP segments ([`IcmpEvent`]).
pub const KIND_ICMP: u8 = 6;
/// A reset arrived for no socket at all ([`StrayEvent`]).
pub const KIND_STRAY: u8 = 7;

/// The firewall answered the segment with a TCP reset (REJECT tcp-reset).
pub const VERDICT_RESET: u8 = 1;
/// The firewall answered with an ICMP error (REJECT, the default).
pub const VERDICT_ICMP: u8 = 2;
/// The firewall dropped the segment silently.
pub const VERDICT_DROP: u8 = 3;

/// `reason` value when the kernel gives none (Linux < 6.10).
pub const REASON_ABSENT: u32 = u32::MAX;

/// `ResetEvent.flags` bits.
pub const FLAG_HAS_SKB: u16 = 1 << 0;
/// The event has a socket (sk != NULL).
pub const FLAG_HAS_SK: u16 = 1 << 1;
/// `sk` is a full socket: struct sock members past sock_common are valid.
pub const FLAG_FULL_SOCK: u16 = 1 << 2;
/// The owner came from the in-kernel socket table (registered in process
/// context at connect/listen/accept); otherwise userspace resolves
/// `sock_ino` through /proc.
pub const FLAG_OWNER_KNOWN: u16 = 1 << 3;
/// `born_ns` is valid (the connection was seen starting).
pub const FLAG_BORN_KNOWN: u16 = 1 << 4;
/// The TCP counters (`TcpInfo`) were read.
pub const FLAG_TCP_INFO: u16 = 1 << 5;
/// The owner was inherited from the listener (child not accepted yet).
pub const FLAG_OWNER_FROM_LISTENER: u16 = 1 << 6;
/// `closed_ns` is valid: the owner had closed the connection (an orphan,
/// or a time-wait socket whose owner came from the closed-connection
/// table).
pub const FLAG_CLOSED: u16 = 1 << 7;
/// `frames` holds the kernel stack at the reset (for inference).
pub const FLAG_STACK: u16 = 1 << 8;
/// `tw_substate` is valid (a time-wait socket).
pub const FLAG_TIMEWAIT: u16 = 1 << 9;
/// The listener's accept-queue fill (`ack_backlog`, `max_ack_backlog`)
/// is valid.
pub const FLAG_BACKLOG: u16 = 1 << 10;
/// The owner came from the closed-connection table (time-wait).
pub const FLAG_OWNER_CLOSED: u16 = 1 << 11;

/// Which hook produced a record (`hook` fields).
pub const HOOK_TRACEPOINT: u8 = 1;
pub const HOOK_FENTRY: u8 = 2;
pub const HOOK_KPROBE: u8 = 3;
pub const HOOK_RAW_TRACEPOINT: u8 = 4;

/// Kernel stack frames kept for inference.
pub const FRAMES: usize = 8;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    pub kind: u8,
    // Padding is made of integers, not byte arrays: on the eBPF side a
    // zeroed byte array becomes a call to a byte-wise memset.
    pub _pad0: u8,
    pub _pad1: u16,
    pub cpu: u32,
    /// Nanoseconds of `Config::clock` (boot time where the kernel has it).
    pub ts_ns: u64,
}

/// Both ends of a connection, this host's first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Endpoints {
    /// AF_INET or AF_INET6.
    pub family: u16,
    pub local_port: u16,
    pub remote_port: u16,
    pub _pad: u16,
    /// IPv4 addresses use the first 4 bytes.
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
}

/// The TCP segment a record is about (valid with `FLAG_HAS_SKB`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentHdr {
    pub seq: u32,
    pub ack_seq: u32,
    pub payload_len: u32,
    pub tcp_flags: u8,
    /// IP TTL / IPv6 hop limit.
    pub ttl: u8,
    pub _pad: u16,
}

/// The process a socket belongs to, recorded in process context.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    pub tgid: u32,
    pub _pad: u32,
    pub cgroup_id: u64,
    /// The thread-group leader's `start_boottime` (ns): with the pid,
    /// names one process even after the pid is reused.
    pub start_ns: u64,
    pub comm: [u8; COMM_LEN],
}

/// What the in-kernel socket table keeps per socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockEntry {
    pub owner: Owner,
    /// When the connection started (0 = unknown).
    pub born_ns: u64,
    /// 1 when `owner` is set.
    pub has_owner: u8,
    /// 1 when the owner was inherited from the listener.
    pub from_listener: u8,
    /// IP TTL / hop limit of the peer's handshake segment (0 = unknown).
    pub peer_ttl: u8,
    pub _pad0: u8,
    pub _pad1: u32,
    /// When the socket was destroyed (0 = alive).  The entry outlives the
    /// socket briefly: an orphan is destroyed *before* some of its resets
    /// are sent.
    pub destroyed_ns: u64,
    /// When this end started closing (our FIN: ESTABLISHED -> FIN_WAIT1 or
    /// CLOSE_WAIT -> LAST_ACK), 0 while open.
    pub closed_ns: u64,
}

/// How long an entry answers for a destroyed socket.
pub const DESTROYED_GRACE_NS: u64 = 1_000_000_000;

/// A connection by its addresses, for the table of closed connections.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub netns: u32,
    pub _pad: u32,
    pub ends: Endpoints,
}

/// Who owned a connection the kernel still holds after its socket is gone
/// (time-wait), and when that owner closed it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClosedEntry {
    pub owner: Owner,
    pub closed_ns: u64,
    pub born_ns: u64,
}

/// Key of the listener table: who listens on (netns, port).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ListenKey {
    pub netns: u32,
    pub port: u16,
    pub _pad: u16,
}

/// TCP connection counters at the moment of the reset.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpInfo {
    pub bytes_received: u64,
    pub bytes_acked: u64,
    pub bytes_sent: u64,
    pub snd_una: u32,
    pub snd_nxt: u32,
    pub rcv_nxt: u32,
    pub copied_seq: u32,
    /// jiffies (32-bit) of the last data sent / ACK received / data received.
    pub lsndtime: u32,
    pub rcv_tstamp: u32,
    pub lrcvtime: u32,
    /// TCP_LINGER2 (`tcp_sock.linger2`): negative aborts FIN_WAIT2.
    pub linger2: i32,
    /// `bpf_jiffies64()` at the event.
    pub now_jiffies: u64,
}

/// A reset sent or received (`tcp:tcp_send_reset`, `tcp:tcp_receive_reset`
/// or the functions that build resets).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResetEvent {
    pub header: EventHeader,
    /// Kernel address of the socket (0 = none); correlates events.
    pub sk: u64,
    pub sock_cookie: u64,
    /// Inode of the socket's file (0 = not attached to a file).
    pub sock_ino: u64,
    /// Raw `sk_flags` word (`enum sock_flags` bit numbers from BTF).
    pub sk_flags: u64,
    pub sk_lingertime: u64,
    pub born_ns: u64,
    /// See [`FLAG_CLOSED`].
    pub closed_ns: u64,
    /// Raw `enum sk_rst_reason` value, or [`REASON_ABSENT`].
    pub reason: u32,
    /// Inode of the network namespace (socket's, or the packet's device's).
    pub netns: u32,
    pub sk_err: i32,
    pub flags: u16,
    /// TCP state of the socket (kernel numbering; 0 = no socket).
    pub state: u8,
    /// Raw byte holding `sk_shutdown`.
    pub sk_shutdown_byte: u8,
    /// A time-wait socket's substate (FIN_WAIT2 or TIME_WAIT).
    pub tw_substate: u8,
    /// One of the `HOOK_*` values.
    pub hook: u8,
    /// A received reset's IP TTL / hop limit, and the one the peer used
    /// on its SYN or SYN-ACK (0 = unknown).
    pub rst_ttl: u8,
    pub peer_ttl: u8,
    /// A listener's accept queue: connections waiting, and its limit.
    pub ack_backlog: u32,
    pub max_ack_backlog: u32,
    pub ends: Endpoints,
    pub seg: SegmentHdr,
    pub _pad2: u32,
    pub owner: Owner,
    /// The task that was running when the event fired.  In softirq and
    /// timers this is unrelated to the socket; reported only where it is
    /// meaningful (for example the process that killed a socket).
    pub task_tgid: u32,
    pub _pad1: u32,
    pub task_comm: [u8; COMM_LEN],
    pub tcp: TcpInfo,
    /// Kernel return addresses, innermost first (see [`FLAG_STACK`]).
    pub frames: [u64; FRAMES],
}

/// `sock:inet_sk_error_report`: the error a local socket reports next.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ErrorReportEvent {
    pub header: EventHeader,
    pub sk: u64,
    pub sock_ino: u64,
    pub error: i32,
    pub netns: u32,
    pub flags: u16,
    pub state: u8,
    /// 1 when the connection got as far as the peer's SYN (rcv_nxt set):
    /// tells a connect() timeout from a timeout on an established one.
    pub synced: u8,
    pub _pad0: u32,
    pub ends: Endpoints,
    pub owner: Owner,
}

/// A socket entered (`listening = 1`) or left TCP_LISTEN.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenEvent {
    pub header: EventHeader,
    pub netns: u32,
    pub port: u16,
    pub listening: u8,
    pub _pad: u8,
    pub owner: Owner,
}

/// Netfilter dropped a TCP segment, or answered it with a reset or an
/// ICMP error (`verdict`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FirewallEvent {
    pub header: EventHeader,
    pub netns: u32,
    /// One of the `VERDICT_*` values.
    pub verdict: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// `HOOK_KPROBE` when netfilter's reset function itself was seen
    /// (exact), `HOOK_TRACEPOINT` when matched from tracepoints.
    pub hook: u8,
    pub ends: Endpoints,
    pub seg: SegmentHdr,
    /// 1 when the segment was this host's own, dropped on its way out (an
    /// output rule); `ends` are this host's view either way.
    pub outgoing: u8,
    pub _pad0: u8,
    pub _pad1: u16,
    pub _pad2: u32,
}

/// An ICMP error about a TCP segment this host sent: `ends` and `seg`
/// are the quoted segment, seen from this host (local = its source).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IcmpEvent {
    pub header: EventHeader,
    pub netns: u32,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// TTL / hop limit of the ICMP packet.
    pub ttl: u8,
    pub _pad: u8,
    /// Who sent the error (a router on the path, or the destination).
    pub from: [u8; 16],
    pub ends: Endpoints,
    pub seg: SegmentHdr,
}

/// A reset that arrived for no socket: the kernel drops it silently.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StrayEvent {
    pub header: EventHeader,
    pub netns: u32,
    pub _pad: u32,
    pub ends: Endpoints,
    pub seg: SegmentHdr,
}

/// Key of the storm aggregation table: one counter per
/// (epoch, direction, reason, service port, netns, owner).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AggKey {
    pub epoch: u8,
    pub kind: u8,
    pub state: u8,
    /// SYN/ACK bits of the triggering segment (they decide the cause).
    pub tcp_flags: u8,
    pub reason: u32,
    pub netns: u32,
    /// The service's port: local for sent resets, remote for received ones
    /// (the other end's port is ephemeral and would make every key unique).
    pub port: u16,
    pub family: u16,
    pub owner_tgid: u32,
    /// 1 when the triggering segment carried data (splits TCP_ABORT_ON_DATA).
    pub has_payload: u8,
    pub _pad0: u8,
    pub _pad1: u16,
}

/// Value of the storm aggregation table (per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AggValue {
    pub count: u64,
    /// jiffies (see `Control::storm_window_jiffies`).
    pub first_jiffies: u64,
    pub last_jiffies: u64,
    /// One example of the other end of the aggregated resets.
    pub remote_addr: [u8; 16],
    pub remote_port: u16,
    pub _pad0: u16,
    pub _pad1: u32,
    pub owner_comm: [u8; COMM_LEN],
}

/// Indices of the per-CPU `COUNTERS` array.
pub const COUNTER_EMITTED: u32 = 0;
/// Records that could not be written because the buffer was full.
pub const COUNTER_LOST: u32 = 1;
/// Resets counted in the aggregation table instead of emitted.
pub const COUNTER_AGGREGATED: u32 = 2;
/// Resets that found the aggregation table full (counted, not keyed).
pub const COUNTER_AGG_OVERFLOW: u32 = 3;
/// Resets seen by the programs (emitted + aggregated + lost + filtered).
pub const COUNTER_SEEN: u32 = 4;
/// Resets skipped by the netns filter.
pub const COUNTER_FILTERED: u32 = 5;
/// Resets that arrived for no socket (reported with --stray-resets).
pub const COUNTER_STRAY: u32 = 6;
pub const COUNTERS_LEN: u32 = 8;

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: all of these are #[repr(C)] integers/arrays with explicit
    // padding fields, valid for any bit pattern.
    unsafe impl aya::Pod for Owner {}
    // SAFETY: as for Owner.
    unsafe impl aya::Pod for SockEntry {}
    // SAFETY: as for Owner.
    unsafe impl aya::Pod for ListenKey {}
    // SAFETY: as for Owner.
    unsafe impl aya::Pod for ConnKey {}
    // SAFETY: as for Owner.
    unsafe impl aya::Pod for ClosedEntry {}
    // SAFETY: as for Owner.
    unsafe impl aya::Pod for AggKey {}
    // SAFETY: as for Owner.
    unsafe impl aya::Pod for AggValue {}
    // SAFETY: as for Owner.
    unsafe impl aya::Pod for ResetEvent {}
    // SAFETY: as for Owner.
    unsafe impl aya::Pod for ErrorReportEvent {}
    // SAFETY: as for Owner.
    unsafe impl aya::Pod for ListenEvent {}
    // SAFETY: as for Owner.
    unsafe impl aya::Pod for FirewallEvent {}
    // SAFETY: as for Owner.
    unsafe impl aya::Pod for IcmpEvent {}
    // SAFETY: as for Owner.
    unsafe impl aya::Pod for StrayEvent {}
}

// Layouts are shared with the eBPF object byte for byte: no implicit padding.
const _: () = assert!(core::mem::size_of::<Endpoints>() == 40);
const _: () = assert!(core::mem::size_of::<SegmentHdr>() == 16);
const _: () = assert!(core::mem::size_of::<ResetEvent>() == 352);
const _: () = assert!(core::mem::size_of::<ErrorReportEvent>() == 128);
const _: () = assert!(core::mem::size_of::<ListenEvent>() == 64);
const _: () = assert!(core::mem::size_of::<FirewallEvent>() == 88);
const _: () = assert!(core::mem::size_of::<IcmpEvent>() == 96);
const _: () = assert!(core::mem::size_of::<StrayEvent>() == 80);
const _: () = assert!(core::mem::size_of::<SockEntry>() == 72);
const _: () = assert!(core::mem::size_of::<ConnKey>() == 48);
const _: () = assert!(core::mem::size_of::<ClosedEntry>() == 56);
const _: () = assert!(core::mem::size_of::<AggKey>() == 24);
const _: () = assert!(core::mem::size_of::<AggValue>() == 64);
