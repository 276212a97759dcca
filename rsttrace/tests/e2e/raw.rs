//! Hand-made TCP segments (IPv4), for the causes only a misbehaving peer
//! triggers: a SYN inside a half-open connection's window, a SYN-ACK echoing
//! a timestamp never sent, ACKs for data never sent.

use std::{
    mem::MaybeUninit,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use socket2::{Domain, Protocol, Socket, Type};

pub(crate) const FIN: u8 = 0x01;
pub(crate) const SYN: u8 = 0x02;
pub(crate) const RST: u8 = 0x04;
pub(crate) const PSH: u8 = 0x08;
pub(crate) const ACK: u8 = 0x10;

/// The flags and the letters that spell them, in the order `letters` writes.
const LETTERS: [(char, u8); 5] = [('F', FIN), ('S', SYN), ('R', RST), ('P', PSH), ('A', ACK)];

/// Flags spelt as letters ("SA": SYN and ACK; "-": none).
pub(crate) fn parse_flags(spec: &str) -> Result<u8, String> {
    if spec == "-" {
        return Ok(0);
    }
    spec.chars().try_fold(0, |all, c| {
        let (_, flag) = LETTERS
            .iter()
            .find(|(letter, _)| *letter == c)
            .ok_or_else(|| format!("unknown flag {c}"))?;
        Ok(all | flag)
    })
}

/// `parse_flags`, for flags written in a test.
pub(crate) fn flags(spec: &str) -> u8 {
    parse_flags(spec).unwrap_or_else(|e| panic!("{e}"))
}

/// The letters `parse_flags` reads back as `flags`.
pub(crate) fn letters(flags: u8) -> String {
    let s: String = LETTERS
        .iter()
        .filter(|(_, flag)| flags & flag != 0)
        .map(|(letter, _)| letter)
        .collect();
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

fn checksum(data: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    for chunk in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A segment to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub payload: usize,
    /// TCP Fast Open option with an empty cookie.
    pub fastopen: bool,
    /// Timestamps option (TSval, TSecr).
    pub timestamps: Option<(u32, u32)>,
}

impl Segment {
    /// A segment with no payload and no options.
    pub(crate) fn new(
        src: &str,
        sport: u16,
        dst: &str,
        dport: u16,
        flags: u8,
        seq: u32,
        ack: u32,
    ) -> Self {
        Segment {
            src: src.parse().expect("an IPv4 address"),
            sport,
            dst: dst.parse().expect("an IPv4 address"),
            dport,
            flags,
            seq,
            ack,
            payload: 0,
            fastopen: false,
            timestamps: None,
        }
    }

    pub(crate) fn bytes(&self) -> Vec<u8> {
        let mut opts = vec![];
        if self.flags & SYN != 0 {
            opts.extend_from_slice(&[2, 4, 0x05, 0xb4]); // MSS 1460
        }
        if self.fastopen {
            opts.extend_from_slice(&[34, 2]);
        }
        if let Some((val, ecr)) = self.timestamps {
            opts.extend_from_slice(&[1, 1, 8, 10]);
            opts.extend_from_slice(&val.to_be_bytes());
            opts.extend_from_slice(&ecr.to_be_bytes());
        }
        while opts.len() % 4 != 0 {
            opts.push(1);
        }
        let tcp_len = 20 + opts.len() + self.payload;
        let total = 20 + tcp_len;
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[6] = 0x40;
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&self.src.octets());
        p[16..20].copy_from_slice(&self.dst.octets());
        let ip_sum = checksum(&p[..20], 0);
        p[10..12].copy_from_slice(&ip_sum.to_be_bytes());
        let t = &mut p[20..];
        t[0..2].copy_from_slice(&self.sport.to_be_bytes());
        t[2..4].copy_from_slice(&self.dport.to_be_bytes());
        t[4..8].copy_from_slice(&self.seq.to_be_bytes());
        t[8..12].copy_from_slice(&self.ack.to_be_bytes());
        t[12] = (((20 + opts.len()) / 4) as u8) << 4;
        t[13] = self.flags;
        t[14..16].copy_from_slice(&65535u16.to_be_bytes());
        t[20..20 + opts.len()].copy_from_slice(&opts);
        for b in &mut t[20 + opts.len()..] {
            *b = b'z';
        }
        let mut pseudo = 6 + tcp_len as u32;
        for a in [self.src.octets(), self.dst.octets()] {
            pseudo += u32::from(u16::from_be_bytes([a[0], a[1]]))
                + u32::from(u16::from_be_bytes([a[2], a[3]]));
        }
        let sum = checksum(&p[20..], pseudo);
        p[36..38].copy_from_slice(&sum.to_be_bytes());
        p
    }
}

/// A received segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seen {
    pub sport: u16,
    pub dport: u16,
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub tsval: Option<u32>,
}

fn parse(p: &[u8]) -> Option<Seen> {
    let ihl = usize::from(p.first()? & 0x0f) * 4;
    if p.get(9)? != &6 {
        return None;
    }
    let t = p.get(ihl..)?;
    let be16 = |i: usize| u16::from_be_bytes([t[i], t[i + 1]]);
    let be32 = |i: usize| u32::from_be_bytes([t[i], t[i + 1], t[i + 2], t[i + 3]]);
    let doff = usize::from(t.get(12)? >> 4) * 4;
    let mut tsval = None;
    let mut i = 20;
    while i < doff.min(t.len()) {
        match t[i] {
            0 => break,
            1 => i += 1,
            8 if i + 10 <= t.len() => {
                tsval = Some(be32(i + 2));
                i += 10;
            }
            _ => i += usize::from(*t.get(i + 1)?).max(2),
        }
    }
    Some(Seen {
        sport: be16(0),
        dport: be16(2),
        flags: t[13],
        seq: be32(4),
        ack: be32(8),
        tsval,
    })
}

/// Sends hand-made segments and watches the ones that arrive.
pub(crate) struct Raw {
    send: Socket,
    recv: Socket,
}

impl Raw {
    pub(crate) fn new() -> Self {
        // IPPROTO_RAW implies IP_HDRINCL: we write the IP header.
        let send = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(libc::IPPROTO_RAW)),
        )
        .expect("raw socket");
        // A raw TCP socket gets a copy of every TCP segment arriving.
        let recv =
            Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::TCP)).expect("raw tcp socket");
        Raw { send, recv }
    }

    pub(crate) fn send(&self, seg: &Segment) {
        let dst = std::net::SocketAddr::from((seg.dst, 0));
        self.send
            .send_to(&seg.bytes(), &dst.into())
            .expect("send raw segment");
    }

    /// Waits for a segment from `sport` to `dport` (0: any) carrying
    /// exactly `flags`.
    pub(crate) fn wait(&self, sport: u16, dport: u16, flags: u8) -> Option<Seen> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            self.recv
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            let Ok(n) = self.recv.recv(&mut buf) else {
                continue;
            };
            // SAFETY: recv initialised the first n bytes.
            let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
            if let Some(s) = parse(bytes) {
                if (sport == 0 || s.sport == sport) && s.dport == dport && s.flags == flags {
                    return Some(s);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_trip() {
        let seg = Segment {
            src: Ipv4Addr::new(10, 0, 0, 2),
            sport: 40000,
            dst: Ipv4Addr::new(10, 0, 0, 1),
            dport: 80,
            flags: SYN,
            seq: 1000,
            ack: 0,
            payload: 10,
            fastopen: true,
            timestamps: Some((7, 9)),
        };
        let b = seg.bytes();
        assert_eq!(checksum(&b[..20], 0), 0);
        let s = parse(&b).unwrap();
        assert_eq!(
            (s.sport, s.dport, s.flags, s.seq, s.tsval),
            (40000, 80, SYN, 1000, Some(7))
        );
        assert_eq!(flags("SA"), SYN | ACK);
    }
}
