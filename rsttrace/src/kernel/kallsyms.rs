//! The call path of a reset, for kernels that give no reason: the
//! functions that call the reset builders, found in /proc/kallsyms at
//! start-up, and a kernel stack's frames mapped onto them.

use std::collections::HashMap;

/// A function on the way to a reset that tells its story.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallSite {
    /// The reset builders themselves (skipped when reading a stack).
    Builder,
    /// `tcp_keepalive_timer`: keepalive or FIN_WAIT2 timeout.
    KeepaliveTimer,
    /// `__tcp_close` / `tcp_close`.
    Close,
    /// `tcp_disconnect`: SO_LINGER {1,0}, connect(AF_UNSPEC), a listener
    /// closing its unaccepted children.
    Disconnect,
    /// `tcp_abort`: `ss -K`, SOCK_DESTROY.
    Abort,
    /// The retransmit and probe timers giving up on an orphan
    /// (`tcp_out_of_resources`).
    OutOfResources,
    /// A listener closing (`inet_csk_listen_stop`).
    ListenStop,
    /// `__inet_stream_connect`: connect(AF_UNSPEC).
    Connect,
    /// `tcp_check_req`: an embryonic connection's reset.
    CheckReq,
    /// MPTCP subflow handling.
    Mptcp,
}

const FUNCTIONS: &[(&str, CallSite)] = &[
    ("tcp_send_active_reset", CallSite::Builder),
    ("tcp_v4_send_reset", CallSite::Builder),
    ("tcp_v6_send_reset", CallSite::Builder),
    ("tcp_keepalive_timer", CallSite::KeepaliveTimer),
    ("__tcp_close", CallSite::Close),
    ("tcp_close", CallSite::Close),
    ("tcp_disconnect", CallSite::Disconnect),
    ("tcp_abort", CallSite::Abort),
    ("tcp_out_of_resources", CallSite::OutOfResources),
    ("tcp_write_timeout", CallSite::OutOfResources),
    ("tcp_probe_timer", CallSite::OutOfResources),
    ("tcp_retransmit_timer", CallSite::OutOfResources),
    ("inet_csk_listen_stop", CallSite::ListenStop),
    ("inet_child_forget", CallSite::ListenStop),
    ("__inet_stream_connect", CallSite::Connect),
    ("tcp_check_req", CallSite::CheckReq),
    ("mptcp_subflow_reset", CallSite::Mptcp),
    ("mptcp_check_fastclose", CallSite::Mptcp),
    ("mptcp_do_fastclose", CallSite::Mptcp),
    ("subflow_check_data_avail", CallSite::Mptcp),
];

/// The most call sites a path keeps, innermost first.
pub(crate) const PATH: usize = 3;

/// Address ranges of the functions above.
#[derive(Debug, Clone, Default)]
pub struct CallSites {
    /// (start, end, site), sorted by start.
    ranges: Vec<(u64, u64, CallSite)>,
}

impl CallSites {
    /// From /proc/kallsyms; None when it hides addresses (they read as 0
    /// without CAP_SYSLOG) or is unreadable.
    pub fn load() -> Option<CallSites> {
        Self::parse(&std::fs::read_to_string("/proc/kallsyms").ok()?)
    }

    pub fn parse(text: &str) -> Option<CallSites> {
        let wanted: HashMap<&str, CallSite> = FUNCTIONS.iter().copied().collect();
        let mut text_addrs = Vec::with_capacity(text.len() / 40);
        let mut found = vec![];
        for line in text.lines() {
            let mut parts = line.split_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if !matches!(kind, "t" | "T") {
                continue;
            }
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            text_addrs.push(addr);
            if parts.next().is_none() {
                if let Some(&site) = wanted.get(name) {
                    found.push((addr, site));
                }
            }
        }
        if found.is_empty() || found.iter().all(|(a, _)| *a == 0) {
            return None;
        }
        text_addrs.sort_unstable();
        let mut ranges: Vec<(u64, u64, CallSite)> = found
            .into_iter()
            .map(|(start, site)| {
                let i = text_addrs.partition_point(|&a| a <= start);
                (
                    start,
                    text_addrs.get(i).copied().unwrap_or(start + 4096),
                    site,
                )
            })
            .collect();
        ranges.sort_unstable_by_key(|r| r.0);
        Some(CallSites { ranges })
    }

    pub fn site(&self, addr: u64) -> Option<CallSite> {
        let i = self.ranges.partition_point(|r| r.0 <= addr);
        let (start, end, site) = *self.ranges.get(i.checked_sub(1)?)?;
        (addr >= start && addr < end).then_some(site)
    }

    /// The known callers on a stack, innermost first, past the reset
    /// builders (whose own frame may or may not be on the stack).
    pub fn path(&self, frames: &[u64]) -> [Option<CallSite>; PATH] {
        let mut out = [None; PATH];
        let mut n = 0;
        for &f in frames {
            match self.site(f) {
                Some(CallSite::Builder) | None => {}
                Some(s) if n < PATH && (n == 0 || out[n - 1] != Some(s)) => {
                    out[n] = Some(s);
                    n += 1;
                }
                Some(_) => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYMS: &str = "\
ffffffff82011740 T __tcp_close
ffffffff82011b70 T tcp_close
ffffffff82011f20 T tcp_disconnect
ffffffff82012000 T something_else
ffffffff8202a560 T tcp_send_active_reset
ffffffff8202b000 t other
ffffffff8202bdf0 t tcp_keepalive_timer
ffffffff8202c400 T tcp_retransmit_timer
ffffffff8202d000 d some_data
ffffffff8202e000 t nf_something\t[nf_reject_ipv4]
";

    #[test]
    fn maps_addresses_to_call_sites() {
        let c = CallSites::parse(SYMS).unwrap();
        assert_eq!(c.site(0xffffffff82011f20), Some(CallSite::Disconnect));
        assert_eq!(c.site(0xffffffff82011f99), Some(CallSite::Disconnect));
        assert_eq!(c.site(0xffffffff82012000), None, "the next function");
        assert_eq!(c.site(0xffffffff8202be00), Some(CallSite::KeepaliveTimer));
        assert_eq!(c.site(1), None);
    }

    #[test]
    fn paths_skip_the_builders_and_unknown_frames() {
        let c = CallSites::parse(SYMS).unwrap();
        let frames = [
            0xffffffffc0001234, // a BPF program
            0xffffffff8202a570, // tcp_send_active_reset
            0xffffffff82011f40, // tcp_disconnect
            0xffffffff82011800, // __tcp_close
            0xffffffff82011b80, // tcp_close: the same story
            0,
        ];
        assert_eq!(
            c.path(&frames),
            [Some(CallSite::Disconnect), Some(CallSite::Close), None]
        );
    }

    #[test]
    fn hidden_addresses_mean_no_call_sites() {
        let hidden = SYMS.replace("ffffffff", "00000000").replace("82", "00");
        let zeroed: String = hidden
            .lines()
            .map(|l| format!("0000000000000000 {}\n", l.split_once(' ').unwrap().1))
            .collect();
        assert!(CallSites::parse(&zeroed).is_none());
    }

    #[test]
    fn this_host() {
        // The tests run as root, which reads real addresses.
        let c = CallSites::load().expect("/proc/kallsyms with addresses");
        assert!(c.ranges.iter().any(|r| r.2 == CallSite::Builder));
    }
}
