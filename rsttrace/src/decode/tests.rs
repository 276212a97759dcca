//! Decoding records built from the shared `#[repr(C)]` types.

use rsttrace_common::event::{
    ErrorReportEvent, FirewallEvent, ListenEvent, ResetEvent, FLAG_BORN_KNOWN, FLAG_FULL_SOCK,
    FLAG_HAS_SK, FLAG_HAS_SKB, FLAG_TCP_INFO, KIND_ERROR_REPORT, KIND_FIREWALL, KIND_LISTEN,
    KIND_RESET_RECEIVED, KIND_RESET_SENT, REASON_ABSENT, VERDICT_ICMP,
};

use super::*;
use crate::{
    classify::Direction,
    kernel::names::{testing::names_618, KernelReason, Reason, TcpState},
};

fn bytes_of<T>(v: &T) -> Vec<u8> {
    // SAFETY: reading the bytes of a plain-data value.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
        .to_vec()
}

#[test]
fn decodes_a_reset_with_padding() {
    let n = names_618();
    let mut ev = ResetEvent::default();
    ev.header.kind = KIND_RESET_SENT;
    ev.ends.local_port = 8080;
    ev.ends.family = 2;
    ev.ends.remote_addr[..4].copy_from_slice(&[10, 0, 0, 2]);
    ev.reason = n.reason_value(Reason::NoSocket).unwrap();
    ev.flags = FLAG_HAS_SKB;
    ev.seg.tcp_flags = 0x02;
    let mut raw = bytes_of(&ev);
    raw.extend_from_slice(&[0; 4]);
    let Ok(Captured::Reset(r)) = decode(&raw, &n) else {
        panic!("not a reset");
    };
    assert_eq!(r.conn.local_port, 8080);
    assert_eq!(r.conn.remote.to_string(), "10.0.0.2");
    assert_eq!(r.facts.reason, Some(KernelReason::Known(Reason::NoSocket)));
    assert_eq!(r.facts.state, None);
    assert!(r.facts.bare_syn());
    assert_eq!(r.owner, None);
}

#[test]
fn received_resets_carry_no_reason() {
    let n = names_618();
    let mut ev = ResetEvent::default();
    ev.header.kind = KIND_RESET_RECEIVED;
    ev.reason = REASON_ABSENT;
    ev.flags = FLAG_HAS_SK | FLAG_FULL_SOCK;
    ev.state = n.state_value(TcpState::Established).unwrap();
    let Ok(Captured::Reset(r)) = decode(&bytes_of(&ev), &n) else {
        panic!("not a reset");
    };
    assert_eq!(r.facts.direction, Direction::Received);
    assert_eq!(r.facts.reason, None);
    assert_eq!(r.facts.state, Some(TcpState::Established));
    assert!(r.facts.sock.is_some());
}

#[test]
fn decodes_other_kinds() {
    let n = names_618();
    let mut er = ErrorReportEvent::default();
    er.header.kind = KIND_ERROR_REPORT;
    er.error = 104;
    let Ok(Captured::ErrorReport(e)) = decode(&bytes_of(&er), &n) else {
        panic!()
    };
    assert_eq!(e.errno, Some(Errno::ECONNRESET));
    let mut le = ListenEvent::default();
    le.header.kind = KIND_LISTEN;
    le.port = 80;
    le.listening = 1;
    let Ok(Captured::Listen(l)) = decode(&bytes_of(&le), &n) else {
        panic!()
    };
    assert_eq!((l.port, l.listening, l.owner), (80, true, None));
    let mut fw = FirewallEvent::default();
    fw.header.kind = KIND_FIREWALL;
    fw.verdict = VERDICT_ICMP;
    fw.icmp_type = 3;
    fw.icmp_code = 3;
    let Ok(Captured::Firewall(f)) = decode(&bytes_of(&fw), &n) else {
        panic!()
    };
    assert_eq!(
        f.verdict,
        Verdict::Icmp {
            icmp_type: 3,
            code: 3
        }
    );
}

#[test]
fn rejects_bad_records() {
    let n = names_618();
    assert_eq!(
        decode(&[1, 2, 3], &n),
        Err(DecodeError::NoHeader { len: 3 })
    );
    let mut ev = ResetEvent::default();
    ev.header.kind = KIND_RESET_RECEIVED;
    let raw = bytes_of(&ev);
    assert!(matches!(
        decode(&raw[..100], &n),
        Err(DecodeError::Short {
            kind: 2,
            len: 100,
            ..
        })
    ));
    let mut raw = raw;
    raw[0] = 77;
    assert_eq!(decode(&raw, &n), Err(DecodeError::UnknownKind(77)));
}

#[test]
fn context_from_counters() {
    let mut ev = ResetEvent::default();
    ev.header.ts_ns = 5_000_000_000;
    ev.born_ns = 2_000_000_000;
    ev.flags = FLAG_BORN_KNOWN | FLAG_TCP_INFO;
    ev.tcp.bytes_received = 10;
    ev.tcp.bytes_acked = 20;
    ev.tcp.bytes_sent = 25;
    ev.tcp.rcv_nxt = 5;
    ev.tcp.copied_seq = u32::MAX - 4; // wrapped: 10 unread
    ev.tcp.snd_nxt = 1025;
    ev.tcp.snd_una = 1000;
    // HZ 250: 87_500 jiffies = 350 s.
    ev.tcp.now_jiffies = (1u64 << 32) + 100;
    ev.tcp.rcv_tstamp = (100u32).wrapping_sub(87_500);
    ev.tcp.lrcvtime = (100u32).wrapping_sub(100_000);
    ev.tcp.lsndtime = 99;
    let names = names_618();
    let c = context(&ev, &names);
    assert_eq!(c.age_ms, Some(3000));
    assert_eq!(c.unread_bytes, Some(10));
    assert_eq!(c.unacked_bytes, Some(25));
    assert_eq!(c.bytes_sent, Some(25));
    assert_eq!(c.idle_ms, Some(350_000));
    assert_eq!(c.last_send_ms, Some(4));
    assert_eq!(context(&ResetEvent::default(), &names), Context::default());
}

/// A FIN takes a sequence number, not a byte: read up to it, nothing is
/// unread; 18 bytes and the FIN behind them are 18 bytes.  A client that
/// sent nothing has its SYN acked: bytes_sent is 0, not unknown.
#[test]
fn a_received_fin_is_no_unread_byte() {
    let names = names_618();
    let mut ev = ResetEvent {
        flags: FLAG_TCP_INFO,
        sk_flags: 1 << 1, // SOCK_DONE: the FIN came
        ..ResetEvent::default()
    };
    ev.tcp.bytes_acked = 1;
    (ev.tcp.rcv_nxt, ev.tcp.copied_seq) = (101, 100);
    let c = context(&ev, &names);
    assert_eq!(c.unread_bytes, Some(0));
    assert_eq!(c.bytes_sent, Some(0));
    (ev.tcp.rcv_nxt, ev.tcp.copied_seq) = (119, 100);
    assert_eq!(context(&ev, &names).unread_bytes, Some(18));
    ev.sk_flags = 0;
    assert_eq!(context(&ev, &names).unread_bytes, Some(19));
}
