//! Rendering reports as text lines or JSON objects, and writing them.
//!
//! Output is buffered and flushed once per batch of records read from the
//! kernel, so a storm costs one write(2) per batch, not per reset.  A
//! closed stdout (`rsttrace | head`) ends the run quietly.

pub mod json;
pub mod records;
pub mod schema;
pub mod text;

use std::io::{self, Write};

use crate::report::Report;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One readable line per reset.
    Text,
    /// One JSON object per line (see `rsttrace schema`).
    Json,
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

pub struct Output<W: Write> {
    format: Format,
    sink: W,
    buf: Vec<u8>,
    scratch: String,
    /// Flush when this much is buffered even within a batch.
    high_water: usize,
}

impl<W: Write> Output<W> {
    pub fn new(format: Format, sink: W) -> Self {
        Output {
            format,
            sink,
            buf: Vec::with_capacity(256 << 10),
            scratch: String::with_capacity(32),
            high_water: 192 << 10,
        }
    }

    pub fn write(&mut self, report: &Report<'_>) -> Result<(), OutputError> {
        match self.format {
            Format::Json => schema::write_reset(report, &mut self.buf, &mut self.scratch),
            Format::Text => text::write_reset(report, &mut self.buf, &mut self.scratch),
        }
        self.maybe_flush()
    }

    /// Appends an already-rendered record (summaries, failures).
    pub fn write_with(&mut self, f: impl FnOnce(Format, &mut Vec<u8>)) -> Result<(), OutputError> {
        f(self.format, &mut self.buf);
        self.maybe_flush()
    }

    fn maybe_flush(&mut self) -> Result<(), OutputError> {
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
