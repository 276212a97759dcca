//! `"event": "reset"`: one reset this host sent or received, explained.

use super::{
    conn::{family_name, CommunityId, Conn, Segment, Task},
    field::{field, Field, Side, Text, Ty, Value},
    owner::Owner,
};
use crate::vocab::errno::Errno;
use crate::{
    kernel::names::{KernelReason, TcpState},
    vocab::{Affected, Cause, CauseSource, Direction},
};

/// Connection context at the moment of the reset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Context {
    pub age_ms: Option<u64>,
    pub bytes_sent: Option<u64>,
    pub bytes_acked: Option<u64>,
    pub bytes_received: Option<u64>,
    /// Received but not read by the application.
    pub unread_bytes: Option<u32>,
    /// Sent but not acknowledged by the peer.
    pub unacked_bytes: Option<u32>,
    /// Since the peer was last heard from (last ACK or data received).
    pub idle_ms: Option<u64>,
    /// Since this host last sent data.
    pub last_send_ms: Option<u64>,
}

/// Restart diagnosis for `no_listener` and `stale_connection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListenerNote {
    /// Whether something listens on the port now.
    pub listening_now: bool,
    /// The process rsttrace last saw listening there.
    pub last: Option<Task>,
    /// How long ago that listener stopped (None while it still listens or
    /// if rsttrace did not see it stop).
    pub stopped_ms: Option<u64>,
}

/// The errno the kernel reported on the local socket for this reset
/// (`sock:inet_sk_error_report`), and the process that gets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delivered {
    pub errno: Errno,
    pub to: Option<Task>,
}

/// Who sent a received reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A socket on this host (the sent reset was seen too).
    Local,
    /// The peer host: the reset came with the TTL its segments have.
    Peer,
    /// Something on the path: the TTL differs from the peer's.
    Path,
}

impl Origin {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Origin::Local => "local",
            Origin::Peer => "peer",
            Origin::Path => "path",
        }
    }
}

/// The other end of a reset, when it is on this host too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Paired {
    pub owner: Option<Task>,
    pub netns: u32,
    /// The sender's cause (on a received reset).
    pub cause: Option<Cause>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reset {
    pub unix_ns: i128,
    pub direction: Direction,
    pub cause: Cause,
    pub cause_source: CauseSource,
    pub kernel_reason: Option<KernelReason>,
    pub state: Option<TcpState>,
    pub conn: Conn,
    pub netns: u32,
    pub owner: Option<Owner>,
    pub app_errno: Option<Errno>,
    /// For stale connections: whether a listener owned the port.
    pub listener: Option<bool>,
    pub history: Option<ListenerNote>,
    pub segment: Option<Segment>,
    pub context: Context,
    /// The task the CPU happened to run.
    /// The task the CPU was running; None where the event has none (a
    /// firewall's reset, known from its segment).
    pub task: Option<Task>,
    pub killer: Option<Task>,
    pub delivered: Option<Delivered>,
    pub sock_cookie: Option<u64>,
    pub sock_inode: Option<u64>,
    pub cpu: u32,
    /// How long before the reset the owner closed the connection.
    pub owner_closed_ms: Option<u64>,
    /// Community ID v1 of the connection.
    pub community_id: CommunityId,
    /// A received reset's TTL / hop limit, and the peer's.
    pub rst_ttl: Option<u8>,
    pub peer_ttl: Option<u8>,
    pub origin: Option<Origin>,
    /// The sending end (received resets) or the receiving end (sent
    /// resets), when on this host.
    pub other_end: Option<Paired>,
}

impl Reset {
    fn affected(&self) -> &'static str {
        match self.cause.affected() {
            Affected::Peer => "peer",
            Affected::Local => "local",
        }
    }

    /// The way the reset travelled, for text output.
    pub(crate) fn arrow(&self) -> &'static str {
        match self.direction {
            Direction::Sent => "->",
            Direction::Received => "<-",
        }
    }

    fn owner_task(&self) -> Option<(u32, &str)> {
        self.owner.as_ref().map(|o| (o.pid, o.comm.as_str()))
    }

    fn last_listener(&self) -> Option<&Task> {
        self.history.as_ref().and_then(|h| h.last.as_ref())
    }

    fn delivered_to(&self) -> Option<&Task> {
        self.delivered.as_ref().and_then(|d| d.to.as_ref())
    }

    fn container(&self) -> Option<&super::owner::Container> {
        self.owner.as_ref().and_then(Owner::container)
    }

    /// The other end, if it is the sender (this reset was received).
    fn sender(&self) -> Option<&Paired> {
        self.other_end
            .as_ref()
            .filter(|_| self.direction == Direction::Received)
    }

    fn receiver(&self) -> Option<&Paired> {
        self.other_end
            .as_ref()
            .filter(|_| self.direction == Direction::Sent)
    }
}

fn comm(t: Option<&Task>) -> Value<'_> {
    Value::str(t.map(|t| t.comm.as_str()))
}

fn pid(t: Option<&Task>) -> Value<'_> {
    Value::num(t.map(|t| u64::from(t.pid)))
}

fn seg(r: &Reset) -> Option<&Segment> {
    r.segment.as_ref()
}

pub(crate) const FIELDS: &[Field<Reset>] = &[
    field("time", Ty::Str, Text::Head(27), "When the kernel emitted the reset, RFC 3339 UTC with microseconds.", |r| Value::Time(r.unix_ns)),
    field("event", Ty::Str, Text::Omit, "Record kind: \"reset\" here (see also the other kinds below).", |_| Value::Str("reset")),
    field("direction", Ty::Str, Text::Head(8), "\"sent\" (this host sent the reset) or \"received\" (a local socket was reset).", |r| Value::Str(r.direction.as_str())),
    field("cause", Ty::Str, Text::Head(24), "Cause id (see `rsttrace causes`).", |r| Value::Str(r.cause.id())),
    field("explanation", Ty::Str, Text::Tail, "The cause in one plain sentence.", |r| Value::Str(r.cause.explanation())),
    field("family", Ty::Str, Text::Omit, "\"inet\" or \"inet6\" (IPv4-mapped IPv6 addresses are shown as IPv4).", |r| Value::Str(family_name(&r.conn.local))),
    field("local_addr", Ty::Str, Text::Addr(Side::Local), "This host's address of the connection.", |r| Value::Ip(r.conn.local)),
    field("local_port", Ty::Num, Text::Port(Side::Local), "This host's port.", |r| Value::U64(u64::from(r.conn.local_port))),
    field("remote_addr", Ty::Str, Text::Addr(Side::Remote), "The peer's address.", |r| Value::Ip(r.conn.remote)),
    field("remote_port", Ty::Num, Text::Port(Side::Remote), "The peer's port.", |r| Value::U64(u64::from(r.conn.remote_port))),
    field("cause_source", Ty::Str, Text::Omit, "How the cause was found: \"kernel_reason\" (the kernel named the reason, possibly refined by socket state) or \"inferred\" (the kernel gives none: inferred from the segment, socket state, timers and the call path; see docs/kernels.md).", |r| Value::Str(r.cause_source.as_str())),
    field("kernel_reason", Ty::OptStr, Text::Kv("reason"), "The kernel's enum sk_rst_reason name (NO_SOCKET, TCP_STATE, ...); null where the kernel gives none (received resets, Linux < 6.10).", |r| Value::str(r.kernel_reason.and_then(KernelReason::name))),
    field("state", Ty::OptStr, Text::Kv("state"), "TCP state of the local socket when the reset happened (ESTABLISHED, LISTEN, TIME_WAIT, CLOSE, ...); null when there is no socket.", |r| Value::str(r.state.map(TcpState::name))),
    field("pid", Ty::OptNum, Text::Kv("owner"), "Process id (thread group) of the process owning the local socket (for an orphan, closed by its application but still finishing, the process that owned it last); null when there is no local socket (closed port, TIME_WAIT) or it cannot be found. Never the task that happened to run.", |r| Value::num(r.owner_task().map(|o| u64::from(o.0)))),
    field("comm", Ty::OptStr, Text::Join, "That process's name.", |r| Value::str(r.owner_task().map(|o| o.1))),
    field("owner_source", Ty::OptStr, Text::Omit, "How the owner was found: \"socket\" (recorded at connect/listen/accept), \"listener\" (a connection not accepted yet: its listener's owner), \"procfs\" (the socket's inode in /proc/<pid>/fd), \"closed\" (the socket is gone, the kernel holds the connection in time-wait: the process that owned it until it closed it).", |r| Value::str(r.owner.as_ref().map(|o| o.source.as_str()))),
    field("owner_closed_ms", Ty::OptNum, Text::Kv("closed_ms_ago"), "For a connection its owner had already closed (an orphan finishing, or time-wait): how long before the reset the owner closed it, in ms.", |r| Value::num(r.owner_closed_ms)),
    field("owner_exited", Ty::OptBool, Text::Kv("owner_exited"), "For such a closed connection: whether the owner process has exited since (a server that crashed or restarted).", |r| Value::bool(r.owner.as_ref().and_then(|o| o.exited))),
    field("netns", Ty::Num, Text::Kv("netns"), "Inode of the socket's network namespace (as in /proc/<pid>/ns/net); for resets with no socket, of the receiving device's namespace.", |r| Value::U64(u64::from(r.netns))),
    field("app_errno", Ty::OptStr, Text::Kv("errno"), "The error the affected application gets: ECONNREFUSED, ECONNRESET, EPIPE, ...; null when none does.", |r| Value::str(r.app_errno.map(Errno::name))),
    field("app_errno_for", Ty::Str, Text::Join, "Whose application gets app_errno: \"peer\" for sent resets, \"local\" for received ones.", |r| Value::Str(r.affected())),
    field("listener", Ty::OptBool, Text::Omit, "For no_listener and stale_connection: whether a listening socket owned the port when the segment arrived.", |r| Value::bool(r.listener)),
    field("listener_now", Ty::OptBool, Text::Kv("listening_now"), "For no_listener and stale_connection: whether something listens on the port now (as far as rsttrace knows).", |r| Value::bool(r.history.map(|h| h.listening_now))),
    field("last_listener_pid", Ty::OptNum, Text::Kv("last_listener"), "The process rsttrace last saw listening on that port.", |r| pid(r.last_listener())),
    field("last_listener_comm", Ty::OptStr, Text::Join, "Its name.", |r| comm(r.last_listener())),
    field("listener_stopped_ms", Ty::OptNum, Text::Kv("stopped_ms_ago"), "How long before this reset that listener stopped, in ms.", |r| Value::num(r.history.and_then(|h| h.stopped_ms))),
    field("tcp_flags", Ty::OptStr, Text::Kv("seg"), "Flags of the segment the reset answers (\"SYN\", \"ACK|PSH\", ...); null for resets the host started itself.", |r| seg(r).map_or(Value::Null, |s| Value::TcpFlags(s.flags))),
    field("seq", Ty::OptNum, Text::Omit, "Sequence number of that segment.", |r| Value::num(seg(r).map(|s| u64::from(s.seq)))),
    field("ack_seq", Ty::OptNum, Text::Omit, "Acknowledgment number of that segment.", |r| Value::num(seg(r).map(|s| u64::from(s.ack)))),
    field("payload_len", Ty::OptNum, Text::Kv("payload"), "Payload bytes in that segment.", |r| Value::num(seg(r).map(|s| u64::from(s.payload)))),
    field("conn_age_ms", Ty::OptNum, Text::Kv("age_ms"), "Age of the connection (since connect(), or the handshake for accepted ones) when rsttrace saw it start; null otherwise.", |r| Value::num(r.context.age_ms)),
    field("bytes_sent", Ty::OptNum, Text::Omit, "Data bytes this host sent on the connection, retransmissions included (tcp_sock.bytes_sent).", |r| Value::num(r.context.bytes_sent)),
    field("bytes_acked", Ty::OptNum, Text::Kv("tx"), "Bytes the peer acknowledged, as tcp_info counts them (the SYN and FIN count one each).", |r| Value::num(r.context.bytes_acked)),
    field("bytes_received", Ty::OptNum, Text::Kv("rx"), "Bytes received from the peer, as tcp_info counts them (a FIN counts one; unread_bytes does not count it).", |r| Value::num(r.context.bytes_received)),
    field("unread_bytes", Ty::OptNum, Text::Kv("unread"), "Bytes received but not yet read by the application (the data an abort_unread_data throws away).", |r| Value::num(r.context.unread_bytes.map(u64::from))),
    field("unacked_bytes", Ty::OptNum, Text::Kv("unacked"), "Bytes sent but not yet acknowledged.", |r| Value::num(r.context.unacked_bytes.map(u64::from))),
    field("idle_ms", Ty::OptNum, Text::Kv("idle_ms"), "Time since the peer was last heard from (last ACK or data received): an idle timeout shows up here.", |r| Value::num(r.context.idle_ms)),
    field("last_send_ms", Ty::OptNum, Text::Omit, "Time since this host last sent data.", |r| Value::num(r.context.last_send_ms)),
    field("task_pid", Ty::OptNum, Text::Omit, "The process the CPU happened to be running when the kernel emitted the event. In softirq and timers it is unrelated to the socket (on loopback and veth often the peer), so it is never used as the owner; shown to debug exactly that. Null when the event has no task (a firewall's reset, known from its segment).", |r| pid(r.task.as_ref())),
    field("task_comm", Ty::OptStr, Text::Omit, "Its name; null with task_pid.", |r| comm(r.task.as_ref())),
    field("killer_pid", Ty::OptNum, Text::Kv("killed_by"), "For socket_destroyed: the process that destroyed the socket (ss -K, ...).", |r| pid(r.killer.as_ref())),
    field("killer_comm", Ty::OptStr, Text::Join, "Its name.", |r| comm(r.killer.as_ref())),
    field("delivered_errno", Ty::OptStr, Text::Kv("delivered"), "The errno the kernel reported on the local socket for this reset (sock:inet_sk_error_report), e.g. ETIMEDOUT for a keepalive timeout.", |r| Value::str(r.delivered.map(|d| d.errno.name()))),
    field("delivered_pid", Ty::OptNum, Text::Kv("delivered_to"), "The process that gets it (the socket's owner).", |r| pid(r.delivered_to())),
    field("delivered_comm", Ty::OptStr, Text::Join, "Its name.", |r| comm(r.delivered_to())),
    field("cgroup", Ty::OptStr, Text::Omit, "cgroup path of the socket's owner.", |r| Value::str(r.container().map(|c| c.cgroup.as_str()))),
    field("container_runtime", Ty::OptStr, Text::Omit, "docker, containerd, cri-o, podman or kubernetes, when the cgroup path names one.", |r| Value::str(r.container().and_then(|c| c.runtime))),
    field("container_id", Ty::OptStr, Text::Kv("container"), "Container id from the cgroup path.", |r| Value::str(r.container().and_then(|c| c.id.as_deref()))),
    field("pod_uid", Ty::OptStr, Text::Omit, "Kubernetes pod UID from the cgroup path.", |r| Value::str(r.container().and_then(|c| c.pod_uid.as_deref()))),
    field("pod_namespace", Ty::OptStr, Text::Kv("pod"), "Kubernetes pod namespace, from the annotations in the container runtime's config.json (CRI-O, podman: io.kubernetes.pod.namespace; containerd: io.kubernetes.cri.sandbox-namespace).", |r| Value::str(r.container().and_then(|c| c.pod_namespace.as_deref()))),
    field("pod_name", Ty::OptStr, Text::Join, "Kubernetes pod name, from the same annotations (io.kubernetes.pod.name, io.kubernetes.cri.sandbox-name).", |r| Value::str(r.container().and_then(|c| c.pod_name.as_deref()))),
    field("sock_cookie", Ty::OptNum, Text::Omit, "The kernel's socket cookie (as in `ss -e` sk:<hex>).", |r| Value::num(r.sock_cookie)),
    field("sock_inode", Ty::OptNum, Text::Omit, "Inode of the socket's file (as in `ss -e` ino:), null when detached.", |r| Value::num(r.sock_inode)),
    field("cpu", Ty::Num, Text::Omit, "CPU the event was recorded on.", |r| Value::U64(u64::from(r.cpu))),
    field("community_id", Ty::Str, Text::Omit, "Community ID v1 of the connection (as Zeek, Suricata and Elastic compute it): joins this record with the other host's and with flow logs. A pair this host joined through NAT shares the received side's (docs/origin.md).", |r| Value::Str(r.community_id.as_str())),
    field("origin", Ty::OptStr, Text::Kv("origin"), "For received resets, who sent it: \"local\" (a socket on this host, see sender_*), \"peer\" (its TTL matches the peer's own segments), \"path\" (its TTL differs: likely injected by a load balancer, NAT or firewall on the way); null where unknown. See docs/origin.md for its limits.", |r| Value::str(r.origin.map(Origin::as_str))),
    field("rst_ttl", Ty::OptNum, Text::Kv("rst_ttl"), "For received resets: the IP TTL (IPv6 hop limit) the reset arrived with.", |r| Value::num(r.rst_ttl.map(u64::from))),
    field("peer_ttl", Ty::OptNum, Text::Kv("peer_ttl"), "The TTL of the peer's own handshake segment (its SYN or SYN-ACK) on this connection.", |r| Value::num(r.peer_ttl.map(u64::from))),
    field("sender_pid", Ty::OptNum, Text::Kv("sender"), "For a received reset sent by a socket on this host: the process owning that socket.", |r| Value::num(r.sender().and_then(|p| p.owner).map(|t| u64::from(t.pid)))),
    field("sender_comm", Ty::OptStr, Text::Join, "Its name.", |r| Value::str(r.sender().and_then(|p| p.owner.as_ref()).map(|t| t.comm.as_str()))),
    field("sender_cause", Ty::OptStr, Text::Kv("sender_cause"), "Why that socket sent it (a cause id).", |r| Value::str(r.sender().and_then(|p| p.cause).map(Cause::id))),
    field("sender_netns", Ty::OptNum, Text::Omit, "That socket's network namespace.", |r| Value::num(r.sender().map(|p| u64::from(p.netns)))),
    field("receiver_pid", Ty::OptNum, Text::Kv("receiver"), "For a sent reset received by a socket on this host: the process owning that socket.", |r| Value::num(r.receiver().and_then(|p| p.owner).map(|t| u64::from(t.pid)))),
    field("receiver_comm", Ty::OptStr, Text::Join, "Its name.", |r| Value::str(r.receiver().and_then(|p| p.owner.as_ref()).map(|t| t.comm.as_str()))),
    field("receiver_netns", Ty::OptNum, Text::Omit, "That socket's network namespace.", |r| Value::num(r.receiver().map(|p| u64::from(p.netns)))),
];
