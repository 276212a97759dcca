//! `--format json`: one flat JSON object per line, every key of the
//! record's table always present (null when unknown), so that log
//! pipelines can rely on the shape.  Written into a reused buffer: no
//! allocation per record.

use std::io::Write as _;

use super::{write_plain, Format, FormatInfo};
use crate::model::{
    field::{FieldInfo, Value, Visitor},
    Record,
};

pub const INFO: FormatInfo = FormatInfo {
    name: "json",
    about: "One JSON object per line (see `rsttrace schema`).",
    make: || Box::new(Json),
};

pub struct Json;

impl Format for Json {
    fn render(&mut self, record: &Record, buf: &mut Vec<u8>) {
        record.visit(&mut Object { buf, first: true });
    }
}

struct Object<'a> {
    buf: &'a mut Vec<u8>,
    first: bool,
}

impl Visitor<'_> for Object<'_> {
    fn begin(&mut self, _event: &'static str) {
        self.buf.push(b'{');
    }

    fn field(&mut self, info: &FieldInfo, value: Value<'_>) {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        self.buf.push(b'"');
        self.buf.extend_from_slice(info.key.as_bytes());
        self.buf.extend_from_slice(b"\":");
        match value {
            Value::Null => self.buf.extend_from_slice(b"null"),
            Value::Str(s) => escape(self.buf, s),
            Value::U64(_) | Value::I64(_) | Value::Bool(_) => write_plain(self.buf, value),
            // Addresses, times and flags never need escaping.
            Value::Ip(_) | Value::Time(_) | Value::TcpFlags(_) => {
                self.buf.push(b'"');
                write_plain(self.buf, value);
                self.buf.push(b'"');
            }
        }
    }

    fn end(&mut self) {
        self.buf.extend_from_slice(b"}\n");
    }
}

/// Writes `s` as a JSON string literal.
pub fn escape(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            0..=0x1f | 0x7f => {
                let _ = write!(buf, "\\u{b:04x}");
            }
            _ => buf.push(b),
        }
    }
    buf.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_hostile_strings() {
        let mut buf = vec![];
        let nasty = "a\"b\\c\nd\u{1}e\u{7f}é";
        escape(&mut buf, nasty);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v, nasty);
    }
}
