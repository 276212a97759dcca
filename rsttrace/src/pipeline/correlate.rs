//! Correlation of a reset with the errno the kernel delivers for it.
//!
//! The kernel reports the errno a local socket gets
//! (`sock:inet_sk_error_report`) right after a received reset or a
//! keepalive timeout, in the same call chain, and on some kernels right
//! *before* the reset of a destroyed socket.  Such resets wait here up to
//! `hold` for their report; reports wait in a short history for the reset
//! that follows them.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use crate::{
    classify::{Cause, Classification, Direction},
    decode::{CapturedReset, ErrorReport, KernelOwner},
    kernel::names::{KernelReason, Reason, TcpState},
    model::errno::Errno,
};

/// A reset on its way to output.
#[derive(Debug, Clone)]
pub struct Draft {
    pub ev: CapturedReset,
    pub class: Classification,
    /// The errno the kernel reported on the socket, and to whom.
    pub delivered: Option<(Errno, Option<KernelOwner>)>,
}

struct Held {
    draft: Draft,
    since: Instant,
    /// A received reset in FIN_WAIT after shutdown(SHUT_RD) may be the
    /// kernel resetting its own socket (TCP_ABORT_ON_DATA follows).
    may_be_local_abort: bool,
}

struct RecentReport {
    sk: u64,
    errno: Errno,
    owner: Option<KernelOwner>,
    at: Instant,
}

/// Bound on remembered reports and reset sockets.
const RECENT: usize = 1024;

pub struct Correlator {
    hold: Duration,
    /// Whether this kernel reports errnos at all (Linux >= 5.14).
    reports: bool,
    held: VecDeque<Held>,
    recent: VecDeque<RecentReport>,
    /// Sockets that had a reset recently (a report for them is not a
    /// failure of its own).
    reset_socks: VecDeque<(u64, Instant)>,
}

impl Correlator {
    pub fn new(hold: Duration, reports: bool) -> Self {
        Correlator {
            hold,
            reports,
            held: VecDeque::new(),
            recent: VecDeque::new(),
            reset_socks: VecDeque::new(),
        }
    }

    pub fn has_held(&self) -> bool {
        !self.held.is_empty()
    }

    /// A new reset: returns the drafts ready for output (this one unless it
    /// waits, and any it releases).
    pub fn on_reset(&mut self, draft: Draft, now: Instant, out: &mut Vec<Draft>) {
        let sk = draft.ev.sk;
        if sk != 0 {
            push_bounded(&mut self.reset_socks, (sk, now));
        }
        let f = draft.ev.facts;
        if f.direction == Direction::Received {
            let may_be_local_abort = f.sock.is_some_and(|s| s.rcv_shutdown)
                && matches!(f.state, Some(TcpState::FinWait1 | TcpState::FinWait2));
            let report_expected = self.reports && !f.dead() && !f.is(TcpState::Close);
            return self.hold_or_release(draft, report_expected, may_be_local_abort, now, out);
        }
        if f.reason == Some(KernelReason::Known(Reason::TcpAbortOnData)) {
            self.release_local_abort(sk, out);
        }
        // The errno for the local socket is reported right after these:
        // tcp_write_err() after a keepalive reset, tcp_done_with_error()
        // after tcp_abort()'s (before it, on kernels older than 6.12).
        let mut draft = draft;
        draft.delivered = self.recent_report(sk, now);
        let report_follows = self.reports
            && draft.delivered.is_none()
            && !f.dead()
            && matches!(
                draft.class.cause,
                Cause::KeepaliveTimeout | Cause::SocketDestroyed
            );
        self.hold_or_release(draft, report_follows, false, now, out)
    }

    fn hold_or_release(
        &mut self,
        draft: Draft,
        wait: bool,
        may_be_local_abort: bool,
        now: Instant,
        out: &mut Vec<Draft>,
    ) {
        if wait || may_be_local_abort {
            self.held.push_back(Held {
                draft,
                since: now,
                may_be_local_abort,
            });
        } else {
            out.push(draft);
        }
    }

    /// The received "reset" just before a TCP_ABORT_ON_DATA was the kernel
    /// resetting this same socket: released, marked as such.
    fn release_local_abort(&mut self, sk: u64, out: &mut Vec<Draft>) {
        if let Some(i) = self
            .held
            .iter()
            .position(|h| h.draft.ev.sk == sk && h.may_be_local_abort)
        {
            let mut h = self.held.remove(i).expect("index from position");
            let c = &mut h.draft.class;
            c.cause = Cause::LocalAbortOnData;
            c.app_errno = Cause::LocalAbortOnData.app_errno();
            out.push(h.draft);
        }
    }

    fn recent_report(&self, sk: u64, now: Instant) -> Option<(Errno, Option<KernelOwner>)> {
        if sk == 0 {
            return None;
        }
        self.recent
            .iter()
            .rev()
            .find(|r| r.sk == sk && now.duration_since(r.at) < self.hold)
            .map(|r| (r.errno, r.owner))
    }

    /// An errno report.  Returns true when it belongs to no reset (a
    /// connection failure of its own, when it has an errno).
    pub fn on_report(&mut self, er: &ErrorReport, now: Instant, out: &mut Vec<Draft>) -> bool {
        let Some(errno) = er.errno else {
            // tcp_disconnect() reports with no error.
            return false;
        };
        if let Some(i) = self.held.iter().position(|h| h.draft.ev.sk == er.sk) {
            let h = &mut self.held[i];
            h.draft.delivered = Some((errno, er.owner));
            if !h.may_be_local_abort {
                let h = self.held.remove(i).expect("index from position");
                out.push(h.draft);
            }
            return false;
        }
        push_bounded(
            &mut self.recent,
            RecentReport {
                sk: er.sk,
                errno,
                owner: er.owner,
                at: now,
            },
        );
        !self
            .reset_socks
            .iter()
            .rev()
            .take_while(|(_, at)| now.duration_since(*at) < Duration::from_secs(1))
            .any(|(sk, _)| *sk == er.sk)
    }

    /// Releases held resets whose report did not come in time (all of
    /// them with `all`).
    pub fn release_due(&mut self, now: Instant, all: bool, out: &mut Vec<Draft>) {
        while let Some(h) = self.held.front() {
            if !all && now.duration_since(h.since) < self.hold {
                break;
            }
            out.push(self.held.pop_front().expect("front exists").draft);
        }
    }
}

fn push_bounded<T>(q: &mut VecDeque<T>, v: T) {
    if q.len() >= RECENT {
        q.pop_front();
    }
    q.push_back(v);
}
