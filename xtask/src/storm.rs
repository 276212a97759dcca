//! A reset storm: SYNs from a raw socket to a closed loopback port, as fast
//! as one CPU can send them.  Every SYN makes the kernel send a reset
//! (NO_SOCKET); the reset comes back to an address with no socket and is
//! dropped.  Run inside the benchmark's network namespace.

use std::{
    mem::size_of,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

/// The closed port the storm targets.
pub(crate) const STORM_PORT: u16 = 9;
const BATCH: usize = 64;

fn checksum(data: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 + TCP SYN from 127.0.0.1:`sport` to 127.0.0.1:`STORM_PORT`.
fn syn(sport: u16, seq: u32) -> [u8; 40] {
    let mut p = [0u8; 40];
    let src = [127, 0, 0, 1];
    let dst = [127, 0, 0, 1];
    // IPv4 header.
    p[0] = 0x45;
    p[2..4].copy_from_slice(&40u16.to_be_bytes());
    p[6] = 0x40; // DF
    p[8] = 64;
    p[9] = 6; // TCP
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    let ip_sum = checksum(&p[..20], 0);
    p[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    // TCP header.
    let t = &mut p[20..];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&STORM_PORT.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = 0x02; // SYN
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    // Pseudo-header: src, dst, zero, protocol, TCP length.
    let mut pseudo = 0u32;
    for w in [src, dst] {
        pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]))
            + u32::from(u16::from_be_bytes([w[2], w[3]]));
    }
    pseudo += 6 + 20;
    let tcp_sum = checksum(&p[20..], pseudo);
    p[36..38].copy_from_slice(&tcp_sum.to_be_bytes());
    p
}

pub(crate) fn pin_to_cpu(cpu: usize) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t, then CPU_SET on it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!(
                "sched_setaffinity({cpu}): {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

/// Sends SYNs for `duration`; returns how many.
pub(crate) fn run(duration: Duration, cpu: Option<usize>) -> Result<u64> {
    if let Some(cpu) = cpu {
        pin_to_cpu(cpu)?;
    }
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("raw socket (needs root)");
    }
    let dst = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
        },
        sin_zero: [0; 8],
    };
    // Every packet is built once: the loop does nothing but send, so the
    // kernel's work dominates the storm's cost.  Source ports cycle through
    // a few thousand values.
    const PACKETS: usize = 4096;
    let mut packets: Vec<[u8; 40]> = (0..PACKETS)
        .map(|i| syn(1024 + i as u16, (i as u32).wrapping_mul(7919)))
        .collect();
    let mut iovs: Vec<libc::iovec> = packets
        .iter_mut()
        .map(|p| libc::iovec {
            iov_base: p.as_mut_ptr().cast(),
            iov_len: p.len(),
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            // SAFETY: a zeroed mmsghdr, then its fields.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m.msg_hdr.msg_name = (&dst as *const libc::sockaddr_in).cast_mut().cast();
            m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
            m
        })
        .collect();
    let start = Instant::now();
    let mut sent = 0u64;
    let mut next = 0usize;
    while start.elapsed() < duration {
        // SAFETY: msgs point at live buffers for the duration of the call.
        let n = unsafe { libc::sendmmsg(fd, msgs[next..].as_mut_ptr(), BATCH as u32, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOBUFS) {
                continue;
            }
            return Err(e).context("sendmmsg");
        }
        sent += n as u64;
        next = (next + BATCH) % PACKETS;
    }
    // SAFETY: closing our own fd.
    unsafe { libc::close(fd) };
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_verify() {
        let p = syn(40000, 12345);
        // A correct header checksums to zero.
        assert_eq!(checksum(&p[..20], 0), 0);
        let pseudo = (0x7f00 + 0x0001) * 2 + 6 + 20;
        assert_eq!(checksum(&p[20..], pseudo), 0);
    }
}
