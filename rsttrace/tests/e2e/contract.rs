//! The schema contract, judged on real output: every key `rsttrace schema`
//! documents was seen with a value in what the suite's rsttrace printed
//! (collected by the harness, see `harness::collect`), every record had
//! exactly its event's documented keys, and no key went unseen unless
//! this run could not show it, for a reason listed here.
//!
//! It runs after the rest of the suite, in a run of its own
//! (`--ignored --exact contract::...`): `cargo xtask test` on the host,
//! and the VM guests' init, start it with the collected file.  Run alone,
//! or with nothing collected, it fails.

use std::{
    collections::{BTreeMap, BTreeSet},
    process::Command,
};

use serde_json::Value;

use crate::harness::{kernel, RECORDS_ENV};

const TRACER: &str = env!("CARGO_BIN_EXE_rsttrace");

/// One distinct shape the harness wrote.
struct Shape {
    test: String,
    event: String,
    keys: BTreeSet<String>,
    non_null: BTreeSet<String>,
}

fn shapes() -> Vec<Shape> {
    let path = std::env::var_os(RECORDS_ENV).unwrap_or_else(|| {
        panic!("{RECORDS_ENV} names no file: run the contract after the suite, as `cargo xtask test` does")
    });
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: the suite collected nothing",
            path.to_string_lossy()
        )
    });
    let strings = |v: &Value| -> BTreeSet<String> {
        v.as_array()
            .expect("a list")
            .iter()
            .map(|k| k.as_str().expect("a key").to_string())
            .collect()
    };
    let shapes: Vec<Shape> = text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            Shape {
                test: v["test"].as_str().expect("test").to_string(),
                event: v["event"].as_str().unwrap_or("(no event key)").to_string(),
                keys: strings(&v["keys"]),
                non_null: strings(&v["non_null"]),
            }
        })
        .collect();
    assert!(
        !shapes.is_empty(),
        "{}: the suite collected nothing",
        path.to_string_lossy()
    );
    shapes
}

/// `rsttrace schema --format json`: event -> its keys, in order.
fn schema() -> BTreeMap<String, Vec<String>> {
    let out = Command::new(TRACER)
        .args(["schema", "--format", "json"])
        .output()
        .expect("rsttrace schema");
    assert!(out.status.success());
    let kinds: Value = serde_json::from_slice(&out.stdout).expect("schema JSON");
    kinds
        .as_array()
        .expect("a list of events")
        .iter()
        .map(|k| {
            (
                k["event"].as_str().unwrap().to_string(),
                k["fields"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f["key"].as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

/// What this run is: the kernel, and which tests contributed.
struct Run {
    tests: BTreeSet<String>,
}

impl Run {
    fn ran(&self, prefix: &str) -> bool {
        self.tests.iter().any(|t| t.starts_with(prefix))
    }
}

/// A key this run may not show, and why: `shown` says whether this run
/// should have shown it; where it says no, the key must indeed be unseen
/// (a reason that no longer holds is stale).
struct Dependent {
    event: &'static str,
    key: &'static str,
    shown: fn(&Run) -> bool,
    why: &'static str,
}

/// `keys` of `event`, each dependent in the same way.
fn all_of(
    event: &'static str,
    keys: &[&'static str],
    shown: fn(&Run) -> bool,
    why: &'static str,
) -> Vec<Dependent> {
    keys.iter()
        .map(|&key| Dependent {
            event,
            key,
            shown,
            why,
        })
        .collect()
}

fn dependent() -> Vec<Dependent> {
    let mut d = vec![
        Dependent {
            event: "reset",
            key: "kernel_reason",
            shown: |_| kernel().reset_reasons(),
            why: "the kernel names a reset's reason from Linux 6.10 (tcp_send_reset)",
        },
        Dependent {
            event: "suppressed",
            key: "kernel_reason",
            shown: |_| kernel().reset_reasons(),
            why: "the kernel names a reset's reason from Linux 6.10 (tcp_send_reset)",
        },
        Dependent {
            event: "reset",
            key: "pod_namespace",
            shown: |r| r.ran("service_pods::"),
            why: "read from a container runtime's config.json: only service_pods starts one \
                  (podman), and the VM guests have none",
        },
        Dependent {
            event: "reset",
            key: "pod_name",
            shown: |r| r.ran("service_pods::"),
            why: "read from a container runtime's config.json: only service_pods starts one \
                  (podman), and the VM guests have none",
        },
    ];
    for key in ["delivered_errno", "delivered_pid", "delivered_comm"] {
        d.push(Dependent {
            event: "reset",
            key,
            shown: |_| kernel().error_reports(),
            why: "the errno a socket got is seen from Linux 5.14 (inet_sk_error_report), or \
                  where BPF trampolines work",
        });
    }
    d.extend(all_of(
        "stray_reset",
        &[
            "explanation",
            "family",
            "local_addr",
            "local_port",
            "remote_addr",
            "remote_port",
            "seq",
            "rst_ttl",
            "netns",
            "community_id",
            "time",
            "event",
        ],
        |_| kernel().strays(),
        "resets for no socket are seen where kfree_skb names them (5.17+), or where rsttrace \
         hooks the functions that build resets",
    ));
    d
}

#[test]
#[ignore = "judges the whole suite's output: run after it (cargo xtask test, cargo xtask vm)"]
fn every_documented_key_is_seen() {
    let shapes = shapes();
    let schema = schema();
    let run = Run {
        tests: shapes.iter().map(|s| s.test.clone()).collect(),
    };
    let mut problems = vec![];
    // Every record has exactly its event's keys.
    for s in &shapes {
        let Some(documented) = schema.get(&s.event) else {
            problems.push(format!("{}: an undocumented event {:?}", s.test, s.event));
            continue;
        };
        let documented: BTreeSet<String> = documented.iter().cloned().collect();
        for k in s.keys.difference(&documented) {
            problems.push(format!(
                "{}: {} record has the undocumented key {k}",
                s.test, s.event
            ));
        }
        for k in documented.difference(&s.keys) {
            problems.push(format!(
                "{}: {} record lacks the documented key {k}",
                s.test, s.event
            ));
        }
    }
    // Every documented key was seen with a value, or this run could not
    // show it (and did not).
    let dependent = dependent();
    for d in &dependent {
        assert!(
            schema
                .get(d.event)
                .is_some_and(|keys| keys.iter().any(|k| k == d.key)),
            "dependent() lists {} {}, which the schema does not document",
            d.event,
            d.key
        );
    }
    for (event, keys) in &schema {
        for key in keys {
            let seen_in: Vec<&str> = shapes
                .iter()
                .filter(|s| &s.event == event && s.non_null.contains(key))
                .map(|s| s.test.as_str())
                .collect();
            let dependent = dependent.iter().find(|d| d.event == event && d.key == key);
            match dependent {
                Some(d) if !(d.shown)(&run) => {
                    if let Some(t) = seen_in.first() {
                        problems.push(format!(
                            "{event} {key} was seen (in {t}), though this run was not to show it: \
                             {}; the reason is stale",
                            d.why
                        ));
                    }
                }
                _ if seen_in.is_empty() => problems.push(format!(
                    "{event} {key} is documented but was never seen with a value{}",
                    dependent
                        .map(|d| format!(" (expected here: {})", d.why))
                        .unwrap_or_default()
                )),
                _ => {}
            }
        }
    }
    let kernel_release = &kernel().release;
    assert!(
        problems.is_empty(),
        "Linux {kernel_release}, {} tests collected, {} shapes:\n{}",
        run.tests.len(),
        shapes.len(),
        problems.join("\n")
    );
}
