//! The classic resets, end to end.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    time::Duration,
};

use serde_json::Value;

use crate::{
    harness::{assert_delivered, assert_reason, pid, port, Link, Netns, Tracer},
    peer::Cmd,
    sockets::{errno_name, set_linger, set_repair, wait_unread},
};

/// A listener, a connected client and the accepted server socket, all in
/// `ns` and owned by this process.
pub(crate) fn connection(
    ns: &Netns,
    addr: &'static str,
    port: u16,
) -> (TcpListener, TcpStream, TcpStream) {
    ns.run(move || {
        let l = TcpListener::bind((addr, port)).expect("bind");
        let c = TcpStream::connect((addr, port)).expect("connect");
        let (s, _) = l.accept().expect("accept");
        (l, c, s)
    })
}

fn is(v: &Value, direction: &str, cause: &str) -> bool {
    v["direction"] == direction && v["cause"] == cause
}

fn read_err(c: &mut TcpStream) -> String {
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    match c.read(&mut buf) {
        Ok(n) => format!("read {n}"),
        Err(e) => errno_name(&e),
    }
}

fn closed_port(addr: &'static str, family: &str) {
    closed_port_with(addr, family, &[]);
}

fn closed_port_with(addr: &'static str, family: &str, extra: &[&str]) {
    let ns = Netns::new();
    let mut t = Tracer::start(&ns, extra);
    let p = port(1);
    let err = ns.run(move || TcpStream::connect((addr, p)).unwrap_err());
    assert_eq!(errno_name(&err), "ECONNREFUSED");

    let sent = t.expect("sent no_listener", |v| is(v, "sent", "no_listener"));
    assert_reason(&sent, "NO_SOCKET");
    assert_eq!(sent["family"], family);
    assert_eq!(sent["local_addr"], addr);
    assert_eq!(sent["local_port"], p);
    assert_eq!(sent["remote_addr"], addr);
    assert_eq!(sent["tcp_flags"], "SYN");
    assert_eq!(sent["state"], Value::Null);
    // No local socket: no owner, and never the task that happened to run.
    assert_eq!(sent["pid"], Value::Null);
    assert_eq!(sent["comm"], Value::Null);
    assert_eq!(sent["app_errno"], "ECONNREFUSED");
    assert_eq!(sent["app_errno_for"], "peer");
    assert_eq!(sent["listener"], false);
    assert_eq!(sent["netns"], ns.inode());

    let recv = t.expect("received connection_refused", |v| {
        is(v, "received", "connection_refused")
    });
    assert_eq!(recv["state"], "SYN_SENT");
    assert_eq!(recv["pid"], pid());
    assert_eq!(recv["owner_source"], "socket");
    assert_eq!(recv["app_errno"], "ECONNREFUSED");
    assert_delivered(&recv, "ECONNREFUSED");
    assert_eq!(recv["remote_port"], p);
    assert_eq!(recv["local_port"], sent["remote_port"]);
    assert_eq!(recv["kernel_reason"], Value::Null);

    let (status, stderr) = t.stop();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("2 resets reported (1 sent, 1 received), 0 lost"),
        "{stderr}"
    );
}

#[test]
fn closed_port_ipv4() {
    closed_port("127.0.0.1", "inet");
}

#[test]
fn closed_port_ipv6() {
    closed_port("::1", "inet6");
}

/// The transport for kernels without BPF ring buffers, exercised here.
#[test]
fn closed_port_over_perf_buffers() {
    closed_port_with("127.0.0.1", "inet", &["--transport", "perf"]);
}

#[test]
fn so_linger_zero_abort_and_the_received_reset() {
    let ns = Netns::new();
    let mut t = Tracer::start(&ns, &[]);
    let p = port(2);
    let (_l, mut c, s) = connection(&ns, "127.0.0.1", p);
    let client_port = c.local_addr().unwrap().port();
    set_linger(&s, true, 0);
    drop(s);
    assert_eq!(read_err(&mut c), "ECONNRESET");

    let sent = t.expect("sent abort_linger", |v| is(v, "sent", "abort_linger"));
    // The kernel calls this TCP_STATE; rsttrace tells it apart.
    assert_reason(&sent, "TCP_STATE");
    assert_eq!(sent["state"], "CLOSE");
    assert_eq!(sent["local_port"], p);
    assert_eq!(sent["remote_port"], client_port);
    assert_eq!(sent["pid"], pid());
    assert_eq!(sent["app_errno"], "ECONNRESET");
    assert!(
        sent["tcp_flags"].is_null(),
        "an abortive close answers no segment"
    );

    let recv = t.expect("received peer_reset", |v| is(v, "received", "peer_reset"));
    assert_eq!(recv["state"], "ESTABLISHED");
    assert_eq!(recv["local_port"], client_port);
    assert_eq!(recv["remote_port"], p);
    assert_eq!(recv["pid"], pid());
    assert_eq!(recv["app_errno"], "ECONNRESET");
    assert_eq!(recv["app_errno_for"], "local");
    // The client sent no data (its SYN was acked, which is no byte sent).
    assert_eq!(recv["bytes_sent"], 0, "{recv}");
    assert_eq!(recv["bytes_acked"], 1, "{recv}");
    assert_delivered(&recv, "ECONNRESET");
    if crate::harness::error_reports() {
        assert_eq!(recv["delivered_pid"], pid());
    }
}

#[test]
fn close_with_unread_data() {
    let ns = Netns::new();
    let mut t = Tracer::start(&ns, &[]);
    let p = port(3);
    let (_l, mut c, s) = connection(&ns, "127.0.0.1", p);
    c.write_all(b"unread!").unwrap();
    wait_unread(&s, 7);
    drop(s);
    assert_eq!(read_err(&mut c), "ECONNRESET");

    let sent = t.expect("sent abort_unread_data", |v| {
        is(v, "sent", "abort_unread_data")
    });
    assert_reason(&sent, "TCP_ABORT_ON_CLOSE");
    assert_eq!(sent["unread_bytes"], 7);
    assert_eq!(sent["bytes_received"], 7);
    assert_eq!(sent["local_port"], p);
    assert_eq!(sent["pid"], pid());
    assert_eq!(sent["app_errno"], "ECONNRESET");
    assert!(sent["conn_age_ms"].is_u64());
}

/// The peer's FIN takes a sequence number but is no byte: 7 bytes and a
/// FIN unread are 7 bytes.  The closing side sent nothing: bytes_sent 0.
#[test]
fn close_with_unread_data_and_fin() {
    let ns = Netns::new();
    let mut t = Tracer::start(&ns, &[]);
    let p = port(7);
    let (_l, c, mut s) = connection(&ns, "127.0.0.1", p);
    let client_port = c.local_addr().unwrap().port();
    s.write_all(b"unread!").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    wait_unread(&c, 7);
    drop(c);

    let sent = t.expect("sent abort_unread_data", |v| {
        is(v, "sent", "abort_unread_data") && v["local_port"] == client_port
    });
    assert_eq!(sent["unread_bytes"], 7, "{sent}");
    // tcp_info's count, which takes the FIN as one.
    assert_eq!(sent["bytes_received"], 8, "{sent}");
    assert_eq!(sent["bytes_sent"], 0, "{sent}");
}

/// An orphan (closed by its application, still finishing) that receives
/// a reset: no application gets an error.  The server reads nothing, so
/// the client's last data and its FIN wait behind a zero window: the
/// orphan stays a full socket in FIN_WAIT1 (not a time-wait one, which a
/// reset only removes) until the server's abortive close resets it.
#[test]
fn an_orphan_receiving_a_reset_gives_no_errno() {
    let ns = Netns::new();
    let mut t = Tracer::start(&ns, &[]);
    let p = port(8);
    let (_l, mut c, s) = connection(&ns, "127.0.0.1", p);
    let client_port = c.local_addr().unwrap().port();
    fill(&mut c);
    drop(c);
    set_linger(&s, true, 0);
    drop(s);

    let recv = t.expect("received peer_reset", |v| {
        is(v, "received", "peer_reset") && v["local_port"] == client_port
    });
    assert_eq!(recv["state"], "FIN_WAIT1", "{recv}");
    assert!(recv["owner_closed_ms"].is_u64(), "{recv}");
    assert_eq!(recv["app_errno"], Value::Null, "{recv}");
    assert_eq!(recv["delivered_errno"], Value::Null, "{recv}");
}

/// Writes to `c` until the peer, reading nothing, takes no more.
fn fill(c: &mut TcpStream) {
    c.set_nonblocking(true).unwrap();
    let chunk = [b'x'; 65536];
    loop {
        match c.write(&chunk) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("write: {e}"),
        }
    }
    c.set_nonblocking(false).unwrap();
}

#[test]
fn server_socket_vanished_then_receives_data() {
    let ns = Netns::new();
    let mut t = Tracer::start(&ns, &[]);
    let p = port(4);

    // The listener is still there: the kernel answers from it (TCP_FLAGS).
    let (l, mut c, s) = connection(&ns, "127.0.0.1", p);
    set_repair(&s);
    drop(s);
    c.write_all(b"x").unwrap();
    assert_eq!(read_err(&mut c), "ECONNRESET");
    let sent = t.expect("stale_connection with a listener", |v| {
        is(v, "sent", "stale_connection") && v["remote_port"] == c.local_addr().unwrap().port()
    });
    assert_reason(&sent, "TCP_FLAGS");
    assert_eq!(sent["listener"], true);
    assert_eq!(sent["state"], "LISTEN");
    assert_eq!(sent["pid"], pid(), "the listener's owner");
    assert_eq!(sent["app_errno"], "ECONNRESET");
    assert_eq!(sent["tcp_flags"], "ACK|PSH");
    assert_eq!(sent["payload_len"], 1);
    assert_eq!(sent["listener_now"], true);

    // Same story with the server gone entirely (NO_SOCKET, no owner).
    let (_l2, mut c2, s2) = connection(&ns, "127.0.0.1", p + 100);
    set_repair(&s2);
    drop(s2);
    drop(_l2);
    c2.write_all(b"y").unwrap();
    assert_eq!(read_err(&mut c2), "ECONNRESET");
    let sent = t.expect("stale_connection without a listener", |v| {
        is(v, "sent", "stale_connection") && v["local_port"] == p + 100
    });
    assert_reason(&sent, "NO_SOCKET");
    assert_eq!(sent["listener"], false);
    assert_eq!(sent["pid"], Value::Null);
    assert_eq!(sent["listener_now"], false);
    assert_eq!(sent["last_listener_pid"], pid(), "restart diagnosis");
    assert!(sent["listener_stopped_ms"].is_u64());
    drop(l);
}

/// Client and server are different processes in two namespaces joined by
/// veth.  The server host's reset is built in softirq while the *client*
/// process runs; rsttrace must name the server, which owns the socket.
#[test]
fn owner_is_the_socket_owner_not_the_running_task() {
    let link = Link::new();
    let mut t = Tracer::start(&link.a, &[]);
    let (mut server, mut client) = (link.a.peer(), link.b.peer());
    server.ok(Cmd::listen("l", &link.addr_a, 8080));
    let client_port: u16 = client
        .ok(Cmd::connect("c", &link.addr_a, 8080))
        .parse()
        .unwrap();
    server.ok(Cmd::accept("l", "s"));
    server.ok(Cmd::repair("s"));
    server.ok(Cmd::close("s"));
    client.ok(Cmd::send("c", 1));
    assert_eq!(client.ask(Cmd::recv("c")), "err ECONNRESET");

    let sent = t.expect("the server host's reset", |v| {
        is(v, "sent", "stale_connection") && v["remote_port"] == client_port
    });
    assert_eq!(sent["local_addr"], link.addr_a.as_str());
    assert_eq!(sent["remote_addr"], link.addr_b.as_str());
    assert_eq!(
        sent["pid"],
        u64::from(server.pid()),
        "owner: the server process"
    );
    assert_ne!(sent["pid"], u64::from(client.pid()));
    assert_eq!(
        sent["task_pid"],
        u64::from(client.pid()),
        "the reset was built while the client ran (softirq on veth): the trap rsttrace avoids"
    );
    assert_ne!(sent["pid"], pid());
}

/// The same attribution for a reset the server process causes itself, and
/// the received side in the other namespace.
#[test]
fn cross_namespace_abort_and_received_reset() {
    let link = Link::new();
    let mut ta = Tracer::start(&link.a, &[]);
    let mut tb = Tracer::start(&link.b, &[]);
    let (mut server, mut client) = (link.a.peer(), link.b.peer());
    server.ok(Cmd::listen("l", &link.addr_a, 8081));
    client.ok(Cmd::connect("c", &link.addr_a, 8081));
    server.ok(Cmd::accept("l", "s"));
    server.ok(Cmd::linger("s", 0));
    server.ok(Cmd::close("s"));
    assert_eq!(client.ask(Cmd::recv("c")), "err ECONNRESET");

    let sent = ta.expect("abort_linger in namespace a", |v| {
        is(v, "sent", "abort_linger")
    });
    assert_eq!(sent["pid"], u64::from(server.pid()));
    assert_eq!(sent["netns"], link.a.inode());
    let recv = tb.expect("peer_reset in namespace b", |v| {
        is(v, "received", "peer_reset")
    });
    assert_eq!(recv["pid"], u64::from(client.pid()));
    assert_eq!(recv["netns"], link.b.inode());
    assert_eq!(recv["remote_addr"], link.addr_a.as_str());
    // Each tracer saw only its own namespace.
    ta.settle(Duration::from_millis(200));
    assert!(ta.seen.iter().all(|v| v["netns"] == link.a.inode()));
}

/// Sockets opened before rsttrace started have no entry in its in-kernel
/// table: their owner comes from /proc.
#[test]
fn owner_of_a_socket_older_than_the_tracer() {
    let ns = Netns::new();
    let p = port(5);
    let (_l, mut c, s) = connection(&ns, "127.0.0.1", p);
    let mut t = Tracer::start(&ns, &[]);
    set_linger(&s, true, 0);
    drop(s);
    assert_eq!(read_err(&mut c), "ECONNRESET");
    let sent = t.expect("abort_linger", |v| is(v, "sent", "abort_linger"));
    assert_eq!(sent["pid"], pid());
    assert_eq!(sent["owner_source"], "procfs");
    let recv = t.expect("peer_reset", |v| is(v, "received", "peer_reset"));
    assert_eq!(recv["pid"], pid());
    assert_eq!(recv["owner_source"], "procfs");
}
