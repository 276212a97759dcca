//! Who sent a received reset: a socket on this host (paired with its sent
//! reset), the peer (the reset's TTL matches the peer's), or something on
//! the path (it does not); connection failures through a router that are
//! not resets; and resets that arrive for no socket at all.

use std::time::Duration;

use serde_json::Value;

use crate::{
    harness::{error_reports, kernel, skip, Link, Netns, Peer, Tracer},
    peer::Cmd,
    raw::{Segment, RST},
    topology::{Routed, ABSENT, CLIENT, ROUTER_C, SERVER, UNROUTED},
};

fn pid(p: &Peer) -> u64 {
    u64::from(p.pid())
}

fn comm(p: &Peer) -> String {
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", p.pid())).expect("comm");
    comm.trim().to_string()
}

/// A server listening on `addr` `port` in `server_ns`, a client connected
/// from `client_ns`, the connection accepted as `s`: (server, client,
/// client port).
fn connected(server_ns: &Netns, client_ns: &Netns, addr: &str, port: u16) -> (Peer, Peer, u16) {
    let (mut server, mut client) = (server_ns.peer(), client_ns.peer());
    server.ok(Cmd::listen("l", addr, port));
    let cport = client.ok(Cmd::connect("c", addr, port)).parse().unwrap();
    server.ok(Cmd::accept("l", "s"));
    (server, client, cport)
}

fn received_on(v: &Value, local_port: u16) -> bool {
    v["event"] == "reset" && v["direction"] == "received" && v["local_port"] == local_port
}

/// Both ends traced: the client's received reset names the server process
/// that sent it, and the server's sent reset names the client.
#[test]
fn two_namespaces_name_the_sender() {
    let link = Link::new();
    let (a, b) = (link.a.inode(), link.b.inode());
    let mut t = Tracer::start_args(&["--format", "json", "--netns", &format!("{a},{b}")]);
    let (mut server, mut client, cport) = connected(&link.a, &link.b, &link.addr_a, 9601);
    server.ok(Cmd::linger("s", 0));
    server.ok(Cmd::close("s"));
    assert_eq!(client.ask(Cmd::recv("c")), "err ECONNRESET");

    let recv = t.expect("the client's received reset", |v| received_on(v, cport));
    assert_eq!(recv["cause"], "peer_reset");
    assert_eq!(recv["pid"], pid(&client));
    assert_eq!(recv["netns"], b);
    assert_eq!(recv["origin"], "local", "{recv}");
    assert_eq!(recv["sender_pid"], pid(&server));
    assert_eq!(recv["sender_comm"], comm(&server));
    assert_eq!(recv["sender_cause"], "abort_linger");
    assert_eq!(recv["sender_netns"], a);
    assert_eq!(recv["receiver_pid"], Value::Null);

    let sent = t.expect("the server's sent reset", |v| {
        v["direction"] == "sent" && v["remote_port"] == cport
    });
    assert_eq!(sent["cause"], "abort_linger");
    assert_eq!(sent["pid"], pid(&server));
    assert_eq!(sent["receiver_pid"], pid(&client));
    assert_eq!(sent["receiver_comm"], comm(&client));
    assert_eq!(sent["receiver_netns"], b);
    assert_eq!(sent["origin"], Value::Null, "only received resets have one");
    assert_eq!(sent["sender_pid"], Value::Null);
}

/// A published port with nothing behind it (a container port mapping
/// whose container is down): the router DNATs the client's SYN to the
/// server namespace, where nothing listens.  The server's no_listener and
/// the client's connection_refused are one reset seen at both ends: they
/// are paired through the translation (by the client's address and port
/// and the sequence number the reset acks) and share one community_id,
/// the client's (docs/origin.md).
#[test]
fn a_reset_through_nat_is_paired() {
    let r = Routed::new();
    let (c, s) = (r.client.inode(), r.server.inode());
    let mut t = Tracer::start_args(&["--format", "json", "--netns", &format!("{c},{s}")]);
    r.router.nft(&format!(
        "table ip rsttrace_nat {{
           chain pre {{
             type nat hook prerouting priority -100;
             ip daddr {ROUTER_C} tcp dport 9700 dnat to {SERVER}:9701
           }}
         }}"
    ));
    let mut client = r.client.peer();
    assert_eq!(
        client.ask(Cmd::connect("c", ROUTER_C, 9700)),
        "err ECONNREFUSED"
    );
    let recv = t.expect("the client's connection_refused", |v| {
        v["direction"] == "received" && v["remote_port"] == 9700
    });
    assert_eq!(recv["cause"], "connection_refused", "{recv}");
    assert_eq!(recv["remote_addr"], ROUTER_C, "{recv}");
    let sent = t.expect("the server's no_listener", |v| {
        v["direction"] == "sent" && v["local_port"] == 9701
    });
    assert_eq!(sent["cause"], "no_listener", "{sent}");
    assert_eq!(sent["remote_port"], recv["local_port"], "{sent}");
    assert_eq!(recv["origin"], "local", "{recv}");
    assert_eq!(recv["sender_netns"], s, "{recv}");
    assert_eq!(recv["sender_cause"], "no_listener", "{recv}");
    assert_eq!(sent["receiver_netns"], c, "{sent}");
    assert_eq!(sent["receiver_pid"], pid(&client), "{sent}");
    assert_eq!(sent["community_id"], recv["community_id"], "{sent}\n{recv}");
}

/// The router's firewall answers the client's data with a reset in the
/// server's name.  The server's segments reach the client forwarded (TTL
/// 64 - 1); the router's reset starts one hop closer (64).
#[test]
fn a_router_injected_reset_is_path() {
    let r = Routed::new();
    let mut t = Tracer::start(&r.client, &[]);
    let (_server, mut client, cport) = connected(&r.server, &r.client, SERVER, 9602);
    r.router.nft(&format!(
        "table inet rsttrace_test {{
           chain relay {{
             type filter hook forward priority 0;
             ip saddr {CLIENT} tcp sport {cport} tcp dport 9602 reject with tcp reset
           }}
         }}"
    ));
    client.ok(Cmd::send("c", 10));
    assert_eq!(client.ask(Cmd::recv("c")), "err ECONNRESET");

    let ev = t.expect("the client's received reset", |v| received_on(v, cport));
    assert_eq!(ev["cause"], "peer_reset");
    assert_eq!(
        ev["remote_addr"], SERVER,
        "the router forged the server's address"
    );
    assert_eq!(ev["pid"], pid(&client));
    assert_eq!(ev["peer_ttl"], 63, "{ev}");
    assert_eq!(ev["rst_ttl"], 64, "{ev}");
    assert_eq!(ev["origin"], "path", "{ev}");
    assert_eq!(
        ev["sender_pid"],
        Value::Null,
        "the server host is not traced"
    );
}

/// The server itself resets: its reset crosses the router like its other
/// segments, and arrives with the same TTL.
#[test]
fn a_server_reset_through_the_router_is_peer() {
    let r = Routed::new();
    let mut t = Tracer::start(&r.client, &[]);
    let (mut server, mut client, cport) = connected(&r.server, &r.client, SERVER, 9603);
    server.ok(Cmd::linger("s", 0));
    server.ok(Cmd::close("s"));
    assert_eq!(client.ask(Cmd::recv("c")), "err ECONNRESET");

    let ev = t.expect("the client's received reset", |v| received_on(v, cport));
    assert_eq!(ev["cause"], "peer_reset");
    assert_eq!(ev["pid"], pid(&client));
    assert_eq!(ev["peer_ttl"], 63, "{ev}");
    assert_eq!(ev["rst_ttl"], 63, "{ev}");
    assert_eq!(ev["origin"], "peer", "{ev}");
    assert_eq!(
        ev["sender_pid"],
        Value::Null,
        "the server host is not traced"
    );
}

/// After a while, still no reset on the connection to `addr` `port`.
fn no_reset(t: &mut Tracer, addr: &str, port: u16) {
    t.settle(Duration::from_secs(1));
    let resets: Vec<_> = t
        .seen
        .iter()
        .filter(|v| v["event"] == "reset" && v["remote_addr"] == addr && v["remote_port"] == port)
        .collect();
    assert!(resets.is_empty(), "not a reset: {resets:#?}");
}

/// The client's connect() to `addr` `port` fails with `errno`: a `kind`
/// failure of the client's, from the router's ICMP `code` (None: no ICMP),
/// and no reset.
fn fails(
    t: &mut Tracer,
    client: &mut Peer,
    addr: &str,
    port: u16,
    errno: &str,
    kind: &str,
    code: Option<u64>,
) {
    assert_eq!(
        client.ask(Cmd::connect("c", addr, port)),
        format!("err {errno}")
    );
    let f = t.expect(kind, |v| {
        v["event"] == "connection_failure" && v["remote_addr"] == addr && v["remote_port"] == port
    });
    assert_eq!(f["failure"], kind, "{f}");
    assert_eq!(f["app_errno"], errno, "{f}");
    assert_eq!(f["pid"], pid(client), "{f}");
    // ICMP details, from TCP's error handler or the receive path.
    let icmp = (f["icmp_type"].as_u64(), f["icmp_code"].as_u64());
    assert_eq!(icmp, (code.map(|_| 3), code), "{f}");
    let from = code.map(|_| ROUTER_C);
    assert_eq!(f["icmp_from"].as_str(), from, "{f}");
    no_reset(t, addr, port);
    one_failure(t, addr, port);
}

/// One connect() failed once: one record, however many reports and ICMP
/// errors (one per SYN) the kernel made of it.
fn one_failure(t: &Tracer, addr: &str, port: u16) {
    let failures: Vec<_> = t
        .seen
        .iter()
        .filter(|v| {
            v["event"] == "connection_failure"
                && v["remote_addr"] == addr
                && v["remote_port"] == port
        })
        .collect();
    assert_eq!(failures.len(), 1, "{failures:#?}");
}

/// The router cannot reach the destination, its neighbour never answers,
/// or the server drops the SYN: the client's connect() fails without any
/// reset, and the record says which failure it was.
#[test]
fn failures_through_the_router_are_not_resets() {
    if !error_reports() {
        skip(
            "origin::failures_through_the_router_are_not_resets",
            "connection failures need sock:inet_sk_error_report (Linux 5.14+)",
        );
        return;
    }
    let r = Routed::new();
    r.server.nft(
        "table inet rsttrace_test {
           chain input {
             type filter hook input priority 0;
             tcp dport 9606 drop
           }
         }",
    );
    let mut t = Tracer::start(&r.client, &["--failures"]);
    let mut c = r.client.peer();
    fails(
        &mut t,
        &mut c,
        UNROUTED,
        9604,
        "ENETUNREACH",
        "net_unreachable",
        Some(0),
    );
    // The router gives up on ARP after its three probes, about 3 s.
    fails(
        &mut t,
        &mut c,
        ABSENT,
        9605,
        "EHOSTUNREACH",
        "host_unreachable",
        Some(1),
    );
    // One SYN retransmission: connect() gives up after about 3 s.
    c.ok(Cmd::SynCnt(1));
    fails(
        &mut t,
        &mut c,
        SERVER,
        9606,
        "ETIMEDOUT",
        "syn_timeout",
        None,
    );
}

/// The case: a client with a connect timeout (non-blocking
/// connect(), poll, SO_ERROR) to an address its router has no route for.
/// On veth the router's ICMP net unreachable comes back while connect()
/// still holds the socket, so the kernel only keeps it as the socket's
/// soft error: no report with an errno, and SO_ERROR hands it over at
/// once.  Reported from the ICMP error and its error-queue report, with
/// the client's pid, once.
#[test]
fn net_unreachable_at_once_is_reported() {
    if !error_reports() {
        skip(
            "origin::net_unreachable_at_once_is_reported",
            "connection failures need the errno reports (Linux 5.14+, or BPF trampolines)",
        );
        return;
    }
    let r = Routed::new();
    let mut t = Tracer::start(&r.client, &["--failures"]);
    let mut c = r.client.peer();
    assert_eq!(
        c.ask(Cmd::connect_poll("c", UNROUTED, 9609)),
        "err ENETUNREACH"
    );
    let f = t.expect("net_unreachable", |v| {
        v["event"] == "connection_failure"
            && v["remote_addr"] == UNROUTED
            && v["remote_port"] == 9609
    });
    assert_eq!(f["failure"], "net_unreachable", "{f}");
    assert_eq!(f["app_errno"], "ENETUNREACH", "{f}");
    assert_eq!(f["app_errno_for"], "local", "{f}");
    assert_eq!(f["local_addr"], CLIENT, "{f}");
    assert_eq!(f["pid"], pid(&c), "{f}");
    assert_eq!(f["comm"], comm(&c), "{f}");
    assert_eq!(f["netns"], r.client.inode(), "{f}");
    assert_eq!(
        (f["icmp_type"].as_u64(), f["icmp_code"].as_u64()),
        (Some(3), Some(0)),
        "{f}"
    );
    assert_eq!(f["icmp_from"], ROUTER_C, "{f}");
    no_reset(&mut t, UNROUTED, 9609);
    one_failure(&t, UNROUTED, 9609);
}

/// A reset from another namespace's raw socket to a port with no socket:
/// the kernel drops it silently; with --stray-resets it is reported.
#[test]
fn a_reset_for_no_socket_is_a_stray() {
    let test = "origin::a_reset_for_no_socket_is_a_stray";
    if !kernel().strays() {
        skip(
            test,
            "resets for no socket need kfree_skb drop reasons (Linux 5.17+) or the reset \
             builders hooked",
        );
        return;
    }
    let link = Link::new();
    let mut sender = link.b.peer();
    let stray = Segment::new(&link.addr_b, 40001, &link.addr_a, 9607, RST, 12345, 0);

    let mut t = Tracer::start(&link.a, &["--stray-resets"]);
    sender.ok(Cmd::RawSend(stray.clone()));
    let ev = t.expect("stray_reset", |v| v["event"] == "stray_reset");
    assert_eq!(
        (ev["local_addr"].as_str(), ev["local_port"].as_u64()),
        (Some(link.addr_a.as_str()), Some(9607)),
        "{ev}"
    );
    assert_eq!(
        (ev["remote_addr"].as_str(), ev["remote_port"].as_u64()),
        (Some(link.addr_b.as_str()), Some(40001)),
        "{ev}"
    );
    assert_eq!(ev["seq"], 12345);
    assert_eq!(ev["rst_ttl"], 64, "sent with 64, no hop between");
    assert_eq!(ev["netns"], link.a.inode());
    t.settle(Duration::from_millis(500));
    assert_eq!(
        t.seen
            .iter()
            .filter(|v| v["event"] == "stray_reset")
            .count(),
        1,
        "{:#?}",
        t.seen
    );
    drop(t);

    // Without the flag: nothing reported, though rsttrace is watching (a
    // closed-port reset sent after the stray shows up).
    let mut t = Tracer::start(&link.a, &[]);
    sender.ok(Cmd::RawSend(stray.clone()));
    assert_eq!(
        sender.ask(Cmd::connect("c", &link.addr_a, 9608)),
        "err ECONNREFUSED"
    );
    t.expect("the closed port's reset", |v| {
        v["cause"] == "no_listener" && v["local_port"] == 9608
    });
    t.settle(Duration::from_secs(1));
    assert!(
        t.seen.iter().all(|v| v["event"] != "stray_reset"),
        "{:#?}",
        t.seen
    );
    // ... but counted, in this namespace only.
    let (_, stderr) = t.stop();
    assert!(
        stderr.contains(", 1 resets for no socket (stray; --stray-resets reports them)"),
        "{stderr}"
    );
}
