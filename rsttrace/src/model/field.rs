//! The field tables: for every record kind, one table says which keys a
//! record has, their type, what they mean, and how to read the value.
//! The JSON, text and logfmt writers walk these tables, and so do
//! `rsttrace schema` and docs/json.md: a key cannot be emitted without
//! being documented, or documented without being emitted.

use std::net::IpAddr;

/// A field's JSON type.  `Opt*` may be `null`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    Str,
    OptStr,
    Num,
    OptNum,
    OptBool,
}

impl Ty {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Ty::Str => "string",
            Ty::OptStr => "string|null",
            Ty::Num => "number",
            Ty::OptNum => "number|null",
            Ty::OptBool => "boolean|null",
        }
    }

    #[cfg(test)]
    pub(crate) fn nullable(self) -> bool {
        matches!(self, Ty::OptStr | Ty::OptNum | Ty::OptBool)
    }

    /// Whether `value` is of this type.
    #[cfg(test)]
    pub(crate) fn admits(self, value: &Value<'_>) -> bool {
        match value {
            Value::Null => self.nullable(),
            Value::Str(_) | Value::Ip(_) | Value::Time(_) | Value::TcpFlags(_) => {
                matches!(self, Ty::Str | Ty::OptStr)
            }
            Value::U64(_) => matches!(self, Ty::Num | Ty::OptNum),
            Value::Bool(_) => matches!(self, Ty::OptBool),
        }
    }
}

/// Which side of a connection an endpoint field belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Local,
    Remote,
}

/// How the human-readable text line shows a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Text {
    /// Not shown (see the JSON).
    Omit,
    /// At the start of the line, in table order, padded to this width.
    Head(usize),
    /// Like `Head`, after a tag: `#1`.
    Tagged(&'static str, usize),
    /// An endpoint's address; its port follows as `Port` of the same side.
    Addr(Side),
    Port(Side),
    /// ` label=value`, left out when null.
    Kv(&'static str),
    /// Joined to the previous `Kv` field with `/` (`owner=812/nginx`).
    Join,
    /// After ` | ` at the end of the line.
    Tail,
}

/// A value, borrowed from its record: writers render it without
/// allocating.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'a> {
    Null,
    Str(&'a str),
    U64(u64),
    Bool(bool),
    Ip(IpAddr),
    /// Unix time in ns, rendered as RFC 3339 UTC.
    Time(i128),
    /// TCP header flags, rendered as `SYN|ACK`.
    TcpFlags(u8),
}

impl<'a> Value<'a> {
    pub(crate) fn str(v: Option<&'a str>) -> Self {
        v.map_or(Value::Null, Value::Str)
    }

    pub(crate) fn num(v: Option<u64>) -> Self {
        v.map_or(Value::Null, Value::U64)
    }

    pub(crate) fn bool(v: Option<bool>) -> Self {
        v.map_or(Value::Null, Value::Bool)
    }
}

/// Everything about a field but its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FieldInfo {
    pub key: &'static str,
    pub ty: Ty,
    pub text: Text,
    pub meaning: &'static str,
    /// The key as the JSON writer writes it, rendered with the table.
    pub json: JsonKey,
}

/// `,"key":null`, rendered once per field at compile time and padded to
/// a fixed size: the JSON writer copies all of it in one fixed-size move
/// and keeps `,"key":` or all of it (see `output::json`), instead of
/// building the key on every record.  Keys are lower-case ASCII words (a
/// test checks), so they need no escaping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JsonKey {
    pub bytes: [u8; JsonKey::SIZE],
    /// The length of `,"key":`.
    pub key_len: u8,
    /// The length of `,"key":null`.
    pub null_len: u8,
}

impl JsonKey {
    pub(crate) const SIZE: usize = 32;

    const fn new(key: &str) -> JsonKey {
        const fn put(bytes: &mut [u8; JsonKey::SIZE], at: usize, s: &[u8]) -> usize {
            let mut i = 0;
            while i < s.len() {
                bytes[at + i] = s[i];
                i += 1;
            }
            at + s.len()
        }
        // Too long a key fails the build (the tables are constants).
        assert!(key.len() + 8 <= JsonKey::SIZE, "JSON key too long");
        let mut bytes = [0u8; JsonKey::SIZE];
        let mut n = put(&mut bytes, 0, b",\"");
        n = put(&mut bytes, n, key.as_bytes());
        n = put(&mut bytes, n, b"\":");
        let key_len = n as u8;
        n = put(&mut bytes, n, b"null");
        JsonKey {
            bytes,
            key_len,
            null_len: n as u8,
        }
    }
}

/// One row of a record kind's table.
pub(crate) struct Field<R> {
    pub info: FieldInfo,
    pub get: for<'a> fn(&'a R) -> Value<'a>,
}

/// A table row; `get` reads the value from a record.
pub(crate) const fn field<R>(
    key: &'static str,
    ty: Ty,
    text: Text,
    meaning: &'static str,
    get: for<'a> fn(&'a R) -> Value<'a>,
) -> Field<R> {
    Field {
        info: FieldInfo {
            key,
            ty,
            text,
            meaning,
            json: JsonKey::new(key),
        },
        get,
    }
}

/// What output formats implement: called once per record, then once per
/// field in table order.  Values borrow from the record (`'r`).
pub(crate) trait Visitor<'r> {
    fn begin(&mut self, event: &'static str);
    fn field(&mut self, info: &FieldInfo, value: Value<'r>);
    fn end(&mut self);
}

/// Walks one record through its table.
pub(crate) fn visit<'r, R>(
    event: &'static str,
    table: &[Field<R>],
    record: &'r R,
    v: &mut impl Visitor<'r>,
) {
    v.begin(event);
    for f in table {
        v.field(&f.info, (f.get)(record));
    }
    v.end();
}

/// TCP flags as `SYN|ACK` (in that order of importance), into `out`.
pub(crate) fn tcp_flags_text(flags: u8, out: &mut impl std::fmt::Write) {
    const NAMES: [(u8, &str); 6] = [
        (0x02, "SYN"),
        (0x10, "ACK"),
        (0x01, "FIN"),
        (0x04, "RST"),
        (0x08, "PSH"),
        (0x20, "URG"),
    ];
    let mut first = true;
    for (bit, name) in NAMES {
        if flags & bit != 0 {
            if !first {
                let _ = out.write_char('|');
            }
            let _ = out.write_str(name);
            first = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_text() {
        let mut s = String::new();
        tcp_flags_text(0x12, &mut s);
        assert_eq!(s, "SYN|ACK");
        s.clear();
        tcp_flags_text(0x18, &mut s);
        assert_eq!(s, "ACK|PSH");
        s.clear();
        tcp_flags_text(0, &mut s);
        assert_eq!(s, "");
    }

    #[test]
    fn types_admit_their_values() {
        assert!(Ty::OptStr.admits(&Value::Null));
        assert!(!Ty::Str.admits(&Value::Null));
        assert!(Ty::Str.admits(&Value::Time(0)));
        assert!(Ty::Num.admits(&Value::U64(1)));
        assert!(!Ty::Num.admits(&Value::Str("1")));
        assert!(Ty::OptBool.admits(&Value::Bool(true)));
    }
}
