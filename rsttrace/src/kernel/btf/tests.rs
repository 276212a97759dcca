//! Tests of the BTF reader: the running kernel's BTF, and blobs written
//! by `testing::Builder`.

use super::testing::Builder;
use super::*;

#[test]
fn reads_this_kernel() {
    // The real thing: the members rsttrace needs.  Every machine this
    // project builds on has kernel BTF (the e2e suite needs it too).
    let data = std::fs::read("/sys/kernel/btf/vmlinux").expect("/sys/kernel/btf/vmlinux");
    let btf = Btf::parse(&data).unwrap();
    assert!(btf.member_path("sock_common", "skc_state").is_some());
    assert!(btf.tracepoint_args("tcp_send_reset").is_some());
    assert!(btf.enum_containing("TCP_LISTEN").is_some());
}

/// A blob with the shapes the reader must walk: members inside anonymous
/// unions, nested structs, enums and a tracepoint's prototype.
fn sample() -> Vec<u8> {
    let mut b = Builder::new();
    let u8_t = b.int("unsigned char", 1);
    let u16_t = b.int("short unsigned int", 2);
    let u32_t = b.int("unsigned int", 4);
    socket_types(&mut b, u8_t, u16_t, u32_t);
    reset_tracepoint(&mut b);
    let arr = b.array(u8_t, u32_t, 16);
    b.composite(false, "task_struct", 32, &[("comm", arr, 64, 0)]);
    b.build()
}

/// `sock_common` with its addresses in an anonymous union, `sock` around
/// it, and the namespace behind `skc_net`.
fn socket_types(b: &mut Builder, u8_t: u32, u16_t: u32, u32_t: u32) {
    let be32 = b.typedef("__be32", u32_t);
    // struct { __be32 skc_daddr; __be32 skc_rcv_saddr; } inside a union
    let pair = b.composite(
        false,
        "",
        8,
        &[("skc_daddr", be32, 0, 0), ("skc_rcv_saddr", be32, 32, 0)],
    );
    let addr_union = b.composite(
        true,
        "",
        8,
        &[("skc_addrpair", u32_t, 0, 0), ("", pair, 0, 0)],
    );
    let ns_common = b.composite(
        false,
        "ns_common",
        8,
        &[("stashed", u32_t, 0, 0), ("inum", u32_t, 32, 0)],
    );
    let net = b.composite(
        false,
        "net",
        64,
        &[("passive", u32_t, 0, 0), ("ns", ns_common, 128, 0)],
    );
    let net_ptr = b.ptr(net);
    let sock_common = b.composite(
        false,
        "sock_common",
        32,
        &[
            ("", addr_union, 0, 0),
            ("skc_state", u8_t, 64, 0),
            ("skc_net", net_ptr, 128, 0),
        ],
    );
    b.composite(
        false,
        "sock",
        48,
        &[
            ("__sk_common", sock_common, 0, 0),
            ("sk_shutdown", u8_t, 264, 2),
            ("sk_protocol", u16_t, 272, 0),
        ],
    );
}

/// The reset enum, the TCP states and `tcp_send_reset`'s prototype,
/// whose socket argument points to a forward-declared struct.
fn reset_tracepoint(b: &mut Builder) {
    b.enumeration(
        "sk_rst_reason",
        &[
            ("SK_RST_REASON_NOT_SPECIFIED", 0),
            ("SK_RST_REASON_NO_SOCKET", 1),
        ],
    );
    b.enumeration("", &[("TCP_ESTABLISHED", 1), ("TCP_LISTEN", 10)]);
    let void_ptr = b.ptr(0);
    let fwd = b.struct_placeholder();
    let sock_ptr = b.ptr(fwd);
    let reason = b.enumeration("sk_rst_reason", &[]);
    let proto = b.func_proto(
        0,
        &[("", void_ptr), ("", sock_ptr), ("", void_ptr), ("", reason)],
    );
    let proto_ptr = b.ptr(proto);
    b.typedef("btf_trace_tcp_send_reset", proto_ptr);
}

impl Builder {
    fn struct_placeholder(&mut self) -> u32 {
        self.composite(false, "fwd_sock", 0, &[])
    }
}

#[test]
fn members_through_anonymous_unions() {
    let data = sample();
    let btf = Btf::parse(&data).unwrap();
    let daddr = btf.member_path("sock_common", "skc_daddr").unwrap();
    assert_eq!(daddr.byte_offset(), Some(0));
    let saddr = btf.member_path("sock_common", "skc_rcv_saddr").unwrap();
    assert_eq!(saddr.byte_offset(), Some(4));
    assert_eq!(btf.size_of(saddr.type_id), Some(4));
    assert_eq!(
        btf.member_path("sock_common", "skc_state")
            .unwrap()
            .byte_offset(),
        Some(8)
    );
    assert!(btf.member_path("sock_common", "nope").is_none());
    assert!(btf.member_path("nosuch", "skc_state").is_none());
}

#[test]
fn nested_paths_sum_offsets() {
    let data = sample();
    let btf = Btf::parse(&data).unwrap();
    assert_eq!(
        btf.member_path("net", "ns.inum").unwrap().byte_offset(),
        Some(20)
    );
    assert_eq!(
        btf.member_path("sock", "__sk_common.skc_state")
            .unwrap()
            .byte_offset(),
        Some(8)
    );
}

#[test]
fn bitfields_have_no_byte_offset() {
    let data = sample();
    let btf = Btf::parse(&data).unwrap();
    let shutdown = btf.member_path("sock", "sk_shutdown").unwrap();
    assert_eq!(shutdown.bitfield_size, 2);
    assert_eq!(shutdown.bit_offset, 264);
    assert_eq!(shutdown.byte_offset(), None);
    let proto = btf.member_path("sock", "sk_protocol").unwrap();
    assert_eq!(proto.byte_offset(), Some(34));
    assert_eq!(btf.size_of(proto.type_id), Some(2));
}

#[test]
fn arrays_have_sizes() {
    let data = sample();
    let btf = Btf::parse(&data).unwrap();
    let comm = btf.member_path("task_struct", "comm").unwrap();
    assert_eq!(comm.byte_offset(), Some(8));
    assert_eq!(btf.size_of(comm.type_id), Some(16));
}

#[test]
fn enums_by_name_and_anonymous() {
    let data = sample();
    let btf = Btf::parse(&data).unwrap();
    let reasons = btf.enum_values("sk_rst_reason").unwrap();
    assert_eq!(reasons[1], ("SK_RST_REASON_NO_SOCKET", 1));
    let states = btf.enum_containing("TCP_LISTEN").unwrap();
    assert!(states.contains(&("TCP_LISTEN", 10)));
    assert!(btf.enum_containing("TCP_NOPE").is_none());
}

#[test]
fn tracepoint_args_skip_private_data() {
    let data = sample();
    let btf = Btf::parse(&data).unwrap();
    assert_eq!(
        btf.tracepoint_args("tcp_send_reset").unwrap(),
        vec![
            "*fwd_sock".to_string(),
            "*void".to_string(),
            "enum sk_rst_reason".to_string()
        ]
    );
    assert!(btf.tracepoint_args("tcp_receive_reset").is_none());
}

#[test]
fn function_arguments() {
    let mut b = Builder::new();
    let int = b.int("int", 4);
    let sock = b.composite(false, "sock", 8, &[]);
    let sock_ptr = b.ptr(sock);
    let proto = b.func_proto(sock_ptr, &[("sk", sock_ptr), ("flags", int)]);
    b.func("inet_csk_accept", proto);
    let data = b.build();
    let btf = Btf::parse(&data).unwrap();
    assert_eq!(
        btf.func_args("inet_csk_accept").unwrap(),
        ["*sock".to_string(), "int".to_string()]
    );
    assert!(btf.has_func("inet_csk_accept"));
    assert!(btf.func_args("tcp_reset").is_none());
}

#[test]
fn rejects_garbage() {
    assert_eq!(
        Btf::parse(b"hello world, not btf at all").err(),
        Some(BtfError::BadMagic)
    );
    assert_eq!(Btf::parse(&[0x9f]).err(), Some(BtfError::Truncated));
    let mut blob = sample();
    blob.truncate(blob.len() - 100);
    assert!(Btf::parse(&blob).is_err());
}
