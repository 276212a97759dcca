//! A minimal JSON object writer into a reused buffer: one flat object per
//! line, no allocation per event.

use std::{fmt::Display, io::Write as _};

pub struct Object<'a> {
    buf: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Object<'a> {
    pub fn begin(buf: &'a mut Vec<u8>) -> Self {
        buf.push(b'{');
        Object { buf, first: true }
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        self.buf.push(b'"');
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        escape(self.buf, value);
        self
    }

    /// A string made by `Display` (addresses), escaped.
    pub fn display(&mut self, key: &str, value: impl Display) -> &mut Self {
        self.key(key);
        let start = self.buf.len();
        let _ = write!(self.buf, "{value}");
        // Display output of the types used here never needs escaping, but
        // check rather than trust.
        if self.buf[start..]
            .iter()
            .any(|&b| b == b'"' || b == b'\\' || b < 0x20)
        {
            let raw = String::from_utf8_lossy(&self.buf[start..]).into_owned();
            self.buf.truncate(start);
            escape(self.buf, &raw);
        } else {
            self.buf.insert(start, b'"');
            self.buf.push(b'"');
        }
        self
    }

    pub fn opt_str(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.str(key, v),
            None => self.null(key),
        }
    }

    pub fn u64(&mut self, key: &str, value: u64) -> &mut Self {
        self.key(key);
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        self
    }

    pub fn i64(&mut self, key: &str, value: i64) -> &mut Self {
        self.key(key);
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        self
    }

    pub fn opt_u64(&mut self, key: &str, value: Option<u64>) -> &mut Self {
        match value {
            Some(v) => self.u64(key, v),
            None => self.null(key),
        }
    }

    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key);
        self.buf
            .extend_from_slice(if value { b"true" } else { b"false" });
        self
    }

    pub fn opt_bool(&mut self, key: &str, value: Option<bool>) -> &mut Self {
        match value {
            Some(v) => self.bool(key, v),
            None => self.null(key),
        }
    }

    pub fn null(&mut self, key: &str) -> &mut Self {
        self.key(key);
        self.buf.extend_from_slice(b"null");
        self
    }

    pub fn end(&mut self) {
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
    fn writes_a_flat_object() {
        let mut buf = vec![];
        Object::begin(&mut buf)
            .str("a", "x")
            .u64("n", 42)
            .i64("m", -1)
            .null("z")
            .bool("b", true)
            .opt_str("o", None)
            .display("ip", "127.0.0.1".parse::<std::net::IpAddr>().unwrap())
            .end();
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(text, "{\"a\":\"x\",\"n\":42,\"m\":-1,\"z\":null,\"b\":true,\"o\":null,\"ip\":\"127.0.0.1\"}\n");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["n"], 42);
    }

    #[test]
    fn escapes_hostile_strings() {
        let mut buf = vec![];
        let nasty = "a\"b\\c\nd\u{1}e\u{7f}é";
        Object::begin(&mut buf)
            .str("comm", nasty)
            .display("d", "q\"uote")
            .end();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["comm"], nasty);
        assert_eq!(v["d"], "q\"uote");
    }
}
