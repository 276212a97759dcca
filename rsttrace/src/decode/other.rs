//! Decoding the records other than resets: error reports, listen changes,
//! firewall verdicts, ICMP errors and stray resets.

use crate::vocab::errno::Errno;
use rsttrace_common::event::{
    ErrorReportEvent, FirewallEvent, IcmpEvent, ListenEvent, StrayEvent, HOOK_KPROBE, VERDICT_ICMP,
    VERDICT_RESET,
};

use super::{
    conn, owner, seg, ErrorReport, FirewallVerdict, IcmpSeen, ListenChange, StrayReset, Verdict,
};
use crate::model::conn::{Comm, Task};

pub(super) fn error_report(er: &ErrorReportEvent) -> ErrorReport {
    ErrorReport {
        ts_ns: er.header.ts_ns,
        sk: er.sk,
        sock_ino: er.sock_ino,
        errno: Errno::from_raw(er.error),
        conn: conn(&er.ends),
        netns: er.netns,
        synced: er.synced != 0,
        owner: owner(er.flags, &er.owner),
    }
}

pub(super) fn listen(le: &ListenEvent) -> ListenChange {
    ListenChange {
        ts_ns: le.header.ts_ns,
        netns: le.netns,
        port: le.port,
        listening: le.listening != 0,
        owner: (le.owner.tgid != 0).then(|| Task {
            pid: le.owner.tgid,
            comm: Comm::new(le.owner.comm),
        }),
    }
}

pub(super) fn firewall(ev: &FirewallEvent) -> FirewallVerdict {
    let verdict = match ev.verdict {
        VERDICT_RESET => Verdict::Reset,
        VERDICT_ICMP => Verdict::Icmp {
            icmp_type: ev.icmp_type,
            code: ev.icmp_code,
        },
        _ => Verdict::Drop,
    };
    FirewallVerdict {
        ts_ns: ev.header.ts_ns,
        cpu: ev.header.cpu,
        verdict,
        conn: conn(&ev.ends),
        segment: seg(&ev.seg),
        netns: ev.netns,
        exact: ev.hook == HOOK_KPROBE,
        outgoing: ev.outgoing != 0,
    }
}

pub(super) fn icmp(ev: &IcmpEvent) -> IcmpSeen {
    let v6 = ev.ends.family == crate::model::conn::AF_INET6;
    IcmpSeen {
        conn: conn(&ev.ends),
        netns: ev.netns,
        icmp: crate::model::failure::Icmp {
            v6,
            icmp_type: ev.icmp_type,
            code: ev.icmp_code,
            from: crate::model::conn::ip_addr(ev.ends.family, &ev.from),
        },
    }
}

pub(super) fn stray(ev: &StrayEvent) -> StrayReset {
    StrayReset {
        ts_ns: ev.header.ts_ns,
        conn: conn(&ev.ends),
        netns: ev.netns,
        ttl: ev.seg.ttl,
        seq: ev.seg.seq,
    }
}
