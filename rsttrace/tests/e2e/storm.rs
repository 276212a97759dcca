//! Storm mode accounting: every reset is either reported or counted in a
//! summary, and the totals match what the kernel saw.

use std::{net::TcpStream, time::Duration};

use crate::{
    harness::{doctor, kernel, port, Link, Netns, Tracer},
    peer::Cmd,
    real::{free_port, http_get, wait_for},
};

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

/// The firewall tracepoints a storm takes off, as /metrics shows them:
/// each `rsttrace_hook_state` series with value 1, by hook, its state.
fn hook_states(metrics: u16) -> Result<Vec<(String, String)>, String> {
    let (status, body) = http_get(metrics, "/metrics").map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("{status}: {body}"));
    }
    let label = |line: &str, name: &str| -> Option<String> {
        let start = line.find(&format!("{name}=\""))? + name.len() + 2;
        Some(line[start..start + line[start..].find('"')?].to_string())
    };
    Ok(body
        .lines()
        .filter(|l| l.starts_with("rsttrace_hook_state{") && l.ends_with(" 1"))
        .filter_map(|l| Some((label(l, "hook")?, label(l, "state")?)))
        .collect())
}

/// Where this kernel matches firewall resets from tracepoints (no kprobes
/// for netfilter's functions), a storm takes those hooks off and puts
/// them back when it ends: /metrics says `paused`, then `attached`, and a
/// firewall reset afterwards is reported again.  Where kprobes reach
/// netfilter, nothing is paused.
#[test]
fn a_storm_pauses_the_firewall_tracepoints_and_resumes_them() {
    let tracepoints = !kernel().kprobes() && kernel().drop_reasons();
    let link = Link::new();
    link.a.nft(
        "table inet rsttrace_test_storm {
           chain input {
             type filter hook input priority 0;
             tcp dport 9601 reject with tcp reset
           }
         }",
    );
    let metrics = free_port();
    let mut t = Tracer::start(
        &link.a,
        &[
            "--storm",
            "auto",
            "--storm-threshold",
            "100",
            "--metrics",
            &metrics.to_string(),
        ],
    );
    let before = wait_for("the hooks on /metrics", Duration::from_secs(30), || {
        hook_states(metrics)
    });
    assert_attached_and_in_the_doctor(&before, tracepoints);
    storm_until_noticed(&link, &mut t, tracepoints);
    let during = states_while_storming(&link, metrics, tracepoints);
    for hook in FIREWALL_TRACEPOINTS {
        let paused = during.iter().any(|(h, s)| h == hook && s == "paused");
        assert_eq!(
            paused,
            tracepoints,
            "{hook} during the storm: {during:?}\n{}",
            t.stderr()
        );
    }
    if !tracepoints {
        assert!(during.iter().all(|(_, s)| s != "paused"), "{during:?}");
    }
    wait_resumed(&t, metrics, tracepoints);
    assert_reported_one_by_one(&link, &mut t);
    // And a firewall reset is reported again.
    let mut client = link.b.peer();
    assert_eq!(
        client.ask(Cmd::connect("c1", &link.addr_a, 9601)),
        "err ECONNREFUSED"
    );
    let rst = t.expect("the firewall's reset after the storm", |v| {
        v["event"] == "reset" && v["cause"] == "firewall_reject" && v["local_port"] == 9601
    });
    assert_eq!(rst["direction"], "sent");
    let (status, stderr) = t.stop();
    assert!(status.success(), "{stderr}");
}

/// The firewall tracepoints rsttrace matches firewall resets from, where
/// kprobes do not reach netfilter.
const FIREWALL_TRACEPOINTS: [&str; 3] = ["fib_table_lookup", "fib6_table_lookup", "net_dev_queue"];

/// Before the storm: each firewall tracepoint is attached (and named ok
/// by the doctor) exactly where this kernel needs it.
fn assert_attached_and_in_the_doctor(before: &[(String, String)], tracepoints: bool) {
    // The doctor names the same hooks for this kernel.
    let doctor_ok = |hook: &str| {
        doctor()["checks"].as_array().unwrap().iter().any(|c| {
            c["area"] == "hooks"
                && c["item"] == format!("tp_btf {hook}").as_str()
                && c["status"] == "ok"
        })
    };
    for hook in FIREWALL_TRACEPOINTS {
        let attached = before.iter().any(|(h, s)| h == hook && s == "attached");
        assert_eq!(attached, tracepoints, "{hook}: {before:?}");
        assert_eq!(
            doctor_ok(hook),
            tracepoints,
            "{hook} in the doctor's report"
        );
    }
}

/// Refused connections, several hundred a second, until rsttrace says it
/// paused the hooks or, where there are none to pause, until the kernel
/// counts the storm (a suppressed record).
fn storm_until_noticed(link: &Link, t: &mut Tracer, tracepoints: bool) {
    let paused_said = |t: &Tracer| t.stderr().contains("firewall-reset detection paused");
    let counted = |t: &mut Tracer| {
        t.settle(Duration::from_millis(200));
        t.seen.iter().any(|v| v["event"] == "suppressed")
    };
    let mut rounds = 0;
    while !(if tracepoints {
        paused_said(t)
    } else {
        counted(t)
    }) {
        assert!(rounds < 20, "no storm seen: {}", t.stderr());
        refuse(&link.a, 500);
        rounds += 1;
    }
    assert_eq!(paused_said(t), tracepoints, "{}", t.stderr());
}

/// The hook states on /metrics, read while a storm goes on: on a busy
/// machine a pause said at the end of a round could otherwise be over
/// (2 s calm) by the time the states are looked at.  Where there are
/// hooks to pause, until /metrics shows them paused (a storm on a
/// machine this busy may end and start again); else once.
fn states_while_storming(link: &Link, metrics: u16, tracepoints: bool) -> Vec<(String, String)> {
    let storming = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let go_on = storming.clone();
    let p = port(40);
    let storm = link.a.spawn(move || {
        while go_on.load(std::sync::atomic::Ordering::Relaxed) {
            assert!(TcpStream::connect(("127.0.0.1", p)).is_err());
        }
    });
    let all_paused = |states: &[(String, String)]| {
        FIREWALL_TRACEPOINTS
            .iter()
            .all(|hook| states.iter().any(|(h, s)| h == hook && s == "paused"))
    };
    let during = if tracepoints {
        wait_for(
            "the hooks paused during the storm",
            Duration::from_secs(20),
            || {
                let states = hook_states(metrics)?;
                if all_paused(&states) {
                    Ok(states)
                } else {
                    Err(format!("{states:?}"))
                }
            },
        )
    } else {
        hook_states(metrics).unwrap()
    };
    storming.store(false, std::sync::atomic::Ordering::Relaxed);
    storm.join().unwrap();
    during
}

/// Calm again: resumed, said and shown on /metrics.
fn wait_resumed(t: &Tracer, metrics: u16, tracepoints: bool) {
    wait_for("the storm's end", Duration::from_secs(60), || {
        let said = t.stderr().contains("firewall-reset detection resumed");
        let states = hook_states(metrics)?;
        let attached = FIREWALL_TRACEPOINTS
            .iter()
            .all(|hook| states.iter().any(|(h, s)| h == hook && s == "attached") == tracepoints);
        if said == tracepoints && attached {
            Ok(())
        } else {
            Err(format!("said {said}: {states:?}"))
        }
    });
}

/// Calm in the kernel too: a refused connect is reported one by one
/// again, not counted.
fn assert_reported_one_by_one(link: &Link, t: &mut Tracer) {
    let calm = (0..50u16).any(|i| {
        let p = port(60) + i;
        link.a
            .run(move || TcpStream::connect(("127.0.0.1", p)).unwrap_err());
        t.settle(Duration::from_millis(200));
        t.seen
            .iter()
            .any(|v| v["event"] == "reset" && v["local_port"] == p)
    });
    assert!(calm, "the kernel kept counting: {}", t.stderr());
}
