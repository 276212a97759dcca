//! Who listens on which port, and who listened last: the restart diagnosis
//! for `no_listener` and `stale_connection` ("nginx (pid 812) listened on
//! :80 until 4.2 s ago").
//!
//! Seeded at start-up from `/proc/<pid>/net/tcp{,6}` of every network
//! namespace, then kept current by the eBPF LISTEN enter/leave events.

use std::{collections::HashSet, fs};

use super::bounded::Bounded;
use crate::hash::BuildWordHasher;

use crate::{
    decode::ListenChange,
    model::{conn::Task, reset::ListenerNote},
};

#[derive(Debug, Clone, Default)]
struct PortState {
    /// Listening sockets rsttrace knows of (SO_REUSEPORT allows several).
    listening: u32,
    last: Option<Task>,
    /// Boot-time ns when the last listener stopped.
    stopped_ns: Option<u64>,
}

/// Ports remembered; the oldest are forgotten first.
const PORTS: usize = 65536;

pub(crate) struct ListenerHistory {
    ports: Bounded<PortKey, PortState, BuildWordHasher>,
}

/// A port in a network namespace, as one word (hashed once per
/// `no_listener` reset, with `WordHasher`: at most 65536 keys per
/// namespace, whoever picks the ports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PortKey(u64);

impl PortKey {
    fn new(netns: u32, port: u16) -> Self {
        PortKey(u64::from(netns) << 16 | u64::from(port))
    }
}

impl Default for ListenerHistory {
    fn default() -> Self {
        ListenerHistory {
            ports: Bounded::with_hasher(PORTS),
        }
    }
}

/// A listening socket found in `/proc/<pid>/net/tcp{,6}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcListener {
    pub netns: u32,
    pub port: u16,
    pub inode: u64,
}

impl ListenerHistory {
    fn port(&mut self, key: PortKey) -> &mut PortState {
        if !self.ports.contains(&key) {
            self.ports.insert(key, PortState::default());
        }
        self.ports.get_mut(&key).expect("just inserted")
    }

    pub(crate) fn seed(&mut self, listener: &ProcListener, owner: Option<Task>) {
        let st = self.port(PortKey::new(listener.netns, listener.port));
        st.listening += 1;
        if owner.is_some() {
            st.last = owner;
        }
    }

    pub(crate) fn on_listen(&mut self, ev: &ListenChange) {
        let st = self.port(PortKey::new(ev.netns, ev.port));
        if ev.listening {
            st.listening += 1;
            st.stopped_ns = None;
        } else {
            st.listening = st.listening.saturating_sub(1);
            if st.listening == 0 {
                st.stopped_ns = Some(ev.ts_ns);
            }
        }
        if ev.owner.is_some() {
            st.last = ev.owner;
        }
    }

    /// The port's story as of boot-time `now_ns`.
    pub(crate) fn note(&self, netns: u32, port: u16, now_ns: u64) -> ListenerNote {
        match self.ports.get(&PortKey::new(netns, port)) {
            Some(st) => ListenerNote {
                listening_now: st.listening > 0,
                last: st.last,
                stopped_ms: st.stopped_ns.map(|s| now_ns.saturating_sub(s) / 1_000_000),
            },
            None => ListenerNote {
                listening_now: false,
                last: None,
                stopped_ms: None,
            },
        }
    }
}

/// Every listening TCP socket in every network namespace that has a
/// process in it, read from /proc.
pub(crate) fn proc_listeners() -> Vec<ProcListener> {
    let mut out = vec![];
    let mut seen_ns = HashSet::new();
    let Ok(procs) = fs::read_dir(super::procfs::root()) else {
        return out;
    };
    for entry in procs.flatten() {
        if !entry
            .file_name()
            .to_str()
            .is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        let Some(netns) = fs::read_link(entry.path().join("ns/net"))
            .ok()
            .and_then(|l| ns_inode(l.to_str()?))
        else {
            continue;
        };
        if !seen_ns.insert(netns) {
            continue;
        }
        for table in ["net/tcp", "net/tcp6"] {
            if let Ok(text) = fs::read_to_string(entry.path().join(table)) {
                out.extend(
                    parse_tcp_table(&text)
                        .into_iter()
                        .map(|(port, inode)| ProcListener { netns, port, inode }),
                );
            }
        }
    }
    out
}

/// `net:[4026531840]` -> 4026531840.
pub(crate) fn ns_inode(link: &str) -> Option<u32> {
    link.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// (port, inode) of the LISTEN (state 0A) rows of /proc/net/tcp{,6}.
fn parse_tcp_table(text: &str) -> Vec<(u16, u64)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.get(3) != Some(&"0A") {
                return None;
            }
            let port = u16::from_str_radix(cols.get(1)?.rsplit(':').next()?, 16).ok()?;
            let inode = cols.get(9)?.parse().ok()?;
            Some((port, inode))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::conn::Comm;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0
   1: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 31338 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn parses_listeners_only() {
        assert_eq!(parse_tcp_table(TABLE), vec![(8080, 31337)]);
        assert_eq!(ns_inode("net:[4026531840]"), Some(4026531840));
        assert_eq!(ns_inode("mnt:[1]"), None);
    }

    fn listen(port: u16, on: bool, pid: u32, ts: u64) -> ListenChange {
        ListenChange {
            ts_ns: ts,
            netns: 7,
            port,
            listening: on,
            owner: Some(Task {
                pid,
                comm: Comm::from_str_lossy("nginx"),
            }),
        }
    }

    #[test]
    fn remembers_who_listened_and_when_it_stopped() {
        let mut h = ListenerHistory::default();
        assert!(!h.note(7, 80, 0).listening_now);
        h.on_listen(&listen(80, true, 812, 1_000_000_000));
        let n = h.note(7, 80, 2_000_000_000);
        assert!(n.listening_now);
        assert_eq!(n.last.map(|t| t.pid), Some(812));
        assert_eq!(n.stopped_ms, None);
        h.on_listen(&listen(80, false, 812, 3_000_000_000));
        let n = h.note(7, 80, 7_200_000_000);
        assert!(!n.listening_now);
        assert_eq!(n.last.map(|t| t.pid), Some(812));
        assert_eq!(n.last.unwrap().comm.as_str(), "nginx");
        assert_eq!(n.stopped_ms, Some(4200));
        // Another namespace is another port.
        assert_eq!(h.note(8, 80, 0).last, None);
        // Restarted.
        h.on_listen(&listen(80, true, 900, 8_000_000_000));
        let n = h.note(7, 80, 9_000_000_000);
        assert!(n.listening_now);
        assert_eq!((n.last.map(|t| t.pid), n.stopped_ms), (Some(900), None));
    }

    #[test]
    fn reuseport_listeners_count() {
        let mut h = ListenerHistory::default();
        h.seed(
            &ProcListener {
                netns: 7,
                port: 443,
                inode: 1,
            },
            Some(Task {
                pid: 10,
                comm: Comm::from_str_lossy("a"),
            }),
        );
        h.on_listen(&listen(443, true, 11, 1));
        h.on_listen(&listen(443, false, 11, 2));
        assert!(h.note(7, 443, 3).listening_now, "one of two still listens");
    }

    #[test]
    fn finds_a_real_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(proc_listeners().iter().any(|p| p.port == port));
    }
}
