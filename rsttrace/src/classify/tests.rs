use super::*;
use crate::{
    kernel::{
        kallsyms::CallSite,
        names::{testing::names_618, KernelReason, Reason},
    },
    model::conn::{
        tcp_flags::{ACK, PSH, SYN},
        Segment,
    },
};

fn sent(reason: Option<Reason>, state: Option<TcpState>) -> Facts {
    Facts {
        reason: reason.map(KernelReason::Known),
        state,
        sock: state.map(|_| SockFacts {
            attached: true,
            ..SockFacts::default()
        }),
        ..Facts::bare(Direction::Sent)
    }
}

fn seg(flags: u8, payload: u32) -> Option<Segment> {
    Some(Segment {
        flags,
        payload,
        ..Segment::default()
    })
}

fn cause(f: &Facts) -> Cause {
    classify(f).cause
}

#[test]
fn no_socket_splits_on_the_segment() {
    let mut f = sent(Some(Reason::NoSocket), None);
    f.segment = seg(SYN, 0);
    let c = classify(&f);
    assert_eq!(c.cause, Cause::NoListener);
    assert_eq!(c.source, CauseSource::KernelReason);
    assert_eq!(c.app_errno, Some(Errno::ECONNREFUSED));
    assert_eq!(c.listener, Some(false));
    f.segment = seg(ACK | PSH, 1);
    let c = classify(&f);
    assert_eq!(c.cause, Cause::StaleConnection);
    assert_eq!(c.app_errno, Some(Errno::ECONNRESET));
    assert_eq!(c.listener, Some(false));
    // A SYN-ACK to nowhere is not a connection attempt.
    f.segment = seg(SYN | ACK, 0);
    assert_eq!(cause(&f), Cause::StaleConnection);
}

#[test]
fn listener_resets_are_stale_connections_with_a_listener() {
    let mut f = sent(Some(Reason::TcpFlags), Some(TcpState::Listen));
    f.segment = seg(ACK, 0);
    let c = classify(&f);
    assert_eq!(c.cause, Cause::StaleConnection);
    assert_eq!(c.listener, Some(true));
}

#[test]
fn tcp_state_is_split() {
    // SO_LINGER {1,0} close: CLOSE, attached, linger 0, shut down.
    let mut f = sent(Some(Reason::TcpState), Some(TcpState::Close));
    let sock = f.sock.as_mut().unwrap();
    sock.linger_zero = true;
    sock.closing = true;
    assert_eq!(cause(&f), Cause::AbortLinger);
    // connect(AF_UNSPEC): same, but not closing.
    f.sock.as_mut().unwrap().closing = false;
    assert_eq!(cause(&f), Cause::AppDisconnect);
    // Child never accepted, its listener closed.
    f.sock.as_mut().unwrap().attached = false;
    assert_eq!(cause(&f), Cause::ListenerClosedUnaccepted);
    // tcp_abort() leaves the state alone.
    let f = sent(Some(Reason::TcpState), Some(TcpState::Established));
    assert_eq!(cause(&f), Cause::SocketDestroyed);
    // The FIN_WAIT2 timer of an orphan.
    let mut f = sent(Some(Reason::TcpState), Some(TcpState::FinWait2));
    f.sock.as_mut().unwrap().dead = true;
    assert_eq!(cause(&f), Cause::FinWait2Timeout);
}

#[test]
fn every_kernel_reason_has_a_cause() {
    for &r in Reason::ALL {
        let mut f = sent(Some(r), Some(TcpState::Close));
        f.segment = seg(ACK, 0);
        let c = cause(&f);
        if r == Reason::Max {
            assert_eq!(c, Cause::UnknownReason);
        } else {
            assert_ne!(c, Cause::UnknownReason, "{r:?}");
        }
    }
}

#[test]
fn one_to_one_reasons() {
    let mut f = sent(Some(Reason::TcpAbortOnData), Some(TcpState::Close));
    f.segment = seg(ACK | PSH, 100);
    assert_eq!(cause(&f), Cause::DataAfterClose);
    // The bare ACK of our FIN with TCP_LINGER2 < 0.
    f.segment = seg(ACK, 0);
    assert_eq!(cause(&f), Cause::Linger2Abort);
    for (r, want) in [
        (Reason::TcpAbortOnClose, Cause::AbortUnreadData),
        (Reason::TcpTimewaitSocket, Cause::TimeWaitData),
        (Reason::TcpKeepaliveTimeout, Cause::KeepaliveTimeout),
        (Reason::TcpInvalidAckSequence, Cause::SynSentInvalidAck),
        (Reason::TcpDisconnectWithData, Cause::DisconnectUnsentData),
        (Reason::TcpAbortOnMemory, Cause::MemoryPressureAbort),
        (Reason::TcpAbortOnLinger, Cause::Linger2Abort),
        (Reason::MptcpRstEmiddlebox, Cause::MptcpMiddlebox),
    ] {
        assert_eq!(cause(&sent(Some(r), Some(TcpState::Close))), want, "{r:?}");
    }
}

#[test]
fn unknown_future_reason() {
    let mut f = sent(None, Some(TcpState::Close));
    f.reason = Some(KernelReason::Unknown {
        raw: 99,
        name: Some("TCP_SOMETHING_NEW"),
    });
    let c = classify(&f);
    assert_eq!(c.cause, Cause::UnknownReason);
    assert_eq!(c.source, CauseSource::KernelReason);
}

#[test]
fn inference_without_a_reason() {
    let mut f = sent(None, Some(TcpState::Listen));
    f.segment = seg(ACK, 0);
    let c = classify(&f);
    assert_eq!(
        (c.cause, c.source),
        (Cause::StaleConnection, CauseSource::Inferred)
    );
    assert_eq!(c.listener, Some(true));
    assert_eq!(
        cause(&sent(None, Some(TcpState::TimeWait))),
        Cause::TimeWaitData
    );
    let mut f = sent(None, Some(TcpState::Close));
    f.sock.as_mut().unwrap().unread = 10;
    assert_eq!(cause(&f), Cause::AbortUnreadData);
    f.sock.as_mut().unwrap().unread = 0;
    f.sock.as_mut().unwrap().linger_zero = true;
    assert_eq!(cause(&f), Cause::AbortLinger);
    let mut f = sent(Some(Reason::NotSpecified), Some(TcpState::Close));
    f.segment = seg(ACK | PSH, 5);
    let c = classify(&f);
    assert_eq!(
        (c.cause, c.source),
        (Cause::DataAfterClose, CauseSource::Inferred)
    );
    assert_eq!(
        cause(&sent(None, Some(TcpState::Established))),
        Cause::Unspecified
    );
    let mut f = sent(None, None);
    f.segment = seg(SYN, 0);
    assert_eq!(classify(&f).source, CauseSource::Inferred);
}

#[test]
fn received_errno_follows_the_state() {
    for (s, want_cause, want_errno) in [
        (
            TcpState::SynSent,
            Cause::ConnectionRefused,
            Some(Errno::ECONNREFUSED),
        ),
        (
            TcpState::Established,
            Cause::PeerReset,
            Some(Errno::ECONNRESET),
        ),
        (
            TcpState::FinWait1,
            Cause::PeerReset,
            Some(Errno::ECONNRESET),
        ),
        (TcpState::CloseWait, Cause::PeerReset, Some(Errno::EPIPE)),
        (TcpState::Close, Cause::PeerReset, None),
    ] {
        let mut f = sent(None, Some(s));
        f.direction = Direction::Received;
        let c = classify(&f);
        assert_eq!((c.cause, c.app_errno), (want_cause, want_errno), "{s:?}");
    }
}

/// An orphan's received reset reaches no application (its owner closed
/// it and may be gone): no errno, as delivered_errno says too.
#[test]
fn an_orphan_receiving_a_reset_gets_no_errno() {
    let mut f = sent(None, Some(TcpState::FinWait1));
    f.direction = Direction::Received;
    f.sock.as_mut().unwrap().dead = true;
    let c = classify(&f);
    assert_eq!((c.cause, c.app_errno), (Cause::PeerReset, None));
}

#[test]
fn firewall_resets() {
    let mut f = sent(None, None);
    f.firewall = true;
    f.segment = seg(SYN, 0);
    let c = classify(&f);
    assert_eq!(
        (c.cause, c.app_errno),
        (Cause::FirewallReject, Some(Errno::ECONNREFUSED))
    );
    f.segment = seg(ACK | PSH, 3);
    assert_eq!(classify(&f).app_errno, Some(Errno::ECONNRESET));
}

#[test]
fn names_resolve_to_the_same_rules() {
    // The numbers come from BTF; the rules only ever see the enums.
    let n = names_618();
    let raw = n.reason_value(Reason::TcpTimewaitSocket).unwrap();
    let f = sent(None, Some(TcpState::TimeWait));
    let f = Facts {
        reason: Some(n.reason(raw)),
        ..f
    };
    assert_eq!(classify(&f).cause, Cause::TimeWaitData);
}

fn path(sites: &[CallSite]) -> [Option<CallSite>; 3] {
    let mut p = [None; 3];
    for (slot, s) in p.iter_mut().zip(sites) {
        *slot = Some(*s);
    }
    p
}

/// Linux < 6.10 gives no reason: the caller of tcp_send_active_reset()
/// tells the story.
#[test]
fn active_resets_by_call_path() {
    use CallSite::*;
    let cases: &[(&[CallSite], TcpState, Cause)] = &[
        (
            &[KeepaliveTimer],
            TcpState::Established,
            Cause::KeepaliveTimeout,
        ),
        (
            &[KeepaliveTimer],
            TcpState::FinWait2,
            Cause::FinWait2Timeout,
        ),
        (&[Abort], TcpState::Established, Cause::SocketDestroyed),
        (
            &[OutOfResources],
            TcpState::FinWait1,
            Cause::MemoryPressureAbort,
        ),
        (&[Disconnect, Close], TcpState::Close, Cause::AbortLinger),
        (
            &[Disconnect, ListenStop],
            TcpState::Close,
            Cause::ListenerClosedUnaccepted,
        ),
        (
            &[Disconnect, Connect],
            TcpState::Close,
            Cause::AppDisconnect,
        ),
        (&[Mptcp], TcpState::Established, Cause::MptcpUnspecified),
    ];
    for &(sites, state, want) in cases {
        let mut f = sent(None, Some(state));
        f.path = path(sites);
        let c = classify(&f);
        assert_eq!(
            (c.cause, c.source),
            (want, CauseSource::Inferred),
            "{sites:?}"
        );
    }
    // __tcp_close(): unread data, TCP_LINGER2 < 0, or memory.
    let mut f = sent(None, Some(TcpState::Close));
    f.path = path(&[Close]);
    f.sock.as_mut().unwrap().unread = 3;
    assert_eq!(cause(&f), Cause::AbortUnreadData);
    f.sock.as_mut().unwrap().unread = 0;
    f.sock.as_mut().unwrap().linger2 = Some(-1);
    assert_eq!(cause(&f), Cause::Linger2Abort);
    f.sock.as_mut().unwrap().linger2 = Some(0);
    assert_eq!(cause(&f), Cause::MemoryPressureAbort);
}

#[test]
fn answered_resets_without_a_reason() {
    // A listener: a SYN in the window, a full accept queue, or an ACK for
    // a connection it does not know.
    let mut f = sent(None, Some(TcpState::Listen));
    f.segment = seg(SYN, 0);
    assert_eq!(cause(&f), Cause::SynInWindow);
    f.segment = seg(ACK, 10);
    assert_eq!(cause(&f), Cause::StaleConnection);
    f.sock.as_mut().unwrap().backlog = Some((2, 1));
    assert_eq!(cause(&f), Cause::AcceptQueueOverflow);
    f.sock.as_mut().unwrap().backlog = Some((0, 1));
    f.path = path(&[CallSite::CheckReq]);
    assert_eq!(cause(&f), Cause::AcceptQueueOverflow);
    // SYN_SENT: an ACK outside (snd_una, snd_nxt], else PAWS.
    let mut f = sent(None, Some(TcpState::SynSent));
    f.sock.as_mut().unwrap().snd_una = Some(1000);
    f.sock.as_mut().unwrap().snd_nxt = Some(1001);
    f.segment = Some(Segment {
        flags: SYN | ACK,
        ack: 1001,
        ..Segment::default()
    });
    assert_eq!(cause(&f), Cause::SynSentPaws);
    f.segment = Some(Segment {
        flags: SYN | ACK,
        ack: 5000,
        ..Segment::default()
    });
    assert_eq!(cause(&f), Cause::SynSentInvalidAck);
    // SYN_RECV: an ACK for data never sent, else too old.
    let mut f = sent(None, Some(TcpState::SynRecv));
    f.sock.as_mut().unwrap().snd_nxt = Some(u32::MAX - 5);
    f.segment = Some(Segment {
        flags: ACK,
        ack: 10,
        ..Segment::default()
    });
    assert_eq!(
        cause(&f),
        Cause::SynRecvAckUnsentData,
        "sequence numbers wrap"
    );
    f.segment = Some(Segment {
        flags: ACK,
        ack: u32::MAX - 100,
        ..Segment::default()
    });
    assert_eq!(cause(&f), Cause::SynRecvTooOldAck);
}

/// A time-wait socket in its FIN_WAIT2 substate: we closed first.
#[test]
fn fin_wait2_substate_is_told_apart() {
    for reason in [None, Some(Reason::TcpTimewaitSocket)] {
        let mut f = sent(reason, Some(TcpState::TimeWait));
        f.sock = None;
        f.segment = seg(ACK | PSH, 10);
        assert_eq!(cause(&f), Cause::TimeWaitData);
        f.tw_substate = Some(TcpState::FinWait2);
        assert_eq!(cause(&f), Cause::FinWait2Data);
    }
}

#[test]
fn availability_is_documented_for_every_cause() {
    for &c in Cause::ALL {
        let a = c.availability();
        if c.direction() == Direction::Received {
            assert!(
                a.iter().all(|&x| x == crate::vocab::causes::Avail::Exact),
                "{c:?}"
            );
        }
        assert!(!c.kernels().is_empty());
    }
    assert_eq!(
        Cause::NoListener.kernels(),
        "6.12+ exact, 6.10-6.11 exact, 5.8-6.9 inferred"
    );
    assert_eq!(Cause::PeerReset.kernels(), "all kernels");
}
