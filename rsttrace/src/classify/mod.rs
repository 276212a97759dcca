//! From a captured reset to its cause: the kernel's reason where it gives
//! one, split further by socket state, flags and the triggering segment
//! where one reason hides several stories; inferred where it gives none.

pub(crate) mod facts;
mod infer;

pub(crate) use crate::vocab::{Cause, CauseSource, Direction};
pub(crate) use facts::{Facts, SockFacts};

use std::fmt::Write as _;

use crate::{
    kernel::names::{KernelReason, Reason, TcpState},
    model::conn::tcp_flags,
    model::failure::FailureKind,
    vocab::errno::Errno,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Classification {
    pub cause: Cause,
    pub source: CauseSource,
    pub app_errno: Option<Errno>,
    /// For stale connections: whether a listener owns the port.
    pub listener: Option<bool>,
}

impl Classification {
    fn of(cause: Cause, source: CauseSource) -> Self {
        let listener = match cause {
            Cause::NoListener => Some(false),
            _ => None,
        };
        Classification {
            cause,
            source,
            app_errno: cause.app_errno(),
            listener,
        }
    }

    /// A reset received on a closing socket turns out to answer this
    /// host's own reset of the same socket (TCP_ABORT_ON_DATA): the
    /// correlator found the pair.
    pub(crate) fn local_abort(&mut self) {
        self.cause = Cause::LocalAbortOnData;
        self.app_errno = Cause::LocalAbortOnData.app_errno();
    }

    /// The same cause with another errno (the state decides it).
    fn with_errno(mut self, errno: Option<Errno>) -> Self {
        self.app_errno = errno;
        self
    }
}

/// The one place a reset gets its cause.
pub(crate) fn classify(f: &Facts) -> Classification {
    if f.direction == Direction::Received {
        return received(f);
    }
    if f.firewall {
        // A connection attempt is refused; anything else resets it.
        let errno = if f.bare_syn() {
            Errno::ECONNREFUSED
        } else {
            Errno::ECONNRESET
        };
        return Classification::of(Cause::FirewallReject, CauseSource::KernelReason)
            .with_errno(Some(errno));
    }
    let mut c = match f.reason {
        // Linux 6.10-6.11 record the resets the kernel starts itself as
        // NOT_SPECIFIED, and older kernels give no reason at all.
        None | Some(KernelReason::Known(Reason::NotSpecified)) => {
            Classification::of(infer::sent(f), CauseSource::Inferred)
        }
        Some(KernelReason::Known(r)) => {
            Classification::of(by_reason(r, f), CauseSource::KernelReason)
        }
        Some(KernelReason::Unknown { .. }) => {
            Classification::of(Cause::UnknownReason, CauseSource::KernelReason)
        }
    };
    if c.cause == Cause::StaleConnection {
        c.listener = Some(f.is(TcpState::Listen));
    }
    c
}

fn received(f: &Facts) -> Classification {
    // tcp_reset(): the error depends on the state the reset finds.
    let (cause, errno) = match f.state {
        Some(TcpState::SynSent) => (Cause::ConnectionRefused, Some(Errno::ECONNREFUSED)),
        Some(TcpState::CloseWait) => (Cause::PeerReset, Some(Errno::EPIPE)),
        // A reset for a closed socket is ignored: nobody gets an error.
        Some(TcpState::Close) => (Cause::PeerReset, None),
        _ => (Cause::PeerReset, Some(Errno::ECONNRESET)),
    };
    // An orphan (closed by its application, still finishing) has nobody
    // left to take the error.
    let errno = errno.filter(|_| !f.sock.as_ref().is_some_and(|s| s.dead));
    Classification::of(cause, CauseSource::KernelReason).with_errno(errno)
}

fn by_reason(r: Reason, f: &Facts) -> Cause {
    use Reason::*;
    match r {
        NoSocket => infer::no_socket(f),
        TcpFlags => Cause::StaleConnection,
        TcpInvalidAckSequence => Cause::SynSentInvalidAck,
        TcpRfc7323Paws => Cause::SynSentPaws,
        TcpTooOldAck => Cause::SynRecvTooOldAck,
        TcpAckUnsentData => Cause::SynRecvAckUnsentData,
        TcpOldAck => Cause::SynRecvOldAck,
        // tcp_rcv_state_process() says ABORT_ON_DATA both for data after
        // shutdown and for an orphan reaching FIN_WAIT2 with TCP_LINGER2 < 0
        // (the segment is then the bare ACK of our FIN).
        TcpAbortOnData if f.segment.is_some_and(|s| s.payload == 0) => Cause::Linger2Abort,
        TcpAbortOnData => Cause::DataAfterClose,
        TcpTimewaitSocket => infer::time_wait(f),
        // tcp_check_req(): a SYN in the window of a half-open connection,
        // or (for the final ACK) an accept queue full with
        // tcp_abort_on_overflow set.
        InvalidSyn if f.segment.is_some_and(|s| s.has(tcp_flags::SYN)) => Cause::SynInWindow,
        InvalidSyn => Cause::AcceptQueueOverflow,
        TcpAbortOnClose => Cause::AbortUnreadData,
        TcpAbortOnLinger => Cause::Linger2Abort,
        TcpAbortOnMemory => Cause::MemoryPressureAbort,
        TcpState => infer::tcp_state(f),
        TcpKeepaliveTimeout => Cause::KeepaliveTimeout,
        TcpDisconnectWithData => Cause::DisconnectUnsentData,
        MptcpRstEunspec => Cause::MptcpUnspecified,
        MptcpRstEmptcp => Cause::MptcpError,
        MptcpRstEresource => Cause::MptcpResource,
        MptcpRstEprohibit => Cause::MptcpProhibited,
        MptcpRstEwq2big => Cause::MptcpTooMuchQueue,
        MptcpRstEbadperf => Cause::MptcpBadPerformance,
        MptcpRstEmiddlebox => Cause::MptcpMiddlebox,
        Error => Cause::KernelError,
        NotSpecified => infer::sent(f),
        Max => Cause::UnknownReason,
    }
}

/// The cause catalogue as shown by `--help` and `rsttrace causes`.
pub(crate) fn causes_text() -> String {
    let mut out = String::from("CAUSES (JSON \"cause\"; `rsttrace causes` for this list alone):\n");
    for dir in [Direction::Sent, Direction::Received] {
        let _ = writeln!(out, "\n  {}:", dir.as_str());
        for c in Cause::ALL.iter().filter(|c| c.direction() == dir) {
            let errno = c.app_errno().map_or("-".to_string(), |e| e.to_string());
            let _ = writeln!(
                out,
                "    {:<27} [{}, {}] {}",
                c.id(),
                errno,
                c.kernels(),
                c.explanation()
            );
        }
    }
    out.push_str("\n  connection failures without a reset (--failures):\n");
    for f in FailureKind::ALL {
        let _ = writeln!(out, "    {:<27} {}", f.id(), f.explanation());
    }
    out
}

#[cfg(test)]
mod tests;
