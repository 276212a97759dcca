//! `"event": "connection_failure"` (with `--failures`): connection
//! failures that involve no TCP reset, which users mistake for one.

use super::{
    conn::{family_name, CommunityId, Conn, Task},
    field::{field, Field, Side, Text, Ty, Value},
};
use crate::vocab::errno::Errno;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum FailureKind {
    SynTimeout,
    Timeout,
    IcmpPortUnreachable,
    HostUnreachable,
    NetUnreachable,
    /// An ICMP "administratively prohibited": a firewall on the path (or
    /// on the destination) rejected the connection.
    AdminProhibited,
    /// This host's firewall answered a segment with an ICMP error.
    FirewallIcmp,
    /// This host's firewall dropped a segment silently.
    FirewallDrop,
    /// This host's firewall dropped a segment this host sent (an output
    /// rule).
    FirewallOutputDrop,
}

impl FailureKind {
    pub(crate) const ALL: &'static [FailureKind] = &[
        FailureKind::SynTimeout,
        FailureKind::Timeout,
        FailureKind::IcmpPortUnreachable,
        FailureKind::HostUnreachable,
        FailureKind::NetUnreachable,
        FailureKind::AdminProhibited,
        FailureKind::FirewallIcmp,
        FailureKind::FirewallDrop,
        FailureKind::FirewallOutputDrop,
    ];

    /// From the errno the socket reported, when no reset was seen on it.
    pub(crate) fn from_errno(errno: Errno, synced: bool) -> Option<FailureKind> {
        Some(match errno {
            Errno::ETIMEDOUT if !synced => FailureKind::SynTimeout,
            Errno::ETIMEDOUT => FailureKind::Timeout,
            Errno::ECONNREFUSED => FailureKind::IcmpPortUnreachable,
            Errno::EHOSTUNREACH => FailureKind::HostUnreachable,
            Errno::ENETUNREACH => FailureKind::NetUnreachable,
            _ => return None,
        })
    }

    pub(crate) fn id(self) -> &'static str {
        match self {
            FailureKind::SynTimeout => "syn_timeout",
            FailureKind::Timeout => "timeout",
            FailureKind::IcmpPortUnreachable => "icmp_port_unreachable",
            FailureKind::HostUnreachable => "host_unreachable",
            FailureKind::NetUnreachable => "net_unreachable",
            FailureKind::AdminProhibited => "admin_prohibited",
            FailureKind::FirewallIcmp => "firewall_icmp_reject",
            FailureKind::FirewallDrop => "firewall_drop",
            FailureKind::FirewallOutputDrop => "firewall_output_drop",
        }
    }

    pub(crate) fn explanation(self) -> &'static str {
        match self {
            FailureKind::SynTimeout => "connect() timed out: the SYN was never answered (dropped by a firewall, or the host is down); no reset was involved.",
            FailureKind::Timeout => "The peer stopped acknowledging (retransmission timeout or TCP_USER_TIMEOUT); no reset was involved.",
            FailureKind::IcmpPortUnreachable => "An ICMP port-unreachable refused the connection (for example a firewall's plain reject), not a TCP reset.",
            FailureKind::HostUnreachable => "An ICMP host-unreachable or admin-prohibited message ended the connection attempt; no reset was involved.",
            FailureKind::NetUnreachable => "An ICMP network-unreachable message ended the connection attempt (a router has no route to the destination); no reset was involved.",
            FailureKind::AdminProhibited => "An ICMP administratively-prohibited message ended the connection attempt: a firewall on the path or at the destination rejected it; no reset was involved.",
            FailureKind::FirewallIcmp => "This host's firewall rejected a segment from the peer with an ICMP error (REJECT without tcp-reset): the peer gets app_errno, not a reset.",
            FailureKind::FirewallDrop => "This host's firewall silently dropped a segment from the peer: its connect() or send times out; no reset was involved.",
            FailureKind::FirewallOutputDrop => "This host's firewall dropped a segment this host sent (an output rule): the local connection stalls until it times out; no reset was involved.",
        }
    }
}

/// What an ICMP error (type, code) about one of our segments says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Icmp {
    pub v6: bool,
    pub icmp_type: u8,
    pub code: u8,
    /// Who sent it: a router on the path, or the destination.
    pub from: std::net::IpAddr,
}

impl Icmp {
    /// The errno this ICMP error gives a connecting socket (the kernel's
    /// icmp_err_convert and icmpv6_err_convert), where it is one.
    pub(crate) fn errno(&self) -> Option<Errno> {
        if !self.v6 {
            return icmp_errno(self.icmp_type, self.code);
        }
        const DST_UNREACH: u8 = 1;
        match (self.icmp_type, self.code) {
            (DST_UNREACH, 0) => Some(Errno::ENETUNREACH),
            (DST_UNREACH, 3) => Some(Errno::EHOSTUNREACH),
            (DST_UNREACH, 4) => Some(Errno::ECONNREFUSED),
            _ => None,
        }
    }

    /// Refines a failure kind the errno gave.
    pub(crate) fn kind(&self, fallback: FailureKind) -> FailureKind {
        let admin = if self.v6 {
            self.icmp_type == 1 && matches!(self.code, 1 | 5 | 6)
        } else {
            self.icmp_type == 3 && matches!(self.code, 9 | 10 | 13)
        };
        if admin {
            FailureKind::AdminProhibited
        } else {
            fallback
        }
    }
}

/// The errno an ICMP destination-unreachable (type, code) gives the
/// application that receives it (the kernel's icmp_err_convert).
pub(crate) fn icmp_errno(icmp_type: u8, code: u8) -> Option<Errno> {
    const DEST_UNREACH: u8 = 3;
    if icmp_type != DEST_UNREACH {
        return None;
    }
    Some(match code {
        0 | 6 | 11 => Errno::ENETUNREACH,
        2 | 3 => Errno::ECONNREFUSED,
        _ => Errno::EHOSTUNREACH,
    })
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    pub unix_ns: i128,
    pub kind: FailureKind,
    pub errno: Option<Errno>,
    /// Whether `errno` is the peer's (a firewall verdict here) rather than
    /// the local application's.
    pub errno_for_peer: bool,
    pub conn: Conn,
    pub netns: u32,
    pub owner: Option<Task>,
    /// The ICMP error behind it, where the receive path saw one.
    pub icmp: Option<Icmp>,
    pub community_id: CommunityId,
}

impl Failure {
    pub(crate) fn arrow(&self) -> &'static str {
        if self.errno_for_peer {
            "<-"
        } else {
            "->"
        }
    }
}

pub(crate) const FIELDS: &[Field<Failure>] = &[
    field("time", Ty::Str, Text::Head(27), "When the kernel reported the error, RFC 3339 UTC.", |f| Value::Time(f.unix_ns)),
    field("event", Ty::Str, Text::Head(8), "\"connection_failure\".", |_| Value::Str("connection_failure")),
    field("failure", Ty::Str, Text::Head(24), "syn_timeout, timeout, icmp_port_unreachable, host_unreachable, net_unreachable, admin_prohibited, firewall_icmp_reject, firewall_drop (a segment from the peer) or firewall_output_drop (one this host sent).", |f| Value::Str(f.kind.id())),
    field("explanation", Ty::Str, Text::Tail, "The failure in one sentence.", |f| Value::Str(f.kind.explanation())),
    field("app_errno", Ty::OptStr, Text::Kv("errno"), "The errno the application gets (ETIMEDOUT, ECONNREFUSED, EHOSTUNREACH, ENETUNREACH); null when it only times out later.", |f| Value::str(f.errno.map(Errno::name))),
    field("app_errno_for", Ty::Str, Text::Join, "Whose application gets app_errno: \"local\" (this host's socket) or \"peer\" (the other end, for this host's firewall verdicts).", |f| Value::Str(if f.errno_for_peer { "peer" } else { "local" })),
    field("family", Ty::Str, Text::Omit, "\"inet\" or \"inet6\".", |f| Value::Str(family_name(&f.conn.local))),
    field("local_addr", Ty::Str, Text::Addr(Side::Local), "This host's address.", |f| Value::Ip(f.conn.local)),
    field("local_port", Ty::Num, Text::Port(Side::Local), "This host's port.", |f| Value::U64(u64::from(f.conn.local_port))),
    field("remote_addr", Ty::Str, Text::Addr(Side::Remote), "The peer's address.", |f| Value::Ip(f.conn.remote)),
    field("remote_port", Ty::Num, Text::Port(Side::Remote), "The peer's port.", |f| Value::U64(u64::from(f.conn.remote_port))),
    field("pid", Ty::OptNum, Text::Kv("owner"), "Owner of the local socket; null for firewall verdicts (no local socket).", |f| Value::num(f.owner.map(|o| u64::from(o.pid)))),
    field("comm", Ty::OptStr, Text::Join, "Its name.", |f| Value::str(f.owner.as_ref().map(|o| o.comm.as_str()))),
    field("netns", Ty::Num, Text::Kv("netns"), "Network namespace inode.", |f| Value::U64(u64::from(f.netns))),
    field("icmp_type", Ty::OptNum, Text::Omit, "The ICMP (ICMPv6) type of the error behind it, where seen.", |f| Value::num(f.icmp.map(|i| u64::from(i.icmp_type)))),
    field("icmp_code", Ty::OptNum, Text::Omit, "Its code.", |f| Value::num(f.icmp.map(|i| u64::from(i.code)))),
    field("icmp_from", Ty::OptStr, Text::Kv("icmp_from"), "Who sent it: a router on the path, or the destination itself.", |f| f.icmp.map_or(Value::Null, |i| Value::Ip(i.from))),
    field("community_id", Ty::Str, Text::Omit, "Community ID v1 of the connection.", |f| Value::Str(f.community_id.as_str())),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icmp_codes() {
        assert_eq!(icmp_errno(3, 0), Some(Errno::ENETUNREACH));
        assert_eq!(icmp_errno(3, 1), Some(Errno::EHOSTUNREACH));
        assert_eq!(icmp_errno(3, 3), Some(Errno::ECONNREFUSED));
        assert_eq!(icmp_errno(3, 13), Some(Errno::EHOSTUNREACH));
        assert_eq!(icmp_errno(11, 0), None);
    }
}
