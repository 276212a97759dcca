//! What the eBPF programs and the decoder need to know about the running
//! kernel, read from BTF and tracefs at start-up: struct member offsets,
//! tracepoint signatures, and the names behind numbers (reset reasons, TCP
//! states, socket flag bits).  Nothing here is compiled in for one kernel.

use rsttrace_common::config::{Config, Offsets};
use thiserror::Error;

use super::{
    btf::Btf,
    hooks::{self, Hooks},
    names::{BitSpec, KernelNames, Reason, TcpState},
    tracefs::EventFormat,
};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("this kernel is not supported: its BTF has {0}")]
    MissingMember(String),
    #[error("kernel BTF has no BTF tracepoint {0} (Linux >= 5.5 with CONFIG_DEBUG_INFO_BTF is required)")]
    MissingTracepoint(String),
    #[error("BTF tracepoint {name} has arguments ({found}) where rsttrace expects ({expected})")]
    UnexpectedSignature {
        name: String,
        found: String,
        expected: String,
    },
    #[error("kernel BTF has no enumerator {0}")]
    MissingEnumerator(String),
}

/// Where `recursion_misses` sits in uapi `struct bpf_prog_info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgInfoLayout {
    pub recursion_misses: u32,
    pub size: u32,
}

pub struct KernelFacts {
    pub config: Config,
    pub prog_info: Option<ProgInfoLayout>,
    pub names: KernelNames,
    pub hooks: Hooks,
    /// Features left out on this kernel, one line each, for the log.
    pub degraded: Vec<String>,
}

type Slot = fn(&mut Offsets) -> &mut u32;

/// A kernel member the programs read: where to look (alternatives, newest
/// kernels first), where the offset goes, how many bytes the program reads,
/// and whether rsttrace can work without it.
struct Member {
    paths: &'static [(&'static str, &'static str)],
    slot: Slot,
    size: u32,
    required: bool,
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

const MEMBERS: &[Member] = members![
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
    ("sk_buff", "head", skb_head, 8, true),
    ("sk_buff", "data", skb_data, 8, false),
    ("sk_buff", "protocol", skb_protocol, 2, false),
    ("sk_buff", "network_header", skb_network_header, 2, true),
    ("sk_buff", "transport_header", skb_transport_header, 2, true),
    ("sk_buff", "dev", skb_dev, 8, true),
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
fn locate(btf: &Btf, member: &Member) -> Result<u32, String> {
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

/// Resolves struct offsets, names and hooks from BTF, plus the accept
/// syscall record layout and the reason names from tracefs when BTF lacks
/// them.
pub fn resolve(
    btf: &Btf,
    accept_exit: Option<&EventFormat>,
    send_reset: Option<&EventFormat>,
) -> Result<KernelFacts, LayoutError> {
    let mut config = Config::empty();
    let mut degraded = vec![];
    let mut missing_optional = vec![];
    for member in MEMBERS {
        match locate(btf, member) {
            Ok(off) => *(member.slot)(&mut config.offsets) = off,
            Err(why) if member.required => return Err(LayoutError::MissingMember(why)),
            Err(why) => missing_optional.push(why),
        }
    }
    let names = names(btf, &mut config, send_reset)?;
    let hooks = hooks::detect(btf, &mut config, accept_exit, &mut degraded)?;
    if !missing_optional.is_empty() {
        degraded.push(format!(
            "not in this kernel's BTF (fields left empty): {}",
            missing_optional.join(", ")
        ));
    }
    let prog_info = btf
        .member_path("bpf_prog_info", "recursion_misses")
        .and_then(|l| l.byte_offset())
        .zip(
            btf.struct_id("bpf_prog_info")
                .and_then(|id| btf.size_of(id)),
        )
        .map(|(recursion_misses, size)| ProgInfoLayout {
            recursion_misses,
            size,
        });
    Ok(KernelFacts {
        config,
        prog_info,
        names,
        hooks,
        degraded,
    })
}

/// TCP states, socket flag bits, `sk_shutdown` and reset reason names.
fn names(
    btf: &Btf,
    config: &mut Config,
    send_reset: Option<&EventFormat>,
) -> Result<KernelNames, LayoutError> {
    let mut names = KernelNames::default();
    // sk_shutdown: a u8 since 5.x, a 2-bit field before.
    let shutdown = btf.member_path("sock", "sk_shutdown").ok_or_else(|| {
        LayoutError::MissingMember("no member `sk_shutdown` in struct sock".into())
    })?;
    config.offsets.sk_shutdown_byte = shutdown.bit_offset / 8;
    let bits = if shutdown.bitfield_size == 0 {
        8
    } else {
        shutdown.bitfield_size.min(8)
    };
    names.sk_shutdown = Some(BitSpec {
        shift: (shutdown.bit_offset % 8) as u8,
        mask: ((1u16 << bits) - 1) as u8,
    });
    // sk_protocol: only a plain u16 can be read directly.
    if let Some(loc) = btf.member_path("sock", "sk_protocol") {
        if let (Some(off), Some(2)) = (loc.byte_offset(), btf.size_of(loc.type_id)) {
            config.offsets.sk_protocol = off;
        }
    }
    states(btf, config, &mut names)?;
    if let Some(flags) = btf.enum_values("sock_flags") {
        for (name, value) in flags {
            match name {
                "SOCK_DEAD" => names.sock_dead_bit = Some(value as u32),
                "SOCK_LINGER" => names.sock_linger_bit = Some(value as u32),
                _ => {}
            }
        }
    }
    // Reset reason names: BTF enum, else the tracepoint's print format.
    if let Some(values) = btf.enum_values("sk_rst_reason") {
        for (name, value) in values {
            let short = name.strip_prefix("SK_RST_REASON_").unwrap_or(name);
            names.add_reason(value as u32, short);
        }
    } else if let Some(fmt) = send_reset {
        for (value, name) in fmt.symbols("reason") {
            names.add_reason(value as u32, &name);
        }
    }
    if let Some(v) = names.reason_value(Reason::NotSpecified) {
        config.reason_not_specified = v;
    }
    Ok(names)
}

/// TCP states (include/net/tcp_states.h), by name.
fn states(btf: &Btf, config: &mut Config, names: &mut KernelNames) -> Result<(), LayoutError> {
    let states = btf
        .enum_containing("TCP_ESTABLISHED")
        .ok_or_else(|| LayoutError::MissingEnumerator("TCP_ESTABLISHED".into()))?;
    for (name, value) in states {
        if let (Some(short), Ok(v)) = (name.strip_prefix("TCP_"), u8::try_from(value)) {
            names.add_state(v, short);
        }
    }
    let state = |s: TcpState| -> Result<u8, LayoutError> {
        names
            .state_value(s)
            .ok_or_else(|| LayoutError::MissingEnumerator(format!("TCP_{}", s.name())))
    };
    config.tcp_listen = state(TcpState::Listen)?;
    config.tcp_syn_sent = state(TcpState::SynSent)?;
    config.tcp_syn_recv = state(TcpState::SynRecv)?;
    config.tcp_time_wait = state(TcpState::TimeWait)?;
    config.tcp_new_syn_recv = state(TcpState::NewSynRecv)?;
    config.tcp_fin_wait1 = state(TcpState::FinWait1)?;
    config.tcp_established = state(TcpState::Established)?;
    config.tcp_last_ack = state(TcpState::LastAck)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use rsttrace_common::config::ABSENT;

    use super::*;
    use crate::kernel::{btf::testing::Builder, hooks::check_tracepoint};

    /// A miniature kernel: every member rsttrace requires, nothing more.
    fn mini_kernel(with_reason: bool, shutdown_bitfield: bool) -> Vec<u8> {
        let mut b = Builder::new();
        let u8_t = b.int("u8", 1);
        let u16_t = b.int("u16", 2);
        let u32_t = b.int("u32", 4);
        let u64_t = b.int("u64", 8);
        let void_ptr = b.ptr(0);
        let pnet = b.composite(false, "", 8, &[("net", void_ptr, 0, 0)]);
        b.composite(
            false,
            "sock_common",
            64,
            &[
                ("skc_daddr", u32_t, 0, 0),
                ("skc_rcv_saddr", u32_t, 32, 0),
                ("skc_dport", u16_t, 96, 0),
                ("skc_num", u16_t, 112, 0),
                ("skc_family", u16_t, 128, 0),
                ("skc_state", u8_t, 144, 0),
                ("skc_net", pnet, 192, 0),
                ("skc_flags", u64_t, 256, 0),
            ],
        );
        let shutdown = if shutdown_bitfield {
            ("sk_shutdown", u8_t, 1027, 2)
        } else {
            ("sk_shutdown", u8_t, 1024, 0)
        };
        let sock = b.composite(
            false,
            "sock",
            256,
            &[
                ("sk_socket", void_ptr, 512, 0),
                ("sk_err", u32_t, 576, 0),
                ("sk_flags", u64_t, 640, 0),
                ("sk_lingertime", u64_t, 704, 0),
                shutdown,
                ("sk_protocol", u16_t, 1040, 0),
            ],
        );
        b.composite(
            false,
            "socket",
            32,
            &[("file", void_ptr, 64, 0), ("sk", void_ptr, 128, 0)],
        );
        b.composite(
            false,
            "file",
            64,
            &[
                ("f_inode", void_ptr, 64, 0),
                ("private_data", void_ptr, 128, 0),
            ],
        );
        b.composite(false, "inode", 128, &[("i_ino", u64_t, 512, 0)]);
        let ns = b.composite(false, "ns_common", 16, &[("inum", u32_t, 64, 0)]);
        b.composite(false, "net", 256, &[("ns", ns, 1024, 0)]);
        let skb = b.composite(
            false,
            "sk_buff",
            256,
            &[
                ("dev", void_ptr, 128, 0),
                ("len", u32_t, 896, 0),
                ("transport_header", u16_t, 1440, 0),
                ("network_header", u16_t, 1456, 0),
                ("head", void_ptr, 1600, 0),
            ],
        );
        b.composite(false, "net_device", 1024, &[("nd_net", pnet, 4096, 0)]);
        b.enumeration(
            "",
            &[
                ("TCP_ESTABLISHED", 1),
                ("TCP_SYN_SENT", 2),
                ("TCP_SYN_RECV", 3),
                ("TCP_FIN_WAIT1", 4),
                ("TCP_TIME_WAIT", 6),
                ("TCP_CLOSE", 7),
                ("TCP_LAST_ACK", 9),
                ("TCP_LISTEN", 10),
                ("TCP_NEW_SYN_RECV", 12),
                ("TCP_MAX_STATES", 14),
            ],
        );
        b.enumeration("sock_flags", &[("SOCK_DEAD", 0), ("SOCK_LINGER", 4)]);
        let int_t = b.int("int", 4);
        let sock_ptr = b.ptr(sock);
        let skb_ptr = b.ptr(skb);
        let tp = |b: &mut Builder, name: &str, args: &[u32]| {
            let mut params = vec![("", void_ptr)];
            params.extend(args.iter().map(|&a| ("", a)));
            let proto = b.func_proto(0, &params);
            let p = b.ptr(proto);
            b.typedef(&format!("btf_trace_{name}"), p);
        };
        if with_reason {
            let reason = b.enumeration(
                "sk_rst_reason",
                &[
                    ("SK_RST_REASON_NOT_SPECIFIED", 0),
                    ("SK_RST_REASON_NO_SOCKET", 1),
                ],
            );
            tp(&mut b, "tcp_send_reset", &[sock_ptr, skb_ptr, reason]);
        } else {
            tp(&mut b, "tcp_send_reset", &[sock_ptr, skb_ptr]);
        }
        tp(&mut b, "tcp_receive_reset", &[sock_ptr]);
        tp(&mut b, "inet_sock_set_state", &[sock_ptr, int_t, int_t]);
        tp(&mut b, "tcp_destroy_sock", &[sock_ptr]);
        b.build()
    }

    #[test]
    fn resolves_a_complete_kernel() {
        let data = mini_kernel(true, false);
        let btf = Btf::parse(&data).unwrap();
        let facts = resolve(&btf, None, None).unwrap();
        let o = facts.config.offsets;
        assert_eq!(o.skc_family, 16);
        assert_eq!(o.skc_net, 24);
        assert_eq!(o.net_inum, 136);
        assert_eq!(o.dev_nd_net, 512);
        assert_eq!(o.skb_head, 200);
        assert_eq!(o.sk_shutdown_byte, 128);
        assert_eq!(o.sk_protocol, 130);
        assert_eq!(o.tcp_snd_una, ABSENT);
        assert_eq!(
            facts.names.sk_shutdown,
            Some(BitSpec {
                shift: 0,
                mask: 0xff
            })
        );
        assert_eq!(facts.config.tcp_listen, 10);
        assert_eq!(facts.config.tcp_new_syn_recv, 12);
        assert_eq!(facts.config.send_reset_has_reason, 1);
        assert_eq!(facts.names.reason(1).name(), Some("NO_SOCKET"));
        assert_eq!(facts.names.state(10), Some(TcpState::Listen));
        assert_eq!(facts.names.state(14), None);
        assert!(facts.names.lingers(1 << 4));
        assert!(!facts.names.is_dead(1 << 4));
        assert!(!facts.hooks.accept);
        assert!(!facts.hooks.error_report);
    }

    #[test]
    fn old_kernel_without_reason_uses_print_format_and_bitfields() {
        let data = mini_kernel(false, true);
        let btf = Btf::parse(&data).unwrap();
        let facts = resolve(&btf, None, None).unwrap();
        assert_eq!(facts.config.send_reset_has_reason, 0);
        assert!(!facts.names.has_reasons());
        assert_eq!(
            facts.names.sk_shutdown,
            Some(BitSpec {
                shift: 3,
                mask: 0b11
            })
        );
        assert_eq!(facts.names.sk_shutdown.unwrap().extract(0b0001_1000), 0b11);
        assert!(!facts.hooks.reset_reason);
    }

    #[test]
    fn accept_hook_needs_the_ret_field() {
        let data = mini_kernel(true, false);
        let btf = Btf::parse(&data).unwrap();
        let fmt = EventFormat::parse("\tfield:long ret;\toffset:16;\tsize:8;\tsigned:1;\n");
        // The mini kernel has no fd table in BTF: still off.
        let facts = resolve(&btf, Some(&fmt), None).unwrap();
        assert!(!facts.hooks.accept);
    }

    #[test]
    fn missing_required_member_is_an_error() {
        let mut b = Builder::new();
        b.int("u8", 1);
        let data = b.build();
        let btf = Btf::parse(&data).unwrap();
        let err = resolve(&btf, None, None).err().unwrap();
        assert!(matches!(err, LayoutError::MissingMember(_)), "{err}");
        assert!(err.to_string().contains("skc_family"), "{err}");
    }

    #[test]
    fn signature_mismatch_is_an_error() {
        let mut b = Builder::new();
        let int_t = b.int("int", 4);
        let void_ptr = b.ptr(0);
        let proto = b.func_proto(0, &[("", void_ptr), ("", int_t)]);
        let p = b.ptr(proto);
        b.typedef("btf_trace_tcp_receive_reset", p);
        let data = b.build();
        let btf = Btf::parse(&data).unwrap();
        let err = check_tracepoint(&btf, "tcp_receive_reset", &["*sock"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "BTF tracepoint tcp_receive_reset has arguments (int) where rsttrace expects (*sock)"
        );
        assert!(matches!(
            check_tracepoint(&btf, "nope", &[]),
            Err(LayoutError::MissingTracepoint(_))
        ));
    }
}
