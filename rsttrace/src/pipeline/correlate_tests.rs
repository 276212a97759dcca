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
