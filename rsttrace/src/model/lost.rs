//! `"event": "lost"`: resets the kernel could not hand over.

use super::field::{field, Field, Text, Ty, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum LostWhy {
    /// The reader fell behind and the buffer was full.
    BufferFull,
    /// The kernel skipped a program already running on that CPU.
    Nested,
    /// Records rsttrace rendered but could not write: the reader of its
    /// output stalled.
    OutputStalled,
}

impl LostWhy {
    pub(crate) const ALL: [LostWhy; 3] =
        [LostWhy::BufferFull, LostWhy::Nested, LostWhy::OutputStalled];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LostWhy::BufferFull => "buffer_full",
            LostWhy::Nested => "nested",
            LostWhy::OutputStalled => "output_stalled",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lost {
    pub unix_ns: i128,
    pub count: u64,
    pub why: LostWhy,
}

pub(crate) const FIELDS: &[Field<Lost>] = &[
    field("time", Ty::Str, Text::Head(27), "When rsttrace noticed the loss.", |l| Value::Time(l.unix_ns)),
    field("event", Ty::Str, Text::Head(8), "\"lost\": resets the kernel could not hand over, or records rsttrace could not write.", |_| Value::Str("lost")),
    field("count", Ty::Num, Text::Kv("count"), "How many.", |l| Value::U64(l.count)),
    field("why", Ty::Str, Text::Kv("why"), "\"buffer_full\" (the reader fell behind; raise --buffer-size or use --storm auto) or \"nested\" (the kernel skipped a program that was already running on that CPU, e.g. a reset in softirq interrupting one in process context) or \"output_stalled\" (records rsttrace could not write because the reader of its output stopped reading; counted in records, not resets).", |l| Value::Str(l.why.as_str())),
];
