//! Records from drafts: the reset or failure, with everything enrichment
//! found.

use super::correlate::{Draft, OtherEnd};
use crate::{
    classify::Direction,
    decode::{ErrorReport, FirewallVerdict, KernelOwner, StrayReset},
    kernel::clock::WallClock,
    model::{
        conn::Task,
        failure::{Failure, FailureKind, Icmp},
        owner::Owner,
        reset::{Delivered, ListenerNote, Origin, Paired, Reset},
        stray::Stray,
    },
    vocab::errno::Errno,
};

fn task(k: &KernelOwner) -> Task {
    Task {
        pid: k.pid,
        comm: k.comm,
    }
}

/// Who sent a received reset: a socket on this host when the other end
/// was seen, else the TTLs tell the peer from something on the path.
fn origin(d: &Draft) -> Option<Origin> {
    if d.ev.facts.direction != Direction::Received {
        return None;
    }
    if d.other_end.is_some() {
        return Some(Origin::Local);
    }
    match (d.ev.rst_ttl, d.ev.peer_ttl) {
        (Some(rst), Some(peer)) if rst == peer => Some(Origin::Peer),
        (Some(_), Some(_)) => Some(Origin::Path),
        _ => None,
    }
}

fn paired(o: &OtherEnd) -> Paired {
    Paired {
        owner: o.owner.as_ref().map(task),
        netns: o.netns,
        cause: o.cause,
    }
}

pub(super) fn reset(
    d: &Draft,
    owner: Option<Owner>,
    history: Option<ListenerNote>,
    clock: &WallClock,
) -> Reset {
    let ev = &d.ev;
    let owner_task = owner.as_ref().map(|o| Task {
        pid: o.pid,
        comm: o.comm,
    });
    Reset {
        unix_ns: clock.unix_ns(ev.ts_ns),
        direction: ev.facts.direction,
        cause: d.class.cause,
        cause_source: d.class.source,
        kernel_reason: ev.facts.reason,
        state: ev.facts.state,
        conn: ev.conn,
        netns: ev.netns,
        app_errno: d.class.app_errno,
        listener: d.class.listener,
        history,
        segment: ev.facts.segment,
        context: ev.context,
        task: ev.task,
        // tcp_abort() runs in the killer's context.
        killer: ev.task.filter(|_| d.class.cause.names_its_task()),
        delivered: d.delivered.map(|(errno, to)| Delivered {
            errno,
            to: to.as_ref().map(task).or(owner_task),
        }),
        sock_cookie: ev.sock_cookie,
        sock_inode: (ev.sock_ino != 0).then_some(ev.sock_ino),
        cpu: ev.cpu,
        owner_closed_ms: ev.closed_ns.map(|c| ev.ts_ns.saturating_sub(c) / 1_000_000),
        owner,
        // A pair joined through NAT shares one id (see docs/origin.md).
        community_id: d
            .other_end
            .and_then(|o| o.nat_conn)
            .unwrap_or(ev.conn)
            .community_id(),
        rst_ttl: ev.rst_ttl,
        peer_ttl: ev.peer_ttl,
        origin: origin(d),
        other_end: d.other_end.as_ref().map(paired),
    }
}

pub(super) fn failure(
    er: &ErrorReport,
    kind: FailureKind,
    icmp: Option<Icmp>,
    owner: Option<&Owner>,
    clock: &WallClock,
) -> Failure {
    Failure {
        unix_ns: clock.unix_ns(er.ts_ns),
        kind: icmp.map_or(kind, |i| i.kind(kind)),
        icmp,
        community_id: er.conn.community_id(),
        errno: er.errno,
        errno_for_peer: false,
        conn: er.conn,
        netns: er.netns,
        owner: owner.map(|o| Task {
            pid: o.pid,
            comm: o.comm,
        }),
    }
}

/// A connection failure from a firewall verdict (no socket of ours is
/// known for it).
pub(super) fn firewall_failure(
    v: &FirewallVerdict,
    kind: FailureKind,
    errno: Option<Errno>,
    clock: &WallClock,
) -> Failure {
    Failure {
        unix_ns: clock.unix_ns(v.ts_ns),
        kind,
        errno,
        // Our own segment dropped on its way out stalls our socket.
        errno_for_peer: !v.outgoing,
        conn: v.conn,
        netns: v.netns,
        owner: None,
        icmp: None,
        community_id: v.conn.community_id(),
    }
}

/// A reset that found no socket.
pub(super) fn stray(r: &StrayReset, clock: &WallClock) -> Stray {
    Stray {
        unix_ns: clock.unix_ns(r.ts_ns),
        conn: r.conn,
        netns: r.netns,
        rst_ttl: r.ttl,
        seq: r.seq,
        community_id: r.conn.community_id(),
    }
}
