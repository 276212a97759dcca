//! Connections, segments and processes as records describe them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rsttrace_common::COMM_LEN;
use sha1::{Digest, Sha1};

pub(crate) const AF_INET6: u16 = libc::AF_INET6 as u16;

/// An address as captured: IPv4 in the first 4 bytes, IPv6 in all 16.
/// IPv4-mapped IPv6 addresses (dual-stack sockets) come out as IPv4.
pub(crate) fn ip_addr(family: u16, raw: &[u8; 16]) -> IpAddr {
    if family == AF_INET6 {
        let v6 = Ipv6Addr::from(*raw);
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    } else {
        IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
    }
}

/// `"inet"` or `"inet6"` for an address, as `ip`/`ss` name families.
pub(crate) fn family_name(addr: &IpAddr) -> &'static str {
    match addr {
        IpAddr::V4(_) => "inet",
        IpAddr::V6(_) => "inet6",
    }
}

/// Both ends of a connection, this host's first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Conn {
    pub local: IpAddr,
    pub local_port: u16,
    pub remote: IpAddr,
    pub remote_port: u16,
}

/// Hashed as one run of bytes (the correlator looks connections up
/// several times per reset; the derived hash fed the hasher field by
/// field, family tags included).
impl std::hash::Hash for Conn {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut key = [0u8; 1 + 16 + 16 + 4];
        let mut n = 1;
        for addr in [self.local, self.remote] {
            match addr {
                IpAddr::V4(a) => {
                    key[n..n + 4].copy_from_slice(&a.octets());
                    n += 4;
                }
                IpAddr::V6(a) => {
                    key[0] |= if n == 1 { 1 } else { 2 };
                    key[n..n + 16].copy_from_slice(&a.octets());
                    n += 16;
                }
            }
        }
        key[n..n + 2].copy_from_slice(&self.local_port.to_ne_bytes());
        key[n + 2..n + 4].copy_from_slice(&self.remote_port.to_ne_bytes());
        state.write(&key[..n + 4]);
    }
}

impl Conn {
    pub(crate) fn from_raw(
        family: u16,
        local: &[u8; 16],
        local_port: u16,
        remote: &[u8; 16],
        remote_port: u16,
    ) -> Self {
        Conn {
            local: ip_addr(family, local),
            local_port,
            remote: ip_addr(family, remote),
            remote_port,
        }
    }

    /// Community ID v1 (seed 0) of this TCP connection: the same on both
    /// hosts, whichever end computes it.  Empty when the two addresses
    /// are of different families (the spec has no id for that).
    pub(crate) fn community_id(&self) -> CommunityId {
        match (self.local, self.remote) {
            (IpAddr::V4(l), IpAddr::V4(r)) => {
                CommunityId::tcp(&l.octets(), self.local_port, &r.octets(), self.remote_port)
            }
            (IpAddr::V6(l), IpAddr::V6(r)) => {
                CommunityId::tcp(&l.octets(), self.local_port, &r.octets(), self.remote_port)
            }
            _ => CommunityId::default(),
        }
    }

    /// The same connection seen from the other end.
    pub(crate) fn reversed(&self) -> Conn {
        Conn {
            local: self.remote,
            local_port: self.remote_port,
            remote: self.local,
            remote_port: self.local_port,
        }
    }
}

/// A Community ID v1 (`1:` and the base64 of a SHA-1), kept inline: one
/// is computed per record, and a `String` would be an allocation each.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct CommunityId {
    text: [u8; CommunityId::MAX],
    len: u8,
}

impl CommunityId {
    /// `1:` and 28 base64 characters.
    const MAX: usize = 30;

    /// The id of a TCP flow between two endpoints (seed 0), as the spec
    /// computes it: the endpoints in order (address, then port), so that
    /// both directions get the same id.  Addresses of one family (4 or 16
    /// bytes, inlined per family for fixed-size copies).
    #[inline(always)]
    fn tcp(a: &[u8], a_port: u16, b: &[u8], b_port: u16) -> CommunityId {
        const TCP: u8 = 6;
        let ((src, sport), (dst, dport)) = if (a, a_port) < (b, b_port) {
            ((a, a_port), (b, b_port))
        } else {
            ((b, b_port), (a, a_port))
        };
        // Seed (0), addresses, protocol, a zero pad byte, ports; all in
        // network byte order.
        let mut data = [0u8; 2 + 16 + 16 + 2 + 4];
        let len = a.len();
        data[2..2 + len].copy_from_slice(src);
        data[2 + len..2 + 2 * len].copy_from_slice(dst);
        let tail = 2 + 2 * len;
        data[tail..tail + 6].copy_from_slice(&[
            TCP,
            0,
            (sport >> 8) as u8,
            sport as u8,
            (dport >> 8) as u8,
            dport as u8,
        ]);
        let digest: [u8; 20] = Sha1::digest(&data[..tail + 6]).into();
        let mut id = CommunityId {
            text: [0; CommunityId::MAX],
            len: CommunityId::MAX as u8,
        };
        id.text[..2].copy_from_slice(b"1:");
        base64(&digest, &mut id.text[2..]);
        id
    }

    pub(crate) fn as_str(&self) -> &str {
        let text = &self.text[..usize::from(self.len)];
        // SAFETY: the bytes are ASCII (`tcp` writes `1:` and base64) or a
        // prefix of a str cut at a character boundary (`from`), and never
        // change after.
        unsafe { std::str::from_utf8_unchecked(text) }
    }
}

/// Standard base64 with padding of 20 bytes: 28 characters.
fn base64(bytes: &[u8; 20], out: &mut [u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sextet = |v: u32, shift: u32| ALPHABET[(v >> shift & 63) as usize];
    for (group, text) in bytes.chunks(3).zip(out.chunks_mut(4)) {
        let v = group
            .iter()
            .enumerate()
            .fold(0u32, |v, (i, &b)| v | u32::from(b) << (16 - 8 * i));
        text[0] = sextet(v, 18);
        text[1] = sextet(v, 12);
        text[2] = if group.len() > 1 { sextet(v, 6) } else { b'=' };
        text[3] = if group.len() > 2 { sextet(v, 0) } else { b'=' };
    }
}

/// For records built by hand (tests): the first 30 bytes of `s`.
impl From<&str> for CommunityId {
    fn from(s: &str) -> Self {
        let mut id = CommunityId::default();
        let mut n = s.len().min(CommunityId::MAX);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        id.text[..n].copy_from_slice(&s.as_bytes()[..n]);
        id.len = n as u8;
        id
    }
}

impl std::fmt::Debug for CommunityId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq<&str> for CommunityId {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The TCP segment a reset answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Segment {
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub payload: u32,
}

/// TCP header flag bits.
pub(crate) mod tcp_flags {
    pub(crate) const FIN: u8 = 0x01;
    pub(crate) const SYN: u8 = 0x02;
    #[cfg(test)]
    pub(crate) const PSH: u8 = 0x08;
    pub(crate) const ACK: u8 = 0x10;
}

impl Segment {
    /// A connection attempt: SYN without ACK.
    pub(crate) fn is_bare_syn(&self) -> bool {
        self.flags & tcp_flags::SYN != 0 && self.flags & tcp_flags::ACK == 0
    }

    pub(crate) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// A process name (`task_struct.comm`), kept inline, with the length of
/// its text found once (records show a name several times, and through
/// `as_str` each time).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) struct Comm {
    raw: [u8; COMM_LEN],
    /// Up to the first NUL, cut at the first byte that is not UTF-8.
    len: u8,
}

impl Comm {
    pub(crate) fn new(raw: [u8; COMM_LEN]) -> Self {
        let end = raw.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
        let len = match std::str::from_utf8(&raw[..end]) {
            Ok(_) => end,
            Err(e) => e.valid_up_to(),
        };
        Comm {
            raw,
            len: len as u8,
        }
    }

    pub(crate) fn from_str_lossy(s: &str) -> Self {
        let mut raw = [0; COMM_LEN];
        let n = s.len().min(COMM_LEN - 1);
        raw[..n].copy_from_slice(&s.as_bytes()[..n]);
        Comm::new(raw)
    }

    /// Up to the first NUL; invalid UTF-8 is cut at the first bad byte.
    pub(crate) fn as_str(&self) -> &str {
        let text = &self.raw[..usize::from(self.len)];
        // SAFETY: `new`, the only constructor but Default (len 0), checked
        // that these bytes are UTF-8, and they are never changed.
        unsafe { std::str::from_utf8_unchecked(text) }
    }
}

impl std::fmt::Debug for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Comm").field(&self.raw).finish()
    }
}

/// A process named for a role: the task that ran, a killer, a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Task {
    pub pid: u32,
    pub comm: Comm,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let mut raw = [0u8; 16];
        raw[..4].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(
            ip_addr(libc::AF_INET as u16, &raw),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
        let v6: Ipv6Addr = "fd00::1".parse().unwrap();
        assert_eq!(ip_addr(AF_INET6, &v6.octets()), IpAddr::V6(v6));
        let mapped: Ipv6Addr = "::ffff:10.1.2.3".parse().unwrap();
        let a = ip_addr(AF_INET6, &mapped.octets());
        assert_eq!(a, "10.1.2.3".parse::<IpAddr>().unwrap());
        assert_eq!(family_name(&a), "inet");
    }

    #[test]
    fn comms() {
        assert_eq!(Comm::new(*b"nginx\0\0\0\0\0\0\0\0\0\0\0").as_str(), "nginx");
        assert_eq!(Comm::new(*b"exactly16chars!!").as_str(), "exactly16chars!!");
        assert_eq!(
            Comm::new(*b"bad\xff\0\0\0\0\0\0\0\0\0\0\0\0").as_str(),
            "bad"
        );
        assert_eq!(
            Comm::from_str_lossy("a-very-long-process-name").as_str(),
            "a-very-long-pro"
        );
    }

    #[test]
    fn community_ids_match_the_reference() {
        // The example of the community-id crate and the spec's baseline.
        let c = Conn {
            local: "1.2.3.4".parse().unwrap(),
            local_port: 1122,
            remote: "5.6.7.8".parse().unwrap(),
            remote_port: 3344,
        };
        assert_eq!(c.community_id(), "1:wCb3OG7yAFWelaUydu0D+125CLM=");
        assert_eq!(
            c.reversed().community_id(),
            c.community_id(),
            "both ends agree"
        );
    }

    #[test]
    fn community_ids_are_the_reference_crates() {
        let addrs: Vec<IpAddr> = [
            "127.0.0.1",
            "10.0.0.2",
            "10.0.0.10",
            "192.168.255.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fd00::2",
            "2001:db8::ff00:42:8329",
            "::",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        for &local in &addrs {
            for &remote in &addrs {
                for (local_port, remote_port) in [(80, 1024), (1024, 80), (9, 9), (0, 65535)] {
                    let c = Conn {
                        local,
                        local_port,
                        remote,
                        remote_port,
                    };
                    let want = community_id::calculate_community_id(
                        0,
                        local,
                        remote,
                        Some(local_port),
                        Some(remote_port),
                        6,
                        false,
                    )
                    .unwrap_or_default();
                    assert_eq!(c.community_id(), want.as_str(), "{c:?}");
                }
            }
        }
    }

    #[test]
    fn segments() {
        let syn = Segment {
            flags: tcp_flags::SYN,
            ..Segment::default()
        };
        assert!(syn.is_bare_syn());
        let synack = Segment {
            flags: tcp_flags::SYN | tcp_flags::ACK,
            ..syn
        };
        assert!(!synack.is_bare_syn());
    }
}
