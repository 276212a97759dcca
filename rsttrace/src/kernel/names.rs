//! The names behind the numbers in events, resolved once at start-up from
//! this kernel's BTF: TCP states, reset reasons, socket flag bits.  Rules
//! then match enums, never strings or literal numbers.

use std::collections::HashMap;

macro_rules! named_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal,)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The kernel's name, without its prefix.
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }

            pub fn from_name(name: &str) -> Option<$name> {
                match name { $($text => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

named_enum! {
    /// TCP states (include/net/tcp_states.h, `TCP_` dropped).
    TcpState {
        Established = "ESTABLISHED",
        SynSent = "SYN_SENT",
        SynRecv = "SYN_RECV",
        FinWait1 = "FIN_WAIT1",
        FinWait2 = "FIN_WAIT2",
        TimeWait = "TIME_WAIT",
        Close = "CLOSE",
        CloseWait = "CLOSE_WAIT",
        LastAck = "LAST_ACK",
        Listen = "LISTEN",
        Closing = "CLOSING",
        NewSynRecv = "NEW_SYN_RECV",
        BoundInactive = "BOUND_INACTIVE",
    }
}

named_enum! {
    /// `enum sk_rst_reason` (include/net/rstreason.h, `SK_RST_REASON_`
    /// dropped); Linux 6.10+.
    Reason {
        NotSpecified = "NOT_SPECIFIED",
        NoSocket = "NO_SOCKET",
        TcpInvalidAckSequence = "TCP_INVALID_ACK_SEQUENCE",
        TcpRfc7323Paws = "TCP_RFC7323_PAWS",
        TcpTooOldAck = "TCP_TOO_OLD_ACK",
        TcpAckUnsentData = "TCP_ACK_UNSENT_DATA",
        TcpFlags = "TCP_FLAGS",
        TcpOldAck = "TCP_OLD_ACK",
        TcpAbortOnData = "TCP_ABORT_ON_DATA",
        TcpTimewaitSocket = "TCP_TIMEWAIT_SOCKET",
        InvalidSyn = "INVALID_SYN",
        TcpAbortOnClose = "TCP_ABORT_ON_CLOSE",
        TcpAbortOnLinger = "TCP_ABORT_ON_LINGER",
        TcpAbortOnMemory = "TCP_ABORT_ON_MEMORY",
        TcpState = "TCP_STATE",
        TcpKeepaliveTimeout = "TCP_KEEPALIVE_TIMEOUT",
        TcpDisconnectWithData = "TCP_DISCONNECT_WITH_DATA",
        MptcpRstEunspec = "MPTCP_RST_EUNSPEC",
        MptcpRstEmptcp = "MPTCP_RST_EMPTCP",
        MptcpRstEresource = "MPTCP_RST_ERESOURCE",
        MptcpRstEprohibit = "MPTCP_RST_EPROHIBIT",
        MptcpRstEwq2big = "MPTCP_RST_EWQ2BIG",
        MptcpRstEbadperf = "MPTCP_RST_EBADPERF",
        MptcpRstEmiddlebox = "MPTCP_RST_EMIDDLEBOX",
        Error = "ERROR",
        Max = "MAX",
    }
}

/// A reset reason as the kernel gave it: a known one, or a name this
/// version of rsttrace does not know (a newer kernel), kept for output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelReason {
    Known(Reason),
    Unknown {
        raw: u32,
        name: Option<&'static str>,
    },
}

impl KernelReason {
    pub fn name(self) -> Option<&'static str> {
        match self {
            KernelReason::Known(r) => Some(r.name()),
            KernelReason::Unknown { name, .. } => name,
        }
    }
}

/// How a kernel member that may be a bitfield is read: a byte at
/// `Offsets::*_byte`, then `(byte >> shift) & mask`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BitSpec {
    pub shift: u8,
    pub mask: u8,
}

impl BitSpec {
    pub fn extract(&self, byte: u8) -> u8 {
        (byte >> self.shift) & self.mask
    }
}

/// Names by enumerator value.  Enumerators are small numbers, and one is
/// looked up for every record: those are kept in a table, a map holds
/// the rest.
#[derive(Debug, Clone)]
struct ByValue<T> {
    dense: Vec<Option<T>>,
    sparse: HashMap<u32, T>,
}

/// Values below this go in the table.
const DENSE: u32 = 256;

impl<T> Default for ByValue<T> {
    fn default() -> Self {
        ByValue {
            dense: Vec::new(),
            sparse: HashMap::new(),
        }
    }
}

impl<T: Copy> ByValue<T> {
    fn insert(&mut self, raw: u32, value: T) {
        if raw < DENSE {
            let i = raw as usize;
            if self.dense.len() <= i {
                self.dense.resize(i + 1, None);
            }
            self.dense[i] = Some(value);
        } else {
            self.sparse.insert(raw, value);
        }
    }

    fn get(&self, raw: u32) -> Option<T> {
        if raw < DENSE {
            self.dense.get(raw as usize).copied().flatten()
        } else {
            self.sparse.get(&raw).copied()
        }
    }

    fn iter(&self) -> impl Iterator<Item = (u32, T)> + '_ {
        let dense = (0u32..)
            .zip(&self.dense)
            .filter_map(|(v, t)| Some((v, (*t)?)));
        dense.chain(self.sparse.iter().map(|(&v, &t)| (v, t)))
    }

    fn is_empty(&self) -> bool {
        self.dense.iter().all(Option::is_none) && self.sparse.is_empty()
    }
}

/// Numbers to names for this kernel.
#[derive(Debug, Clone, Default)]
pub struct KernelNames {
    reasons: ByValue<KernelReason>,
    states: ByValue<TcpState>,
    /// `enum sock_flags` bit numbers.
    pub sock_dead_bit: Option<u32>,
    pub sock_linger_bit: Option<u32>,
    /// SOCK_DONE: set by tcp_fin(), so the peer's FIN was received.
    pub sock_done_bit: Option<u32>,
    /// Whether this kernel's `tcp_sock` has `bytes_sent` (Linux 4.19+).
    pub bytes_sent_known: bool,
    pub sk_shutdown: Option<BitSpec>,
    /// Kernel HZ, to turn jiffies into time.
    pub hz: u32,
    /// Where the callers of the reset builders live (call-path inference).
    pub callsites: Option<super::kallsyms::CallSites>,
}

impl KernelNames {
    /// Adds a reason enumerator (`name` without its prefix).
    pub fn add_reason(&mut self, raw: u32, name: &str) {
        let reason = match Reason::from_name(name) {
            Some(r) => KernelReason::Known(r),
            // Kept for the life of the process: names are output as
            // borrowed strings with no per-event allocation.
            None => KernelReason::Unknown {
                raw,
                name: Some(Box::leak(name.to_string().into_boxed_str())),
            },
        };
        self.reasons.insert(raw, reason);
    }

    /// Adds a TCP state enumerator (`name` without `TCP_`); unknown names
    /// are ignored.
    pub fn add_state(&mut self, raw: u8, name: &str) {
        if let Some(s) = TcpState::from_name(name) {
            self.states.insert(u32::from(raw), s);
        }
    }

    pub fn has_reasons(&self) -> bool {
        !self.reasons.is_empty()
    }

    pub fn reason(&self, raw: u32) -> KernelReason {
        self.reasons
            .get(raw)
            .unwrap_or(KernelReason::Unknown { raw, name: None })
    }

    pub fn state(&self, raw: u8) -> Option<TcpState> {
        self.states.get(u32::from(raw))
    }

    pub fn state_value(&self, state: TcpState) -> Option<u8> {
        self.states
            .iter()
            .find(|&(_, s)| s == state)
            .and_then(|(v, _)| u8::try_from(v).ok())
    }

    pub fn reason_value(&self, reason: Reason) -> Option<u32> {
        self.reasons
            .iter()
            .find(|&(_, r)| r == KernelReason::Known(reason))
            .map(|(v, _)| v)
    }

    fn flag(bit: Option<u32>, flags: u64) -> bool {
        bit.is_some_and(|b| b < 64 && flags & (1 << b) != 0)
    }

    pub fn is_dead(&self, sk_flags: u64) -> bool {
        Self::flag(self.sock_dead_bit, sk_flags)
    }

    pub fn lingers(&self, sk_flags: u64) -> bool {
        Self::flag(self.sock_linger_bit, sk_flags)
    }

    /// Whether the peer's FIN was received: it takes one sequence number
    /// of `rcv_nxt` but no byte of data.
    pub fn fin_received(&self, sk_flags: u64) -> bool {
        Self::flag(self.sock_done_bit, sk_flags)
    }

    /// Bytes received and not read, from the sequence numbers: a FIN
    /// received is not a byte (once read, `copied_seq` has passed it too).
    pub fn unread(&self, rcv_nxt: u32, copied_seq: u32, sk_flags: u64) -> u32 {
        let behind = rcv_nxt.wrapping_sub(copied_seq);
        behind.saturating_sub(u32::from(self.fin_received(sk_flags)))
    }

    /// `sk_shutdown` bits from the raw byte the programs read.
    pub fn shutdown(&self, byte: u8) -> u8 {
        self.sk_shutdown.map_or(0, |s| s.extract(byte))
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Names as a 6.18 kernel reports them.
    pub(crate) fn names_618() -> KernelNames {
        let mut n = KernelNames {
            sock_dead_bit: Some(0),
            sock_linger_bit: Some(4),
            sock_done_bit: Some(1),
            bytes_sent_known: true,
            sk_shutdown: Some(BitSpec {
                shift: 0,
                mask: 0xff,
            }),
            hz: 250,
            ..KernelNames::default()
        };
        for (i, r) in Reason::ALL.iter().enumerate() {
            n.add_reason(i as u32, r.name());
        }
        for (i, s) in TcpState::ALL.iter().enumerate() {
            n.add_state(i as u8 + 1, s.name());
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_by_name() {
        let n = testing::names_618();
        assert_eq!(n.reason(1), KernelReason::Known(Reason::NoSocket));
        assert_eq!(n.reason(1).name(), Some("NO_SOCKET"));
        assert_eq!(
            n.reason(1000),
            KernelReason::Unknown {
                raw: 1000,
                name: None
            }
        );
        let mut n = n;
        n.add_reason(99, "TCP_SOMETHING_NEW");
        assert_eq!(n.reason(99).name(), Some("TCP_SOMETHING_NEW"));
        assert!(matches!(
            n.reason(99),
            KernelReason::Unknown { raw: 99, .. }
        ));
    }

    #[test]
    fn states_and_flags() {
        let n = testing::names_618();
        assert_eq!(n.state(10), Some(TcpState::Listen));
        assert_eq!(n.state_value(TcpState::Listen), Some(10));
        assert_eq!(n.state(99), None);
        assert!(n.lingers(1 << 4));
        assert!(!n.is_dead(1 << 4));
        assert_eq!(TcpState::from_name("TIME_WAIT"), Some(TcpState::TimeWait));
    }
}
