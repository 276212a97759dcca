//! Storm mode accounting: every reset is either reported or counted in a
//! summary, and the totals match what the kernel saw.

use std::net::TcpStream;

use crate::harness::{port, Netns, Tracer};

/// Refused connections in `ns`: each makes one sent and one received reset.
fn refuse(ns: &Netns, n: u16) {
    let p = port(40);
    ns.run(move || {
        for _ in 0..n {
            assert!(TcpStream::connect(("127.0.0.1", p)).is_err());
        }
    });
}

fn totals(t: &Tracer) -> (u64, u64) {
    let events = t.seen.iter().filter(|v| v["event"] == "reset").count() as u64;
    let counted = t
        .seen
        .iter()
        .filter(|v| v["event"] == "suppressed")
        .map(|v| v["count"].as_u64().unwrap())
        .sum();
    (events, counted)
}

fn storm_accounting(mode: &str) {
    let ns = Netns::new();
    // 100 resets/s per CPU: a loop of refused connections is a storm.
    let mut t = Tracer::start(
        &ns,
        &[
            "--storm",
            mode,
            "--storm-threshold",
            "100",
            "--summary-interval",
            "1",
            "--failures",
        ],
    );
    refuse(&ns, 2000);
    // Let a summary interval pass, then stop (the last summaries are
    // printed on exit).
    t.settle(std::time::Duration::from_millis(1500));
    let mut t = t;
    let (status, stderr) = t.stop_collecting();
    assert!(status.success(), "{stderr}");
    let (events, counted) = totals(&t);
    assert_eq!(
        events + counted,
        4000,
        "events {events} + counted {counted}; stderr: {stderr}"
    );
    assert!(counted > 0, "a storm was counted");
    // The errno each refused connect gets comes from its reset: counted,
    // it is not a connection failure of its own.
    let failures: Vec<_> = t
        .seen
        .iter()
        .filter(|v| v["event"] == "connection_failure")
        .collect();
    assert!(
        failures.is_empty(),
        "{} failures, first {:?}",
        failures.len(),
        failures.first()
    );
    if mode == "always" {
        assert_eq!(events, 0);
    }
    // The kernel counts resets everywhere; the other namespaces' are
    // counted apart.
    let kernel = stderr.split("kernel: ").nth(1).expect("totals line");
    let number = |after: &str| -> u64 {
        kernel
            .split(after)
            .next()
            .unwrap()
            .split_whitespace()
            .last()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (seen, outside) = (number(" resets seen"), number(" outside --netns"));
    assert_eq!(seen - outside, 4000, "{stderr}");
    // One summary per cause, port and owner per interval, not per reset.
    let summaries = t.seen.iter().filter(|v| v["event"] == "suppressed").count();
    assert!(summaries <= 16, "{summaries} summaries: {stderr}");
    // Summaries carry the cause and the port.
    let s = t.seen.iter().find(|v| v["event"] == "suppressed").unwrap();
    assert!(
        s["cause"] == "no_listener" || s["cause"] == "connection_refused",
        "{s}"
    );
    assert!(s["first_time"].as_str().unwrap() <= s["last_time"].as_str().unwrap());
    let sent: u64 = t
        .seen
        .iter()
        .filter(|v| v["direction"] == "sent")
        .map(|v| {
            if v["event"] == "suppressed" {
                v["count"].as_u64().unwrap()
            } else {
                1
            }
        })
        .sum();
    assert_eq!(sent, 2000);
    // Sent resets are keyed by this host's port, received ones by the
    // peer's: both are the closed port.
    for v in t.seen.iter().filter(|v| v["event"] == "suppressed") {
        assert_eq!(v["port"], port(40), "{v}");
    }
}

#[test]
fn storm_auto_accounts_for_every_reset() {
    storm_accounting("auto");
}

#[test]
fn storm_always_accounts_for_every_reset() {
    storm_accounting("always");
}

/// The programs' rare diagnostics (aya-log) reach stderr with -v, once
/// per CPU, never per event: here the storm table fills.
#[test]
fn a_full_storm_table_is_said_once_with_verbose() {
    let ns = Netns::new();
    let args = ["--storm", "always", "--storm-keys", "2"];
    let quiet = Tracer::start(&ns, &args);
    let verbose = Tracer::start(&ns, &[&args[..], &["-v"]].concat());
    // Each refused port is two keys (the reset sent and the one received).
    ns.run(|| {
        for i in 0..10 {
            assert!(TcpStream::connect(("127.0.0.1", port(41 + i))).is_err());
        }
    });
    let said = |t: &Tracer| t.stderr().matches("storm table full").count();
    let cpus = std::thread::available_parallelism().unwrap().get();
    let mut waited = 0;
    while said(&verbose) == 0 && waited < 100 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        waited += 1;
    }
    let (_, quiet_err) = quiet.stop();
    let (_, verbose_err) = verbose.stop();
    let n = verbose_err.matches("storm table full").count();
    assert!(
        n >= 1 && n <= cpus,
        "said {n} times on {cpus} CPUs: {verbose_err}"
    );
    assert!(!quiet_err.contains("storm table full"), "{quiet_err}");
    assert!(quiet_err.contains("counted without a key"), "{quiet_err}");
}
