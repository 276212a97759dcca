//! Rendering records and writing them.  Every format walks the records'
//! field tables (see `model::field`); adding one is a file here plus its
//! line in [`FORMATS`].
//!
//! Output is buffered and handed to a writer thread once per batch of
//! records read from the kernel, so a storm costs one write(2) per batch,
//! and a reader that stalls never stops the event loop (see `sink`).

pub(crate) mod json;
pub(crate) mod logfmt;
pub(crate) mod schema;
pub(crate) mod sink;
pub(crate) mod text;

use std::{
    io::Write,
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use self::sink::{Sink, SinkTotals};

use crate::{
    kernel::clock::Rfc3339Cache,
    model::{
        field::{tcp_flags_text, Value},
        Record,
    },
};

/// A way to render records.
pub(crate) trait Format {
    /// Appends one record, ending with a newline.
    fn render(&mut self, record: &Record, buf: &mut Vec<u8>);
}

pub(crate) struct FormatInfo {
    pub name: &'static str,
    pub about: &'static str,
    pub make: fn() -> Box<dyn Format>,
}

/// Every output format, by `--format` name.
pub(crate) const FORMATS: &[FormatInfo] = &[text::INFO, json::INFO, logfmt::INFO];

pub(crate) fn format_named(name: &str) -> Option<&'static FormatInfo> {
    FORMATS.iter().find(|f| f.name == name)
}

/// A value as plain text: numbers, `true`/`false`, addresses, RFC 3339
/// times, `SYN|ACK`; strings as they are, null as `-`.
pub(crate) fn write_plain(buf: &mut Vec<u8>, value: Value<'_>) {
    Plain::default().write(buf, value);
}

/// Writes plain values, keeping what one record can save the next: the
/// date of the last time written.
#[derive(Default)]
pub(crate) struct Plain {
    time: Rfc3339Cache,
}

impl Plain {
    /// As [`write_plain`].
    pub(crate) fn write(&mut self, buf: &mut Vec<u8>, value: Value<'_>) {
        match value {
            Value::Null => buf.push(b'-'),
            Value::Str(s) => buf.extend_from_slice(s.as_bytes()),
            Value::U64(n) => write_u64(buf, n),
            Value::Bool(b) => buf.extend_from_slice(if b { b"true" } else { b"false" }),
            Value::Ip(IpAddr::V4(a)) => write_ipv4(buf, a),
            Value::Ip(a) => {
                let _ = write!(buf, "{a}");
            }
            Value::Time(ns) => buf.extend_from_slice(&self.time.format(ns)),
            Value::TcpFlags(f) => {
                let mut s = FlagsBuf::default();
                tcp_flags_text(f, &mut s);
                buf.extend_from_slice(&s.bytes[..s.len]);
            }
        }
    }
}

/// An IPv4 address as `Display` writes it, without the formatting
/// machinery (two per record).
fn write_ipv4(buf: &mut Vec<u8>, a: Ipv4Addr) {
    let mut text = [0u8; 15];
    let mut n = 0;
    for (i, octet) in a.octets().into_iter().enumerate() {
        if i > 0 {
            text[n] = b'.';
            n += 1;
        }
        if octet >= 100 {
            text[n] = b'0' + octet / 100;
            n += 1;
        }
        if octet >= 10 {
            text[n] = b'0' + octet / 10 % 10;
            n += 1;
        }
        text[n] = b'0' + octet % 10;
        n += 1;
    }
    append_prefix(buf, &text, n);
}

/// The first `n` bytes of `text`: all of it copied (a fixed-size move,
/// no call to memcpy), the rest cut off again.
fn append_prefix<const N: usize>(buf: &mut Vec<u8>, text: &[u8; N], n: usize) {
    let at = buf.len();
    buf.extend_from_slice(text);
    buf.truncate(at + n);
}

/// A number as `itoa` writes it; the ones below 100000 (ports, most pids,
/// lengths, CPUs) without it.
fn write_u64(buf: &mut Vec<u8>, n: u64) {
    if n >= 100_000 {
        buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        return;
    }
    let digits = match n {
        0..=9 => 1,
        10..=99 => 2,
        100..=999 => 3,
        1000..=9999 => 4,
        _ => 5,
    };
    let mut text = [0u8; 8];
    let mut rest = n as u32;
    for d in text[..digits].iter_mut().rev() {
        *d = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    append_prefix(buf, &text, digits);
}

/// A fixed buffer for flag names (`SYN|ACK|FIN|RST|PSH|URG` fits).
#[derive(Default)]
struct FlagsBuf {
    bytes: [u8; 32],
    len: usize,
}

impl std::fmt::Write for FlagsBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.bytes.len() {
            return Err(std::fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Why output stopped.
#[derive(Debug)]
pub(crate) enum OutputError {
    /// The reader went away (EPIPE): stop quietly.
    Closed,
    /// Writing failed (a full disk, a dead device).
    Io(String),
}

/// Records rendered in one format into a buffer, handed to a [`Sink`]
/// per batch.
pub(crate) struct Output {
    format: Box<dyn Format>,
    sink: Sink,
    buf: Vec<u8>,
    /// Records in `buf`.
    records: u64,
    /// Hand over when this much is buffered even within a batch.
    high_water: usize,
}

impl Output {
    pub(crate) fn new(format: &FormatInfo, sink: Sink) -> Self {
        Output {
            format: (format.make)(),
            buf: sink.buffer(),
            sink,
            records: 0,
            high_water: 192 << 10,
        }
    }

    pub(crate) fn write(&mut self, record: &Record) {
        self.format.render(record, &mut self.buf);
        self.records += 1;
        if self.buf.len() >= self.high_water {
            self.flush();
        }
    }

    /// Hands what is buffered to the writer; never blocks.
    pub(crate) fn flush(&mut self) {
        if self.records > 0 {
            let next = self.sink.buffer();
            let full = std::mem::replace(&mut self.buf, next);
            self.sink.send(full, self.records);
            self.records = 0;
        }
    }

    /// Whether the writer is still taking records.
    pub(crate) fn state(&self) -> Result<(), OutputError> {
        if let Some(e) = self.sink.error() {
            return Err(OutputError::Io(e));
        }
        if self.sink.closed() {
            return Err(OutputError::Closed);
        }
        Ok(())
    }

    pub(crate) fn sink(&mut self) -> &mut Sink {
        &mut self.sink
    }

    /// Writes what is left, waiting at most `wait` for a stalled reader.
    pub(crate) fn finish(&mut self, wait: Duration) -> SinkTotals {
        self.flush();
        self.sink.finish(wait)
    }
}

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
mod plain_tests {
    use super::*;

    #[test]
    fn numbers_as_itoa_writes_them() {
        // Around every power of ten, and the largest.
        let mut ten = 1u64;
        for _ in 0..20 {
            for m in [ten - 1, ten, ten + 1, ten.saturating_mul(5)] {
                let mut buf = b"x".to_vec();
                write_u64(&mut buf, m);
                assert_eq!(buf[1..], *m.to_string().as_bytes(), "{m}");
            }
            ten = ten.saturating_mul(10);
        }
        let mut buf = vec![];
        write_u64(&mut buf, u64::MAX);
        assert_eq!(buf, u64::MAX.to_string().as_bytes());
        for m in 0..200_000 {
            let mut buf = vec![];
            write_u64(&mut buf, m);
            assert_eq!(buf, m.to_string().as_bytes());
        }
    }

    #[test]
    fn ipv4_as_display_writes_it() {
        let octets = [0u8, 1, 9, 10, 99, 100, 127, 199, 200, 255];
        for a in octets {
            for b in octets {
                let ip = Ipv4Addr::new(a, b, 255 - a, b.wrapping_add(a));
                let mut buf = vec![];
                write_ipv4(&mut buf, ip);
                assert_eq!(String::from_utf8(buf).unwrap(), ip.to_string());
            }
        }
    }
}
