//! Raw records from the eBPF programs to typed events.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rsttrace_common::event::{
    ErrorReportEvent, EventHeader, ListenEvent, ResetEvent, KIND_ERROR_REPORT, KIND_FIREWALL,
    KIND_LISTEN, KIND_RESET_RECEIVED, KIND_RESET_SENT,
};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than its header")]
    NoHeader { len: usize },
    #[error("record kind {kind} of {len} bytes, expected at least {need}")]
    Short { kind: u8, len: usize, need: usize },
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    Reset(ResetEvent),
    ErrorReport(ErrorReportEvent),
    Listen(ListenEvent),
    /// Netfilter dropped a TCP segment; `reason` holds the verdict.
    Firewall(ResetEvent),
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
pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    if bytes.len() < std::mem::size_of::<EventHeader>() {
        return Err(DecodeError::NoHeader { len: bytes.len() });
    }
    let kind = bytes[0];
    match kind {
        KIND_RESET_SENT | KIND_RESET_RECEIVED => read(bytes, kind).map(Record::Reset),
        KIND_ERROR_REPORT => read(bytes, kind).map(Record::ErrorReport),
        KIND_LISTEN => read(bytes, kind).map(Record::Listen),
        KIND_FIREWALL => read(bytes, kind).map(Record::Firewall),
        other => Err(DecodeError::UnknownKind(other)),
    }
}

pub const AF_INET: u16 = libc::AF_INET as u16;
pub const AF_INET6: u16 = libc::AF_INET6 as u16;

/// An address as captured: IPv4 in the first 4 bytes, IPv6 in all 16.
/// IPv4-mapped IPv6 addresses (dual-stack sockets) come out as IPv4.
pub fn ip_addr(family: u16, raw: &[u8; 16]) -> IpAddr {
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
pub fn family_name(addr: &IpAddr) -> &'static str {
    match addr {
        IpAddr::V4(_) => "inet",
        IpAddr::V6(_) => "inet6",
    }
}

/// `task_struct.comm` bytes to text (up to the first NUL).
pub fn comm_str(comm: &[u8]) -> &str {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    match std::str::from_utf8(&comm[..end]) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&comm[..e.valid_up_to()]).unwrap_or(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of<T>(v: &T) -> Vec<u8> {
        // SAFETY: reading the bytes of a plain-data value.
        unsafe {
            std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>())
        }
        .to_vec()
    }

    #[test]
    fn decodes_a_reset_with_padding() {
        let mut ev = ResetEvent::default();
        ev.header.kind = KIND_RESET_SENT;
        ev.local_port = 8080;
        ev.remote_addr[..4].copy_from_slice(&[10, 0, 0, 2]);
        let mut raw = bytes_of(&ev);
        raw.extend_from_slice(&[0; 4]);
        assert_eq!(decode(&raw), Ok(Record::Reset(ev)));
    }

    #[test]
    fn decodes_other_kinds() {
        let mut er = ErrorReportEvent::default();
        er.header.kind = KIND_ERROR_REPORT;
        er.error = 104;
        assert_eq!(decode(&bytes_of(&er)), Ok(Record::ErrorReport(er)));
        let mut le = ListenEvent::default();
        le.header.kind = KIND_LISTEN;
        le.port = 80;
        assert_eq!(decode(&bytes_of(&le)), Ok(Record::Listen(le)));
    }

    #[test]
    fn rejects_bad_records() {
        assert_eq!(decode(&[1, 2, 3]), Err(DecodeError::NoHeader { len: 3 }));
        let mut ev = ResetEvent::default();
        ev.header.kind = KIND_RESET_RECEIVED;
        let raw = bytes_of(&ev);
        assert!(matches!(
            decode(&raw[..100]),
            Err(DecodeError::Short {
                kind: 2,
                len: 100,
                ..
            })
        ));
        let mut raw = raw;
        raw[0] = 77;
        assert_eq!(decode(&raw), Err(DecodeError::UnknownKind(77)));
    }

    #[test]
    fn addresses() {
        let mut raw = [0u8; 16];
        raw[..4].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(
            ip_addr(AF_INET, &raw),
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
        assert_eq!(comm_str(b"nginx\0\0\0\0\0\0\0\0\0\0\0"), "nginx");
        assert_eq!(comm_str(b"exactly16chars!!"), "exactly16chars!!");
        assert_eq!(comm_str(b"bad\xff\0"), "bad");
    }
}
