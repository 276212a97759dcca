//! `"event": "suppressed"`: resets counted in the kernel during a storm
//! instead of being reported one by one.

use std::net::IpAddr;

use super::{
    conn::{family_name, Task},
    field::{field, Field, Text, Ty, Value},
};
use crate::{
    kernel::names::{KernelReason, TcpState},
    vocab::{Cause, CauseSource, Direction},
};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Suppressed {
    pub count: u64,
    pub first_unix_ns: i128,
    pub last_unix_ns: i128,
    pub direction: Direction,
    pub cause: Cause,
    pub cause_source: CauseSource,
    pub kernel_reason: Option<KernelReason>,
    pub state: Option<TcpState>,
    /// The service's port: local for sent resets, remote for received.
    pub port: u16,
    pub netns: u32,
    pub owner: Option<Task>,
    /// One of the other ends involved.
    pub example: IpAddr,
    pub example_port: u16,
}

pub(crate) const FIELDS: &[Field<Suppressed>] = &[
    field("time", Ty::Str, Text::Head(27), "Time of the last reset summarised.", |s| Value::Time(s.last_unix_ns)),
    field("event", Ty::Str, Text::Omit, "\"suppressed\": resets counted in the kernel instead of reported one by one (--storm).", |_| Value::Str("suppressed")),
    field("direction", Ty::Str, Text::Head(8), "\"sent\" or \"received\".", |s| Value::Str(s.direction.as_str())),
    field("cause", Ty::Str, Text::Head(24), "Cause id, from the kernel reason, socket state and segment flags (the finer splits of TCP_STATE need per-event data and are not made here).", |s| Value::Str(s.cause.id())),
    field("count", Ty::Num, Text::Kv("count"), "How many resets this record stands for.", |s| Value::U64(s.count)),
    field("first_time", Ty::Str, Text::Kv("since"), "Time of the first of them (storm counting reads kernel jiffies, not the clock: accurate to about one tick, 1-10 ms).", |s| Value::Time(s.first_unix_ns)),
    field("last_time", Ty::Str, Text::Omit, "Time of the last of them (same accuracy).", |s| Value::Time(s.last_unix_ns)),
    field("explanation", Ty::Str, Text::Tail, "The cause in one sentence.", |s| Value::Str(s.cause.explanation())),
    field("cause_source", Ty::Str, Text::Omit, "\"kernel_reason\" or \"inferred\", as for resets.", |s| Value::Str(s.cause_source.as_str())),
    field("kernel_reason", Ty::OptStr, Text::Kv("reason"), "The kernel's reason name.", |s| Value::str(s.kernel_reason.and_then(KernelReason::name))),
    field("state", Ty::OptStr, Text::Omit, "TCP state of the local socket.", |s| Value::str(s.state.map(TcpState::name))),
    field("family", Ty::Str, Text::Omit, "\"inet\" or \"inet6\".", |s| Value::Str(family_name(&s.example))),
    field("port", Ty::Num, Text::Kv("port"), "The service's port: this host's port for sent resets, the peer's for received ones (the other side's ports are ephemeral).", |s| Value::U64(u64::from(s.port))),
    field("netns", Ty::Num, Text::Kv("netns"), "Network namespace inode.", |s| Value::U64(u64::from(s.netns))),
    field("pid", Ty::OptNum, Text::Kv("owner"), "Owner of the local socket (null with no socket).", |s| Value::num(s.owner.map(|o| u64::from(o.pid)))),
    field("comm", Ty::OptStr, Text::Join, "Its name.", |s| Value::str(s.owner.as_ref().map(|o| o.comm.as_str()))),
    field("example_addr", Ty::Str, Text::Kv("e.g."), "One of the other ends involved: a peer for sent resets, a local address for received ones.", |s| Value::Ip(s.example)),
    field("example_port", Ty::Num, Text::Omit, "Its port.", |s| Value::U64(u64::from(s.example_port))),
];
