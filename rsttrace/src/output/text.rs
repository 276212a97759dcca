//! One readable line per reset:
//!
//! ```text
//! 2026-11-24T14:05:01.123456Z sent no_listener 127.0.0.1:8080 -> 127.0.0.1:45678 owner=- peer:ECONNREFUSED reason=NO_SOCKET state=- seg=SYN netns=4026531840 | A SYN arrived ...
//! ```
//!
//! The arrow points the way the reset travelled.

use std::{io::Write, net::IpAddr};

use crate::{
    classify::Affected,
    kernel::clock::rfc3339,
    report::{tcp_flags_str, Report},
};

/// `addr:port`, bracketing IPv6 addresses.
pub fn endpoint(buf: &mut Vec<u8>, addr: IpAddr, port: u16) {
    let _ = match addr {
        IpAddr::V4(a) => write!(buf, "{a}:{port}"),
        IpAddr::V6(a) => write!(buf, "[{a}]:{port}"),
    };
}

pub fn write_reset(r: &Report<'_>, buf: &mut Vec<u8>, scratch: &mut String) {
    let ev = r.ev;
    let mut time = [0u8; 27];
    let _ = write!(
        buf,
        "{} {:<8} {:<24} ",
        rfc3339(r.unix_ns, &mut time),
        r.direction().as_str(),
        r.class.cause.id()
    );
    endpoint(buf, r.local_addr(), ev.local_port);
    buf.extend_from_slice(match r.class.cause.affected() {
        Affected::Peer => b" -> ",
        Affected::Local => b" <- ",
    });
    endpoint(buf, r.remote_addr(), ev.remote_port);
    let _ = match r.owner {
        Some(o) => write!(buf, " owner={}/{}", o.pid, o.comm),
        None => write!(buf, " owner=-"),
    };
    if let Some(e) = r.class.app_errno {
        let who = match r.class.cause.affected() {
            Affected::Peer => "peer",
            Affected::Local => "app",
        };
        let _ = write!(buf, " {who}:{e}");
    }
    let _ = write!(
        buf,
        " reason={} state={}",
        r.kernel_reason.unwrap_or("-"),
        r.state.unwrap_or("-")
    );
    if r.has_segment() {
        let _ = write!(buf, " seg={}", tcp_flags_str(ev.tcp_flags, scratch));
        if ev.payload_len > 0 {
            let _ = write!(buf, "+{}B", ev.payload_len);
        }
    }
    let c = &r.context;
    if let Some(age) = c.age_ms {
        let _ = write!(buf, " age={}", secs(age));
    }
    if let Some(idle) = c.idle_ms {
        let _ = write!(buf, " idle={}", secs(idle));
    }
    if let Some(n) = c.unread_bytes.filter(|&n| n > 0) {
        let _ = write!(buf, " unread={n}B");
    }
    if let Some(n) = c.unacked_bytes.filter(|&n| n > 0) {
        let _ = write!(buf, " unacked={n}B");
    }
    if let (Some(rx), Some(tx)) = (c.bytes_received, c.bytes_acked) {
        let _ = write!(buf, " rx={rx}B tx={tx}B");
    }
    if let Some(l) = r.listener {
        let _ = write!(
            buf,
            " listening_now={}",
            if l.listening_now { "yes" } else { "no" }
        );
        if let Some(last) = l.last {
            let _ = write!(buf, " last_listener={}/{}", last.pid, last.comm);
        }
        if let Some(ms) = l.stopped_ms {
            let _ = write!(buf, " stopped={}_ago", secs(ms));
        }
    }
    if let Some(k) = r.killer {
        let _ = write!(buf, " killed_by={}/{}", k.pid, k.comm);
    }
    if let Some(d) = r.delivered {
        let _ = write!(buf, " delivered={}", d.errno);
        if let Some(to) = d.to {
            let _ = write!(buf, "->{}/{}", to.pid, to.comm);
        }
    }
    if let Some(id) = r.container.and_then(|c| c.id.as_deref()) {
        let _ = write!(buf, " container={}", &id[..12.min(id.len())]);
    }
    let _ = writeln!(buf, " netns={} | {}", ev.netns, r.class.cause.explanation());
}

/// Milliseconds as a short human duration: `850ms`, `12.3s`, `350s`.
pub fn secs(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 100_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}s", ms / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(secs(850), "850ms");
        assert_eq!(secs(12_345), "12.3s");
        assert_eq!(secs(350_000), "350s");
    }

    #[test]
    fn endpoints() {
        let mut b = vec![];
        endpoint(&mut b, "10.0.0.1".parse().unwrap(), 80);
        b.push(b' ');
        endpoint(&mut b, "fd00::1".parse().unwrap(), 443);
        assert_eq!(String::from_utf8(b).unwrap(), "10.0.0.1:80 [fd00::1]:443");
    }
}
