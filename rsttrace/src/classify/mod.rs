//! From a captured reset to its cause: the kernel's reason where it gives
//! one, split further by socket state, flags and the triggering segment
//! where one reason hides several stories; inferred where it gives none.

pub mod causes;

use std::fmt;

pub use causes::{Affected, Cause, Direction};
use rsttrace_common::event::{
    ResetEvent, FLAG_FIREWALL, FLAG_HAS_SK, FLAG_HAS_SKB, FLAG_TCP_INFO, KIND_RESET_RECEIVED,
    REASON_ABSENT,
};

use crate::kernel::layout::KernelNames;

/// Errors applications see, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::upper_case_acronyms)]
pub enum Errno {
    ECONNREFUSED,
    ECONNRESET,
    EPIPE,
    ETIMEDOUT,
    ECONNABORTED,
    EHOSTUNREACH,
    ENETUNREACH,
    EPROTO,
    Other(i32),
}

impl Errno {
    /// From a kernel `sk_err` value (positive errno).
    pub fn from_raw(raw: i32) -> Option<Errno> {
        Some(match raw.abs() {
            0 => return None,
            libc::ECONNREFUSED => Errno::ECONNREFUSED,
            libc::ECONNRESET => Errno::ECONNRESET,
            libc::EPIPE => Errno::EPIPE,
            libc::ETIMEDOUT => Errno::ETIMEDOUT,
            libc::ECONNABORTED => Errno::ECONNABORTED,
            libc::EHOSTUNREACH => Errno::EHOSTUNREACH,
            libc::ENETUNREACH => Errno::ENETUNREACH,
            libc::EPROTO => Errno::EPROTO,
            other => Errno::Other(other),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Errno::ECONNREFUSED => "ECONNREFUSED",
            Errno::ECONNRESET => "ECONNRESET",
            Errno::EPIPE => "EPIPE",
            Errno::ETIMEDOUT => "ETIMEDOUT",
            Errno::ECONNABORTED => "ECONNABORTED",
            Errno::EHOSTUNREACH => "EHOSTUNREACH",
            Errno::ENETUNREACH => "ENETUNREACH",
            Errno::EPROTO => "EPROTO",
            Errno::Other(_) => "EOTHER",
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Errno::Other(n) => write!(f, "errno {n}"),
            e => f.write_str(e.name()),
        }
    }
}

/// TCP header flag bits.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
}

/// `sk_shutdown` with both directions shut: set first thing in close().
const SHUTDOWN_MASK: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classification {
    pub cause: Cause,
    pub app_errno: Option<Errno>,
    /// For stale connections: whether a listener owns the port.
    pub listener: Option<bool>,
}

/// Socket facts the rules look at, decoded once.
struct Facts<'a> {
    reason: Option<&'a str>,
    has_sk: bool,
    has_skb: bool,
    state: Option<&'a str>,
    flags: u8,
    dead: bool,
    linger_zero: bool,
    closing: bool,
    attached: bool,
    unread: u32,
    payload: u32,
}

impl<'a> Facts<'a> {
    fn new(ev: &ResetEvent, names: &'a KernelNames) -> Self {
        let has_sk = ev.flags & FLAG_HAS_SK != 0;
        let shutdown = names
            .sk_shutdown
            .map_or(0, |spec| spec.extract(ev.sk_shutdown_byte));
        Facts {
            reason: (ev.reason != REASON_ABSENT).then(|| names.reason(ev.reason).unwrap_or("?")),
            has_sk,
            has_skb: ev.flags & FLAG_HAS_SKB != 0,
            state: if has_sk { names.state(ev.state) } else { None },
            flags: ev.tcp_flags,
            dead: names.sock_flag(ev.sk_flags, "SOCK_DEAD"),
            linger_zero: names.sock_flag(ev.sk_flags, "SOCK_LINGER") && ev.sk_lingertime == 0,
            closing: shutdown == SHUTDOWN_MASK,
            attached: ev.sock_ino != 0,
            unread: if ev.flags & FLAG_TCP_INFO != 0 {
                ev.tcp.rcv_nxt.wrapping_sub(ev.tcp.copied_seq)
            } else {
                0
            },
            payload: ev.payload_len,
        }
    }

    fn bare_syn(&self) -> bool {
        self.flags & tcp_flags::SYN != 0 && self.flags & tcp_flags::ACK == 0
    }

    fn state_is(&self, name: &str) -> bool {
        self.state == Some(name)
    }
}

pub fn classify(ev: &ResetEvent, names: &KernelNames) -> Classification {
    let f = Facts::new(ev, names);
    if ev.header.kind == KIND_RESET_RECEIVED {
        return received(&f);
    }
    if ev.flags & FLAG_FIREWALL != 0 {
        // A connection attempt is refused; anything else resets it.
        let errno = if f.bare_syn() {
            Errno::ECONNREFUSED
        } else {
            Errno::ECONNRESET
        };
        return Classification {
            cause: Cause::FirewallReject,
            app_errno: Some(errno),
            listener: None,
        };
    }
    let cause = sent(&f);
    let listener = match cause {
        Cause::StaleConnection => Some(f.state_is("LISTEN")),
        Cause::NoListener => Some(false),
        _ => None,
    };
    Classification {
        cause,
        app_errno: cause.app_errno(),
        listener,
    }
}

fn received(f: &Facts) -> Classification {
    // tcp_reset(): the error depends on the state the reset finds.
    let (cause, errno) = match f.state {
        Some("SYN_SENT") => (Cause::ConnectionRefused, Some(Errno::ECONNREFUSED)),
        Some("CLOSE_WAIT") => (Cause::PeerReset, Some(Errno::EPIPE)),
        // A reset for a closed socket is ignored: nobody gets an error.
        Some("CLOSE") => (Cause::PeerReset, None),
        _ => (Cause::PeerReset, Some(Errno::ECONNRESET)),
    };
    Classification {
        cause,
        app_errno: errno,
        listener: None,
    }
}

fn sent(f: &Facts) -> Cause {
    match f.reason {
        Some("NO_SOCKET") => no_socket(f),
        Some("TCP_FLAGS") => Cause::StaleConnection,
        Some("TCP_INVALID_ACK_SEQUENCE") => Cause::SynSentInvalidAck,
        Some("TCP_RFC7323_PAWS") => Cause::SynSentPaws,
        Some("TCP_TOO_OLD_ACK") => Cause::SynRecvTooOldAck,
        Some("TCP_ACK_UNSENT_DATA") => Cause::SynRecvAckUnsentData,
        Some("TCP_OLD_ACK") => Cause::SynRecvOldAck,
        // tcp_rcv_state_process() says ABORT_ON_DATA both for data after
        // shutdown and for an orphan reaching FIN_WAIT2 with TCP_LINGER2 < 0
        // (the segment is then the bare ACK of our FIN).
        Some("TCP_ABORT_ON_DATA") if f.has_skb && f.payload == 0 => Cause::Linger2Abort,
        Some("TCP_ABORT_ON_DATA") => Cause::DataAfterClose,
        Some("TCP_TIMEWAIT_SOCKET") => Cause::TimeWaitData,
        // tcp_check_req(): a SYN in the window of a half-open connection,
        // or (for the final ACK) an accept queue full with
        // tcp_abort_on_overflow set.
        Some("INVALID_SYN") if f.flags & tcp_flags::SYN != 0 => Cause::SynInWindow,
        Some("INVALID_SYN") => Cause::AcceptQueueOverflow,
        Some("TCP_ABORT_ON_CLOSE") => Cause::AbortUnreadData,
        Some("TCP_ABORT_ON_LINGER") => Cause::Linger2Abort,
        Some("TCP_ABORT_ON_MEMORY") => Cause::MemoryPressureAbort,
        Some("TCP_STATE") => tcp_state(f),
        Some("TCP_KEEPALIVE_TIMEOUT") => Cause::KeepaliveTimeout,
        Some("TCP_DISCONNECT_WITH_DATA") => Cause::DisconnectUnsentData,
        Some("MPTCP_RST_EUNSPEC") => Cause::MptcpUnspecified,
        Some("MPTCP_RST_EMPTCP") => Cause::MptcpError,
        Some("MPTCP_RST_ERESOURCE") => Cause::MptcpResource,
        Some("MPTCP_RST_EPROHIBIT") => Cause::MptcpProhibited,
        Some("MPTCP_RST_EWQ2BIG") => Cause::MptcpTooMuchQueue,
        Some("MPTCP_RST_EBADPERF") => Cause::MptcpBadPerformance,
        Some("MPTCP_RST_EMIDDLEBOX") => Cause::MptcpMiddlebox,
        Some("ERROR") => Cause::KernelError,
        // Linux 6.10-6.11 record the resets the kernel starts itself as
        // NOT_SPECIFIED, and older kernels give no reason at all.
        Some("NOT_SPECIFIED") | None => infer(f),
        Some(_) => Cause::UnknownReason,
    }
}

fn no_socket(f: &Facts) -> Cause {
    if f.bare_syn() {
        Cause::NoListener
    } else {
        Cause::StaleConnection
    }
}

/// TCP_STATE covers every abort that goes through tcp_disconnect() or
/// tcp_abort(), and the FIN_WAIT2 timer.
fn tcp_state(f: &Facts) -> Cause {
    if f.state_is("FIN_WAIT2") && f.dead {
        // tcp_keepalive_timer() on an orphan in FIN_WAIT2.
        Cause::FinWait2Timeout
    } else if !f.state_is("CLOSE") {
        // tcp_disconnect() moves to CLOSE before resetting; tcp_abort()
        // (ss -K, SOCK_DESTROY) resets first.
        Cause::SocketDestroyed
    } else if !f.attached {
        // A child never accepted has no file: inet_csk_listen_stop().
        Cause::ListenerClosedUnaccepted
    } else if f.linger_zero && f.closing {
        // __tcp_close() with SO_LINGER {1, 0}; close() set SHUTDOWN_MASK.
        Cause::AbortLinger
    } else {
        Cause::AppDisconnect
    }
}

/// Best effort where the kernel gives no reason.
fn infer(f: &Facts) -> Cause {
    if !f.has_sk {
        return no_socket(f);
    }
    if f.state_is("TIME_WAIT") {
        return Cause::TimeWaitData;
    }
    if f.state_is("LISTEN") && f.flags & tcp_flags::ACK != 0 {
        return Cause::StaleConnection;
    }
    if f.state_is("SYN_SENT") {
        return Cause::SynSentInvalidAck;
    }
    if f.has_skb {
        return if f.state_is("CLOSE") {
            Cause::DataAfterClose
        } else {
            Cause::Unspecified
        };
    }
    // Resets the host starts itself (no segment to answer).
    if f.state_is("FIN_WAIT2") && f.dead {
        Cause::FinWait2Timeout
    } else if f.state_is("CLOSE") && f.unread > 0 {
        Cause::AbortUnreadData
    } else if f.state_is("CLOSE") && f.linger_zero {
        Cause::AbortLinger
    } else if f.state_is("CLOSE") && !f.attached {
        Cause::ListenerClosedUnaccepted
    } else {
        Cause::Unspecified
    }
}

#[cfg(test)]
pub mod testing {
    use std::collections::HashMap;

    use crate::kernel::layout::{BitSpec, KernelNames};

    /// Names as a 6.18 kernel reports them (values only matter in tests).
    pub fn names_618() -> KernelNames {
        let reasons = [
            "NOT_SPECIFIED",
            "NO_SOCKET",
            "TCP_INVALID_ACK_SEQUENCE",
            "TCP_RFC7323_PAWS",
            "TCP_TOO_OLD_ACK",
            "TCP_ACK_UNSENT_DATA",
            "TCP_FLAGS",
            "TCP_OLD_ACK",
            "TCP_ABORT_ON_DATA",
            "TCP_TIMEWAIT_SOCKET",
            "INVALID_SYN",
            "TCP_ABORT_ON_CLOSE",
            "TCP_ABORT_ON_LINGER",
            "TCP_ABORT_ON_MEMORY",
            "TCP_STATE",
            "TCP_KEEPALIVE_TIMEOUT",
            "TCP_DISCONNECT_WITH_DATA",
            "MPTCP_RST_EUNSPEC",
            "MPTCP_RST_EMPTCP",
            "MPTCP_RST_ERESOURCE",
            "MPTCP_RST_EPROHIBIT",
            "MPTCP_RST_EWQ2BIG",
            "MPTCP_RST_EBADPERF",
            "MPTCP_RST_EMIDDLEBOX",
            "ERROR",
            "MAX",
        ];
        let states = [
            "ESTABLISHED",
            "SYN_SENT",
            "SYN_RECV",
            "FIN_WAIT1",
            "FIN_WAIT2",
            "TIME_WAIT",
            "CLOSE",
            "CLOSE_WAIT",
            "LAST_ACK",
            "LISTEN",
            "CLOSING",
            "NEW_SYN_RECV",
            "BOUND_INACTIVE",
        ];
        KernelNames {
            reasons: reasons
                .iter()
                .enumerate()
                .map(|(i, n)| (i as u32, n.to_string()))
                .collect(),
            states: states
                .iter()
                .enumerate()
                .map(|(i, n)| (i as u8 + 1, n.to_string()))
                .collect(),
            sock_flags: HashMap::from([
                ("SOCK_DEAD".to_string(), 0),
                ("SOCK_LINGER".to_string(), 4),
            ]),
            sk_shutdown: Some(BitSpec {
                shift: 0,
                mask: 0xff,
            }),
            hz: 250,
        }
    }

    pub fn reason(names: &KernelNames, name: &str) -> u32 {
        *names.reasons.iter().find(|(_, n)| *n == name).unwrap().0
    }

    pub fn state(names: &KernelNames, name: &str) -> u8 {
        names.state_value(name).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use rsttrace_common::event::{FLAG_FULL_SOCK, KIND_RESET_SENT};

    use super::{
        tcp_flags::{ACK, PSH, SYN},
        testing::{names_618, reason, state},
        *,
    };

    fn sent_event(
        names: &KernelNames,
        reason_name: Option<&str>,
        state_name: Option<&str>,
    ) -> ResetEvent {
        let mut ev = ResetEvent::default();
        ev.header.kind = KIND_RESET_SENT;
        ev.reason = reason_name.map_or(REASON_ABSENT, |r| reason(names, r));
        if let Some(s) = state_name {
            ev.state = state(names, s);
            ev.flags |= FLAG_HAS_SK | FLAG_FULL_SOCK;
        }
        ev
    }

    fn cause(ev: &ResetEvent, names: &KernelNames) -> Cause {
        classify(ev, names).cause
    }

    #[test]
    fn no_socket_splits_on_the_segment() {
        let n = names_618();
        let mut ev = sent_event(&n, Some("NO_SOCKET"), None);
        ev.flags |= FLAG_HAS_SKB;
        ev.tcp_flags = SYN;
        let c = classify(&ev, &n);
        assert_eq!(c.cause, Cause::NoListener);
        assert_eq!(c.app_errno, Some(Errno::ECONNREFUSED));
        assert_eq!(c.listener, Some(false));
        ev.tcp_flags = ACK | PSH;
        let c = classify(&ev, &n);
        assert_eq!(c.cause, Cause::StaleConnection);
        assert_eq!(c.app_errno, Some(Errno::ECONNRESET));
        assert_eq!(c.listener, Some(false));
        // A SYN-ACK to nowhere is not a connection attempt.
        ev.tcp_flags = SYN | ACK;
        assert_eq!(cause(&ev, &n), Cause::StaleConnection);
    }

    #[test]
    fn listener_resets_are_stale_connections_with_a_listener() {
        let n = names_618();
        let mut ev = sent_event(&n, Some("TCP_FLAGS"), Some("LISTEN"));
        ev.tcp_flags = ACK;
        let c = classify(&ev, &n);
        assert_eq!(c.cause, Cause::StaleConnection);
        assert_eq!(c.listener, Some(true));
    }

    #[test]
    fn tcp_state_is_split() {
        let n = names_618();
        // SO_LINGER {1,0} close: CLOSE, attached, linger 0, shut down.
        let mut ev = sent_event(&n, Some("TCP_STATE"), Some("CLOSE"));
        ev.sock_ino = 1234;
        ev.sk_flags = 1 << 4;
        ev.sk_shutdown_byte = 3;
        assert_eq!(cause(&ev, &n), Cause::AbortLinger);
        // connect(AF_UNSPEC): same, but not closing.
        ev.sk_shutdown_byte = 0;
        assert_eq!(cause(&ev, &n), Cause::AppDisconnect);
        // A linger time other than 0 is not an abortive close.
        ev.sk_shutdown_byte = 3;
        ev.sk_lingertime = 500;
        assert_eq!(cause(&ev, &n), Cause::AppDisconnect);
        // Child never accepted, its listener closed.
        let mut ev = sent_event(&n, Some("TCP_STATE"), Some("CLOSE"));
        ev.sock_ino = 0;
        assert_eq!(cause(&ev, &n), Cause::ListenerClosedUnaccepted);
        // ss -K: state unchanged.
        let ev = sent_event(&n, Some("TCP_STATE"), Some("ESTABLISHED"));
        assert_eq!(cause(&ev, &n), Cause::SocketDestroyed);
        // FIN_WAIT2 timer on an orphan.
        let mut ev = sent_event(&n, Some("TCP_STATE"), Some("FIN_WAIT2"));
        ev.sk_flags = 1;
        assert_eq!(cause(&ev, &n), Cause::FinWait2Timeout);
    }

    #[test]
    fn invalid_syn_is_split() {
        let n = names_618();
        let mut ev = sent_event(&n, Some("INVALID_SYN"), Some("LISTEN"));
        ev.tcp_flags = ACK;
        assert_eq!(cause(&ev, &n), Cause::AcceptQueueOverflow);
        ev.tcp_flags = SYN;
        assert_eq!(cause(&ev, &n), Cause::SynInWindow);
    }

    #[test]
    fn every_kernel_reason_has_a_cause() {
        let n = names_618();
        for name in n.reasons.values() {
            let mut ev = sent_event(&n, Some(name), Some("ESTABLISHED"));
            ev.tcp_flags = ACK;
            let c = cause(&ev, &n);
            if name == "MAX" {
                assert_eq!(c, Cause::UnknownReason);
            } else {
                assert_ne!(c, Cause::UnknownReason, "{name}");
            }
        }
    }

    #[test]
    fn one_to_one_reasons() {
        let n = names_618();
        let mut ev = sent_event(&n, Some("TCP_ABORT_ON_DATA"), Some("CLOSE"));
        ev.flags |= FLAG_HAS_SKB;
        ev.payload_len = 100;
        assert_eq!(cause(&ev, &n), Cause::DataAfterClose);
        // The bare ACK of our FIN with TCP_LINGER2 < 0.
        ev.payload_len = 0;
        ev.tcp_flags = ACK;
        assert_eq!(cause(&ev, &n), Cause::Linger2Abort);
        for (r, want) in [
            ("TCP_ABORT_ON_CLOSE", Cause::AbortUnreadData),
            ("TCP_TIMEWAIT_SOCKET", Cause::TimeWaitData),
            ("TCP_KEEPALIVE_TIMEOUT", Cause::KeepaliveTimeout),
            ("TCP_INVALID_ACK_SEQUENCE", Cause::SynSentInvalidAck),
            ("TCP_DISCONNECT_WITH_DATA", Cause::DisconnectUnsentData),
            ("TCP_ABORT_ON_MEMORY", Cause::MemoryPressureAbort),
            ("TCP_ABORT_ON_LINGER", Cause::Linger2Abort),
            ("MPTCP_RST_EMIDDLEBOX", Cause::MptcpMiddlebox),
        ] {
            assert_eq!(
                cause(&sent_event(&n, Some(r), Some("CLOSE")), &n),
                want,
                "{r}"
            );
        }
    }

    #[test]
    fn unknown_future_reason() {
        let mut n = names_618();
        n.reasons.insert(99, "TCP_SOMETHING_NEW".into());
        let mut ev = sent_event(&n, None, Some("CLOSE"));
        ev.reason = 99;
        assert_eq!(cause(&ev, &n), Cause::UnknownReason);
        // A number with no name at all.
        ev.reason = 1000;
        assert_eq!(cause(&ev, &n), Cause::UnknownReason);
    }

    #[test]
    fn inference_without_a_reason() {
        let n = names_618();
        let mut ev = sent_event(&n, None, Some("LISTEN"));
        ev.flags |= FLAG_HAS_SKB;
        ev.tcp_flags = ACK;
        assert_eq!(cause(&ev, &n), Cause::StaleConnection);
        let ev = sent_event(&n, None, Some("TIME_WAIT"));
        assert_eq!(cause(&ev, &n), Cause::TimeWaitData);
        let mut ev = sent_event(&n, None, Some("CLOSE"));
        ev.flags |= FLAG_TCP_INFO;
        ev.sock_ino = 7;
        ev.tcp.rcv_nxt = 110;
        ev.tcp.copied_seq = 100;
        assert_eq!(cause(&ev, &n), Cause::AbortUnreadData);
        ev.tcp.copied_seq = 110;
        ev.sk_flags = 1 << 4;
        assert_eq!(cause(&ev, &n), Cause::AbortLinger);
        let mut ev = sent_event(&n, Some("NOT_SPECIFIED"), Some("CLOSE"));
        ev.flags |= FLAG_HAS_SKB;
        assert_eq!(cause(&ev, &n), Cause::DataAfterClose);
        let ev = sent_event(&n, None, Some("ESTABLISHED"));
        assert_eq!(cause(&ev, &n), Cause::Unspecified);
    }

    #[test]
    fn received_errno_follows_the_state() {
        let n = names_618();
        let mut ev = ResetEvent::default();
        ev.header.kind = KIND_RESET_RECEIVED;
        ev.flags = FLAG_HAS_SK | FLAG_FULL_SOCK;
        ev.reason = REASON_ABSENT;
        for (s, want_cause, want_errno) in [
            (
                "SYN_SENT",
                Cause::ConnectionRefused,
                Some(Errno::ECONNREFUSED),
            ),
            ("ESTABLISHED", Cause::PeerReset, Some(Errno::ECONNRESET)),
            ("FIN_WAIT1", Cause::PeerReset, Some(Errno::ECONNRESET)),
            ("CLOSE_WAIT", Cause::PeerReset, Some(Errno::EPIPE)),
            ("CLOSE", Cause::PeerReset, None),
        ] {
            ev.state = state(&n, s);
            let c = classify(&ev, &n);
            assert_eq!((c.cause, c.app_errno), (want_cause, want_errno), "{s}");
        }
    }

    #[test]
    fn firewall_resets() {
        let n = names_618();
        let mut ev = sent_event(&n, None, None);
        ev.flags |= FLAG_FIREWALL | FLAG_HAS_SKB;
        ev.tcp_flags = SYN;
        let c = classify(&ev, &n);
        assert_eq!(
            (c.cause, c.app_errno),
            (Cause::FirewallReject, Some(Errno::ECONNREFUSED))
        );
        ev.tcp_flags = ACK | PSH;
        assert_eq!(classify(&ev, &n).app_errno, Some(Errno::ECONNRESET));
    }

    #[test]
    fn errno_names() {
        assert_eq!(Errno::from_raw(libc::ECONNRESET), Some(Errno::ECONNRESET));
        assert_eq!(Errno::from_raw(-libc::EPIPE), Some(Errno::EPIPE));
        assert_eq!(Errno::from_raw(0), None);
        assert_eq!(
            Errno::from_raw(71).map(|e| e.to_string()),
            Some("EPROTO".into())
        );
        assert_eq!(Errno::Other(200).to_string(), "errno 200");
    }
}
