//! Records the eBPF programs send to userspace.  Every record starts with an
//! [`EventHeader`]; the decoder dispatches on `header.kind`.

use crate::COMM_LEN;

/// `header.kind`: this host sent a reset ([`ResetEvent`]; the
/// `tcp:tcp_send_reset` tracepoint or the functions that build resets).
pub const KIND_RESET_SENT: u8 = 1;
/// `header.kind`: this host received a reset ([`ResetEvent`]; the
/// `tcp:tcp_receive_reset` tracepoint or `tcp_reset()`).
pub const KIND_RESET_RECEIVED: u8 = 2;
/// `sock:inet_sk_error_report`: the errno delivered to a local socket
/// ([`ErrorReportEvent`]).
pub const KIND_ERROR_REPORT: u8 = 3;
/// A socket entered or left TCP_LISTEN (restart diagnosis;
/// [`ListenEvent`]).
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

/// `flags` bit: the record has the segment the reset answers (`seg`, and
/// `ends` from its headers).  Only sent resets have one, and not those
/// the host starts itself (an abort, a timer).
pub const FLAG_HAS_SKB: u16 = 1 << 0;
/// `flags` bit: the event has a socket (`sk` != 0), so `state` is valid.
pub const FLAG_HAS_SK: u16 = 1 << 1;
/// `flags` bit: `sk` is a full socket, not a time-wait or request
/// mini-socket, so the `struct sock` members past `sock_common`
/// (`sock_ino`, `sk_flags`, `sk_lingertime`, `sk_shutdown_byte`, `tcp`)
/// were read.
pub const FLAG_FULL_SOCK: u16 = 1 << 2;
/// `flags` bit: `owner` is valid.  It came from the in-kernel socket table (registered in process
/// context at connect/listen/accept); otherwise userspace resolves
/// `sock_ino` through /proc.
pub const FLAG_OWNER_KNOWN: u16 = 1 << 3;
/// `flags` bit: `born_ns` is valid (the connection was seen starting).
pub const FLAG_BORN_KNOWN: u16 = 1 << 4;
/// `flags` bit: `tcp` ([`TcpInfo`]) was read: a full socket that is not
/// a listener.
pub const FLAG_TCP_INFO: u16 = 1 << 5;
/// `flags` bit: the owner was inherited from the listener (a child not
/// accepted yet: whoever accept()s it may be another process).
pub const FLAG_OWNER_FROM_LISTENER: u16 = 1 << 6;
/// `flags` bit: `closed_ns` is valid: the owner had closed the connection (an orphan,
/// or a time-wait socket whose owner came from the closed-connection
/// table).
pub const FLAG_CLOSED: u16 = 1 << 7;
/// `flags` bit: `frames` holds the kernel stack at the reset, for
/// inferring the cause of a sent reset the kernel gives no reason for.
pub const FLAG_STACK: u16 = 1 << 8;
/// `flags` bit: `tw_substate` is valid (a time-wait socket).
pub const FLAG_TIMEWAIT: u16 = 1 << 9;
/// `flags` bit: the listener's accept-queue fill (`ack_backlog`,
/// `max_ack_backlog`) is valid.
pub const FLAG_BACKLOG: u16 = 1 << 10;
/// `flags` bit: the owner came from the closed-connection table: the
/// socket is a time-wait one and its owner had closed it.
pub const FLAG_OWNER_CLOSED: u16 = 1 << 11;

/// `hook`: a BTF tracepoint (`tcp:tcp_send_reset`,
/// `tcp:tcp_receive_reset`), or for [`FirewallEvent`] a verdict matched
/// from tracepoints.
pub const HOOK_TRACEPOINT: u8 = 1;
/// `hook`: fentry on a kernel function (the functions that build resets,
/// `tcp_reset()`), where the tracepoint misses resets or lacks a reason.
pub const HOOK_FENTRY: u8 = 2;
/// `hook`: a kprobe (kernels without BPF trampolines), or for
/// [`FirewallEvent`] netfilter's own reject function, seen exactly.
pub const HOOK_KPROBE: u8 = 3;
/// `hook`: a raw tracepoint (no kernel BTF, `--btf`).
pub const HOOK_RAW_TRACEPOINT: u8 = 4;

/// Kernel stack frames kept for inference (`ResetEvent::frames`).
pub const FRAMES: usize = 8;

/// The start of every record: what kind it is, and when and where it was
/// recorded.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    /// One of the `KIND_*` values: which record follows.
    pub kind: u8,
    // Padding is made of integers, not byte arrays: on the eBPF side a
    // zeroed byte array becomes a call to a byte-wise memset.
    /// Padding (0).
    pub _pad0: u8,
    /// Padding (0).
    pub _pad1: u16,
    /// The CPU the program ran on (`bpf_get_smp_processor_id`; JSON `cpu`).
    pub cpu: u32,
    /// When the record was made, in ns: CLOCK_BOOTTIME where the kernel
    /// has `bpf_ktime_get_boot_ns` (see `Config::boot_clock`), else
    /// CLOCK_MONOTONIC.  Userspace turns it into wall-clock time.
    pub ts_ns: u64,
}

/// Both ends of a connection, this host's first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Endpoints {
    /// AF_INET or AF_INET6 (0 when nothing could be read).
    pub family: u16,
    /// This host's port, in host byte order.
    pub local_port: u16,
    /// The other end's port, in host byte order.
    pub remote_port: u16,
    /// Padding (0).
    pub _pad: u16,
    /// This host's address, in network byte order; IPv4 addresses use the
    /// first 4 bytes, the rest is 0.
    pub local_addr: [u8; 16],
    /// The other end's address, laid out like `local_addr`.
    pub remote_addr: [u8; 16],
}

/// The TCP segment a record is about (valid with `FLAG_HAS_SKB`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentHdr {
    /// The segment's sequence number (host byte order).
    pub seq: u32,
    /// Its acknowledgment number (host byte order; meaningful with ACK).
    pub ack_seq: u32,
    /// TCP payload bytes: the IP payload less the TCP header.
    pub payload_len: u32,
    /// The TCP header's flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH
    /// 0x08, ACK 0x10, ...).
    pub tcp_flags: u8,
    /// IP TTL / IPv6 hop limit.
    pub ttl: u8,
    /// Padding (0).
    pub _pad: u16,
}

/// The process a socket belongs to, recorded in process context.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    /// The process id (thread-group id; 0 = none recorded).
    pub tgid: u32,
    /// Padding (0).
    pub _pad: u32,
    /// `bpf_get_current_cgroup_id()`: the process's cgroup v2 id, which
    /// userspace maps to a cgroup path, container and pod.
    pub cgroup_id: u64,
    /// The thread-group leader's `start_boottime` (ns): with the pid,
    /// names one process even after the pid is reused.
    pub start_ns: u64,
    /// The thread-group leader's `comm` (the process name, not a
    /// thread's), NUL-padded.
    pub comm: [u8; COMM_LEN],
}

/// What the in-kernel socket table keeps per socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockEntry {
    /// Who owns the socket (valid when `has_owner` is 1).
    pub owner: Owner,
    /// When the connection started, in `EventHeader::ts_ns`'s clock
    /// (connect(), listen() or the child's creation; 0 = unknown, a socket
    /// first seen at accept()).
    pub born_ns: u64,
    /// 1 when `owner` is set.
    pub has_owner: u8,
    /// 1 when the owner was inherited from the listener.
    pub from_listener: u8,
    /// IP TTL / hop limit of the peer's handshake segment (0 = unknown).
    pub peer_ttl: u8,
    /// Padding (0).
    pub _pad0: u8,
    /// Padding (0).
    pub _pad1: u32,
    /// When the socket was destroyed (0 = alive).  The entry outlives the
    /// socket briefly: an orphan is destroyed *before* some of its resets
    /// are sent.  No program writes it at present: it stays 0.
    pub destroyed_ns: u64,
    /// When this end started closing (our FIN: ESTABLISHED -> FIN_WAIT1 or
    /// CLOSE_WAIT -> LAST_ACK), 0 while open.
    pub closed_ns: u64,
}

/// How long an entry answers for a destroyed socket (ns; see
/// `SockEntry::destroyed_ns`, which no program sets at present).
pub const DESTROYED_GRACE_NS: u64 = 1_000_000_000;

/// A connection by its addresses, for the table of closed connections.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConnKey {
    /// Inode of the connection's network namespace.
    pub netns: u32,
    /// Padding (0): part of the key, so always zeroed.
    pub _pad: u32,
    /// Both ends, this host's first, as the socket had them.
    pub ends: Endpoints,
}

/// Who owned a connection the kernel still holds after its socket is gone
/// (time-wait), and when that owner closed it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClosedEntry {
    /// Who owned the socket before it went to time-wait.
    pub owner: Owner,
    /// When the owner closed it (our FIN; `SockEntry::closed_ns`).  The
    /// entry is believed for twice the longest time-wait life after this.
    pub closed_ns: u64,
    /// When the connection started (`SockEntry::born_ns`; 0 = unknown).
    pub born_ns: u64,
}

/// Key of the listener table: who listens on (netns, port).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ListenKey {
    /// Inode of the listener's network namespace.
    pub netns: u32,
    /// The port listened on (host byte order).
    pub port: u16,
    /// Padding (0): part of the key, so always zeroed.
    pub _pad: u16,
}

/// TCP connection counters at the moment of the reset, copied from
/// `struct tcp_sock` (valid with `FLAG_TCP_INFO`).  A member this kernel
/// lacks (`Offsets` says ABSENT) reads as 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpInfo {
    /// `tcp_sock.bytes_received`: payload bytes received (JSON
    /// `bytes_received`).
    pub bytes_received: u64,
    /// `tcp_sock.bytes_acked`: payload bytes the peer acknowledged.
    pub bytes_acked: u64,
    /// `tcp_sock.bytes_sent`: payload bytes sent, retransmissions
    /// included (Linux 4.19+; userspace leaves it out where absent).
    pub bytes_sent: u64,
    /// `tcp_sock.snd_una`: first byte the peer has not acknowledged;
    /// `snd_nxt - snd_una` is the unacknowledged data.
    pub snd_una: u32,
    /// `tcp_sock.snd_nxt`: next sequence number to send.
    pub snd_nxt: u32,
    /// `tcp_sock.rcv_nxt`: next sequence number expected from the peer.
    pub rcv_nxt: u32,
    /// `tcp_sock.copied_seq`: first byte the application has not read;
    /// `rcv_nxt - copied_seq` is the data received but unread.
    pub copied_seq: u32,
    /// jiffies (32-bit) of the last data sent (`tcp_sock.lsndtime`)...
    pub lsndtime: u32,
    /// ... of the last ACK received (`tcp_sock.rcv_tstamp`) ...
    pub rcv_tstamp: u32,
    /// ... and of the last data received (`icsk_ack.lrcvtime`).  With
    /// `now_jiffies` and HZ these give the idle time; 0 = never.
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
    /// `kind` is `KIND_RESET_SENT` or `KIND_RESET_RECEIVED`.
    pub header: EventHeader,
    /// Kernel address of the socket (0 = none); correlates events.
    pub sk: u64,
    /// The kernel's socket cookie (as `ss -e` shows it; 0 = none).  Where
    /// the helper is allowed (typed programs, 5.12+) the programs ask for
    /// it, which assigns one if the socket had none yet.
    pub sock_cookie: u64,
    /// Inode of the socket's file (0 = not attached to a file).
    pub sock_ino: u64,
    /// Raw `sk_flags` word (`enum sock_flags` bit numbers from BTF):
    /// SOCK_DEAD, SOCK_LINGER and others the classifier reads.
    pub sk_flags: u64,
    /// `sk_lingertime` (jiffies): SO_LINGER {on, 0} with this 0 is an
    /// abortive close.
    pub sk_lingertime: u64,
    /// When the connection started (see [`FLAG_BORN_KNOWN`]); age is
    /// `header.ts_ns - born_ns`.
    pub born_ns: u64,
    /// See [`FLAG_CLOSED`].
    pub closed_ns: u64,
    /// Raw `enum sk_rst_reason` value of a sent reset (userspace names it
    /// from BTF), or [`REASON_ABSENT`].
    pub reason: u32,
    /// Inode of the network namespace (socket's, or the packet's device's).
    pub netns: u32,
    /// The socket's pending error (`sk_err`, a positive errno; full
    /// sockets only).  The daemon takes the delivered errno from
    /// [`ErrorReportEvent`] instead and does not read this at present.
    pub sk_err: i32,
    /// `FLAG_*` bits: which of the other fields are valid.
    pub flags: u16,
    /// TCP state of the socket (kernel numbering; 0 = no socket).
    pub state: u8,
    /// Raw byte holding `sk_shutdown` (see `Offsets::sk_shutdown_byte`):
    /// userspace extracts RCV_SHUTDOWN and SEND_SHUTDOWN.
    pub sk_shutdown_byte: u8,
    /// A time-wait socket's substate (FIN_WAIT2 or TIME_WAIT).
    pub tw_substate: u8,
    /// One of the `HOOK_*` values: which program made the record (the
    /// daemon does not read it at present).
    pub hook: u8,
    /// A received reset's own IP TTL / hop limit (0 = unknown).  Compared
    /// with `peer_ttl` it tells the peer's reset from one made on the
    /// path (`origin`).
    pub rst_ttl: u8,
    /// The TTL / hop limit the peer used on its SYN or SYN-ACK, from the
    /// socket table (0 = unknown).
    pub peer_ttl: u8,
    /// A listener's accept queue: connections waiting (`sk_ack_backlog`)...
    pub ack_backlog: u32,
    /// ... and its limit (`sk_max_ack_backlog`; see [`FLAG_BACKLOG`]).
    pub max_ack_backlog: u32,
    /// The connection: from the answered segment's headers with
    /// `FLAG_HAS_SKB` (its source is the remote end), else from the socket.
    pub ends: Endpoints,
    /// The segment the reset answers (valid with [`FLAG_HAS_SKB`]).
    pub seg: SegmentHdr,
    /// Padding (0).
    pub _pad2: u32,
    /// The socket's owner (valid with [`FLAG_OWNER_KNOWN`]).
    pub owner: Owner,
    /// The task that was running when the event fired.  In softirq and
    /// timers this is unrelated to the socket; reported only where it is
    /// meaningful (for example the process that killed a socket).
    pub task_tgid: u32,
    /// Padding (0).
    pub _pad1: u32,
    /// The running task's `comm` (a thread's name), NUL-padded.
    pub task_comm: [u8; COMM_LEN],
    /// The connection's counters (valid with [`FLAG_TCP_INFO`]).
    pub tcp: TcpInfo,
    /// Kernel return addresses, innermost first (see [`FLAG_STACK`]).
    pub frames: [u64; FRAMES],
}

/// `sock:inet_sk_error_report`: the error a local socket reports next.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ErrorReportEvent {
    /// `kind` is `KIND_ERROR_REPORT`.
    pub header: EventHeader,
    /// Kernel address of the socket: matches `ResetEvent::sk`.
    pub sk: u64,
    /// Inode of the socket's file (0 = not attached to a file).
    pub sock_ino: u64,
    /// `sk_err`: the positive errno the application's next call gets
    /// (ECONNRESET, ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH...).  0 only on
    /// a connecting socket with `--failures`: the ICMP error went to
    /// `sk_err_soft`, and this report is the only one there will be.
    pub error: i32,
    /// Inode of the socket's network namespace.
    pub netns: u32,
    /// `FLAG_OWNER_KNOWN` when `owner` is valid; no other bit is used.
    pub flags: u16,
    /// TCP state of the socket (kernel numbering).
    pub state: u8,
    /// 1 when the connection got as far as the peer's SYN (rcv_nxt set):
    /// tells a connect() timeout from a timeout on an established one.
    pub synced: u8,
    /// Padding (0).
    pub _pad0: u32,
    /// The connection, from the socket.
    pub ends: Endpoints,
    /// The socket's owner, from the socket table (see `flags`).
    pub owner: Owner,
}

/// A socket entered (`listening = 1`) or left TCP_LISTEN.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenEvent {
    /// `kind` is `KIND_LISTEN`.
    pub header: EventHeader,
    /// Inode of the listener's network namespace.
    pub netns: u32,
    /// The port (host byte order).
    pub port: u16,
    /// 1: listen() (CLOSE -> LISTEN); 0: the listener closed.
    pub listening: u8,
    /// Padding (0).
    pub _pad: u8,
    /// The process that listens (the caller of listen()) or listened
    /// (from the socket table; `tgid` 0 = unknown).
    pub owner: Owner,
}

/// Netfilter dropped a TCP segment, or answered it with a reset or an
/// ICMP error (`verdict`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FirewallEvent {
    /// `kind` is `KIND_FIREWALL`.
    pub header: EventHeader,
    /// Inode of the network namespace whose netfilter rules acted.
    pub netns: u32,
    /// One of the `VERDICT_*` values.
    pub verdict: u8,
    /// With `VERDICT_ICMP`: the ICMP (or ICMPv6) type sent back ...
    pub icmp_type: u8,
    /// ... and its code (for example 3/3, port unreachable).
    pub icmp_code: u8,
    /// `HOOK_KPROBE` when netfilter's reset function itself was seen
    /// (exact), `HOOK_TRACEPOINT` when matched from tracepoints.
    pub hook: u8,
    /// The connection of the segment the firewall acted on.
    pub ends: Endpoints,
    /// That segment.
    pub seg: SegmentHdr,
    /// 1 when the segment was this host's own, dropped on its way out (an
    /// output rule); `ends` are this host's view either way.
    pub outgoing: u8,
    /// Padding (0).
    pub _pad0: u8,
    /// Padding (0).
    pub _pad1: u16,
    /// Padding (0).
    pub _pad2: u32,
}

/// An ICMP error about a TCP segment this host sent: `ends` and `seg`
/// are the quoted segment, seen from this host (local = its source).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IcmpEvent {
    /// `kind` is `KIND_ICMP`.
    pub header: EventHeader,
    /// Inode of the network namespace the error arrived in.
    pub netns: u32,
    /// ICMP type (ICMPv6 type for `ends.family` AF_INET6) ...
    pub icmp_type: u8,
    /// ... and code: which error (net or host unreachable, prohibited...).
    pub icmp_code: u8,
    /// TTL / hop limit of the ICMP packet.
    pub ttl: u8,
    /// Padding (0).
    pub _pad: u8,
    /// Who sent the error (a router on the path, or the destination),
    /// laid out like `Endpoints::local_addr`.
    pub from: [u8; 16],
    /// The quoted segment's connection, this host's end first.
    pub ends: Endpoints,
    /// The quoted segment (as far as the ICMP error quotes it).
    pub seg: SegmentHdr,
}

/// A reset that arrived for no socket: the kernel drops it silently.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StrayEvent {
    /// `kind` is `KIND_STRAY`.
    pub header: EventHeader,
    /// Inode of the network namespace the reset arrived in.
    pub netns: u32,
    /// Padding (0).
    pub _pad: u32,
    /// The connection the reset names (its source is the remote end).
    pub ends: Endpoints,
    /// The reset segment itself (its TTL and sequence number).
    pub seg: SegmentHdr,
}

/// Key of the storm aggregation table: one counter per
/// (epoch, direction, reason, service port, netns, owner).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AggKey {
    /// `Control::epoch` when the reset was counted.
    pub epoch: u8,
    /// `KIND_RESET_SENT` or `KIND_RESET_RECEIVED`.
    pub kind: u8,
    /// TCP state of the socket (kernel numbering; 0 = no socket).
    pub state: u8,
    /// SYN/ACK bits of the triggering segment (they decide the cause).
    pub tcp_flags: u8,
    /// Raw `enum sk_rst_reason`, or [`REASON_ABSENT`] (as in
    /// [`ResetEvent`]).
    pub reason: u32,
    /// Inode of the network namespace.
    pub netns: u32,
    /// The service's port: local for sent resets, remote for received ones
    /// (the other end's port is ephemeral and would make every key unique).
    pub port: u16,
    /// AF_INET or AF_INET6.
    pub family: u16,
    /// The socket owner's pid (0 = unknown).
    pub owner_tgid: u32,
    /// 1 when the triggering segment carried data (splits TCP_ABORT_ON_DATA).
    pub has_payload: u8,
    /// Padding (0): part of the key, so always zeroed.
    pub _pad0: u8,
    /// Padding (0): part of the key, so always zeroed.
    pub _pad1: u16,
}

/// Value of the storm aggregation table (per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AggValue {
    /// Resets counted under the key on this CPU.
    pub count: u64,
    /// `bpf_jiffies64()` of the first reset counted (see
    /// `Control::storm_window_jiffies`) ...
    pub first_jiffies: u64,
    /// ... and of the last one.
    pub last_jiffies: u64,
    /// One example of the end the key leaves out (its port is the
    /// ephemeral one): the peer for sent resets, this host's end for
    /// received ones.  Laid out like `Endpoints::local_addr`.
    pub remote_addr: [u8; 16],
    /// That end's port (host byte order).
    pub remote_port: u16,
    /// Padding (0).
    pub _pad0: u16,
    /// Padding (0).
    pub _pad1: u32,
    /// The owner's `comm` when the key was first counted.
    pub owner_comm: [u8; COMM_LEN],
}

/// Index in the per-CPU `COUNTERS` array: records written to the buffer
/// (every kind, not only resets).
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
/// Length of the `COUNTERS` array (the indices above, and room for one more).
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
