//! The domain model: every kind of record rsttrace reports, each with its
//! own fields and one table (see [`field`]) that output formats, `rsttrace
//! schema` and docs/json.md all read.

pub(crate) mod conn;
pub(crate) mod failure;
pub(crate) mod field;
pub(crate) mod lost;
pub(crate) mod owner;
pub(crate) mod reset;
pub(crate) mod stray;
pub(crate) mod summary;
pub(crate) mod suppressed;

use field::{visit, FieldInfo, Visitor};

/// One line of output.  Built and written in place: boxing the large
/// variant would allocate per record.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Record {
    Reset(reset::Reset),
    Failure(failure::Failure),
    Suppressed(suppressed::Suppressed),
    Lost(lost::Lost),
    Stray(stray::Stray),
    Summary(summary::Summary),
}

/// Every record kind: its `event` value and its fields, for the schema.
pub(crate) fn schema() -> Vec<(&'static str, Vec<FieldInfo>)> {
    fn infos<R>(table: &[field::Field<R>]) -> Vec<FieldInfo> {
        table.iter().map(|f| f.info).collect()
    }
    vec![
        ("reset", infos(reset::FIELDS)),
        ("connection_failure", infos(failure::FIELDS)),
        ("suppressed", infos(suppressed::FIELDS)),
        ("lost", infos(lost::FIELDS)),
        ("stray_reset", infos(stray::FIELDS)),
        ("summary", infos(summary::FIELDS)),
    ]
}

impl Record {
    pub(crate) fn event(&self) -> &'static str {
        match self {
            Record::Reset(_) => "reset",
            Record::Failure(_) => "connection_failure",
            Record::Suppressed(_) => "suppressed",
            Record::Lost(_) => "lost",
            Record::Stray(_) => "stray_reset",
            Record::Summary(_) => "summary",
        }
    }

    /// Walks the record's fields in table order.
    pub(crate) fn visit<'r>(&'r self, v: &mut impl Visitor<'r>) {
        let event = self.event();
        match self {
            Record::Reset(r) => visit(event, reset::FIELDS, r, v),
            Record::Failure(f) => visit(event, failure::FIELDS, f, v),
            Record::Suppressed(s) => visit(event, suppressed::FIELDS, s, v),
            Record::Lost(l) => visit(event, lost::FIELDS, l, v),
            Record::Stray(s) => visit(event, stray::FIELDS, s, v),
            Record::Summary(s) => visit(event, summary::FIELDS, s, v),
        }
    }

    /// The arrow between the endpoints in text output.
    pub(crate) fn arrow(&self) -> &'static str {
        match self {
            Record::Reset(r) => r.arrow(),
            Record::Failure(f) => f.arrow(),
            Record::Stray(_) => "<-",
            Record::Suppressed(_) | Record::Lost(_) | Record::Summary(_) => "->",
        }
    }
}
