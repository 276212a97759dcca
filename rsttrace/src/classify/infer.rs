//! Causes the kernel does not name: inferred from the segment, the socket
//! state and the socket's flags.  Also the splits of kernel reasons that
//! hide several stories (NO_SOCKET, TCP_STATE).

use super::{causes::Cause, facts::Facts};
use crate::kernel::names::TcpState;

/// NO_SOCKET: a SYN is a connection attempt to a closed port; anything
/// else is a segment for a connection this host does not know.
pub fn no_socket(f: &Facts) -> Cause {
    if f.bare_syn() {
        Cause::NoListener
    } else {
        Cause::StaleConnection
    }
}

/// TCP_STATE covers every abort that goes through tcp_disconnect() or
/// tcp_abort(), and the FIN_WAIT2 timer.
pub fn tcp_state(f: &Facts) -> Cause {
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
pub fn sent(f: &Facts) -> Cause {
    let Some(state) = f.state else {
        return no_socket(f);
    };
    let sock = f.sock.unwrap_or_default();
    match (state, f.segment) {
        (TcpState::TimeWait, _) => Cause::TimeWaitData,
        (TcpState::Listen, Some(s)) if s.has(crate::model::conn::tcp_flags::ACK) => {
            Cause::StaleConnection
        }
        (TcpState::SynSent, _) => Cause::SynSentInvalidAck,
        (TcpState::Close, Some(s)) if s.payload == 0 => Cause::Linger2Abort,
        (TcpState::Close, Some(_)) => Cause::DataAfterClose,
        (_, Some(_)) => Cause::Unspecified,
        // Resets the host starts itself (no segment to answer).
        (TcpState::FinWait2, None) if sock.dead => Cause::FinWait2Timeout,
        (TcpState::Close, None) if sock.unread > 0 => Cause::AbortUnreadData,
        (TcpState::Close, None) if sock.linger_zero => Cause::AbortLinger,
        (TcpState::Close, None) if !sock.attached => Cause::ListenerClosedUnaccepted,
        _ => Cause::Unspecified,
    }
}
