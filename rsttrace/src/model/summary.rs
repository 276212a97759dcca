//! `"event": "summary"` (with `--summary SECS`): every period, the
//! commonest (cause, process, port) combinations, one record per row.
//! Counts include the resets suppression rules silenced and those storm
//! summaries counted, so that nothing silenced goes unseen.

use crate::vocab::Cause;

use super::{
    conn::Comm,
    field::{field, Field, Text, Ty, Value},
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    /// End of the period.
    pub unix_ns: i128,
    pub period_s: u64,
    /// 1 for the commonest row.
    pub rank: u32,
    pub count: u64,
    /// Of `count`, those a suppression rule silenced.
    pub suppressed: u64,
    pub cause: Cause,
    /// None: no owner (sent in softirq for no socket, say).
    pub comm: Option<Comm>,
    pub port: u16,
    /// All resets counted in the period, in every row and beyond the top.
    pub period_count: u64,
}

pub(crate) const FIELDS: &[Field<Summary>] = &[
    field("time", Ty::Str, Text::Head(27), "End of the period.", |s| {
        Value::Time(s.unix_ns)
    }),
    field(
        "event",
        Ty::Str,
        Text::Head(8),
        "\"summary\": one row of the periodic top table (--summary).",
        |_| Value::Str("summary"),
    ),
    field(
        "rank",
        Ty::Num,
        Text::Tagged("#", 3),
        "1 for the commonest row of the period.",
        |s| Value::U64(u64::from(s.rank)),
    ),
    field(
        "count",
        Ty::Num,
        Text::Head(7),
        "Resets in this row during the period, reported or not.",
        |s| Value::U64(s.count),
    ),
    field("cause", Ty::Str, Text::Head(25), "Cause id.", |s| {
        Value::Str(s.cause.id())
    }),
    field(
        "comm",
        Ty::OptStr,
        Text::Kv("comm"),
        "The owning process's name (null when no process owned the socket).",
        |s| Value::str(s.comm.as_ref().map(Comm::as_str)),
    ),
    field(
        "port",
        Ty::Num,
        Text::Kv("port"),
        "The service's port: this host's port for sent resets, the peer's for received ones.",
        |s| Value::U64(u64::from(s.port)),
    ),
    field(
        "suppressed",
        Ty::Num,
        Text::Kv("suppressed"),
        "Of count, those a suppression rule (--config, --suppress) silenced.",
        |s| Value::U64(s.suppressed),
    ),
    field(
        "period_s",
        Ty::Num,
        Text::Kv("period_s"),
        "Length of the period in seconds.",
        |s| Value::U64(s.period_s),
    ),
    field(
        "period_count",
        Ty::Num,
        Text::Kv("of"),
        "All resets counted in the period, in every row and beyond the top.",
        |s| Value::U64(s.period_count),
    ),
];
