//! Records from drafts: the reset or failure, with everything enrichment
//! found.

use super::correlate::Draft;
use crate::{
    classify::Cause,
    decode::ErrorReport,
    kernel::clock::WallClock,
    model::{
        conn::Task,
        failure::{Failure, FailureKind},
        owner::Owner,
        reset::{Delivered, ListenerNote, Reset},
    },
};

pub fn reset(
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
        killer: (d.class.cause == Cause::SocketDestroyed).then_some(ev.task),
        delivered: d.delivered.map(|(errno, to)| Delivered {
            errno,
            to: to
                .map(|k| Task {
                    pid: k.pid,
                    comm: k.comm,
                })
                .or(owner_task),
        }),
        sock_cookie: ev.sock_cookie,
        sock_inode: (ev.sock_ino != 0).then_some(ev.sock_ino),
        cpu: ev.cpu,
        owner_closed_ms: ev.closed_ns.map(|c| ev.ts_ns.saturating_sub(c) / 1_000_000),
        owner,
    }
}

pub fn failure(
    er: &ErrorReport,
    kind: FailureKind,
    owner: Option<&Owner>,
    clock: &WallClock,
) -> Failure {
    Failure {
        unix_ns: clock.unix_ns(er.ts_ns),
        kind,
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
