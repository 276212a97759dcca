//! One reset, decoded, enriched and classified: what the output formats
//! render.  Borrowed views only, so building one allocates nothing.

use std::net::IpAddr;

use rsttrace_common::event::{
    ResetEvent, FLAG_BORN_KNOWN, FLAG_HAS_SKB, FLAG_TCP_INFO, KIND_RESET_SENT,
};

use crate::{
    classify::{Classification, Direction, Errno},
    decode::ip_addr,
    enrich::container::Container,
};

/// Where the owner came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerSource {
    /// Registered in process context by the eBPF programs (connect, listen,
    /// accept).
    Kernel,
    /// A child not accepted yet: its listener's owner.
    Listener,
    /// Found in /proc/<pid>/fd by the socket's inode.
    Proc,
}

impl OwnerSource {
    pub fn as_str(self) -> &'static str {
        match self {
            OwnerSource::Kernel => "socket",
            OwnerSource::Listener => "listener",
            OwnerSource::Proc => "procfs",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerRef<'a> {
    pub pid: u32,
    pub comm: &'a str,
    pub source: OwnerSource,
}

/// A process named for another role than owner (the killer of a socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskRef<'a> {
    pub pid: u32,
    pub comm: &'a str,
}

/// The errno the kernel reported on the local socket (from
/// `sock:inet_sk_error_report`) and the process that gets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered<'a> {
    pub errno: Errno,
    pub to: Option<TaskRef<'a>>,
}

/// Restart diagnosis for `no_listener` and `stale_connection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerNote<'a> {
    /// Whether something listens on the port now.
    pub listening_now: bool,
    /// The process rsttrace last saw listening there.
    pub last: Option<TaskRef<'a>>,
    /// How long ago that listener stopped (None while it still listens or
    /// if rsttrace did not see it stop).
    pub stopped_ms: Option<u64>,
}

/// Connection context at the moment of the reset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Context {
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

impl Context {
    pub fn from_event(ev: &ResetEvent, hz: u32) -> Self {
        let mut c = Context::default();
        if ev.flags & FLAG_BORN_KNOWN != 0 && ev.header.ts_ns >= ev.born_ns {
            c.age_ms = Some((ev.header.ts_ns - ev.born_ns) / 1_000_000);
        }
        if ev.flags & FLAG_TCP_INFO == 0 {
            return c;
        }
        let t = &ev.tcp;
        c.bytes_sent = (t.bytes_sent != 0 || t.bytes_acked == 0).then_some(t.bytes_sent);
        c.bytes_acked = Some(t.bytes_acked);
        c.bytes_received = Some(t.bytes_received);
        c.unread_bytes = Some(t.rcv_nxt.wrapping_sub(t.copied_seq));
        c.unacked_bytes = Some(t.snd_nxt.wrapping_sub(t.snd_una));
        let now = t.now_jiffies as u32;
        let since = |stamp: u32| -> Option<u64> {
            (stamp != 0 && hz != 0)
                .then(|| u64::from(now.wrapping_sub(stamp)) * 1000 / u64::from(hz))
        };
        c.idle_ms = match (since(t.rcv_tstamp), since(t.lrcvtime)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        c.last_send_ms = since(t.lsndtime);
        c
    }
}

pub struct Report<'a> {
    pub ev: &'a ResetEvent,
    pub unix_ns: i128,
    pub class: Classification,
    pub kernel_reason: Option<&'a str>,
    pub state: Option<&'a str>,
    pub owner: Option<OwnerRef<'a>>,
    pub context: Context,
    pub killer: Option<TaskRef<'a>>,
    pub delivered: Option<Delivered<'a>>,
    pub listener: Option<ListenerNote<'a>>,
    pub container: Option<&'a Container>,
}

impl Report<'_> {
    pub fn direction(&self) -> Direction {
        if self.ev.header.kind == KIND_RESET_SENT {
            Direction::Sent
        } else {
            Direction::Received
        }
    }

    pub fn local_addr(&self) -> IpAddr {
        ip_addr(self.ev.family, &self.ev.local_addr)
    }

    pub fn remote_addr(&self) -> IpAddr {
        ip_addr(self.ev.family, &self.ev.remote_addr)
    }

    pub fn has_segment(&self) -> bool {
        self.ev.flags & FLAG_HAS_SKB != 0
    }
}

/// TCP flags as `SYN|ACK`, into a fixed buffer.
pub fn tcp_flags_str(flags: u8, buf: &mut String) -> &str {
    const NAMES: [(u8, &str); 6] = [
        (0x02, "SYN"),
        (0x10, "ACK"),
        (0x01, "FIN"),
        (0x04, "RST"),
        (0x08, "PSH"),
        (0x20, "URG"),
    ];
    buf.clear();
    for (bit, name) in NAMES {
        if flags & bit != 0 {
            if !buf.is_empty() {
                buf.push('|');
            }
            buf.push_str(name);
        }
    }
    buf.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let c = Context::from_event(&ev, 250);
        assert_eq!(c.age_ms, Some(3000));
        assert_eq!(c.unread_bytes, Some(10));
        assert_eq!(c.unacked_bytes, Some(25));
        assert_eq!(c.bytes_sent, Some(25));
        assert_eq!(c.idle_ms, Some(350_000));
        assert_eq!(c.last_send_ms, Some(4));
    }

    #[test]
    fn no_context_without_a_socket() {
        let ev = ResetEvent::default();
        assert_eq!(Context::from_event(&ev, 250), Context::default());
    }

    #[test]
    fn flags_text() {
        let mut s = String::new();
        assert_eq!(tcp_flags_str(0x12, &mut s), "SYN|ACK");
        assert_eq!(tcp_flags_str(0x18, &mut s), "ACK|PSH");
        assert_eq!(tcp_flags_str(0, &mut s), "");
    }
}
