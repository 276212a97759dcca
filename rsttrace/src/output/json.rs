//! `--format json`: one flat JSON object per line, every key of the
//! record's table always present (null when unknown), so that log
//! pipelines can rely on the shape.  Written into a reused buffer: no
//! allocation per record.  Keys come pre-rendered from the field tables
//! (`JsonKey`), and the date of the last time written is kept: under a
//! storm this writer is most of rsttrace's work.

use std::io::Write as _;

use super::{Format, FormatInfo, Plain};
use crate::model::{
    field::{FieldInfo, JsonKey, Value, Visitor},
    Record,
};

pub(crate) const INFO: FormatInfo = FormatInfo {
    name: "json",
    about: "One JSON object per line (see `rsttrace schema`).",
    make: || Box::new(Json::default()),
};

#[derive(Default)]
pub(crate) struct Json {
    plain: Plain,
}

impl Format for Json {
    fn render(&mut self, record: &Record, buf: &mut Vec<u8>) {
        let start = buf.len();
        record.visit(&mut Object {
            buf,
            plain: &mut self.plain,
            start,
        });
    }
}

struct Object<'a> {
    buf: &'a mut Vec<u8>,
    plain: &'a mut Plain,
    /// Where the record starts: the first key's comma becomes its `{`.
    start: usize,
}

impl Object<'_> {
    /// `,"key":` (`null`: `,"key":null`).
    #[inline(always)]
    fn key(&mut self, key: &JsonKey, null: bool) {
        let at = self.buf.len();
        self.buf.extend_from_slice(&key.bytes);
        let len = if null { key.null_len } else { key.key_len };
        self.buf.truncate(at + usize::from(len));
    }
}

impl Visitor<'_> for Object<'_> {
    fn begin(&mut self, _event: &'static str) {}

    // Inlined into the walk over the table: called some 60 times per
    // record.
    #[inline(always)]
    fn field(&mut self, info: &FieldInfo, value: Value<'_>) {
        self.key(&info.json, value == Value::Null);
        match value {
            Value::Str(s) => escape(self.buf, s),
            Value::Null => {}
            Value::U64(_) | Value::Bool(_) => {
                self.plain.write(self.buf, value);
            }
            // Addresses, times and flags never need escaping.
            Value::Ip(_) | Value::Time(_) | Value::TcpFlags(_) => {
                self.buf.push(b'"');
                self.plain.write(self.buf, value);
                self.buf.push(b'"');
            }
        }
    }

    fn end(&mut self) {
        match self.buf.get_mut(self.start) {
            Some(comma) => *comma = b'{',
            None => self.buf.push(b'{'),
        }
        self.buf.extend_from_slice(b"}\n");
    }
}

/// Bytes a JSON string cannot hold as they are: `"`, `\`, control
/// characters and DEL (escaped too, for readers that choke on it).
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f
}

/// Whether `s` can be copied as it is.  Checked in fixed-size windows
/// (overlapping at the end) rather than byte by byte: nearly every string
/// is clean, and most are short names.
fn clean(s: &[u8]) -> bool {
    match s.len() {
        16.. => {
            let mut chunks = s.chunks_exact(16);
            let whole = chunks.all(|c| clean16(c.try_into().expect("16 bytes")));
            whole && clean16(s[s.len() - 16..].try_into().expect("16 bytes"))
        }
        8.. => clean_word(word(&s[..8])) && clean_word(word(&s[s.len() - 8..])),
        4.. => {
            let half = |b: &[u8]| u64::from(u32::from_le_bytes(b.try_into().expect("4 bytes")));
            // Padded with a clean byte ('A').
            let pad = 0x4141_4141_0000_0000;
            clean_word(half(&s[..4]) | pad) && clean_word(half(&s[s.len() - 4..]) | pad)
        }
        _ => !s.iter().any(|&b| needs_escape(b)),
    }
}

/// Branch-free, so that the compiler checks the 16 bytes in a few vector
/// instructions.
fn clean16(chunk: &[u8; 16]) -> bool {
    let bad = chunk.iter().fold(0u8, |bad, &b| {
        bad | u8::from(b < 0x20) | u8::from(b == b'"') | u8::from(b == b'\\') | u8::from(b == 0x7f)
    });
    bad == 0
}

fn word(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.try_into().expect("8 bytes"))
}

/// Whether no byte of `w` needs escaping.  The tests for "some byte is
/// zero" and "some byte is below n" of Bit Twiddling Hacks, exact for the
/// question "is there one".
fn clean_word(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    let special = zero(w ^ (ONES * u64::from(b'"')))
        | zero(w ^ (ONES * u64::from(b'\\')))
        | zero(w ^ (ONES * 0x7f));
    control | special == 0
}

/// Writes `s` as a JSON string literal.
pub(crate) fn escape(buf: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    buf.push(b'"');
    if clean(bytes) {
        buf.extend_from_slice(bytes);
    } else {
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if needs_escape(b) {
                buf.extend_from_slice(&bytes[start..i]);
                escape_byte(buf, b);
                start = i + 1;
            }
        }
        buf.extend_from_slice(&bytes[start..]);
    }
    buf.push(b'"');
}

fn escape_byte(buf: &mut Vec<u8>, b: u8) {
    match b {
        b'"' => buf.extend_from_slice(b"\\\""),
        b'\\' => buf.extend_from_slice(b"\\\\"),
        b'\n' => buf.extend_from_slice(b"\\n"),
        b'\r' => buf.extend_from_slice(b"\\r"),
        b'\t' => buf.extend_from_slice(b"\\t"),
        _ => {
            let _ = write!(buf, "\\u{b:04x}");
        }
    }
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

    /// The escaping before it was done in chunks, byte by byte.
    fn reference(s: &str) -> Vec<u8> {
        let mut buf = vec![b'"'];
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
        buf
    }

    #[test]
    fn every_byte_is_checked_in_every_window() {
        // Clean bytes around the ones that are not, and the high ones
        // that could upset the word arithmetic.
        let backgrounds: [&[u8]; 6] = [b"a", b"\xff", b"\x80", b" \xff", b"#!", b"~\x80[]"];
        for background in backgrounds {
            for len in 0usize..40 {
                let base: Vec<u8> = background.iter().copied().cycle().take(len).collect();
                assert!(clean(&base), "{base:?}");
                for at in 0..len {
                    for b in 0..=255u8 {
                        let mut s = base.clone();
                        s[at] = b;
                        assert_eq!(clean(&s), !needs_escape(b), "{s:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn chunks_escape_as_bytes_do() {
        let specials = [
            "\"", "\\", "\n", "\r", "\t", "\u{1}", "\u{1f}", "\u{7f}", "é", " ",
        ];
        for len in 0usize..40 {
            for (k, special) in specials.iter().enumerate() {
                for at in [0, 1, len / 2, len.saturating_sub(1), len] {
                    let mut s: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
                    s.insert_str(at.min(s.len()), special);
                    if k % 2 == 0 {
                        s.push_str(special);
                    }
                    let mut got = vec![];
                    escape(&mut got, &s);
                    assert_eq!(got, reference(&s), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn keys_need_no_escaping() {
        for (event, fields) in crate::model::schema() {
            for f in fields {
                assert!(
                    f.key
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                    "{event}: {}",
                    f.key
                );
                let json = &f.json.bytes;
                assert_eq!(
                    json[..usize::from(f.json.key_len)],
                    *format!(",\"{}\":", f.key).as_bytes()
                );
                assert_eq!(
                    json[..usize::from(f.json.null_len)],
                    *format!(",\"{}\":null", f.key).as_bytes()
                );
            }
        }
    }
}
