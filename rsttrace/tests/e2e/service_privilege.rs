//! Least privilege, proven: rsttrace as an unprivileged user holding
//! exactly the systemd unit's capabilities (setpriv) finds owners, keeps
//! only what it still needs once attached, and names a missing
//! capability in one line.

use std::process::Stdio;

use crate::{
    harness::{as_nobody, port, Netns, Tracer, NOBODY},
    real::repo,
    resets::connection,
    sockets::set_linger,
};

/// The unit's AmbientCapabilities, as setpriv names them (`bpf`, ...).
fn unit_caps() -> Vec<String> {
    let unit = std::fs::read_to_string(repo().join("packaging/rsttrace.service")).unwrap();
    let line = unit
        .lines()
        .find_map(|l| l.trim().strip_prefix("AmbientCapabilities="))
        .expect("AmbientCapabilities= in the unit");
    let caps: Vec<String> = line
        .split_whitespace()
        .map(|c| {
            c.strip_prefix("CAP_")
                .expect("CAP_ name")
                .to_ascii_lowercase()
        })
        .collect();
    assert!(caps.len() >= 2, "{line}");
    caps
}

fn cap_bit(name: &str) -> u32 {
    match name {
        "dac_read_search" => 2,
        "sys_ptrace" => 19,
        "syslog" => 34,
        "perfmon" => 38,
        "bpf" => 39,
        other => panic!("unexpected capability {other} in the unit"),
    }
}

fn cap_set(status: &str, field: &str) -> u64 {
    let v = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("{field} in {status}"));
    u64::from_str_radix(v.trim(), 16).unwrap()
}

#[test]
fn the_units_capabilities_are_enough_and_the_rest_is_dropped() {
    let caps = unit_caps();
    let ns = Netns::new();
    let p = port(70);
    // A connection older than rsttrace, owned by this (root) process: its
    // owner can only be found in /proc/<pid>/fd.
    let (_l, _c, s) = connection(&ns, "127.0.0.1", p);
    let inode = ns.inode().to_string();
    let mut t = Tracer::start_cmd(as_nobody(&caps, &["--format", "json", "--netns", &inode]));
    let status = std::fs::read_to_string(format!("/proc/{}/status", t.pid())).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains(NOBODY)),
        "{status}"
    );
    // Attached: what is left is reading /proc, and attaching only if a
    // hook may still be attached later.
    let attach = (1u64 << cap_bit("bpf")) | (1 << cap_bit("perfmon"));
    let read_proc = (1u64 << cap_bit("sys_ptrace")) | (1 << cap_bit("dac_read_search"));
    // (The bounding set stays as setpriv left it: shrinking it needs
    // CAP_SETPCAP, and the permitted set already bounds what can return.)
    for field in ["CapEff:", "CapPrm:"] {
        let set = cap_set(&status, field);
        assert_eq!(set & !attach, read_proc, "{field} {set:x}");
    }
    set_linger(&s, true, 0);
    drop(s);
    let sent = t.expect("the abort", |v| {
        v["direction"] == "sent" && v["cause"] == "abort_linger"
    });
    assert_eq!(sent["pid"], u64::from(std::process::id()));
    assert_eq!(sent["owner_source"], "procfs");
    let (exit, stderr) = t.stop();
    assert!(exit.success(), "{stderr}");
    assert!(!stderr.contains("warning: without"), "{stderr}");
}

/// Runs rsttrace as nobody with the unit's capabilities but `missing`.
fn without(missing: &str) -> (Option<i32>, Vec<String>) {
    let caps: Vec<String> = unit_caps().into_iter().filter(|c| c != missing).collect();
    assert_eq!(
        caps.len() + 1,
        unit_caps().len(),
        "{missing} is in the unit"
    );
    let out = as_nobody(&caps, &["--duration", "1"])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (
        out.status.code(),
        stderr.lines().map(str::to_string).collect(),
    )
}

#[test]
fn a_missing_capability_is_named_in_one_line() {
    for cap in ["bpf", "perfmon", "dac_read_search"] {
        let (code, stderr) = without(cap);
        assert_eq!(code, Some(1), "{cap}: {stderr:#?}");
        assert_eq!(stderr.len(), 1, "{cap}: {stderr:#?}");
        let name = format!("CAP_{}", cap.to_ascii_uppercase());
        assert!(
            stderr[0].starts_with("rsttrace: error: missing capability ")
                && stderr[0].contains(&name),
            "{stderr:?}"
        );
    }
    // Not needed to start, only to find owners of older sockets: said once.
    let (code, stderr) = without("sys_ptrace");
    assert_eq!(code, Some(0), "{stderr:#?}");
    let said: Vec<&String> = stderr
        .iter()
        .filter(|l| l.contains("CAP_SYS_PTRACE"))
        .collect();
    assert_eq!(said.len(), 1, "{stderr:#?}");
    assert!(
        said[0].starts_with("rsttrace: warning: without CAP_SYS_PTRACE"),
        "{said:?}"
    );
}
