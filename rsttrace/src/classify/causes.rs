//! The cause catalogue: every story rsttrace can tell about a reset, with a
//! stable id (used in JSON and in filters), a one-sentence explanation, the
//! error the affected application gets, and the kernels that report it.

use crate::model::errno::Errno;

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

macro_rules! causes {
    ($($variant:ident => $id:literal, $dir:ident, $errno:expr, $kernels:literal, $text:literal;)+) => {
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

            /// Which kernel versions report this cause.
            pub fn kernels(self) -> &'static str {
                match self { $(Cause::$variant => $kernels,)+ }
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

use Errno::*;

causes! {
    // ---- sent: no socket or the connection is unknown ----
    NoListener => "no_listener", Sent, Some(ECONNREFUSED), "6.10+ (older kernels do not trace resets sent with no socket)",
        "A SYN arrived for a port nobody listens on, so the connection was refused.";
    StaleConnection => "stale_connection", Sent, Some(ECONNRESET), "6.10+; on older kernels only when a listener exists (inferred)",
        "A segment arrived for a connection this host does not know (server restarted, socket lost, NAT or conntrack entry expired); the peer's next read gets ECONNRESET and its next write EPIPE.";
    TimeWaitData => "time_wait_data", Sent, Some(EPIPE), "6.10+",
        "Data arrived for a connection this host already closed and holds in TIME_WAIT (late data after close).";
    DataAfterClose => "data_after_close", Sent, Some(EPIPE), "6.10+; inferred on older kernels",
        "Data arrived after the local application closed the socket or shut down reading, so the kernel aborted the connection.";
    SynSentInvalidAck => "syn_sent_invalid_ack", Sent, Some(ECONNRESET), "6.10+; inferred on older kernels",
        "Our connecting socket got an ACK for data it never sent: typically the peer still holds an old connection on the same address and port pair (a stale peer reusing a port).";
    SynSentPaws => "syn_sent_paws", Sent, None, "6.10+",
        "Our connecting socket got a SYN-ACK echoing a timestamp it never sent (RFC 7323 PAWS check).";
    SynRecvTooOldAck => "syn_recv_too_old_ack", Sent, Some(ECONNRESET), "6.10+",
        "A half-open connection (SYN_RECV) got an ACK older than anything it sent.";
    SynRecvAckUnsentData => "syn_recv_ack_unsent_data", Sent, Some(ECONNRESET), "6.10+",
        "A half-open connection (SYN_RECV) got an ACK for data it never sent.";
    SynRecvOldAck => "syn_recv_old_ack", Sent, Some(ECONNRESET), "6.10+ (no longer reachable from SYN_RECV on 6.18: tcp_ack() makes every old ACK there too old)",
        "A half-open connection (SYN_RECV) got an ACK for already acknowledged data.";
    SynInWindow => "syn_in_window", Sent, Some(ECONNREFUSED), "6.10+",
        "A SYN arrived inside the window of a half-open connection, so the kernel reset it.";
    AcceptQueueOverflow => "accept_queue_overflow", Sent, Some(ECONNRESET), "6.10+",
        "The listener's accept queue was full and net.ipv4.tcp_abort_on_overflow=1, so the completed handshake was reset (the application accepts too slowly).";
    // ---- sent: the local application or kernel aborted ----
    AbortLinger => "abort_linger", Sent, Some(ECONNRESET), "6.12+ (kernel reason TCP_STATE); inferred on older kernels",
        "The application closed the socket with SO_LINGER {on, 0 s}: an abortive close that discards unsent data and resets the peer.";
    AbortUnreadData => "abort_unread_data", Sent, Some(ECONNRESET), "6.12+; inferred on older kernels",
        "The application closed the socket while received data was still unread, so the kernel reset the connection (RFC 2525).";
    Linger2Abort => "linger2_abort", Sent, Some(EPIPE), "6.10+ (kernel reason TCP_ABORT_ON_DATA with no payload, or TCP_ABORT_ON_LINGER from 6.12)",
        "The closed socket reached FIN_WAIT2 with TCP_LINGER2 < 0, so the kernel reset instead of waiting for the peer's FIN.";
    MemoryPressureAbort => "memory_pressure_abort", Sent, Some(EPIPE), "6.12+",
        "The kernel aborted an orphaned connection: too many orphans (net.ipv4.tcp_max_orphans) or TCP memory pressure.";
    SocketDestroyed => "socket_destroyed", Sent, Some(ECONNRESET), "6.12+ (kernel reason TCP_STATE); inferred on older kernels",
        "Another process destroyed the socket (ss -K, SOCK_DESTROY or bpf_sock_destroy); its owner gets ECONNABORTED.";
    AppDisconnect => "app_disconnect", Sent, Some(ECONNRESET), "6.12+ (kernel reason TCP_STATE)",
        "The application disconnected the socket without closing it (connect() with AF_UNSPEC).";
    ListenerClosedUnaccepted => "listener_closed_unaccepted", Sent, Some(ECONNRESET), "6.12+ (kernel reason TCP_STATE)",
        "A listening socket was closed while this connection waited in its accept queue, never accepted.";
    FinWait2Timeout => "fin_wait2_timeout", Sent, Some(EPIPE), "6.12+ (kernel reason TCP_STATE)",
        "A closed connection waited too long in FIN_WAIT2 for the peer's FIN, and the timer reset it.";
    KeepaliveTimeout => "keepalive_timeout", Sent, Some(ECONNRESET), "6.12+",
        "Keepalive probes (or TCP_USER_TIMEOUT) went unanswered; the local application gets ETIMEDOUT and the peer, if alive, a reset.";
    DisconnectUnsentData => "disconnect_unsent_data", Sent, Some(ECONNRESET), "6.12+",
        "The application aborted a closing connection (CLOSING/LAST_ACK) that still had data or a FIN unsent.";
    MptcpUnspecified => "mptcp_unspecified", Sent, Some(ECONNRESET), "6.10+",
        "MPTCP reset a subflow (MP_TCPRST code 0: unspecified).";
    MptcpError => "mptcp_error", Sent, Some(ECONNRESET), "6.10+",
        "MPTCP reset a subflow because of an MPTCP-specific error.";
    MptcpResource => "mptcp_resource", Sent, Some(ECONNRESET), "6.10+",
        "MPTCP reset a subflow for lack of resources.";
    MptcpProhibited => "mptcp_prohibited", Sent, Some(ECONNRESET), "6.10+",
        "MPTCP reset a subflow for administrative reasons.";
    MptcpTooMuchQueue => "mptcp_too_much_queue", Sent, Some(ECONNRESET), "6.10+",
        "MPTCP reset a subflow because too much data was queued.";
    MptcpBadPerformance => "mptcp_bad_performance", Sent, Some(ECONNRESET), "6.10+",
        "MPTCP reset a subflow for unacceptable performance.";
    MptcpMiddlebox => "mptcp_middlebox", Sent, Some(ECONNRESET), "6.10+",
        "MPTCP reset a subflow because a middlebox interfered.";
    FirewallReject => "firewall_reject", Sent, Some(ECONNREFUSED), "5.17+ (netfilter drops traced with a reason)",
        "This host's firewall rejected the segment with a TCP reset (iptables REJECT --reject-with tcp-reset, nft `reject with tcp reset`); the peer gets ECONNREFUSED, or ECONNRESET mid-connection.";
    KernelError => "kernel_error", Sent, Some(ECONNRESET), "6.10+",
        "The kernel reset the connection after an internal error.";
    Unspecified => "unspecified", Sent, Some(ECONNRESET), "all",
        "The kernel sent a reset without a reason rsttrace can tell apart (older kernels give none for some resets).";
    UnknownReason => "unknown_reason", Sent, Some(ECONNRESET), "future kernels",
        "The kernel gave a reset reason this version of rsttrace does not know; see kernel_reason.";
    // ---- received ----
    ConnectionRefused => "connection_refused", Received, Some(ECONNREFUSED), "all",
        "Our connection attempt was answered with a reset: nothing listens on that port, or a firewall rejects it.";
    PeerReset => "peer_reset", Received, Some(ECONNRESET), "all",
        "The peer reset an established connection; reads get ECONNRESET (EPIPE if we had already received its FIN).";
    LocalAbortOnData => "local_abort_on_data", Received, Some(ECONNRESET), "all",
        "Not a reset from the peer: data arrived after this socket was shut down for reading, so the kernel reset it itself (and sent a reset, see data_after_close).";
}

/// How a cause was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CauseSource {
    /// The kernel named the reason (possibly refined by socket state).
    KernelReason,
    /// The kernel gives no reason here: inferred from the segment, the
    /// socket state, timers and the call path.
    Inferred,
}

impl CauseSource {
    pub fn as_str(self) -> &'static str {
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
