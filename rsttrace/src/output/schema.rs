//! The JSON output: one flat object per line, every key always present
//! (null when unknown), so that log pipelines can rely on the shape.  The
//! key list below is the documentation (`rsttrace schema`, docs/json.md);
//! a test checks that the writer emits exactly these keys.

use super::json::Object;
use crate::{
    classify::Affected,
    decode::family_name,
    kernel::clock::rfc3339,
    report::{tcp_flags_str, Report},
};

/// (key, type, meaning) for `"event": "reset"` records.
pub const RESET_KEYS: &[(&str, &str, &str)] = &[
    ("time", "string", "When the kernel emitted the reset, RFC 3339 UTC with microseconds."),
    ("event", "string", "Record kind: \"reset\" here (see also \"suppressed\" and \"connection_failure\")."),
    ("direction", "string", "\"sent\" (this host sent the reset) or \"received\" (a local socket was reset)."),
    ("cause", "string", "Cause id (see `rsttrace causes`)."),
    ("explanation", "string", "The cause in one plain sentence."),
    ("kernel_reason", "string|null", "The kernel's enum sk_rst_reason name (NO_SOCKET, TCP_STATE, ...); null where the kernel gives none (received resets, Linux < 6.10)."),
    ("state", "string|null", "TCP state of the local socket when the reset happened (ESTABLISHED, LISTEN, TIME_WAIT, CLOSE, ...); null when there is no socket."),
    ("family", "string", "\"inet\" or \"inet6\" (IPv4-mapped IPv6 addresses are shown as IPv4)."),
    ("local_addr", "string", "This host's address of the connection."),
    ("local_port", "number", "This host's port."),
    ("remote_addr", "string", "The peer's address."),
    ("remote_port", "number", "The peer's port."),
    ("pid", "number|null", "Process id (thread group) of the process owning the local socket (for an orphan, closed by its application but still finishing, the process that owned it last); null when there is no local socket (closed port, TIME_WAIT) or it cannot be found. Never the task that happened to run."),
    ("comm", "string|null", "That process's name."),
    ("owner_source", "string|null", "How the owner was found: \"socket\" (recorded at connect/listen/accept), \"listener\" (a connection not accepted yet: its listener's owner), \"procfs\" (the socket's inode in /proc/<pid>/fd)."),
    ("netns", "number", "Inode of the socket's network namespace (as in /proc/<pid>/ns/net); for resets with no socket, of the receiving device's namespace."),
    ("app_errno", "string|null", "The error the affected application gets: ECONNREFUSED, ECONNRESET, EPIPE, ...; null when none does."),
    ("app_errno_for", "string", "Whose application gets app_errno: \"peer\" for sent resets, \"local\" for received ones."),
    ("listener", "boolean|null", "For no_listener and stale_connection: whether a listening socket owned the port when the segment arrived."),
    ("listener_now", "boolean|null", "For no_listener and stale_connection: whether something listens on the port now (as far as rsttrace knows)."),
    ("last_listener_pid", "number|null", "The process rsttrace last saw listening on that port."),
    ("last_listener_comm", "string|null", "Its name."),
    ("listener_stopped_ms", "number|null", "How long before this reset that listener stopped, in ms."),
    ("tcp_flags", "string|null", "Flags of the segment the reset answers (\"SYN\", \"ACK|PSH\", ...); null for resets the host started itself."),
    ("seq", "number|null", "Sequence number of that segment."),
    ("ack_seq", "number|null", "Acknowledgment number of that segment."),
    ("payload_len", "number|null", "Payload bytes in that segment."),
    ("conn_age_ms", "number|null", "Age of the connection (since connect(), or the handshake for accepted ones) when rsttrace saw it start; null otherwise."),
    ("bytes_sent", "number|null", "Data bytes this host sent on the connection, retransmissions included (tcp_sock.bytes_sent)."),
    ("bytes_acked", "number|null", "Bytes the peer acknowledged, as tcp_info counts them (the SYN and FIN count one each)."),
    ("bytes_received", "number|null", "Bytes received from the peer."),
    ("unread_bytes", "number|null", "Bytes received but not yet read by the application (the data an abort_unread_data throws away)."),
    ("unacked_bytes", "number|null", "Bytes sent but not yet acknowledged."),
    ("idle_ms", "number|null", "Time since the peer was last heard from (last ACK or data received): an idle timeout shows up here."),
    ("last_send_ms", "number|null", "Time since this host last sent data."),
    ("task_pid", "number", "The process the CPU happened to be running when the kernel emitted the event. In softirq and timers it is unrelated to the socket (on loopback and veth often the peer), so it is never used as the owner; shown to debug exactly that."),
    ("task_comm", "string", "Its name."),
    ("killer_pid", "number|null", "For socket_destroyed: the process that destroyed the socket (ss -K, ...)."),
    ("killer_comm", "string|null", "Its name."),
    ("delivered_errno", "string|null", "The errno the kernel reported on the local socket for this reset (sock:inet_sk_error_report), e.g. ETIMEDOUT for a keepalive timeout."),
    ("delivered_pid", "number|null", "The process that gets it (the socket's owner)."),
    ("delivered_comm", "string|null", "Its name."),
    ("cgroup", "string|null", "cgroup v2 path of the socket's owner."),
    ("container_runtime", "string|null", "docker, containerd, cri-o, podman or kubernetes, when the cgroup path names one."),
    ("container_id", "string|null", "Container id from the cgroup path."),
    ("pod_uid", "string|null", "Kubernetes pod UID from the cgroup path."),
    ("sock_cookie", "number|null", "The kernel's socket cookie (as in `ss -e` sk:<hex>)."),
    ("sock_inode", "number|null", "Inode of the socket's file (as in `ss -e` ino:), null when detached."),
    ("cpu", "number", "CPU the event was recorded on."),
];

pub fn write_reset(r: &Report<'_>, buf: &mut Vec<u8>, scratch: &mut String) {
    let ev = r.ev;
    let mut time = [0u8; 27];
    let local = r.local_addr();
    let remote = r.remote_addr();
    let mut o = Object::begin(buf);
    o.str("time", rfc3339(r.unix_ns, &mut time))
        .str("event", "reset")
        .str("direction", r.direction().as_str())
        .str("cause", r.class.cause.id())
        .str("explanation", r.class.cause.explanation())
        .opt_str("kernel_reason", r.kernel_reason)
        .opt_str("state", r.state)
        .str("family", family_name(&local))
        .display("local_addr", local)
        .u64("local_port", u64::from(ev.local_port))
        .display("remote_addr", remote)
        .u64("remote_port", u64::from(ev.remote_port))
        .opt_u64("pid", r.owner.map(|o| u64::from(o.pid)))
        .opt_str("comm", r.owner.map(|o| o.comm))
        .opt_str("owner_source", r.owner.map(|o| o.source.as_str()))
        .u64("netns", u64::from(ev.netns))
        .opt_str("app_errno", r.class.app_errno.map(|e| e.name()))
        .str(
            "app_errno_for",
            match r.class.cause.affected() {
                Affected::Peer => "peer",
                Affected::Local => "local",
            },
        )
        .opt_bool("listener", r.class.listener)
        .opt_bool("listener_now", r.listener.map(|l| l.listening_now))
        .opt_u64(
            "last_listener_pid",
            r.listener.and_then(|l| l.last).map(|t| u64::from(t.pid)),
        )
        .opt_str(
            "last_listener_comm",
            r.listener.and_then(|l| l.last).map(|t| t.comm),
        )
        .opt_u64("listener_stopped_ms", r.listener.and_then(|l| l.stopped_ms));
    if r.has_segment() {
        o.str("tcp_flags", tcp_flags_str(ev.tcp_flags, scratch))
            .u64("seq", u64::from(ev.seq))
            .u64("ack_seq", u64::from(ev.ack_seq))
            .u64("payload_len", u64::from(ev.payload_len));
    } else {
        o.null("tcp_flags")
            .null("seq")
            .null("ack_seq")
            .null("payload_len");
    }
    let c = &r.context;
    o.opt_u64("conn_age_ms", c.age_ms)
        .opt_u64("bytes_sent", c.bytes_sent)
        .opt_u64("bytes_acked", c.bytes_acked)
        .opt_u64("bytes_received", c.bytes_received)
        .opt_u64("unread_bytes", c.unread_bytes.map(u64::from))
        .opt_u64("unacked_bytes", c.unacked_bytes.map(u64::from))
        .opt_u64("idle_ms", c.idle_ms)
        .opt_u64("last_send_ms", c.last_send_ms)
        .u64("task_pid", u64::from(ev.task_tgid))
        .str("task_comm", crate::decode::comm_str(&ev.task_comm))
        .opt_u64("killer_pid", r.killer.map(|k| u64::from(k.pid)))
        .opt_str("killer_comm", r.killer.map(|k| k.comm))
        .opt_str("delivered_errno", r.delivered.map(|d| d.errno.name()))
        .opt_u64(
            "delivered_pid",
            r.delivered.and_then(|d| d.to).map(|t| u64::from(t.pid)),
        )
        .opt_str(
            "delivered_comm",
            r.delivered.and_then(|d| d.to).map(|t| t.comm),
        )
        .opt_str("cgroup", r.container.map(|c| c.cgroup.as_str()))
        .opt_str("container_runtime", r.container.and_then(|c| c.runtime))
        .opt_str("container_id", r.container.and_then(|c| c.id.as_deref()))
        .opt_str("pod_uid", r.container.and_then(|c| c.pod_uid.as_deref()))
        .opt_u64(
            "sock_cookie",
            (ev.sock_cookie != 0).then_some(ev.sock_cookie),
        )
        .opt_u64("sock_inode", (ev.sock_ino != 0).then_some(ev.sock_ino))
        .u64("cpu", u64::from(ev.header.cpu))
        .end();
}

/// Renders the key table as Markdown (docs/json.md, `rsttrace schema`).
pub fn markdown(keys: &[(&str, &str, &str)]) -> String {
    let mut out = String::from("| key | type | meaning |\n|---|---|---|\n");
    for (k, t, m) in keys {
        out.push_str(&format!("| `{k}` | {t} | {m} |\n"));
    }
    out
}
