//! Decoding a reset record: the classifier's facts, the socket's state and
//! counters, the owner and the call path.

use rsttrace_common::event::{
    ResetEvent, FLAG_BACKLOG, FLAG_BORN_KNOWN, FLAG_CLOSED, FLAG_FULL_SOCK, FLAG_HAS_SK,
    FLAG_HAS_SKB, FLAG_STACK, FLAG_TCP_INFO, FLAG_TIMEWAIT, KIND_RESET_SENT, REASON_ABSENT,
};

use super::{conn, owner, seg, CapturedReset};
use crate::{
    classify::{Direction, Facts, SockFacts},
    kernel::{kallsyms::PATH, names::KernelNames},
    model::{
        conn::{Comm, Segment, Task},
        reset::Context,
    },
};

fn segment(ev: &ResetEvent) -> Option<Segment> {
    (ev.flags & FLAG_HAS_SKB != 0).then(|| seg(&ev.seg))
}

/// RCV_SHUTDOWN and SHUTDOWN_MASK bits of sk_shutdown.
const RCV_SHUTDOWN: u8 = 1;
const SHUTDOWN_MASK: u8 = 3;

fn sock_facts(ev: &ResetEvent, names: &KernelNames) -> Option<SockFacts> {
    if ev.flags & FLAG_FULL_SOCK == 0 {
        return None;
    }
    let shutdown = names.shutdown(ev.sk_shutdown_byte);
    let tcp = (ev.flags & FLAG_TCP_INFO != 0).then_some(&ev.tcp);
    Some(SockFacts {
        dead: names.is_dead(ev.sk_flags),
        linger_zero: names.lingers(ev.sk_flags) && ev.sk_lingertime == 0,
        closing: shutdown & SHUTDOWN_MASK == SHUTDOWN_MASK,
        rcv_shutdown: shutdown & RCV_SHUTDOWN != 0,
        attached: ev.sock_ino != 0,
        unread: tcp.map_or(0, |t| names.unread(t.rcv_nxt, t.copied_seq, ev.sk_flags)),
        snd_una: tcp.map(|t| t.snd_una),
        snd_nxt: tcp.map(|t| t.snd_nxt),
        rcv_nxt: tcp.map(|t| t.rcv_nxt),
        linger2: tcp.map(|t| t.linger2),
        backlog: (ev.flags & FLAG_BACKLOG != 0).then_some((ev.ack_backlog, ev.max_ack_backlog)),
    })
}

pub(super) fn reset(ev: &ResetEvent, names: &KernelNames) -> CapturedReset {
    let direction = if ev.header.kind == KIND_RESET_SENT {
        Direction::Sent
    } else {
        Direction::Received
    };
    let has_sk = ev.flags & FLAG_HAS_SK != 0;
    let reason = (direction == Direction::Sent && ev.reason != REASON_ABSENT)
        .then(|| names.reason(ev.reason));
    CapturedReset {
        ts_ns: ev.header.ts_ns,
        cpu: ev.header.cpu,
        facts: Facts {
            direction,
            reason,
            state: if has_sk { names.state(ev.state) } else { None },
            segment: segment(ev),
            sock: sock_facts(ev, names),
            firewall: false,
            tw_substate: (ev.flags & FLAG_TIMEWAIT != 0)
                .then(|| names.state(ev.tw_substate))
                .flatten(),
            path: path(ev, names),
        },
        sk: ev.sk,
        sock_cookie: (ev.sock_cookie != 0).then_some(ev.sock_cookie),
        sock_ino: ev.sock_ino,
        conn: conn(&ev.ends),
        netns: ev.netns,
        owner: owner(ev.flags, &ev.owner),
        closed_ns: (ev.flags & FLAG_CLOSED != 0).then_some(ev.closed_ns),
        context: context(ev, names),
        task: Some(Task {
            pid: ev.task_tgid,
            comm: Comm::new(ev.task_comm),
        }),
        seg_ttl: (ev.flags & FLAG_HAS_SKB != 0).then_some(ev.seg.ttl),
        rst_ttl: (ev.rst_ttl != 0).then_some(ev.rst_ttl),
        peer_ttl: (ev.peer_ttl != 0).then_some(ev.peer_ttl),
    }
}

/// The call path from the kernel stack, where the programs read one.
fn path(ev: &ResetEvent, names: &KernelNames) -> [Option<crate::kernel::kallsyms::CallSite>; PATH] {
    match (&names.callsites, ev.flags & FLAG_STACK != 0) {
        (Some(sites), true) => sites.path(&ev.frames),
        _ => [None; PATH],
    }
}

/// Connection context from the socket's counters.
pub(super) fn context(ev: &ResetEvent, names: &KernelNames) -> Context {
    let mut c = Context::default();
    if ev.flags & FLAG_BORN_KNOWN != 0 && ev.header.ts_ns >= ev.born_ns {
        c.age_ms = Some((ev.header.ts_ns - ev.born_ns) / 1_000_000);
    }
    if ev.flags & FLAG_TCP_INFO == 0 {
        return c;
    }
    counters(ev, names, &mut c);
    c
}

fn counters(ev: &ResetEvent, names: &KernelNames, c: &mut Context) {
    let (t, hz) = (&ev.tcp, names.hz);
    c.bytes_sent = names.bytes_sent_known.then_some(t.bytes_sent);
    c.bytes_acked = Some(t.bytes_acked);
    c.bytes_received = Some(t.bytes_received);
    c.unread_bytes = Some(names.unread(t.rcv_nxt, t.copied_seq, ev.sk_flags));
    c.unacked_bytes = Some(t.snd_nxt.wrapping_sub(t.snd_una));
    let now = t.now_jiffies as u32;
    let since = |stamp: u32| -> Option<u64> {
        (stamp != 0 && hz != 0).then(|| u64::from(now.wrapping_sub(stamp)) * 1000 / u64::from(hz))
    };
    c.idle_ms = match (since(t.rcv_tstamp), since(t.lrcvtime)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    c.last_send_ms = since(t.lsndtime);
}
