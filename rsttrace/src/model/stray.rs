//! `"event": "stray_reset"` (with `--stray-resets`): a reset that arrived
//! for no socket at all.  The kernel drops it silently; the peer believes
//! a connection this host does not have.

use super::{
    conn::{family_name, CommunityId, Conn},
    field::{field, Field, Side, Text, Ty, Value},
};

const EXPLANATION: &str = "A reset arrived for a connection this host has no socket for (it was already gone, or never existed here): the kernel drops it silently.";

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stray {
    pub unix_ns: i128,
    pub conn: Conn,
    pub netns: u32,
    pub rst_ttl: u8,
    pub seq: u32,
    pub community_id: CommunityId,
}

pub(crate) const FIELDS: &[Field<Stray>] = &[
    field(
        "time",
        Ty::Str,
        Text::Head(27),
        "When the reset arrived.",
        |s| Value::Time(s.unix_ns),
    ),
    field("event", Ty::Str, Text::Head(8), "\"stray_reset\".", |_| {
        Value::Str("stray_reset")
    }),
    field(
        "explanation",
        Ty::Str,
        Text::Tail,
        "What happened, in one sentence.",
        |_| Value::Str(EXPLANATION),
    ),
    field(
        "family",
        Ty::Str,
        Text::Omit,
        "\"inet\" or \"inet6\".",
        |s| Value::Str(family_name(&s.conn.local)),
    ),
    field(
        "local_addr",
        Ty::Str,
        Text::Addr(Side::Local),
        "This host's address (the reset's destination).",
        |s| Value::Ip(s.conn.local),
    ),
    field(
        "local_port",
        Ty::Num,
        Text::Port(Side::Local),
        "This host's port.",
        |s| Value::U64(u64::from(s.conn.local_port)),
    ),
    field(
        "remote_addr",
        Ty::Str,
        Text::Addr(Side::Remote),
        "The reset's source.",
        |s| Value::Ip(s.conn.remote),
    ),
    field(
        "remote_port",
        Ty::Num,
        Text::Port(Side::Remote),
        "Its port.",
        |s| Value::U64(u64::from(s.conn.remote_port)),
    ),
    field(
        "seq",
        Ty::Num,
        Text::Omit,
        "The reset's sequence number.",
        |s| Value::U64(u64::from(s.seq)),
    ),
    field(
        "rst_ttl",
        Ty::Num,
        Text::Kv("rst_ttl"),
        "The IP TTL (IPv6 hop limit) it arrived with.",
        |s| Value::U64(u64::from(s.rst_ttl)),
    ),
    field(
        "netns",
        Ty::Num,
        Text::Kv("netns"),
        "Network namespace inode.",
        |s| Value::U64(u64::from(s.netns)),
    ),
    field(
        "community_id",
        Ty::Str,
        Text::Omit,
        "Community ID v1 of the connection.",
        |s| Value::Str(s.community_id.as_str()),
    ),
];
