//! `--format logfmt`: one line of `key=value` pairs per record, the keys
//! those of the JSON (see `rsttrace schema`), for collectors that parse
//! logfmt (Loki's `| logfmt`, Vector's `parse_logfmt`, Grafana Agent).
//! Unknown (null) fields are left out.  Values with a space, a quote, an
//! `=` or a control character are quoted, with `"`, `\` and control
//! characters escaped as in JSON.

use std::io::Write as _;

use super::{write_plain, Format, FormatInfo};
use crate::model::{
    field::{FieldInfo, Value, Visitor},
    Record,
};

pub(crate) const INFO: FormatInfo = FormatInfo {
    name: "logfmt",
    about: "One line of key=value pairs per record, keys as in the JSON.",
    make: || Box::new(Logfmt),
};

pub(crate) struct Logfmt;

impl Format for Logfmt {
    fn render(&mut self, record: &Record, buf: &mut Vec<u8>) {
        record.visit(&mut Pairs { buf, first: true });
    }
}

struct Pairs<'a> {
    buf: &'a mut Vec<u8>,
    first: bool,
}

impl Visitor<'_> for Pairs<'_> {
    fn begin(&mut self, _event: &'static str) {}

    fn field(&mut self, info: &FieldInfo, value: Value<'_>) {
        if value == Value::Null {
            return;
        }
        if !self.first {
            self.buf.push(b' ');
        }
        self.first = false;
        self.buf.extend_from_slice(info.key.as_bytes());
        self.buf.push(b'=');
        match value {
            Value::Str(s) => string(self.buf, s),
            // Numbers, booleans, addresses, times and flags need no quotes.
            other => write_plain(self.buf, other),
        }
    }

    fn end(&mut self) {
        self.buf.push(b'\n');
    }
}

fn needs_quotes(s: &str) -> bool {
    s.is_empty()
        || s.bytes()
            .any(|b| b <= b' ' || b == b'"' || b == b'=' || b == b'\\' || b == 0x7f)
}

fn string(buf: &mut Vec<u8>, s: &str) {
    if !needs_quotes(s) {
        buf.extend_from_slice(s.as_bytes());
        return;
    }
    buf.push(b'"');
    for c in s.chars() {
        match c {
            '"' => buf.extend_from_slice(b"\\\""),
            '\\' => buf.extend_from_slice(b"\\\\"),
            '\n' => buf.extend_from_slice(b"\\n"),
            '\t' => buf.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(buf, "\\u{:04x}", c as u32);
            }
            c => {
                let mut utf8 = [0u8; 4];
                buf.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
    buf.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_needs_it() {
        let mut buf = Vec::new();
        for s in [
            "nginx",
            "",
            "a b",
            "say \"hi\"",
            "k=v",
            "tab\tnew\nline",
            "back\\slash",
            "\u{1}",
        ] {
            string(&mut buf, s);
            buf.push(b'|');
        }
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "nginx|\"\"|\"a b\"|\"say \\\"hi\\\"\"|\"k=v\"|\"tab\\tnew\\nline\"|\"back\\\\slash\"|\"\\u0001\"|"
        );
    }
}
