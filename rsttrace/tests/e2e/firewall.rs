//! Resets the firewall sends, and the failures that are not resets at all.

use serde_json::Value;

use crate::harness::{error_reports, kernel, skip, Link, Tracer};
use crate::peer::Cmd;

fn is_failure(v: &Value, failure: &str, port: u16) -> bool {
    v["event"] == "connection_failure"
        && v["failure"] == failure
        && (v["local_port"] == port || v["remote_port"] == port)
}

#[test]
fn firewall_verdicts_and_failures_without_resets() {
    let link = Link::new();
    // `icmpx type host-unreachable`: Debian 11's nft (0.9.8) needs the
    // `type`, newer ones accept it.
    link.a.nft(
        "table inet rsttrace_test {
           chain input {
             type filter hook input priority 0;
             tcp dport 9501 reject with tcp reset
             tcp dport 9502 reject
             tcp dport 9503 reject with icmpx type host-unreachable
             tcp dport 9504 drop
           }
         }",
    );
    let mut ta = Tracer::start(&link.a, &["--failures"]);
    let mut tb = Tracer::start(&link.b, &["--failures"]);
    let mut client = link.b.peer();
    client.ok(Cmd::SynCnt(1));
    let server = &link.addr_a;
    assert_eq!(
        client.ask(Cmd::connect("c1", server, 9501)),
        "err ECONNREFUSED"
    );
    assert_eq!(
        client.ask(Cmd::connect("c2", server, 9502)),
        "err ECONNREFUSED"
    );
    assert_eq!(
        client.ask(Cmd::connect("c3", server, 9503)),
        "err EHOSTUNREACH"
    );
    assert_eq!(
        client.ask(Cmd::connect("c4", server, 9504)),
        "err ETIMEDOUT"
    );
    let client_pid = u64::from(client.pid());

    if assert_server_verdicts(&mut ta, &link) {
        assert_client_failures(&mut tb, client_pid);
    }
}

const TEST: &str = "firewall::firewall_verdicts_and_failures_without_resets";

/// The server host: a reset that tcp_send_reset never saw, and the ICMP
/// rejects and drops where this kernel shows them.  False where the
/// rest of the test cannot run here (said as a skip).
fn assert_server_verdicts(ta: &mut Tracer, link: &Link) -> bool {
    let rst = ta.expect("firewall_reject", |v| v["cause"] == "firewall_reject");
    assert_eq!(rst["direction"], "sent");
    assert_eq!(rst["local_port"], 9501);
    assert_eq!(rst["remote_addr"], link.addr_b.as_str());
    assert_eq!(rst["tcp_flags"], "SYN");
    assert_eq!(rst["kernel_reason"], Value::Null);
    assert_eq!(rst["pid"], Value::Null);
    // Known from the segment: no task ran it that the record can name.
    assert_eq!(rst["task_pid"], Value::Null, "{rst}");
    assert_eq!(rst["task_comm"], Value::Null, "{rst}");
    assert_eq!(rst["app_errno"], "ECONNREFUSED");
    if !kernel().firewall_rejects() {
        skip(
            TEST,
            "ICMP rejects need kprobes or kfree_skb drop reasons (Linux 5.17+); the reset was checked",
        );
        return false;
    }
    let icmp = ta.expect("ICMP reject", |v| {
        is_failure(v, "firewall_icmp_reject", 9502)
    });
    assert_eq!(icmp["app_errno"], "ECONNREFUSED");
    assert_eq!(icmp["app_errno_for"], "peer");
    let host = ta.expect("ICMP host-unreachable", |v| {
        is_failure(v, "firewall_icmp_reject", 9503)
    });
    assert_eq!(host["app_errno"], "EHOSTUNREACH");
    if kernel().drop_reasons() {
        let drop = ta.expect("drop", |v| is_failure(v, "firewall_drop", 9504));
        assert_eq!(drop["app_errno"], Value::Null);
    } else {
        skip(
            TEST,
            "silent drops need kfree_skb drop reasons (Linux 5.17+)",
        );
    }

    true
}

/// The client host: one real reset, and three failures that are not.
fn assert_client_failures(tb: &mut Tracer, client_pid: u64) {
    let refused = tb.expect("connection_refused", |v| v["cause"] == "connection_refused");
    assert_eq!(refused["remote_port"], 9501);
    assert_eq!(refused["pid"], client_pid);
    if !error_reports() {
        skip(
            TEST,
            "the client's failures need sock:inet_sk_error_report (Linux 5.14+); the server's verdicts were checked",
        );
        return;
    }
    let f = tb.expect("icmp_port_unreachable", |v| {
        is_failure(v, "icmp_port_unreachable", 9502)
    });
    assert_eq!(
        (f["app_errno"].clone(), f["pid"].clone()),
        (Value::from("ECONNREFUSED"), Value::from(client_pid))
    );
    let f = tb.expect("host_unreachable", |v| {
        is_failure(v, "host_unreachable", 9503)
    });
    assert_eq!(f["app_errno"], "EHOSTUNREACH");
    let f = tb.expect("syn_timeout", |v| is_failure(v, "syn_timeout", 9504));
    assert_eq!(
        (f["app_errno"].clone(), f["pid"].clone()),
        (Value::from("ETIMEDOUT"), Value::from(client_pid))
    );
    tb.settle(std::time::Duration::from_millis(200));
    let resets: Vec<_> = tb.seen.iter().filter(|v| v["event"] == "reset").collect();
    assert_eq!(resets.len(), 1, "only 9501 was a reset: {resets:#?}");
}

#[test]
fn firewall_hooks_can_be_left_out() {
    let link = Link::new();
    link.a.nft(
        "table inet rsttrace_test {
           chain input {
             type filter hook input priority 0;
             tcp dport 9511 reject with tcp reset
           }
         }",
    );
    let mut ta = Tracer::start(&link.a, &["--no-firewall"]);
    let mut client = link.b.peer();
    assert_eq!(
        client.ask(Cmd::connect("c", &link.addr_a, 9511)),
        "err ECONNREFUSED"
    );
    // A control that proves rsttrace is watching: a closed port next to
    // the rejected one is reported.
    assert_eq!(
        client.ask(Cmd::connect("d", &link.addr_a, 9512)),
        "err ECONNREFUSED"
    );
    ta.expect("the closed port's reset", |v| {
        v["cause"] == "no_listener" && v["local_port"] == 9512
    });
    ta.settle(std::time::Duration::from_millis(500));
    let rejected: Vec<_> = ta.seen.iter().filter(|v| v["local_port"] == 9511).collect();
    assert!(rejected.is_empty(), "{rejected:#?}");
}

/// This host's own output rule drops its FIN: a failure of this host's
/// connection, seen from this host (its namespace, its address and port as
/// local, the errno its own socket meets).  The same rule drops the IPv6
/// multicast listener reports the link sends when it comes up, ICMPv6
/// behind a hop-by-hop header: none of them is a TCP segment to report.
#[test]
fn own_segments_dropped_on_the_way_out() {
    let test = "firewall::own_segments_dropped_on_the_way_out";
    if !kernel().drop_reasons() {
        skip(
            test,
            "firewall drops need kfree_skb drop reasons (Linux 5.17+)",
        );
        return;
    }
    let link = Link::new();
    link.b.nft(
        "table inet rsttrace_out {
           chain output {
             type filter hook output priority 0;
             tcp dport 9505 tcp flags & fin == fin drop
             ip6 nexthdr 0 counter drop
             meta l4proto ipv6-icmp drop
           }
         }",
    );
    let mut tb = Tracer::start(&link.b, &["--failures"]);
    let mut server = link.a.peer();
    server.ok(Cmd::listen("l", &link.addr_a, 9505));
    let mut client = link.b.peer();
    let fin_dropped = |tb: &mut Tracer, client: &mut crate::harness::Peer, n: u32| {
        let port: u64 = client
            .ok(Cmd::connect(&format!("c{n}"), &link.addr_a, 9505))
            .parse()
            .unwrap();
        client.ok(Cmd::close(&format!("c{n}")));
        tb.expect("the FIN dropped on its way out", |v| {
            v["event"] == "connection_failure"
                && v["failure"] == "firewall_output_drop"
                && v["local_port"] == port
        })
    };
    let drop = fin_dropped(&mut tb, &mut client, 1);
    assert_eq!(drop["netns"], link.b.inode(), "{drop}");
    assert_eq!(drop["local_addr"], link.addr_b.as_str(), "{drop}");
    assert_eq!(drop["remote_addr"], link.addr_a.as_str(), "{drop}");
    assert_eq!(drop["remote_port"], 9505, "{drop}");
    assert_eq!(drop["app_errno_for"], "local", "{drop}");
    // Joining a multicast group sends a listener report, dropped between
    // two FINs: were it taken for TCP, its record would come before the
    // second (records come out in order).
    let hbh_drops = |l: &Link| {
        let rules = l.b.nft_list("table inet rsttrace_out");
        let line = rules
            .lines()
            .find(|l| l.contains("nexthdr"))
            .unwrap_or("")
            .to_string();
        line.split("packets ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no counter in {rules}"))
    };
    let before = hbh_drops(&link);
    client.ok(Cmd::mjoin("ff02::1:ff00:abcd", &link.dev_b));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while hbh_drops(&link) == before {
        assert!(
            std::time::Instant::now() < deadline,
            "no listener report was dropped: the check below would prove nothing"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    fin_dropped(&mut tb, &mut client, 2);
    let other: Vec<_> = tb
        .seen
        .iter()
        .filter(|v| v["event"] == "connection_failure" && v["remote_port"] != 9505)
        .collect();
    assert!(
        other.is_empty(),
        "segments that are not TCP reported: {other:?}"
    );
}
