//! Records other than resets: connection failures with no reset
//! (`--failures`), storm summaries (`"suppressed"`), and lost-event notices.

use std::io::Write;

use rsttrace_common::event::{AggKey, AggValue};

use super::{json::Object, text::endpoint, Format};
use crate::{
    classify::{Classification, Errno},
    decode::{family_name, ip_addr},
    kernel::clock::rfc3339,
};

/// Connection failures that involve no TCP reset, which users mistake for
/// one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    SynTimeout,
    Timeout,
    IcmpPortUnreachable,
    HostUnreachable,
    NetUnreachable,
    /// This host's firewall answered a segment with an ICMP error.
    FirewallIcmp,
    /// This host's firewall dropped a segment silently.
    FirewallDrop,
}

impl Failure {
    pub const ALL: &'static [Failure] = &[
        Failure::SynTimeout,
        Failure::Timeout,
        Failure::IcmpPortUnreachable,
        Failure::HostUnreachable,
        Failure::NetUnreachable,
        Failure::FirewallIcmp,
        Failure::FirewallDrop,
    ];

    /// From the errno the socket reported, when no reset was seen on it.
    pub fn classify(errno: Errno, synced: bool) -> Option<Failure> {
        Some(match errno {
            Errno::ETIMEDOUT if !synced => Failure::SynTimeout,
            Errno::ETIMEDOUT => Failure::Timeout,
            Errno::ECONNREFUSED => Failure::IcmpPortUnreachable,
            Errno::EHOSTUNREACH => Failure::HostUnreachable,
            Errno::ENETUNREACH => Failure::NetUnreachable,
            _ => return None,
        })
    }

    pub fn id(self) -> &'static str {
        match self {
            Failure::SynTimeout => "syn_timeout",
            Failure::Timeout => "timeout",
            Failure::IcmpPortUnreachable => "icmp_port_unreachable",
            Failure::HostUnreachable => "host_unreachable",
            Failure::NetUnreachable => "net_unreachable",
            Failure::FirewallIcmp => "firewall_icmp_reject",
            Failure::FirewallDrop => "firewall_drop",
        }
    }

    pub fn explanation(self) -> &'static str {
        match self {
            Failure::SynTimeout => "connect() timed out: the SYN was never answered (dropped by a firewall, or the host is down); no reset was involved.",
            Failure::Timeout => "The peer stopped acknowledging (retransmission timeout or TCP_USER_TIMEOUT); no reset was involved.",
            Failure::IcmpPortUnreachable => "An ICMP port-unreachable refused the connection (for example a firewall's plain reject), not a TCP reset.",
            Failure::HostUnreachable => "An ICMP host-unreachable or admin-prohibited message ended the connection attempt; no reset was involved.",
            Failure::NetUnreachable => "An ICMP network-unreachable message ended the connection attempt; no reset was involved.",
            Failure::FirewallIcmp => "This host's firewall rejected a segment from the peer with an ICMP error (REJECT without tcp-reset): the peer gets app_errno, not a reset.",
            Failure::FirewallDrop => "This host's firewall silently dropped a segment from the peer: its connect() or send times out; no reset was involved.",
        }
    }
}

pub const FAILURE_KEYS: &[(&str, &str, &str)] = &[
    (
        "time",
        "string",
        "When the kernel reported the error, RFC 3339 UTC.",
    ),
    ("event", "string", "\"connection_failure\"."),
    (
        "failure",
        "string",
        "syn_timeout, timeout, icmp_port_unreachable, host_unreachable or net_unreachable.",
    ),
    ("explanation", "string", "The failure in one sentence."),
    (
        "app_errno",
        "string",
        "The errno the application gets (ETIMEDOUT, ECONNREFUSED, EHOSTUNREACH, ENETUNREACH).",
    ),
    ("family", "string", "\"inet\" or \"inet6\"."),
    ("local_addr", "string", "This host's address."),
    ("local_port", "number", "This host's port."),
    ("remote_addr", "string", "The peer's address."),
    ("remote_port", "number", "The peer's port."),
    ("pid", "number|null", "Owner of the socket."),
    ("comm", "string|null", "Its name."),
    ("netns", "number", "Network namespace inode."),
];

pub const SUPPRESSED_KEYS: &[(&str, &str, &str)] = &[
    ("time", "string", "Time of the last reset summarised."),
    ("event", "string", "\"suppressed\": resets counted in the kernel instead of reported one by one (--storm)."),
    ("count", "number", "How many resets this record stands for."),
    ("first_time", "string", "Time of the first of them (storm counting reads kernel jiffies, not the clock: accurate to about one tick, 1-10 ms)."),
    ("last_time", "string", "Time of the last of them (same accuracy)."),
    ("direction", "string", "\"sent\" or \"received\"."),
    ("cause", "string", "Cause id, from the kernel reason, socket state and segment flags (the finer splits of TCP_STATE need per-event data and are not made here)."),
    ("explanation", "string", "The cause in one sentence."),
    ("kernel_reason", "string|null", "The kernel's reason name."),
    ("state", "string|null", "TCP state of the local socket."),
    ("family", "string", "\"inet\" or \"inet6\"."),
    ("port", "number", "The service's port: this host's port for sent resets, the peer's for received ones (the other side's ports are ephemeral)."),
    ("netns", "number", "Network namespace inode."),
    ("pid", "number|null", "Owner of the local socket (null with no socket)."),
    ("comm", "string|null", "Its name."),
    ("example_addr", "string", "One of the other ends involved: a peer for sent resets, a local address for received ones."),
    ("example_port", "number", "Its port."),
];

pub const LOST_KEYS: &[(&str, &str, &str)] = &[
    ("time", "string", "When rsttrace noticed the loss."),
    ("event", "string", "\"lost\": resets the kernel could not hand over."),
    ("count", "number", "How many."),
    ("why", "string", "\"buffer_full\" (the reader fell behind; raise --buffer-size or use --storm auto) or \"nested\" (the kernel skipped a program that was already running on that CPU)."),
];

/// A connection failure without a reset, ready to print.
pub struct FailureRecord<'a> {
    pub unix_ns: i128,
    pub failure: Failure,
    pub errno: Option<Errno>,
    /// Whose application gets `errno`.
    pub errno_for_peer: bool,
    pub family: u16,
    pub local_addr: &'a [u8; 16],
    pub local_port: u16,
    pub remote_addr: &'a [u8; 16],
    pub remote_port: u16,
    pub netns: u32,
    pub owner: Option<(u32, &'a str)>,
}

pub fn write_failure(format: Format, buf: &mut Vec<u8>, f: &FailureRecord<'_>) {
    let mut time = [0u8; 27];
    let local = ip_addr(f.family, f.local_addr);
    let remote = ip_addr(f.family, f.remote_addr);
    let errno_for = if f.errno_for_peer { "peer" } else { "local" };
    match format {
        Format::Json => {
            Object::begin(buf)
                .str("time", rfc3339(f.unix_ns, &mut time))
                .str("event", "connection_failure")
                .str("failure", f.failure.id())
                .str("explanation", f.failure.explanation())
                .opt_str("app_errno", f.errno.map(|e| e.name()))
                .str("app_errno_for", errno_for)
                .str("family", family_name(&local))
                .display("local_addr", local)
                .u64("local_port", u64::from(f.local_port))
                .display("remote_addr", remote)
                .u64("remote_port", u64::from(f.remote_port))
                .opt_u64("pid", f.owner.map(|o| u64::from(o.0)))
                .opt_str("comm", f.owner.map(|o| o.1))
                .u64("netns", u64::from(f.netns))
                .end();
        }
        Format::Text => {
            let _ = write!(
                buf,
                "{} failure  {:<24} ",
                rfc3339(f.unix_ns, &mut time),
                f.failure.id()
            );
            endpoint(buf, local, f.local_port);
            buf.extend_from_slice(if f.errno_for_peer { b" <- " } else { b" -> " });
            endpoint(buf, remote, f.remote_port);
            let _ = match f.owner {
                Some((pid, comm)) => write!(buf, " owner={pid}/{comm}"),
                None => write!(buf, " owner=-"),
            };
            if let Some(e) = f.errno {
                let _ = write!(
                    buf,
                    " {}:{e}",
                    if f.errno_for_peer { "peer" } else { "app" }
                );
            }
            let _ = writeln!(buf, " netns={} | {}", f.netns, f.failure.explanation());
        }
    }
}

/// The errno an ICMP destination-unreachable (`type << 8 | code`) gives
/// the application that receives it (icmp_err_convert).
pub fn icmp_errno(type_code: i32) -> Option<Errno> {
    const DEST_UNREACH: i32 = 3;
    if type_code >> 8 != DEST_UNREACH {
        return None;
    }
    Some(match type_code & 0xff {
        0 | 6 | 11 => Errno::ENETUNREACH,
        2 | 3 => Errno::ECONNREFUSED,
        _ => Errno::EHOSTUNREACH,
    })
}

pub struct Suppressed<'a> {
    pub key: &'a AggKey,
    pub value: &'a AggValue,
    pub class: Classification,
    pub kernel_reason: Option<&'a str>,
    pub state: Option<&'a str>,
    pub first_unix_ns: i128,
    pub last_unix_ns: i128,
}

pub fn write_suppressed(format: Format, buf: &mut Vec<u8>, s: &Suppressed<'_>) {
    let (mut t0, mut t1) = ([0u8; 27], [0u8; 27]);
    let remote = ip_addr(s.key.family, &s.value.remote_addr);
    let comm = crate::decode::comm_str(&s.value.owner_comm);
    let owner = (s.key.owner_tgid != 0).then_some((s.key.owner_tgid, comm));
    let direction = s.class.cause.direction().as_str();
    match format {
        Format::Json => {
            let mut t2 = [0u8; 27];
            Object::begin(buf)
                .str("time", rfc3339(s.last_unix_ns, &mut t2))
                .str("event", "suppressed")
                .u64("count", s.value.count)
                .str("first_time", rfc3339(s.first_unix_ns, &mut t0))
                .str("last_time", rfc3339(s.last_unix_ns, &mut t1))
                .str("direction", direction)
                .str("cause", s.class.cause.id())
                .str("explanation", s.class.cause.explanation())
                .opt_str("kernel_reason", s.kernel_reason)
                .opt_str("state", s.state)
                .str("family", family_name(&remote))
                .u64("port", u64::from(s.key.port))
                .u64("netns", u64::from(s.key.netns))
                .opt_u64("pid", owner.map(|o| u64::from(o.0)))
                .opt_str("comm", owner.map(|o| o.1))
                .display("example_addr", remote)
                .u64("example_port", u64::from(s.value.remote_port))
                .end();
        }
        Format::Text => {
            let _ = write!(
                buf,
                "{} {:<8} {:<24} x{} port={} since={} e.g. ",
                rfc3339(s.last_unix_ns, &mut t1),
                direction,
                s.class.cause.id(),
                s.value.count,
                s.key.port,
                rfc3339(s.first_unix_ns, &mut t0),
            );
            endpoint(buf, remote, s.value.remote_port);
            let _ = match owner {
                Some((pid, comm)) => write!(buf, " owner={pid}/{comm}"),
                None => write!(buf, " owner=-"),
            };
            let _ = writeln!(
                buf,
                " reason={} netns={} | storm summary: {}",
                s.kernel_reason.unwrap_or("-"),
                s.key.netns,
                s.class.cause.explanation()
            );
        }
    }
}

pub fn write_lost(format: Format, buf: &mut Vec<u8>, unix_ns: i128, count: u64, why: &str) {
    let mut time = [0u8; 27];
    match format {
        Format::Json => {
            Object::begin(buf)
                .str("time", rfc3339(unix_ns, &mut time))
                .str("event", "lost")
                .u64("count", count)
                .str("why", why)
                .end();
        }
        Format::Text => {
            let _ = writeln!(
                buf,
                "{} LOST     {count} resets ({why})",
                rfc3339(unix_ns, &mut time)
            );
        }
    }
}
