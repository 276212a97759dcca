//! The userspace flow for every record: decode -> classify -> correlate
//! -> enrich -> filter -> output.

mod build;
pub mod correlate;
mod failures;
pub mod filter;
mod summary;

use std::{
    collections::VecDeque,
    io::Write,
    time::{Duration, Instant},
};

use rsttrace_common::event::{AggKey, AggValue};

use self::{
    correlate::{Correlator, Draft},
    filter::Filter,
};
use crate::{
    classify::{classify, Cause, Direction},
    decode::{decode, Captured, CapturedReset, DecodeError, ErrorReport},
    enrich::{
        bounded::Bounded,
        listeners::ListenerHistory,
        owner::{Lookup, OwnerResolver},
        scanner::Reply,
    },
    kernel::{
        clock::{boottime_ns, JiffiesAnchor, WallClock},
        names::KernelNames,
    },
    model::{
        conn::Conn,
        failure::{FailureKind, Icmp},
        lost::{Lost, LostWhy},
        Record,
    },
    output::{Output, OutputError},
};

pub struct Settings {
    pub filter: Filter,
    /// Also report connection failures that involve no reset.
    pub failures: bool,
    /// How long a reset waits for its error report.
    pub hold: Duration,
    /// Whether the kernel reports errnos (`inet_sk_error_report`).
    pub error_reports: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub resets: u64,
    pub sent: u64,
    pub received: u64,
    pub failures: u64,
    pub suppressed_records: u64,
    pub suppressed_resets: u64,
    /// Resets left out by --cause/--direction/--port/--pid.
    pub filtered: u64,
    /// Resets that arrived for no socket (reported with --stray-resets).
    pub strays: u64,
    pub decode_errors: u64,
}

/// A record waiting for its owner (the scanner is looking).  Rare, but
/// boxing would allocate on the common path that builds the draft.
#[allow(clippy::large_enum_variant)]
enum Parked {
    Reset(Draft),
    Failure(ErrorReport, FailureKind),
}

/// How long a record waits for the scanner before going out without
/// what it could not find.
const OWNER_WAIT: Duration = Duration::from_millis(500);

pub struct Pipeline<W: Write> {
    names: KernelNames,
    clock: WallClock,
    correlator: Correlator,
    owners: OwnerResolver,
    listeners: ListenerHistory,
    settings: Settings,
    parked: VecDeque<(Parked, Instant)>,
    ready: Vec<Draft>,
    /// Recent ICMP errors about our segments, by connection.
    icmp: Bounded<Conn, Icmp>,
    out: Output<W>,
    pub stats: Stats,
    /// Output ended: the reader went away (quietly) or writing failed
    /// (`write_error`).
    pub closed: bool,
    pub write_error: Option<std::io::Error>,
    first_decode_error: Option<DecodeError>,
    jiffies: Option<JiffiesAnchor>,
}

impl<W: Write> Pipeline<W> {
    pub fn new(
        names: KernelNames,
        owners: OwnerResolver,
        listeners: ListenerHistory,
        out: Output<W>,
        settings: Settings,
    ) -> Self {
        Pipeline {
            correlator: Correlator::new(settings.hold, settings.error_reports),
            names,
            clock: WallClock::now(),
            owners,
            listeners,
            settings,
            parked: VecDeque::new(),
            ready: Vec::new(),
            icmp: Bounded::new(1024),
            out,
            stats: Stats::default(),
            closed: false,
            write_error: None,
            first_decode_error: None,
            jiffies: None,
        }
    }

    /// For the times of storm summaries (counted in jiffies).
    pub fn set_jiffies_anchor(&mut self, anchor: Option<JiffiesAnchor>) {
        self.jiffies = anchor;
    }

    pub fn owners(&mut self) -> &mut OwnerResolver {
        &mut self.owners
    }

    /// One raw record from the kernel.
    pub fn handle(&mut self, bytes: &[u8]) {
        let now = Instant::now();
        match decode(bytes, &self.names) {
            Ok(Captured::Reset(ev)) => self.on_reset(ev, now),
            Ok(Captured::ErrorReport(er)) => self.on_report(er, now),
            Ok(Captured::Listen(l)) => self.listeners.on_listen(&l),
            Ok(Captured::Firewall(v)) => self.on_firewall(&v, now),
            Ok(Captured::Icmp(i)) => self.on_icmp(i),
            Ok(Captured::Stray(r)) => self.on_stray(&r),
            Err(e) => {
                self.stats.decode_errors += 1;
                if self.first_decode_error.is_none() {
                    log::warn!("undecodable record from the kernel: {e}");
                    self.first_decode_error = Some(e);
                }
            }
        }
    }

    fn on_reset(&mut self, ev: CapturedReset, now: Instant) {
        let class = classify(&ev.facts);
        let draft = Draft {
            ev,
            class,
            delivered: None,
            other_end: None,
        };
        self.correlator.on_reset(draft, now, &mut self.ready);
        self.drain_ready();
    }

    fn drain_ready(&mut self) {
        let mut ready = std::mem::take(&mut self.ready);
        for d in ready.drain(..) {
            if self.settings.filter.admits(&d.class, &d.ev.conn) {
                self.reset(d, false);
            } else {
                self.stats.filtered += 1;
            }
        }
        self.ready = ready;
    }

    /// Writes a reset once its owner is known; parks it while the scanner
    /// looks (`late`: give up waiting and use what is known).
    fn reset(&mut self, d: Draft, late: bool) {
        let closed = d.ev.closed_ns.is_some();
        let owner = match self
            .owners
            .owner(d.ev.owner.as_ref(), d.ev.sock_ino, closed)
        {
            Lookup::Ready(o) => o,
            Lookup::Pending if !late => {
                self.parked.push_back((Parked::Reset(d), Instant::now()));
                return;
            }
            Lookup::Pending => self.owners.owner_now(d.ev.owner.as_ref(), d.ev.sock_ino),
        };
        if !self
            .settings
            .filter
            .admits_owner(owner.as_ref().map(|o| o.pid))
        {
            self.stats.filtered += 1;
            return;
        }
        let history =
            matches!(d.class.cause, Cause::NoListener | Cause::StaleConnection).then(|| {
                self.listeners
                    .note(d.ev.netns, d.ev.conn.local_port, d.ev.ts_ns)
            });
        let record = build::reset(&d, owner, history, &self.clock);
        self.stats.resets += 1;
        match record.direction {
            Direction::Sent => self.stats.sent += 1,
            Direction::Received => self.stats.received += 1,
        }
        self.write(&Record::Reset(record));
    }

    /// An answer from the scanner: parked records may go now.
    pub fn on_scanner_reply(&mut self, reply: Reply) {
        self.owners.ingest(reply);
        self.retry_parked(false);
    }

    fn retry_parked(&mut self, all: bool) {
        let now = Instant::now();
        for (p, since) in std::mem::take(&mut self.parked) {
            let late = all || now.duration_since(since) >= OWNER_WAIT;
            match p {
                Parked::Reset(d) => self.reset(d, late),
                Parked::Failure(er, kind) => self.failure(er, kind, late),
            }
        }
    }

    pub fn has_pending(&self) -> bool {
        self.correlator.has_held() || !self.parked.is_empty()
    }

    /// End of a batch: release what is due, write out.
    pub fn end_batch(&mut self) -> Result<(), OutputError> {
        self.release(false);
        self.flush()
    }

    /// Releases held and parked records that waited long enough (`all`:
    /// everything, at exit).
    pub fn release(&mut self, all: bool) {
        self.correlator
            .release_due(Instant::now(), all, &mut self.ready);
        self.drain_ready();
        if all || !self.parked.is_empty() {
            self.retry_parked(all);
        }
    }

    pub fn flush(&mut self) -> Result<(), OutputError> {
        if self.closed {
            return Err(OutputError::Closed);
        }
        let r = self.out.flush();
        self.track(r);
        if self.closed {
            Err(OutputError::Closed)
        } else {
            Ok(())
        }
    }

    /// Once a second: keep the wall clock honest.
    pub fn tick(&mut self) {
        self.clock = WallClock::now();
    }

    fn track(&mut self, r: Result<(), OutputError>) {
        match r {
            Ok(()) => {}
            Err(OutputError::Closed) => self.closed = true,
            Err(OutputError::Io(e)) => {
                self.write_error.get_or_insert(e);
                self.closed = true;
            }
        }
    }

    fn write(&mut self, record: &Record) {
        if self.closed {
            return;
        }
        let r = self.out.write(record);
        self.track(r);
    }

    /// Storm summaries drained from the kernel's aggregation table.
    pub fn on_aggregates(&mut self, entries: &[(AggKey, AggValue)]) {
        for (key, value) in entries {
            let s =
                summary::suppressed(key, value, &self.names, &self.clock, self.jiffies.as_ref());
            self.stats.suppressed_records += 1;
            self.stats.suppressed_resets += value.count;
            self.write(&Record::Suppressed(s));
        }
    }

    /// Tells the reader of the output that events were lost.
    pub fn on_lost(&mut self, count: u64, why: LostWhy) {
        let unix_ns = self.clock.unix_ns(boottime_ns());
        self.write(&Record::Lost(Lost {
            unix_ns,
            count,
            why,
        }));
    }
}
