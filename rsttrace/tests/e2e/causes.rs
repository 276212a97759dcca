//! Every cause the kernel can produce on this host, reproduced for real:
//! two namespaces joined by veth, a different process on each side.  The
//! tracer watches the namespace whose kernel sends the reset; asserts
//! cover cause, direction, owner and the errno applications get.

use std::{net::Shutdown, thread, time::Duration};

use serde_json::Value;

use crate::harness::{
    assert_delivered, assert_reason, exclusive, skip, skip_unless_told, socket_timer_is,
    GlobalSysctl, Link, Peer, Tracer,
};
use crate::peer::{Cmd, TcpOpt};
use crate::raw::{Seen, Segment, ACK, SYN};
use crate::real::wait_for;

fn is(v: &Value, direction: &str, cause: &str) -> bool {
    v["direction"] == direction && v["cause"] == cause
}

/// A connected pair: server `s` (accepted from `l`) in namespace a, client
/// `c` in namespace b.  Returns (server, client, client port).
fn connected(link: &Link, port: u16) -> (Peer, Peer, u16) {
    let (mut server, mut client) = (link.a.peer(), link.b.peer());
    server.ok(Cmd::listen("l", &link.addr_a, port));
    let cport = client
        .ok(Cmd::connect("c", &link.addr_a, port))
        .parse()
        .unwrap();
    server.ok(Cmd::accept("l", "s"));
    (server, client, cport)
}

fn pid(p: &Peer) -> u64 {
    u64::from(p.pid())
}

/// Client closes; the server writes to it: the client host answers from
/// the time-wait remnant of the connection (FIN_WAIT2 substate).  Softirq,
/// the server process running; the owner is the client that closed.
#[test]
fn fin_wait2_data() {
    let link = Link::new();
    let mut t = Tracer::start(&link.b, &[]);
    let (mut server, mut client, cport) = connected(&link, 9001);
    // Reach FIN_WAIT2 first (the server's ACK of our FIN may be delayed),
    // so that close() turns the socket into a time-wait mini-socket at once.
    client.ok(Cmd::shutdown("c", Shutdown::Write));
    assert_eq!(server.ask(Cmd::recv("s")), "read 0");
    link.b.wait_for_state("fin-wait-2");
    // close() in FIN_WAIT2 replaces the socket with the mini-socket before
    // it returns (ss shows it as FIN-WAIT-2, its substate).
    client.ok(Cmd::close("c"));
    server.ok(Cmd::send("s", 10));
    // The reset has reached the server once its socket (half closed by
    // the client's FIN) left CLOSE_WAIT.
    link.a.wait_for_no_socket("close-wait", 9001);
    assert_eq!(server.ask(Cmd::send("s", 10)), "err EPIPE");

    let ev = t.expect("fin_wait2_data", |v| is(v, "sent", "fin_wait2_data"));
    assert_eq!(ev["state"], "TIME_WAIT");
    assert_eq!(ev["local_port"], cport);
    assert_eq!(ev["remote_port"], 9001);
    assert_eq!(ev["pid"], pid(&client), "the process that closed it");
    assert_eq!(ev["owner_source"], "closed");
    assert_eq!(ev["owner_exited"], false);
    assert!(ev["owner_closed_ms"].as_u64().is_some(), "{ev}");
    assert_eq!(ev["app_errno"], "EPIPE");
    assert_eq!(ev["payload_len"], 10);
    assert_reason(&ev, "TCP_TIMEWAIT_SOCKET");
}

/// The seed's third case: a server exits while a client keeps a pooled
/// connection; the client's next request meets the dead server's
/// time-wait remnant.  The record names the server that is gone.
#[test]
fn a_dead_servers_connection() {
    let link = Link::new();
    let mut t = Tracer::start(&link.a, &[]);
    let (mut server, mut client, cport) = connected(&link, 9015);
    let server_pid = pid(&server);
    server.kill();
    // The server's kernel closed the socket: FIN, acknowledged.
    assert_eq!(client.ask(Cmd::recv("c")), "read 0");
    link.a.wait_for_state("fin-wait-2");
    // The orphan became a time-wait socket in FIN_WAIT2 (the usual way),
    // or, where the ACK of its FIN came while its closing process still
    // held the lock, stays a full socket with a FIN_WAIT2 timer: then the
    // data meets TCP_ABORT_ON_DATA instead.
    // A full socket's FIN_WAIT2 timer may still hand it to a time-wait
    // socket before the data comes; a time-wait socket stays one.
    let causes: &[&str] = if socket_timer_is(&link.a, "fin-wait-2", "timewait") {
        &["fin_wait2_data"]
    } else {
        &["data_after_close", "fin_wait2_data"]
    };
    client.ok(Cmd::send("c", 10));
    let ev = t.expect("the reset to the data", |v| {
        causes.iter().any(|c| is(v, "sent", c)) && v["remote_port"] == cport
    });
    assert_eq!(ev["pid"], server_pid, "the dead server");
    // The time-wait socket's owner is the one recorded when the
    // connection closed; a full socket still holds its own entry.
    let source = if ev["cause"] == "fin_wait2_data" {
        "closed"
    } else {
        "socket"
    };
    assert_eq!(ev["owner_source"], source, "{ev}");
    assert_eq!(ev["owner_exited"], true);
    assert!(ev["owner_closed_ms"].as_u64().is_some(), "{ev}");
    assert_eq!(ev["local_port"], 9015);
}

/// Client shuts down both directions; data arrives: the client host resets
/// its own socket and the server.
#[test]
fn data_after_shutdown() {
    let link = Link::new();
    let mut t = Tracer::start(&link.b, &[]);
    let (mut server, mut client, _) = connected(&link, 9002);
    client.ok(Cmd::shutdown("c", Shutdown::Both));
    // The client's FIN has arrived.
    link.a.wait_for_state("close-wait");
    server.ok(Cmd::send("s", 10));
    // And the reset to the data: the server's socket is gone from there.
    link.a.wait_for_no_socket("close-wait", 9002);
    assert_eq!(server.ask(Cmd::send("s", 10)), "err EPIPE");
    assert_eq!(client.ask(Cmd::recv("c")), "err ECONNRESET");

    let sent = t.expect("data_after_close", |v| is(v, "sent", "data_after_close"));
    assert_reason(&sent, "TCP_ABORT_ON_DATA");
    assert_eq!(sent["pid"], pid(&client));
    assert_eq!(sent["app_errno"], "EPIPE");
    assert_eq!(sent["payload_len"], 10);
    let local = t.expect("the client's own socket reset", |v| {
        is(v, "received", "local_abort_on_data")
    });
    assert_eq!(local["pid"], pid(&client));
    assert_eq!(local["app_errno"], "ECONNRESET");
    assert_delivered(&local, "ECONNRESET");
}

/// TCP_LINGER2 = -1: close() gives up on FIN_WAIT2.  With SO_LINGER {1, 5}
/// the reset comes from close() itself (TCP_ABORT_ON_LINGER); without it,
/// from the ACK of our FIN in softirq (TCP_ABORT_ON_DATA, no payload).
#[test]
fn linger2_abort() {
    let link = Link::new();
    let mut t = Tracer::start(&link.b, &[]);
    let (_server, mut client, cport) = connected(&link, 9003);
    client.ok(Cmd::tcpopt("c", TcpOpt::Linger2, -1));
    client.ok(Cmd::linger("c", 5));
    client.ok(Cmd::close("c"));
    let ev = t.expect("linger2_abort in close()", |v| {
        is(v, "sent", "linger2_abort") && v["local_port"] == cport
    });
    assert_reason(&ev, "TCP_ABORT_ON_LINGER");
    assert_eq!(ev["pid"], pid(&client));
    assert_eq!(ev["app_errno"], "EPIPE");

    let (_server2, mut client2, cport2) = connected(&link, 9013);
    client2.ok(Cmd::tcpopt("c", TcpOpt::Linger2, -1));
    client2.ok(Cmd::close("c"));
    let ev = t.expect("linger2_abort in softirq", |v| {
        is(v, "sent", "linger2_abort") && v["local_port"] == cport2
    });
    assert_reason(&ev, "TCP_ABORT_ON_DATA");
    assert_eq!(ev["tcp_flags"], "ACK");
    assert_eq!(ev["payload_len"], 0);
    assert_eq!(ev["pid"], pid(&client2), "the orphan's last owner");
}

/// `ss -K` destroys the server's socket: the owner is the server, the
/// killer `ss`, and the server gets ECONNABORTED.
#[test]
fn socket_destroyed_by_ss() {
    let link = Link::new();
    let mut t = Tracer::start(&link.a, &[]);
    let (mut server, mut client, cport) = connected(&link, 9004);
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &link.a.name,
            "ss",
            "-K",
            "dport",
            "=",
            &cport.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.ask(Cmd::recv("s")), "err ECONNABORTED");
    assert_eq!(client.ask(Cmd::recv("c")), "err ECONNRESET");

    let ev = t.expect("socket_destroyed", |v| is(v, "sent", "socket_destroyed"));
    assert_reason(&ev, "TCP_STATE");
    assert_eq!(ev["state"], "ESTABLISHED");
    assert_eq!(ev["pid"], pid(&server));
    assert_eq!(ev["killer_comm"], "ss");
    assert_ne!(ev["killer_pid"], pid(&server));
    assert_delivered(&ev, "ECONNABORTED");
    if crate::harness::error_reports() {
        assert_eq!(ev["delivered_pid"], pid(&server));
    }
    assert_eq!(ev["app_errno"], "ECONNRESET");
}

/// connect(AF_UNSPEC) on a connected socket.
#[test]
fn app_disconnect() {
    let link = Link::new();
    let mut t = Tracer::start(&link.b, &[]);
    let (mut server, mut client, _) = connected(&link, 9005);
    client.ok(Cmd::unspec("c"));
    assert_eq!(server.ask(Cmd::recv("s")), "err ECONNRESET");
    let ev = t.expect("app_disconnect", |v| is(v, "sent", "app_disconnect"));
    assert_reason(&ev, "TCP_STATE");
    assert_eq!(ev["pid"], pid(&client));
    assert_eq!(ev["app_errno"], "ECONNRESET");
}

/// A listener closed with a connection still in its accept queue.
#[test]
fn listener_closed_with_unaccepted_connection() {
    let link = Link::new();
    let mut t = Tracer::start(&link.a, &[]);
    let (mut server, mut client) = (link.a.peer(), link.b.peer());
    server.ok(Cmd::listen("l", &link.addr_a, 9006));
    client.ok(Cmd::connect("c", &link.addr_a, 9006));
    // The handshake's last ACK has put the child in the accept queue.
    link.a.wait_for_state("established");
    server.ok(Cmd::close("l"));
    assert_eq!(client.ask(Cmd::recv("c")), "err ECONNRESET");
    let ev = t.expect("listener_closed_unaccepted", |v| {
        is(v, "sent", "listener_closed_unaccepted")
    });
    assert_eq!(ev["pid"], pid(&server));
    assert_eq!(ev["owner_source"], "listener");
    assert_eq!(ev["app_errno"], "ECONNRESET");
}

/// The FIN_WAIT2 timer of an orphan: a timer, no process running it.
#[test]
fn fin_wait2_timeout() {
    let link = Link::new();
    // Arm the FIN_WAIT2 keepalive timer (fin timeout > 60 s arms it for
    // timeout - 60 s: here 4 s, time enough for the next step under load),
    // then shorten the timeout so that the timer resets instead of moving
    // to TIME_WAIT.
    link.b.sysctl("net.ipv4.tcp_fin_timeout", "64");
    let mut t = Tracer::start(&link.b, &[]);
    let (mut server, mut client, cport) = connected(&link, 9007);
    client.ok(Cmd::close("c"));
    assert_eq!(server.ask(Cmd::recv("s")), "read 0");
    // The ACK of our FIN may be delayed: shorten the timeout only once the
    // orphan is in FIN_WAIT2 with its timer armed, or the kernel goes
    // straight to TIME_WAIT.
    link.b.wait_for_state("fin-wait-2");
    link.b.sysctl("net.ipv4.tcp_fin_timeout", "1");
    let ev = t.expect("fin_wait2_timeout", |v| is(v, "sent", "fin_wait2_timeout"));
    assert_reason(&ev, "TCP_STATE");
    assert_eq!(ev["state"], "FIN_WAIT2");
    assert_eq!(ev["local_port"], cport);
    assert_eq!(ev["pid"], pid(&client), "the orphan's last owner");
    assert_eq!(ev["app_errno"], "EPIPE");
    assert_ne!(ev["task_pid"], pid(&client));
}

/// Keepalive probes go unanswered (the server's link goes down silently):
/// a timer resets the connection; the owner gets ETIMEDOUT.
#[test]
fn keepalive_timeout() {
    let link = Link::new();
    let mut t = Tracer::start(&link.b, &[]);
    let (_server, mut client, cport) = connected(&link, 9008);
    client.ok(Cmd::keepalive("c", 1, 1, 2));
    link.a.ip(&["link", "set", &link.dev_a, "down"]);
    let ev = t.expect("keepalive_timeout", |v| is(v, "sent", "keepalive_timeout"));
    assert_reason(&ev, "TCP_KEEPALIVE_TIMEOUT");
    assert_eq!(ev["local_port"], cport);
    assert_eq!(ev["pid"], pid(&client));
    assert_eq!(ev["app_errno"], "ECONNRESET");
    assert_delivered(&ev, "ETIMEDOUT");
    if crate::harness::error_reports() {
        assert_eq!(ev["delivered_pid"], pid(&client));
    }
    assert!(ev["idle_ms"].as_u64().unwrap() >= 1000, "{ev}");
    assert_ne!(ev["task_pid"], pid(&client));
    assert_eq!(client.ask(Cmd::recv("c")), "err ETIMEDOUT");
}

/// Abortive close of a connection in LAST_ACK that still has data unsent.
#[test]
fn disconnect_with_unsent_data() {
    if skip_unless_told(
        "causes::disconnect_with_unsent_data",
        "disconnect_unsent_data",
    ) {
        return;
    }
    let link = Link::new();
    let mut t = Tracer::start(&link.b, &[]);
    let (mut server, mut client, _) = connected(&link, 9009);
    server.ok(Cmd::shutdown("s", Shutdown::Write));
    assert_eq!(client.ask(Cmd::recv("c")), "read 0");
    client.ok(Cmd::fill("c"));
    client.ok(Cmd::shutdown("c", Shutdown::Write));
    client.ok(Cmd::linger("c", 0));
    client.ok(Cmd::close("c"));
    let ev = t.expect("disconnect_unsent_data", |v| {
        is(v, "sent", "disconnect_unsent_data")
    });
    assert_reason(&ev, "TCP_DISCONNECT_WITH_DATA");
    assert_eq!(ev["pid"], pid(&client));
    assert_eq!(ev["app_errno"], "ECONNRESET");
    assert!(ev["unacked_bytes"].as_u64().unwrap() > 0, "{ev}");
}

/// A new connection from the same port while the server still holds the
/// old one: the new socket gets an ACK it cannot accept (SYN_SENT).
#[test]
fn stale_peer_reusing_a_port() {
    let link = Link::new();
    let mut tb = Tracer::start(&link.b, &[]);
    let mut ta = Tracer::start(&link.a, &[]);
    let (mut server, mut client) = (link.a.peer(), link.b.peer());
    server.ok(Cmd::listen("l", &link.addr_a, 9010));
    client.ok(Cmd::connect_from("c", &link.addr_a, 9010, 41000));
    server.ok(Cmd::accept("l", "s"));
    client.ok(Cmd::repair("c"));
    client.ok(Cmd::close("c"));
    // A new socket on the same port: its SYN meets the old connection.
    client.ok(Cmd::connect_from("c2", &link.addr_a, 9010, 41000));
    let ev = tb.expect("syn_sent_invalid_ack", |v| {
        is(v, "sent", "syn_sent_invalid_ack")
    });
    assert_reason(&ev, "TCP_INVALID_ACK_SEQUENCE");
    assert_eq!(ev["state"], "SYN_SENT");
    assert_eq!(ev["local_port"], 41000);
    assert_eq!(ev["pid"], pid(&client));
    assert_eq!(ev["app_errno"], "ECONNRESET");
    // The old server connection died of it.
    let old = ta.expect("the old connection reset", |v| {
        is(v, "received", "peer_reset")
    });
    assert_eq!(old["pid"], pid(&server));
    assert_eq!(old["remote_port"], 41000);
    assert_eq!(server.ask(Cmd::recv("s")), "err ECONNRESET");
}

/// A full accept queue with net.ipv4.tcp_abort_on_overflow = 1.
#[test]
fn accept_queue_overflow() {
    let link = Link::new();
    link.a.sysctl("net.ipv4.tcp_abort_on_overflow", "1");
    let mut t = Tracer::start(&link.a, &[]);
    let (mut server, mut c1, mut c2) = (link.a.peer(), link.b.peer(), link.b.peer());
    server.ok(Cmd::listen_backlog("l", &link.addr_a, 9011, 0));
    server.ok(Cmd::tcpopt("l", TcpOpt::DeferAccept, 5));
    // c1's handshake is deferred (no child until data); the SYN queue is
    // then full, so c2 completes with a SYN cookie and takes the one
    // accept queue slot.  c1's data finds the queue full.
    c1.ok(Cmd::connect("c", &link.addr_a, 9011));
    c2.ok(Cmd::connect("c", &link.addr_a, 9011));
    // c2's child (from its cookie) is in the accept queue.
    link.a.wait_for_state("established");
    c1.ok(Cmd::send("c", 10));
    assert_eq!(c1.ask(Cmd::recv("c")), "err ECONNRESET");
    let ev = t.expect("accept_queue_overflow", |v| {
        is(v, "sent", "accept_queue_overflow")
    });
    assert_reason(&ev, "INVALID_SYN");
    assert_eq!(ev["state"], "LISTEN");
    assert_eq!(ev["pid"], pid(&server), "the listener's owner");
    assert_eq!(ev["app_errno"], "ECONNRESET");
}

/// Too many orphans: net.ipv4.tcp_max_orphans is global, so this test
/// holds the host alone and restores the setting.
#[test]
fn memory_pressure_abort() {
    let host = exclusive();
    let link = Link::new();
    let mut t = Tracer::start(&link.b, &[]);
    // An orphan that cannot finish: the server never reads, the client's
    // data and FIN stay queued (FIN_WAIT1).
    let (_server, mut client, _) = connected(&link, 9012);
    client.ok(Cmd::fill("c"));
    client.ok(Cmd::close("c"));
    let (_server2, mut client2, cport2) = connected(&link, 9022);
    // The orphan exists (sockstat counts it exactly) ...
    wait_for(
        "the orphan in /proc/net/sockstat",
        Duration::from_secs(30),
        || {
            let stat = std::fs::read_to_string("/proc/net/sockstat").map_err(|e| e.to_string())?;
            let orphans = stat
                .split_whitespace()
                .skip_while(|w| *w != "orphan")
                .nth(1)
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| stat.clone())?;
            if orphans > 0 {
                Ok(())
            } else {
                Err(stat)
            }
        },
    );
    // ... and the count the limit is checked against, which the kernel
    // caches and refreshes on a 100 ms timer (tcp_orphan_update), has
    // taken it in: no state shows that cache, so this is the one wait
    // for a period, the kernel's, three times over.
    thread::sleep(Duration::from_millis(300));
    let _orphans = GlobalSysctl::set(&host, "net.ipv4.tcp_max_orphans", "0");
    client2.ok(Cmd::close("c"));
    let ev = t.expect("memory_pressure_abort", |v| {
        is(v, "sent", "memory_pressure_abort") && v["local_port"] == cport2
    });
    assert_reason(&ev, "TCP_ABORT_ON_MEMORY");
    assert_eq!(ev["pid"], pid(&client2));
    assert_eq!(ev["app_errno"], "EPIPE");
}

/// The context of a connection that sat idle before its reset.
#[test]
fn idle_time_and_age() {
    let link = Link::new();
    let mut tb = Tracer::start(&link.b, &[]);
    let mut ta = Tracer::start(&link.a, &[]);
    let (mut server, mut client, _) = connected(&link, 9014);
    client.ok(Cmd::send("c", 100));
    assert_eq!(server.ask(Cmd::recv("s")), "read 100");
    thread::sleep(Duration::from_millis(1500));
    server.ok(Cmd::linger("s", 0));
    server.ok(Cmd::close("s"));
    assert_eq!(client.ask(Cmd::recv("c")), "err ECONNRESET");
    let sent = ta.expect("abort_linger", |v| is(v, "sent", "abort_linger"));
    assert!(sent["conn_age_ms"].as_u64().unwrap() >= 1500, "{sent}");
    assert_eq!(sent["bytes_received"], 100);
    let recv = tb.expect("peer_reset", |v| is(v, "received", "peer_reset"));
    assert!(recv["idle_ms"].as_u64().unwrap() >= 1400, "{recv}");
    assert_eq!(recv["bytes_sent"], 100);
    // As tcp_info counts it: the SYN too.
    assert_eq!(recv["bytes_acked"], 101);
    assert_eq!(recv["unacked_bytes"], 0);
}

/// A second SYN inside the window of a half-open connection (raw client).
#[test]
fn syn_in_window_of_a_half_open_connection() {
    let link = Link::new();
    link.b.drop_outgoing_resets();
    let mut t = Tracer::start(&link.a, &[]);
    let (mut server, mut raw) = (link.a.peer(), link.b.peer());
    server.ok(Cmd::listen("l", &link.addr_a, 9600));
    let (a, b) = (&link.addr_a, &link.addr_b);
    raw.ok(Cmd::RawSend(Segment::new(b, 45000, a, 9600, SYN, 1000, 0)));
    raw.ok(Cmd::raw_wait(Some(9600), 45000, SYN | ACK));
    raw.ok(Cmd::RawSend(Segment::new(b, 45000, a, 9600, SYN, 1100, 0)));
    let ev = t.expect("syn_in_window", |v| is(v, "sent", "syn_in_window"));
    assert_reason(&ev, "INVALID_SYN");
    assert_eq!(ev["state"], "LISTEN");
    assert_eq!(ev["tcp_flags"], "SYN");
    assert_eq!(ev["remote_port"], 45000);
    assert_eq!(ev["pid"], pid(&server), "the listener's owner");
    assert_eq!(ev["app_errno"], "ECONNREFUSED");
}

/// A SYN-ACK echoing a timestamp the connecting socket never sent.
#[test]
fn syn_ack_with_a_timestamp_never_sent() {
    let link = Link::new();
    link.a.drop_outgoing_resets();
    let mut t = Tracer::start(&link.b, &[]);
    let (mut responder, mut client) = (link.a.peer(), link.b.peer());
    responder.ok(Cmd::Raw);
    client.ok(Cmd::SynCnt(1));
    client.start(&Cmd::connect("c", &link.addr_a, 9601));
    let syn: Seen = responder
        .ok(Cmd::raw_wait(None, 9601, SYN))
        .parse()
        .unwrap();
    let (sport, seq) = (syn.sport, syn.seq);
    let tsval = syn.tsval.expect("the SYN's timestamp");
    let (a, b) = (&link.addr_a, &link.addr_b);
    let bogus_ecr = tsval.wrapping_add(1_000_000_000);
    let synack = Segment::new(a, 9601, b, sport, SYN | ACK, 7777, seq.wrapping_add(1));
    responder.ok(Cmd::RawSend(Segment {
        timestamps: Some((12345, bogus_ecr)),
        ..synack
    }));
    let ev = t.expect("syn_sent_paws", |v| is(v, "sent", "syn_sent_paws"));
    assert_reason(&ev, "TCP_RFC7323_PAWS");
    assert_eq!(ev["state"], "SYN_SENT");
    assert_eq!(ev["local_port"], sport);
    assert_eq!(ev["pid"], pid(&client));
    // The client's connect() gives up on its own.
    let _ = client.recv();
}

/// ACKs that a TCP Fast Open child (a full socket in SYN_RECV) cannot
/// accept: for data never sent, and for data older than anything sent.
/// (TCP_OLD_ACK, an old ACK still inside the window, cannot come from
/// SYN_RECV on this kernel: tcp_ack() bounds the window by bytes_acked,
/// which is 0 before the handshake completes, so every old ACK there is
/// TCP_TOO_OLD_ACK.)
#[test]
fn bad_acks_to_a_fast_open_child() {
    let link = Link::new();
    // Fast Open for listeners that ask, without cookies.
    link.a.sysctl("net.ipv4.tcp_fastopen", "0x202");
    link.b.drop_outgoing_resets();
    let mut t = Tracer::start(&link.a, &[]);
    let (mut server, mut raw) = (link.a.peer(), link.b.peer());
    server.ok(Cmd::listen("l", &link.addr_a, 9602));
    server.ok(Cmd::tcpopt("l", TcpOpt::FastOpen, 5));
    let (a, b) = (&link.addr_a, &link.addr_b);
    for (sport, cause, kernel_reason) in [
        (46001u16, "syn_recv_ack_unsent_data", "TCP_ACK_UNSENT_DATA"),
        (46002, "syn_recv_too_old_ack", "TCP_TOO_OLD_ACK"),
    ] {
        // SYN with 10 bytes of data: the listener creates the child now.
        raw.ok(Cmd::RawSend(Segment {
            payload: 10,
            fastopen: true,
            ..Segment::new(b, sport, a, 9602, SYN, 5000, 0)
        }));
        let synack: Seen = raw
            .ok(Cmd::raw_wait(Some(9602), sport, SYN | ACK))
            .parse()
            .unwrap();
        let isn = synack.seq;
        let ack = match cause {
            "syn_recv_ack_unsent_data" => isn.wrapping_add(1000),
            _ => isn.wrapping_sub(10),
        };
        raw.ok(Cmd::RawSend(Segment::new(
            b, sport, a, 9602, ACK, 5011, ack,
        )));
        let ev = t.expect(cause, |v| is(v, "sent", cause) && v["remote_port"] == sport);
        assert_reason(&ev, kernel_reason);
        assert_eq!(ev["state"], "SYN_RECV");
        assert_eq!(ev["pid"], pid(&server), "the listener's owner");
        assert_eq!(ev["owner_source"], "listener");
    }
}

/// MPTCP resets carry their own reasons (RFC 8684 MP_TCPRST codes): here
/// a join the server's path manager does not allow.
#[test]
fn mptcp_join_refused() {
    if !std::path::Path::new("/proc/sys/net/mptcp").exists() {
        skip(
            "causes::mptcp_join_refused",
            "this kernel has no MPTCP (CONFIG_MPTCP is off)",
        );
        return;
    }
    if skip_unless_told("causes::mptcp_join_refused", "mptcp_prohibited") {
        return;
    }
    let link = Link::new();
    let extra = link.addr_b.replace(".0.2", ".0.3");
    link.b
        .ip(&["addr", "add", &format!("{extra}/24"), "dev", &link.dev_b]);
    link.a.ip(&[
        "mptcp",
        "limits",
        "set",
        "subflows",
        "0",
        "add_addr_accepted",
        "0",
    ]);
    link.b.ip(&[
        "mptcp",
        "limits",
        "set",
        "subflows",
        "2",
        "add_addr_accepted",
        "2",
    ]);
    link.b.ip(&[
        "mptcp",
        "endpoint",
        "add",
        &extra,
        "dev",
        &link.dev_b,
        "subflow",
    ]);
    let mut t = Tracer::start(&link.a, &[]);
    let (mut server, mut client) = (link.a.peer(), link.b.peer());
    server.ok(Cmd::Mptcp);
    client.ok(Cmd::Mptcp);
    server.ok(Cmd::listen("l", &link.addr_a, 9700));
    client.ok(Cmd::connect("c", &link.addr_a, 9700));
    server.ok(Cmd::accept("l", "s"));
    // Extra subflows open once the connection is fully established, which
    // takes data.
    client.ok(Cmd::send("c", 10));
    let ev = t.expect("mptcp_prohibited", |v| is(v, "sent", "mptcp_prohibited"));
    assert_reason(&ev, "MPTCP_RST_EPROHIBIT");
    assert_eq!(ev["remote_addr"], extra.as_str(), "the refused subflow");
    assert_eq!(ev["local_port"], 9700);
    assert_eq!(ev["pid"], pid(&server));
    assert_eq!(ev["app_errno"], "ECONNRESET");
}
