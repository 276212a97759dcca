//! `--format text`: one readable line per record, laid out by the `text`
//! column of the record's field table:
//!
//! ```text
//! 2026-11-24T14:05:01.123456Z sent     no_listener              127.0.0.1:8080 -> 127.0.0.1:45678 reason=NO_SOCKET netns=4026531840 errno=ECONNREFUSED/peer seg=SYN payload=0 | A SYN arrived ...
//! ```
//!
//! The arrow points the way the reset travelled.

use std::net::IpAddr;

use super::{write_plain, Format, FormatInfo};
use crate::model::{
    field::{FieldInfo, Side, Text as Layout, Value, Visitor},
    Record,
};

pub(crate) const INFO: FormatInfo = FormatInfo {
    name: "text",
    about: "One readable line per record.",
    make: || Box::new(Text),
};

pub(crate) struct Text;

impl Format for Text {
    fn render(&mut self, record: &Record, buf: &mut Vec<u8>) {
        record.visit(&mut Line {
            buf,
            arrow: record.arrow(),
            tail: None,
            last_kv_shown: false,
        });
    }
}

struct Line<'a, 'r> {
    buf: &'a mut Vec<u8>,
    arrow: &'static str,
    /// The `Tail` value, written last.
    tail: Option<&'r str>,
    /// Whether the previous `Kv` field was shown (for `Join`).
    last_kv_shown: bool,
}

impl Line<'_, '_> {
    /// A space between items, none at the start of the line.
    fn sep(&mut self) {
        if !self.buf.is_empty() && !self.buf.ends_with(b"\n") {
            self.buf.push(b' ');
        }
    }
}

/// `[addr]` for IPv6, so that `:port` reads clearly.
fn addr(buf: &mut Vec<u8>, value: Value<'_>) {
    match value {
        Value::Ip(IpAddr::V6(_)) => {
            buf.push(b'[');
            write_plain(buf, value);
            buf.push(b']');
        }
        other => write_plain(buf, other),
    }
}

impl<'r> Visitor<'r> for Line<'_, 'r> {
    fn begin(&mut self, _event: &'static str) {}

    fn field(&mut self, info: &FieldInfo, value: Value<'r>) {
        match info.text {
            Layout::Omit => {}
            Layout::Head(width) | Layout::Tagged(_, width) => {
                self.sep();
                if let Layout::Tagged(tag, _) = info.text {
                    self.buf.extend_from_slice(tag.as_bytes());
                }
                let start = self.buf.len();
                write_plain(self.buf, value);
                let written = self.buf.len() - start;
                self.buf
                    .extend(std::iter::repeat_n(b' ', width.saturating_sub(written)));
            }
            Layout::Addr(side) => {
                self.sep();
                if side == Side::Remote {
                    self.buf.extend_from_slice(self.arrow.as_bytes());
                    self.buf.push(b' ');
                }
                addr(self.buf, value);
            }
            Layout::Port(_) => {
                self.buf.push(b':');
                write_plain(self.buf, value);
            }
            Layout::Kv(label) => {
                self.last_kv_shown = value != Value::Null;
                if self.last_kv_shown {
                    self.sep();
                    self.buf.extend_from_slice(label.as_bytes());
                    self.buf.push(b'=');
                    write_plain(self.buf, value);
                }
            }
            Layout::Join => {
                if self.last_kv_shown && value != Value::Null {
                    self.buf.push(b'/');
                    write_plain(self.buf, value);
                }
            }
            Layout::Tail => {
                if let Value::Str(s) = value {
                    self.tail = Some(s);
                }
            }
        }
    }

    fn end(&mut self) {
        while self.buf.ends_with(b" ") {
            self.buf.pop();
        }
        if let Some(t) = self.tail {
            self.buf.extend_from_slice(b" | ");
            self.buf.extend_from_slice(t.as_bytes());
        }
        self.buf.push(b'\n');
    }
}
