//! Dev-only, undocumented: the raw records rsttrace reads, saved to a file
//! and replayed through the real pipeline, so that the userspace cost per
//! record can be profiled repeatably (`valgrind --tool=callgrind` counts
//! instructions whatever else the machine does).
//!
//! `RSTTRACE_DUMP_RAW=FILE rsttrace ...` appends every record read; then
//! `cargo build --release --example replay` and
//! `valgrind --tool=callgrind target/release/examples/replay FILE >/dev/null`
//! (root: the kernel's names come from its BTF, as in a real run).
//!
//! The file: each record is its length (u32, little-endian) and its bytes;
//! a zero length ends a batch (one drain of the buffer) and is followed by
//! the time it was read (u64 ns since the dump began), so the replay hands
//! records over in the batches, and at the pace, the real run read them:
//! the correlator holds records for a while, and a replay at full speed
//! would release far more at once than a real run ever does.

use std::{
    fs::File,
    io::{self, BufWriter, Read, Write},
    path::Path,
    time::{Duration, Instant},
};

/// The variable that turns the dump on.
pub const DUMP_VAR: &str = "RSTTRACE_DUMP_RAW";

/// An open dump file: the records one run reads, in the format described
/// above.
pub struct RawDump {
    file: BufWriter<File>,
    began: Instant,
}

impl RawDump {
    /// From `RSTTRACE_DUMP_RAW`, if set (a file that cannot be created is
    /// said once and ignored: this is a developer's tool).
    pub fn from_env() -> Option<RawDump> {
        let path = std::env::var_os(DUMP_VAR)?;
        match File::create(&path) {
            Ok(f) => Some(RawDump {
                file: BufWriter::with_capacity(1 << 20, f),
                began: Instant::now(),
            }),
            Err(e) => {
                log::warn!(
                    "{DUMP_VAR}: cannot create {}: {e}",
                    Path::new(&path).display()
                );
                None
            }
        }
    }

    /// Appends one record as it came out of the buffer.  Write errors are
    /// ignored: the dump must never stop a trace.
    pub fn record(&mut self, bytes: &[u8]) {
        let _ = self.file.write_all(&(bytes.len() as u32).to_le_bytes());
        let _ = self.file.write_all(bytes);
    }

    /// Ends the batch of one drain, stamped with the time since the dump
    /// began, so that the replay keeps the real run's pace.
    pub fn end_batch(&mut self) {
        let at = self.began.elapsed().as_nanos() as u64;
        let _ = self.file.write_all(&0u32.to_le_bytes());
        let _ = self.file.write_all(&at.to_le_bytes());
    }
}

/// One drain of the buffer: when, after the dump began, and what.
pub struct Batch {
    /// When the batch was read, counted from the start of the dump.
    pub at: Duration,
    /// The raw records, each as the eBPF programs wrote it.
    pub records: Vec<Vec<u8>>,
}

/// The batches of a dump.
pub fn read(path: &Path) -> io::Result<Vec<Batch>> {
    let mut bytes = vec![];
    File::open(path)?.read_to_end(&mut bytes)?;
    let (mut batches, mut batch) = (vec![], vec![]);
    let mut at = 0;
    while at + 4 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        at += 4;
        if len == 0 {
            let Some(ns) = bytes.get(at..at + 8) else {
                break;
            };
            let ns = u64::from_le_bytes(ns.try_into().expect("8 bytes"));
            at += 8;
            batches.push(Batch {
                at: Duration::from_nanos(ns),
                records: std::mem::take(&mut batch),
            });
            continue;
        }
        let Some(record) = bytes.get(at..at + len) else {
            break;
        };
        batch.push(record.to_vec());
        at += len;
    }
    if !batch.is_empty() {
        let at = batches.last().map_or(Duration::ZERO, |b: &Batch| b.at);
        batches.push(Batch { at, records: batch });
    }
    Ok(batches)
}
