//! Every output and filter option end to end, IPv6 between namespaces,
//! and iptables-legacy's REJECT.  Each filter test first sees the record
//! it lets through, then checks what it kept out.

use std::{
    io::{BufRead, BufReader},
    net::TcpStream,
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use crate::harness::{port, wait_timeout, Link, Netns, Tracer};
use crate::peer::Cmd;

const TRACER: &str = env!("CARGO_BIN_EXE_rsttrace");

fn refuse(ns: &Netns, p: u16) {
    ns.run(move || TcpStream::connect(("127.0.0.1", p)).unwrap_err());
}

fn sent_to(p: u16) -> impl Fn(&Value) -> bool {
    move |v| v["direction"] == "sent" && v["local_port"] == p
}

#[test]
fn text_format() {
    let ns = Netns::new();
    let mut child = Command::new(TRACER)
        .args([
            "--format",
            "text",
            "--netns",
            &ns.inode().to_string(),
            "--count",
            "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("tracing TCP resets") {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "rsttrace did not start"
        );
    }
    let p = port(90);
    refuse(&ns, p);
    let status = wait_timeout(&mut child, Duration::from_secs(10));
    assert!(status.success());
    let out: Vec<String> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(Result::unwrap)
        .collect();
    assert_eq!(out.len(), 2, "{out:#?}");
    let sent = out
        .iter()
        .find(|l| l.contains(" sent "))
        .expect("the sent reset");
    // 2026-11-29T03:00:00.123456Z sent     no_listener   127.0.0.1:P -> 127.0.0.1:EPHEMERAL ... | explanation
    let (time, rest) = sent.split_once(' ').unwrap();
    assert!(
        time.len() == 27 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "{sent}"
    );
    assert!(rest.starts_with("sent     no_listener "), "{sent}");
    assert!(
        sent.contains(&format!(" 127.0.0.1:{p} -> 127.0.0.1:")),
        "{sent}"
    );
    assert!(
        sent.ends_with(
            "| A SYN arrived for a port nobody listens on, so the connection was refused."
        ),
        "{sent}"
    );
    let received = out
        .iter()
        .find(|l| l.contains(" received "))
        .expect("the received reset");
    assert!(
        received.contains(&format!(" <- 127.0.0.1:{p} ")),
        "{received}"
    );
    assert!(
        received.contains(&format!(" owner={}/", std::process::id())),
        "{received}"
    );
}

#[test]
fn ipv6_between_two_namespaces() {
    let link = Link::new();
    let n = link.addr_a.split('.').nth(1).unwrap().to_string();
    let (a6, b6) = (format!("fd00:{n}::1"), format!("fd00:{n}::2"));
    link.a.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{a6}/64"),
        "dev",
        &link.dev_a,
        "nodad",
    ]);
    link.b.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{b6}/64"),
        "dev",
        &link.dev_b,
        "nodad",
    ]);
    let both = format!("{},{}", link.a.inode(), link.b.inode());
    let mut t = Tracer::start_args(&["--format", "json", "--netns", &both]);
    let mut client = link.b.peer();
    assert_eq!(client.ask(Cmd::connect("c", &a6, 9601)), "err ECONNREFUSED");
    let sent = t.expect("the closed port's reset", |v| v["cause"] == "no_listener");
    assert_eq!(
        (sent["family"].as_str(), sent["local_addr"].as_str()),
        (Some("inet6"), Some(a6.as_str()))
    );
    assert_eq!(sent["remote_addr"], b6.as_str());
    assert_eq!(sent["netns"], link.a.inode());
    let got = t.expect("the client's", |v| v["cause"] == "connection_refused");
    assert_eq!(got["pid"], u64::from(client.pid()));
    assert_eq!(got["local_addr"], b6.as_str());
    assert_eq!(got["netns"], link.b.inode());
    assert_eq!(got["sender_netns"], link.a.inode());
}

#[test]
fn cause_and_direction_filters() {
    let ns = Netns::new();
    let (p1, p2) = (port(91), port(92));
    let mut by_cause = Tracer::start(&ns, &["--cause", "connection_refused"]);
    let mut by_direction = Tracer::start(&ns, &["--direction", "sent"]);
    refuse(&ns, p1);
    refuse(&ns, p2);
    by_cause.expect("the refused client", |v| {
        v["cause"] == "connection_refused" && v["remote_port"] == p2
    });
    by_direction.expect("the sent reset", sent_to(p2));
    by_cause.settle(Duration::from_millis(300));
    by_direction.settle(Duration::from_millis(300));
    assert!(
        by_cause
            .seen
            .iter()
            .all(|v| v["cause"] == "connection_refused"),
        "{:#?}",
        by_cause.seen
    );
    assert!(
        by_direction.seen.iter().all(|v| v["direction"] == "sent"),
        "{:#?}",
        by_direction.seen
    );
    for t in [by_cause, by_direction] {
        assert_eq!(t.seen.len(), 2);
        let (_, stderr) = t.stop();
        assert!(stderr.contains("2 filtered out"), "{stderr}");
    }
}

#[test]
fn port_and_pid_filters() {
    let ns = Netns::new();
    let (p1, p2) = (port(93), port(94));
    let mut by_port = Tracer::start(&ns, &["--port", &p2.to_string()]);
    let client = ns.peer();
    let pid = client.pid().to_string();
    let mut by_pid = Tracer::start(&ns, &["--pid", &pid]);
    let mut client = client;
    for p in [p1, p2] {
        assert_eq!(
            client.ask(Cmd::connect(&format!("c{p}"), "127.0.0.1", p)),
            "err ECONNREFUSED"
        );
    }
    by_port.expect("the second port's reset", sent_to(p2));
    by_pid.expect("the client's second reset", |v| {
        v["pid"] == client.pid() && v["remote_port"] == p2
    });
    by_port.settle(Duration::from_millis(300));
    by_pid.settle(Duration::from_millis(300));
    assert!(
        by_port
            .seen
            .iter()
            .all(|v| v["local_port"] == p2 || v["remote_port"] == p2),
        "{:#?}",
        by_port.seen
    );
    assert_eq!(by_port.seen.len(), 2);
    // The sent resets have no owner (no socket): only the client's count.
    assert!(
        by_pid.seen.iter().all(|v| v["pid"] == client.pid()),
        "{:#?}",
        by_pid.seen
    );
    assert_eq!(by_pid.seen.len(), 2);
}

#[test]
fn count_buffer_size_wakeup_and_netns_path() {
    let ns = Netns::new();
    let path = ns.path();
    let mut t = Tracer::start_args(&[
        "--format",
        "json",
        "--netns",
        &path,
        "--count",
        "3",
        "--buffer-size",
        "1",
        "--wakeup-ms",
        "50",
    ]);
    for i in 0..3 {
        refuse(&ns, port(95 + i));
    }
    // --count 3: it exits by itself after the third reset.
    let (status, stderr) = t.stop_collecting_exited(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");
    assert_eq!(t.seen.len(), 3, "{:#?}", t.seen);
    assert!(stderr.contains("3 resets reported"), "{stderr}");
}

#[test]
fn iptables_legacy_reject_with_tcp_reset() {
    let link = Link::new();
    let rule = [
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        "9611",
        "-j",
        "REJECT",
        "--reject-with",
        "tcp-reset",
    ];
    let out = Command::new("ip")
        .args(["netns", "exec", &link.a.name, "iptables-legacy"])
        .args(rule)
        .output()
        .expect("iptables-legacy (installed by `cargo xtask bootstrap --with-tests`)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut t = Tracer::start(&link.a, &[]);
    let mut client = link.b.peer();
    assert_eq!(
        client.ask(Cmd::connect("c", &link.addr_a, 9611)),
        "err ECONNREFUSED"
    );
    let rst = t.expect("the firewall's reset", |v| v["cause"] == "firewall_reject");
    assert_eq!(rst["local_port"], 9611);
    assert_eq!(rst["remote_addr"], link.addr_b.as_str());
}
