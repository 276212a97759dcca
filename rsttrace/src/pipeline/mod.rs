//! The userspace flow for every record: decode -> classify -> correlate
//! -> enrich -> filter -> output.

mod build;
pub(crate) mod correlate;
mod failures;
pub(crate) mod filter;
mod summary;
pub(crate) mod topn;

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use rsttrace_common::event::{AggKey, AggValue};

use self::{
    correlate::{Correlator, Draft, Ready},
    filter::Filter,
    topn::{service_port, TopTable},
};
use crate::{
    classify::{classify, Direction},
    config::Rules,
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
    metrics::Tally,
    model::reset::Reset,
    model::{
        conn::Conn,
        failure::{FailureKind, Icmp},
        lost::{Lost, LostWhy},
        owner::Owner,
        Record,
    },
    output::{Output, OutputError},
};

pub(crate) struct Settings {
    pub filter: Filter,
    /// Also report connection failures that involve no reset.
    pub failures: bool,
    /// How long a reset waits for its error report.
    pub hold: Duration,
    /// Whether the kernel reports errnos (`inet_sk_error_report`).
    pub error_reports: bool,
    /// Suppression rules (--config, --suppress).
    pub rules: Rules,
    /// Keep the periodic top table (--summary).
    pub summary: bool,
    /// Report at most this many resets (--count): rsttrace stops there,
    /// so resets later in the same batch are past its end.
    pub count: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stats {
    pub resets: u64,
    pub sent: u64,
    pub received: u64,
    pub failures: u64,
    pub suppressed_records: u64,
    pub suppressed_resets: u64,
    /// Resets left out by --cause/--direction/--port/--pid.
    pub filtered: u64,
    /// Resets silenced by suppression rules.
    pub silenced: u64,
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

/// What was seen, written and silenced: the exit totals (`stats`), the
/// metrics (`tally`) and the --summary table (`top`).
struct Accounting {
    stats: Stats,
    /// Counts for the metrics, of everything classified.
    tally: Tally,
    top: Option<TopTable>,
}

pub(crate) struct Pipeline {
    names: KernelNames,
    clock: WallClock,
    correlator: Correlator,
    owners: OwnerResolver,
    listeners: ListenerHistory,
    settings: Settings,
    parked: VecDeque<(Parked, Instant)>,
    ready: Vec<Ready>,
    /// Recent ICMP errors about our segments, by connection.
    icmp: Bounded<Conn, Icmp>,
    /// Sockets whose connection failure was written: the kernel's later
    /// reports about the same attempt are not another failure.
    failed: Bounded<(u64, Conn), ()>,
    out: Output,
    acct: Accounting,
    /// Output ended: the reader went away (quietly) or writing failed
    /// (`write_error`).
    closed: bool,
    write_error: Option<String>,
    first_decode_error: Option<DecodeError>,
    jiffies: Option<JiffiesAnchor>,
    now: RecordClock,
}

/// `Instant::now()` for records as they are read: read afresh at the
/// start of each batch and every `RecordClock::EVERY` records, not for
/// each (it showed under a storm).  What it times are holds of 50 ms and
/// more, and a batch's records are read within a millisecond or so.
#[derive(Default)]
struct RecordClock {
    at: Option<Instant>,
    left: u32,
}

impl RecordClock {
    const EVERY: u32 = 256;

    fn get(&mut self) -> Instant {
        match self.at {
            Some(at) if self.left > 0 => {
                self.left -= 1;
                at
            }
            _ => {
                let at = Instant::now();
                self.at = Some(at);
                self.left = Self::EVERY - 1;
                at
            }
        }
    }

    /// The next record reads the clock.
    fn expire(&mut self) {
        self.at = None;
    }
}

impl Pipeline {
    pub(crate) fn new(
        names: KernelNames,
        owners: OwnerResolver,
        listeners: ListenerHistory,
        out: Output,
        settings: Settings,
    ) -> Self {
        let tally = Tally::new(settings.rules.rules.len());
        let top = settings.summary.then(TopTable::default);
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
            failed: Bounded::new(1024),
            out,
            acct: Accounting {
                stats: Stats::default(),
                tally,
                top,
            },
            closed: false,
            write_error: None,
            first_decode_error: None,
            jiffies: None,
            now: RecordClock::default(),
        }
    }

    /// For the times of storm summaries (counted in jiffies).
    pub(crate) fn set_jiffies_anchor(&mut self, anchor: Option<JiffiesAnchor>) {
        self.jiffies = anchor;
    }

    /// Sockets the owner index knows (said at start-up).
    pub(crate) fn sockets_indexed(&self) -> usize {
        self.owners.indexed()
    }

    /// Whether the /proc scanner has work out: its replies are awaited.
    pub(crate) fn scanner_busy(&self) -> bool {
        self.owners.busy()
    }

    /// The /proc scanner's replies (for `on_scanner_reply`).
    pub(crate) fn scanner_replies(
        &mut self,
    ) -> Option<&mut tokio::sync::mpsc::UnboundedReceiver<crate::enrich::scanner::Reply>> {
        self.owners.replies()
    }

    pub(crate) fn stats(&self) -> Stats {
        self.acct.stats
    }

    pub(crate) fn tally(&self) -> &Tally {
        &self.acct.tally
    }

    /// Whether the output ended (the reader went away, or writing failed).
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    pub(crate) fn take_write_error(&mut self) -> Option<String> {
        self.write_error.take()
    }

    /// logrotate renamed the file: what is queued goes to the old one,
    /// what follows to a new one.
    pub(crate) fn reopen_output(&mut self) {
        let _ = self.flush();
        self.out.sink().reopen();
    }

    /// The output's writer, for its counts and state.
    pub(crate) fn sink(&mut self) -> &crate::output::sink::Sink {
        self.out.sink()
    }

    /// Lets the writer finish for at most `wait`.
    pub(crate) fn finish_output(
        &mut self,
        wait: std::time::Duration,
    ) -> crate::output::sink::SinkTotals {
        self.out.finish(wait)
    }

    /// Waits until the writer has written what was handed over (replays).
    pub(crate) fn settle_output(&mut self) {
        self.out.sink().settle();
    }

    /// One raw record from the kernel.
    pub(crate) fn handle(&mut self, bytes: &[u8]) {
        let now = self.now.get();
        match decode(bytes, &self.names) {
            Ok(Captured::Reset(ev)) => self.on_reset(ev, now),
            Ok(Captured::ErrorReport(er)) => self.on_report(er, now),
            Ok(Captured::Listen(l)) => self.listeners.on_listen(&l),
            Ok(Captured::Firewall(v)) => self.on_firewall(&v, now),
            Ok(Captured::Icmp(i)) => self.on_icmp(i),
            Ok(Captured::Stray(r)) => self.on_stray(&r),
            Err(e) => {
                self.acct.stats.decode_errors += 1;
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
        // By reference: a draft is half a kilobyte, and moving each out
        // of the list and into `reset` showed under a storm.
        for d in &ready {
            if self.settings.filter.admits(&d.class, &d.ev.conn) {
                self.reset(d, false);
            } else {
                self.acct.stats.filtered += 1;
            }
        }
        self.correlator.recycle(&mut ready);
        self.ready = ready;
    }

    /// Writes a reset once its owner is known; parks it while the scanner
    /// looks (`late`: give up waiting and use what is known).
    fn reset(&mut self, d: &Draft, late: bool) {
        let closed = d.ev.closed_ns.is_some();
        let owner = match self
            .owners
            .owner(d.ev.owner.as_ref(), d.ev.sock_ino, closed)
        {
            Lookup::Ready(o) => o,
            Lookup::Pending if !late => {
                self.parked
                    .push_back((Parked::Reset(d.clone()), Instant::now()));
                return;
            }
            Lookup::Pending => self.owners.owner_now(d.ev.owner.as_ref(), d.ev.sock_ino),
        };
        if !self
            .settings
            .filter
            .admits_owner(owner.as_ref().map(|o| o.pid))
        {
            self.acct.stats.filtered += 1;
            return;
        }
        if self
            .settings
            .count
            .is_some_and(|c| self.acct.stats.resets >= c)
        {
            return;
        }
        self.emit(d, owner);
    }

    /// Builds the record, counts it, and writes it unless a rule silences
    /// it.
    fn emit(&mut self, d: &Draft, owner: Option<Owner>) {
        let history = d.class.cause.wants_listener_history().then(|| {
            self.listeners
                .note(d.ev.netns, d.ev.conn.local_port, d.ev.ts_ns)
        });
        // Built in the record it is written as (not moved into one).
        let record = Record::Reset(build::reset(d, owner, history, &self.clock));
        let Record::Reset(r) = &record else {
            return;
        };
        let rule = self.settings.rules.silencing(r);
        self.count(r, rule);
        if rule.is_some() {
            self.acct.stats.silenced += 1;
            return;
        }
        self.acct.stats.resets += 1;
        match r.direction {
            Direction::Sent => self.acct.stats.sent += 1,
            Direction::Received => self.acct.stats.received += 1,
        }
        self.write(&record);
    }

    /// Counts a reset, reported or silenced by `rule`.
    fn count(&mut self, r: &Reset, rule: Option<usize>) {
        self.acct.tally.reset(r, rule);
        if let Some(top) = &mut self.acct.top {
            let port = service_port(r.direction, r.conn.local_port, r.conn.remote_port);
            let comm = r.owner.as_ref().map(|o| o.comm);
            top.add(r.cause, comm, port, 1, rule.is_some());
        }
    }

    /// Writes the period's top table (--summary) and starts a new one.
    pub(crate) fn summarize(&mut self) {
        let Some(top) = &mut self.acct.top else {
            return;
        };
        let rows = top.take(self.clock.unix_ns(boottime_ns()));
        for row in rows {
            self.write(&Record::Summary(row));
        }
    }

    /// An answer from the scanner: parked records may go now.
    pub(crate) fn on_scanner_reply(&mut self, reply: Reply) {
        self.owners.ingest(reply);
        self.retry_parked(false);
    }

    fn retry_parked(&mut self, all: bool) {
        let now = Instant::now();
        for (p, since) in std::mem::take(&mut self.parked) {
            let late = all || now.duration_since(since) >= OWNER_WAIT;
            match p {
                Parked::Reset(d) => self.reset(&d, late),
                Parked::Failure(er, kind) => self.failure(er, kind, late),
            }
        }
    }

    pub(crate) fn has_pending(&self) -> bool {
        self.correlator.has_held() || !self.parked.is_empty()
    }

    /// End of a batch: release what is due, write out.
    pub(crate) fn end_batch(&mut self) -> Result<(), OutputError> {
        self.now.expire();
        self.release(false);
        self.flush()
    }

    /// Releases held and parked records that waited long enough (`all`:
    /// everything, at exit).
    pub(crate) fn release(&mut self, all: bool) {
        self.correlator
            .release_due(Instant::now(), all, &mut self.ready);
        self.drain_ready();
        if all || !self.parked.is_empty() {
            self.retry_parked(all);
        }
    }

    /// Hands what is rendered to the writer thread (never blocks).
    pub(crate) fn flush(&mut self) -> Result<(), OutputError> {
        if !self.closed {
            self.out.flush();
            self.track();
        }
        if self.closed {
            Err(OutputError::Closed)
        } else {
            Ok(())
        }
    }

    /// Once a second: keep the wall clock honest.
    pub(crate) fn tick(&mut self) {
        self.clock = WallClock::now();
    }

    fn track(&mut self) {
        match self.out.state() {
            Ok(()) => {}
            Err(OutputError::Closed) => self.closed = true,
            Err(OutputError::Io(e)) => {
                self.write_error.get_or_insert(e);
                self.closed = true;
            }
        }
    }

    fn write(&mut self, record: &Record) {
        if !self.closed {
            self.out.write(record);
        }
    }

    /// Storm summaries drained from the kernel's aggregation table.
    pub(crate) fn on_aggregates(&mut self, entries: &[(AggKey, AggValue)]) {
        for (key, value) in entries {
            let s =
                summary::suppressed(key, value, &self.names, &self.clock, self.jiffies.as_ref());
            self.acct.stats.suppressed_records += 1;
            self.acct.stats.suppressed_resets += value.count;
            self.acct.tally.storm(&s);
            if let Some(top) = &mut self.acct.top {
                top.add(s.cause, s.owner.map(|o| o.comm), s.port, s.count, false);
            }
            self.write(&Record::Suppressed(s));
        }
    }

    /// Tells the reader of the output that events were lost.
    pub(crate) fn on_lost(&mut self, count: u64, why: LostWhy) {
        self.acct.tally.lost(why, count);
        let unix_ns = self.clock.unix_ns(boottime_ns());
        self.write(&Record::Lost(Lost {
            unix_ns,
            count,
            why,
        }));
    }
}
