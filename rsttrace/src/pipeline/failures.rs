//! Records other than a socket's reset: connection failures that are not
//! resets (from errno reports, firewall verdicts and ICMP errors),
//! firewall resets, and resets that found no socket.

use std::time::Instant;

use super::{build, Parked, Pipeline};
use crate::{
    classify::{Direction, Facts},
    decode::{CapturedReset, ErrorReport, FirewallVerdict, IcmpSeen, StrayReset, Verdict},
    enrich::owner::Lookup,
    model::{
        failure::{icmp_errno, FailureKind},
        Record,
    },
};

impl Pipeline {
    pub(super) fn on_report(&mut self, mut er: ErrorReport, now: Instant) {
        er.errno = er.errno.or_else(|| self.soft_error(&er));
        let own = self.correlator.on_report(&er, now, &mut self.ready);
        self.drain_ready();
        if !(own && self.settings.failures) || self.failed.contains(&(er.sk, er.conn)) {
            return;
        }
        if let Some(kind) = er.errno.and_then(|e| FailureKind::from_errno(e, er.synced)) {
            self.failed.insert((er.sk, er.conn), ());
            self.failure(er, kind, false);
        }
    }

    /// A report without an errno on a connecting socket comes from an ICMP
    /// error queued while connect() held the socket: the kernel kept the
    /// error only as the socket's soft error, which SO_ERROR hands over at
    /// once, and an application that gives up then closes the socket
    /// before any report with the errno.  The errno is the ICMP error's.
    fn soft_error(&self, er: &ErrorReport) -> Option<crate::vocab::errno::Errno> {
        if er.synced {
            return None;
        }
        self.icmp.get(&er.conn).and_then(|i| i.errno())
    }

    /// Netfilter dropped a TCP segment: a reset when it answered with one,
    /// otherwise (with --failures) a connection failure of the peer's.
    pub(super) fn on_firewall(&mut self, v: &FirewallVerdict, now: Instant) {
        let (kind, errno) = match v.verdict {
            Verdict::Reset => return self.firewall_reset(v, now),
            Verdict::Icmp { icmp_type, code } => {
                (FailureKind::FirewallIcmp, icmp_errno(icmp_type, code))
            }
            Verdict::Drop if v.outgoing => (FailureKind::FirewallOutputDrop, None),
            Verdict::Drop => (FailureKind::FirewallDrop, None),
        };
        if self.settings.failures {
            let f = build::firewall_failure(v, kind, errno, &self.clock);
            self.write(&Record::Failure(f));
            self.acct.stats.failures += 1;
            self.acct.tally.failure(kind);
        }
    }

    fn firewall_reset(&mut self, v: &FirewallVerdict, now: Instant) {
        let facts = Facts {
            segment: Some(v.segment),
            firewall: true,
            ..Facts::bare(Direction::Sent)
        };
        let ev = CapturedReset::socketless(v.ts_ns, v.cpu, facts, v.conn, v.netns);
        self.on_reset(ev, now);
    }

    pub(super) fn failure(&mut self, er: ErrorReport, kind: FailureKind, late: bool) {
        let owner = match self.owners.owner(er.owner.as_ref(), er.sock_ino, false) {
            Lookup::Ready(o) => o,
            Lookup::Pending if !late => {
                self.parked
                    .push_back((Parked::Failure(er, kind), Instant::now()));
                return;
            }
            Lookup::Pending => self.owners.owner_now(er.owner.as_ref(), er.sock_ino),
        };
        let icmp = self.icmp.get(&er.conn).copied();
        let f = build::failure(&er, kind, icmp, owner.as_ref(), &self.clock);
        self.acct.stats.failures += 1;
        self.acct.tally.failure(kind);
        self.write(&Record::Failure(f));
    }

    /// An ICMP error about one of our segments: kept for the failure its
    /// errno report (or a later retransmission's) will describe.
    pub(super) fn on_icmp(&mut self, i: IcmpSeen) {
        self.icmp.insert(i.conn, i.icmp);
    }

    pub(super) fn on_stray(&mut self, r: &StrayReset) {
        let s = build::stray(r, &self.clock);
        self.acct.stats.strays += 1;
        self.write(&Record::Stray(s));
    }
}
