//! The kernel members the eBPF programs read, each with where its offset
//! goes in `Config::offsets`, and how one is found in BTF.

use rsttrace_common::config::Offsets;

use crate::kernel::btf::Btf;

type Slot = fn(&mut Offsets) -> &mut u32;

/// A kernel member the programs read: where to look (alternatives, newest
/// kernels first), where the offset goes, how many bytes the program reads,
/// and whether rsttrace can work without it.
pub(super) struct Member {
    paths: &'static [(&'static str, &'static str)],
    pub(super) slot: Slot,
    size: u32,
    pub(super) required: bool,
}

macro_rules! members {
    ($(($strukt:literal, $path:literal, $field:ident, $size:literal, $required:literal $(, alt = ($astrukt:literal, $apath:literal))?)),+ $(,)?) => {
        &[$(Member {
            paths: &[($strukt, $path) $(, ($astrukt, $apath))?],
            slot: |o| &mut o.$field,
            size: $size,
            required: $required,
        }),+]
    };
}

pub(super) const MEMBERS: &[Member] = members![
    ("sock_common", "skc_family", skc_family, 2, true),
    ("sock_common", "skc_state", skc_state, 1, true),
    ("sock_common", "skc_num", skc_num, 2, true),
    ("sock_common", "skc_dport", skc_dport, 2, true),
    ("sock_common", "skc_rcv_saddr", skc_rcv_saddr, 4, true),
    ("sock_common", "skc_daddr", skc_daddr, 4, true),
    (
        "sock_common",
        "skc_v6_rcv_saddr",
        skc_v6_rcv_saddr,
        16,
        false
    ),
    ("sock_common", "skc_v6_daddr", skc_v6_daddr, 16, false),
    ("sock_common", "skc_net.net", skc_net, 8, true),
    ("sock_common", "skc_cookie", skc_cookie, 8, false),
    ("inet_sock", "inet_sport", inet_sport, 2, false),
    // `sk_flags` is `__sk_common.skc_flags` since 6.x, a member of struct
    // sock before; sock_common sits at offset 0 of sock.
    (
        "sock_common",
        "skc_flags",
        sk_flags,
        8,
        true,
        alt = ("sock", "sk_flags")
    ),
    ("sock", "sk_socket", sk_socket, 8, true),
    ("sock", "sk_err", sk_err, 4, true),
    ("sock", "sk_lingertime", sk_lingertime, 8, true),
    ("sock", "sk_ack_backlog", sk_ack_backlog, 4, false),
    ("sock", "sk_max_ack_backlog", sk_max_ack_backlog, 4, false),
    ("inet_timewait_sock", "tw_substate", tw_substate, 1, false),
    ("socket", "file", socket_file, 8, true),
    ("socket", "sk", socket_sk, 8, true),
    ("file", "f_inode", file_inode, 8, true),
    ("file", "private_data", file_private_data, 8, true),
    ("inode", "i_ino", inode_ino, 8, true),
    ("net", "ns.inum", net_inum, 4, true),
    ("sk_buff", "len", skb_len, 4, false),
    ("sk_buff", "head", skb_head, 8, true),
    ("sk_buff", "data", skb_data, 8, false),
    ("sk_buff", "protocol", skb_protocol, 2, false),
    ("sk_buff", "network_header", skb_network_header, 2, true),
    ("sk_buff", "transport_header", skb_transport_header, 2, true),
    ("sk_buff", "dev", skb_dev, 8, true),
    ("sk_buff", "sk", skb_sk, 8, false),
    ("net_device", "nd_net.net", dev_nd_net, 8, true),
    ("tcp_sock", "snd_una", tcp_snd_una, 4, false),
    ("tcp_sock", "snd_nxt", tcp_snd_nxt, 4, false),
    ("tcp_sock", "rcv_nxt", tcp_rcv_nxt, 4, false),
    ("tcp_sock", "copied_seq", tcp_copied_seq, 4, false),
    ("tcp_sock", "bytes_received", tcp_bytes_received, 8, false),
    ("tcp_sock", "bytes_acked", tcp_bytes_acked, 8, false),
    ("tcp_sock", "bytes_sent", tcp_bytes_sent, 8, false),
    ("tcp_sock", "lsndtime", tcp_lsndtime, 4, false),
    ("tcp_sock", "rcv_tstamp", tcp_rcv_tstamp, 4, false),
    (
        "tcp_sock",
        "inet_conn.icsk_ack.lrcvtime",
        icsk_lrcvtime,
        4,
        false
    ),
    ("tcp_sock", "linger2", tcp_linger2, 4, false),
    ("task_struct", "files", task_files, 8, false),
    ("task_struct", "group_leader", task_group_leader, 8, false),
    ("task_struct", "comm", task_comm, 16, false),
    (
        "task_struct",
        "start_boottime",
        task_start_boottime,
        8,
        false
    ),
    ("files_struct", "fdt", files_fdt, 8, false),
    ("fdtable", "max_fds", fdtable_max_fds, 4, false),
    ("fdtable", "fd", fdtable_fd, 8, false),
    ("flowi4", "__fl_common.flowic_proto", flowi4_proto, 1, false),
    ("flowi4", "daddr", flowi4_daddr, 4, false),
    ("flowi6", "__fl_common.flowic_proto", flowi6_proto, 1, false),
    ("flowi6", "daddr", flowi6_daddr, 16, false),
];

/// Finds a member's byte offset, checking its size.
pub(super) fn locate(btf: &Btf, member: &Member) -> Result<u32, String> {
    let mut why = String::new();
    for &(strukt, path) in member.paths {
        let Some(loc) = btf.member_path(strukt, path) else {
            why = format!("no member `{path}` in struct {strukt}");
            continue;
        };
        let Some(off) = loc.byte_offset() else {
            why = format!("{strukt}.{path} is a bitfield");
            continue;
        };
        match btf.size_of(loc.type_id) {
            Some(size) if size == member.size => return Ok(off),
            size => {
                why = format!(
                    "{strukt}.{path} is {size:?} bytes, rsttrace reads {}",
                    member.size
                )
            }
        }
    }
    Err(why)
}
