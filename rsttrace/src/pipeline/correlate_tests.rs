//! The correlator on hand-made events: which errno report belongs to which
//! reset.

use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::classify::{classify, Facts};

const SK: u64 = 0xffff_8880_1234_5600;

fn conn(local_port: u16, remote_port: u16) -> Conn {
    Conn {
        local: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        local_port,
        remote: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        remote_port,
    }
}

fn received_reset(sk: u64, conn: Conn) -> Draft {
    let facts = Facts::bare(Direction::Received);
    Draft {
        class: classify(&facts),
        ev: CapturedReset {
            sk,
            sock_ino: 7,
            ..CapturedReset::socketless(1, 0, facts, conn, 1)
        },
        delivered: None,
        other_end: None,
    }
}

fn report(sk: u64, conn: Conn, errno: Errno) -> ErrorReport {
    ErrorReport {
        ts_ns: 2,
        sk,
        sock_ino: 8,
        errno: Some(errno),
        conn,
        netns: 1,
        synced: false,
        owner: None,
    }
}

/// The reset's own errno report completes it and is no failure.
#[test]
fn a_resets_own_report_belongs_to_it() {
    let mut c = Correlator::new(Duration::from_millis(50), true);
    let mut out = vec![];
    let now = Instant::now();
    c.on_reset(received_reset(SK, conn(40000, 9501)), now, &mut out);
    let own = c.on_report(
        &report(SK, conn(40000, 9501), Errno::ECONNREFUSED),
        now,
        &mut out,
    );
    assert!(!own);
    c.release_due(now, true, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].delivered.map(|d| d.0), Some(Errno::ECONNREFUSED));
}

/// The next connection reuses the reset socket's slab slot: its own
/// failure is not taken for the reset's report.
#[test]
fn a_reused_socket_address_is_another_socket() {
    let mut c = Correlator::new(Duration::from_millis(50), true);
    let mut out = vec![];
    let now = Instant::now();
    c.on_reset(received_reset(SK, conn(40000, 9501)), now, &mut out);
    c.on_report(
        &report(SK, conn(40000, 9501), Errno::ECONNREFUSED),
        now,
        &mut out,
    );
    let own = c.on_report(
        &report(SK, conn(40002, 9503), Errno::EHOSTUNREACH),
        now + Duration::from_millis(100),
        &mut out,
    );
    assert!(own, "the second connection's failure was swallowed");
}

fn sent_reset(conn: Conn) -> Draft {
    sent_reset_at(1, conn)
}

fn sent_reset_at(ts_ns: u64, conn: Conn) -> Draft {
    let facts = Facts::bare(Direction::Sent);
    Draft {
        class: classify(&facts),
        ev: CapturedReset::socketless(ts_ns, 0, facts, conn, 1),
        delivered: None,
        other_end: None,
    }
}

/// The directions and whether each learnt of its other end, in the order
/// the drafts came out.
fn paired(out: &[Ready]) -> Vec<(Direction, bool)> {
    out.iter()
        .map(|d| (d.ev.facts.direction, d.other_end.is_some()))
        .collect()
}

/// A reset sent and received on this host: the two halves find each
/// other, whichever comes first.
#[test]
fn both_ends_of_a_local_reset_pair_up_in_either_order() {
    let received = conn(40000, 9501);
    for sent_first in [true, false] {
        let mut c = Correlator::new(Duration::from_millis(50), false);
        let mut out = vec![];
        let now = Instant::now();
        let (first, second) = if sent_first {
            (
                sent_reset(received.reversed()),
                received_reset(SK, received),
            )
        } else {
            (
                received_reset(SK, received),
                sent_reset(received.reversed()),
            )
        };
        c.on_reset(first, now, &mut out);
        assert!(out.is_empty(), "the first half waits for the other");
        c.on_reset(second, now, &mut out);
        let (a, b) = (out[0].ev.facts.direction, out[1].ev.facts.direction);
        assert_eq!(paired(&out), [(a, true), (b, true)]);
        assert_ne!(a, b);
        assert!(!c.has_held());
    }
}

/// Of two sent resets for one connection, the received one pairs with the
/// later; a half released unpaired is not found afterwards.
#[test]
fn the_latest_waiting_half_is_the_partner() {
    let received = conn(40000, 9501);
    let mut c = Correlator::new(Duration::from_millis(50), false);
    let mut out = vec![];
    let now = Instant::now();
    c.on_reset(sent_reset_at(1, received.reversed()), now, &mut out);
    c.on_reset(sent_reset_at(2, received.reversed()), now, &mut out);
    c.on_reset(received_reset(SK, received), now, &mut out);
    assert_eq!(
        paired(&out),
        [(Direction::Sent, true), (Direction::Received, true)]
    );
    assert_eq!(out[0].ev.ts_ns, 2, "the later sent reset");
    let later = now + Duration::from_millis(60);
    c.release_due(later, false, &mut out);
    assert_eq!(paired(&out[2..]), [(Direction::Sent, false)]);
    c.on_reset(received_reset(SK, received), later, &mut out);
    c.release_due(later + Duration::from_millis(60), false, &mut out);
    assert_eq!(paired(&out[3..]), [(Direction::Received, false)]);
    assert!(!c.has_held());
}

/// Once paired, a half is no longer in the index by any key: a sent reset
/// is entered by its tuple and by its NAT key, and pairing by the tuple
/// must take the NAT key out too, or every pair of a storm leaves one
/// behind (and a later reset could pair with a half already paired).
#[test]
fn a_paired_half_leaves_the_index_by_every_key() {
    use crate::model::conn::{tcp_flags::ACK, Segment};
    let mut c = Correlator::new(Duration::from_millis(50), false);
    let mut out = vec![];
    let now = Instant::now();
    for port in 40000..40100 {
        let received = conn(port, 9501);
        let mut sent = sent_reset(received.reversed());
        sent.ev.facts.segment = Some(Segment {
            flags: ACK,
            seq: 1,
            ack: u32::from(port),
            payload: 0,
        });
        assert!(nat_key(&sent).is_some());
        c.on_reset(sent, now, &mut out);
        c.on_reset(received_reset(SK, received), now, &mut out);
    }
    assert_eq!(out.len(), 200);
    assert!(out.iter().all(|d| d.other_end.is_some()));
    assert!(!c.has_held());
    assert_eq!(c.sent.by_conn.len(), 0, "keys left behind");
    assert_eq!(c.recv.by_conn.len(), 0, "keys left behind");
}
