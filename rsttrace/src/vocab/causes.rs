//! The cause catalogue: every story rsttrace can tell about a reset, with a
//! stable id (used in JSON and in filters), a one-sentence explanation, the
//! error the affected application gets, and the kernels that report it.

use crate::vocab::errno::Errno;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Sent,
    Received,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Sent => "sent",
            Direction::Received => "received",
        }
    }
}

/// Whose application gets `app_errno`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Affected {
    /// The remote application (for resets this host sends).
    Peer,
    /// The local socket's owner (for resets this host receives).
    Local,
}

/// How a range of kernels tells a cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Avail {
    /// The kernel names the reason (possibly refined by socket state).
    Exact,
    /// Inferred from the segment, socket state, timers and call path.
    Inferred,
    /// This range cannot tell it apart (it is reported as another cause).
    Unavailable,
}

impl Avail {
    pub fn as_str(self) -> &'static str {
        match self {
            Avail::Exact => "exact",
            Avail::Inferred => "inferred",
            Avail::Unavailable => "unavailable",
        }
    }
}

/// The kernel ranges rsttrace tells apart, newest first, with how each
/// sees resets the host sends.
pub(crate) const KERNEL_RANGES: [(&str, &str); 3] = [
    ("6.12+", "tcp_send_reset carries a reason for every reset"),
    ("6.10-6.11", "reasons, but resets the kernel starts itself say NOT_SPECIFIED"),
    ("5.8-6.9", "no reasons, and tcp_send_reset misses resets without a full socket: rsttrace hooks the functions that build resets (fentry or kprobes) and infers causes"),
];

/// Which of [`KERNEL_RANGES`] a kernel with these reset reasons is in.
pub(crate) fn kernel_range(names: &crate::kernel::names::KernelNames) -> usize {
    use crate::kernel::names::Reason;
    if names.reason_value(Reason::TcpKeepaliveTimeout).is_some() {
        0
    } else if names.has_reasons() {
        1
    } else {
        2
    }
}

use Avail::{Exact as E, Inferred as I, Unavailable as U};

macro_rules! causes {
    ($($variant:ident => $id:literal, $dir:ident, $errno:expr, [$($k:ident),+], $text:literal;)+) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Cause {
            $($variant,)+
        }

        impl Cause {
            pub const ALL: &'static [Cause] = &[$(Cause::$variant,)+];

            /// Stable identifier (JSON `cause`).
            pub fn id(self) -> &'static str {
                match self { $(Cause::$variant => $id,)+ }
            }

            pub fn direction(self) -> Direction {
                match self { $(Cause::$variant => Direction::$dir,)+ }
            }

            /// What the affected application gets (see [`Cause::affected`]).
            pub fn app_errno(self) -> Option<Errno> {
                match self { $(Cause::$variant => $errno,)+ }
            }

            /// How each of [`KERNEL_RANGES`] tells this cause.
            pub fn availability(self) -> [Avail; 3] {
                match self { $(Cause::$variant => [$($k),+],)+ }
            }

            /// One sentence in plain words.
            pub fn explanation(self) -> &'static str {
                match self { $(Cause::$variant => $text,)+ }
            }

            pub fn from_id(id: &str) -> Option<Cause> {
                match id { $($id => Some(Cause::$variant),)+ _ => None }
            }
        }
    };
}

impl Cause {
    /// Whether the record says what listened on the port before (a
    /// reset for a port nobody, or somebody else, listens on).
    pub(crate) fn wants_listener_history(self) -> bool {
        matches!(self, Cause::NoListener | Cause::StaleConnection)
    }

    /// Whether the kernel reports the local socket's errno right after
    /// the reset (tcp_write_err() after a keepalive reset,
    /// tcp_done_with_error() after tcp_abort()'s; before it on kernels
    /// older than 6.12).
    pub(crate) fn errno_follows(self) -> bool {
        matches!(self, Cause::KeepaliveTimeout | Cause::SocketDestroyed)
    }

    /// Whether the task that ran the reset is the one that caused it
    /// (`ss -K` and other socket destroyers).
    pub(crate) fn names_its_task(self) -> bool {
        self == Cause::SocketDestroyed
    }

    /// Which kernels report this cause, in a few words.
    pub fn kernels(self) -> String {
        let a = self.availability();
        if a.iter().all(|&x| x == E) {
            return "all kernels".into();
        }
        let parts: Vec<String> = KERNEL_RANGES
            .iter()
            .zip(a)
            .map(|((range, _), x)| format!("{range} {}", x.as_str()))
            .collect();
        parts.join(", ")
    }
}

use Errno::*;

causes! {
    // ---- sent: no socket or the connection is unknown ----
    NoListener => "no_listener", Sent, Some(ECONNREFUSED), [E, E, I],
        "A SYN arrived for a port nobody listens on, so the connection was refused.";
    StaleConnection => "stale_connection", Sent, Some(ECONNRESET), [E, E, I],
        "A segment arrived for a connection this host does not know (server restarted, socket lost, NAT or conntrack entry expired); the peer's next read gets ECONNRESET and its next write EPIPE.";
    TimeWaitData => "time_wait_data", Sent, Some(EPIPE), [E, E, I],
        "A segment arrived for a connection both ends had closed, which this host still holds in TIME_WAIT (late data after close).";
    FinWait2Data => "fin_wait2_data", Sent, Some(EPIPE), [E, E, I],
        "This host closed the connection first (its FIN was acknowledged and its socket is gone) and the peer kept sending: typical when a server closed or exited while a client still used the connection; the peer's next write gets EPIPE.";
    DataAfterClose => "data_after_close", Sent, Some(EPIPE), [E, E, I],
        "Data arrived after the local application closed the socket or shut down reading, so the kernel aborted the connection.";
    SynSentInvalidAck => "syn_sent_invalid_ack", Sent, Some(ECONNRESET), [E, E, I],
        "Our connecting socket got an ACK for data it never sent: typically the peer still holds an old connection on the same address and port pair (a stale peer reusing a port).";
    SynSentPaws => "syn_sent_paws", Sent, None, [E, E, I],
        "Our connecting socket got a SYN-ACK echoing a timestamp it never sent (RFC 7323 PAWS check).";
    SynRecvTooOldAck => "syn_recv_too_old_ack", Sent, Some(ECONNRESET), [E, E, I],
        "A half-open connection (SYN_RECV) got an ACK older than anything it sent.";
    SynRecvAckUnsentData => "syn_recv_ack_unsent_data", Sent, Some(ECONNRESET), [E, E, I],
        "A half-open connection (SYN_RECV) got an ACK for data it never sent.";
    SynRecvOldAck => "syn_recv_old_ack", Sent, Some(ECONNRESET), [E, E, U],
        "A half-open connection (SYN_RECV) got an ACK for already acknowledged data.";
    SynInWindow => "syn_in_window", Sent, Some(ECONNREFUSED), [E, E, I],
        "A SYN arrived inside the window of a half-open connection, so the kernel reset it.";
    AcceptQueueOverflow => "accept_queue_overflow", Sent, Some(ECONNRESET), [E, E, I],
        "The listener's accept queue was full and net.ipv4.tcp_abort_on_overflow=1, so the completed handshake was reset (the application accepts too slowly).";
    // ---- sent: the local application or kernel aborted ----
    AbortLinger => "abort_linger", Sent, Some(ECONNRESET), [E, I, I],
        "The application closed the socket with SO_LINGER {on, 0 s}: an abortive close that discards unsent data and resets the peer.";
    AbortUnreadData => "abort_unread_data", Sent, Some(ECONNRESET), [E, I, I],
        "The application closed the socket while received data was still unread, so the kernel reset the connection (RFC 2525).";
    Linger2Abort => "linger2_abort", Sent, Some(EPIPE), [E, E, I],
        "The closed socket reached FIN_WAIT2 with TCP_LINGER2 < 0, so the kernel reset instead of waiting for the peer's FIN.";
    MemoryPressureAbort => "memory_pressure_abort", Sent, Some(EPIPE), [E, I, I],
        "The kernel aborted an orphaned connection: too many orphans (net.ipv4.tcp_max_orphans) or TCP memory pressure.";
    SocketDestroyed => "socket_destroyed", Sent, Some(ECONNRESET), [E, I, I],
        "Another process destroyed the socket (ss -K, SOCK_DESTROY or bpf_sock_destroy); its owner gets ECONNABORTED.";
    AppDisconnect => "app_disconnect", Sent, Some(ECONNRESET), [E, I, I],
        "The application disconnected the socket without closing it (connect() with AF_UNSPEC).";
    ListenerClosedUnaccepted => "listener_closed_unaccepted", Sent, Some(ECONNRESET), [E, I, I],
        "A listening socket was closed while this connection waited in its accept queue, never accepted.";
    FinWait2Timeout => "fin_wait2_timeout", Sent, Some(EPIPE), [E, I, I],
        "A closed connection waited too long in FIN_WAIT2 for the peer's FIN, and the timer reset it.";
    KeepaliveTimeout => "keepalive_timeout", Sent, Some(ECONNRESET), [E, I, I],
        "Keepalive probes (or TCP_USER_TIMEOUT) went unanswered; the local application gets ETIMEDOUT and the peer, if alive, a reset.";
    DisconnectUnsentData => "disconnect_unsent_data", Sent, Some(ECONNRESET), [E, U, U],
        "The application aborted a closing connection (CLOSING/LAST_ACK) that still had data or a FIN unsent.";
    MptcpUnspecified => "mptcp_unspecified", Sent, Some(ECONNRESET), [E, E, I],
        "MPTCP reset a subflow (MP_TCPRST code 0: unspecified).";
    MptcpError => "mptcp_error", Sent, Some(ECONNRESET), [E, E, U],
        "MPTCP reset a subflow because of an MPTCP-specific error.";
    MptcpResource => "mptcp_resource", Sent, Some(ECONNRESET), [E, E, U],
        "MPTCP reset a subflow for lack of resources.";
    MptcpProhibited => "mptcp_prohibited", Sent, Some(ECONNRESET), [E, E, U],
        "MPTCP reset a subflow for administrative reasons.";
    MptcpTooMuchQueue => "mptcp_too_much_queue", Sent, Some(ECONNRESET), [E, E, U],
        "MPTCP reset a subflow because too much data was queued.";
    MptcpBadPerformance => "mptcp_bad_performance", Sent, Some(ECONNRESET), [E, E, U],
        "MPTCP reset a subflow for unacceptable performance.";
    MptcpMiddlebox => "mptcp_middlebox", Sent, Some(ECONNRESET), [E, E, U],
        "MPTCP reset a subflow because a middlebox interfered.";
    FirewallReject => "firewall_reject", Sent, Some(ECONNREFUSED), [E, E, E],
        "This host's firewall rejected the segment with a TCP reset (iptables REJECT --reject-with tcp-reset, nft `reject with tcp reset`); the peer gets ECONNREFUSED, or ECONNRESET mid-connection.";
    KernelError => "kernel_error", Sent, Some(ECONNRESET), [E, E, U],
        "The kernel reset the connection after an internal error.";
    Unspecified => "unspecified", Sent, Some(ECONNRESET), [U, I, I],
        "The kernel sent a reset without a reason rsttrace can tell apart (older kernels give none for some resets).";
    UnknownReason => "unknown_reason", Sent, Some(ECONNRESET), [E, E, U],
        "The kernel gave a reset reason this version of rsttrace does not know; see kernel_reason.";
    // ---- received ----
    ConnectionRefused => "connection_refused", Received, Some(ECONNREFUSED), [E, E, E],
        "Our connection attempt was answered with a reset: nothing listens on that port, or a firewall rejects it.";
    PeerReset => "peer_reset", Received, Some(ECONNRESET), [E, E, E],
        "The peer reset an established connection; reads get ECONNRESET (EPIPE if we had already received its FIN).";
    LocalAbortOnData => "local_abort_on_data", Received, Some(ECONNRESET), [E, E, E],
        "Not a reset from the peer: data arrived after this socket was shut down for reading, so the kernel reset it itself (and sent a reset, see data_after_close).";
}

/// How a cause was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum CauseSource {
    /// The kernel named the reason (possibly refined by socket state).
    KernelReason,
    /// The kernel gives no reason here: inferred from the segment, the
    /// socket state, timers and the call path.
    Inferred,
}

impl CauseSource {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CauseSource::KernelReason => "kernel_reason",
            CauseSource::Inferred => "inferred",
        }
    }
}

impl Cause {
    pub fn affected(self) -> Affected {
        match self.direction() {
            Direction::Sent => Affected::Peer,
            Direction::Received => Affected::Local,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_snake_case_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for &c in Cause::ALL {
            assert!(seen.insert(c.id()), "duplicate id {}", c.id());
            assert!(
                c.id()
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_'),
                "{}",
                c.id()
            );
            assert_eq!(Cause::from_id(c.id()), Some(c));
            assert!(c.explanation().ends_with('.'), "{}", c.id());
        }
        assert_eq!(Cause::from_id("nope"), None);
    }
}
