//! Raw records from the eBPF programs to typed events.  This is the only
//! place that knows the wire layout (`rsttrace_common::event`); everything
//! after it sees enums and options.
//!
//! This file has the typed events and the dispatch on the record kind;
//! `reset` decodes resets (the largest record), `other` the rest.

use crate::vocab::errno::Errno;
use rsttrace_common::event::{
    Endpoints, EventHeader, FLAG_OWNER_CLOSED, FLAG_OWNER_FROM_LISTENER, FLAG_OWNER_KNOWN,
    KIND_ERROR_REPORT, KIND_FIREWALL, KIND_ICMP, KIND_LISTEN, KIND_RESET_RECEIVED, KIND_RESET_SENT,
    KIND_STRAY,
};
use thiserror::Error;

use crate::{
    classify::Facts,
    kernel::names::KernelNames,
    model::{
        conn::{Comm, Conn, Segment, Task},
        reset::Context,
    },
};

mod other;
mod reset;
#[cfg(test)]
mod tests;

#[cfg(test)]
use self::reset::context;
use self::{
    other::{error_report, firewall, icmp, listen, stray},
    reset::reset,
};

#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum DecodeError {
    #[error("record of {len} bytes is shorter than its header")]
    NoHeader { len: usize },
    #[error("record kind {kind} of {len} bytes, expected at least {need}")]
    Short { kind: u8, len: usize, need: usize },
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
}

/// The process a socket belongs to, as the programs recorded it in
/// process context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KernelOwner {
    pub pid: u32,
    pub comm: Comm,
    pub cgroup_id: u64,
    /// The process's start (boot-time ns; 0 when unknown).
    pub start_ns: u64,
    /// Inherited from the listener (a connection not accepted yet).
    pub from_listener: bool,
    /// From the table of closed connections (the socket is gone).
    pub closed: bool,
}

/// A reset as captured.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CapturedReset {
    pub ts_ns: u64,
    pub cpu: u32,
    pub facts: Facts,
    /// Kernel address of the socket (0 = none): correlates events.
    pub sk: u64,
    pub sock_cookie: Option<u64>,
    pub sock_ino: u64,
    pub conn: Conn,
    pub netns: u32,
    pub owner: Option<KernelOwner>,
    /// When the owner closed the connection (records' clock, ns).
    pub closed_ns: Option<u64>,
    pub context: Context,
    pub task: Option<Task>,
    /// The IP TTL / hop limit of the segment answered.
    pub seg_ttl: Option<u8>,
    /// A received reset's TTL, and the peer's handshake TTL.
    pub rst_ttl: Option<u8>,
    pub peer_ttl: Option<u8>,
}

impl CapturedReset {
    /// A reset known only from its segment: no socket, owner or task
    /// (a firewall's reset; callers fill in what else they know).
    pub(crate) fn socketless(ts_ns: u64, cpu: u32, facts: Facts, conn: Conn, netns: u32) -> Self {
        CapturedReset {
            ts_ns,
            cpu,
            facts,
            sk: 0,
            sock_cookie: None,
            sock_ino: 0,
            conn,
            netns,
            owner: None,
            closed_ns: None,
            context: Context::default(),
            task: None,
            seg_ttl: None,
            rst_ttl: None,
            peer_ttl: None,
        }
    }
}

/// An ICMP error about one of our TCP segments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct IcmpSeen {
    pub conn: Conn,
    pub netns: u32,
    pub icmp: crate::model::failure::Icmp,
}

/// A reset for no socket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct StrayReset {
    pub ts_ns: u64,
    pub conn: Conn,
    pub netns: u32,
    pub ttl: u8,
    pub seq: u32,
}

/// `sock:inet_sk_error_report`: the errno a local socket reports next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ErrorReport {
    pub ts_ns: u64,
    pub sk: u64,
    pub sock_ino: u64,
    pub errno: Option<Errno>,
    pub conn: Conn,
    pub netns: u32,
    /// The connection got as far as the peer's SYN.
    pub synced: bool,
    pub owner: Option<KernelOwner>,
}

/// A socket started or stopped listening.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListenChange {
    pub ts_ns: u64,
    pub netns: u32,
    pub port: u16,
    pub listening: bool,
    pub owner: Option<Task>,
}

/// What netfilter did with a TCP segment it dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Answered with a TCP reset.
    Reset,
    /// Answered with an ICMP error (type, code).
    Icmp { icmp_type: u8, code: u8 },
    /// Dropped silently.
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct FirewallVerdict {
    pub ts_ns: u64,
    pub cpu: u32,
    pub verdict: Verdict,
    pub conn: Conn,
    pub segment: Segment,
    pub netns: u32,
    /// Seen in netfilter's own reset function (exact), not matched from
    /// tracepoints.
    pub exact: bool,
    /// The segment was this host's own, dropped on its way out.
    pub outgoing: bool,
}

// Built and consumed once per record on the stack: boxing the large
// variant would allocate per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Captured {
    Reset(CapturedReset),
    ErrorReport(ErrorReport),
    Listen(ListenChange),
    Firewall(FirewallVerdict),
    Icmp(IcmpSeen),
    Stray(StrayReset),
}

/// Reads a `T` from the front of `bytes`.
fn read<T: Copy>(bytes: &[u8], kind: u8) -> Result<T, DecodeError> {
    let need = std::mem::size_of::<T>();
    if bytes.len() < need {
        return Err(DecodeError::Short {
            kind,
            len: bytes.len(),
            need,
        });
    }
    // SAFETY: length checked; every T here is #[repr(C)] plain integers,
    // valid for any bit pattern; read_unaligned copes with alignment.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Decodes one record.  Trailing bytes (perf buffer padding) are ignored.
pub(crate) fn decode(bytes: &[u8], names: &KernelNames) -> Result<Captured, DecodeError> {
    if bytes.len() < std::mem::size_of::<EventHeader>() {
        return Err(DecodeError::NoHeader { len: bytes.len() });
    }
    let kind = bytes[0];
    Ok(match kind {
        KIND_RESET_SENT | KIND_RESET_RECEIVED => Captured::Reset(reset(&read(bytes, kind)?, names)),
        KIND_ERROR_REPORT => Captured::ErrorReport(error_report(&read(bytes, kind)?)),
        KIND_LISTEN => Captured::Listen(listen(&read(bytes, kind)?)),
        KIND_FIREWALL => Captured::Firewall(firewall(&read(bytes, kind)?)),
        KIND_ICMP => Captured::Icmp(icmp(&read(bytes, kind)?)),
        KIND_STRAY => Captured::Stray(stray(&read(bytes, kind)?)),
        other => return Err(DecodeError::UnknownKind(other)),
    })
}

impl KernelOwner {
    pub(crate) fn source(&self) -> crate::model::owner::OwnerSource {
        use crate::model::owner::OwnerSource;
        if self.closed {
            OwnerSource::Closed
        } else if self.from_listener {
            OwnerSource::Listener
        } else {
            OwnerSource::Socket
        }
    }
}

fn owner(flags: u16, o: &rsttrace_common::event::Owner) -> Option<KernelOwner> {
    (flags & FLAG_OWNER_KNOWN != 0).then(|| KernelOwner {
        pid: o.tgid,
        comm: Comm::new(o.comm),
        cgroup_id: o.cgroup_id,
        start_ns: o.start_ns,
        from_listener: flags & FLAG_OWNER_FROM_LISTENER != 0,
        closed: flags & FLAG_OWNER_CLOSED != 0,
    })
}

fn conn(e: &Endpoints) -> Conn {
    Conn::from_raw(
        e.family,
        &e.local_addr,
        e.local_port,
        &e.remote_addr,
        e.remote_port,
    )
}

fn seg(s: &rsttrace_common::event::SegmentHdr) -> Segment {
    Segment {
        flags: s.tcp_flags,
        seq: s.seq,
        ack: s.ack_seq,
        payload: s.payload_len,
    }
}
