//! Reading sockets and packets: endpoints, namespaces, the triggering
//! segment.  Generic over how memory is read (see `kmem::Mem`), so that
//! the same code serves BTF-typed and plain-pointer programs.

use rsttrace_common::{
    config::NETNS_FILTER,
    event::{Endpoints, Owner, SegmentHdr},
    COMM_LEN,
};

use crate::kmem::{conf, off, read, read_array, read_buf, Mem, Typed};

pub(crate) const AF_INET: u16 = 2;
pub(crate) const AF_INET6: u16 = 10;
/// IPPROTO_TCP.
const TCP: u8 = 6;
pub(crate) const TCP_RST: u8 = 0x04;
/// `skb->transport_header` when it was never set (`(u16)~0U`).
const HEADER_UNSET: u16 = 0xffff;

/// Inode of the network namespace a socket lives in.
#[inline(always)]
pub(crate) fn sock_netns<M: Mem>(sk: u64) -> u32 {
    let net: u64 = M::load(sk, off!(skc_net));
    M::load(net, off!(net_inum))
}

/// Inode of the network namespace of the device a packet arrived on (for
/// resets sent with no socket), or of the socket that sends it (a packet
/// on its way out has no device before routing).
#[inline(always)]
pub(crate) fn skb_netns<M: Mem>(skb: u64) -> u32 {
    let dev: u64 = M::load(skb, off!(skb_dev));
    if dev == 0 {
        return sock_netns::<M>(M::load(skb, off!(skb_sk)));
    }
    let net: u64 = M::load(dev, off!(dev_nd_net));
    M::load(net, off!(net_inum))
}

/// Whether `--netns` leaves this namespace out.
#[inline(always)]
pub(crate) fn netns_filtered(netns: u32) -> bool {
    let mut any = false;
    for i in 0..NETNS_FILTER {
        // SAFETY: a volatile read of the read-only CONFIG global.
        let want = unsafe { core::ptr::read_volatile(&crate::kmem::CONFIG.netns_filter[i]) };
        if want == netns {
            return false;
        }
        any |= want != 0;
    }
    any
}

#[inline(always)]
pub(crate) fn sock_state<M: Mem>(sk: u64) -> u8 {
    M::load(sk, off!(skc_state))
}

/// True for a full `struct sock` (not a TIME_WAIT or request mini-socket,
/// where only `sock_common` is valid).
#[inline(always)]
pub(crate) fn is_full_sock(state: u8) -> bool {
    state != conf!(tcp_time_wait) && state != conf!(tcp_new_syn_recv)
}

/// Fills the endpoints from `sock_common` (valid for every socket kind).
/// For a full socket the local port comes from `inet_sport`: close()
/// releases the bound port (`skc_num` = 0) before the reset goes out.
#[inline(always)]
pub(crate) fn sock_endpoints<M: Mem>(sk: u64, full: bool, ep: &mut Endpoints) {
    let family: u16 = M::load(sk, off!(skc_family));
    ep.local_port = M::load(sk, off!(skc_num));
    if full && ep.local_port == 0 {
        // inet_sport is an inet_sock member: beyond `struct sock`, so a
        // helper read.
        ep.local_port = u16::from_be(read(sk, off!(inet_sport)));
    }
    ep.remote_port = u16::from_be(M::load(sk, off!(skc_dport)));
    if family == AF_INET6 {
        ep.local_addr = M::load(sk, off!(skc_v6_rcv_saddr));
        ep.remote_addr = M::load(sk, off!(skc_v6_daddr));
    } else {
        ep.local_addr[..4].copy_from_slice(&M::load::<[u8; 4]>(sk, off!(skc_rcv_saddr)));
        ep.remote_addr[..4].copy_from_slice(&M::load::<[u8; 4]>(sk, off!(skc_daddr)));
    }
    ep.family = family;
}

/// Where a packet's headers start: (head + network header, head +
/// transport header), or None when they were never set.
#[inline(always)]
fn headers<M: Mem>(skb: u64) -> Option<(u64, u64)> {
    let head: u64 = M::load(skb, off!(skb_head));
    let nh: u16 = M::load(skb, off!(skb_network_header));
    let th: u16 = M::load(skb, off!(skb_transport_header));
    if head == 0 || th == HEADER_UNSET || nh == HEADER_UNSET || th <= nh {
        return None;
    }
    Some((head + nh as u64, head + th as u64))
}

/// Fills endpoints and segment from the packet that triggered a reset:
/// its source is the remote end, its destination this host.  Returns
/// false when the headers cannot be read or the packet is not TCP.
#[inline(always)]
pub(crate) fn read_segment<M: Mem>(skb: u64, ep: &mut Endpoints, seg: &mut SegmentHdr) -> bool {
    let Some((ip, tcp)) = headers::<M>(skb) else {
        return false;
    };
    read_packet(ip, tcp, ep, seg)
}

/// Parses IP and TCP headers at kernel addresses `ip` and `tcp`.  The
/// packet's source becomes the remote end.
#[inline(always)]
pub(crate) fn read_packet(ip: u64, tcp: u64, ep: &mut Endpoints, seg: &mut SegmentHdr) -> bool {
    // One read for the IP header and the start of the TCP header when the
    // TCP header follows the fixed IP header (no IPv4 options, no IPv6
    // extension headers): 40 + 16 bytes covers both families.
    let h: [u8; PACKET_HEAD] = read_array(ip);
    parse_packet(&h, ip, tcp, ep, seg)
}

/// Bytes read from the start of a packet: the fixed IPv6 header, or an
/// IPv4 header with options, plus the start of the TCP header.
pub(crate) const PACKET_HEAD: usize = 56;

/// `read_packet` on bytes already read from `ip`.
#[inline(always)]
pub(crate) fn parse_packet(
    h: &[u8; PACKET_HEAD],
    ip: u64,
    tcp: u64,
    ep: &mut Endpoints,
    seg: &mut SegmentHdr,
) -> bool {
    let ip_len = (tcp - ip) as u32;
    let ip_payload: u32;
    let t: [u8; 16];
    match h[0] >> 4 {
        4 => {
            if h[9] != TCP {
                return false;
            }
            ep.family = AF_INET;
            ep.remote_addr[..4].copy_from_slice(&h[12..16]);
            ep.local_addr[..4].copy_from_slice(&h[16..20]);
            seg.ttl = h[8];
            let total = u16::from_be_bytes([h[2], h[3]]) as u32;
            ip_payload = total.saturating_sub(ip_len);
            t = if ip_len == 20 {
                sub16(h, 20)
            } else {
                read_array(tcp)
            };
        }
        6 => {
            // Extension headers sit between the headers: the segment is
            // TCP when the fixed header says so, or when exactly one
            // extension header fills the gap and says so (a multicast
            // listener report's hop-by-hop header does not).
            if !ipv6_carries_tcp(h, ip_len) {
                return false;
            }
            ep.family = AF_INET6;
            ep.remote_addr.copy_from_slice(&h[8..24]);
            ep.local_addr.copy_from_slice(&h[24..40]);
            seg.ttl = h[7];
            // payload_len counts extension headers, which sit before th.
            let payload = u16::from_be_bytes([h[4], h[5]]) as u32;
            ip_payload = payload.saturating_sub(ip_len.saturating_sub(40));
            t = if ip_len == 40 {
                sub16(h, 40)
            } else {
                read_array(tcp)
            };
        }
        _ => return false,
    }
    ep.remote_port = u16::from_be_bytes([t[0], t[1]]);
    ep.local_port = u16::from_be_bytes([t[2], t[3]]);
    seg.seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    seg.ack_seq = u32::from_be_bytes([t[8], t[9], t[10], t[11]]);
    let doff = ((t[12] >> 4) as u32) * 4;
    seg.tcp_flags = t[13];
    seg.payload_len = ip_payload.saturating_sub(doff);
    true
}

/// Whether an IPv6 packet whose transport header is `ip_len` bytes in
/// carries TCP.
#[inline(always)]
fn ipv6_carries_tcp(h: &[u8; PACKET_HEAD], ip_len: u32) -> bool {
    if ip_len == 40 {
        return h[6] == TCP;
    }
    // Hop-by-hop, routing, destination options: next header, then the
    // length in 8-byte units past the first 8.
    let one_extension = matches!(h[6], 0 | 43 | 60) && 40 + (h[41] as u32 + 1) * 8 == ip_len;
    one_extension && h[40] == TCP
}

/// Bytes `at..at + 16` of the header buffer.
#[inline(always)]
fn sub16(h: &[u8; 56], at: usize) -> [u8; 16] {
    let mut t = [0u8; 16];
    t.copy_from_slice(&h[at..at + 16]);
    t
}

/// Inode of the file a socket is attached to (0 when it has none: an
/// orphaned socket after close(), or a child not accepted yet).
#[inline(always)]
pub(crate) fn sock_inode<M: Mem>(sk: u64) -> u64 {
    let socket: u64 = M::load(sk, off!(sk_socket));
    let file: u64 = M::load(socket, off!(socket_file));
    let inode: u64 = M::load(file, off!(file_inode));
    M::load(inode, off!(inode_ino))
}

/// The current process as a socket owner: thread-group id, the group
/// leader's comm (the process name rather than a thread's) and start
/// time, cgroup.  Typed programs read the task directly where the kernel
/// hands them a BTF-typed task (5.11+), others with helper reads.
#[inline(always)]
pub(crate) fn current_owner<M: Mem>() -> Owner {
    use aya_ebpf::helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_task,
        generated::bpf_get_current_task_btf,
    };
    let mut owner = Owner {
        tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
        // SAFETY: no arguments; valid in every program type used here.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        ..Owner::default()
    };
    if M::TYPED && conf!(task_btf) != 0 {
        // SAFETY: no arguments; the running task, typed by BTF.
        let task = unsafe { bpf_get_current_task_btf() } as u64;
        let leader: u64 = Typed::load(task, off!(task_group_leader));
        let comm = off!(task_comm);
        let halves: [u64; 2] = [Typed::load(leader, comm), Typed::load(leader, comm + 8)];
        // SAFETY: two u64s are the 16 bytes of a comm.
        owner.comm = unsafe { core::mem::transmute::<[u64; 2], [u8; COMM_LEN]>(halves) };
        owner.start_ns = Typed::load(leader, off!(task_start_boottime));
    } else {
        // SAFETY: no arguments; returns the running task's address.
        let task = unsafe { bpf_get_current_task() };
        let leader: u64 = read(task, off!(task_group_leader));
        read_buf(leader, off!(task_comm), &mut owner.comm);
        owner.start_ns = read(leader, off!(task_start_boottime));
    }
    if owner.comm[0] == 0 {
        owner.comm = current_comm();
    }
    owner
}

/// The running thread's comm, without zero-initialising a buffer first
/// (that becomes a `memset` call): the helper fills all 16 bytes.
#[inline(always)]
pub(crate) fn current_comm() -> [u8; COMM_LEN] {
    use aya_ebpf::helpers::generated::bpf_get_current_comm as get_comm;
    let mut buf = core::mem::MaybeUninit::<[u8; COMM_LEN]>::uninit();
    // SAFETY: the helper writes COMM_LEN bytes into `buf` when it returns
    // 0; on failure `buf` is not read.
    unsafe {
        if get_comm(buf.as_mut_ptr().cast(), COMM_LEN as u32) != 0 {
            return [0; COMM_LEN];
        }
        buf.assume_init()
    }
}
