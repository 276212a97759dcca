//! Rendering records and writing them.  Every format walks the records'
//! field tables (see `model::field`); adding one is a file here plus its
//! line in [`FORMATS`].
//!
//! Output is buffered and flushed once per batch of records read from the
//! kernel, so a storm costs one write(2) per batch, not per record.

pub mod json;
pub mod schema;
pub mod text;

use std::io::{self, Write};

use crate::{
    kernel::clock::rfc3339,
    model::{
        field::{tcp_flags_text, Value},
        Record,
    },
};

/// A way to render records.
pub trait Format {
    /// Appends one record, ending with a newline.
    fn render(&mut self, record: &Record, buf: &mut Vec<u8>);
}

pub struct FormatInfo {
    pub name: &'static str,
    pub about: &'static str,
    pub make: fn() -> Box<dyn Format>,
}

/// Every output format, by `--format` name.
pub const FORMATS: &[FormatInfo] = &[text::INFO, json::INFO];

pub fn format_named(name: &str) -> Option<&'static FormatInfo> {
    FORMATS.iter().find(|f| f.name == name)
}

/// A value as plain text: numbers, `true`/`false`, addresses, RFC 3339
/// times, `SYN|ACK`; strings as they are, null as `-`.
pub fn write_plain(buf: &mut Vec<u8>, value: Value<'_>) {
    match value {
        Value::Null => buf.push(b'-'),
        Value::Str(s) => buf.extend_from_slice(s.as_bytes()),
        Value::U64(n) => buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        Value::I64(n) => buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        Value::Bool(b) => buf.extend_from_slice(if b { b"true" } else { b"false" }),
        Value::Ip(a) => {
            let _ = write!(buf, "{a}");
        }
        Value::Time(ns) => {
            let mut t = [0u8; 27];
            buf.extend_from_slice(rfc3339(ns, &mut t).as_bytes());
        }
        Value::TcpFlags(f) => {
            let mut s = FlagsBuf::default();
            tcp_flags_text(f, &mut s);
            buf.extend_from_slice(&s.bytes[..s.len]);
        }
    }
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
pub enum OutputError {
    /// The reader went away (EPIPE): stop quietly.
    Closed,
    Io(io::Error),
}

impl From<io::Error> for OutputError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            OutputError::Closed
        } else {
            OutputError::Io(e)
        }
    }
}

/// Records rendered in one format into a buffer, written to a sink.
pub struct Output<W: Write> {
    format: Box<dyn Format>,
    sink: W,
    buf: Vec<u8>,
    /// Flush when this much is buffered even within a batch.
    high_water: usize,
}

impl<W: Write> Output<W> {
    pub fn new(format: &FormatInfo, sink: W) -> Self {
        Output {
            format: (format.make)(),
            sink,
            buf: Vec::with_capacity(256 << 10),
            high_water: 192 << 10,
        }
    }

    pub fn write(&mut self, record: &Record) -> Result<(), OutputError> {
        self.format.render(record, &mut self.buf);
        if self.buf.len() >= self.high_water {
            self.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), OutputError> {
        if !self.buf.is_empty() {
            self.sink.write_all(&self.buf)?;
            self.buf.clear();
        }
        self.sink.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
