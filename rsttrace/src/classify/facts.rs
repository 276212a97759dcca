//! What the rules look at: the facts of one reset, typed once (enums
//! resolved at start-up from this kernel's names).  Per-event resets
//! provide all of them, storm summaries only the ones they keep.

use crate::vocab::Direction;
use crate::{
    kernel::{
        kallsyms::{CallSite, PATH},
        names::{KernelReason, TcpState},
    },
    model::conn::Segment,
};

/// Details of a full socket (not a time-wait or request mini-socket).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SockFacts {
    /// SOCK_DEAD: the application closed it (an orphan).
    pub dead: bool,
    /// SO_LINGER {on, 0 s}.
    pub linger_zero: bool,
    /// Both directions shut down: close() has started.
    pub closing: bool,
    /// Receiving shut down (shutdown(SHUT_RD) or close()).
    pub rcv_shutdown: bool,
    /// Still attached to a file (accepted, not closed).
    pub attached: bool,
    /// Received bytes the application never read.
    pub unread: u32,
    /// Sequence numbers, for telling bad ACKs apart.
    pub snd_una: Option<u32>,
    pub snd_nxt: Option<u32>,
    /// The next sequence number expected: a reset is accepted only with
    /// this one (RFC 5961).
    pub rcv_nxt: Option<u32>,
    /// TCP_LINGER2 (negative: FIN_WAIT2 is aborted).
    pub linger2: Option<i32>,
    /// A listener's accept queue: (waiting, limit).
    pub backlog: Option<(u32, u32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Facts {
    pub direction: Direction,
    /// The kernel's reason; None where it gives none.
    pub reason: Option<KernelReason>,
    /// None when there is no socket.
    pub state: Option<TcpState>,
    pub segment: Option<Segment>,
    pub sock: Option<SockFacts>,
    /// Made by netfilter, not by the TCP stack.
    pub firewall: bool,
    /// A time-wait socket's substate (FIN_WAIT2: we closed first).
    pub tw_substate: Option<TcpState>,
    /// The functions on the way to the reset, innermost first (where the
    /// kernel gives no reason and its stack was read).
    pub path: [Option<CallSite>; PATH],
}

impl Facts {
    pub(crate) fn is(&self, state: TcpState) -> bool {
        self.state == Some(state)
    }

    pub(crate) fn dead(&self) -> bool {
        self.sock.is_some_and(|s| s.dead)
    }

    pub(crate) fn bare_syn(&self) -> bool {
        self.segment.is_some_and(|s| s.is_bare_syn())
    }

    /// The innermost known caller, and the one after it.
    pub(crate) fn callers(&self) -> (Option<CallSite>, Option<CallSite>) {
        (self.path[0], self.path[1])
    }

    /// Facts with nothing known but the direction (for tests and
    /// summaries).
    pub(crate) fn bare(direction: Direction) -> Facts {
        Facts {
            direction,
            reason: None,
            state: None,
            segment: None,
            sock: None,
            firewall: false,
            tw_substate: None,
            path: [None; PATH],
        }
    }
}
