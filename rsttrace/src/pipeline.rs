//! The userspace flow for every record: decode -> correlate -> enrich ->
//! classify -> output.
//!
//! Correlation: the kernel reports the errno a local socket gets
//! (`inet_sk_error_report`) right after a received reset or a keepalive
//! timeout, in the same call chain, and right *before* the reset of a
//! destroyed socket.  Such resets wait here up to `hold` for their report;
//! reports wait in a short history for the reset that follows them.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    io::Write,
    time::{Duration, Instant},
};

use rsttrace_common::event::{
    AggKey, AggValue, ErrorReportEvent, Owner, ResetEvent, FLAG_HAS_SK, FLAG_HAS_SKB,
    FLAG_OWNER_FROM_LISTENER, FLAG_OWNER_KNOWN, KIND_RESET_RECEIVED, KIND_RESET_SENT,
    REASON_ABSENT, VERDICT_DROP, VERDICT_ICMP, VERDICT_RESET,
};

use crate::{
    classify::{classify, Cause, Classification, Direction, Errno},
    decode::{comm_str, decode, DecodeError, Record},
    enrich::{
        container::{proc_container, CgroupIndex, Container},
        listeners::ListenerHistory,
        owner::OwnerIndex,
    },
    kernel::{
        clock::{boottime_ns, JiffiesAnchor, WallClock},
        layout::KernelNames,
    },
    output::{records, Output, OutputError},
    report::{Context, Delivered, ListenerNote, OwnerRef, OwnerSource, Report, TaskRef},
};

/// Which resets to report (userspace filters; `--netns` is applied in the
/// kernel).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub causes: Option<HashSet<Cause>>,
    pub direction: Option<Direction>,
    pub port: Option<u16>,
    pub pid: Option<u32>,
}

impl Filter {
    fn before_owner(&self, ev: &ResetEvent, cause: Cause) -> bool {
        self.causes.as_ref().is_none_or(|c| c.contains(&cause))
            && self.direction.is_none_or(|d| d == cause.direction())
            && self
                .port
                .is_none_or(|p| p == ev.local_port || p == ev.remote_port)
    }
}

pub struct Settings {
    pub filter: Filter,
    /// Also report connection failures that involve no reset.
    pub failures: bool,
    /// How long a reset waits for its error report.
    pub hold: Duration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub resets: u64,
    pub sent: u64,
    pub received: u64,
    pub failures: u64,
    pub suppressed_records: u64,
    pub suppressed_resets: u64,
    pub filtered_out: u64,
    pub decode_errors: u64,
}

struct Pending {
    ev: ResetEvent,
    since: Instant,
    delivered: Option<(Errno, Owner)>,
    /// A received reset in FIN_WAIT after shutdown(SHUT_RD) may be the
    /// kernel resetting its own socket (TCP_ABORT_ON_DATA follows).
    may_be_local_abort: bool,
    local_abort: bool,
}

struct RecentReport {
    sk: u64,
    errno: Errno,
    owner: Owner,
    at: Instant,
}

const RECENT: usize = 1024;
/// RCV_SHUTDOWN bit of sk_shutdown.
const RCV_SHUTDOWN: u8 = 1;

/// Lookup tables that need mutation (caches, rescans) before a report can
/// borrow from them.
struct Enricher {
    names: KernelNames,
    clock: WallClock,
    owners: OwnerIndex,
    cgroups: CgroupIndex,
    by_cgroup_id: HashMap<u64, Option<Container>>,
    by_pid: HashMap<u32, Option<Container>>,
    listeners: ListenerHistory,
}

pub struct Pipeline<W: Write> {
    en: Enricher,
    out: Output<W>,
    settings: Settings,
    pending: VecDeque<Pending>,
    reports: VecDeque<RecentReport>,
    /// Sockets that had a reset recently (for failure detection).
    reset_socks: VecDeque<(u64, Instant)>,
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
        owners: OwnerIndex,
        listeners: ListenerHistory,
        out: Output<W>,
        settings: Settings,
    ) -> Self {
        Pipeline {
            en: Enricher {
                names,
                clock: WallClock::now(),
                owners,
                cgroups: CgroupIndex::new(Duration::from_secs(1)),
                by_cgroup_id: HashMap::new(),
                by_pid: HashMap::new(),
                listeners,
            },
            out,
            settings,
            pending: VecDeque::new(),
            reports: VecDeque::new(),
            reset_socks: VecDeque::new(),
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

    /// Sockets indexed from /proc.
    pub fn owner_count(&self) -> usize {
        self.en.owners.len()
    }

    /// One raw record from the kernel.
    pub fn handle(&mut self, bytes: &[u8]) {
        match decode(bytes) {
            Ok(Record::Reset(ev)) => self.on_reset(ev),
            Ok(Record::ErrorReport(er)) => self.on_error_report(er),
            Ok(Record::Listen(le)) => self.en.listeners.on_listen(&le),
            Ok(Record::Firewall(ev)) => self.on_firewall(ev),
            Err(e) => {
                self.stats.decode_errors += 1;
                if self.first_decode_error.is_none() {
                    log::warn!("undecodable record from the kernel: {e}");
                    self.first_decode_error = Some(e);
                }
            }
        }
    }

    fn on_reset(&mut self, ev: ResetEvent) {
        let now = Instant::now();
        if ev.sk != 0 {
            if self.reset_socks.len() >= RECENT {
                self.reset_socks.pop_front();
            }
            self.reset_socks.push_back((ev.sk, now));
        }
        let names = &self.en.names;
        let dead = names.sock_flag(ev.sk_flags, "SOCK_DEAD");
        if ev.header.kind == KIND_RESET_RECEIVED {
            let state = names.state(ev.state);
            let shut_rd = names
                .sk_shutdown
                .is_some_and(|s| s.extract(ev.sk_shutdown_byte) & RCV_SHUTDOWN != 0);
            let may_be_local_abort = shut_rd && matches!(state, Some("FIN_WAIT1" | "FIN_WAIT2"));
            let report_expected = !dead && state != Some("CLOSE");
            if report_expected || may_be_local_abort {
                self.pending.push_back(Pending {
                    ev,
                    since: now,
                    delivered: None,
                    may_be_local_abort,
                    local_abort: false,
                });
                return;
            }
            self.emit(&ev, None, false);
            return;
        }

        let abort_on_data = names.reason(ev.reason) == Some("TCP_ABORT_ON_DATA");
        // The errno for the local socket is reported right after these:
        // tcp_write_err() after a keepalive reset, tcp_done_with_error()
        // after tcp_abort()'s.
        let report_follows = !dead
            && matches!(
                classify(&ev, names).cause,
                Cause::KeepaliveTimeout | Cause::SocketDestroyed
            );
        if abort_on_data {
            // The received "reset" just before was the kernel resetting this
            // same socket: release it, marked as such, ahead of this one.
            if let Some(i) = self
                .pending
                .iter()
                .position(|p| p.ev.sk == ev.sk && p.may_be_local_abort)
            {
                if let Some(mut p) = self.pending.remove(i) {
                    p.local_abort = true;
                    self.release(p);
                }
            }
        }
        if report_follows {
            self.pending.push_back(Pending {
                ev,
                since: now,
                delivered: None,
                may_be_local_abort: false,
                local_abort: false,
            });
            return;
        }
        let delivered = self
            .reports
            .iter()
            .rev()
            .find(|r| r.sk == ev.sk && ev.sk != 0 && now.duration_since(r.at) < self.settings.hold)
            .map(|r| (r.errno, r.owner));
        self.emit(&ev, delivered, false);
    }

    fn on_error_report(&mut self, er: ErrorReportEvent) {
        let Some(errno) = Errno::from_raw(er.error) else {
            // tcp_disconnect() reports with no error.
            return;
        };
        let now = Instant::now();
        if let Some(i) = self.pending.iter().position(|p| p.ev.sk == er.sk) {
            let p = &mut self.pending[i];
            p.delivered = Some((errno, er.owner));
            if !p.may_be_local_abort {
                if let Some(p) = self.pending.remove(i) {
                    self.release(p);
                }
            }
            return;
        }
        if self.reports.len() >= RECENT {
            self.reports.pop_front();
        }
        self.reports.push_back(RecentReport {
            sk: er.sk,
            errno,
            owner: er.owner,
            at: now,
        });
        let had_reset = self
            .reset_socks
            .iter()
            .rev()
            .take_while(|(_, at)| now.duration_since(*at) < Duration::from_secs(1))
            .any(|(sk, _)| *sk == er.sk);
        if self.settings.failures && !had_reset {
            self.emit_failure(&er, errno);
        }
    }

    fn release(&mut self, p: Pending) {
        self.emit(&p.ev, p.delivered, p.local_abort);
    }

    /// Releases held resets whose report did not come in time.
    pub fn release_due(&mut self, all: bool) {
        let hold = self.settings.hold;
        while let Some(p) = self.pending.front() {
            if !all && p.since.elapsed() < hold {
                break;
            }
            let p = self.pending.pop_front().expect("front exists");
            self.release(p);
        }
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// End of a batch: release what is due, write out.
    pub fn end_batch(&mut self) -> Result<(), OutputError> {
        self.release_due(false);
        self.flush()
    }

    pub fn flush(&mut self) -> Result<(), OutputError> {
        if self.closed {
            return Err(OutputError::Closed);
        }
        match self.out.flush() {
            Err(OutputError::Closed) => {
                self.closed = true;
                Err(OutputError::Closed)
            }
            Err(OutputError::Io(e)) => {
                self.write_error.get_or_insert(e);
                self.closed = true;
                Err(OutputError::Closed)
            }
            Ok(()) => Ok(()),
        }
    }

    /// Once a second: keep the wall clock honest.
    pub fn tick(&mut self) {
        self.en.clock = WallClock::now();
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

    fn emit(&mut self, ev: &ResetEvent, delivered: Option<(Errno, Owner)>, local_abort: bool) {
        let mut class = classify(ev, &self.en.names);
        if local_abort {
            class = Classification {
                cause: Cause::LocalAbortOnData,
                app_errno: Cause::LocalAbortOnData.app_errno(),
                listener: None,
            };
        }
        if !self.settings.filter.before_owner(ev, class.cause) {
            self.stats.filtered_out += 1;
            return;
        }
        let en = &mut self.en;
        // Resolve what needs lookups first; the report then only borrows.
        let proc_owner_pid = if ev.flags & FLAG_OWNER_KNOWN == 0 {
            en.owners.lookup(ev.sock_ino).map(|o| o.pid)
        } else {
            None
        };
        let owner_pid = if ev.flags & FLAG_OWNER_KNOWN != 0 {
            Some(ev.owner.tgid)
        } else {
            proc_owner_pid
        };
        if let Some(want) = self.settings.filter.pid {
            if owner_pid != Some(want) {
                self.stats.filtered_out += 1;
                return;
            }
        }
        en.prepare_container(ev, proc_owner_pid);

        let en = &self.en;
        let owner = if ev.flags & FLAG_OWNER_KNOWN != 0 {
            Some(OwnerRef {
                pid: ev.owner.tgid,
                comm: comm_str(&ev.owner.comm),
                source: if ev.flags & FLAG_OWNER_FROM_LISTENER != 0 {
                    OwnerSource::Listener
                } else {
                    OwnerSource::Kernel
                },
            })
        } else {
            proc_owner_pid.and_then(|pid| {
                en.owners.peek(ev.sock_ino).map(|o| OwnerRef {
                    pid,
                    comm: o.comm.as_str(),
                    source: OwnerSource::Proc,
                })
            })
        };
        let note = matches!(class.cause, Cause::NoListener | Cause::StaleConnection)
            .then(|| en.listeners.note(ev.netns, ev.local_port, ev.header.ts_ns));
        let listener = note.as_ref().map(|n| ListenerNote {
            listening_now: n.listening_now,
            last: n.last_pid.map(|pid| TaskRef {
                pid,
                comm: comm_str(&n.last_comm),
            }),
            stopped_ms: n.stopped_ms,
        });
        let report = Report {
            ev,
            unix_ns: en.clock.unix_ns(ev.header.ts_ns),
            class,
            kernel_reason: if ev.header.kind == KIND_RESET_SENT {
                en.names.reason(ev.reason)
            } else {
                None
            },
            state: if ev.flags & FLAG_HAS_SK != 0 {
                en.names.state(ev.state)
            } else {
                None
            },
            owner,
            context: Context::from_event(ev, en.names.hz),
            killer: (class.cause == Cause::SocketDestroyed).then(|| TaskRef {
                pid: ev.task_tgid,
                comm: comm_str(&ev.task_comm),
            }),
            delivered: delivered.as_ref().map(|&(errno, ref o)| Delivered {
                errno,
                to: match (o.tgid, owner) {
                    (0, Some(own)) => Some(TaskRef {
                        pid: own.pid,
                        comm: own.comm,
                    }),
                    (0, None) => None,
                    _ => Some(TaskRef {
                        pid: o.tgid,
                        comm: comm_str(&o.comm),
                    }),
                },
            }),
            listener,
            container: en.container(ev, proc_owner_pid),
        };
        let r = self.out.write(&report);
        self.track(r);
        self.stats.resets += 1;
        match class.cause.direction() {
            Direction::Sent => self.stats.sent += 1,
            Direction::Received => self.stats.received += 1,
        }
    }

    /// Netfilter dropped a TCP segment: a reset when it answered with one,
    /// otherwise (with --failures) a connection failure of the peer's.
    fn on_firewall(&mut self, mut ev: ResetEvent) {
        let verdict = ev.reason;
        ev.reason = REASON_ABSENT;
        if verdict == VERDICT_RESET {
            ev.header.kind = KIND_RESET_SENT;
            self.emit(&ev, None, false);
            return;
        }
        if !self.settings.failures {
            return;
        }
        let (failure, errno) = match verdict {
            VERDICT_ICMP => (
                records::Failure::FirewallIcmp,
                records::icmp_errno(ev.sk_err),
            ),
            VERDICT_DROP => (records::Failure::FirewallDrop, None),
            _ => return,
        };
        let record = records::FailureRecord {
            unix_ns: self.en.clock.unix_ns(ev.header.ts_ns),
            failure,
            errno,
            errno_for_peer: true,
            family: ev.family,
            local_addr: &ev.local_addr,
            local_port: ev.local_port,
            remote_addr: &ev.remote_addr,
            remote_port: ev.remote_port,
            netns: ev.netns,
            owner: None,
        };
        let r = self
            .out
            .write_with(|format, buf| records::write_failure(format, buf, &record));
        self.track(r);
        self.stats.failures += 1;
    }

    fn emit_failure(&mut self, er: &ErrorReportEvent, errno: Errno) {
        let Some(failure) = records::Failure::classify(errno, er.synced != 0) else {
            return;
        };
        let proc_pid = if er.flags & FLAG_OWNER_KNOWN == 0 {
            self.en.owners.lookup(er.sock_ino).map(|o| o.pid)
        } else {
            None
        };
        let owner = if er.flags & FLAG_OWNER_KNOWN != 0 {
            Some((er.owner.tgid, comm_str(&er.owner.comm)))
        } else {
            proc_pid.and_then(|pid| {
                self.en
                    .owners
                    .peek(er.sock_ino)
                    .map(|o| (pid, o.comm.as_str()))
            })
        };
        let record = records::FailureRecord {
            unix_ns: self.en.clock.unix_ns(er.header.ts_ns),
            failure,
            errno: Some(errno),
            errno_for_peer: false,
            family: er.family,
            local_addr: &er.local_addr,
            local_port: er.local_port,
            remote_addr: &er.remote_addr,
            remote_port: er.remote_port,
            netns: er.netns,
            owner,
        };
        let r = self
            .out
            .write_with(|format, buf| records::write_failure(format, buf, &record));
        self.track(r);
        self.stats.failures += 1;
    }

    /// Storm summaries drained from the kernel's aggregation table.
    pub fn on_aggregates(&mut self, entries: &[(AggKey, AggValue)]) {
        for (key, value) in entries {
            let mut ev = ResetEvent::default();
            ev.header.kind = key.kind;
            ev.reason = key.reason;
            ev.state = key.state;
            ev.tcp_flags = key.tcp_flags;
            if key.state != 0 {
                ev.flags |= FLAG_HAS_SK;
            }
            if key.tcp_flags != 0 {
                ev.flags |= FLAG_HAS_SKB;
                ev.payload_len = u32::from(key.has_payload);
            }
            let class = classify(&ev, &self.en.names);
            self.stats.suppressed_records += 1;
            self.stats.suppressed_resets += value.count;
            // Without an anchor, the drain time stands for both ends.
            let (first_boot, last_boot) = match self.jiffies {
                Some(a) => (
                    a.boot_ns(value.first_jiffies),
                    a.boot_ns(value.last_jiffies),
                ),
                None => (boottime_ns(), boottime_ns()),
            };
            let en = &self.en;
            let summary = records::Suppressed {
                key,
                value,
                class,
                kernel_reason: if key.kind == KIND_RESET_SENT {
                    en.names.reason(key.reason)
                } else {
                    None
                },
                state: if key.state != 0 {
                    en.names.state(key.state)
                } else {
                    None
                },
                first_unix_ns: en.clock.unix_ns(first_boot),
                last_unix_ns: en.clock.unix_ns(last_boot),
            };
            let r = self
                .out
                .write_with(|format, buf| records::write_suppressed(format, buf, &summary));
            self.track(r);
        }
    }

    /// Tells the reader of the output that events were lost.
    pub fn on_lost(&mut self, count: u64, why: &str) {
        let unix_ns = self.en.clock.unix_ns(boottime_ns());
        let r = self
            .out
            .write_with(|format, buf| records::write_lost(format, buf, unix_ns, count, why));
        self.track(r);
    }
}

impl Enricher {
    fn prepare_container(&mut self, ev: &ResetEvent, proc_pid: Option<u32>) {
        if ev.flags & FLAG_OWNER_KNOWN != 0 && ev.owner.cgroup_id != 0 {
            let id = ev.owner.cgroup_id;
            if !self.by_cgroup_id.contains_key(&id) {
                // The live process knows its v1 hierarchies too; the cgroup
                // id outlives it.
                let c = proc_container(ev.owner.tgid)
                    .filter(|c| c.id.is_some() || c.cgroup != "/")
                    .or_else(|| self.cgroups.path(id).map(Container::from_cgroup));
                self.by_cgroup_id.insert(id, c);
            }
        } else if let Some(pid) = proc_pid {
            self.by_pid
                .entry(pid)
                .or_insert_with(|| proc_container(pid));
        }
    }

    fn container(&self, ev: &ResetEvent, proc_pid: Option<u32>) -> Option<&Container> {
        if ev.flags & FLAG_OWNER_KNOWN != 0 && ev.owner.cgroup_id != 0 {
            self.by_cgroup_id.get(&ev.owner.cgroup_id)?.as_ref()
        } else {
            self.by_pid.get(&proc_pid?)?.as_ref()
        }
    }
}
