//! Where rendered records go: standard output or a file, written by a
//! thread of its own.  The event loop never blocks on a slow reader: it
//! hands over whole batches of records through a bounded queue, and when
//! the queue is full it counts the batch's records as unwritten instead
//! of waiting.  A file is opened for appending and reopened between two
//! batches, so no record is split across a rotation: on request (SIGHUP),
//! and whenever its path no longer names the file it writes (renamed or
//! removed by logrotate), so that records do not keep going to a rotated
//! file its collector may have finished reading.

use std::{
    fs::OpenOptions,
    io::{self, Write},
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{sync_channel, Receiver, SyncSender, TrySendError},
        Arc, Mutex,
    },
    thread,
    time::Duration,
};

/// Batches that may wait for the writer (each at most ~256 KiB).
const QUEUE: usize = 64;

/// What the writer thread reports back.
#[derive(Default)]
struct Shared {
    written: AtomicU64,
    /// Reopen the file before the next batch (SIGHUP).
    reopen: AtomicBool,
    /// The reader went away (EPIPE).
    closed: AtomicBool,
    error: Mutex<Option<String>>,
    done: AtomicBool,
    /// Exit gave up on the writer: stop at the next interrupted write.
    abandoned: AtomicBool,
}

pub(crate) struct Sink {
    tx: Option<SyncSender<(Vec<u8>, u64)>>,
    shared: Arc<Shared>,
    /// Buffers the writer has finished with, for reuse.
    spare: Receiver<Vec<u8>>,
    handed: u64,
    dropped: u64,
    /// The last batch was taken (the reader keeps up).
    flowing: bool,
    name: String,
    thread: Option<thread::JoinHandle<()>>,
}

/// How a sink ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SinkTotals {
    pub written: u64,
    /// Records the reader did not take in time (dropped, or still queued
    /// at exit).
    pub unwritten: u64,
}

fn open_file(path: &Path) -> io::Result<std::fs::File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

impl Sink {
    /// Standard output (`None`) or a file, appended to.
    pub(crate) fn open(path: Option<&Path>) -> io::Result<Sink> {
        let name = path.map_or("standard output".into(), |p| p.display().to_string());
        let out = Target::open(path)?;
        let (tx, rx) = sync_channel(QUEUE);
        let (spare_tx, spare) = sync_channel(QUEUE + 2);
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let thread = thread::Builder::new()
            .name("rsttrace-out".into())
            .spawn(move || write_loop(out, &rx, &spare_tx, &s))?;
        Ok(Sink {
            tx: Some(tx),
            shared,
            spare,
            handed: 0,
            dropped: 0,
            flowing: true,
            name,
            thread: Some(thread),
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// A buffer to render into (one the writer returned, or a new one).
    pub(crate) fn buffer(&self) -> Vec<u8> {
        self.spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(256 << 10))
    }

    /// Hands over a batch of `records` records.  Never blocks: a full
    /// queue (the reader stalled) drops the batch, counted.
    pub(crate) fn send(&mut self, buf: Vec<u8>, records: u64) {
        let Some(tx) = &self.tx else {
            return;
        };
        match tx.try_send((buf, records)) {
            Ok(()) => {
                self.handed += records;
                self.flowing = true;
            }
            Err(TrySendError::Full(_)) => {
                self.flowing = false;
                if self.dropped == 0 {
                    log::warn!(
                        "{} is not keeping up: records are dropped (and counted) until it does",
                        self.name
                    );
                }
                self.dropped += records;
            }
            Err(TrySendError::Disconnected(_)) => self.dropped += records,
        }
    }

    /// Reopens the file (after a rotation) before the next batch: a
    /// batch goes whole to the old file or whole to the new one.
    pub(crate) fn reopen(&mut self) {
        self.shared.reopen.store(true, Ordering::Release);
    }

    /// The reader went away (a closed pipe): stop quietly.
    pub(crate) fn closed(&self) -> bool {
        self.shared.closed.load(Ordering::Relaxed)
    }

    /// Writing failed (a full disk, a dead device): the error.
    pub(crate) fn error(&self) -> Option<String> {
        self.shared.error.lock().ok()?.clone()
    }

    /// Records dropped so far because the reader fell behind.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether the last batch was taken: a record about earlier drops
    /// has a chance of being read.
    pub(crate) fn flowing(&self) -> bool {
        self.flowing
    }

    /// Waits until the writer has written or given up what was handed
    /// over (dev-only replays, which read faster than any output takes).
    pub(crate) fn settle(&self) {
        while self.shared.written.load(Ordering::Acquire) < self.handed
            && !self.shared.done.load(Ordering::Acquire)
        {
            thread::sleep(Duration::from_micros(100));
        }
    }

    /// Lets the writer finish for at most `wait`, then gives up on it: a
    /// write blocked on a reader that stopped reading is interrupted, so
    /// that the records that did get out whole count as written.
    pub(crate) fn finish(&mut self, wait: Duration) -> SinkTotals {
        drop(self.tx.take());
        let step = Duration::from_millis(10);
        let mut waited = Duration::ZERO;
        while !self.shared.done.load(Ordering::Acquire) && waited < wait {
            thread::sleep(step);
            waited += step;
        }
        if !self.shared.done.load(Ordering::Acquire) {
            self.shared.abandoned.store(true, Ordering::Release);
            if let Some(t) = &self.thread {
                interrupt(t);
                // The interrupted write returns at once; a writer that
                // is not in a write stops at its next one.
                let mut waited = Duration::ZERO;
                while !self.shared.done.load(Ordering::Acquire) && waited < INTERRUPTED_WAIT {
                    thread::sleep(step);
                    waited += step;
                }
            }
        }
        if self.shared.done.load(Ordering::Acquire) {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
        let written = self.shared.written.load(Ordering::Acquire);
        SinkTotals {
            written,
            unwritten: self.dropped + self.handed.saturating_sub(written),
        }
    }
}

/// How long an interrupted writer gets to say how far it got.
const INTERRUPTED_WAIT: Duration = Duration::from_millis(50);

/// The signal that interrupts a blocked write at exit: its handler does
/// nothing, and it is installed without SA_RESTART, so that write(2)
/// returns what it wrote so far (or EINTR).
fn interrupt_signal() -> libc::c_int {
    libc::SIGRTMIN()
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// Interrupts the writer thread's blocked write, if any.
fn interrupt(thread: &thread::JoinHandle<()>) {
    use std::os::unix::thread::JoinHandleExt as _;
    // SAFETY: a zeroed sigaction is valid; the handler is async-signal
    // safe (it does nothing) and lives as long as the program.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = ignore_signal as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(interrupt_signal(), &action, std::ptr::null_mut());
    }
    // SAFETY: the thread has not been joined (we hold its handle), so
    // its pthread_t is valid.
    unsafe { libc::pthread_kill(thread.as_pthread_t(), interrupt_signal()) };
}

fn write_loop(
    mut out: Target,
    rx: &Receiver<(Vec<u8>, u64)>,
    spare: &SyncSender<Vec<u8>>,
    shared: &Shared,
) {
    while let Ok((mut buf, records)) = rx.recv() {
        let asked = shared.reopen.swap(false, Ordering::AcqRel);
        let result = out
            .follow_path(asked)
            .and_then(|()| write_counted(&mut out, &buf, records, shared))
            .and_then(|()| out.flush());
        buf.clear();
        let _ = spare.try_send(buf);
        if let Err(e) = result {
            if e.kind() == io::ErrorKind::BrokenPipe {
                shared.closed.store(true, Ordering::Release);
            } else if shared.abandoned.load(Ordering::Acquire) {
                // Given up at exit: what did not get out is counted.
            } else if let Ok(mut slot) = shared.error.lock() {
                slot.get_or_insert(e.to_string());
            }
            break;
        }
    }
    shared.done.store(true, Ordering::Release);
}

/// Writes one batch of `records` records, adding each record to
/// `written` as its line is out whole: a batch cut short (a reader that
/// stopped reading, at exit) counts the records that did get through, so
/// that written and unwritten add up to what was handed over.  Lines
/// stand for records (JSON and logfmt; a text summary table spans lines,
/// and only a whole batch counts it exactly).
fn write_counted(
    out: &mut impl Write,
    buf: &[u8],
    records: u64,
    shared: &Shared,
) -> io::Result<()> {
    let written = &shared.written;
    let (mut at, mut counted) = (0, 0u64);
    while at < buf.len() {
        if shared.abandoned.load(Ordering::Acquire) {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = match out.write(&buf[at..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if at + n == buf.len() {
            // The rest went out whole: no need to look at its lines.
            break;
        }
        let lines = buf[at..at + n].iter().filter(|&&b| b == b'\n').count() as u64;
        at += n;
        // The batch's last record is counted when the batch is done.
        let now = (counted + lines).min(records.saturating_sub(1));
        written.fetch_add(now - counted, Ordering::Release);
        counted = now;
    }
    written.fetch_add(records - counted, Ordering::Release);
    Ok(())
}

/// Where batches go.
enum Target {
    /// File descriptor 1 itself, unbuffered: a write returns what reached
    /// the reader (std's line buffering would take bytes it has not
    /// written yet), and nothing else in rsttrace writes there.
    Stdout(std::mem::ManuallyDrop<std::fs::File>),
    File {
        path: PathBuf,
        file: std::fs::File,
        /// (device, inode) of `file`.
        id: (u64, u64),
    },
}

impl Target {
    fn open(path: Option<&Path>) -> io::Result<Target> {
        let Some(path) = path else {
            use std::os::fd::FromRawFd as _;
            // SAFETY: fd 1 stays open for the life of the process; the
            // File is never dropped, so it is never closed here.
            let stdout = unsafe { std::fs::File::from_raw_fd(libc::STDOUT_FILENO) };
            return Ok(Target::Stdout(std::mem::ManuallyDrop::new(stdout)));
        };
        let file = open_file(path)?;
        let m = file.metadata()?;
        Ok(Target::File {
            path: path.to_path_buf(),
            file,
            id: (m.dev(), m.ino()),
        })
    }

    /// Reopens the file when asked, or when its path now names another
    /// file or none (one stat per batch).
    fn follow_path(&mut self, asked: bool) -> io::Result<()> {
        let Target::File { path, id, .. } = self else {
            return Ok(());
        };
        let moved = std::fs::metadata(&*path).map_or(true, |m| (m.dev(), m.ino()) != *id);
        if asked || moved {
            *self = Target::open(Some(&path.clone()))?;
        }
        Ok(())
    }
}

impl Write for Target {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Target::Stdout(s) => (&**s).write(buf),
            Target::File { file, .. } => file.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Target::Stdout(_) => Ok(()),
            Target::File { file, .. } => file.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_and_reopens_between_batches() {
        let dir = std::env::temp_dir().join(format!("rsttrace-sink-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.json");
        let rotated = dir.join("out.json.1");
        let mut s = Sink::open(Some(&path)).unwrap();
        let written = |s: &Sink, n| {
            while s.shared.written.load(Ordering::Acquire) < n {
                thread::sleep(Duration::from_millis(5));
            }
        };
        s.send(b"a\n".to_vec(), 1);
        written(&s, 1);
        // Rotate as logrotate does: the next batch goes to a new file at
        // the path, told (SIGHUP) or not.
        std::fs::rename(&path, &rotated).unwrap();
        s.send(b"b\n".to_vec(), 1);
        written(&s, 2);
        s.reopen();
        s.send(b"c\n".to_vec(), 1);
        let t = s.finish(Duration::from_secs(5));
        assert_eq!(
            t,
            SinkTotals {
                written: 3,
                unwritten: 0
            }
        );
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "a\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "b\nc\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Takes at most `chunk` bytes a write and `left` in all, then fails
    /// as a reader that went away does.
    struct Trickle {
        chunk: usize,
        left: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            let n = buf.len().min(self.chunk).min(self.left);
            self.left -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_batch_cut_short_counts_its_whole_lines() {
        let batch = b"aaaa\nbbbb\ncccc\ndddd\n";
        let shared = Shared::default();
        // 12 of 20 bytes, 7 at a time: two whole lines got out.
        let mut out = Trickle { chunk: 7, left: 12 };
        assert!(write_counted(&mut out, batch, 4, &shared).is_err());
        assert_eq!(shared.written.load(Ordering::Acquire), 2);
        // All of it, in pieces: four records.
        let shared = Shared::default();
        let mut out = Trickle {
            chunk: 3,
            left: 100,
        };
        write_counted(&mut out, batch, 4, &shared).unwrap();
        assert_eq!(shared.written.load(Ordering::Acquire), 4);
        // Given up at exit: the next write is not even tried.
        shared.abandoned.store(true, Ordering::Release);
        let mut out = Trickle {
            chunk: 3,
            left: 100,
        };
        assert!(write_counted(&mut out, batch, 4, &shared).is_err());
        assert_eq!((out.left, shared.written.load(Ordering::Acquire)), (100, 4));
    }

    #[test]
    fn a_full_device_is_an_error() {
        let mut s = Sink::open(Some(Path::new("/dev/full"))).unwrap();
        s.send(b"x\n".to_vec(), 1);
        let t = s.finish(Duration::from_secs(5));
        assert_eq!(t.unwritten, 1);
        assert!(s.error().unwrap().contains("No space"), "{:?}", s.error());
    }
}
