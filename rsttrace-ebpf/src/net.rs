//! Reading sockets and packets: endpoints, namespaces, the triggering segment.

use rsttrace_common::{
    event::{Owner, ResetEvent},
    COMM_LEN,
};

use crate::kmem::{conf, load, off, read, read_array, read_buf};

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// `skb->transport_header` when it was never set (`(u16)~0U`).
const HEADER_UNSET: u16 = 0xffff;

// Every `sk` and `skb` here is a BTF-typed tracepoint argument, so struct
// members are loaded directly (see `kmem::load`).

/// Inode of the network namespace a socket lives in.
#[inline(always)]
pub fn sock_netns(sk: u64) -> u32 {
    let net: u64 = load(sk, off!(skc_net));
    load(net, off!(net_inum))
}

/// Inode of the network namespace of the device a packet arrived on (for
/// resets sent with no socket).
#[inline(always)]
pub fn skb_netns(skb: u64) -> u32 {
    let dev: u64 = load(skb, off!(skb_dev));
    let net: u64 = load(dev, off!(dev_nd_net));
    load(net, off!(net_inum))
}

#[inline(always)]
pub fn sock_state(sk: u64) -> u8 {
    load(sk, off!(skc_state))
}

/// True for a full `struct sock` (not a TIME_WAIT or request mini-socket,
/// where only `sock_common` is valid).
#[inline(always)]
pub fn is_full_sock(state: u8) -> bool {
    state != conf!(tcp_time_wait) && state != conf!(tcp_new_syn_recv)
}

/// The endpoint fields of a record (reset or error report) as
/// [`Endpoints`].
macro_rules! endpoints_of {
    ($ev:expr) => {
        $crate::net::Endpoints {
            family: &mut $ev.family,
            local_addr: &mut $ev.local_addr,
            remote_addr: &mut $ev.remote_addr,
            local_port: &mut $ev.local_port,
            remote_port: &mut $ev.remote_port,
        }
    };
}
pub(crate) use endpoints_of;

/// Both ends of a connection, local first.
pub struct Endpoints<'a> {
    pub family: &'a mut u16,
    pub local_addr: &'a mut [u8; 16],
    pub remote_addr: &'a mut [u8; 16],
    pub local_port: &'a mut u16,
    pub remote_port: &'a mut u16,
}

/// Fills the endpoints from `sock_common` (valid for every socket kind).
/// For a full socket the local port comes from `inet_sport`: close()
/// releases the bound port (`skc_num` = 0) before the reset goes out.
#[inline(always)]
pub fn sock_endpoints(sk: u64, full: bool, ep: Endpoints<'_>) {
    let family: u16 = load(sk, off!(skc_family));
    *ep.local_port = load(sk, off!(skc_num));
    if full && *ep.local_port == 0 {
        // inet_sport is an inet_sock member: beyond `struct sock`, so a
        // helper read.
        *ep.local_port = u16::from_be(read(sk, off!(inet_sport)));
    }
    *ep.remote_port = u16::from_be(load(sk, off!(skc_dport)));
    if family == AF_INET6 {
        *ep.local_addr = load(sk, off!(skc_v6_rcv_saddr));
        *ep.remote_addr = load(sk, off!(skc_v6_daddr));
    } else {
        ep.local_addr[..4].copy_from_slice(&load::<[u8; 4]>(sk, off!(skc_rcv_saddr)));
        ep.remote_addr[..4].copy_from_slice(&load::<[u8; 4]>(sk, off!(skc_daddr)));
    }
    *ep.family = family;
}

/// IPPROTO_TCP.
const TCP: u8 = 6;

/// Fills the event's endpoints and segment fields from the packet that
/// triggered a reset: its source is the remote end, its destination this
/// host.  Returns false when the headers cannot be read or the packet is
/// not TCP (checked for packets that do not come from TCP hooks).
#[inline(always)]
pub fn read_segment(skb: u64, ev: &mut ResetEvent) -> bool {
    let head: u64 = load(skb, off!(skb_head));
    let nh: u16 = load(skb, off!(skb_network_header));
    let th: u16 = load(skb, off!(skb_transport_header));
    if head == 0 || th == HEADER_UNSET || nh == HEADER_UNSET || th <= nh {
        return false;
    }
    // One read for the IP header and the start of the TCP header when the
    // TCP header follows the fixed IP header (no IPv4 options, no IPv6
    // extension headers): 40 + 16 bytes covers both families.
    let ip = head + nh as u64;
    let h: [u8; 56] = read_array(ip);
    let ip_len = (th - nh) as u32;
    let ip_payload: u32;
    let t: [u8; 16];
    match h[0] >> 4 {
        4 => {
            if h[9] != TCP {
                return false;
            }
            ev.family = AF_INET;
            ev.remote_addr[..4].copy_from_slice(&h[12..16]);
            ev.local_addr[..4].copy_from_slice(&h[16..20]);
            let total = u16::from_be_bytes([h[2], h[3]]) as u32;
            ip_payload = total.saturating_sub(ip_len);
            t = if ip_len == 20 {
                sub16(&h, 20)
            } else {
                read_array(head + th as u64)
            };
        }
        6 => {
            // Extension headers sit between nh and th: only plain TCP here.
            if h[6] != TCP && ip_len == 40 {
                return false;
            }
            ev.family = AF_INET6;
            ev.remote_addr.copy_from_slice(&h[8..24]);
            ev.local_addr.copy_from_slice(&h[24..40]);
            // payload_len counts extension headers, which sit before th.
            let payload = u16::from_be_bytes([h[4], h[5]]) as u32;
            ip_payload = payload.saturating_sub(ip_len - 40);
            t = if ip_len == 40 {
                sub16(&h, 40)
            } else {
                read_array(head + th as u64)
            };
        }
        _ => return false,
    }
    ev.remote_port = u16::from_be_bytes([t[0], t[1]]);
    ev.local_port = u16::from_be_bytes([t[2], t[3]]);
    ev.seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    ev.ack_seq = u32::from_be_bytes([t[8], t[9], t[10], t[11]]);
    let doff = ((t[12] >> 4) as u32) * 4;
    ev.tcp_flags = t[13];
    ev.payload_len = ip_payload.saturating_sub(doff);
    true
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
pub fn sock_inode(sk: u64) -> u64 {
    let socket: u64 = load(sk, off!(sk_socket));
    let file: u64 = load(socket, off!(socket_file));
    let inode: u64 = load(file, off!(file_inode));
    load(inode, off!(inode_ino))
}

/// The current process as a socket owner: thread-group id, the group
/// leader's comm (the process name rather than a thread's), cgroup.
#[inline(always)]
pub fn current_owner() -> Owner {
    use aya_ebpf::helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_task,
    };
    let mut owner = Owner {
        tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        ..Owner::default()
    };
    let task = unsafe { bpf_get_current_task() };
    let leader: u64 = read(task, off!(task_group_leader));
    read_buf(leader, off!(task_comm), &mut owner.comm);
    if owner.comm[0] == 0 {
        owner.comm = current_comm();
    }
    owner
}

/// The running thread's comm, without zero-initialising a buffer first
/// (that becomes a `memset` call): the helper fills all 16 bytes.
#[inline(always)]
pub fn current_comm() -> [u8; COMM_LEN] {
    use aya_ebpf::helpers::generated::bpf_get_current_comm as get_comm;
    let mut buf = core::mem::MaybeUninit::<[u8; COMM_LEN]>::uninit();
    unsafe {
        if get_comm(buf.as_mut_ptr().cast(), COMM_LEN as u32) != 0 {
            return [0; COMM_LEN];
        }
        buf.assume_init()
    }
}
