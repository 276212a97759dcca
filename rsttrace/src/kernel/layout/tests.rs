//! Tests of `resolve` on miniature kernels written with the BTF test
//! builder.

use rsttrace_common::config::ABSENT;

use super::*;
use crate::kernel::{
    btf::testing::Builder,
    hooks::check_tracepoint,
    names::{BitSpec, TcpState},
};

/// The integer and pointer types the miniature kernel's members use.
struct Ints {
    u8_t: u32,
    u16_t: u32,
    u32_t: u32,
    u64_t: u32,
    void_ptr: u32,
}

impl Ints {
    fn new(b: &mut Builder) -> Ints {
        Ints {
            u8_t: b.int("u8", 1),
            u16_t: b.int("u16", 2),
            u32_t: b.int("u32", 4),
            u64_t: b.int("u64", 8),
            void_ptr: b.ptr(0),
        }
    }
}

/// A miniature kernel: every member rsttrace requires, nothing more.
fn mini_kernel(with_reason: bool, shutdown_bitfield: bool) -> Vec<u8> {
    let mut b = Builder::new();
    let t = Ints::new(&mut b);
    let sock = socket_types(&mut b, &t, shutdown_bitfield);
    let skb = packet_types(&mut b, &t);
    tcp_enums(&mut b);
    tracepoints(&mut b, &t, sock, skb, with_reason);
    b.build()
}

/// `sock_common`, `sock` and what leads from a socket to its file, inode
/// and namespace; returns `struct sock`.
fn socket_types(b: &mut Builder, t: &Ints, shutdown_bitfield: bool) -> u32 {
    let (u8_t, u16_t, u32_t, u64_t, void_ptr) = (t.u8_t, t.u16_t, t.u32_t, t.u64_t, t.void_ptr);
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
    b.composite(false, "net_device", 1024, &[("nd_net", pnet, 4096, 0)]);
    sock
}

/// `sk_buff`; returns it.
fn packet_types(b: &mut Builder, t: &Ints) -> u32 {
    b.composite(
        false,
        "sk_buff",
        256,
        &[
            ("dev", t.void_ptr, 128, 0),
            ("len", t.u32_t, 896, 0),
            ("transport_header", t.u16_t, 1440, 0),
            ("network_header", t.u16_t, 1456, 0),
            ("head", t.void_ptr, 1600, 0),
        ],
    )
}

/// The TCP states and socket flags, as the kernel's enums name them.
fn tcp_enums(b: &mut Builder) {
    b.enumeration(
        "",
        &[
            ("TCP_ESTABLISHED", 1),
            ("TCP_SYN_SENT", 2),
            ("TCP_SYN_RECV", 3),
            ("TCP_FIN_WAIT1", 4),
            ("TCP_FIN_WAIT2", 5),
            ("TCP_TIME_WAIT", 6),
            ("TCP_CLOSE", 7),
            ("TCP_LAST_ACK", 9),
            ("TCP_LISTEN", 10),
            ("TCP_CLOSING", 11),
            ("TCP_NEW_SYN_RECV", 12),
            ("TCP_MAX_STATES", 14),
        ],
    );
    b.enumeration(
        "sock_flags",
        &[("SOCK_DEAD", 0), ("SOCK_DONE", 1), ("SOCK_LINGER", 4)],
    );
}

/// The tracepoints' `btf_trace_*` prototypes; `tcp_send_reset` takes a
/// reason on 6.10+ kernels (`with_reason`).
fn tracepoints(b: &mut Builder, t: &Ints, sock: u32, skb: u32, with_reason: bool) {
    let int_t = b.int("int", 4);
    let sock_ptr = b.ptr(sock);
    let skb_ptr = b.ptr(skb);
    let void_ptr = t.void_ptr;
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
        tp(b, "tcp_send_reset", &[sock_ptr, skb_ptr, reason]);
    } else {
        tp(b, "tcp_send_reset", &[sock_ptr, skb_ptr]);
    }
    tp(b, "tcp_receive_reset", &[sock_ptr]);
    tp(b, "inet_sock_set_state", &[sock_ptr, int_t, int_t]);
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
