//! Sample records for the output tests (and others: `full_reset` is used
//! by the config tests): one of each kind, with every optional field set
//! and with every optional field empty.

use crate::vocab::errno::Errno;
use std::sync::Arc;

use crate::{
    classify::{Cause, CauseSource, Direction},
    kernel::names::{KernelReason, Reason, TcpState},
    model::{
        conn::{Comm, Conn, Segment, Task},
        failure::{Failure, FailureKind},
        lost::{Lost, LostWhy},
        owner::{Container, Owner, OwnerSource},
        reset::{Context, Delivered, ListenerNote, Origin, Paired, Reset},
        summary::Summary,
        suppressed::Suppressed,
        Record,
    },
};

fn task(pid: u32, comm: &str) -> Task {
    Task {
        pid,
        comm: Comm::from_str_lossy(comm),
    }
}

fn conn(v6: bool) -> Conn {
    let (l, r) = if v6 {
        ("fd00::1", "fd00::2")
    } else {
        ("10.0.0.1", "10.0.0.2")
    };
    Conn {
        local: l.parse().unwrap(),
        local_port: 80,
        remote: r.parse().unwrap(),
        remote_port: 45678,
    }
}

/// nginx in a Kubernetes pod: every owner field set.
fn containerised_owner() -> Owner {
    Owner {
        pid: 812,
        comm: Comm::from_str_lossy("nginx"),
        source: OwnerSource::Socket,
        container: Some(Arc::new(Container {
            cgroup: "/kubepods/pod1/abc".into(),
            runtime: Some("containerd"),
            id: Some("a".repeat(64)),
            pod_uid: Some("0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0".into()),
            pod_namespace: Some("shop".into()),
            pod_name: Some("web-7d4b9".into()),
        })),
        exited: Some(false),
    }
}

/// Every connection counter known.
fn full_context() -> Context {
    Context {
        age_ms: Some(1),
        bytes_sent: Some(2),
        bytes_acked: Some(3),
        bytes_received: Some(4),
        unread_bytes: Some(5),
        unacked_bytes: Some(6),
        idle_ms: Some(7),
        last_send_ms: Some(8),
    }
}

/// A reset with every optional field set.
pub(crate) fn full_reset() -> Reset {
    Reset {
        unix_ns: 1_795_968_301_123_456_789,
        direction: Direction::Sent,
        cause: Cause::StaleConnection,
        cause_source: CauseSource::KernelReason,
        kernel_reason: Some(KernelReason::Known(Reason::TcpFlags)),
        state: Some(TcpState::Listen),
        conn: conn(false),
        netns: 4026531840,
        owner: Some(containerised_owner()),
        app_errno: Some(Errno::ECONNRESET),
        listener: Some(true),
        history: Some(ListenerNote {
            listening_now: true,
            last: Some(task(812, "nginx")),
            stopped_ms: Some(4200),
        }),
        segment: Some(Segment {
            flags: 0x18,
            seq: 1,
            ack: 2,
            payload: 3,
        }),
        context: full_context(),
        task: Some(task(99, "curl")),
        killer: Some(task(100, "ss")),
        delivered: Some(Delivered {
            errno: Errno::ECONNABORTED,
            to: Some(task(812, "nginx")),
        }),
        sock_cookie: Some(12345),
        sock_inode: Some(678),
        cpu: 1,
        owner_closed_ms: Some(300),
        community_id: "1:wCb3OG7yAFWelaUydu0D+125CLM=".into(),
        rst_ttl: Some(61),
        peer_ttl: Some(61),
        origin: Some(Origin::Local),
        other_end: Some(Paired {
            owner: Some(task(900, "redis-server")),
            netns: 7,
            cause: Some(Cause::AbortLinger),
        }),
    }
}

/// A reset with every optional field empty.
pub(crate) fn bare_reset() -> Reset {
    Reset {
        kernel_reason: None,
        state: None,
        owner: None,
        app_errno: None,
        listener: None,
        history: None,
        segment: None,
        context: Context::default(),
        killer: None,
        delivered: None,
        sock_cookie: None,
        sock_inode: None,
        owner_closed_ms: None,
        rst_ttl: None,
        peer_ttl: None,
        origin: None,
        other_end: None,
        conn: conn(true),
        ..full_reset()
    }
}

/// A SYN that timed out after an ICMP error, owned by a comm with
/// awkward characters.
fn failure() -> Failure {
    Failure {
        unix_ns: 0,
        kind: FailureKind::SynTimeout,
        errno: Some(Errno::ETIMEDOUT),
        errno_for_peer: false,
        conn: conn(false),
        netns: 1,
        // A comm may hold spaces, quotes and `=`.
        owner: Some(task(7, "my \"app\" a=b")),
        icmp: Some(crate::model::failure::Icmp {
            v6: false,
            icmp_type: 3,
            code: 13,
            from: "10.0.0.254".parse().unwrap(),
        }),
        community_id: "1:x".into(),
    }
}

/// A storm summary of refused connections to port 80.
fn suppressed() -> Suppressed {
    Suppressed {
        count: 10,
        first_unix_ns: 0,
        last_unix_ns: 1,
        direction: Direction::Sent,
        cause: Cause::NoListener,
        cause_source: CauseSource::KernelReason,
        kernel_reason: Some(KernelReason::Known(Reason::NoSocket)),
        state: Some(TcpState::Listen),
        port: 80,
        netns: 1,
        owner: Some(task(7, "nginx")),
        example: "10.0.0.2".parse().unwrap(),
        example_port: 4000,
    }
}

/// The top row of a `--summary` period.
fn summary() -> Summary {
    Summary {
        unix_ns: 0,
        period_s: 60,
        rank: 1,
        count: 7,
        suppressed: 5,
        cause: Cause::AbortUnreadData,
        comm: Some(Comm::from_str_lossy("nginx")),
        port: 8080,
        period_count: 412,
    }
}

/// One record of each kind, with every optional field set and empty.
pub(super) fn samples() -> Vec<Record> {
    let (failure, suppressed) = (failure(), suppressed());
    let received = Reset {
        direction: Direction::Received,
        cause: Cause::PeerReset,
        ..full_reset()
    };
    vec![
        Record::Reset(full_reset()),
        Record::Reset(received),
        Record::Reset(bare_reset()),
        Record::Failure(failure.clone()),
        Record::Failure(Failure {
            errno: None,
            owner: None,
            icmp: None,
            ..failure
        }),
        Record::Suppressed(suppressed.clone()),
        Record::Suppressed(Suppressed {
            kernel_reason: None,
            state: None,
            owner: None,
            ..suppressed
        }),
        Record::Lost(Lost {
            unix_ns: 0,
            count: 3,
            why: LostWhy::Nested,
        }),
        Record::Summary(summary()),
        Record::Summary(Summary {
            rank: 2,
            count: 3,
            suppressed: 0,
            cause: Cause::NoListener,
            comm: None,
            port: 81,
            ..summary()
        }),
        Record::Stray(crate::model::stray::Stray {
            unix_ns: 0,
            conn: conn(false),
            netns: 1,
            rst_ttl: 63,
            seq: 5,
            community_id: "1:y".into(),
        }),
    ]
}
