//! Keys no other test looks at, each checked against what the test knows
//! from the kernel or from its own sockets: the segment a reset answered
//! (`seq`, `ack_seq`), where it was built (`cpu`, `task_pid`,
//! `task_comm`), the socket (`sock_cookie`, `sock_inode`), who got the
//! error (`delivered_comm`), the last send (`last_send_ms`), the last
//! listener's name, and a storm summary's example end.

use std::{
    io::Write,
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    os::unix::fs::MetadataExt,
};

use serde_json::Value;
use socket2::{Domain, Socket, Type};

use crate::{
    harness::{pid, port, Link, Netns, Tracer},
    raw::{flags, Raw, Segment},
    sockets::{set_linger, wait_unread},
};

/// The calling thread's name, as the kernel has it.
fn thread_comm() -> String {
    std::fs::read_to_string("/proc/thread-self/comm")
        .unwrap()
        .trim_end()
        .to_string()
}

/// This process's name (its main thread's), which owners carry.
fn process_comm() -> String {
    std::fs::read_to_string(format!("/proc/{}/comm", std::process::id()))
        .unwrap()
        .trim_end()
        .to_string()
}

/// SO_COOKIE: the kernel's id of the socket.
fn cookie(s: &impl AsRawFd) -> u64 {
    let mut v = 0u64;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: a u64 buffer and its length for SO_COOKIE.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            (&mut v as *mut u64).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "SO_COOKIE: {}", std::io::Error::last_os_error());
    v
}

/// The inode of the socket's file (what `ss -e` shows as ino:).
fn inode(s: &impl AsRawFd) -> u64 {
    std::fs::metadata(format!("/proc/self/fd/{}", s.as_raw_fd()))
        .unwrap()
        .ino()
}

/// Runs the calling thread on `cpu` only.
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET and
    // sched_setaffinity(0) act on it and the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let rc = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(
            rc,
            0,
            "sched_setaffinity: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// A hand-made ACK to a closed port, sent from a thread pinned to the
/// last CPU: loopback hands the segment to the receive path on that CPU,
/// in that thread, which builds the reset there.
#[test]
fn the_segment_answered_and_where_the_reset_was_built() {
    let ns = Netns::new();
    let mut t = Tracer::start(&ns, &[]);
    let cpu = std::thread::available_parallelism().unwrap().get() - 1;
    let (p, sport, seq, ack) = (port(80), 41000u16, 0x1234_5678u32, 0x9abc_def0u32);
    let comm = ns.run(move || {
        pin_to(cpu);
        Raw::new().send(&Segment {
            src: Ipv4Addr::LOCALHOST,
            sport,
            dst: Ipv4Addr::LOCALHOST,
            dport: p,
            flags: flags("A"),
            seq,
            ack,
            payload: 0,
            fastopen: false,
            timestamps: None,
        });
        thread_comm()
    });
    let sent = t.expect("the reset to the ACK", |v| {
        v["event"] == "reset" && v["direction"] == "sent" && v["local_port"] == p
    });
    assert_eq!(sent["remote_port"], sport, "{sent}");
    assert_eq!(sent["tcp_flags"], "ACK", "{sent}");
    assert_eq!(sent["seq"], seq, "{sent}");
    assert_eq!(sent["ack_seq"], ack, "{sent}");
    assert_eq!(sent["cpu"], cpu, "{sent}");
    assert_eq!(sent["task_pid"], pid(), "{sent}");
    assert_eq!(sent["task_comm"], comm.as_str(), "{sent}");
}

/// Connected sockets this test holds: the reset's records name them by
/// cookie and inode, the error's receiver by name, and the last send.
#[test]
fn the_socket_its_receiver_and_its_last_send() {
    let ns = Netns::new();
    let p = port(81);
    let mut t = Tracer::start(&ns, &[]);
    let (l, mut c, s) = ns.run(move || {
        let l = TcpListener::bind(("127.0.0.1", p)).unwrap();
        let c = TcpStream::connect(("127.0.0.1", p)).unwrap();
        let (s, _) = l.accept().unwrap();
        (l, c, s)
    });
    // Owners are processes: named as the process is, not the thread.
    let comm = process_comm();
    c.write_all(b"0123456789").unwrap();
    let (server_cookie, client_cookie, client_inode) = (cookie(&s), cookie(&c), inode(&c));
    // The server closes with the data unread: it resets the client.  The
    // data must have reached the server first: a segment still queued
    // for softirq when the server closes meets only the listener, which
    // resets it as stale instead (seen on 6.1 under emulation).
    wait_unread(&s, 10);
    set_linger(&s, true, 0);
    drop(s);
    let sent = t.expect("the server's reset", |v| {
        v["direction"] == "sent" && v["local_port"] == p
    });
    assert_eq!(sent["sock_cookie"], server_cookie, "{sent}");
    let received = t.expect("the client's reset", |v| {
        v["direction"] == "received" && v["remote_port"] == p
    });
    assert_eq!(received["sock_cookie"], client_cookie, "{received}");
    assert_eq!(received["sock_inode"], client_inode, "{received}");
    assert_eq!(received["pid"], pid(), "{received}");
    assert_eq!(received["comm"], comm.as_str(), "{received}");
    if received["delivered_errno"].is_string() {
        assert_eq!(received["delivered_pid"], pid(), "{received}");
        assert_eq!(received["delivered_comm"], comm.as_str(), "{received}");
    }
    // The client sent its ten bytes after it connected: its last send is
    // no older than the connection.
    let last = received["last_send_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("no last_send_ms: {received}"));
    assert!(
        last <= received["conn_age_ms"].as_u64().unwrap(),
        "{received}"
    );
    let _ = c.flush();

    // A listener that went away: the next SYN to its port names it.
    drop(l);
    ns.run(move || TcpStream::connect(("127.0.0.1", p)).unwrap_err());
    let refused = t.expect("the closed port's reset", |v| {
        v["cause"] == "no_listener" && v["local_port"] == p
    });
    assert_eq!(refused["last_listener_pid"], pid(), "{refused}");
    assert_eq!(refused["last_listener_comm"], comm.as_str(), "{refused}");
}

/// A storm summary's example is the other end for sent resets and the
/// local end for received ones: a client bound to a known port.
#[test]
fn a_storm_summary_names_an_example_end() {
    let link = Link::new();
    let mut ta = Tracer::start(&link.a, &["--storm", "always"]);
    let mut tb = Tracer::start(&link.b, &["--storm", "always"]);
    let (server, client) = (link.addr_a.clone(), link.addr_b.clone());
    let (dport, sport) = (port(82), port(83));
    let (s, c) = (server.clone(), client.clone());
    link.b.run(move || {
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let local: SocketAddr = format!("{c}:{sport}").parse().unwrap();
        sock.bind(&local.into()).unwrap();
        let remote: SocketAddr = format!("{s}:{dport}").parse().unwrap();
        sock.connect(&remote.into()).unwrap_err();
    });
    let is_summary = |direction: &'static str| {
        move |v: &Value| v["event"] == "suppressed" && v["direction"] == direction
    };
    let sent = ta.expect("the sent reset's summary", is_summary("sent"));
    assert_eq!(sent["port"], dport, "{sent}");
    assert_eq!(sent["example_addr"], client.as_str(), "{sent}");
    assert_eq!(sent["example_port"], sport, "{sent}");
    let received = tb.expect("the received reset's summary", is_summary("received"));
    assert_eq!(received["port"], dport, "{received}");
    assert_eq!(received["example_addr"], client.as_str(), "{received}");
    assert_eq!(received["example_port"], sport, "{received}");
}

/// `--summary` is not only for services: each period's table of refused
/// connections, with ranks, counts, the process and the period.  Three
/// refused connects make six resets in two rows: no_listener (sent, no
/// owner) and connection_refused (received, this process).
#[test]
fn a_summary_period_ranks_what_it_counted() {
    let ns = Netns::new();
    let p = port(84);
    let mut t = Tracer::start(&ns, &["--summary", "1"]);
    for _ in 0..3 {
        ns.run(move || TcpStream::connect(("127.0.0.1", p)).unwrap_err());
    }
    let row = |cause: &'static str| {
        move |v: &Value| v["event"] == "summary" && v["cause"] == cause && v["port"] == p
    };
    t.expect("the refused client's row", row("connection_refused"));
    t.expect("the closed port's row", row("no_listener"));
    // The period so far is written at exit too.
    let (status, stderr) = t.stop_collecting();
    assert!(status.success(), "{stderr}");
    let rows: Vec<&Value> = t.seen.iter().filter(|v| v["event"] == "summary").collect();
    // A period's rows come out together, rank 1 first.
    let mut periods: Vec<Vec<&Value>> = vec![];
    for r in &rows {
        assert_eq!(r["port"], p, "{r}");
        assert_eq!(r["suppressed"], 0, "{r}");
        assert_eq!(r["period_s"], 1, "{r}");
        match r["cause"].as_str().unwrap() {
            "connection_refused" => assert_eq!(r["comm"], process_comm().as_str(), "{r}"),
            "no_listener" => assert_eq!(r["comm"], Value::Null, "{r}"),
            other => panic!("a row for {other}: {r}"),
        }
        if r["rank"] == 1 || periods.is_empty() {
            periods.push(vec![]);
        }
        periods.last_mut().unwrap().push(r);
    }
    for cause in ["connection_refused", "no_listener"] {
        let n: u64 = rows
            .iter()
            .filter(|r| r["cause"] == cause)
            .map(|r| r["count"].as_u64().unwrap())
            .sum();
        assert_eq!(n, 3, "{cause}: {rows:?}");
    }
    // Within a period: ranks 1, 2... by count, and the period's count is
    // its rows' (nothing else happened in this namespace).
    for period in &periods {
        let total: u64 = period.iter().map(|r| r["count"].as_u64().unwrap()).sum();
        for (i, r) in period.iter().enumerate() {
            assert_eq!(r["rank"], i as u64 + 1, "{period:?}");
            assert!(
                i == 0 || r["count"].as_u64() <= period[i - 1]["count"].as_u64(),
                "{period:?}"
            );
            assert_eq!(r["period_count"], total, "{period:?}");
        }
    }
}
