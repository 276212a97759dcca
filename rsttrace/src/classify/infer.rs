//! Causes the kernel does not name: inferred from the segment, the socket
//! state, the socket's flags and counters, and the call path.  Also the
//! splits of kernel reasons that hide several stories (NO_SOCKET,
//! TCP_STATE, TCP_TIMEWAIT_SOCKET).

use super::facts::Facts;
use crate::vocab::Cause;
use crate::{
    kernel::{kallsyms::CallSite, names::TcpState},
    model::conn::{tcp_flags, Segment},
};

/// NO_SOCKET: a SYN is a connection attempt to a closed port; anything
/// else is a segment for a connection this host does not know.
pub(super) fn no_socket(f: &Facts) -> Cause {
    if f.bare_syn() {
        Cause::NoListener
    } else {
        Cause::StaleConnection
    }
}

/// A time-wait socket in its FIN_WAIT2 substate: we closed first and the
/// peer kept sending.  In a true TIME_WAIT both ends had closed.
pub(super) fn time_wait(f: &Facts) -> Cause {
    if f.tw_substate == Some(TcpState::FinWait2) {
        Cause::FinWait2Data
    } else {
        Cause::TimeWaitData
    }
}

/// TCP_STATE covers every abort that goes through tcp_disconnect() or
/// tcp_abort(), and the FIN_WAIT2 timer.
pub(super) fn tcp_state(f: &Facts) -> Cause {
    let sock = f.sock.unwrap_or_default();
    if f.is(TcpState::FinWait2) && sock.dead {
        // tcp_keepalive_timer() on an orphan in FIN_WAIT2.
        Cause::FinWait2Timeout
    } else if !f.is(TcpState::Close) {
        // tcp_disconnect() moves to CLOSE before resetting; tcp_abort()
        // (ss -K, SOCK_DESTROY) resets first.
        Cause::SocketDestroyed
    } else if !sock.attached {
        // A child never accepted has no file: inet_csk_listen_stop().
        Cause::ListenerClosedUnaccepted
    } else if sock.linger_zero && sock.closing {
        // __tcp_close() with SO_LINGER {1, 0}; close() set SHUTDOWN_MASK.
        Cause::AbortLinger
    } else {
        Cause::AppDisconnect
    }
}

/// Best effort where the kernel gives no reason.
pub(super) fn sent(f: &Facts) -> Cause {
    let Some(state) = f.state else {
        return no_socket(f);
    };
    if state == TcpState::TimeWait {
        return time_wait(f);
    }
    match f.segment {
        Some(seg) => answered(f, state, &seg),
        None => active(f, state),
    }
}

/// A reset answering a segment (tcp_v4_send_reset and friends).
fn answered(f: &Facts, state: TcpState, seg: &Segment) -> Cause {
    let sock = f.sock.unwrap_or_default();
    match state {
        TcpState::TimeWait => time_wait(f),
        TcpState::Listen => listener(f, seg),
        // tcp_rcv_synsent_state_process(): an ACK outside (snd_una,
        // snd_nxt], else the PAWS check failed.
        TcpState::SynSent => match (sock.snd_una, sock.snd_nxt) {
            (Some(una), Some(nxt)) if seq_between(seg.ack, una.wrapping_add(1), nxt) => {
                Cause::SynSentPaws
            }
            _ => Cause::SynSentInvalidAck,
        },
        // tcp_ack() on a child in SYN_RECV.
        TcpState::SynRecv => match sock.snd_nxt {
            Some(nxt) if seq_after(seg.ack, nxt) => Cause::SynRecvAckUnsentData,
            _ => Cause::SynRecvTooOldAck,
        },
        // tcp_rcv_state_process() after close: data (or an out-of-order
        // segment), or the bare ACK of our FIN with TCP_LINGER2 < 0.
        TcpState::Close if seg.payload == 0 && !seg.has(tcp_flags::FIN) => Cause::Linger2Abort,
        TcpState::Close => Cause::DataAfterClose,
        _ => Cause::Unspecified,
    }
}

/// A listener's reset: tcp_check_req() resets an embryonic connection (a
/// SYN in its window, or the final ACK when the accept queue is full and
/// tcp_abort_on_overflow is set); otherwise an ACK for a connection the
/// listener does not know.
fn listener(f: &Facts, seg: &Segment) -> Cause {
    let from_check_req = f.path.contains(&Some(CallSite::CheckReq));
    if seg.has(tcp_flags::SYN) {
        return Cause::SynInWindow;
    }
    let full = f
        .sock
        .and_then(|s| s.backlog)
        .is_some_and(|(waiting, limit)| waiting > limit);
    if full || (from_check_req && seg.has(tcp_flags::ACK)) {
        Cause::AcceptQueueOverflow
    } else {
        Cause::StaleConnection
    }
}

/// A reset the host starts itself (tcp_send_active_reset), by its caller.
fn active(f: &Facts, state: TcpState) -> Cause {
    let sock = f.sock.unwrap_or_default();
    match f.callers() {
        (Some(CallSite::KeepaliveTimer), _) if state == TcpState::FinWait2 => {
            Cause::FinWait2Timeout
        }
        (Some(CallSite::KeepaliveTimer), _) => Cause::KeepaliveTimeout,
        (Some(CallSite::Abort), _) => Cause::SocketDestroyed,
        (Some(CallSite::OutOfResources), _) => Cause::MemoryPressureAbort,
        (Some(CallSite::Mptcp), _) => Cause::MptcpUnspecified,
        (Some(CallSite::Disconnect), Some(CallSite::Close)) => Cause::AbortLinger,
        (Some(CallSite::Disconnect), Some(CallSite::ListenStop)) => Cause::ListenerClosedUnaccepted,
        (Some(CallSite::Disconnect), Some(CallSite::Connect)) => Cause::AppDisconnect,
        (Some(CallSite::Close), _) => closing(sock),
        _ => by_state(f, state),
    }
}

/// __tcp_close() resets for unread data, for FIN_WAIT2 with
/// TCP_LINGER2 < 0, or when orphans use too much memory.
fn closing(sock: super::facts::SockFacts) -> Cause {
    if sock.unread > 0 {
        Cause::AbortUnreadData
    } else if sock.linger2.is_some_and(|l| l < 0) {
        Cause::Linger2Abort
    } else {
        Cause::MemoryPressureAbort
    }
}

/// No call path: the socket's state and flags alone.
fn by_state(f: &Facts, state: TcpState) -> Cause {
    let sock = f.sock.unwrap_or_default();
    match state {
        TcpState::FinWait2 if sock.dead => Cause::FinWait2Timeout,
        TcpState::Close if sock.unread > 0 => Cause::AbortUnreadData,
        TcpState::Close if sock.linger_zero => Cause::AbortLinger,
        TcpState::Close if !sock.attached => Cause::ListenerClosedUnaccepted,
        _ => Cause::Unspecified,
    }
}

/// `a` strictly after `b` in sequence space.
fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// `lo <= x <= hi` in sequence space.
fn seq_between(x: u32, lo: u32, hi: u32) -> bool {
    hi.wrapping_sub(lo) >= x.wrapping_sub(lo)
}
