//! Raw records from the eBPF programs to typed events.  This is the only
//! place that knows the wire layout (`rsttrace_common::event`); everything
//! after it sees enums and options.

use rsttrace_common::event::{
    Endpoints, ErrorReportEvent, EventHeader, FirewallEvent, IcmpEvent, ListenEvent, ResetEvent,
    StrayEvent, TcpInfo, FLAG_BACKLOG, FLAG_BORN_KNOWN, FLAG_CLOSED, FLAG_FULL_SOCK, FLAG_HAS_SK,
    FLAG_HAS_SKB, FLAG_OWNER_CLOSED, FLAG_OWNER_FROM_LISTENER, FLAG_OWNER_KNOWN, FLAG_STACK,
    FLAG_TCP_INFO, FLAG_TIMEWAIT, HOOK_KPROBE, KIND_ERROR_REPORT, KIND_FIREWALL, KIND_ICMP,
    KIND_LISTEN, KIND_RESET_RECEIVED, KIND_RESET_SENT, KIND_STRAY, REASON_ABSENT, VERDICT_ICMP,
    VERDICT_RESET,
};
use thiserror::Error;

use crate::{
    classify::{Direction, Facts, SockFacts},
    kernel::{
        kallsyms::PATH,
        names::{KernelNames, TcpState},
    },
    model::{
        conn::{Comm, Conn, Segment, Task},
        errno::Errno,
        reset::Context,
    },
};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
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
pub struct KernelOwner {
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
pub struct CapturedReset {
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
    pub task: Task,
    /// The IP TTL / hop limit of the segment answered.
    pub seg_ttl: Option<u8>,
    /// A received reset's TTL, and the peer's handshake TTL.
    pub rst_ttl: Option<u8>,
    pub peer_ttl: Option<u8>,
}

/// An ICMP error about one of our TCP segments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IcmpSeen {
    pub conn: Conn,
    pub netns: u32,
    pub icmp: crate::model::failure::Icmp,
}

/// A reset for no socket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StrayReset {
    pub ts_ns: u64,
    pub conn: Conn,
    pub netns: u32,
    pub ttl: u8,
    pub seq: u32,
}

/// `sock:inet_sk_error_report`: the errno a local socket reports next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorReport {
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
pub struct ListenChange {
    pub ts_ns: u64,
    pub netns: u32,
    pub port: u16,
    pub listening: bool,
    pub owner: Option<Task>,
}

/// What netfilter did with a TCP segment it dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Answered with a TCP reset.
    Reset,
    /// Answered with an ICMP error (type, code).
    Icmp { icmp_type: u8, code: u8 },
    /// Dropped silently.
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FirewallVerdict {
    pub ts_ns: u64,
    pub cpu: u32,
    pub verdict: Verdict,
    pub conn: Conn,
    pub segment: Segment,
    pub netns: u32,
    /// Seen in netfilter's own reset function (exact), not matched from
    /// tracepoints.
    pub exact: bool,
}

// Built and consumed once per record on the stack: boxing the large
// variant would allocate per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Captured {
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
pub fn decode(bytes: &[u8], names: &KernelNames) -> Result<Captured, DecodeError> {
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
    pub fn source(&self) -> crate::model::owner::OwnerSource {
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

fn segment(ev: &ResetEvent) -> Option<Segment> {
    (ev.flags & FLAG_HAS_SKB != 0).then(|| seg(&ev.seg))
}

/// RCV_SHUTDOWN and SHUTDOWN_MASK bits of sk_shutdown.
const RCV_SHUTDOWN: u8 = 1;
const SHUTDOWN_MASK: u8 = 3;

fn sock_facts(ev: &ResetEvent, names: &KernelNames) -> Option<SockFacts> {
    if ev.flags & FLAG_FULL_SOCK == 0 {
        return None;
    }
    let shutdown = names.shutdown(ev.sk_shutdown_byte);
    let tcp = (ev.flags & FLAG_TCP_INFO != 0).then_some(&ev.tcp);
    Some(SockFacts {
        dead: names.is_dead(ev.sk_flags),
        linger_zero: names.lingers(ev.sk_flags) && ev.sk_lingertime == 0,
        closing: shutdown & SHUTDOWN_MASK == SHUTDOWN_MASK,
        rcv_shutdown: shutdown & RCV_SHUTDOWN != 0,
        attached: ev.sock_ino != 0,
        unread: tcp.map_or(0, |t| t.rcv_nxt.wrapping_sub(t.copied_seq)),
        snd_una: tcp.map(|t| t.snd_una),
        snd_nxt: tcp.map(|t| t.snd_nxt),
        linger2: tcp.map(|t| t.linger2),
        backlog: (ev.flags & FLAG_BACKLOG != 0).then_some((ev.ack_backlog, ev.max_ack_backlog)),
    })
}

fn reset(ev: &ResetEvent, names: &KernelNames) -> CapturedReset {
    let direction = if ev.header.kind == KIND_RESET_SENT {
        Direction::Sent
    } else {
        Direction::Received
    };
    let has_sk = ev.flags & FLAG_HAS_SK != 0;
    let reason = (direction == Direction::Sent && ev.reason != REASON_ABSENT)
        .then(|| names.reason(ev.reason));
    CapturedReset {
        ts_ns: ev.header.ts_ns,
        cpu: ev.header.cpu,
        facts: Facts {
            direction,
            reason,
            state: if has_sk { names.state(ev.state) } else { None },
            segment: segment(ev),
            sock: sock_facts(ev, names),
            firewall: false,
            tw_substate: (ev.flags & FLAG_TIMEWAIT != 0)
                .then(|| names.state(ev.tw_substate))
                .flatten(),
            path: path(ev, names),
        },
        sk: ev.sk,
        sock_cookie: (ev.sock_cookie != 0).then_some(ev.sock_cookie),
        sock_ino: ev.sock_ino,
        conn: conn(&ev.ends),
        netns: ev.netns,
        owner: owner(ev.flags, &ev.owner),
        closed_ns: (ev.flags & FLAG_CLOSED != 0).then_some(ev.closed_ns),
        context: context(ev, names.hz),
        task: Task {
            pid: ev.task_tgid,
            comm: Comm::new(ev.task_comm),
        },
        seg_ttl: (ev.flags & FLAG_HAS_SKB != 0).then_some(ev.seg.ttl),
        rst_ttl: (ev.rst_ttl != 0).then_some(ev.rst_ttl),
        peer_ttl: (ev.peer_ttl != 0).then_some(ev.peer_ttl),
    }
}

/// The call path from the kernel stack, where the programs read one.
fn path(ev: &ResetEvent, names: &KernelNames) -> [Option<crate::kernel::kallsyms::CallSite>; PATH] {
    match (&names.callsites, ev.flags & FLAG_STACK != 0) {
        (Some(sites), true) => sites.path(&ev.frames),
        _ => [None; PATH],
    }
}

/// Connection context from the socket's counters.
pub fn context(ev: &ResetEvent, hz: u32) -> Context {
    let mut c = Context::default();
    if ev.flags & FLAG_BORN_KNOWN != 0 && ev.header.ts_ns >= ev.born_ns {
        c.age_ms = Some((ev.header.ts_ns - ev.born_ns) / 1_000_000);
    }
    if ev.flags & FLAG_TCP_INFO == 0 {
        return c;
    }
    counters(&ev.tcp, hz, &mut c);
    c
}

fn counters(t: &TcpInfo, hz: u32, c: &mut Context) {
    c.bytes_sent = (t.bytes_sent != 0 || t.bytes_acked == 0).then_some(t.bytes_sent);
    c.bytes_acked = Some(t.bytes_acked);
    c.bytes_received = Some(t.bytes_received);
    c.unread_bytes = Some(t.rcv_nxt.wrapping_sub(t.copied_seq));
    c.unacked_bytes = Some(t.snd_nxt.wrapping_sub(t.snd_una));
    let now = t.now_jiffies as u32;
    let since = |stamp: u32| -> Option<u64> {
        (stamp != 0 && hz != 0).then(|| u64::from(now.wrapping_sub(stamp)) * 1000 / u64::from(hz))
    };
    c.idle_ms = match (since(t.rcv_tstamp), since(t.lrcvtime)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    c.last_send_ms = since(t.lsndtime);
}

fn error_report(er: &ErrorReportEvent) -> ErrorReport {
    ErrorReport {
        ts_ns: er.header.ts_ns,
        sk: er.sk,
        sock_ino: er.sock_ino,
        errno: Errno::from_raw(er.error),
        conn: conn(&er.ends),
        netns: er.netns,
        synced: er.synced != 0,
        owner: owner(er.flags, &er.owner),
    }
}

fn listen(le: &ListenEvent) -> ListenChange {
    ListenChange {
        ts_ns: le.header.ts_ns,
        netns: le.netns,
        port: le.port,
        listening: le.listening != 0,
        owner: (le.owner.tgid != 0).then(|| Task {
            pid: le.owner.tgid,
            comm: Comm::new(le.owner.comm),
        }),
    }
}

fn firewall(ev: &FirewallEvent) -> FirewallVerdict {
    let verdict = match ev.verdict {
        VERDICT_RESET => Verdict::Reset,
        VERDICT_ICMP => Verdict::Icmp {
            icmp_type: ev.icmp_type,
            code: ev.icmp_code,
        },
        _ => Verdict::Drop,
    };
    FirewallVerdict {
        ts_ns: ev.header.ts_ns,
        cpu: ev.header.cpu,
        verdict,
        conn: conn(&ev.ends),
        segment: seg(&ev.seg),
        netns: ev.netns,
        exact: ev.hook == HOOK_KPROBE,
    }
}

fn icmp(ev: &IcmpEvent) -> IcmpSeen {
    let v6 = ev.ends.family == crate::model::conn::AF_INET6;
    IcmpSeen {
        conn: conn(&ev.ends),
        netns: ev.netns,
        icmp: crate::model::failure::Icmp {
            v6,
            icmp_type: ev.icmp_type,
            code: ev.icmp_code,
            from: crate::model::conn::ip_addr(ev.ends.family, &ev.from),
        },
    }
}

fn stray(ev: &StrayEvent) -> StrayReset {
    StrayReset {
        ts_ns: ev.header.ts_ns,
        conn: conn(&ev.ends),
        netns: ev.netns,
        ttl: ev.seg.ttl,
        seq: ev.seg.seq,
    }
}

impl TcpState {
    /// Whether a socket in this state is a full `struct sock`.
    pub fn is_full(self) -> bool {
        !matches!(self, TcpState::TimeWait | TcpState::NewSynRecv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::names::{testing::names_618, KernelReason, Reason};

    fn bytes_of<T>(v: &T) -> Vec<u8> {
        // SAFETY: reading the bytes of a plain-data value.
        unsafe {
            std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>())
        }
        .to_vec()
    }

    #[test]
    fn decodes_a_reset_with_padding() {
        let n = names_618();
        let mut ev = ResetEvent::default();
        ev.header.kind = KIND_RESET_SENT;
        ev.ends.local_port = 8080;
        ev.ends.family = 2;
        ev.ends.remote_addr[..4].copy_from_slice(&[10, 0, 0, 2]);
        ev.reason = n.reason_value(Reason::NoSocket).unwrap();
        ev.flags = FLAG_HAS_SKB;
        ev.seg.tcp_flags = 0x02;
        let mut raw = bytes_of(&ev);
        raw.extend_from_slice(&[0; 4]);
        let Ok(Captured::Reset(r)) = decode(&raw, &n) else {
            panic!("not a reset");
        };
        assert_eq!(r.conn.local_port, 8080);
        assert_eq!(r.conn.remote.to_string(), "10.0.0.2");
        assert_eq!(r.facts.reason, Some(KernelReason::Known(Reason::NoSocket)));
        assert_eq!(r.facts.state, None);
        assert!(r.facts.bare_syn());
        assert_eq!(r.owner, None);
    }

    #[test]
    fn received_resets_carry_no_reason() {
        let n = names_618();
        let mut ev = ResetEvent::default();
        ev.header.kind = KIND_RESET_RECEIVED;
        ev.reason = REASON_ABSENT;
        ev.flags = FLAG_HAS_SK | FLAG_FULL_SOCK;
        ev.state = n.state_value(TcpState::Established).unwrap();
        let Ok(Captured::Reset(r)) = decode(&bytes_of(&ev), &n) else {
            panic!("not a reset");
        };
        assert_eq!(r.facts.direction, Direction::Received);
        assert_eq!(r.facts.reason, None);
        assert_eq!(r.facts.state, Some(TcpState::Established));
        assert!(r.facts.sock.is_some());
    }

    #[test]
    fn decodes_other_kinds() {
        let n = names_618();
        let mut er = ErrorReportEvent::default();
        er.header.kind = KIND_ERROR_REPORT;
        er.error = 104;
        let Ok(Captured::ErrorReport(e)) = decode(&bytes_of(&er), &n) else {
            panic!()
        };
        assert_eq!(e.errno, Some(Errno::ECONNRESET));
        let mut le = ListenEvent::default();
        le.header.kind = KIND_LISTEN;
        le.port = 80;
        le.listening = 1;
        let Ok(Captured::Listen(l)) = decode(&bytes_of(&le), &n) else {
            panic!()
        };
        assert_eq!((l.port, l.listening, l.owner), (80, true, None));
        let mut fw = FirewallEvent::default();
        fw.header.kind = KIND_FIREWALL;
        fw.verdict = VERDICT_ICMP;
        fw.icmp_type = 3;
        fw.icmp_code = 3;
        let Ok(Captured::Firewall(f)) = decode(&bytes_of(&fw), &n) else {
            panic!()
        };
        assert_eq!(
            f.verdict,
            Verdict::Icmp {
                icmp_type: 3,
                code: 3
            }
        );
    }

    #[test]
    fn rejects_bad_records() {
        let n = names_618();
        assert_eq!(
            decode(&[1, 2, 3], &n),
            Err(DecodeError::NoHeader { len: 3 })
        );
        let mut ev = ResetEvent::default();
        ev.header.kind = KIND_RESET_RECEIVED;
        let raw = bytes_of(&ev);
        assert!(matches!(
            decode(&raw[..100], &n),
            Err(DecodeError::Short {
                kind: 2,
                len: 100,
                ..
            })
        ));
        let mut raw = raw;
        raw[0] = 77;
        assert_eq!(decode(&raw, &n), Err(DecodeError::UnknownKind(77)));
    }

    #[test]
    fn context_from_counters() {
        let mut ev = ResetEvent::default();
        ev.header.ts_ns = 5_000_000_000;
        ev.born_ns = 2_000_000_000;
        ev.flags = FLAG_BORN_KNOWN | FLAG_TCP_INFO;
        ev.tcp.bytes_received = 10;
        ev.tcp.bytes_acked = 20;
        ev.tcp.bytes_sent = 25;
        ev.tcp.rcv_nxt = 5;
        ev.tcp.copied_seq = u32::MAX - 4; // wrapped: 10 unread
        ev.tcp.snd_nxt = 1025;
        ev.tcp.snd_una = 1000;
        // HZ 250: 87_500 jiffies = 350 s.
        ev.tcp.now_jiffies = (1u64 << 32) + 100;
        ev.tcp.rcv_tstamp = (100u32).wrapping_sub(87_500);
        ev.tcp.lrcvtime = (100u32).wrapping_sub(100_000);
        ev.tcp.lsndtime = 99;
        let c = context(&ev, 250);
        assert_eq!(c.age_ms, Some(3000));
        assert_eq!(c.unread_bytes, Some(10));
        assert_eq!(c.unacked_bytes, Some(25));
        assert_eq!(c.bytes_sent, Some(25));
        assert_eq!(c.idle_ms, Some(350_000));
        assert_eq!(c.last_send_ms, Some(4));
        assert_eq!(context(&ResetEvent::default(), 250), Context::default());
    }
}
