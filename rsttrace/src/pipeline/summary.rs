//! Storm summaries: the kernel's per-key counts as `suppressed` records.
//! A summary keeps only some facts of its resets (reason, state, segment
//! flags), so its cause comes from those alone.

use rsttrace_common::event::{AggKey, AggValue, KIND_RESET_SENT, REASON_ABSENT};

use crate::{
    classify::{classify, Direction, Facts},
    kernel::{
        clock::{boottime_ns, JiffiesAnchor, WallClock},
        names::KernelNames,
    },
    model::{
        conn::{ip_addr, Comm, Segment, Task},
        suppressed::Suppressed,
    },
};

fn facts(key: &AggKey, names: &KernelNames) -> Facts {
    let direction = if key.kind == KIND_RESET_SENT {
        Direction::Sent
    } else {
        Direction::Received
    };
    Facts {
        direction,
        reason: (direction == Direction::Sent && key.reason != REASON_ABSENT)
            .then(|| names.reason(key.reason)),
        state: (key.state != 0).then(|| names.state(key.state)).flatten(),
        segment: (key.tcp_flags != 0).then_some(Segment {
            flags: key.tcp_flags,
            payload: u32::from(key.has_payload),
            ..Segment::default()
        }),
        sock: None,
        firewall: false,
        tw_substate: None,
        path: Default::default(),
    }
}

pub(super) fn suppressed(
    key: &AggKey,
    value: &AggValue,
    names: &KernelNames,
    clock: &WallClock,
    anchor: Option<&JiffiesAnchor>,
) -> Suppressed {
    let f = facts(key, names);
    let class = classify(&f);
    // Without an anchor, the drain time stands for both ends.
    let (first, last) = match anchor {
        Some(a) => (
            a.boot_ns(value.first_jiffies),
            a.boot_ns(value.last_jiffies),
        ),
        None => (boottime_ns(), boottime_ns()),
    };
    Suppressed {
        count: value.count,
        first_unix_ns: clock.unix_ns(first),
        last_unix_ns: clock.unix_ns(last),
        direction: f.direction,
        cause: class.cause,
        cause_source: class.source,
        kernel_reason: f.reason,
        state: f.state,
        port: key.port,
        netns: key.netns,
        owner: (key.owner_tgid != 0).then(|| Task {
            pid: key.owner_tgid,
            comm: Comm::new(value.owner_comm),
        }),
        example: ip_addr(key.family, &value.remote_addr),
        example_port: value.remote_port,
    }
}
