//! Start-up configuration handed to the eBPF programs as the read-only global
//! `CONFIG` (see `rsttrace/src/kernel/`).  The verifier sees these values as
//! constants, so branches on missing features are pruned before verification.

/// Offset value meaning "this member does not exist on the running kernel".
pub const ABSENT: u32 = u32::MAX;

/// How many namespaces `--netns` may name.
pub const NETNS_FILTER: usize = 4;

/// Byte offsets of the kernel struct members the programs read, taken from
/// `/sys/kernel/btf/vmlinux` at start-up.  Nested members (for example
/// `net.ns.inum`) are already summed into one offset.  A member the
/// running kernel lacks is [`ABSENT`]: rsttrace refuses to start without
/// the required ones (see `rsttrace/src/kernel/layout/members.rs`), and
/// the programs skip what depends on an optional one.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offsets {
    // struct sock_common (at offset 0 of struct sock and of inet_timewait_sock)
    /// `sock_common.skc_family`: AF_INET or AF_INET6.
    pub skc_family: u32,
    /// `sock_common.skc_state`: the TCP state.
    pub skc_state: u32,
    /// `sock_common.skc_num`: the local port (host order; 0 once close()
    /// released it, see `inet_sport`).
    pub skc_num: u32,
    /// `sock_common.skc_dport`: the remote port (network order).
    pub skc_dport: u32,
    /// `sock_common.skc_rcv_saddr`: the local IPv4 address.
    pub skc_rcv_saddr: u32,
    /// `sock_common.skc_daddr`: the remote IPv4 address.
    pub skc_daddr: u32,
    /// `sock_common.skc_v6_rcv_saddr`: the local IPv6 address (absent on
    /// kernels built without IPv6).
    pub skc_v6_rcv_saddr: u32,
    /// `sock_common.skc_v6_daddr`: the remote IPv6 address.
    pub skc_v6_daddr: u32,
    /// `sock_common.skc_net.net`: the socket's `struct net *`.
    pub skc_net: u32,
    /// `sock_common.skc_cookie`: the socket cookie, read directly where the
    /// `bpf_get_socket_cookie` helper is not allowed.
    pub skc_cookie: u32,
    /// `inet_sock.inet_sport` (network order): the local port on the wire,
    /// still set after close() released `skc_num`.
    pub inet_sport: u32,
    // struct sock
    /// `sock.sk_socket`: the `struct socket` (NULL for an orphan).
    pub sk_socket: u32,
    /// `sock.sk_err`: the pending error, the errno an error report delivers.
    pub sk_err: u32,
    /// Byte that holds `sk_shutdown` (a plain u8 on recent kernels, a
    /// bitfield on old ones); userspace extracts the bits.
    pub sk_shutdown_byte: u32,
    /// `sock_common.skc_flags` (Linux 6.x), or `sock.sk_flags` before.
    pub sk_flags: u32,
    /// `sock.sk_lingertime`: SO_LINGER's timeout, in jiffies.
    pub sk_lingertime: u32,
    /// `sk_protocol` when it is a plain u16 (Linux >= 5.6), else absent.
    pub sk_protocol: u32,
    /// A listener's accept queue: `sk_ack_backlog` (connections waiting)
    /// ...
    pub sk_ack_backlog: u32,
    /// ... and `sk_max_ack_backlog` (its limit, from listen()'s backlog).
    pub sk_max_ack_backlog: u32,
    /// `inet_timewait_sock.tw_substate` (read through a `struct sock *`).
    pub tw_substate: u32,
    // struct socket / file / inode
    /// `socket.file`: the file of a socket, towards its inode.
    pub socket_file: u32,
    /// `socket.sk`: a socket's `struct sock` (owner registration at
    /// accept() on kernels without BPF trampolines).
    pub socket_sk: u32,
    /// `file.f_inode`.
    pub file_inode: u32,
    /// `file.private_data`: a socket file's `struct socket`.
    pub file_private_data: u32,
    /// `inode.i_ino`: the socket inode that `/proc/<pid>/fd` links name.
    pub inode_ino: u32,
    // struct net: ns.inum
    /// `net.ns.inum`: the network namespace's inode (the `netns` fields).
    pub net_inum: u32,
    // struct sk_buff
    /// `skb->len`: the receive path skips packets too long to be a
    /// handshake segment or a reset without reading them.
    pub skb_len: u32,
    /// `sk_buff.head`: the buffer the header offsets count from.
    pub skb_head: u32,
    /// `skb->data` and `skb->protocol`: the receive path reads packets
    /// before their network header offset is set ...
    pub skb_data: u32,
    /// ... and takes the family from the EtherType.
    pub skb_protocol: u32,
    /// `sk_buff.network_header`: IP header offset from `head`.
    pub skb_network_header: u32,
    /// `sk_buff.transport_header`: TCP header offset from `head`.
    pub skb_transport_header: u32,
    /// `sk_buff.dev`: the device, for the namespace of a packet that
    /// has no socket.
    pub skb_dev: u32,
    /// `skb->sk`: the socket a packet this host sends belongs to.
    pub skb_sk: u32,
    // struct net_device: nd_net.net
    /// `net_device.nd_net.net`: the device's `struct net *`.
    pub dev_nd_net: u32,
    // struct tcp_sock and struct inet_connection_sock
    /// `tcp_sock.snd_una` ([`TcpInfo`](crate::event::TcpInfo) has the
    /// meaning of these counters).
    pub tcp_snd_una: u32,
    /// `tcp_sock.snd_nxt`.
    pub tcp_snd_nxt: u32,
    /// `tcp_sock.rcv_nxt` (also: did the connection get the peer's SYN).
    pub tcp_rcv_nxt: u32,
    /// `tcp_sock.copied_seq`.
    pub tcp_copied_seq: u32,
    /// `tcp_sock.bytes_received`.
    pub tcp_bytes_received: u32,
    /// `tcp_sock.bytes_acked`.
    pub tcp_bytes_acked: u32,
    /// `tcp_sock.bytes_sent` (Linux 4.19+).
    pub tcp_bytes_sent: u32,
    /// `tcp_sock.lsndtime`.
    pub tcp_lsndtime: u32,
    /// `tcp_sock.rcv_tstamp`.
    pub tcp_rcv_tstamp: u32,
    /// `inet_connection_sock.icsk_ack.lrcvtime` (inside `tcp_sock`).
    pub icsk_lrcvtime: u32,
    /// `tcp_sock.linger2`.
    pub tcp_linger2: u32,
    // struct task_struct and the fd table, for owner registration at accept()
    /// `task_struct.files`: the fd table, to find the socket accept()
    /// returned (kernels without BPF trampolines).
    pub task_files: u32,
    /// `task_struct.group_leader`: the process, not the thread.
    pub task_group_leader: u32,
    /// `task_struct.comm`: the leader's name.
    pub task_comm: u32,
    /// `task_struct.start_boottime`: the leader's start (`Owner::start_ns`).
    pub task_start_boottime: u32,
    /// `files_struct.fdt`.
    pub files_fdt: u32,
    /// `fdtable.max_fds`: bounds the fd looked up.
    pub fdtable_max_fds: u32,
    /// `fdtable.fd`: the array of `struct file *`.
    pub fdtable_fd: u32,
    // struct flowi4 / flowi6 (route lookups: a netfilter reset's route)
    /// `flowi4.flowi4_proto`: a route lookup with protocol 0 (a reset from
    /// `ip_route_me_harder()`) or ICMP (`icmp_send()`) may be a netfilter
    /// reply, and arms the firewall matcher on its CPU.
    pub flowi4_proto: u32,
    /// `flowi4.daddr`: resolved at start-up, but no program reads it at
    /// present.
    pub flowi4_daddr: u32,
    /// `flowi6.flowi6_proto`: as `flowi4_proto` (0, TCP or ICMPv6).
    pub flowi6_proto: u32,
    /// `flowi6.daddr`: as `flowi4_daddr`, not read at present.
    pub flowi6_daddr: u32,
}

/// Everything the eBPF programs need to know about the running kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Where the members the programs read sit on this kernel.
    pub offsets: Offsets,
    /// Offset of `ret` in the `syscalls:sys_exit_accept{,4}` record.
    pub accept_ret_offset: u32,
    /// TCP state numbers (`TCP_LISTEN`, ...), from the BTF enum names,
    /// never literals.  `TCP_LISTEN`: CLOSE -> LISTEN is listen(), LISTEN
    /// -> CLOSE a listener going away.
    pub tcp_listen: u8,
    /// `TCP_SYN_SENT`: CLOSE -> SYN_SENT is connect(), in the owner's
    /// process.
    pub tcp_syn_sent: u8,
    /// `TCP_SYN_RECV`: LISTEN -> SYN_RECV is a new child of a listener.
    pub tcp_syn_recv: u8,
    /// `TCP_TIME_WAIT`: the state of a time-wait mini-socket (not a full
    /// socket; its owner comes from the closed-connection table).
    pub tcp_time_wait: u8,
    /// `TCP_NEW_SYN_RECV`: a request mini-socket (not a full socket).
    pub tcp_new_syn_recv: u8,
    /// Our FIN went out: ESTABLISHED -> FIN_WAIT1, CLOSE_WAIT -> LAST_ACK.
    pub tcp_fin_wait1: u8,
    /// `TCP_ESTABLISHED`: SYN_SENT -> ESTABLISHED takes the SYN-ACK's TTL.
    pub tcp_established: u8,
    /// `TCP_LAST_ACK` (see `tcp_fin_wait1`).
    pub tcp_last_ack: u8,
    /// The states tcp_time_wait() leaves for CLOSE (our FIN went first):
    /// FIN_WAIT2 ...
    pub tcp_fin_wait2: u8,
    /// ... CLOSING (and FIN_WAIT1) ...
    pub tcp_closing: u8,
    /// ... for `TCP_CLOSE`: the connection moves to a time-wait socket.
    pub tcp_close: u8,
    /// 1 when `tcp_send_reset` carries `enum sk_rst_reason` (Linux >= 6.10).
    pub send_reset_has_reason: u8,
    /// 1 when `kfree_skb` carries `enum skb_drop_reason` (Linux >= 5.17).
    pub kfree_skb_has_reason: u8,
    /// 1 when tracing programs may call bpf_get_socket_cookie (>= 5.12).
    pub socket_cookie_helper: u8,
    /// 1 when `bpf_ktime_get_boot_ns` exists (>= 5.8); otherwise records
    /// carry CLOCK_MONOTONIC.
    pub boot_clock: u8,
    /// 1 to record the kernel stack of resets whose cause must be
    /// inferred (the kernel gives no reason; userspace can read
    /// /proc/kallsyms).
    pub want_stack: u8,
    /// Report ICMP errors about TCP segments (--failures).
    pub want_icmp: u8,
    /// Report resets that arrive for no socket (--stray-resets).
    pub want_stray: u8,
    /// The firewall tracepoints (route lookups, net_dev_queue) run:
    /// kfree_skb's NETFILTER_DROP gives verdicts.
    pub want_firewall_tp: u8,
    /// 1 when TTLs come from the per-packet receive hook
    /// (`netif_receive_skb`, kernels without BPF trampolines); 0: from
    /// the functions that handle handshakes and resets.
    pub packet_ttls: u8,
    /// 1 when `tcp_reset()` takes the reset segment (`sk, skb`; not in
    /// Debian's 5.10).
    pub tcp_reset_has_skb: u8,
    /// Report segments netfilter dropped that no exact hook saw (kfree_skb
    /// NETFILTER_DROP) as silent drops, where the reply is not matched
    /// from tracepoints (`want_firewall_tp`).
    pub want_drops: u8,
    /// 1 when tracing programs may call `bpf_get_current_task_btf`
    /// (Linux 5.11+): the running task's fields are then plain loads.
    pub task_btf: u8,
    /// Padding (0).
    pub _pad2: u8,
    /// Padding (0).
    pub _pad3: u32,
    /// Only report events from these network namespaces (0 = unused
    /// slot; all four 0 = every namespace).
    pub netns_filter: [u32; NETNS_FILTER],
    /// `SKB_DROP_REASON_NETFILTER_DROP` on this kernel.
    pub drop_reason_netfilter: u32,
    /// `SK_RST_REASON_NOT_SPECIFIED` on this kernel (Linux >= 6.10).
    pub reason_not_specified: u32,
    /// `SKB_DROP_REASON_NO_SOCKET` on this kernel (Linux >= 5.17).
    pub drop_reason_no_socket: u32,
    /// Padding (0).
    pub _pad1: u32,
    /// Padding (0).
    pub _pad4: u32,
    /// Ring buffer wake-up policy: wake the reader at most once per
    /// `wakeup_interval_ns` unless `wakeup_bytes` are waiting.  The
    /// interval is `--wakeup-ms` ...
    pub wakeup_interval_ns: u64,
    /// ... and the bytes a quarter of the buffer (`--buffer-size`).
    pub wakeup_bytes: u64,
}

// The layout is shared with the eBPF object byte for byte: no implicit padding.
const _: () = assert!(core::mem::size_of::<Offsets>() == 57 * 4);
const _: () = assert!(
    core::mem::size_of::<Config>() == 57 * 4 + 4 + 28 + 4 * NETNS_FILTER + 4 + 4 + 4 + 4 + 4 + 16
);

impl Config {
    /// A configuration with every offset absent: the programs then read
    /// nothing.  The daemon always overrides it before loading.
    pub const fn empty() -> Self {
        Self {
            offsets: Offsets {
                skc_family: ABSENT,
                skc_state: ABSENT,
                skc_num: ABSENT,
                skc_dport: ABSENT,
                skc_rcv_saddr: ABSENT,
                skc_daddr: ABSENT,
                skc_v6_rcv_saddr: ABSENT,
                skc_v6_daddr: ABSENT,
                skc_net: ABSENT,
                skc_cookie: ABSENT,
                inet_sport: ABSENT,
                sk_socket: ABSENT,
                sk_err: ABSENT,
                sk_shutdown_byte: ABSENT,
                sk_flags: ABSENT,
                sk_lingertime: ABSENT,
                sk_protocol: ABSENT,
                sk_ack_backlog: ABSENT,
                sk_max_ack_backlog: ABSENT,
                tw_substate: ABSENT,
                socket_file: ABSENT,
                socket_sk: ABSENT,
                file_inode: ABSENT,
                file_private_data: ABSENT,
                inode_ino: ABSENT,
                net_inum: ABSENT,
                skb_len: ABSENT,
                skb_head: ABSENT,
                skb_data: ABSENT,
                skb_protocol: ABSENT,
                skb_network_header: ABSENT,
                skb_transport_header: ABSENT,
                skb_dev: ABSENT,
                skb_sk: ABSENT,
                dev_nd_net: ABSENT,
                tcp_snd_una: ABSENT,
                tcp_snd_nxt: ABSENT,
                tcp_rcv_nxt: ABSENT,
                tcp_copied_seq: ABSENT,
                tcp_bytes_received: ABSENT,
                tcp_bytes_acked: ABSENT,
                tcp_bytes_sent: ABSENT,
                tcp_lsndtime: ABSENT,
                tcp_rcv_tstamp: ABSENT,
                icsk_lrcvtime: ABSENT,
                tcp_linger2: ABSENT,
                task_files: ABSENT,
                task_group_leader: ABSENT,
                task_comm: ABSENT,
                task_start_boottime: ABSENT,
                files_fdt: ABSENT,
                fdtable_max_fds: ABSENT,
                fdtable_fd: ABSENT,
                flowi4_proto: ABSENT,
                flowi4_daddr: ABSENT,
                flowi6_proto: ABSENT,
                flowi6_daddr: ABSENT,
            },
            accept_ret_offset: ABSENT,
            tcp_listen: 0,
            tcp_syn_sent: 0,
            tcp_syn_recv: 0,
            tcp_time_wait: 0,
            tcp_new_syn_recv: 0,
            tcp_fin_wait1: 0,
            tcp_established: 0,
            tcp_last_ack: 0,
            tcp_fin_wait2: 0,
            tcp_closing: 0,
            tcp_close: 0,
            send_reset_has_reason: 0,
            kfree_skb_has_reason: 0,
            socket_cookie_helper: 0,
            boot_clock: 0,
            want_stack: 0,
            want_icmp: 0,
            want_stray: 0,
            want_firewall_tp: 0,
            packet_ttls: 0,
            tcp_reset_has_skb: 0,
            want_drops: 0,
            task_btf: 0,
            _pad2: 0,
            _pad3: 0,
            netns_filter: [0; NETNS_FILTER],
            drop_reason_netfilter: ABSENT,
            reason_not_specified: ABSENT,
            drop_reason_no_socket: ABSENT,
            _pad1: 0,
            _pad4: 0,
            wakeup_interval_ns: 0,
            wakeup_bytes: 0,
        }
    }
}

/// Runtime switches the daemon can change while the programs run
/// (element 0 of the `CONTROL` array map).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Control {
    /// One of the `MODE_*` constants.
    pub mode: u32,
    /// Per-CPU events per `storm_window_jiffies` above which `MODE_AUTO`
    /// stops emitting per-event records and only counts.  Jiffies, not ns:
    /// the counting path reads no clock (an inlined jiffies load instead of
    /// a helper call).
    pub storm_threshold: u32,
    /// Length of a CPU's storm-detection window, in jiffies (the daemon
    /// converts with the kernel's HZ).
    pub storm_window_jiffies: u64,
    /// Aggregation epoch (0 or 1): counts go to keys of this epoch, so the
    /// daemon can drain the other one without racing the programs.
    pub epoch: u32,
    /// Padding (0).
    pub _pad: u32,
}

/// Every reset becomes one event record.
pub const MODE_EVENTS: u32 = 0;
/// Per-event records until a CPU sees a storm, then per-key counts.
pub const MODE_AUTO: u32 = 1;
/// Only per-key counts.
pub const MODE_AGGREGATE: u32 = 2;

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain `#[repr(C)]` data made only of integers, no padding bytes
    // that are left uninitialised (explicit `_pad` fields).
    unsafe impl aya::Pod for super::Config {}
    // SAFETY: as for Config.
    unsafe impl aya::Pod for super::Control {}
}
